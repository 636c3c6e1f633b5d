//! Exec rules (issue 16): the manifest's `exec` rules hold inside `ward run`, however the
//! program is reached: by name through `PATH`, by another path to it (`/bin` links), through
//! a link the agent made, through wrappers and shell strings, from another language's process
//! API, and as a script's interpreter. Each refusal fails the exec with `EACCES`, and the
//! record names the rule that decided.

use crate::common::Person;
use crate::*;

const DENY_CURL: &str = r#"name = "t"
[[files]]
path = "PROJ"
mode = "direct"
[[rules]]
action = "exec"
effect = "deny"
resource = "/usr/bin/curl"
reason = "curl can send files anywhere"
"#;

fn exec_records(e: &Env) -> Vec<serde_json::Value> {
    e.records()
        .into_iter()
        .filter(|r| r["kind"] == "exec")
        .collect()
}

/// Python that runs each `(name, argv)` and prints `name=refused` when the exec failed
/// (`EACCES`), else `name=<exit status>`.
fn attempts(ways: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "import os, subprocess\n\
         def t(name, argv):\n\
         \x20   try:\n\
         \x20       r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n\
         \x20   except PermissionError:\n\
         \x20       r = 'refused'\n\
         \x20   print(f'{name}={r}', flush=True)\n",
    );
    for (name, argv) in ways {
        s += &format!("t('{name}', {argv})\n");
    }
    s
}

/// Every way tried is refused, recorded with the rule, and said at the end.
#[test]
fn escape_via_every_way_to_reach_a_denied_program() {
    let e = Env::new();
    std::os::unix::fs::symlink("/usr/bin/curl", e.p("proj/c")).unwrap();
    std::fs::write(e.p("proj/s"), "#!/usr/bin/curl -V\n").unwrap();
    std::fs::set_permissions(
        e.p("proj/s"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let script = attempts(&[
        ("by-name", r#"["curl", "-V"]"#),
        ("other-path", r#"["/bin/curl", "-V"]"#),
        ("own-link", r#"["./c", "-V"]"#),
        ("env", r#"["env", "-i", "/usr/bin/curl", "-V"]"#),
        (
            "wrappers",
            r#"["nohup", "timeout", "-s", "KILL", "5", "curl", "-V"]"#,
        ),
        ("shell-string", r#"["sh", "-c", "cd / && curl -V"]"#),
        ("interpreter", r#"["./s"]"#),
        // Not visible in the string: refused when the shell execs it.
        ("expanded", r#"["sh", "-c", "C=cu; ${C}rl -V"]"#),
        ("loader", r#"["/lib64/ld-linux-x86-64.so.2", "/usr/bin/curl", "-V"]"#),
        ("other-programs", r#"["ls"]"#),
    ]) + "fd = os.open('/usr/bin/curl', os.O_RDONLY)\n\
        try:\n    r = subprocess.run(['/dev/fd/%d' % fd, '-V'], pass_fds=[fd], stdout=subprocess.DEVNULL).returncode\n\
        except PermissionError:\n    r = 'refused'\n\
        print(f'descriptor={r}', flush=True)\n";
    let o = e.run_manifest(DENY_CURL, PY, &script);
    let out = text(&o);
    for way in [
        "by-name",
        "other-path",
        "own-link",
        "env",
        "wrappers",
        "shell-string",
        "interpreter",
        "loader",
        "descriptor",
    ] {
        assert!(
            out.contains(&format!("{way}=refused")),
            "{way} ran curl: {out}"
        );
    }
    assert!(out.contains("expanded=126"), "{out}");
    assert!(out.contains("other-programs=0"), "{out}");
    assert!(
        out.contains("the manifest's exec rules refused: /usr/bin/curl (")
            && !out.contains("dash ("),
        "the person is not told: {out}"
    );
    e.assert_recorded();
    let recs = exec_records(&e);
    let refusals: Vec<_> = recs
        .iter()
        .filter(|r| r["decision"]["result"] == "deny")
        .collect();
    assert!(refusals.len() >= 8, "{refusals:?}");
    for r in &refusals {
        let by = r["decision"]["by"].as_str().unwrap();
        assert!(
            by.starts_with("manifest:") && by.ends_with(":5:1"),
            "by: {r}"
        );
        assert!(r["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("curl can send files"));
    }
    // The record says which command of a shell string decided.
    assert!(
        refusals
            .iter()
            .any(|r| r["detail"]["decided_on"] == "/usr/bin/curl" && r["detail"]["argv"][0] == "sh"),
        "{refusals:?}"
    );
    assert!(recs
        .iter()
        .any(|r| r["decision"]["result"] == "allow"
            && r["resource"].as_str().unwrap().ends_with("/ls")));
}

/// `[exec] unknown = "deny"`: only the programs allowed run; any other program, or a copy of
/// an allowed one under another name, does not.
#[test]
fn escape_via_a_program_the_allow_list_does_not_name() {
    let e = Env::new();
    std::fs::copy("/usr/bin/echo", e.p("proj/my-echo")).unwrap();
    // Named like what a bare-name allow rule names: still not the program the person allowed.
    std::fs::copy("/usr/bin/cat", e.p("proj/python3-copy")).unwrap();
    let m = r#"name = "t"
[[files]]
path = "PROJ"
mode = "direct"
[exec]
unknown = "deny"
[[rules]]
action = "exec"
effect = "allow"
resource = "python3*"
[[rules]]
action = "exec"
effect = "allow"
resource = "/usr/bin/echo"
"#;
    let script = attempts(&[
        ("echo", r#"["/bin/echo", "hi"]"#),
        ("cat", r#"["cat", "/etc/hostname"]"#),
        ("copy", r#"["./my-echo", "hi"]"#),
        ("look-alike", r#"["./python3-copy", "/etc/hostname"]"#),
    ]);
    let o = e.run_manifest(m, PY, &script);
    let out = text(&o);
    assert!(out.contains("echo=0"), "{out}");
    assert!(
        out.contains("cat=refused") && out.contains("copy=refused"),
        "{out}"
    );
    assert!(out.contains("look-alike=refused"), "{out}");
    let recs = exec_records(&e);
    let cat = recs
        .iter()
        .find(|r| r["resource"].as_str().unwrap().ends_with("/cat"))
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(cat["decision"]["result"], "deny");
    assert!(
        cat["decision"]["by"]
            .as_str()
            .unwrap()
            .ends_with("ward.toml:6:11"),
        "{cat}"
    );
}

/// `ask`: the question shows the command, through the trusted terminal; the person's no
/// refuses the exec and their yes lets the next one run.
#[test]
fn escape_via_running_a_program_the_person_must_approve() {
    let e = Env::new();
    let m = e.p("ward.toml");
    std::fs::write(
        &m,
        format!(
            "name = \"t\"\n[[files]]\npath = \"{}\"\nmode = \"direct\"\n[[rules]]\naction = \"exec\"\neffect = \"ask\"\nresource = \"curl\"\n",
            e.p("proj").display()
        ),
    )
    .unwrap();
    let mut c = e.command(&["run", "--review", "keep", "-m", m.to_str().unwrap(), "--"]);
    let script = attempts(&[
        ("first", r#"["sh", "-c", "curl -V"]"#),
        ("second", r#"["curl", "-V"]"#),
    ]);
    c.args([PY, "-c", &script]);
    c.env("WARD_ASK_TIMEOUT", "20");
    let mut p = Person::spawn(c);
    let asked = p.question(0);
    assert!(
        p.wait_for("wants to run curl -V", asked, 5).is_some()
            && p.wait_for("run by: sh -c curl -V", asked, 5).is_some(),
        "the question does not show the command: {}",
        p.text()
    );
    p.reply(b"n\r");
    let (code, screen) = p.finish(30);
    let t = String::from_utf8_lossy(&screen).into_owned();
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("first=refused"), "{t}");
    // Refused once, refused for the session: nobody is asked twice.
    assert!(t.contains("second=refused"), "{t}");
    assert_eq!(t.matches("session word: ").count(), 1, "asked twice: {t}");
    let recs = exec_records(&e);
    assert!(
        recs.iter()
            .any(|r| r["consent"] == "refused" && r["decision"]["result"] == "deny"),
        "{recs:?}"
    );
    assert!(
        recs.iter().any(|r| r["consent"] == "remembered"),
        "{recs:?}"
    );
}

/// A second thread rewrites the program path between Ward's check and the kernel's exec (the
/// time-of-check/time-of-use race of any notification-based check): the check reads
/// `/usr/bin/true` and allows it, the kernel reads `/usr/bin/curl`. For denies that name files,
/// Landlock refuses the execution in the kernel itself, so the race never runs curl. (With the
/// notification alone, 70 of 300 attempts ran curl on the machine this was written on.)
#[test]
fn escape_via_racing_the_exec_check() {
    let e = Env::new();
    std::fs::write(e.p("proj/race.py"), RACE).unwrap();
    for rule in ["/usr/bin/curl", "/usr/bin/cur?", "curl"] {
        let m = DENY_CURL.replace("/usr/bin/curl", rule);
        let o = e.run_manifest(&m, PY, "exec(open('race.py').read())");
        let out = text(&o);
        let line = out
            .lines()
            .find(|l| l.starts_with("race "))
            .unwrap_or_else(|| panic!("{rule}: {out}"));
        assert!(
            line.contains("'curl': 0,"),
            "{rule}: the race ran curl: {line}"
        );
        // The race was run: the check saw both paths.
        assert!(!line.contains("'true': 0,"), "{rule}: {line}");
        assert!(!line.contains("'refused': 0,"), "{rule}: {line}");
    }
    e.assert_recorded();
    assert!(exec_records(&e)
        .iter()
        .any(|r| r["decision"]["result"] == "deny" && r["resource"] == "/usr/bin/curl"));
}

const RACE: &str = r#"import ctypes, os, threading, sys
libc = ctypes.CDLL(None, use_errno=True)
A = b"/usr/bin/true\0"
B = b"/usr/bin/curl\0"
counts = {"true": 0, "curl": 0, "refused": 0, "other": 0}
for i in range(300):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        os.dup2(w, 2)
        buf = ctypes.create_string_buffer(A, 16)
        dash_v = ctypes.create_string_buffer(b"-V\0", 4)
        argv = (ctypes.c_void_p * 3)(ctypes.addressof(buf), ctypes.addressof(dash_v), None)
        def flip():
            while True:
                ctypes.memmove(buf, B, 14)
                ctypes.memmove(buf, A, 14)
        threading.Thread(target=flip, daemon=True).start()
        libc.execv(buf, argv)
        os._exit(126 if ctypes.get_errno() == 13 else 127)
    os.close(w)
    out = b""
    while True:
        d = os.read(r, 4096)
        if not d:
            break
        out += d
    os.close(r)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    if b"curl" in out:
        counts["curl"] += 1
    elif code == 0:
        counts["true"] += 1
    elif code == 126:
        counts["refused"] += 1
    else:
        counts["other"] += 1
print("race", counts, flush=True)
"#;

/// "Always": where the manifest's own default asks (`[exec] unknown = "ask"`), the person can
/// answer once for good. The rule goes into their manifest with a comment saying who and when,
/// is on record, and the next session does not ask. A rule the person wrote is never
/// overridden this way (no "always" is offered for it).
#[test]
fn always_writes_the_answer_into_the_manifest() {
    let e = Env::new();
    let m = e.p("proj/ward.toml");
    std::fs::write(
        &m,
        format!(
            "name = \"t\"\n[[files]]\npath = \"{}\"\nmode = \"direct\"\n[exec]\nunknown = \"ask\"\n\
             [[rules]]\naction = \"exec\"\neffect = \"allow\"\nresource = \"python3*\"\n\
             [[rules]]\naction = \"exec\"\neffect = \"ask\"\nresource = \"wc\"\n",
            e.p("proj").display()
        ),
    )
    .unwrap();
    let script = attempts(&[
        ("id", r#"["id", "-u"]"#),
        ("wc", r#"["wc", "-c", "ward.toml"]"#),
    ]);
    let session = |keys: &[&[u8]]| {
        let mut c = e.command(&["run", "--review", "keep", "--"]);
        c.args([PY, "-c", &script]).env("WARD_ASK_TIMEOUT", "20");
        let mut p = Person::spawn(c);
        let mut at = 0;
        let mut questions = Vec::new();
        for k in keys {
            let asked = p.question(at);
            let end = p.wait_for("(a letter, then Enter)", asked, 10).unwrap();
            questions.push(p.text()[asked..end].to_string());
            p.reply(k);
            at = end;
        }
        let (code, screen) = p.finish(30);
        (
            code,
            String::from_utf8_lossy(&screen).into_owned(),
            questions,
        )
    };
    // `id` is no rule's: "always" is offered and taken. `wc` is the person's own ask rule: no
    // "always", and "y" holds for this session only.
    let (code, out, questions) = session(&[b"a\r", b"y\r"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("id=0") && out.contains("wc=0"), "{out}");
    assert!(
        questions[0].contains("wants to run id -u") && questions[0].contains("[a] always allow"),
        "{questions:?}"
    );
    assert!(
        questions[1].contains("wants to run wc") && !questions[1].contains("[a] always"),
        "{questions:?}"
    );
    let text = std::fs::read_to_string(&m).unwrap();
    assert!(
        text.contains("answered \"always\" on the terminal"),
        "{text}"
    );
    assert!(
        text.contains("action = \"exec\"\neffect = \"allow\"\nresource = \"/usr/bin/id\""),
        "{text}"
    );
    let recs = e.records();
    assert!(
        recs.iter().any(|r| r["kind"] == "manifest.rule_added"),
        "{recs:?}"
    );
    assert!(recs
        .iter()
        .any(|r| r["kind"] == "exec" && r["consent"] == "always"));
    // The next session: `id` runs without a question; `wc` is asked again.
    let (code, out, questions) = session(&[b"y\r"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(questions.len(), 1);
    assert!(questions[0].contains("wants to run wc"), "{questions:?}");
    assert_eq!(out.matches("session word: ").count(), 1, "{out}");
}

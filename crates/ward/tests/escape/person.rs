//! The person's side (issue 15): the agent tries to reach the person through the terminal
//! they share. Each test runs `ward run` on a real pseudo-terminal that stands for the
//! person's, types into it as a person would, and reads what the person would see.

use crate::common::{termios, Person};
use crate::network::with_servers;
use crate::*;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ward run` of `script` (python) on a person's terminal, in `e`'s world.
fn run_on_terminal(e: &Env, args: &[&str], script: &str) -> Person {
    let mut c = e.command(&["run", "--review", "keep"]);
    c.args(args).args(["--", PY, "-c", script]);
    c.env("WARD_ASK_TIMEOUT", "4");
    Person::spawn(c)
}

#[test]
fn escape_via_the_persons_terminal_which_the_agent_no_longer_holds() {
    let e = Env::new();
    let script = "import os, sys, shutil\n\
        print('size', os.get_terminal_size(0).lines, os.get_terminal_size(0).columns, flush=True)\n\
        print('fd0', os.readlink('/proc/self/fd/0'), os.fstat(0).st_dev, flush=True)\n\
        print('ttyname', os.ttyname(0), os.ttyname(1), os.isatty(2), flush=True)\n\
        print('ctty', os.open('/dev/tty', os.O_RDWR) >= 0, flush=True)\n\
        line = sys.stdin.readline()\n\
        print('got:' + line.strip(), flush=True)\n\
        sys.exit(7)\n";
    let mut p = run_on_terminal(&e, &["--grant", ".:direct"], script);
    let before = p.initial;
    assert!(p.wait_for("ctty True", 0, 30).is_some(), "{}", p.text());
    p.type_keys(b"hello\r");
    let pts = p.pts.clone();
    let master = p.master.try_clone().unwrap();
    let (code, screen) = p.finish(30);
    // The master reports the settings of the terminal's other end, the person's side.
    let after = termios(master.as_raw_fd());
    let t = lossy(&screen);
    assert_eq!(code, Some(7), "the agent's exit status passes through: {t}");
    assert!(t.contains("size 30 100"), "window size: {t}");
    assert!(t.contains("got:hello"), "keys reach the agent: {t}");
    let fd0: Vec<&str> = t
        .lines()
        .find_map(|l| l.strip_prefix("fd0 "))
        .unwrap()
        .split_whitespace()
        .collect();
    // The agent's terminal is of the sandbox's own devpts (a different file system from the
    // person's /dev/pts), and it can name it: `tty` works inside.
    let person_dev = std::fs::metadata(&pts).unwrap().dev();
    assert_ne!(
        fd0[1],
        person_dev.to_string(),
        "the agent holds a terminal of the person's devpts: {t}"
    );
    let names = t
        .lines()
        .find_map(|l| l.strip_prefix("ttyname "))
        .unwrap_or_else(|| panic!("ttyname failed inside: {t}"))
        .trim();
    assert_eq!(
        names,
        format!("{0} {0} True", fd0[0]),
        "the agent's terminal is named inside: {t}"
    );
    // The person's terminal comes back as it was (the relay made it raw meanwhile).
    assert_eq!(
        (before.c_lflag, before.c_iflag, before.c_oflag),
        (after.c_lflag, after.c_iflag, after.c_oflag)
    );
    e.assert_recorded();
    let end = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.exit")
        .unwrap();
    assert_eq!(end["detail"]["terminal"]["relayed"], true, "{end}");
}

#[test]
fn keys_signals_and_job_control_work_inside_the_agents_terminal() {
    // A shell as the agent: Ctrl-Z stops its job and the shell says so, `fg` resumes it,
    // Ctrl-C interrupts it, and the shell's exit status is ward's.
    let e = Env::new();
    let mut c = e.command(&["run", "--review", "keep", "--grant", ".:direct", "--"]);
    c.args(["/bin/bash", "--norc", "--noprofile", "-i"])
        .env("PS1", "PROMPT> ");
    let mut p = Person::spawn(c);
    let at = p.wait_for("PROMPT> ", 0, 30).expect("no prompt");
    p.type_keys(b"sleep 30\r");
    std::thread::sleep(Duration::from_millis(500));
    p.type_keys(b"\x1a");
    let at = p
        .wait_for("Stopped", at, 10)
        .unwrap_or_else(|| panic!("Ctrl-Z did not stop the job: {}", p.text()));
    let at = p
        .wait_for("PROMPT> ", at, 10)
        .expect("no prompt after the stop");
    p.type_keys(b"fg\r");
    std::thread::sleep(Duration::from_millis(500));
    p.type_keys(b"\x03");
    let at = p
        .wait_for("PROMPT> ", at, 10)
        .expect("Ctrl-C did not end the job");
    p.type_keys(b"exit 5\r");
    let (code, screen) = p.finish(30);
    assert_eq!(code, Some(5), "{}", lossy(&screen[at..]));
}

#[test]
fn escape_via_clipboard_title_and_terminal_queries() {
    let e = Env::new();
    // Each write is framed by markers that must arrive with nothing live between them.
    let script = r#"import sys
w = sys.stdout.buffer.write
w(b"M1\x1b]52;c;ZXZpbA==\x07M2\x1b]0;owned-title\x07M3\x1b]2;owned2\x1b\\M4")
w(b"\x1bP$qm\x1b\\M5\x1b[21tM6\x05M7\x9b2JM8\xc2\x9d52;c;eA==\x07M9\x1b]8;;http://evil/\x07link\x1b]8;;\x07M10\x1b[>0qM11\x1b[=cM12\n")
sys.stdout.flush()
"#;
    let p = run_on_terminal(&e, &["--grant", ".:direct"], script);
    let (code, screen) = p.finish(30);
    let t = lossy(&screen);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("M1M2M3M4M5M6M7M8M9linkM10M11M12"),
        "markers with nothing between: {t:?}"
    );
    for live in [
        "]52", "]0;", "]2;", "owned", "\x1bP", "[21t", "\x05", "\u{9b}", "]8;", "[>0q", "[=c",
    ] {
        assert!(!t.contains(live), "{live:?} reached the person: {t:?}");
    }
    e.assert_recorded();
    let recs = e.records();
    let filtered: Vec<String> = recs
        .iter()
        .filter(|r| r["kind"] == "terminal.filtered" && r["decision"]["result"] == "deny")
        .map(|r| r["resource"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "clipboard",
        "title",
        "DCS",
        "window operation",
        "answer-back",
        "C1",
        "identity",
    ] {
        assert_eq!(
            filtered.iter().filter(|f| f.contains(kind)).count(),
            1,
            "{kind} recorded once: {filtered:?}"
        );
    }
}

#[test]
fn escape_via_silencing_the_terminal_with_tiocsetd() {
    let e = Env::new();
    // N_NULL (27) would make the terminal swallow everything, Ward's questions included.
    let script = "import fcntl, struct, sys\n\
        try:\n  fcntl.ioctl(0, 0x5423, struct.pack('i', 27)); print('SILENCED', flush=True)\n\
        except OSError as x:\n  print('refused', x, flush=True)\n\
        print('still-heard', flush=True)\n";
    let p = run_on_terminal(&e, &["--grant", ".:direct"], script);
    let (code, screen) = p.finish(30);
    let t = lossy(&screen);
    assert_eq!(code, Some(0), "{t}");
    assert!(!t.contains("SILENCED"), "{t}");
    assert!(
        t.contains("refused [Errno 1] Operation not permitted"),
        "{t}"
    );
    assert!(t.contains("still-heard"), "{t}");
    e.assert_denied(
        &["ioctl(TIOCSETD)"],
        &std::process::Command::new("true").output().unwrap(),
    );
}

const ASK_MANIFEST: &str = r#"
name = "ask"
[[files]]
path = "PROJ"
access = "read-write"
mode = "direct"
[network]
ask = ["http://44.1.1.1"]
"#;

fn with_ask_manifest(e: &Env) -> String {
    let m = e.p("ward.toml");
    std::fs::write(
        &m,
        ASK_MANIFEST.replace("PROJ", &e.p("proj").display().to_string()),
    )
    .unwrap();
    m.display().to_string()
}

const FETCH: &str = "import urllib.request as u\n\
    try:\n  print('STATUS', u.urlopen('http://44.1.1.1/', timeout=30).status, flush=True)\n\
    except Exception as x:\n  print('REFUSED', x, flush=True)\n";

#[test]
fn escape_via_a_fake_prompt_and_typeahead() {
    with_servers(|hits| {
        let e = Env::new();
        let m = with_ask_manifest(&e);
        // The agent draws a question of its own, then asks for real: the person's answer to
        // the fake must not answer the real one.
        let script = format!(
            "import sys, time\n\
             print('=== Ward asks (session word: amber-falcon-1) ===\\nThe agent wants to connect to http://44.1.1.1:80\\n  [y] allow for this session, [N] deny (default)\\n  (a letter, then Enter) > ', end='', flush=True)\n\
             time.sleep(1.5)\n{FETCH}"
        );
        let mut p = run_on_terminal(&e, &["-m", &m], &script);
        let fake = p.wait_for("(a letter, then Enter) > ", 0, 30).unwrap();
        p.type_keys(b"y\r");
        let real = p.question(fake);
        // Nobody answers the real question: it times out to a refusal.
        let (code, screen) = p.finish(60);
        let t = lossy(&screen);
        assert_eq!(code, Some(0), "{t}");
        assert!(t[real..].contains("REFUSED"), "{t}");
        assert!(!t.contains("STATUS 200"), "{t}");
        // (The consent record below is the proof: the server, on this machine's own address,
        // would be refused after a yes too.)
        assert_eq!(hits[0].load(Ordering::SeqCst), 0);
        e.assert_recorded();
        let recs = e.records();
        assert!(
            recs.iter().any(|r| r["kind"] == "net.connect"
                && r["decision"]["result"] == "deny"
                && r["consent"] == "timeout"),
            "no refusal on record: {recs:?}"
        );
    });
}

#[test]
fn escape_via_repainting_the_screen_during_an_ask() {
    with_servers(|hits| {
        let e = Env::new();
        let m = with_ask_manifest(&e);
        // A full-screen agent keeps painting "allow" over whatever is shown while Ward asks.
        let script = format!(
            "import sys, threading, time\n\
             sys.stdout.write('\\x1b[?1049h\\x1b[?25l'); sys.stdout.flush()\n\
             def paint():\n  while True:\n    sys.stdout.write('\\x1b[HFAKE-ALLOW\\n'); sys.stdout.flush(); time.sleep(0.005)\n\
             threading.Thread(target=paint, daemon=True).start()\n\
             {FETCH}\
             time.sleep(0.5)\n"
        );
        let mut p = run_on_terminal(&e, &["-m", &m], &script);
        let asked = p.question(0);
        std::thread::sleep(Duration::from_millis(800));
        let during = p.screen()[asked..].to_vec();
        assert!(
            !lossy(&during).contains("FAKE"),
            "the agent painted over the question: {:?}",
            lossy(&during)
        );
        p.type_keys(b"y\r");
        // The answer is taken. (The test's server is on this machine's own address, which only
        // an `allow` entry naming it opens, so the proxy still refuses it after the yes.)
        let answered = p.wait_for("REFUSED", asked, 30);
        let (code, screen) = p.finish(30);
        let t = lossy(&screen);
        assert!(answered.is_some(), "{t}");
        assert_eq!(code, Some(0), "{t}");
        assert_eq!(hits[0].load(Ordering::SeqCst), 0);
        // The agent's screen comes back and its modes are put back at the end.
        assert!(t[asked..].contains("FAKE-ALLOW"), "{t}");
        // (Ward's own report may follow, on the person's terminal, with no control sequence.)
        let seq = "\x1b[0m\x1b[?1049l\x1b[?25h";
        assert!(
            t.rfind(seq)
                .is_some_and(|i| !t[i + seq.len()..].contains('\x1b')),
            "{t:?}"
        );
        let recs = e.records();
        assert!(
            recs.iter()
                .any(|r| r["kind"] == "net.connect" && r["consent"] == "granted"),
            "the person's yes is not on record: {recs:?}"
        );
    });
}

/// Everything a command printed, checked as a person's terminal would take it: valid UTF-8
/// with no control character, escape, bidi control or invisible character left live (newlines
/// and tabs separate lines and columns).
fn assert_inert(what: &str, out: &[u8]) {
    let s = std::str::from_utf8(out).unwrap_or_else(|e| panic!("{what}: not UTF-8 ({e}): {out:?}"));
    assert!(
        ward_core::inert::is_inert(s, true),
        "{what} printed something live: {s:?}"
    );
}

/// A Python string literal for `s`, every character escaped.
fn py_str(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        out.push_str(&format!("\\U{:08x}", c as u32));
    }
    out.push('\'');
    out
}

#[test]
fn escape_via_escapes_in_each_printer() {
    let e = Env::new();
    let samples = ward_core::inert::HOSTILE_SAMPLES;
    // File names, contents and link targets with each class of character, staged for review.
    let mut script = String::from("import os\n");
    for (i, (_, s)) in samples.iter().enumerate() {
        let s = py_str(s);
        script += &format!(
            "open('f{i}-' + {s}, 'w').write('line ' + {s} + '\\n')\nos.symlink('t' + {s}, 'l{i}-' + {s})\n"
        );
    }
    let o = e.run_args(&[], PY, &script);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_inert("ward run", &[o.stdout.clone(), o.stderr.clone()].concat());
    for args in [&["review"][..], &["review", "--diff"]] {
        let o = e.command(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_inert(
            &args.join(" "),
            &[o.stdout.clone(), o.stderr.clone()].concat(),
        );
        let out = String::from_utf8_lossy(&o.stdout);
        for (what, s) in samples {
            assert!(
                out.contains(&*ward_core::inert::line(s)),
                "{what}: the name is not shown escaped by `{}`: {out}",
                args.join(" ")
            );
        }
    }
    let o = e.command(&["review", "--apply-all"]).output().unwrap();
    assert_inert(
        "ward review --apply-all",
        &[o.stdout.clone(), o.stderr.clone()].concat(),
    );
    // The record keeps the names exactly; only what is printed is escaped.
    let recs = e.records();
    for (what, s) in samples {
        assert!(
            recs.iter().any(|r| r["kind"] == "review.approve"
                && r["resource"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with(&format!("-{s}"))),
            "{what}: no exact record"
        );
    }
    let o = e.command(&["audit", "tail", "-n", "200"]).output().unwrap();
    assert_inert(
        "ward audit tail",
        &[o.stdout.clone(), o.stderr.clone()].concat(),
    );
    let o = e.command(&["scan", "."]).output().unwrap();
    assert_inert("ward scan", &[o.stdout.clone(), o.stderr.clone()].concat());
    // A repository created in a direct grant under a hostile name: the end-of-run warning.
    let o = e.run(
        PY,
        "import os\nfor d in ['r\\x1b]0;t\\x07', 'r\\nward: FAKE']:\n  os.makedirs(d + '/.git/refs'); os.makedirs(d + '/.git/objects'); open(d + '/.git/HEAD', 'w').write('ref: refs/heads/main\\n')\n",
    );
    let all = [o.stdout.clone(), o.stderr.clone()].concat();
    assert!(
        String::from_utf8_lossy(&all).contains("created git repositories"),
        "{}",
        text(&o)
    );
    assert_inert("ward run (warnings)", &all);
    assert!(!String::from_utf8_lossy(&all)
        .lines()
        .any(|l| l.starts_with("ward: FAKE")));
}

#[test]
fn escape_via_auto_running_files_applied_in_bulk() {
    let e = Env::new();
    // A repository of the person's whose hooks live in the work tree.
    std::fs::create_dir_all(e.p("proj/.git")).unwrap();
    std::fs::write(
        e.p("proj/.git/config"),
        "[core]\n\trepositoryformatversion = 0\n\thooksPath = tools/hooks\n",
    )
    .unwrap();
    std::fs::write(e.p("proj/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    let script = "import os\n\
        os.makedirs('sub/.git/hooks')\n\
        open('sub/.git/config', 'w').write('[core]\\n\\tfsmonitor = touch /tmp/pwned\\n')\n\
        open('sub/.git/HEAD', 'w').write('ref: refs/heads/main\\n')\n\
        os.makedirs('bare/objects'); os.makedirs('bare/refs'); open('bare/HEAD', 'w').write('x\\n')\n\
        open('.envrc', 'w').write('touch /tmp/pwned\\n')\n\
        os.makedirs('.vscode'); open('.vscode/tasks.json', 'w').write('{}\\n')\n\
        open('.bashrc', 'w').write('touch /tmp/pwned\\n')\n\
        os.makedirs('tools/hooks'); open('tools/hooks/post-checkout', 'w').write('#!/bin/sh\\n')\n\
        open('run.sh', 'w').write('#!/bin/sh\\n'); os.chmod('run.sh', 0o755)\n\
        open('ww.txt', 'w').write('shared\\n'); os.chmod('ww.txt', 0o666)\n\
        open('notes.txt', 'w').write('plain\\n')\n";
    let o = e.run_args(&[], PY, script);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let list = e.command(&["review"]).output().unwrap();
    let l = String::from_utf8_lossy(&list.stdout).into_owned();
    let runs: Vec<&str> = l.lines().filter(|x| x.starts_with("! ")).collect();
    for name in [
        "sub/.git/config",
        "bare/HEAD",
        ".envrc",
        ".vscode/tasks.json",
        ".bashrc",
        "tools/hooks/post-checkout",
        "run.sh",
        "ww.txt",
    ] {
        assert!(
            runs.iter()
                .any(|x| x.ends_with(name) || x.contains(&format!(" {name} "))),
            "{name} not flagged: {l}"
        );
    }
    assert!(l.contains("hooksPath"), "{l}");
    // Flagged first: no plain change is listed before a flagged one.
    let lines: Vec<&str> = l.lines().collect();
    let first_plain = lines
        .iter()
        .position(|x| x.starts_with("  ") && !x.starts_with("      RUNS"))
        .unwrap();
    let last_flag = lines.iter().rposition(|x| x.starts_with("! ")).unwrap();
    assert!(last_flag < first_plain, "{l}");

    // "Apply all" takes only what runs nothing; the rest is held, on record.
    let o = e.command(&["review", "--apply-all"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(e.p("proj/notes.txt")).unwrap(),
        "plain\n"
    );
    // (Plain folders on the way, like `sub` and `tools/hooks`, are applied empty.)
    for held in [
        "sub/.git",
        "bare",
        ".envrc",
        ".vscode/tasks.json",
        ".bashrc",
        "tools/hooks/post-checkout",
        "run.sh",
    ] {
        assert!(
            !e.p("proj").join(held).exists(),
            "{held} was applied in bulk"
        );
    }
    let recs = e.records();
    let flagged: Vec<&str> = recs
        .iter()
        .filter(|r| r["kind"] == "review.flagged" && r["decision"]["result"] == "deny")
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert!(
        flagged.iter().any(|r| r.ends_with("/.envrc")),
        "{flagged:?}"
    );
    assert!(
        flagged.iter().any(|r| r.ends_with("/sub/.git/config")),
        "{flagged:?}"
    );
    // A folder named does not take them either; named exactly without --acknowledge neither.
    let o = e.command(&["review", "--apply", "sub"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!e.p("proj/sub/.git/config").exists());
    let o = e
        .command(&["review", "--apply", ".envrc"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!e.p("proj/.envrc").exists());
    // Named exactly, its reason acknowledged: applied, and the approval says so.
    let o = e
        .command(&["review", "--apply", ".envrc", "--acknowledge"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(e.p("proj/.envrc").exists());
    let approve = e
        .records()
        .into_iter()
        .find(|r| {
            r["kind"] == "review.approve"
                && r["resource"].as_str().unwrap_or("").ends_with("/.envrc")
        })
        .unwrap();
    assert_eq!(approve["detail"]["acknowledged"], true, "{approve}");
    assert_eq!(approve["detail"]["flags"][0]["code"], "direnv", "{approve}");
}

#[test]
fn world_writable_bits_are_never_applied() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let o = e.run_args(
        &[],
        PY,
        "import os\nopen('ww.txt', 'w').write('x\\n'); os.chmod('ww.txt', 0o666)\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = e
        .command(&["review", "--apply", "ww.txt", "--acknowledge"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = std::fs::metadata(e.p("proj/ww.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o002, 0, "mode {mode:o}");
}

/// A repository of the person's at `dir`, made without git (its config runs `fsmonitor`).
fn make_repo(dir: &Path) {
    std::fs::create_dir_all(dir.join(".git/objects")).unwrap();
    std::fs::create_dir_all(dir.join(".git/refs")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(dir.join(".git/config"), "[core]\n\tbare = false\n").unwrap();
}

#[test]
fn escape_via_renaming_the_parent_of_a_protected_repository() {
    let e = Env::new();
    make_repo(&e.p("proj/app"));
    // The protected `.git` cannot be written; its folder moved away with it and a new
    // repository made in its place is another repository, reported.
    let o = e.run(
        "/bin/sh",
        "echo '[core] fsmonitor = touch /tmp/x' >> app/.git/config 2>/dev/null || echo WRITE-REFUSED; \
         mv app app-moved && mkdir -p app/.git/objects app/.git/refs && \
         printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > app/.git/config && \
         echo 'ref: refs/heads/main' > app/.git/HEAD && echo REPLACED",
    );
    let t = text(&o);
    assert!(t.contains("WRITE-REFUSED"), "{t}");
    assert!(t.contains("REPLACED"), "the rename itself is allowed: {t}");
    assert!(
        t.contains("replaced git repositories") && t.contains("app/.git"),
        "{t}"
    );
    e.assert_recorded();
    let rec = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.new_repository")
        .expect("on record");
    let replaced = rec["detail"]["replaced"].to_string();
    assert!(replaced.contains("proj/app/.git"), "{rec}");
    assert!(
        rec["detail"]["repositories"]
            .to_string()
            .contains("app-moved/.git"),
        "the moved repository is found under its new name: {rec}"
    );
}

#[test]
fn escape_via_rewriting_the_manifest() {
    let e = Env::new();
    let manifest =
        "name = \"m\"\n[[files]]\npath = \"PROJ\"\naccess = \"read-write\"\nmode = \"direct\"\n";
    let script = "echo '[network]' >> ward.toml 2>/dev/null || echo APPEND-REFUSED; \
                  rm -f ward.toml 2>/dev/null || echo REMOVE-REFUSED; \
                  mv ward.toml w.old 2>/dev/null || echo MOVE-REFUSED";
    std::fs::write(
        e.p("proj/ward.toml"),
        manifest.replace("PROJ", &e.p("proj").display().to_string()),
    )
    .unwrap();
    let o = e
        .command(&["run", "--", "/bin/sh", "-c", script])
        .output()
        .unwrap();
    let t = text(&o);
    for refused in ["APPEND-REFUSED", "REMOVE-REFUSED", "MOVE-REFUSED"] {
        assert!(t.contains(refused), "{refused}: {t}");
    }
    assert!(t.contains("first run with this file"), "{t}");
    assert!(!std::fs::read_to_string(e.p("proj/ward.toml"))
        .unwrap()
        .contains("[network]"));
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert!(
        start["detail"]["protected"]
            .to_string()
            .contains("ward.toml"),
        "{start}"
    );
    // Changed from outside between two runs: shown before the agent starts, and recorded.
    let mut text_now = std::fs::read_to_string(e.p("proj/ward.toml")).unwrap();
    text_now.push_str("[limits]\npids = 64\n");
    std::fs::write(e.p("proj/ward.toml"), text_now).unwrap();
    let o = e.command(&["run", "--", "/bin/true"]).output().unwrap();
    let t = text(&o);
    assert!(t.contains("ward.toml changed since its last run"), "{t}");
    assert!(t.contains("+pids = 64"), "{t}");
    let starts: Vec<_> = e
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "session.start")
        .collect();
    assert_eq!(
        starts[1]["detail"]["manifest_files"][0]["since_last_run"], "changed",
        "{}",
        starts[1]
    );
}

#[test]
fn escape_via_credential_files_people_really_have() {
    let e = Env::new();
    let files = [
        ".git-credentials",
        ".kube/config",
        "infra/terraform.tfstate",
        "infra/terraform.tfstate.backup",
        ".vault-token",
        ".pgpass",
        ".my.cnf",
        ".docker/config.json",
        ".config/gcloud/application_default_credentials.json",
        "keys/credentials.json",
        "keys/service-account-prod.json",
        "keys/client_secret_123.json",
        ".azure/accessTokens.json",
        ".terraform.d/credentials.tfrc.json",
    ];
    for f in files {
        let p = e.p("proj").join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("SECRET-IN-{f}\n")).unwrap();
    }
    // One hidden file nobody opens (a stat is not an open): never reported as looked for.
    std::fs::write(
        e.p("proj").join(".netrc"),
        "machine x password SECRET-IN-netrc\n",
    )
    .unwrap();
    let script = files
        .iter()
        .map(|f| format!("cat '{f}' 2>/dev/null;"))
        .collect::<String>()
        + "test -e .netrc;";
    let o = e.run("/bin/sh", &script);
    let t = text(&o);
    assert!(!t.contains("SECRET-IN"), "{t}");
    e.assert_recorded();
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    let masked = start["detail"]["masked"].to_string();
    for f in [
        ".git-credentials",
        ".kube",
        "terraform.tfstate",
        ".vault-token",
        ".pgpass",
        ".docker/config.json",
        ".config/gcloud",
        "credentials.json",
        "service-account-prod.json",
        ".azure",
    ] {
        assert!(masked.contains(f), "{f} not covered: {masked}");
    }
    // Each hidden file the agent opened is recorded, under the rule that hides it, and named
    // to the person at the end.
    let hidden: Vec<String> = e
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "sandbox.hidden" && r["decision"]["result"] == "deny")
        .map(|r| r["resource"].as_str().unwrap().to_string())
        .collect();
    for f in [
        ".git-credentials",
        ".vault-token",
        ".pgpass",
        "infra/terraform.tfstate",
        "keys/credentials.json",
        ".docker/config.json",
    ] {
        assert!(
            hidden.iter().any(|h| h.ends_with(f)),
            "{f} opened but not recorded: {hidden:?}"
        );
    }
    assert!(
        t.contains("looked for by programs inside, but hidden") && t.contains(".pgpass"),
        "{t}"
    );
    assert!(
        !hidden.iter().any(|h| h.ends_with(".netrc")),
        "a hidden file nobody opened is reported: {hidden:?}"
    );
}

#[test]
fn escape_via_a_credential_file_that_appears_during_the_session() {
    // The documented limit: the sandbox covers the denied files that exist when it starts. One
    // that appears later (written by something on the host) is reachable; Ward says so at the
    // end and records it.
    let e = Env::new();
    let mut c = e.command(&["run", "--grant", ".:direct", "--", "/bin/sh", "-c"]);
    c.arg("for i in $(seq 100); do [ -e .env ] && break; sleep 0.05; done; cat .env");
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(e.p("proj/.env"), "LATE=1\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(
        t.contains("appeared in the grants during the session"),
        "{t}"
    );
    e.assert_recorded();
    let rec = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.uncovered")
        .expect("on record");
    assert!(
        rec["detail"]["paths"].to_string().contains("proj/.env"),
        "{rec}"
    );
}

#[test]
fn escape_via_a_credential_in_an_oddly_named_variable() {
    let e = Env::new();
    let mut c = e.command(&["run", "--grant", ".:direct", "--", "/usr/bin/env"]);
    c.env(
        "BUILD_INFO",
        "postgres://app:s3cr3t-passw0rd@db.internal:5432/app",
    )
    .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    .env("HARMLESS", "just some words here");
    let o = c.output().unwrap();
    let t = text(&o);
    assert!(!t.contains("s3cr3t-passw0rd"), "{t}");
    assert!(
        t.contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{t}"
    );
    assert!(t.contains("HARMLESS=just some words here"), "{t}");
    assert!(
        t.contains("removed from the agent's environment") && t.contains("BUILD_INFO"),
        "{t}"
    );
    e.assert_recorded();
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert_eq!(
        start["detail"]["env_credentials"][0]["name"], "BUILD_INFO",
        "{start}"
    );
    assert!(
        !start.to_string().contains("s3cr3t"),
        "the value is never recorded"
    );
}

#[test]
fn escape_via_a_unix_socket_that_appears_in_a_grant() {
    // A service on the host opens a socket inside the granted folder while the agent runs
    // (sockets there at the start are covered): connecting to it is refused and recorded; the
    // agent's own sockets in /tmp work.
    let e = Env::new();
    let script = "import socket, os, time\n\
        for i in range(200):\n  if os.path.exists('svc.sock'): break\n  time.sleep(0.02)\n\
        os.symlink(os.getcwd(), '/tmp/link')\n\
        for p in ['svc.sock', os.getcwd() + '/sub/../svc.sock', '/tmp/link/svc.sock']:\n  s = socket.socket(socket.AF_UNIX)\n  try:\n    s.connect(p); print('CONNECTED', p, flush=True)\n  except OSError as x:\n    print('refused', p, x, flush=True)\n\
        own = socket.socket(socket.AF_UNIX); own.bind('/tmp/own.sock'); own.listen(1)\n\
        c = socket.socket(socket.AF_UNIX); c.connect('/tmp/own.sock'); print('OWN OK', flush=True)\n";
    let mut c = e.command(&["run", "--grant", ".:direct", "--", PY, "-c", script]);
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let l = std::os::unix::net::UnixListener::bind(e.p("proj/svc.sock")).unwrap();
    l.set_nonblocking(true).unwrap();
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(!t.contains("CONNECTED"), "{t}");
    assert_eq!(t.matches("Permission denied").count(), 3, "{t}");
    assert!(t.contains("OWN OK"), "{t}");
    assert!(l.accept().is_err(), "the host's service got a connection");
    e.assert_denied(&["connect(unix socket in a grant)"], &o);
    let rec = e
        .records()
        .into_iter()
        .find(|r| {
            r["kind"] == "sandbox.denied" && r["resource"] == "connect(unix socket in a grant)"
        })
        .unwrap();
    assert!(
        rec["detail"]["args"]
            .as_str()
            .unwrap()
            .ends_with("proj/svc.sock"),
        "{rec}"
    );
}

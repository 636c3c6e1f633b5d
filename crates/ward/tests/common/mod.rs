//! Helpers shared by the `ward` binary's integration tests (`mod common;` in each).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The uid and gid of `name` in /etc/passwd.
pub fn user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The unprivileged `wardtest` user's uid and gid, for tests that switch to it. `None` (and a
/// loud line) where that cannot be done; under CI it must be possible, so there it fails.
pub fn test_user(why: &str) -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("NOT TESTED HERE: {why} needs root to switch to the `wardtest` user");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        return None;
    }
    let found = user("wardtest");
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST USER MISSING: CI must create `wardtest` (scripts/setup.sh does)"
        );
        eprintln!(
            "NOT TESTED HERE: no `wardtest` user on this machine (scripts/setup.sh creates it)"
        );
    }
    found
}

/// A test's own world: a project folder (`proj`, the working directory), a folder beside it
/// (`other`, with a secret), a home, and Ward's state, keys and managed file, all in a
/// temporary directory.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["proj", "other", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("other/secret.txt"), "other secret\n").unwrap();
        Env { dir }
    }
    pub fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    /// `ward ARGS` in the project folder, with this test's own home, state and managed file.
    pub fn command(&self, args: &[&str]) -> Command {
        ward_in(Path::new(env!("CARGO_BIN_EXE_ward")), self.dir.path(), args)
    }
    pub fn ward(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
    pub fn records(&self) -> Vec<serde_json::Value> {
        ward_audit::read_records(&self.p("state/ward/audit/audit.jsonl"))
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }
}

/// `PROGRAM ARGS` (a ward binary) in `root/proj`, with home, state, keys and managed file of its
/// own under `root`: how every test runs ward.
pub fn ward_in(program: &Path, root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(root.join("proj"))
        .env("HOME", root.join("home"))
        .env("XDG_STATE_HOME", root.join("state"))
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("WARD_MANAGED", root.join("managed.toml"))
        .env_remove("WARD_AUDIT_LOG")
        .env_remove("WARD_KEY_DIR");
    c
}

/// Give the test's world under `root` to `uid:gid` (`chown -R`), with a copy of ward in it
/// (the build directory may be out of that user's reach); returns the copy. Files written
/// after this stay root's.
pub fn hand_to(root: &Path, uid: u32, gid: u32) -> PathBuf {
    let ward = root.join("ward");
    std::fs::copy(env!("CARGO_BIN_EXE_ward"), &ward).unwrap();
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
    ward
}

/// `ward ARGS` as `uid:gid`, with the copy [`hand_to`] made.
pub fn ward_as(ward: &Path, root: &Path, uid: u32, gid: u32, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = ward_in(ward, root, args);
    c.uid(uid).gid(gid);
    c
}

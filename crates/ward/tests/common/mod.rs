//! Helpers shared by the `ward` binary's integration tests (`mod common;` in each).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

impl Drop for Env {
    fn drop(&mut self) {
        sweep_sessions(self.dir.path());
    }
}

/// Before a test's folder goes: a session it killed (`ward run` killed outright) leaves its
/// cgroups to the next `ward` command, which finds them by the session's `session.json`. Once
/// the folder is gone nothing would, so `ward status` sweeps them first, as soon as the
/// killed session's processes have ended (at most a few seconds).
pub fn sweep_sessions(root: &Path) {
    let sessions = root.join("state/ward/sessions");
    let left = || {
        std::fs::read_dir(&sessions)
            .is_ok_and(|d| d.flatten().any(|e| e.path().join("session.json").exists()))
    };
    let t = std::time::Instant::now();
    while left() && t.elapsed() < std::time::Duration::from_secs(5) {
        let _ = ward_in(Path::new(env!("CARGO_BIN_EXE_ward")), root, &["status"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if left() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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

/// `ward` running on a pty of the test's: the test is the person at the terminal.
pub struct Person {
    pub master: std::fs::File,
    out: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<()>>,
    pub pts: String,
    /// The terminal's settings before ward started.
    pub initial: libc::termios,
}

pub fn termios(fd: i32) -> libc::termios {
    // SAFETY: tcgetattr into a zeroed termios.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(fd, &mut t), 0);
        t
    }
}

impl Person {
    pub fn spawn(mut cmd: Command) -> Person {
        let (mut m, mut s) = (0, 0);
        let ws = libc::winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let mut name = [0 as libc::c_char; 64];
        // SAFETY: openpty fills the two descriptors and the name; each is owned right after.
        unsafe {
            assert_eq!(
                libc::openpty(&mut m, &mut s, name.as_mut_ptr(), std::ptr::null(), &ws),
                0
            );
        }
        // SAFETY: just opened, owned here alone.
        let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        // SAFETY: a NUL-terminated name written by openpty.
        let pts = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let initial = termios(master.as_raw_fd());
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and TIOCSCTTY between fork and exec: the pty becomes ward's
        // controlling terminal, as a person's terminal is.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut r, o) = (master.try_clone().unwrap(), out.clone());
        let reader = std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        Person {
            master,
            out,
            child,
            reader: Some(reader),
            pts,
            initial,
        }
    }

    /// Everything the person's terminal received so far.
    pub fn screen(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen()).into_owned()
    }

    /// Wait until the screen shows `needle` after byte `from`; the position after it.
    pub fn wait_for(&self, needle: &str, from: usize, secs: u64) -> Option<usize> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let s = self.screen();
            if let Some(i) = s
                .get(from..)
                .and_then(|t| t.windows(needle.len()).position(|w| w == needle.as_bytes()))
            {
                return Some(from + i + needle.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Answer the `n`th question Ward draws (1-based) with `keys`, typed once it is on the
    /// screen and a person could have read it; the position after that question.
    pub fn answer(&mut self, n: usize, keys: &[u8]) -> usize {
        let mut at = 0;
        for _ in 0..n {
            at = self
                .wait_for("(a letter, then Enter) > ", at, 30)
                .unwrap_or_else(|| panic!("question {n} never came: {}", self.text()));
        }
        std::thread::sleep(Duration::from_millis(400));
        self.type_keys(keys);
        at
    }

    /// Wait for a genuine question of Ward's (its header repeats the session word) drawn after
    /// `from`; the position after that header.
    pub fn question(&self, from: usize) -> usize {
        let word = self.word();
        self.wait_for(&format!("session word: {word}"), from, 30)
            .unwrap_or_else(|| panic!("no question: {}", self.text()))
    }

    /// Type `keys` once a person could have read the question (keys in its first moments are
    /// taken as typed before it was seen).
    pub fn reply(&mut self, keys: &[u8]) {
        std::thread::sleep(Duration::from_millis(600));
        self.type_keys(keys);
    }

    pub fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// The session word Ward announced.
    pub fn word(&self) -> String {
        let at = self
            .wait_for("show the word \u{ab}", 0, 20)
            .expect("Ward announced no session word");
        let s = self.screen();
        let rest = String::from_utf8_lossy(&s[at..]).into_owned();
        rest.split('\u{bb}').next().unwrap().to_string()
    }

    /// Wait for ward to end (killing it after `secs`); its exit code.
    pub fn finish(mut self, secs: u64) -> (Option<i32>, Vec<u8>) {
        let end = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends when the last holder of the pty's other end is gone.
        let r = self.reader.take().unwrap();
        let stop = Instant::now() + Duration::from_secs(5);
        while !r.is_finished() && Instant::now() < stop {
            std::thread::sleep(Duration::from_millis(20));
        }
        (status.code(), self.screen())
    }
}

//! The escape catalog (issue 3): each test makes a real attempt inside `ward run`, asserts that
//! it failed, that nothing changed on the host, and that the audit log has it: every denied
//! system call has a `sandbox.denied` record of its own, every limit reached a `sandbox.limit`
//! record. Paths outside the grants do not exist inside the sandbox, so a read of one is not an
//! event Ward can see; for those the session's start record, which lists what was granted and
//! masked, is the record.
//!
//! One module per family of techniques; every test is named `escape_via_<technique>`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "../common/mod.rs"]
mod common;
mod devices;
mod exec;
mod files;
mod limits;
mod network;
mod person;
mod sockets;
mod syscalls;

pub use common::{hand_to, test_user, text, ward_as};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        common::sweep_sessions(self.dir.path());
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["proj", "home/.config", "outside"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("outside/secret"), "outside secret\n").unwrap();
        std::fs::write(dir.path().join("home/.bashrc"), "# user's bashrc\n").unwrap();
        Env { dir }
    }
    pub fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    /// Run `script` with python3 (or sh) inside `ward run --grant proj:direct`.
    pub fn run(&self, prog: &str, script: &str) -> Output {
        self.run_args(&["--grant", ".:direct"], prog, script)
    }
    /// Run `script` under the manifest `toml` (written to `ward.toml`; `PROJ` in it is replaced
    /// by the project folder).
    pub fn run_manifest(&self, toml: &str, prog: &str, script: &str) -> Output {
        let m = self.p("ward.toml");
        std::fs::write(
            &m,
            toml.replace("PROJ", &self.p("proj").display().to_string()),
        )
        .unwrap();
        self.run_args(&["-m", m.to_str().unwrap()], prog, script)
    }
    pub fn run_args(&self, args: &[&str], prog: &str, script: &str) -> Output {
        self.command(&["run"])
            .args(args)
            .args(["--", prog, "-c", script])
            .output()
            .unwrap()
    }
    /// `ward ARGS` in `proj`, with this test's own home, state and managed file.
    pub fn command(&self, args: &[&str]) -> Command {
        common::ward_in(Path::new(env!("CARGO_BIN_EXE_ward")), self.dir.path(), args)
    }
    /// The session is on record, start and end.
    pub fn assert_recorded(&self) {
        let recs = ward_audit::read_records(&self.p("state/ward/audit/audit.jsonl")).unwrap();
        assert!(recs.iter().any(|(_, r)| r["kind"] == "session.start"));
        // The agent did start: a test that passes because the sandbox never came up proves
        // nothing.
        assert!(
            recs.iter()
                .any(|(_, r)| r["kind"] == "session.exit" && r["detail"]["started"] == true),
            "the session did not start"
        );
    }
    /// The session's start is on record (for sessions that cannot record their end).
    pub fn assert_start_recorded(&self) {
        assert!(self.records().iter().any(|r| r["kind"] == "session.start"));
    }
    pub fn records(&self) -> Vec<serde_json::Value> {
        ward_audit::read_records(&self.p("state/ward/audit/audit.jsonl"))
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }
    /// Each call has its own `sandbox.denied` record, and the session's end counts it.
    pub fn assert_denied(&self, calls: &[&str], o: &Output) {
        self.assert_recorded();
        let recs = self.records();
        for c in calls {
            assert!(
                recs.iter().any(|r| r["kind"] == "sandbox.denied"
                    && r["resource"] == *c
                    && r["decision"]["result"] == "deny"),
                "no sandbox.denied record for {c}: {}",
                text(o)
            );
            let end = recs.iter().find(|r| r["kind"] == "session.exit").unwrap();
            assert!(
                end["detail"]["denied"][c].as_u64().unwrap_or(0) >= 1,
                "{c} not counted: {end}"
            );
        }
    }
}

/// Python that calls each (name, libc function, args) through ctypes and prints
/// `name errno` for a failure and `name ALLOWED` for a success.
pub fn syscalls_py(calls: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nsc = libc.syscall\n",
    );
    for (name, expr) in calls {
        s += &format!(
            "r = {expr}\nprint('{name}', 'ALLOWED' if r >= 0 else os.strerror(ctypes.get_errno()), flush=True)\n"
        );
    }
    s
}

pub const PY: &str = "/usr/bin/python3";

/// Processes whose command line is exactly `sleep <n>`.
pub fn sleepers(n: u64) -> usize {
    let wanted = format!("sleep\0{n}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

//! `ward run`: the confined agent through the real binary, with its session in the audit log.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["proj", "other", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("other/secret.txt"), "other secret\n").unwrap();
        Env { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn ward(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(args)
            .current_dir(self.p("proj"))
            .env("HOME", self.p("home"))
            .env("XDG_STATE_HOME", self.p("state"))
            .env("XDG_CONFIG_HOME", self.p("config"))
            .env("WARD_MANAGED", self.p("managed.toml"))
            .env_remove("WARD_AUDIT_LOG")
            .env_remove("WARD_KEY_DIR")
            .output()
            .unwrap()
    }
    fn records(&self) -> Vec<serde_json::Value> {
        ward_audit::read_records(&self.p("state/ward/audit/audit.jsonl"))
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn run_confines_the_agent_and_records_the_session() {
    let e = Env::new();
    let script = format!(
        "echo made > f.txt; cat {}; exit 9",
        e.p("other/secret.txt").display()
    );
    let o = e.ward(&["run", "--grant", ".:direct", "--", "/bin/sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
    assert!(!text(&o).contains("other secret"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(e.p("proj/f.txt")).unwrap(),
        "made\n"
    );

    let recs = e.records();
    let start = recs
        .iter()
        .find(|r| r["kind"] == "session.start")
        .expect("session.start recorded");
    assert_eq!(start["detail"]["grants"][0]["mode"], "direct");
    assert_eq!(start["detail"]["grants"][0]["origin"], "command line");
    let exit = recs
        .iter()
        .find(|r| r["kind"] == "session.exit")
        .expect("session.exit recorded");
    assert_eq!(exit["detail"]["exit_code"], 9);
    assert_eq!(start["session"], exit["session"]);
    let v = e.ward(&["audit", "verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(
        !e.p("state/ward/sessions").read_dir().unwrap().any(|_| true),
        "the session's root is cleaned up"
    );
}

#[test]
fn read_only_grants_refuse_writes_with_an_error() {
    let e = Env::new();
    std::fs::write(e.p("proj/keep.txt"), "original\n").unwrap();
    let o = e.ward(&[
        "run",
        "--grant",
        ".:ro",
        "--",
        "/bin/sh",
        "-c",
        "echo changed > keep.txt",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("Read-only file system"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(e.p("proj/keep.txt")).unwrap(),
        "original\n"
    );
}

#[test]
fn refusals_exit_125_with_the_reason() {
    let e = Env::new();
    let o = e.ward(&["run", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("is staged"), "{}", text(&o));
    let o = e.ward(&["run", "--grant", "/:direct", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).contains("refusing to grant `/`"), "{}", text(&o));
    let o = e.ward(&["run", "--grant", ".:direct", "--", "/no/such/agent"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    assert!(e
        .records()
        .iter()
        .all(|r| r["kind"] != "session.start" || r["detail"]["command"][0] == "/no/such/agent"));
}

#[test]
fn the_managed_file_narrows_command_line_grants() {
    let e = Env::new();
    std::fs::write(
        e.p("managed.toml"),
        format!(
            "[[files]]\npath = \"{}\"\naccess = \"read\"\n",
            e.dir.path().canonicalize().unwrap().display()
        ),
    )
    .unwrap();
    let o = e.ward(&[
        "run",
        "--grant",
        ".:direct",
        "--",
        "/bin/sh",
        "-c",
        "echo x > y.txt",
    ]);
    assert!(
        text(&o).contains("Read-only file system"),
        "managed read-only wins: {}",
        text(&o)
    );
    assert!(!Path::new(&e.p("proj/y.txt")).exists());
    let o = e.ward(&["run", "--grant", "/usr:ro", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o).contains("outside every folder the managed file"),
        "{}",
        text(&o)
    );
}

//! The real `ward` binary, driven as a user or a script would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED_POLICY: &str = include_str!("../../ward-policy/tests/data/seed-policy.rego");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home/proj")).unwrap();
        Sandbox { dir }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn ward(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(args)
            .current_dir(root())
            .env("HOME", self.path("home"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("WARD_KEY_DIR")
            .env_remove("WARD_AUDIT_LOG")
            .env("WARD_MANAGED", self.path("managed.toml"))
            .env("COLUMNS", "100")
            .output()
            .unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_teaches_by_example() {
    let s = Sandbox::new();
    let o = s.ward(&["--help"]);
    assert!(o.status.success());
    insta::assert_snapshot!(stdout(&o));
    for sub in [
        &["manifest", "check", "--help"][..],
        &["policy", "eval", "--help"],
        &["audit", "verify", "--help"],
        &["proxy", "--help"],
    ] {
        let o = s.ward(sub);
        assert!(stdout(&o).contains("Examples:"), "{sub:?}");
    }
}

#[test]
fn manifest_check_reports_position_and_exit_codes() {
    let s = Sandbox::new();
    let good = s.path("good.toml");
    std::fs::write(
        &good,
        format!("[[files]]\npath = \"{}\"\n", s.path("home/proj").display()),
    )
    .unwrap();
    let o = s.ward(&["manifest", "check", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: "));

    let bad = s.path("bad.toml");
    std::fs::write(
        &bad,
        "[network]\nallow = [\"https://ok.com\", \"ftp://x.com\"]\n",
    )
    .unwrap();
    let o = s.ward(&["manifest", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "ward: {}:2:28: bad network destination `ftp://x.com`",
            bad.display()
        )),
        "{err}"
    );

    let o = s.ward(&["manifest", "check", "examples/seed-manifest.json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the seed's folder does not exist here"
    );
    let o = s.ward(&[
        "manifest",
        "check",
        "--portable",
        "--json",
        "examples/seed-manifest.json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "acme-cowork-agent");

    let o = s.ward(&["manifest", "check", "nope.toml"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn managed_file_narrows_explain() {
    let s = Sandbox::new();
    std::fs::write(
        s.path("managed.toml"),
        "[network]\nallow = [\"https://*.acme.com\"]\n",
    )
    .unwrap();
    let m = s.path("m.toml");
    std::fs::write(
        &m,
        "[network]\nallow = [\"https://api.acme.com\", \"https://example.org\"]\n",
    )
    .unwrap();
    let o = s.ward(&["manifest", "explain", "-m", m.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["network"].as_array().unwrap().len(), 1);
    assert_eq!(v["network"][0]["destination"], "https://api.acme.com:443");
    assert!(v["narrowed_by_managed"][0]
        .as_str()
        .unwrap()
        .contains("example.org"));
}

#[test]
fn seed_policy_v0_is_explained_and_fixed() {
    let s = Sandbox::new();
    let p = s.path("policy.rego");
    std::fs::write(&p, SEED_POLICY).unwrap();
    let o = s.ward(&["policy", "check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("this is Rego v0 syntax"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("ward policy check --fix"));

    let o = s.ward(&["policy", "check", "--fix", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(s.path("policy.rego.v0.bak")).unwrap(),
        SEED_POLICY
    );
    let fixed = std::fs::read_to_string(&p).unwrap();
    assert!(fixed.contains("allow_upload if {"), "{fixed}");
    let o = s.ward(&["policy", "check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The fixed seed decides through a manifest that binds it to uploads.
    let m = s.path("m.toml");
    std::fs::write(
        &m,
        "[network]\nallow = [\"https://uploads.acme.com\", \"https://other.com\"]\n[[policies]]\npath = \"policy.rego\"\nrule = \"data.agent.security.allow_upload\"\nactions = [\"net.upload\"]\n",
    )
    .unwrap();
    let eval = |input: &str| {
        s.ward(&[
            "policy",
            "eval",
            "-m",
            m.to_str().unwrap(),
            "--input",
            input,
            "--json",
        ])
    };
    let o = eval(r#"{"kind":"net.upload","dest":"uploads.acme.com","size":5242880}"#);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = eval(r#"{"kind":"net.upload","dest":"uploads.acme.com","size":20971520}"#);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["effect"], "deny");
    assert_eq!(
        v["by"],
        format!(
            "policy:{}#data.agent.security.allow_upload",
            s.path("policy.rego").display()
        )
    );
    let o = eval(r#"{"kind":"net.upload","dest":"other.com","size":5}"#);
    assert_eq!(o.status.code(), Some(1));
    let o = eval(r#"{"kind":"net.upload","dest":"uploads.acme.com","size":"big"}"#);
    assert_eq!(o.status.code(), Some(2), "bad input is a usage error");
    assert!(
        stderr(&o).starts_with("ward: the input is not an action"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn policy_test_passes_on_the_examples() {
    let s = Sandbox::new();
    let o = s.ward(&["policy", "test", "examples/policy-tests"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).trim_end().ends_with("PASS: 4/4"));
}

#[test]
fn audit_verify_tail_and_export() {
    let s = Sandbox::new();
    let log_path = s.path("state/ward/audit/audit.jsonl");
    let keys = ward_audit::KeyStore::new(s.path("config/ward/keys"));
    let log = ward_audit::AuditLog::open(
        &log_path,
        &keys,
        ward_audit::WriterOptions {
            checkpoint_every: 3,
        },
    )
    .unwrap();
    let a = ward_core::Action::upload("uploads.acme.com", 20 << 20);
    let d = ward_core::Decision::new(
        ward_core::Effect::Deny,
        ward_core::By::policy("p", "r"),
        "too big",
    );
    for _ in 0..5 {
        log.append(ward_audit::Event::action(&a, &d)).unwrap();
    }
    log.close().unwrap();

    let o = s.ward(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("head anchored"), "{}", stdout(&o));

    let o = s.ward(&["audit", "tail", "-n", "3"]);
    assert_eq!(stdout(&o).lines().count(), 3);
    let o = s.ward(&["audit", "tail", "--json"]);
    for l in stdout(&o).lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }

    let o = s.ward(&["audit", "export", "--format", "ocsf"]);
    assert!(o.status.success());
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| e["class_uid"] == 4002 && e["disposition"] == "Blocked"));
    assert!(events
        .iter()
        .all(|e| e["attestation"]["fingerprint"]["value"].is_string()));
    assert!(events
        .iter()
        .any(|e| e["attestation"]["signatures"][0]["algorithm"] == "Ed25519"));

    // Modify one record: verify names it and exits 1.
    let text = std::fs::read_to_string(&log_path)
        .unwrap()
        .replacen("too big", "fine!!!", 1);
    std::fs::write(&log_path, text).unwrap();
    let o = s.ward(&["audit", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["problem"]["line"], 2);
    assert!(v["report"]["problem"]["message"]
        .as_str()
        .unwrap()
        .contains("modified"));

    let o = s.ward(&["audit", "verify", "/nonexistent/audit.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
}

/// The manifest example in the README is a valid manifest (the README stays true).
#[test]
fn readme_manifest_example_is_valid() {
    let s = Sandbox::new();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml block") + 8;
    let end = start + readme[start..].find("```").unwrap();
    std::fs::write(
        s.path("policy.rego"),
        std::fs::read(root().join("examples/policy.rego")).unwrap(),
    )
    .unwrap();
    let m = s.path("readme.toml");
    std::fs::write(&m, &readme[start..end]).unwrap();
    let o = s.ward(&["manifest", "check", "--portable", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 grant(s), 4 destination(s), 1 rule(s), 1 policy"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn audit_tail_follows_new_records() {
    use std::io::{BufRead, BufReader};
    let s = Sandbox::new();
    let log_path = s.path("state/ward/audit/audit.jsonl");
    let keys = ward_audit::KeyStore::new(s.path("config/ward/keys"));
    let log =
        ward_audit::AuditLog::open(&log_path, &keys, ward_audit::WriterOptions::default()).unwrap();
    log.append(ward_audit::Event {
        kind: "test.before".into(),
        ..ward_audit::Event::default()
    })
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "tail", "-f", "--json", "-n", "1"])
        .env("HOME", s.path("home"))
        .env("XDG_STATE_HOME", s.path("state"))
        .env("XDG_CONFIG_HOME", s.path("config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("test.before"), "{line}");
    log.append(ward_audit::Event {
        kind: "test.after".into(),
        ..ward_audit::Event::default()
    })
    .unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["kind"], "test.after");
}

#[test]
fn secrets_are_set_from_stdin_listed_by_name_and_removed() {
    use std::io::Write;
    let s = Sandbox::new();
    let secret = "sk-test-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk";
    let set = |name: &str, input: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["secret", "set", name])
            .current_dir(root())
            .env("HOME", s.path("home"))
            .env("XDG_STATE_HOME", s.path("state"))
            .env("XDG_CONFIG_HOME", s.path("config"))
            .env_remove("WARD_KEY_DIR")
            .env_remove("WARD_AUDIT_LOG")
            .env_remove("WARD_SECRET_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let o = set("anthropic", &format!("{secret}\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("secret = \"store:anthropic\""),
        "{}",
        stdout(&o)
    );
    let o = s.ward(&["secret", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["secrets"][0]["name"], "anthropic", "{v}");
    // Sealed at rest; on record by name only.
    let store = std::fs::read_to_string(s.path("config/ward/secrets/store.json")).unwrap();
    assert!(!store.contains(secret) && store.contains("anthropic"));
    let log = std::fs::read_to_string(s.path("state/ward/audit/audit.jsonl")).unwrap();
    assert!(log.contains("secret.set") && !log.contains(secret), "{log}");
    // Nothing given, or a name a manifest could not say: refused.
    assert!(!set("empty", "").status.success());
    let o = set("a b", secret);
    assert!(
        !o.status.success() && stderr(&o).contains("not a secret's name"),
        "{}",
        stderr(&o)
    );
    assert!(s.ward(&["secret", "rm", "anthropic"]).status.success());
    let o = s.ward(&["secret", "rm", "anthropic"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&s.ward(&["secret", "list"])).contains("no secrets"));
}

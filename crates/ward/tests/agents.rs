//! The real agents under their profiles: Claude Code, Codex and Gemini CLI, pinned versions from
//! npm (scripts/agents.sh), each run with nothing but its program on the command line (and the
//! flags its own headless mode needs) up to its first call to its API. The API is not reachable
//! here: each test asserts that the call reached Ward's proxy for the agent's own host, that the
//! agent held its key variable inside, and that none of the failures a person met before the
//! profiles (not logged in, a read-only or missing home, a nested sandbox) appears.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{text, Env};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The folder scripts/agents.sh installs into.
fn agents_dir() -> PathBuf {
    std::env::var_os("WARD_AGENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/ward-agents")
        })
}

/// The agent's program, or `None` (and a loud line) where it is not installed; under CI it
/// must be.
fn agent(name: &str) -> Option<PathBuf> {
    let bin = agents_dir().join(name).join("node_modules/.bin").join(name);
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "AGENT MISSING: {} (scripts/agents.sh installs it; scripts/setup.sh calls it)",
        bin.display()
    );
    eprintln!(
        "NOT TESTED HERE: {} is not installed (bash scripts/agents.sh installs the agents)",
        bin.display()
    );
    None
}

/// The environment of a process inside the sandbox that carries `mark` (the agent or one of its
/// children): it has Ward's proxy variables, which only the inside gets.
fn inside_environ(mark: &str) -> Option<Vec<String>> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if vars.iter().any(|v| v == mark) && vars.iter().any(|v| v.starts_with("HTTPS_PROXY=")) {
            return Some(vars);
        }
    }
    None
}

struct Seen {
    output: String,
    environ: Vec<String>,
    records: Vec<serde_json::Value>,
    env: Env,
}

/// Run `args` (the agent's program first) under `ward run` with `key` in the environment until
/// the agent's call to `host` reaches Ward's proxy and its environment inside has been read;
/// then end the session with `ward kill`.
fn run_until_its_api(args: &[&str], key: (&str, &str), host: &str) -> Seen {
    let env = Env::new();
    let mark = format!("WARD_TEST_AGENT_MARK={}", std::process::id());
    let dir = agents_dir();
    let grant = format!("{}:ro", dir.display());
    let mut cmd_args = vec!["run", "--review", "discard", "--grant", &grant, "--"];
    cmd_args.extend_from_slice(args);
    let out = env.p("out.txt");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = env
        .command(&cmd_args)
        .env(key.0, key.1)
        .env("WARD_TEST_AGENT_MARK", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let want = format!("https://{host}:443");
    let start = Instant::now();
    let mut environ = None;
    let mut reached = false;
    while start.elapsed() < Duration::from_secs(120) && !(reached && environ.is_some()) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the agent ended ({status}) before its call reached the proxy:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        if environ.is_none() {
            environ = inside_environ(&mark);
        }
        reached = env.p("state/ward/audit/audit.jsonl").exists()
            && env
                .records()
                .iter()
                // Allowed: connected, or (with no DNS here) failed to resolve.
                .any(|r| {
                    (r["kind"] == "net.connect" || r["kind"] == "net.failed")
                        && r["resource"] == want.as_str()
                        && r["decision"]["result"] == "allow"
                });
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = env.records();
    let session = records
        .iter()
        .find(|r| r["kind"] == "session.start")
        .and_then(|r| r["session"].as_str())
        .expect("the session started")
        .to_string();
    let k = env.ward(&["kill", &session]);
    child.wait().unwrap();
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        reached,
        "no call to {want} reached the proxy in 120 s; output:\n{output}\nkill: {}",
        text(&k)
    );
    Seen {
        output,
        environ: environ.expect("the agent's environment inside was read"),
        records: env.records(),
        env,
    }
}

/// What every agent must show: its profile chosen by its name, its key kept and held inside,
/// its own home, and none of the errors of an agent Ward broke.
fn check(seen: &Seen, profile: &str, key: (&str, &str)) {
    let start = seen
        .records
        .iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert_eq!(start["detail"]["profile"]["name"], profile);
    // Its key's variable: the real value taken out (on the start record's list), a
    // placeholder put in.
    let removed = start["detail"]["env_removed"].to_string();
    assert!(
        removed.contains(key.0),
        "{} was passed as it was: {removed}",
        key.0
    );
    // It holds a placeholder of its key's shape, never the key (the profile's credential).
    let held = seen
        .environ
        .iter()
        .find_map(|kv| kv.strip_prefix(&format!("{}=", key.0)))
        .unwrap_or_else(|| panic!("the agent holds no {} inside", key.0));
    assert_eq!(held.len(), key.1.len(), "{held}");
    assert_ne!(held, key.1, "the agent holds the real key");
    assert!(
        !seen.environ.iter().any(|kv| kv.contains(key.1)),
        "the real key is in the agent's environment"
    );
    // And it trusts the session's authority, which the proxy's TLS toward its API is from.
    assert!(
        seen.environ
            .iter()
            .any(|kv| kv.starts_with("SSL_CERT_FILE=")),
        "{:?}",
        seen.environ
    );
    let home = format!("HOME={}", seen.env.p("home").display());
    assert!(seen.environ.contains(&home), "HOME is the person's path");
    assert!(
        seen.env.p(&format!("state/ward/homes/{profile}")).is_dir(),
        "the agent's home is kept under Ward's state"
    );
    for bad in [
        "Not logged in",
        "Read-only file system",
        "EROFS",
        "ENOENT",
        "Please set an Auth method",
        "bwrap",
        "not inside the sandbox",
    ] {
        assert!(
            !seen.output.contains(bad),
            "`{bad}` in the agent's output:\n{}",
            seen.output
        );
    }
}

#[test]
fn claude_code_reaches_its_api_with_its_key_under_its_profile() {
    let Some(claude) = agent("claude") else {
        return;
    };
    let key = ("ANTHROPIC_API_KEY", "sk-ant-api03-ward-test-not-a-real-key");
    let seen = run_until_its_api(
        &[claude.to_str().unwrap(), "-p", "say hello"],
        key,
        "api.anthropic.com",
    );
    check(&seen, "claude", key);
    // The profile's settings reach it: no telemetry or update checks to be refused.
    assert!(seen
        .environ
        .contains(&"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".to_string()));
}

#[test]
fn codex_reaches_its_api_with_its_key_and_its_own_sandbox_off() {
    let Some(codex) = agent("codex") else {
        return;
    };
    let key = ("OPENAI_API_KEY", "sk-proj-ward-test-not-a-real-key");
    let seen = run_until_its_api(
        &[
            codex.to_str().unwrap(),
            "exec",
            "--skip-git-repo-check",
            "say hello",
        ],
        key,
        "api.openai.com",
    );
    check(&seen, "codex", key);
    let config =
        std::fs::read_to_string(seen.env.p("state/ward/homes/codex/.codex/config.toml")).unwrap();
    assert!(config.contains("sandbox_mode = \"danger-full-access\""));
}

#[test]
fn gemini_cli_reaches_its_api_with_its_key_under_its_profile() {
    let Some(gemini) = agent("gemini") else {
        return;
    };
    let key = ("GEMINI_API_KEY", "AIza-ward-test-not-a-real-key");
    let seen = run_until_its_api(
        &[gemini.to_str().unwrap(), "--skip-trust", "-p", "say hello"],
        key,
        "generativelanguage.googleapis.com",
    );
    check(&seen, "gemini", key);
    assert!(seen.environ.contains(&"GEMINI_SANDBOX=false".to_string()));
}

//! Exec rules (issue 16): a session that execs 10,000 short processes, with exec rules in force
//! (every exec held and decided by the broker, the denied file also refused by Landlock)
//! against the same session without them; and a decision through the broker against the
//! decision point alone. Target: <= 1.3x for the session, <= 2 us added p50 for the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};
use ward_core::{Action, ActionKind, LoadOptions, Manifest};

const EXECS: usize = 10_000;

pub fn run() {
    sessions();
    broker();
}

fn sessions() {
    let world = crate::world::World::new();
    let (dir, proj) = (&world.home, &world.proj);
    let grant = format!(
        "name = \"bench\"\n[[files]]\npath = \"{}\"\nmode = \"direct\"\n",
        proj.display()
    );
    std::fs::write(dir.join("plain.toml"), &grant).unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        format!(
            "{grant}[[rules]]\naction = \"exec\"\neffect = \"deny\"\nresource = \"/usr/bin/curl\"\n\
             [[rules]]\naction = \"exec\"\neffect = \"deny\"\nresource = \"/opt/**\"\n"
        ),
    )
    .unwrap();
    let script = format!("i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done");
    let session = |manifest: &str| -> Duration {
        let t = Instant::now();
        let manifest = dir.join(manifest);
        let st = world
            .ward(&["run", "--review", "keep", "-m"])
            .arg(&manifest)
            .args(["--", "/bin/sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{}: {st}", manifest.display());
        t.elapsed()
    };
    let direct = || {
        let t = Instant::now();
        let st = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed()
    };
    // Interleaved rounds, best of each: the machine's noise hits both alike.
    let (mut bare, mut plain, mut rules) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        bare = bare.min(direct());
        plain = plain.min(session("plain.toml"));
        rules = rules.min(session("rules.toml"));
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / EXECS as f64;
    println!("== {EXECS} execs of /bin/true from a shell, best of 3 ==");
    println!(
        "  no sandbox               {:>8.0} ms  ({:.0} us/exec)",
        bare.as_secs_f64() * 1e3,
        per(bare)
    );
    println!(
        "  ward run, no exec rules  {:>8.0} ms  ({:.0} us/exec)",
        plain.as_secs_f64() * 1e3,
        per(plain)
    );
    println!(
        "  ward run, exec rules     {:>8.0} ms  ({:.0} us/exec)",
        rules.as_secs_f64() * 1e3,
        per(rules)
    );
    println!(
        "  with rules / without: {:.2}x (target <= 1.30x); added per exec {:.0} us",
        rules.as_secs_f64() / plain.as_secs_f64(),
        per(rules) - per(plain)
    );
}

fn broker() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(
        dir.path().join("ward.toml"),
        format!(
            "[[files]]\npath = \"{}\"\n[network]\nallow = [\"https://api.acme.com\"]\n\
             [[rules]]\naction = \"exec\"\neffect = \"deny\"\nresource = \"/usr/bin/curl\"\n",
            proj.display()
        ),
    )
    .unwrap();
    let m = Manifest::load(
        &dir.path().join("ward.toml"),
        &LoadOptions {
            managed: vec![],
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let mut pdp = ward_policy::Pdp::new(m).unwrap();
    let log = ward_audit::AuditLog::open(
        &dir.path().join("log/audit.jsonl"),
        &ward_audit::KeyStore::new(dir.path().join("keys")),
        ward_audit::WriterOptions::default(),
    )
    .unwrap();
    let broker = ward_broker::Broker::new(ward_broker::Config {
        pdp: pdp.clone(),
        log: Arc::new(log),
        session: Some("bench".into()),
        agent: None,
        channels: vec![],
        ask_timeout: Duration::from_secs(1),
        always: None,
    });
    let actions = [
        Action::new(
            ActionKind::FileRead,
            proj.join("src/lib.rs").display().to_string(),
        ),
        Action::new(ActionKind::Exec, "/usr/bin/true"),
        Action {
            dest: Some("api.acme.com".into()),
            port: Some(443),
            scheme: Some("https".into()),
            ..Action::new(ActionKind::NetConnect, "https://api.acme.com:443")
        },
    ];
    println!("== a decision on an allowed action, p50 ==");
    for a in &actions {
        let alone = crate::p50_ns(2000, 200, || {
            std::hint::black_box(pdp.decide(std::hint::black_box(a)));
        });
        let through = crate::p50_ns(2000, 200, || {
            std::hint::black_box(broker.resolve(std::hint::black_box(a), "k", |_| String::new()));
        });
        println!(
            "  {:<12} decision point {:>7.0} ns  broker {:>7.0} ns  added {:>5.0} ns (target <= 2000)",
            a.kind.as_str(),
            alone,
            through,
            through - alone
        );
    }
}

//! Crash consistency: a writer killed with SIGKILL mid-append leaves a log that verifies up to
//! its last complete record, loses nothing it acknowledged, and is repaired by the next writer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::Fixture;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use ward_audit::{verify, AuditLog, Event, KeyStore, WriterOptions};

const CHILD_ENV: &str = "WARD_AUDIT_CRASH_CHILD";

/// Not a test of its own: the body the crash test runs in a child process (it re-executes this
/// test binary). Appends from four threads until killed, printing each acknowledged number.
#[test]
fn crash_helper_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let log = AuditLog::open(
        &dir.join("state/audit.jsonl"),
        &KeyStore::new(dir.join("keys")),
        WriterOptions {
            checkpoint_every: 50,
        },
    )
    .unwrap();
    let base: u64 = std::env::var("WARD_AUDIT_CRASH_BASE")
        .unwrap()
        .parse()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let log = &log;
            s.spawn(move || {
                let mut out = std::io::stdout();
                for i in 0.. {
                    let n = base + t * 1_000_000 + i;
                    let ev = Event {
                        detail: Some(
                            serde_json::json!({"n": n, "pad": "x".repeat((i % 300) as usize)}),
                        ),
                        ..Event {
                            kind: "test.crash".into(),
                            ..Event::default()
                        }
                    };
                    log.append(ev).unwrap();
                    use std::io::Write;
                    writeln!(out, "{n}").unwrap();
                }
            });
        }
    });
}

#[test]
fn sigkill_during_appends_loses_nothing_acknowledged() {
    let f = Fixture::new();
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = Vec::new();
    let mut torn_seen = 0;
    let mut unsigned_seen = 0;
    for round in 0..12u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_helper_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, f.dir.path())
            .env("WARD_AUDIT_CRASH_BASE", (round * 10_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first acknowledged append (a loaded machine can take a while to start
        // the child), then let it run for a while and kill it mid-stream.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // (libtest prints its own lines first.)
        loop {
            let mut first = String::new();
            assert!(
                out.read_line(&mut first).unwrap() > 0,
                "the child ended before appending"
            );
            if let Ok(n) = first.trim().parse::<u64>() {
                acknowledged.push(n);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20 + round * 13 % 70));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in out.lines() {
            if let Ok(n) = line.unwrap_or_default().trim().parse::<u64>() {
                acknowledged.push(n);
            }
        }
        let log = f.dir.path().join("state/audit.jsonl");
        let keys = KeyStore::new(f.dir.path().join("keys"));
        let id = ward_audit::log_id_of(&std::fs::read(&log).unwrap()).unwrap();
        let anchor = keys.read_anchor(&id).unwrap();
        let r = verify(
            &log,
            &keys.verifying_key().unwrap().unwrap(),
            anchor.as_ref(),
        )
        .unwrap();
        assert!(r.ok(), "round {round}: {r:?}");
        if r.warnings.iter().any(|w| w.contains("incomplete record")) {
            torn_seen += 1;
        }
        if r.beyond_anchor > 0 {
            unsigned_seen += 1;
        }
    }
    assert!(
        acknowledged.len() > 100,
        "the child barely wrote: {}",
        acknowledged.len()
    );

    // A last writer repairs any torn tail and closes the log cleanly.
    let log_path = f.dir.path().join("state/audit.jsonl");
    let keys = KeyStore::new(f.dir.path().join("keys"));
    let log = AuditLog::open(&log_path, &keys, WriterOptions::default()).unwrap();
    log.append(Event {
        kind: "test.after".into(),
        ..Event::default()
    })
    .unwrap();
    log.close().unwrap();
    let id = ward_audit::log_id_of(&std::fs::read(&log_path).unwrap()).unwrap();
    let r = verify(
        &log_path,
        &keys.verifying_key().unwrap().unwrap(),
        keys.read_anchor(&id).unwrap().as_ref(),
    )
    .unwrap();
    assert!(r.ok() && r.warnings.is_empty(), "{r:?}");

    let recorded: std::collections::HashSet<u64> = ward_audit::read_records(&log_path)
        .unwrap()
        .iter()
        .filter_map(|(_, v)| v["detail"]["n"].as_u64())
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|n| !recorded.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records are missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Each torn tail was cut off, and each run of unsigned records adopted, with a record.
    let records = ward_audit::read_records(&log_path).unwrap();
    let notes = |key: &str| {
        records
            .iter()
            .filter(|(_, v)| v["kind"] == "audit.recovered" && !v["detail"][key].is_null())
            .count()
    };
    assert_eq!(notes("discarded_bytes"), torn_seen);
    assert_eq!(notes("adopted_records"), unsigned_seen);
    eprintln!(
        "crash rounds: 12, acknowledged {}, torn tails {torn_seen}, unsigned runs {unsigned_seen}",
        acknowledged.len()
    );
}

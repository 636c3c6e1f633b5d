//! The writer: reopening, group commit under concurrency, several writers on one log, and
//! failing closed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::{event, Fixture};
use std::os::unix::fs::PermissionsExt;
use ward_audit::{verify, AuditError, AuditLog, KeyStore, WriterOptions};

#[test]
fn reopening_continues_the_same_chain() {
    let f = Fixture::new();
    let log = f.open(1000);
    let id = log.log_id().to_string();
    for i in 0..3 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    let log = f.open(1000);
    assert_eq!(log.log_id(), id);
    log.append_all((3..5).map(event).collect()).unwrap();
    log.close().unwrap();
    let r = verify(&f.log, &f.vk(), Some(&f.anchor())).unwrap();
    assert!(r.ok() && r.anchored, "{r:?}");
    assert_eq!(r.records, 1 + 3 + 1 + 2 + 1);
    assert_eq!(r.checkpoints, 2);
}

#[test]
fn concurrent_appends_are_all_recorded() {
    let f = Fixture::new();
    let log = f.open(100);
    std::thread::scope(|s| {
        for t in 0..8 {
            let log = &log;
            s.spawn(move || {
                for i in 0..250 {
                    log.append(event(t * 1000 + i)).unwrap();
                }
            });
        }
    });
    log.close().unwrap();
    let r = verify(&f.log, &f.vk(), Some(&f.anchor())).unwrap();
    assert!(r.ok(), "{r:?}");
    let recs = ward_audit::read_records(&f.log).unwrap();
    let events = recs
        .iter()
        .filter(|(_, v)| v["kind"] == "file.read")
        .count();
    assert_eq!(events, 2000);
    assert_eq!(r.checkpoints, 2000 / 100 + 1, "{r:?}");
}

#[test]
fn two_writers_share_one_log() {
    let f = Fixture::new();
    let a = f.open(7);
    let b = f.open(7);
    for i in 0..20 {
        a.append(event(i)).unwrap();
        b.append(event(100 + i)).unwrap();
    }
    a.close().unwrap();
    b.close().unwrap();
    let r = verify(&f.log, &f.vk(), Some(&f.anchor())).unwrap();
    assert!(r.ok(), "{r:?}");
    let events = ward_audit::read_records(&f.log)
        .unwrap()
        .iter()
        .filter(|(_, v)| v["kind"] == "file.read")
        .count();
    assert_eq!(events, 40);
}

#[test]
fn a_truncated_log_is_not_extended() {
    let f = Fixture::new();
    let log = f.open(1000);
    log.append_all((0..5).map(event).collect()).unwrap();
    log.close().unwrap();
    let data = std::fs::read(&f.log).unwrap();
    let cut = data[..data.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    std::fs::write(&f.log, &data[..cut]).unwrap();
    let err = AuditLog::open(&f.log, &f.keys, WriterOptions::default())
        .err()
        .expect("opened a truncated log");
    assert!(matches!(err, AuditError::Tampered { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn a_key_inside_the_log_directory_is_refused() {
    let f = Fixture::new();
    let keys = KeyStore::new(f.log.parent().unwrap().join("keys"));
    let err = AuditLog::open(&f.log, &keys, WriterOptions::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("inside the log directory"),
        "{err}"
    );
}

#[test]
fn the_key_is_private_and_a_readable_key_is_refused() {
    let f = Fixture::new();
    drop(f.open(10));
    let key = f.keys.dir.join("audit-signing.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(&f.keys.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dmode, 0o700);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = AuditLog::open(&f.log, &f.keys, WriterOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("readable by others"), "{err}");
}

#[test]
fn a_failed_write_is_an_error_and_poisons_the_log() {
    // /dev/full fails every write with ENOSPC: opening a log there cannot record its first record.
    let keys = Fixture::new().keys;
    let err = AuditLog::open(
        std::path::Path::new("/dev/full"),
        &keys,
        WriterOptions::default(),
    );
    assert!(err.is_err(), "a log that cannot be written must not open");

    // After opening, make the anchor impossible to write (a file where its directory should be;
    // this holds even for root): the append fails, and so does every later one.
    let f = Fixture::new();
    let log = f.open(1000);
    log.append(event(0)).unwrap();
    std::fs::remove_dir_all(f.keys.dir.join("anchors")).unwrap();
    std::fs::write(f.keys.dir.join("anchors"), b"not a directory").unwrap();
    assert!(log.append(event(1)).is_err());
    assert!(matches!(log.append(event(2)), Err(AuditError::Poisoned(_))));
}

#[test]
fn a_decision_whose_record_fails_becomes_a_deny() {
    use ward_core::{Action, Decision, Effect};
    let f = Fixture::new();
    let log = f.open(1000);
    let a = Action::upload("uploads.acme.com", 10);
    let allow = Decision::new(Effect::Allow, ward_core::By::manifest("x"), "listed");
    assert_eq!(log.record_decision(&a, allow.clone()), allow);
    // Break the log (see above): the same allow now comes back as a deny.
    std::fs::remove_dir_all(f.keys.dir.join("anchors")).unwrap();
    std::fs::write(f.keys.dir.join("anchors"), b"not a directory").unwrap();
    let d = log.record_decision(&a, allow);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.by, "builtin:audit");
    assert!(d.reason.contains("could not record"), "{}", d.reason);
}

#[test]
fn close_with_records_the_last_event_and_the_final_checkpoint_together() {
    let f = Fixture::new();
    let log = f.open(1000);
    log.append(event(0)).unwrap();
    log.close_with(ward_audit::Event::new(ward_core::EventKind::SessionExit))
        .unwrap();
    let recs = ward_audit::read_records(&f.log).unwrap();
    let kinds: Vec<&str> = recs
        .iter()
        .map(|(_, v)| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "audit.open",
            "file.read",
            "session.exit",
            "audit.checkpoint"
        ]
    );
    let r = verify(&f.log, &f.vk(), Some(&f.anchor())).unwrap();
    assert!(r.ok() && r.anchored && r.signed == 3, "{r:?}");
}

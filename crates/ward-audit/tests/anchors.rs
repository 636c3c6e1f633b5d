//! What the anchors catch beyond the chain: records appended without the key, a log replaced
//! by another, a log deleted and started afresh.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::{event, forge_append, Fixture};
use ward_audit::{verify_log, AuditError, AuditLog, WriterOptions};

#[test]
fn records_appended_without_the_key_are_reported_then_adopted_visibly() {
    let f = Fixture::new();
    let log = f.open(1000);
    log.append_all((0..3).map(event).collect()).unwrap();
    log.close().unwrap();
    forge_append(&f.log, 2);

    let r = verify_log(&f.log, &f.keys, None).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.beyond_anchor, 2);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("come after the signed head")),
        "{:?}",
        r.warnings
    );

    let log = f.open(1000);
    log.append(event(9)).unwrap();
    log.close().unwrap();
    let recs = ward_audit::read_records(&f.log).unwrap();
    let note = recs
        .iter()
        .find(|(_, v)| v["kind"] == "audit.recovered")
        .expect("adoption recorded");
    assert_eq!(note.1["detail"]["adopted_records"], 2);
    let r = verify_log(&f.log, &f.keys, None).unwrap();
    assert!(r.ok() && r.beyond_anchor == 0, "{r:?}");
}

#[test]
fn a_replaced_log_is_refused_and_reported() {
    let f = Fixture::new();
    let log = f.open(1000);
    log.append_all((0..3).map(event).collect()).unwrap();
    log.close().unwrap();
    let original = std::fs::read(&f.log).unwrap();

    // Build another log elsewhere (same key directory) and put it in the original's place.
    let other = f.dir.path().join("state/other/audit.jsonl");
    let o = AuditLog::open(&other, &f.keys, WriterOptions::default()).unwrap();
    o.append(event(100)).unwrap();
    o.close().unwrap();
    std::fs::copy(&other, &f.log).unwrap();

    let r = verify_log(&f.log, &f.keys, None).unwrap();
    let p = r.problem.expect("a replaced log must not verify");
    assert!(p.message.contains("was replaced"), "{}", p.message);
    let err = AuditLog::open(&f.log, &f.keys, WriterOptions::default())
        .err()
        .expect("opened a replaced log");
    assert!(
        matches!(err, AuditError::Tampered { .. }) && err.to_string().contains("replaced"),
        "{err}"
    );

    std::fs::write(&f.log, original).unwrap();
    assert!(verify_log(&f.log, &f.keys, None).unwrap().ok());
}

#[test]
fn a_deleted_log_is_named_by_its_successor() {
    let f = Fixture::new();
    let log = f.open(1000);
    let old_id = log.log_id().to_string();
    log.append_all((0..3).map(event).collect()).unwrap();
    log.close().unwrap();
    let moved = f.dir.path().join("moved.jsonl");
    std::fs::rename(&f.log, &moved).unwrap();

    let log = f.open(1000);
    assert_ne!(log.log_id(), old_id);
    log.close().unwrap();
    let first = &ward_audit::read_records(&f.log).unwrap()[0].1;
    assert_eq!(first["detail"]["previous"][0]["log_id"], old_id.as_str());
    assert_eq!(first["detail"]["previous"][0]["records"], 5);
    let r = verify_log(&f.log, &f.keys, None).unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("went missing")),
        "{:?}",
        r.warnings
    );

    // The old log, moved aside, still verifies against its retired anchor.
    let r = verify_log(&moved, &f.keys, None).unwrap();
    assert!(r.ok() && r.anchored, "{r:?}");
}

#[test]
fn a_torn_final_record_is_reported_then_cut_off_with_a_note() {
    let f = Fixture::new();
    let log = f.open(1000);
    log.append_all((0..3).map(event).collect()).unwrap();
    log.close().unwrap();
    // What a write cut short by a crash (or power loss) leaves: part of a line, no newline.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f.log)
        .unwrap()
        .write_all(b"{\"seq\":6,\"ts\":\"2026-11-25T00:00:00.000000Z\",\"kind\":\"file.re")
        .unwrap();
    let r = verify_log(&f.log, &f.keys, None).unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("incomplete record")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        ward_audit::read_records(&f.log).unwrap().len(),
        5,
        "the torn line is not a record"
    );

    let log = f.open(1000);
    log.append(event(7)).unwrap();
    log.close().unwrap();
    let recs = ward_audit::read_records(&f.log).unwrap();
    let note = recs
        .iter()
        .find(|(_, v)| v["kind"] == "audit.recovered")
        .expect("repair recorded");
    assert_eq!(note.1["detail"]["discarded_bytes"], 59);
    let r = verify_log(&f.log, &f.keys, None).unwrap();
    assert!(r.ok() && r.warnings.is_empty(), "{r:?}");
}

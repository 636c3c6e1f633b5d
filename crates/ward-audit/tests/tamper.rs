//! Every kind of tampering with a small closed log is detected, at the right record:
//! each byte flipped, each line dropped, each pair swapped, each line duplicated, truncation at
//! every offset, and a forged rewrite with recomputed hashes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::{event, Fixture};
use sha2::{Digest, Sha256};
use ward_audit::keys::Anchor;
use ward_audit::verify_bytes;

fn small_log() -> (Fixture, Vec<u8>, Anchor) {
    let f = Fixture::new();
    let log = f.open(4);
    for i in 0..10 {
        log.append(event(i)).unwrap();
    }
    log.close().unwrap();
    let data = std::fs::read(&f.log).unwrap();
    let anchor = f.anchor();
    (f, data, anchor)
}

fn lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|&b| b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

/// 1-based number of the line holding byte `i` (a newline belongs to the line it ends).
fn line_of(data: &[u8], i: usize) -> u64 {
    data[..i].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

#[test]
fn the_untouched_log_verifies() {
    let (f, data, anchor) = small_log();
    let r = verify_bytes(&data, &f.vk(), Some(&anchor));
    assert!(r.ok(), "{r:?}");
    assert!(r.anchored);
    // 1 open + 10 events + checkpoints after every 4 records + the final one.
    assert_eq!(r.records, lines(&data).len() as u64);
    assert!(r.checkpoints >= 3, "{r:?}");
    assert_eq!(
        r.signed,
        r.records - 1,
        "the final checkpoint covers everything before it"
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn flipping_any_byte_is_detected_at_its_record() {
    let (f, data, anchor) = small_log();
    let vk = f.vk();
    for i in 0..data.len() {
        let mut d = data.clone();
        d[i] ^= 0x01;
        let r = verify_bytes(&d, &vk, Some(&anchor));
        let p = r
            .problem
            .unwrap_or_else(|| panic!("flip at byte {i} went unnoticed"));
        assert_eq!(p.line, line_of(&data, i), "flip at byte {i}: {}", p.message);
    }
}

#[test]
fn dropping_any_line_is_detected() {
    let (f, data, anchor) = small_log();
    let ls = lines(&data);
    for k in 0..ls.len() {
        let d: Vec<u8> = ls
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != k)
            .flat_map(|(_, l)| l.clone())
            .collect();
        let p = verify_bytes(&d, &f.vk(), Some(&anchor))
            .problem
            .expect("drop unnoticed");
        assert_eq!(
            p.line,
            k as u64 + 1,
            "dropping line {}: {}",
            k + 1,
            p.message
        );
    }
}

#[test]
fn swapping_any_two_lines_is_detected() {
    let (f, data, anchor) = small_log();
    let ls = lines(&data);
    for a in 0..ls.len() {
        for b in a + 1..ls.len() {
            let mut v = ls.clone();
            v.swap(a, b);
            let p = verify_bytes(&v.concat(), &f.vk(), Some(&anchor))
                .problem
                .expect("swap unnoticed");
            assert_eq!(p.line, a as u64 + 1, "swap {a}<->{b}: {}", p.message);
        }
    }
}

#[test]
fn inserting_a_copy_of_any_line_is_detected() {
    let (f, data, anchor) = small_log();
    let ls = lines(&data);
    for k in 0..ls.len() {
        let mut v = ls.clone();
        v.insert(k + 1, ls[k].clone());
        let p = verify_bytes(&v.concat(), &f.vk(), Some(&anchor))
            .problem
            .expect("insert unnoticed");
        assert_eq!(
            p.line,
            k as u64 + 2,
            "duplicate of line {}: {}",
            k + 1,
            p.message
        );
    }
}

#[test]
fn truncating_at_any_offset_is_detected() {
    let (f, data, anchor) = small_log();
    for t in 0..data.len() {
        let r = verify_bytes(&data[..t], &f.vk(), Some(&anchor));
        let p = r
            .problem
            .unwrap_or_else(|| panic!("truncation at {t} unnoticed"));
        assert_eq!(
            p.line,
            line_of(&data, t),
            "truncation at {t}: {}",
            p.message
        );
    }
}

/// An attacker who edits a record and recomputes every hash after it keeps the chain intact,
/// but cannot sign a checkpoint over the new Merkle root.
#[test]
fn a_rewritten_chain_fails_its_checkpoint_signature() {
    let (f, data, anchor) = small_log();
    let mut ls: Vec<String> = lines(&data)
        .into_iter()
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    ls[2] = ls[2].replace("file-1.txt", "file-X.txt");
    let mut prev = "0".repeat(64);
    for l in ls.iter_mut() {
        let body_end = l.rfind(",\"hash\":\"").unwrap();
        let prev_at = l[..body_end].rfind(",\"prev\":\"").unwrap();
        let body = format!("{},\"prev\":\"{prev}\"", &l[..prev_at]);
        let hash: String = Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        *l = format!("{body},\"hash\":\"{hash}\"}}\n");
        prev = hash;
    }
    let forged = ls.concat();
    let r = verify_bytes(forged.as_bytes(), &f.vk(), None);
    let p = r.problem.expect("forgery unnoticed");
    assert!(p.message.contains("checkpoint"), "{}", p.message);
    assert!(p.message.contains("Merkle root"), "{}", p.message);
    // With the anchor as well, the very same forgery is still caught (first at the checkpoint).
    assert!(verify_bytes(forged.as_bytes(), &f.vk(), Some(&anchor))
        .problem
        .is_some());
}

#[test]
fn another_key_does_not_verify() {
    let (_f, data, anchor) = small_log();
    let other = Fixture::new();
    drop(other.open(10));
    let r = verify_bytes(&data, &other.vk(), Some(&anchor));
    assert!(r.problem.unwrap().message.contains("signature"));
}

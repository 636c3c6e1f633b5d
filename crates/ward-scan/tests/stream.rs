//! A stream in pieces, or a buffer scanned as it grows, finds what one whole scan finds, at the
//! same offsets and lines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use ward_scan::{base62_checksum, GrowingScan, Scanner, StreamScanner};

fn corpus() -> Vec<u8> {
    let payload = "Zq3VUuA8mEJbXkPp1Lw0cT9rYnHs2G";
    let gh = format!("ghp_{payload}{}", base62_checksum(payload.as_bytes()));
    let mut s = String::new();
    for i in 0..40_000 {
        s.push_str(&format!(
            "line {i}: nothing to see here, just words and numbers {i}\n"
        ));
        if i % 9_973 == 17 {
            s.push_str(&format!("export GITHUB_TOKEN={gh}\n"));
            s.push_str("IBAN: GB82 WEST 1234 5698 7654 32\n");
        }
    }
    s.into_bytes()
}

#[test]
fn pieces_find_what_the_whole_finds() {
    let scanner = Scanner::builtin();
    let data = corpus();
    let whole = scanner.scan(&data);
    assert_eq!(whole.iter().filter(|f| f.rule == "github-pat").count(), 5);
    assert!(whole.iter().any(|f| f.rule == "iban"));
    for piece in [1usize, 7, 4096, 65_537, 1 << 20] {
        let mut s = StreamScanner::new(&scanner);
        let mut got = Vec::new();
        for c in data.chunks(piece) {
            got.extend(s.push(c));
        }
        got.extend(s.finish());
        assert_eq!(got, whole, "pieces of {piece} bytes");
    }
}

#[test]
fn a_confirmed_checksum_is_high_confidence_and_the_excerpt_hides_the_secret() {
    let scanner = Scanner::builtin();
    let data = corpus();
    let f = scanner
        .scan(&data)
        .into_iter()
        .find(|f| f.rule == "github-pat")
        .unwrap();
    assert_eq!(f.confidence, ward_scan::Confidence::High);
    let secret = std::str::from_utf8(&data[f.start..f.end]).unwrap();
    assert!(!f.excerpt.contains(&secret[4..]), "{}", f.excerpt);
    assert!(
        f.excerpt.starts_with("export GITHUB_TOKEN=ghp_"),
        "{}",
        f.excerpt
    );
    assert_eq!(f.line, 19);
}

/// The planted secrets of every rule family (tests/data/secrets), one buffer.
fn planted() -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/secrets");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut all = Vec::new();
    for f in files {
        all.extend(std::fs::read(f).unwrap());
        all.push(b'\n');
    }
    all
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_growing_buffer_finds_what_the_whole_finds() {
    let scanner = Scanner::builtin();
    for data in [planted(), corpus()] {
        let whole = scanner.scan(&data);
        assert!(whole.len() >= 5, "the corpus has findings");
        for piece in [1usize, 7, 4093, 65_537, 1 << 20] {
            // One byte at a time over the first 64 KiB only (a call per byte is slow).
            let data = if piece == 1 {
                &data[..data.len().min(64 << 10)]
            } else {
                &data[..]
            };
            let whole = scanner.scan(data);
            let mut g = GrowingScan::new(&scanner);
            let mut end = 0;
            while end < data.len() {
                end = (end + piece).min(data.len());
                g.grew(&data[..end]);
            }
            assert_eq!(g.finish(data), whole, "pieces of {piece} bytes");
        }
    }
}

#[test]
#[should_panic(expected = "shrank")]
fn a_growing_scan_refuses_a_buffer_that_shrank() {
    let scanner = Scanner::builtin();
    let mut g = GrowingScan::new(&scanner);
    g.grew(b"some bytes here");
    g.grew(b"some");
}

//! A stream in pieces finds what one whole scan finds, at the same offsets and lines.

use ward_scan::{base62_checksum, Scanner, StreamScanner};

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

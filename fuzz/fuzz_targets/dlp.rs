//! Data-loss prevention on arbitrary requests: a `Content-Encoding` value (the first line) and
//! a body (the rest) are decoded and scanned with bounded work, host names and targets are
//! judged, request paths read (path rules, git pushes), and nothing panics. Every decoded view stays within the budget it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_scan::decode;

fuzz_target!(|data: &[u8]| {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(c) = decode::codings(first) {
        if let Ok(out) = decode::undo(rest, &c, 1 << 20) {
            assert!(out.len() <= 1 << 20);
        }
    }
    let budget = 4 * rest.len() + 4096;
    let mut b = decode::Budget::new(budget);
    let mut total = 0;
    decode::views(rest, &mut b, &mut |v, how| {
        assert!(!how.is_empty() && how.len() <= decode::MAX_DEPTH as usize);
        total += v.len();
    });
    assert!(total <= budget, "{total} decoded bytes past a budget of {budget}");
    let marks = [("k".to_string(), "sk-test-placeholder".to_string())];
    let _ = ward_net::dlp::body(rest, Some(first), "example.com", &marks);
    let text = String::from_utf8_lossy(first);
    let _ = ward_net::dlp::host(&text);
    let _ = ward_net::dlp::redact(&text);
    // Request targets as path rules and git-aware egress read them.
    let _ = ward_core::plain_path(&text);
    let _ = ward_core::git_push_repo(&text);
    if let Ok(p) = ward_core::PathPattern::parse(&text) {
        let _ = p.matches(&String::from_utf8_lossy(rest), true);
    }
});

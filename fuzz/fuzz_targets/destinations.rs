//! The small parsers of manifest values: destinations, sizes, globs and action kinds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = ward_core::Destination::parse(text) {
        // What parses prints back to something that parses to the same destination.
        let again = ward_core::Destination::parse(&d.to_string()).expect("round trip");
        assert_eq!(again, d);
    }
    let _ = ward_core::size::parse_size(text);
    let _ = text.parse::<ward_core::ActionKind>();
    let mid = text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap_or(0);
    let (a, b) = text.split_at(mid);
    if a.len() < 64 && a.matches("**").count() < 4 {
        let _ = ward_core::glob::matches(a, b);
        let _ = ward_core::glob::deny_covers(a, b);
    }
    // Matching an untrusted host against a destination the manifest names.
    for pattern in ["https://*.acme.com", "https://api.acme.com", "http://10.0.0.1:8080", "https://[::1]"] {
        let d = ward_core::Destination::parse(pattern).expect("valid pattern");
        let _ = d.matches("https", text, 443);
        let _ = d.host.within(&ward_core::HostPattern::Name(text.to_string()));
    }
});

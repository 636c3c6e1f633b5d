//! The rule loader and compiler on arbitrary TOML: an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut set = ward_scan::RuleSet::default();
    if set.add_toml("fuzz.toml", text).is_ok() {
        if let Ok(scanner) = ward_scan::Scanner::new(&set) {
            let _ = scanner.scan(text.as_bytes());
        }
    }
});

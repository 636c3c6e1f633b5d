//! The built-in rules on arbitrary bytes, whole, streamed in pieces and as a growing buffer: no
//! panic, findings inside the data, and the growing buffer reports exactly what the whole-buffer
//! scan reports.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SCANNER: OnceLock<ward_scan::Scanner> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scanner = SCANNER.get_or_init(ward_scan::Scanner::builtin);
    let whole = scanner.scan(data);
    for f in &whole {
        assert!(f.start <= f.end && f.end <= data.len());
    }
    let cut = data.first().map_or(1, |&b| b as usize + 1);
    let mut stream = ward_scan::StreamScanner::new(scanner);
    let mut got = Vec::new();
    for piece in data.chunks(cut) {
        got.extend(stream.push(piece));
    }
    got.extend(stream.finish());
    for f in &got {
        assert!(f.start <= f.end && f.end <= data.len());
    }
    let mut growing = ward_scan::GrowingScan::new(scanner);
    let mut end = 0;
    while end < data.len() {
        end = (end + cut).min(data.len());
        growing.grew(&data[..end]);
    }
    assert_eq!(growing.finish(data), whole);
});

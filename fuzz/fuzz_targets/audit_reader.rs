//! The audit log reader: verification of arbitrary bytes reports a problem or a warning, never
//! panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let r = ward_audit::verify_bytes(data, &vk, None);
    // Verified records can never exceed the lines present.
    assert!(r.records as usize <= data.iter().filter(|&&b| b == b'\n').count());
    let _ = ward_audit::log_id_of(data);
});

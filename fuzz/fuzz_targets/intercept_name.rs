//! The name a CONNECT asks for, made into the name of a leaf certificate: never a panic; a
//! name accepted is lower case without a trailing dot, and the authority makes a certificate
//! for it (the first few hundred accepted names: minting is slow for a fuzzer).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static AUTHORITY: OnceLock<ward_net::intercept::Authority> = OnceLock::new();
static MINTED: AtomicUsize = AtomicUsize::new(0);

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = ward_net::intercept::certified_name(s) {
        assert!(!n.ends_with('.') && n == n.to_ascii_lowercase(), "{n:?}");
        if MINTED.fetch_add(1, Ordering::Relaxed) < 300 {
            let a = AUTHORITY
                .get_or_init(|| ward_net::intercept::Authority::new("fuzz", &[b"http/1.1"]).unwrap());
            a.server_config(s).unwrap();
        }
    }
});

//! The bytes PID 1 reads to complete the launcher's configuration: any input is refused with
//! a message or decoded whole, never a panic; what decodes encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_sandbox::launch::Config;

fuzz_target!(|data: &[u8]| {
    let mut cfg = Config::new("/s/root".into(), "/".into(), vec![]);
    if ward_sandbox::late::decode(&mut cfg, data).is_ok() {
        assert_eq!(ward_sandbox::late::encode(&cfg), data);
    }
});

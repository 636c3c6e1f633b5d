//! The egress proxy's parsers of untrusted bytes: authorities (URL, Host, CONNECT, SOCKS
//! names), the TLS ClientHello, and SOCKS5 requests.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_net::{canon, classify, socks, tls};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = canon::authority(text, Some(443)) {
            // The canonical form reads back as itself.
            let again = canon::authority(&a.to_string(), None).expect("canonical form parses");
            assert_eq!(again, a);
            if let canon::Host::Ip(ip) = a.host {
                let _ = classify::non_public(ip);
            }
        }
        let _ = canon::ipv4(text);
    }
    let first = tls::parse(data);
    assert_eq!(first, tls::parse(data), "parsing is deterministic");
    let need = tls::need(data);
    if let Ok(Some(_)) = first {
        assert!(need <= data.len(), "a complete hello needs no more bytes");
    }
    if let Ok(Some((_, used))) = socks::request(data) {
        assert!(used <= data.len());
    }
});

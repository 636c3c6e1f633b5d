//! The sandbox's resolver answering whatever the agent sends to 127.0.0.1:53: never a panic;
//! an answer echoes the query's id, and only an allowed name gets an address.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    let lookup = |n: &str| (n == "api.example.com").then_some(Ipv4Addr::new(127, 77, 0, 1));
    if let Some((reply, asked)) = ward_net::dns::respond(data, lookup) {
        assert_eq!(&reply[..2], &data[..2]);
        if let Some(a) = asked {
            assert_eq!(a.address.is_some(), a.question.name == "api.example.com" && a.question.qclass == 1);
        }
    }
});

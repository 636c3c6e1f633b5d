//! A `ws://` tunnel's first request and the server's answer, as the agent and the server send
//! them: never a panic; a passed request names the CONNECT host and ends inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let auth = ward_net::canon::authority("echo.example:80", Some(80)).unwrap();
    if let Ok(n) = ward_net::ws::check_request(data, &auth) {
        assert!(n <= data.len() && data[..n].ends_with(b"\r\n\r\n"));
        let head = std::str::from_utf8(&data[..n]).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /") && head.contains("echo.example"));
    }
    if let Ok((status, n)) = ward_net::ws::response_status(data) {
        assert!(n <= data.len() && (100..600).contains(&status));
    }
});

//! WebSockets over plain HTTP (`ws://`) through a CONNECT tunnel.
//!
//! Clients tunnel `ws://` through an HTTP proxy with CONNECT, as they do `wss://` (Python's
//! websockets and websocket-client, Go's gorilla and others). Inside such a tunnel Ward
//! passes one request, checked here: a WebSocket upgrade of a path on the CONNECT host. It
//! goes to the server alone; only once the server has switched protocols (101) do the bytes
//! that follow pass, as WebSocket frames. Anything else (a second request, one to another
//! Host, a body that could hide one) is refused before it reaches the server.

use crate::canon::{self, Authority};

/// The longest request or response head read.
pub const MAX_HEAD: usize = 16 * 1024;

/// Where the head at the start of `buf` ends (after its blank line), if it does.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Check the client's first request in a `ws://` tunnel to `auth`: `GET` of a path over
/// HTTP/1.1, one `Host` naming `auth`, `Upgrade: websocket`, `Connection` naming `upgrade`,
/// no body. Returns the head's length; what follows it in `buf` are frames the client sent
/// early, passed on only after the switch.
pub fn check_request(buf: &[u8], auth: &Authority) -> Result<usize, String> {
    let end = head_end(buf).ok_or("the request head is incomplete")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "the request head is not text")?;
    let mut lines = head[..end - 4].split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if method != Some("GET") || version != Some("HTTP/1.1") || parts.next().is_some() {
        return Err(format!(
            "a ws:// tunnel carries one WebSocket upgrade (GET /path HTTP/1.1), not `{}`",
            line.escape_default()
        ));
    }
    let target = target.unwrap_or("");
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "the upgrade's target `{}` is not a path",
            target.escape_default()
        ));
    }
    let (mut host, mut upgrade, mut connection) = (None, None, false);
    for l in lines {
        if l.starts_with([' ', '\t']) || l.contains(['\r', '\n']) {
            return Err("a folded or broken header line".into());
        }
        let (name, value) = l.split_once(':').ok_or("a header line without a colon")?;
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("a bad header name `{}`", name.escape_default()));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("control bytes in the {name} header"));
        }
        match name.to_ascii_lowercase().as_str() {
            "host" if host.is_some() => return Err("more than one Host header".into()),
            "host" => host = Some(value),
            "upgrade" if upgrade.is_some() => return Err("more than one Upgrade header".into()),
            "upgrade" => upgrade = Some(value),
            "connection" => {
                connection |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "content-length" if value == "0" => {}
            "content-length" | "transfer-encoding" => {
                return Err("a WebSocket upgrade has no body".into())
            }
            _ => {}
        }
    }
    let host = host.ok_or("the upgrade names no Host")?;
    let named = canon::authority(host, Some(80))
        .map_err(|e| format!("the Host `{}` is not a host: {e}", host.escape_default()))?;
    if named != *auth {
        return Err(format!(
            "the Host header `{}` does not name the CONNECT host {auth}",
            host.escape_default()
        ));
    }
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) || !connection {
        return Err(
            "not a WebSocket upgrade (Upgrade: websocket and Connection: upgrade): a ws:// \
             tunnel carries nothing else; send plain HTTP as a proxy request (HTTP_PROXY)"
                .into(),
        );
    }
    Ok(end)
}

/// The status of the server's response head at the start of `buf`, and where the head ends.
pub fn response_status(buf: &[u8]) -> Result<(u16, usize), String> {
    let end = head_end(buf).ok_or("the response head is incomplete")?;
    let line = buf[..end].split(|b| *b == b'\r').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| "the status line is not text")?;
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some("HTTP/1.1" | "HTTP/1.0"), Some(Ok(status))) if (100..600).contains(&status) => {
            Ok((status, end))
        }
        _ => Err(format!("not an HTTP response: `{}`", line.escape_default())),
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Authority {
        canon::authority(s, Some(80)).unwrap()
    }

    const OK: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: echo.example\r\nUpgrade: websocket\r\n\
                      Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\
                      Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn an_upgrade_of_a_path_on_the_connect_host_passes_and_nothing_else_does() {
        let mut buf = OK.as_bytes().to_vec();
        buf.extend_from_slice(b"\x81\x85frame");
        assert_eq!(
            check_request(&buf, &auth("echo.example:80")),
            Ok(OK.len()),
            "early frames stay after the head"
        );
        let refused = |head: &str, to: &str| check_request(head.as_bytes(), &auth(to)).is_err();
        assert!(
            refused(OK, "echo.example:8080"),
            "Host without a port is port 80"
        );
        assert!(refused(OK, "other.example:80"));
        for (from, to) in [
            ("GET /chat?x=1", "POST /chat"),
            ("GET /chat?x=1", "GET http://other.example/"),
            ("GET /chat?x=1", "GET *"),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost"),
            ("Host: echo.example", "Host: other.example"),
            (
                "Host: echo.example",
                "Host: echo.example\r\nHost: other.example",
            ),
            ("Upgrade: websocket", "Upgrade: h2c"),
            ("Upgrade: websocket", "Upgrade: websocket\r\nUpgrade: h2c"),
            ("Connection: keep-alive, Upgrade", "Connection: keep-alive"),
            ("Sec-WebSocket-Version: 13", "Content-Length: 5"),
            ("Sec-WebSocket-Version: 13", "Transfer-Encoding: chunked"),
            ("Sec-WebSocket-Version: 13", "X: a\r\n b"),
            ("Sec-WebSocket-Version: 13", "Bad Name: 1"),
            ("Sec-WebSocket-Version: 13", "X: a\u{1b}[2J"),
            ("Upgrade: websocket\r\n", ""),
        ] {
            let head = OK.replacen(from, to, 1);
            assert!(refused(&head, "echo.example:80"), "{head:?}");
        }
        assert!(refused(
            "GET /chat HTTP/1.1\r\nHost: echo.example\r\n",
            "echo.example:80"
        ));
        assert!(!refused(
            &OK.replacen("Host: echo.example", "host: ECHO.example:80", 1),
            "echo.example:80"
        ));
        assert!(!refused(
            &OK.replacen("Sec-WebSocket-Version: 13", "Content-Length: 0", 1),
            "echo.example:80"
        ));
    }

    #[test]
    fn the_status_of_a_response_head() {
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
        assert_eq!(response_status(r), Ok((101, r.len() - 4)));
        assert_eq!(
            response_status(b"HTTP/1.1 404 Not Found\r\n\r\n").map(|s| s.0),
            Ok(404)
        );
        assert!(response_status(b"HTTP/1.1 101").is_err());
        assert!(response_status(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(response_status(b"HTTP/1.1 9999 x\r\n\r\n").is_err());
    }
}

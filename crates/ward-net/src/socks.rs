//! SOCKS5 (RFC 1928), CONNECT only, no authentication: the greeting and the request, read from
//! a byte source, so a client that sends a domain name (`socks5h://`) and one that sends an
//! address reach the same decision.

use crate::canon::{self, Authority, Host};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const REP_OK: u8 = 0x00;
pub const REP_FAILURE: u8 = 0x01;
pub const REP_NOT_ALLOWED: u8 = 0x02;
pub const REP_HOST_UNREACHABLE: u8 = 0x04;
pub const REP_CMD_UNSUPPORTED: u8 = 0x07;
pub const REP_ATYP_UNSUPPORTED: u8 = 0x08;

/// What a SOCKS5 request asked for, or why it is refused (with the reply code to send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect(Authority),
    Refused { code: u8, why: String },
}

/// Parse the request after the greeting: `VER CMD RSV ATYP DST.ADDR DST.PORT`. `Ok(None)`: need
/// more bytes; `Err`: not SOCKS5 at all.
pub fn request(b: &[u8]) -> Result<Option<(Request, usize)>, &'static str> {
    if b.len() < 5 {
        return Ok(None);
    }
    if b[0] != 5 {
        return Err("not a SOCKS5 request");
    }
    let (host_end, host) = match b[3] {
        1 => {
            if b.len() < 4 + 4 {
                return Ok(None);
            }
            (
                8,
                Ok(Host::Ip(IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])))),
            )
        }
        4 => {
            if b.len() < 4 + 16 {
                return Ok(None);
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[4..20]);
            (
                20,
                Ok(Host::Ip(canon::unwrap_mapped(IpAddr::V6(Ipv6Addr::from(
                    a,
                ))))),
            )
        }
        3 => {
            let n = b[4] as usize;
            if b.len() < 5 + n {
                return Ok(None);
            }
            let host = std::str::from_utf8(&b[5..5 + n])
                .map_err(|_| "host name is not text")
                .and_then(|s| canon::host_of(s).map_err(|_| "bad host name"));
            (5 + n, host)
        }
        _ => {
            return Ok(Some((
                Request::Refused {
                    code: REP_ATYP_UNSUPPORTED,
                    why: format!("address type {} is not supported", b[3]),
                },
                b.len(),
            )))
        }
    };
    if b.len() < host_end + 2 {
        return Ok(None);
    }
    let port = u16::from_be_bytes([b[host_end], b[host_end + 1]]);
    let used = host_end + 2;
    let req = match (b[1], host) {
        (1, Ok(host)) if port != 0 => Request::Connect(Authority { host, port }),
        (1, Ok(_)) => Request::Refused {
            code: REP_NOT_ALLOWED,
            why: "port 0".into(),
        },
        (1, Err(why)) => Request::Refused {
            code: REP_NOT_ALLOWED,
            why: why.into(),
        },
        (2, _) => Request::Refused {
            code: REP_CMD_UNSUPPORTED,
            why: "SOCKS BIND is not supported (no inbound connections)".into(),
        },
        (3, _) => Request::Refused {
            code: REP_CMD_UNSUPPORTED,
            why: "SOCKS UDP ASSOCIATE is not supported (no UDP leaves the sandbox)".into(),
        },
        (c, _) => Request::Refused {
            code: REP_CMD_UNSUPPORTED,
            why: format!("unknown SOCKS command {c}"),
        },
    };
    Ok(Some((req, used)))
}

/// A reply with an empty bound address.
pub fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let mut r = vec![5, 1, 0, 3, 11];
        r.extend_from_slice(b"example.com");
        r.extend_from_slice(&443u16.to_be_bytes());
        let (req, n) = request(&r).unwrap().unwrap();
        assert_eq!(n, r.len());
        assert_eq!(
            req,
            Request::Connect(Authority {
                host: Host::Name("example.com".into()),
                port: 443
            })
        );
        for cut in 0..r.len() {
            assert_eq!(request(&r[..cut]).unwrap(), None);
        }
        // A "domain name" that is an IPv4 spelling is the address.
        let mut r = vec![5, 1, 0, 3, 10];
        r.extend_from_slice(b"2130706433");
        r.extend_from_slice(&80u16.to_be_bytes());
        let (req, _) = request(&r).unwrap().unwrap();
        assert_eq!(
            req,
            Request::Connect(Authority {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port: 80
            })
        );
        let udp = [5, 3, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            request(&udp).unwrap().unwrap().0,
            Request::Refused {
                code: REP_CMD_UNSUPPORTED,
                ..
            }
        ));
    }
}

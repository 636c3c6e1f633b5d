//! Canonical destinations: what a request's authority (`host[:port]` from an absolute URL, a
//! `Host` header, a CONNECT line or a SOCKS5 request) really names, read the way the WHATWG URL
//! standard and glibc read it. `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` are all
//! 127.0.0.1 to the resolver a client would otherwise use, so they are IP addresses here too,
//! and `[::ffff:127.0.0.1]` is the IPv4 address it wraps. Anything Ward cannot read plainly is
//! refused, never guessed at.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an authority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error("empty host")]
    Empty,
    #[error("`{0}`: {1}")]
    Host(String, &'static str),
    #[error("bad port `{0}` (expected 1-65535)")]
    Port(String),
    #[error("credentials in the authority (`user@host`) are not passed on")]
    UserInfo,
    #[error("no port, and the scheme has no default")]
    NoPort,
}

/// A canonical host: a lower-case ASCII name without a trailing dot, or an IP address (IPv4
/// for IPv4-mapped IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// The form the manifest's destinations are matched against (`[v6]` bracketed).
    pub fn as_match(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::Ip(IpAddr::V4(a)) => a.to_string(),
            Host::Ip(IpAddr::V6(a)) => format!("[{a}]"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_match())
    }
}

/// A canonical `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Parse `host[:port]`; `default_port` applies when there is none.
pub fn authority(s: &str, default_port: Option<u16>) -> Result<Authority, CanonError> {
    if s.contains('@') {
        return Err(CanonError::UserInfo);
    }
    let (host, port) = split(s)?;
    let port = match port {
        None | Some("") => default_port.ok_or(CanonError::NoPort)?,
        Some(p) => parse_port(p)?,
    };
    Ok(Authority {
        host: host_of(host)?,
        port,
    })
}

fn parse_port(p: &str) -> Result<u16, CanonError> {
    // WHATWG reads leading zeros (`007` is 7); anything but digits, or out of range, is refused.
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CanonError::Port(p.to_string()));
    }
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(CanonError::Port(p.to_string())),
    }
}

fn split(s: &str) -> Result<(&str, Option<&str>), CanonError> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| CanonError::Host(s.to_string(), "unclosed `[`"))?;
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((&s[..end + 2], Some(p))),
            None if after.is_empty() => Ok((&s[..end + 2], None)),
            None => Err(CanonError::Host(s.to_string(), "junk after `]`")),
        };
    }
    match s.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => Err(CanonError::Host(
            s.to_string(),
            "an IPv6 address must be in brackets",
        )),
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

/// Canonicalize one host (brackets allowed around IPv6).
pub fn host_of(h: &str) -> Result<Host, CanonError> {
    if h.is_empty() {
        return Err(CanonError::Empty);
    }
    if let Some(inner) = h.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| CanonError::Host(h.to_string(), "unclosed `[`"))?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| CanonError::Host(h.to_string(), "not an IPv6 address"))?;
        return Ok(Host::Ip(unwrap_mapped(IpAddr::V6(ip))));
    }
    let decoded = percent_decode(h)
        .ok_or_else(|| CanonError::Host(h.to_string(), "bad percent-encoding in the host"))?;
    if !decoded.is_ascii() {
        return Err(CanonError::Host(
            h.to_string(),
            "non-ASCII host: send international names in punycode (xn--...)",
        ));
    }
    let mut name = decoded.to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    if name.is_empty() || name.ends_with('.') {
        return Err(CanonError::Host(h.to_string(), "empty label"));
    }
    // WHATWG forbidden host code points, and what a DNS name cannot hold anyway.
    if name
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
    {
        return Err(CanonError::Host(
            h.to_string(),
            "only letters, digits, `-`, `_` and `.` make a host name",
        ));
    }
    // WHATWG "ends in a number": the last label is all digits or 0x-hex, so the whole host is
    // read as an IPv4 address (and refused if it is not a valid one).
    let last = name.rsplit('.').next().unwrap_or("");
    if is_number_label(last) {
        return ipv4(&name)
            .map(|a| Host::Ip(IpAddr::V4(a)))
            .ok_or_else(|| CanonError::Host(h.to_string(), "not a valid IPv4 address"));
    }
    if name.len() > 253 {
        return Err(CanonError::Host(h.to_string(), "longer than 253 bytes"));
    }
    for l in name.split('.') {
        if l.is_empty() {
            return Err(CanonError::Host(h.to_string(), "empty label"));
        }
        if l.len() > 63 {
            return Err(CanonError::Host(
                h.to_string(),
                "a label is longer than 63 bytes",
            ));
        }
    }
    Ok(Host::Name(name))
}

fn is_number_label(l: &str) -> bool {
    if l.is_empty() {
        return false;
    }
    if l.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    l.strip_prefix("0x")
        .is_some_and(|x| x.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The WHATWG IPv4 parser: 1-4 parts, each decimal, octal (leading 0) or hex (0x); the last
/// part fills the remaining bytes.
pub fn ipv4(s: &str) -> Option<Ipv4Addr> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        nums.push(ipv4_number(p)?);
    }
    let last = nums.pop()?;
    if nums.iter().any(|&n| n > 255) {
        return None;
    }
    let rest_bytes = 4 - nums.len();
    if rest_bytes < 4 && last >= 1u64 << (8 * rest_bytes) {
        return None;
    }
    if last > u32::MAX as u64 {
        return None;
    }
    let mut v: u32 = last as u32;
    for (i, n) in nums.iter().enumerate() {
        v |= (*n as u32) << (8 * (3 - i));
    }
    Some(Ipv4Addr::from(v))
}

fn ipv4_number(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(x) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (x, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        return Some(0); // `0x` alone is zero in WHATWG
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address it carries.
pub fn unwrap_mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        host_of(s).unwrap()
    }

    #[test]
    fn whatwg_ipv4_spellings_are_ips() {
        let lo = Host::Ip("127.0.0.1".parse().unwrap());
        for s in [
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "017700000001",
            "127.1",
            "0x7f.1",
            "127.0.0.1.",
            "0x7F.0.0.1",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "127.0.0.%31",
        ] {
            assert_eq!(ip(s), lo, "{s}");
        }
        let md = Host::Ip("169.254.169.254".parse().unwrap());
        for s in [
            "2852039166",
            "0xA9FEA9FE",
            "0251.0376.0251.0376",
            "169.254.43518",
        ] {
            assert_eq!(ip(s), md, "{s}");
        }
        for bad in [
            "08.0.0.1",
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.0x100000000",
            "4294967296",
        ] {
            assert!(host_of(bad).is_err(), "{bad} accepted: {:?}", host_of(bad));
        }
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(ip("Api.Example.COM."), Host::Name("api.example.com".into()));
        assert_eq!(ip("exa%6Dple.com"), Host::Name("example.com".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "ex ample.com",
            "🔐.example.com",
            "a/b",
            "a%zz",
            "a%00b",
        ] {
            assert!(host_of(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn authorities() {
        let a = authority("example.com:007", None).unwrap();
        assert_eq!(a.port, 7);
        assert_eq!(authority("example.com", Some(80)).unwrap().port, 80);
        assert_eq!(
            authority("[::1]:443", None).unwrap().host,
            Host::Ip("::1".parse().unwrap())
        );
        for bad in [
            "example.com:91337",
            "example.com:-1",
            "example.com:0",
            "user@example.com:443",
            "[[example.com]]:443",
            "::1:443",
            "example.com:",
        ] {
            assert!(authority(bad, None).is_err(), "{bad} accepted");
        }
    }
}

//! Network destinations as written in manifests: `scheme://host[:port]`, with `*.` wildcards.
//!
//! This is the manifest's notation, not the proxy's canonicalizer: it refuses anything that is
//! not plainly a scheme, a host and a port, so that what a person reads is what is allowed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a destination string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("missing scheme: write `https://{0}` (or `http://`)")]
    MissingScheme(String),
    #[error("unsupported scheme `{0}` (expected http, https, or ssh for git over SSH)")]
    Scheme(String),
    #[error("a destination is scheme://host[:port]; remove the path, query or fragment `{0}`")]
    Path(String),
    #[error("credentials do not belong in a destination (`{0}@`)")]
    UserInfo(String),
    #[error("empty host")]
    EmptyHost,
    #[error("bad port `{0}` (expected 1-65535)")]
    Port(String),
    #[error("`{0}` is not a valid host name: {1}")]
    Host(String, &'static str),
    #[error("a wildcard is only allowed as a whole leading label (`*.example.com`), not in `{0}`")]
    Wildcard(String),
    #[error("the path `{0}` {1}")]
    PathPattern(String, &'static str),
}

/// The path part of a network entry (`https://api.github.com/repos/acme/*`): the requests to
/// that destination it applies to. `*` stands for any characters within one segment; a `*`
/// at the end, for the rest of the path too. Matched against the request's path without its
/// query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathPattern(String);

impl PathPattern {
    pub fn parse(s: &str) -> Result<PathPattern, DestinationError> {
        let bad = |why| Err(DestinationError::PathPattern(s.to_string(), why));
        if !s.starts_with('/') {
            return bad("must start with /");
        }
        if s.len() > 1024 {
            return bad("is longer than 1024 characters");
        }
        if s.contains(['?', '#', '\\']) || s.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return bad(
                "is a path only: no query, fragment, backslash, space or control character",
            );
        }
        if s.split('/').any(|seg| seg == "." || seg == "..") || s.contains("//") || s.contains('%')
        {
            return bad("must be plain: no `.` or `..` segment, `//` or %-escape");
        }
        Ok(PathPattern(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the request path `path` (plain: see [`plain_path`]) is one this names;
    /// `fold`: ASCII case ignored, and everything under the path named too (what a deny or an
    /// ask must do: servers often ignore case, and `/admin` holds `/admin/users`).
    pub fn matches(&self, path: &str, fold: bool) -> bool {
        let (p, s) = (self.0.as_bytes(), path.as_bytes());
        if glob(p, s, fold) {
            return true;
        }
        // (`/admin/*` holds `/admin` itself too.)
        if fold
            && p.strip_suffix(b"/*")
                .is_some_and(|base| glob(base, s, fold))
        {
            return true;
        }
        fold && s
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && i > 0 && glob(p, &s[..i], fold))
    }
}

/// `p` against `s`: `*` any bytes but `/`, a `*` that ends `p` any bytes at all. One pass with
/// one point to return to (a `*` cannot cross `/`, so an earlier one never needs retrying):
/// time linear in `s` times `p` at worst, whatever the pattern.
fn glob(p: &[u8], s: &[u8], fold: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == b'*' {
            if i + 1 == p.len() {
                return true;
            }
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && eq(p[i], s[j]) {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            // The `*` takes one more byte, unless that byte is a `/`.
            if s[sj] == b'/' {
                return false;
            }
            star = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// A request path as path rules see it, or `None` when it is ambiguous: a server could read
/// it as another path (`.` or `..` segments, `//`, a backslash, or an escape of a character
/// that needs none: `%61dmin` is `admin` to a server, `%2e%2e` is `..`). The query is cut off.
pub fn plain_path(target: &str) -> Option<&str> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let needless_escape = path.as_bytes().windows(3).any(|w| {
        let hex = |b: u8| (b as char).to_digit(16);
        w[0] == b'%'
            && hex(w[1]).zip(hex(w[2])).is_some_and(|(h, l)| {
                let c = (h * 16 + l) as u8;
                c.is_ascii_alphanumeric() || b"-._~/\\\0%".contains(&c) || c >= 0x80
            })
    });
    let ambiguous = !path.starts_with('/')
        || path.contains("//")
        || path.contains('\\')
        || path.split('/').any(|seg| seg == "." || seg == "..")
        // Path parameters: `/acme/..;/other` is `/other` to some servers.
        || path.contains(';')
        || needless_escape;
    (!ambiguous).then_some(path)
}

/// Splits a written destination into the destination and its path pattern, if any.
pub fn split_path(s: &str) -> Result<(Destination, Option<PathPattern>), DestinationError> {
    let after = s.find("://").map_or(0, |i| i + 3);
    match s[after..].find('/') {
        Some(i) if s.len() > after + i + 1 => {
            let (d, p) = s.split_at(after + i);
            Ok((Destination::parse(d)?, Some(PathPattern::parse(p)?)))
        }
        _ => Ok((Destination::parse(s)?, None)),
    }
}

/// The host part of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// A lower-cased DNS name.
    Name(String),
    /// `*.suffix`: any name with at least one more label in front of `suffix` (not `suffix` itself).
    Wildcard(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostPattern {
    /// Does this pattern match the (already lower-cased) host name `host`?
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostPattern::Name(n) => n.eq_ignore_ascii_case(host),
            HostPattern::Wildcard(suffix) => {
                // Bytes, not str slicing: `host` is untrusted and may hold multi-byte characters.
                let (h, s) = (host.as_bytes(), suffix.as_bytes());
                h.len() > s.len() + 1
                    && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
                    && h[h.len() - s.len() - 1] == b'.'
            }
            HostPattern::V4(ip) => host.parse::<Ipv4Addr>().is_ok_and(|h| h == *ip),
            HostPattern::V6(ip) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<Ipv6Addr>()
                .is_ok_and(|h| h == *ip),
        }
    }

    /// Is every host this pattern matches also matched by `other`?
    pub fn within(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => {
                a == b || HostPattern::Wildcard(b.clone()).matches(a)
            }
            (HostPattern::Wildcard(_), _) => false,
            (HostPattern::Name(n), o) => o.matches(n),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Name(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::V4(ip) => write!(f, "{ip}"),
            HostPattern::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A parsed `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub scheme: String,
    pub host: HostPattern,
    pub port: u16,
}

impl Destination {
    pub fn parse(s: &str) -> Result<Self, DestinationError> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(DestinationError::MissingScheme(s.to_string()));
        };
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            // Reached by name through the sandbox's resolver (git over SSH: the client checks
            // the server's host key itself).
            "ssh" => 22,
            _ => return Err(DestinationError::Scheme(scheme)),
        };
        // A single trailing slash is what people paste from a browser; anything more is a path.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(i) = rest.find(['/', '?', '#']) {
            return Err(DestinationError::Path(rest[i..].to_string()));
        }
        if let Some((user, _)) = rest.rsplit_once('@') {
            return Err(DestinationError::UserInfo(user.to_string()));
        }
        let (host, port) = split_host_port(rest)?;
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(DestinationError::Port(p.to_string())),
            },
        };
        Ok(Destination {
            scheme,
            host: parse_host(host)?,
            port,
        })
    }

    /// Does this destination allow a connection to `host:port` over `scheme`?
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme) && self.port == port && self.host.matches(host)
    }

    /// The narrower of two destinations when one lies within the other.
    pub fn intersect(&self, other: &Destination) -> Option<Destination> {
        if self.scheme != other.scheme || self.port != other.port {
            return None;
        }
        if self.host.within(&other.host) {
            Some(self.clone())
        } else if other.host.within(&self.host) {
            Some(other.clone())
        } else {
            None
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), DestinationError> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(DestinationError::Host(s.to_string(), "unclosed `[`"));
        };
        let host = &s[..end + 2];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(DestinationError::Host(s.to_string(), "junk after `]`")),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

fn parse_host(h: &str) -> Result<HostPattern, DestinationError> {
    if h.is_empty() {
        return Err(DestinationError::EmptyHost);
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(HostPattern::V6)
            .map_err(|_| DestinationError::Host(h.to_string(), "not an IPv6 address"));
    }
    let lower = h.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower).to_string();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, lower.clone()),
    };
    if name.contains('*') {
        return Err(DestinationError::Wildcard(h.to_string()));
    }
    // Only the four-part dotted-decimal form is an IP address here; the short, octal and hex forms
    // that WHATWG also reads as IPs are refused rather than silently reinterpreted.
    let labels: Vec<&str> = name.split('.').collect();
    if labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return match (wild, name.parse::<Ipv4Addr>()) {
            (false, Ok(ip)) if labels.len() == 4 => Ok(HostPattern::V4(ip)),
            _ => Err(DestinationError::Host(
                h.to_string(),
                "numeric hosts must be four-part dotted-decimal IPv4 addresses",
            )),
        };
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        || name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x')
            && labels.iter().any(|l| l.starts_with("0x"))
    {
        return Err(DestinationError::Host(
            h.to_string(),
            "looks like an IP address in a non-standard form",
        ));
    }
    if name.len() > 253 {
        return Err(DestinationError::Host(
            h.to_string(),
            "longer than 253 bytes",
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(DestinationError::Host(h.to_string(), "empty label"));
        }
        if label.len() > 63 {
            return Err(DestinationError::Host(
                h.to_string(),
                "a label is longer than 63 bytes",
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(DestinationError::Host(
                h.to_string(),
                "only letters, digits, `-` and `_` are allowed (write IDNs in punycode)",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DestinationError::Host(
                h.to_string(),
                "a label cannot start or end with `-`",
            ));
        }
    }
    if wild && labels.len() < 2 {
        return Err(DestinationError::Wildcard(h.to_string()));
    }
    Ok(if wild {
        HostPattern::Wildcard(name)
    } else {
        HostPattern::Name(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Destination {
        Destination::parse(s).unwrap()
    }

    #[test]
    fn parses_the_seed_destination() {
        let x = d("https://api.acme.com");
        assert_eq!(x.to_string(), "https://api.acme.com:443");
        assert!(x.matches("https", "api.acme.com", 443));
        assert!(x.matches("https", "API.acme.com.", 443));
        assert!(!x.matches("http", "api.acme.com", 80));
        assert!(!x.matches("https", "api.acme.com.evil.com", 443));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let x = d("https://*.acme.com:8443");
        assert!(x.matches("https", "a.acme.com", 8443));
        assert!(x.matches("https", "a.b.acme.com", 8443));
        assert!(!x.matches("https", "acme.com", 8443));
        assert!(!x.matches("https", "evilacme.com", 8443));
        assert!(!x.matches("https", "a.acme.com", 443));
    }

    #[test]
    fn refuses_malformed_destinations() {
        for bad in [
            "api.acme.com",
            "ftp://acme.com",
            "https://acme.com/upload",
            "https://acme.com?x",
            "https://user:pw@acme.com",
            "https://",
            "https://acme.com:0",
            "https://acme.com:99999",
            "https://acme.com:+1",
            "https://a*.acme.com",
            "https://*.com.*",
            "https://*",
            "https://2130706433",
            "https://127.1",
            "https://0x7f.0.0.1",
            "https://-bad.com",
            "https://[::1",
            "https://[zz]",
            "https://caf\u{e9}.com",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn matching_untrusted_hosts_never_panics() {
        let x = d("https://*.acme.com");
        assert!(!x.matches("https", "\u{45e}\u{45e}.acme.co\u{45e}", 443));
        assert!(!x.matches("https", "\u{45e}acme.com", 443));
        assert!(x.matches("https", "\u{45e}.acme.com", 443));
    }

    #[test]
    fn ip_literals() {
        assert!(d("http://10.0.0.1:8080").matches("http", "10.0.0.1", 8080));
        assert!(d("https://[::1]").matches("https", "[::1]", 443));
    }

    #[test]
    fn intersection_keeps_the_narrower() {
        let wide = d("https://*.acme.com");
        let narrow = d("https://api.acme.com");
        assert_eq!(wide.intersect(&narrow), Some(narrow.clone()));
        assert_eq!(narrow.intersect(&wide), Some(narrow.clone()));
        assert_eq!(narrow.intersect(&d("https://other.com")), None);
        assert_eq!(narrow.intersect(&d("http://api.acme.com")), None);
        let deeper = d("https://*.eu.acme.com");
        assert_eq!(wide.intersect(&deeper), Some(deeper.clone()));
    }
}

//! Data-loss prevention: what in a request would carry a secret or personal data out.
//!
//! The request target, every header and the body (plain HTTP, or decrypted inside an
//! inspected tunnel) go through ward-scan's rules, and so do their decoded forms: the body's
//! `Content-Encoding` undone (bounded), then base64 and hex runs, percent-encoding and JSON
//! escapes (bounded in depth and in decoded bytes, see [`ward_scan::decode`]). Host names are
//! judged too: a long or random-looking label is how data leaves through DNS.
//!
//! Two things are not leaks: a credential sent to the hosts its rule names as its issuer
//! (`hosts` in the rule: an Anthropic key to `api.anthropic.com` is the key in use), and, in
//! the headers whose purpose is to carry one (`Authorization`, `X-Api-Key`, `Cookie`, ...), a
//! credential of no known issuer (recorded, not refused: the header does what it is for).
//!
//! What a finding does (refuse, ask, record) is the manifest's `[network.findings]`, by the
//! finding's confidence; the proxy applies it.

use hyper::header::HeaderMap;
use serde_json::{json, Value};
use std::sync::OnceLock;
use ward_scan::decode::{self, Budget, DecodeError};
use ward_scan::{Confidence, Finding, Scanner};

/// The most a compressed body may decode to (beyond it the body is refused: unread).
pub const MAX_INFLATED: usize = 64 << 20;

/// Headers whose purpose is to carry a credential to the destination.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-auth-token",
    "private-token",
    "x-gitlab-token",
    "cookie",
    "x-amz-security-token",
];

/// The built-in rules, compiled once per process (on first use: most sessions that never send
/// a request pay nothing).
pub fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(Scanner::builtin)
}

/// One finding in a request, placed. Everything here is safe to show and to record (the
/// secret itself is masked in `excerpt`).
#[derive(Debug, Clone, PartialEq)]
pub struct Leak {
    pub rule: String,
    pub description: String,
    pub confidence: Confidence,
    /// Where in the request: `target`, `header x-api-key`, `body`, `body (gzip, base64)`,
    /// `host`.
    pub place: String,
    pub excerpt: String,
}

impl Leak {
    pub fn json(&self) -> Value {
        json!({
            "rule": self.rule, "description": self.description,
            "confidence": self.confidence, "place": self.place, "excerpt": self.excerpt,
        })
    }

    /// One line for a person or a refusal: the rule, where, and the masked excerpt.
    pub fn summary(&self) -> String {
        format!(
            "{} (rule {}, {} confidence) in the {}: {}",
            self.description,
            self.rule,
            level(self.confidence),
            self.place,
            self.excerpt
        )
    }
}

pub fn level(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "high",
        Confidence::Medium => "medium",
        Confidence::Low => "low",
    }
}

/// Whether `host` is one of `patterns` (`name` exactly, `*.suffix` any name under it).
fn home(patterns: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.');
    patterns.iter().any(|p| match p.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|front| front.len() > 1 && front.ends_with('.')),
        None => p.eq_ignore_ascii_case(host),
    })
}

/// Findings gathered for one request toward one host.
struct Gather<'a> {
    dest: &'a str,
    out: Vec<Leak>,
}

impl Gather<'_> {
    fn add(&mut self, found: Vec<Finding>, place: &str, credential_header: bool) {
        let s = scanner();
        for f in found {
            let hosts = s.hosts(&f.rule);
            if home(hosts, self.dest) {
                // The credential going where it belongs.
                continue;
            }
            let confidence = if credential_header && hosts.is_empty() {
                // A token of no known issuer in a header meant for one: on record only.
                Confidence::Low
            } else {
                f.confidence
            };
            if self
                .out
                .iter()
                .any(|l| l.rule == f.rule && l.excerpt == f.excerpt)
            {
                continue;
            }
            self.out.push(Leak {
                rule: f.rule,
                description: f.description,
                confidence,
                place: place.to_string(),
                excerpt: f.excerpt,
            });
        }
    }

    /// `data` and its decoded views.
    fn all(&mut self, data: &[u8], place: &str, credential_header: bool, budget: &mut Budget) {
        let s = scanner();
        self.add(s.scan(data), place, credential_header);
        let mut views = Vec::new();
        decode::views(data, budget, &mut |v, how| {
            let found = s.scan(v);
            if !found.is_empty() {
                views.push((found, format!("{place} ({})", how.join(", "))));
            }
        });
        for (found, place) in views {
            self.add(found, &place, credential_header);
        }
    }
}

/// Findings in a request's target (path and query) and headers, toward `dest`.
pub fn head(target: &str, headers: &HeaderMap, dest: &str) -> Vec<Leak> {
    let mut g = Gather {
        dest,
        out: Vec::new(),
    };
    // Headers are small; a generous budget for their decoded forms.
    let mut budget = Budget::new(64 * 1024 + 4 * target.len());
    g.all(target.as_bytes(), "target", false, &mut budget);
    for (name, value) in headers {
        let n = name.as_str();
        let cred = CREDENTIAL_HEADERS.contains(&n);
        // The name too: a header's name can be the secret.
        let mut line = Vec::with_capacity(n.len() + 2 + value.len());
        line.extend_from_slice(n.as_bytes());
        line.extend_from_slice(b": ");
        line.extend_from_slice(value.as_bytes());
        g.all(&line, &format!("header {n}"), cred, &mut budget);
    }
    g.out
}

/// A request target that carries a finding, fit for a record: the path when it is clean and
/// the query is what carries it, else only the target's length.
pub fn redact(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut budget = Budget::new(64 * 1024);
    let mut g = Gather {
        dest: "",
        out: Vec::new(),
    };
    g.all(path.as_bytes(), "target", false, &mut budget);
    if g.out.is_empty() && !query.is_empty() {
        format!("{path}?<{} bytes withheld: see findings>", query.len())
    } else {
        format!("/<{} bytes withheld: see findings>", target.len())
    }
}

/// What a body's scan came to.
pub struct BodyScan {
    pub leaks: Vec<Leak>,
    /// Some decoded forms were left unread for want of budget.
    pub partly: bool,
}

/// Findings in a whole body (`encoding`: its `Content-Encoding`), toward `dest`. A body whose
/// coding Ward cannot undo, or which decodes past [`MAX_INFLATED`], is an error: it is not
/// let through unread.
pub fn body(data: &[u8], encoding: Option<&[u8]>, dest: &str) -> Result<BodyScan, DecodeError> {
    let codings = match encoding {
        Some(e) => decode::codings(e)?,
        None => Vec::new(),
    };
    let mut g = Gather {
        dest,
        out: Vec::new(),
    };
    let plain;
    let (data, place) = if codings.is_empty() {
        (data, "body".to_string())
    } else {
        plain = decode::undo(data, &codings, MAX_INFLATED)?;
        let names: Vec<&str> = codings
            .iter()
            .rev()
            .map(|c| match c {
                decode::Coding::Gzip => "gzip",
                decode::Coding::Deflate => "deflate",
                decode::Coding::Brotli => "br",
            })
            .collect();
        (plain.as_slice(), format!("body ({})", names.join(", ")))
    };
    let mut budget = Budget::new(4 * data.len() + (1 << 20));
    g.all(data, &place, false, &mut budget);
    Ok(BodyScan {
        leaks: g.out,
        partly: budget.exhausted,
    })
}

/// Findings of a plain scan over a piece of a streamed body (no decoded forms).
pub fn streamed(found: Vec<Finding>, dest: &str) -> Vec<Leak> {
    let mut g = Gather {
        dest,
        out: Vec::new(),
    };
    g.add(found, "body", false);
    g.out
}

/// A host name that looks like data leaving through DNS: a label of 48 characters or more,
/// or a long one that looks random (`<base32 of a key>.attacker.example`), or one the rules
/// find a secret in. IP addresses are never findings.
pub fn host(host: &str) -> Option<Leak> {
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    let found = scanner().scan(host.as_bytes());
    if let Some(f) = found.into_iter().next() {
        return Some(Leak {
            rule: f.rule,
            description: f.description,
            confidence: f.confidence,
            place: "host name".into(),
            excerpt: f.excerpt,
        });
    }
    let whole = (host.len() >= 120).then(|| {
        (
            host.split('.').next().unwrap_or(""),
            format!("a {}-character name", host.len()),
        )
    });
    let labels = host.split('.').filter_map(|label| {
        let n = label.len();
        // Words joined by hyphens are how people name hosts; one long run without a break
        // that looks random is how programs encode data.
        let run = label.split('-').map(str::len).max().unwrap_or(0);
        let e = ward_scan::entropy(label.as_bytes());
        if n >= 48 {
            Some((label, format!("a {n}-character label")))
        } else if run >= 24 && e >= 3.5 {
            Some((
                label,
                format!("a {n}-character label that looks random ({e:.1} bits per character)"),
            ))
        } else {
            None
        }
    });
    if let Some((label, why)) = whole.into_iter().chain(labels).next() {
        let shown: String = label.chars().take(6).collect();
        return Some(Leak {
            rule: "dns-exfiltration".into(),
            description: format!("data in a host name: {why}"),
            confidence: Confidence::Medium,
            place: "host name".into(),
            excerpt: format!("{shown}****.{}", host.split_once('.').map_or("", |x| x.1)),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};

    const PAT: &str = "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";

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_credential_in_the_target_or_a_header_is_found_and_placed() {
        let l = head(&format!("/x?token={PAT}"), &HeaderMap::new(), "example.com");
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(
            (l[0].rule.as_str(), l[0].place.as_str()),
            ("github-pat", "target")
        );
        assert!(!l[0].excerpt.contains(PAT));
        let l = head("/", &headers(&[("x-data", PAT)]), "example.com");
        assert_eq!(l[0].place, "header x-data");
        assert_eq!(l[0].confidence, Confidence::High);
        // Percent-encoded in the query.
        let enc: String = PAT.bytes().map(|b| format!("%{b:02X}")).collect();
        let l = head(&format!("/?q={enc}"), &HeaderMap::new(), "example.com");
        assert_eq!(l[0].place, "target (url)");
    }

    #[test]
    fn to_its_issuer_a_credential_is_in_use() {
        let h = headers(&[("authorization", &format!("token {PAT}"))]);
        assert!(head("/", &h, "api.github.com").is_empty());
        assert!(head("/", &h, "github.com").is_empty());
        // Elsewhere it is a leak, credential header or not.
        let l = head("/", &h, "github.com.evil.example");
        assert_eq!(l[0].confidence, Confidence::High, "{l:?}");
    }

    #[test]
    fn a_bearer_token_of_no_known_issuer_in_its_header_is_only_recorded() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk4";
        let l = head(
            "/",
            &headers(&[("authorization", &format!("Bearer {jwt}"))]),
            "x.example",
        );
        assert!(!l.is_empty());
        assert!(l.iter().all(|l| l.confidence == Confidence::Low), "{l:?}");
    }

    #[test]
    fn bodies_decoded_and_bombs_refused() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(format!("{{\"k\":\"{PAT}\"}}").as_bytes())
            .unwrap();
        let gz = gz.finish().unwrap();
        let s = body(&gz, Some(b"gzip"), "example.com").unwrap();
        assert_eq!(s.leaks[0].place, "body (gzip)");
        assert!(matches!(
            body(b"x", Some(b"zstd"), "e.com"),
            Err(DecodeError::Unsupported(_))
        ));
        let benign = body(
            b"{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
            None,
            "e.com",
        )
        .unwrap();
        assert!(benign.leaks.is_empty());
    }

    #[test]
    fn host_names_that_carry_data() {
        assert!(host("api.github.com").is_none());
        assert!(host("d3s4gb9q1jq7x0.cloudfront.net").is_none());
        assert!(host("my-loadbalancer-1234567890.us-west-2.elb.amazonaws.com").is_none());
        assert!(host("10.0.0.1").is_none());
        let b32 = "mzxw6ytboi2dkmzrgiztemzsgq2dmnbvgiydqmzx.attacker.example";
        let l = host(b32).unwrap();
        assert_eq!(l.rule, "dns-exfiltration");
        assert!(
            !l.excerpt.contains("mzxw6ytboi2dkmzrgiztemz"),
            "{}",
            l.excerpt
        );
        let hexed = "4b3f9a0c2d1e8f7a6b5c4d3e2f1a0b9c8d7e6f5a.attacker.example";
        assert!(host(hexed).is_some());
        assert!(host("0b9c7d4a-1234-4abc-9def-0123456789ab.example.com").is_none());
        // Many short labels add up.
        let many = format!("{}attacker.example", "abcdefgh.".repeat(14));
        assert!(host(&many).is_some());
    }
}

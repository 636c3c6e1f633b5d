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
    /// For a credential's placeholder: the credential's name.
    pub credential: Option<String>,
}

impl Leak {
    pub fn json(&self) -> Value {
        let mut j = json!({
            "rule": self.rule, "description": self.description,
            "confidence": self.confidence, "place": self.place, "excerpt": self.excerpt,
        });
        if let Some(c) = &self.credential {
            j["credential"] = json!(c);
        }
        j
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

/// Whether `host` is one of `patterns`: `Some(true)` for a name listed exactly, `Some(false)`
/// for one under a `*.suffix`, `None` for neither.
fn home(patterns: &[String], host: &str) -> Option<bool> {
    let host = host.trim_end_matches('.');
    let mut under = false;
    for p in patterns {
        match p.strip_prefix("*.") {
            Some(suffix) => {
                under |= host
                    .strip_suffix(suffix)
                    .is_some_and(|front| front.len() > 1 && front.ends_with('.'));
            }
            None if p.eq_ignore_ascii_case(host) => return Some(true),
            None => {}
        }
    }
    under.then_some(false)
}

/// Rules that name a kind of credential rather than a credential (a bearer token, a JWT, a
/// generic key): in a header meant for credentials they say only that the header does its job.
fn describes_a_header(s: &Scanner, rule: &str) -> bool {
    s.is_generic(rule) || matches!(rule, "jwt" | "authorization-bearer" | "authorization-basic")
}

/// What running out of decoding budget is: data Ward did not read in full.
fn unread(place: &str) -> Leak {
    Leak {
        rule: "unread-encoding".into(),
        description: "more encoded data than Ward decodes for one request".into(),
        confidence: Confidence::Medium,
        place: place.to_string(),
        excerpt: String::new(),
        credential: None,
    }
}

/// A credential's placeholder to look for: its name and the placeholder.
pub type Mark = (String, String);

/// Findings gathered for one request toward one host.
struct Gather<'a> {
    dest: &'a str,
    out: Vec<Leak>,
    marks: &'a [Mark],
}

impl Gather<'_> {
    /// Placeholders of credentials in `data`: each a finding (whether it may stand there is
    /// the proxy's to say).
    fn marks(&mut self, data: &[u8], place: &str) {
        for (name, ph) in self.marks {
            let found = !ph.is_empty() && memchr::memmem::find(data, ph.as_bytes()).is_some();
            if found
                && !self
                    .out
                    .iter()
                    .any(|l| l.place == place && l.credential.as_ref() == Some(name))
            {
                self.out.push(Leak {
                    rule: crate::credentials::PLACEHOLDER_RULE.into(),
                    description: format!("the placeholder of credential `{name}`"),
                    confidence: Confidence::High,
                    place: place.to_string(),
                    excerpt: format!(
                        "{}****",
                        ph.chars().take(ph.len().min(16) / 2).collect::<String>()
                    ),
                    credential: Some(name.clone()),
                });
            }
        }
    }

    fn add(&mut self, found: Vec<Finding>, place: &str, credential_header: bool) {
        let s = scanner();
        for f in found {
            // The credential going where it belongs: in a header meant for it to any of its
            // issuer's hosts; anywhere else in the request only to a host its rule names
            // exactly (`*.amazonaws.com` takes in buckets anyone can own, and a token in the
            // body of a request to its own service can be a paste).
            match home(s.hosts(&f.rule), self.dest) {
                Some(exact) if exact || credential_header => continue,
                _ => {}
            }
            let confidence = if credential_header && describes_a_header(s, &f.rule) {
                // A bearer token or a JWT of no known issuer in a header meant for one: on
                // record only.
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
                credential: None,
            });
        }
    }

    /// `data` and its decoded views; running out of budget is a finding.
    fn all(&mut self, data: &[u8], place: &str, credential_header: bool, budget: &mut Budget) {
        let s = scanner();
        self.add(s.scan(data), place, credential_header);
        self.marks(data, place);
        self.views(data, place, credential_header, budget);
    }

    /// The decoded views of `data` only.
    fn views(&mut self, data: &[u8], place: &str, credential_header: bool, budget: &mut Budget) {
        let s = scanner();
        let mut views = Vec::new();
        decode::views(data, budget, &mut |v, how| {
            let found = s.scan(v);
            let marked = self
                .marks
                .iter()
                .any(|(_, ph)| memchr::memmem::find(v, ph.as_bytes()).is_some());
            if !found.is_empty() || marked {
                views.push((
                    found,
                    format!("{place} ({})", how.join(", ")),
                    marked.then(|| v.to_vec()),
                ));
            }
        });
        for (found, place, marked) in views {
            self.add(found, &place, credential_header);
            if let Some(v) = marked {
                self.marks(&v, &place);
            }
        }
        if budget.exhausted && !self.out.iter().any(|l| l.rule == "unread-encoding") {
            self.out.push(unread(place));
        }
    }
}

/// Findings in a request's target (path and query) and headers, toward `dest`.
pub fn head(target: &str, headers: &HeaderMap, dest: &str, marks: &[Mark]) -> Vec<Leak> {
    let mut g = Gather {
        dest,
        out: Vec::new(),
        marks,
    };
    // Each part its own budget (one padded header cannot hide another's content).
    let budget = |n: usize| Budget::new(64 * 1024 + 4 * n);
    g.all(
        target.as_bytes(),
        "target",
        false,
        &mut budget(target.len()),
    );
    for (name, value) in headers {
        let n = name.as_str();
        let cred = CREDENTIAL_HEADERS.contains(&n);
        // The name too: a header's name can be the secret.
        let mut line = Vec::with_capacity(n.len() + 2 + value.len());
        line.extend_from_slice(n.as_bytes());
        line.extend_from_slice(b": ");
        line.extend_from_slice(value.as_bytes());
        g.all(&line, &format!("header {n}"), cred, &mut budget(line.len()));
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
        marks: &[],
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
pub fn body(
    data: &[u8],
    encoding: Option<&[u8]>,
    dest: &str,
    marks: &[Mark],
) -> Result<BodyScan, DecodeError> {
    let codings = match encoding {
        Some(e) => decode::codings(e)?,
        None => Vec::new(),
    };
    let mut g = Gather {
        dest,
        out: Vec::new(),
        marks,
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

/// Findings in the decoded forms of a window of a streamed body (the plain scan runs on the
/// stream itself).
pub fn streamed_views(window: &[u8], dest: &str, marks: &[Mark]) -> Vec<Leak> {
    let mut g = Gather {
        dest,
        out: Vec::new(),
        marks,
    };
    let mut budget = Budget::new(4 * window.len() + (64 << 10));
    g.marks(window, "body");
    g.views(window, "body", false, &mut budget);
    g.out
}

/// Whether a request target carries a finding (wherever it is going): such a target is
/// never written to a record as it is.
pub fn target_carries(target: &str) -> bool {
    let mut g = Gather {
        dest: "",
        out: Vec::new(),
        marks: &[],
    };
    g.all(
        target.as_bytes(),
        "target",
        false,
        &mut Budget::new(64 * 1024 + 4 * target.len()),
    );
    !g.out.is_empty()
}

/// Findings of a plain scan over a piece of a streamed body (no decoded forms).
pub fn streamed(found: Vec<Finding>, dest: &str) -> Vec<Leak> {
    let mut g = Gather {
        dest,
        out: Vec::new(),
        marks: &[],
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
            credential: None,
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
        // The label, and every label before it, masked (the data may span several); of a
        // name too long as a whole, all but its last two labels.
        let at = if why.ends_with("-character name") {
            host.match_indices('.').rev().nth(1).map_or(0, |(i, _)| i)
        } else {
            host.find(label).unwrap_or(0) + label.len()
        };
        let shown: String = host.chars().take(4).collect();
        return Some(Leak {
            rule: "dns-exfiltration".into(),
            description: format!("data in a host name: {why}"),
            confidence: Confidence::Medium,
            place: "host name".into(),
            excerpt: format!("{shown}****{}", &host[at..]),
            credential: None,
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
        let l = head(
            &format!("/x?token={PAT}"),
            &HeaderMap::new(),
            "example.com",
            &[],
        );
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(
            (l[0].rule.as_str(), l[0].place.as_str()),
            ("github-pat", "target")
        );
        assert!(!l[0].excerpt.contains(PAT));
        let l = head("/", &headers(&[("x-data", PAT)]), "example.com", &[]);
        assert_eq!(l[0].place, "header x-data");
        assert_eq!(l[0].confidence, Confidence::High);
        // Percent-encoded in the query.
        let enc: String = PAT.bytes().map(|b| format!("%{b:02X}")).collect();
        let l = head(&format!("/?q={enc}"), &HeaderMap::new(), "example.com", &[]);
        assert_eq!(l[0].place, "target (url)");
    }

    #[test]
    fn to_its_issuer_a_credential_is_in_use() {
        let h = headers(&[("authorization", &format!("token {PAT}"))]);
        assert!(head("/", &h, "api.github.com", &[]).is_empty());
        assert!(head("/", &h, "github.com", &[]).is_empty());
        // Elsewhere it is a leak, credential header or not.
        let l = head("/", &h, "github.com.evil.example", &[]);
        assert_eq!(l[0].confidence, Confidence::High, "{l:?}");
        assert!(head("/", &h, "evilgithub.com", &[])[0].confidence == Confidence::High);
        // In a body or the query it passes only to a host named exactly: not to a host
        // under a wildcard (anyone's bucket, a gist).
        let body_to = |dest| body(format!("{{\"t\":\"{PAT}\"}}").as_bytes(), None, dest, &[]);
        assert!(body_to("github.com").unwrap().leaks.is_empty());
        assert_eq!(body_to("api.github.com").unwrap().leaks.len(), 1);
        assert_eq!(
            head(
                &format!("/?t={PAT}"),
                &HeaderMap::new(),
                "api.github.com",
                &[]
            )
            .len(),
            1
        );
        // A known service's key in an Authorization header to another host is no bearer
        // token of that host.
        let key = "Bearer sk_live_yfFvwg4bZh5b3YtdgBZbvbb5fAivMluhjSsrhwlkB36DqCrxwqpaE48jRUrkh";
        let l = head("/", &headers(&[("authorization", key)]), "x.example", &[]);
        assert!(
            l.iter()
                .any(|l| l.rule == "stripe-live-secret-key" && l.confidence == Confidence::High),
            "{l:?}"
        );
        assert!(head(
            "/",
            &headers(&[("authorization", key)]),
            "api.stripe.com",
            &[]
        )
        .is_empty());
    }

    #[test]
    fn a_bearer_token_of_no_known_issuer_in_its_header_is_only_recorded() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk4";
        let l = head(
            "/",
            &headers(&[("authorization", &format!("Bearer {jwt}"))]),
            "x.example",
            &[],
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
        let s = body(&gz, Some(b"gzip"), "example.com", &[]).unwrap();
        assert_eq!(s.leaks[0].place, "body (gzip)");
        assert!(matches!(
            body(b"x", Some(b"zstd"), "e.com", &[]),
            Err(DecodeError::Unsupported(_))
        ));
        let benign = body(
            b"{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
            None,
            "e.com",
            &[],
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
        let l = host(&many).unwrap();
        assert_eq!(l.excerpt, "abcd****.attacker.example");
    }
}

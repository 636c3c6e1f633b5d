//! Credentials the agent never holds. The agent's environment gets a placeholder of the
//! secret's shape (its issuer's prefix kept, every other character replaced by a random one of
//! the same kind, so that SDKs that check a key's form accept it); the proxy puts the secret in
//! place of the placeholder only in a request to the credential's destination (an `https`
//! host named exactly, its port, a path prefix), only where the manifest says it goes (a
//! header, a query parameter, basic authentication), and only after the request was decided
//! and scanned. A placeholder anywhere else is refused (see [`crate::dlp`]).

use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::http::request::Parts;
use ward_core::{CredentialSpec, Placement};
use ward_scan::decode::{base64_decode, base64_encode};

/// The rule name a placeholder seen in a request is found under.
pub const PLACEHOLDER_RULE: &str = "credential-placeholder";

/// A credential of a session: what the manifest says, its placeholder, and its secret.
pub struct Credential {
    pub spec: CredentialSpec,
    pub placeholder: String,
    secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.spec.name)
            .field("placeholder", &self.placeholder)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A credential with a fresh placeholder for `secret`; an error says why a secret cannot
    /// be used (too short to stand in for safely, or not fit for a header).
    pub fn new(spec: CredentialSpec, secret: String) -> Result<Credential, String> {
        let secret = secret.trim().to_string();
        if secret.len() < 8 {
            return Err(format!(
                "credential `{}`: the secret is {} characters; at least 8 are needed for a \
                 placeholder that cannot be mistaken for other text",
                spec.name,
                secret.len()
            ));
        }
        if secret.len() > 8192
            || secret
                .bytes()
                .any(|b| b.is_ascii_control() || !b.is_ascii())
        {
            return Err(format!(
                "credential `{}`: the secret must be printable ASCII, at most 8 KiB",
                spec.name
            ));
        }
        let placeholder = if spec.placement == Placement::Basic {
            // A password says nothing of its shape to anyone.
            random_like(&secret, 0, false)?
        } else {
            placeholder(&secret)?
        };
        Ok(Credential {
            spec,
            placeholder,
            secret,
        })
    }
}

/// Issuers' documented key prefixes, kept in a placeholder so that SDKs which check a key's
/// form accept it (longest first).
const PREFIXES: &[&str] = &[
    "sk-ant-admin01-",
    "sk-ant-api03-",
    "sk-ant-oat01-",
    "sk-ant-ort01-",
    "github_pat_",
    "sk-or-v1-",
    "sk-proj-",
    "sk-svcacct-",
    "sk-admin-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "sk-ant-",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xapp-",
    "pypi-",
    "pplx-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "npm_",
    "gsk_",
    "xai-",
    "hf_",
    "r8_",
    "sk-",
    "AIza",
    "AKIA",
];

/// A placeholder of `secret`'s shape: an issuer's known prefix kept, each other letter or digit
/// a random one of its kind, everything else as it is.
pub fn placeholder(secret: &str) -> Result<String, String> {
    let keep = PREFIXES
        .iter()
        .find(|p| secret.starts_with(*p))
        .map_or(0, |p| p.len());
    random_like(secret, keep, true)
}

/// `secret` with its first `keep` bytes kept and the rest random: of each character's kind
/// (`kinds`), or letters and digits throughout. Too few letters and digits to stand in for
/// the secret safely is an error.
fn random_like(secret: &str, keep: usize, kinds: bool) -> Result<String, String> {
    let b = secret.as_bytes();
    let random = b[keep..]
        .iter()
        .filter(|c| c.is_ascii_alphanumeric())
        .count();
    if random < 8 {
        return Err(format!(
            "the secret has {random} letters and digits after its prefix; a placeholder needs \
             at least 8 to differ from it reliably"
        ));
    }
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..16 {
        let mut rnd = vec![0u8; b.len()];
        getrandom::getrandom(&mut rnd).map_err(|e| format!("no randomness: {e}"))?;
        let out: String = b
            .iter()
            .zip(&rnd)
            .enumerate()
            .map(|(i, (&c, &r))| {
                (if i < keep {
                    c
                } else if !kinds {
                    ALNUM[r as usize % ALNUM.len()]
                } else if c.is_ascii_lowercase() {
                    b'a' + r % 26
                } else if c.is_ascii_uppercase() {
                    b'A' + r % 26
                } else if c.is_ascii_digit() {
                    b'0' + r % 10
                } else {
                    c
                }) as char
            })
            .collect();
        if out != secret {
            return Ok(out);
        }
    }
    Err("no placeholder differs from the secret".into())
}

/// Where a placeholder in a request's head may stand for the secret to be put in: what
/// [`crate::dlp`] calls that place.
pub fn allowed_place(c: &Credential, place: &str) -> bool {
    match &c.spec.placement {
        Placement::Header(h) => place == format!("header {h}"),
        Placement::Query(_) => place == "target",
        Placement::Basic => place == "header authorization (base64)",
    }
}

/// Put in the secrets of the credentials whose placeholders the request's head holds. Every
/// placeholder must stand where its credential goes, in a request to its destination (with
/// the path `path`); otherwise nothing is changed and the error says what stood where.
/// Returns the names of the credentials put in.
pub fn put_in(
    creds: &[Credential],
    parts: &mut Parts,
    (scheme, host, port): (&str, &str, u16),
) -> Result<Vec<String>, String> {
    // Worked on a copy: a refusal leaves the request as it came.
    let mut work = hyper::Request::new(());
    *work.uri_mut() = parts.uri.clone();
    *work.headers_mut() = parts.headers.clone();
    let (mut copy, ()) = work.into_parts();
    let used = put_in_parts(creds, &mut copy, (scheme, host, port))?;
    if !used.is_empty() && parts.method == hyper::Method::TRACE {
        return Err("a TRACE request echoes its headers back: no credential is put in one".into());
    }
    parts.uri = copy.uri;
    parts.headers = copy.headers;
    Ok(used)
}

fn put_in_parts(
    creds: &[Credential],
    parts: &mut Parts,
    (scheme, host, port): (&str, &str, u16),
) -> Result<Vec<String>, String> {
    let mut used = Vec::new();
    for c in creds {
        // Each credential sees the request as the ones before left it.
        let target = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let path = parts.uri.path().to_string();
        let ph = c.placeholder.as_str();
        let in_target = target.contains(ph);
        let basic = |v: &HeaderValue| {
            v.as_bytes()
                .strip_prefix(b"Basic ")
                .map(|b64| base64_decode(b64.trim_ascii()))
        };
        let in_headers: Vec<String> = parts
            .headers
            .iter()
            .filter(|(n, v)| {
                contains(v.as_bytes(), ph)
                    || (*n == AUTHORIZATION && basic(v).is_some_and(|d| contains(&d, ph)))
            })
            .map(|(n, _)| n.as_str().to_string())
            .collect();
        if !in_target && in_headers.is_empty() {
            continue;
        }
        let elsewhere = |what: &str| {
            format!(
                "the placeholder of credential `{}` stands in the {what}; it is put in only in \
                 the {} of requests to {}{}",
                c.spec.name, c.spec.placement, c.spec.to, c.spec.path
            )
        };
        if !c.spec.goes_to(scheme, host, port, &path) {
            return Err(format!(
                "the placeholder of credential `{}` was sent to {scheme}://{host}:{port}{path}; \
                 it is put in only toward {}{}",
                c.spec.name, c.spec.to, c.spec.path
            ));
        }
        match &c.spec.placement {
            Placement::Header(h) => {
                if in_target {
                    return Err(elsewhere("request's target"));
                }
                if let Some(other) = in_headers.iter().find(|n| *n != h) {
                    return Err(elsewhere(&format!("header {other}")));
                }
                let values: Vec<HeaderValue> = parts
                    .headers
                    .get_all(h.as_str())
                    .iter()
                    .map(|v| swap_value(v.as_bytes(), ph, &c.secret))
                    .collect::<Result<_, _>>()?;
                let name = hyper::header::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| e.to_string())?;
                parts.headers.remove(&name);
                for v in values {
                    parts.headers.append(name.clone(), v);
                }
            }
            Placement::Query(q) => {
                if let Some(other) = in_headers.first() {
                    return Err(elsewhere(&format!("header {other}")));
                }
                let (p, query) = target.split_once('?').unwrap_or((&target, ""));
                if p.contains(ph) {
                    return Err(elsewhere("request's path"));
                }
                let mut pairs = Vec::new();
                for pair in query.split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k.contains(ph) || (v.contains(ph) && k != q) {
                        return Err(elsewhere(&format!("query parameter {k}")));
                    }
                    pairs.push(if k == q {
                        format!("{k}={}", v.replace(ph, &percent(&c.secret)))
                    } else {
                        pair.to_string()
                    });
                }
                let new = format!("{p}?{}", pairs.join("&"));
                parts.uri = hyper::Uri::builder()
                    .path_and_query(new)
                    .build()
                    .map_err(|e| e.to_string())?;
            }
            Placement::Basic => {
                if in_target {
                    return Err(elsewhere("request's target"));
                }
                let values: Vec<HeaderValue> = parts
                    .headers
                    .get_all(AUTHORIZATION)
                    .iter()
                    .cloned()
                    .collect();
                let mut out = Vec::new();
                for v in values {
                    if contains(v.as_bytes(), ph) {
                        return Err(elsewhere(
                            "Authorization header (not as basic authentication)",
                        ));
                    }
                    match basic(&v).filter(|d| contains(d, ph)) {
                        Some(d) => {
                            let swapped = String::from_utf8_lossy(&d).replace(ph, &c.secret);
                            let v = format!("Basic {}", base64_encode(swapped.as_bytes()));
                            out.push(HeaderValue::from_str(&v).map_err(|e| e.to_string())?);
                        }
                        None => out.push(v),
                    }
                }
                if let Some(other) = in_headers.iter().find(|n| *n != "authorization") {
                    return Err(elsewhere(&format!("header {other}")));
                }
                parts.headers.remove(AUTHORIZATION);
                for v in out {
                    parts.headers.append(AUTHORIZATION, v);
                }
            }
        }
        used.push(c.spec.name.clone());
    }
    Ok(used)
}

/// A response's headers with every secret put in this request back to its placeholder (a
/// server that echoes a header does not hand the agent the secret). Bodies are the server's:
/// one that echoes the request's headers in its body is not a destination for a credential.
pub fn mask_response(creds: &[Credential], used: &[String], headers: &mut hyper::HeaderMap) {
    for c in creds.iter().filter(|c| used.contains(&c.spec.name)) {
        for v in headers.values_mut() {
            if contains(v.as_bytes(), &c.secret) {
                if let Ok(m) = swap_value(v.as_bytes(), &c.secret, &c.placeholder) {
                    *v = m;
                }
            }
        }
    }
}

/// A query value percent-encoded: everything but unreserved characters.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn swap_value(v: &[u8], ph: &str, secret: &str) -> Result<HeaderValue, String> {
    let s = String::from_utf8_lossy(v).replace(ph, secret);
    HeaderValue::from_str(&s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_core::{Destination, Origin, SecretSource};

    fn spec(placement: Placement) -> CredentialSpec {
        CredentialSpec {
            name: "api".into(),
            source: SecretSource::Env("K".into()),
            env: Some("K".into()),
            to: Destination::parse("https://api.test").unwrap(),
            path: "/v1/".into(),
            placement,
            optional: false,
            unless_env: vec![],
            origin: Origin::Default,
        }
    }

    const SECRET: &str = "sk-ant-api03-Zq8Xc2Vb7Nm4Lk1Jh6Gf3Ds9Ap0Oi5Uy";

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = hyper::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn placeholders_keep_the_shape_and_never_the_secret() {
        let p = placeholder(SECRET).unwrap();
        assert_eq!(p.len(), SECRET.len());
        assert!(p.starts_with("sk-ant-api03-"), "{p}");
        assert_ne!(p, SECRET);
        for (a, b) in p.bytes().zip(SECRET.bytes()) {
            assert_eq!(a.is_ascii_digit(), b.is_ascii_digit());
            assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
        }
        assert!(Credential::new(spec(Placement::Basic), "short".into()).is_err());
        assert!(Credential::new(spec(Placement::Basic), "abc\ndefghij".into()).is_err());
        // Nothing random enough to stand in for: refused (not an endless search).
        assert!(
            Credential::new(spec(Placement::Header("a".into())), "!!!!!!!!!!!!".into()).is_err()
        );
        // An unknown prefix is not kept; a password's shape is not kept at all.
        let p = placeholder("correct-horse-battery-staple").unwrap();
        assert!(!p.starts_with("correct"), "{p}");
        let c = Credential::new(
            spec(Placement::Basic),
            "correct-horse-battery-staple".into(),
        )
        .unwrap();
        assert!(
            c.placeholder.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}",
            c.placeholder
        );
    }

    #[test]
    fn put_in_only_where_it_goes() {
        let c =
            Credential::new(spec(Placement::Header("x-api-key".into())), SECRET.into()).unwrap();
        let ph = c.placeholder.clone();
        let to = ("https", "api.test", 443);
        let mut p = parts("/v1/messages", &[("x-api-key", &ph)]);
        assert_eq!(put_in(&[c], &mut p, to).unwrap(), vec!["api".to_string()]);
        assert_eq!(p.headers["x-api-key"], SECRET);
        let c =
            Credential::new(spec(Placement::Header("x-api-key".into())), SECRET.into()).unwrap();
        let ph = c.placeholder.clone();
        let creds = [c];
        for (uri, headers, dest) in [
            (
                "/v1/m",
                vec![("x-api-key", ph.as_str())],
                ("https", "other.test", 443),
            ),
            ("/v2/m", vec![("x-api-key", ph.as_str())], to),
            ("/v1/m", vec![("x-other", ph.as_str())], to),
            (&*format!("/v1/m?k={ph}"), vec![], to),
        ] {
            let mut p = parts(uri, &headers);
            let e = put_in(&creds, &mut p, dest).unwrap_err();
            assert!(e.contains("credential `api`"), "{e}");
            assert!(!format!("{:?}", p.headers).contains(SECRET));
        }
        // Not past the prefix's boundary, nor through `..`; never in a TRACE.
        let c =
            Credential::new(spec(Placement::Header("x-api-key".into())), SECRET.into()).unwrap();
        let ph = c.placeholder.clone();
        let creds = [c];
        for uri in ["/v1/../admin", "/v1/%2e%2e/admin", "/v1//x"] {
            let mut p = parts(uri, &[("x-api-key", &ph)]);
            assert!(put_in(&creds, &mut p, to).is_err(), "{uri}");
            assert_eq!(
                p.headers["x-api-key"],
                ph.as_str(),
                "changed before refusing"
            );
        }
        let mut p = parts("/v1/x", &[("x-api-key", &ph)]);
        p.method = hyper::Method::TRACE;
        assert!(put_in(&creds, &mut p, to).unwrap_err().contains("TRACE"));
        // Query and basic.
        let c = Credential::new(spec(Placement::Query("key".into())), SECRET.into()).unwrap();
        let ph = c.placeholder.clone();
        let creds = [c];
        let mut p = parts(&format!("/v1/x?a=1&key={ph}"), &[]);
        put_in(&creds, &mut p, to).unwrap();
        assert_eq!(p.uri.to_string(), format!("/v1/x?a=1&key={SECRET}"));
        for uri in [format!("/v1/{ph}?key=1"), format!("/v1/x?other={ph}")] {
            let mut p = parts(&uri, &[]);
            assert!(put_in(&creds, &mut p, to).is_err(), "{uri}");
        }
        let c = Credential::new(spec(Placement::Basic), SECRET.into()).unwrap();
        let v = format!(
            "Basic {}",
            base64_encode(format!("me:{}", c.placeholder).as_bytes())
        );
        let mut p = parts("/v1/x", &[("authorization", &v)]);
        put_in(&[c], &mut p, to).unwrap();
        let got = base64_decode(&p.headers["authorization"].as_bytes()[6..]);
        assert_eq!(got, format!("me:{SECRET}").as_bytes());
        // The placeholder bare in Authorization is not basic authentication.
        let c = Credential::new(spec(Placement::Basic), SECRET.into()).unwrap();
        let raw = format!("Bearer {}", c.placeholder);
        let mut p = parts("/v1/x", &[("authorization", &raw)]);
        assert!(put_in(&[c], &mut p, to).is_err());
    }
}

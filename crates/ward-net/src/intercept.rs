//! The certificates of TLS interception: a certificate authority made for one session, whose
//! key exists only in this process's memory, the leaf certificates it signs for the names the
//! proxy decided to open (made on first use and kept per name), the bundle the sandbox is
//! told to trust (the system's roots plus the session's authority), and the client side
//! toward the real server (rustls against the system roots, or a `ca_file` the manifest
//! names; verification is never turned off).
//!
//! Nothing here decides: the proxy asks for a server configuration only for a name it has
//! already allowed, after checking that the agent's ClientHello names that same host
//! ([`crate::tls`]); the configuration itself serves whatever name it is asked for.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
pub use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where Debian (and Ubuntu, Alpine with ca-certificates) keep the system's roots, one PEM
/// bundle.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How many names keep their server configuration (a session that opens more makes the
/// oldest again when it comes back).
const KEPT: usize = 1024;

/// How long the session's authority is valid; its leaves end with it. A session that runs
/// longer has its inspected connections refused by their clients from then on.
const VALID: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a certificate or a trust store could not be had.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("cannot make the session's certificate authority: {0}")]
    Authority(String),
    #[error("no certificate is made for {0:?}: not a host name or an IP address")]
    Name(String),
    #[error("cannot make a certificate for {name}: {reason}")]
    Leaf { name: String, reason: String },
    #[error("cannot read the certificates in {path}: {reason}")]
    Roots { path: String, reason: String },
}

/// The session's certificate authority and the leaves it has signed.
pub struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    /// One key for every leaf of the session (the authority's own key signs only).
    leaf_key: rcgen::KeyPair,
    alpn: Vec<Vec<u8>>,
    kept: Mutex<Kept>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
    not_after: time::OffsetDateTime,
}

#[derive(Default)]
struct Kept {
    by_name: HashMap<String, Arc<rustls::ServerConfig>>,
    order: VecDeque<String>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Authority {
    /// A new authority for `session`, offering `alpn` (most preferred first) to the agent's
    /// clients.
    pub fn new(session: &str, alpn: &[&[u8]]) -> Result<Authority, InterceptError> {
        let err = |e: rcgen::Error| InterceptError::Authority(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("Ward session {session} (trusted inside this session only)"),
        );
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Ward");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let (not_before, not_after) = validity();
        p.not_before = not_before;
        p.not_after = not_after;
        let cert = p.self_signed(&key).map_err(err)?;
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        Ok(Authority {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
            leaf_key,
            alpn: alpn.iter().map(|a| a.to_vec()).collect(),
            kept: Mutex::new(Kept::default()),
            sessions: rustls::server::ServerSessionMemoryCache::new(KEPT),
            not_after,
        })
    }

    /// The authority's certificate (PEM), for the sandbox's trust store.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The authority's certificate (DER).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The server configuration presenting a certificate for `name` (a host name or an IP
    /// address, as the CONNECT named it), made on first use and kept.
    pub fn server_config(&self, name: &str) -> Result<Arc<rustls::ServerConfig>, InterceptError> {
        let name = certified_name(name)?;
        if let Some(c) = self.kept().by_name.get(&name) {
            return Ok(c.clone());
        }
        // Made outside the lock: two first connections to one name may both make one.
        let made = Arc::new(self.make(&name)?);
        let mut kept = self.kept();
        if let Some(c) = kept.by_name.get(&name) {
            return Ok(c.clone());
        }
        if kept.order.len() >= KEPT {
            if let Some(old) = kept.order.pop_front() {
                kept.by_name.remove(&old);
            }
        }
        kept.order.push_back(name.clone());
        kept.by_name.insert(name, made.clone());
        Ok(made)
    }

    /// How many names have a kept configuration.
    pub fn kept_names(&self) -> usize {
        self.kept().by_name.len()
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock left at worst a missing entry.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn make(&self, name: &str) -> Result<rustls::ServerConfig, InterceptError> {
        let err = |reason: String| InterceptError::Leaf {
            name: name.to_string(),
            reason,
        };
        let leaf = self.leaf(name)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![leaf, self.ca_der.clone()], key)
            .map_err(|e| err(e.to_string()))?;
        cfg.alpn_protocols = self.alpn.clone();
        // One bounded store of resumable sessions for every name.
        cfg.session_storage = self.sessions.clone();
        Ok(cfg)
    }

    /// A new leaf certificate for `name` (already a [`certified_name`]).
    fn leaf(&self, name: &str) -> Result<CertificateDer<'static>, InterceptError> {
        let err = |reason: String| InterceptError::Leaf {
            name: name.to_string(),
            reason,
        };
        let mut p =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| err(e.to_string()))?;
        p.subject_alt_names = vec![match name.parse::<std::net::IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(
                name.to_string()
                    .try_into()
                    .map_err(|e: rcgen::Error| err(e.to_string()))?,
            ),
        }];
        p.distinguished_name = rcgen::DistinguishedName::new();
        // The subject alternative name is what clients check; a common name is at most 64.
        if name.len() <= 64 {
            p.distinguished_name
                .push(rcgen::DnType::CommonName, name.to_string());
        }
        // Each leaf its own random serial (one issuer, one key: a serial derived from the key
        // would repeat, which NSS refuses).
        let mut serial = [0u8; 16];
        random(&mut serial).map_err(|e| err(e.to_string()))?;
        serial[0] &= 0x7f;
        serial[0] |= 0x40;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        // Never past the authority's own end.
        p.not_before = validity().0;
        p.not_after = self.not_after;
        let leaf = p
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| err(e.to_string()))?;
        Ok(leaf.der().clone())
    }
}

/// `buf` filled from the kernel's random source.
fn random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: getrandom writes at most the given length into the buffer's remaining part.
        let n = unsafe { libc::getrandom(buf[at..].as_mut_ptr().cast(), buf.len() - at, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        at += n as usize;
    }
    Ok(())
}

/// From an hour ago (clocks inside and out may differ a little) for [`VALID`].
fn validity() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    (at(now - 3600), at(now + VALID.as_secs() as i64))
}

/// `name` as a certificate names it: an IP address, or a host name in lower case without
/// its trailing dot. Anything else (wildcards, spaces, empty labels) gets no certificate.
pub fn certified_name(name: &str) -> Result<String, InterceptError> {
    let bad = || InterceptError::Name(name.chars().take(80).collect());
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if let Some(inner) = n.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let v6: std::net::Ipv6Addr = inner.parse().map_err(|_| bad())?;
        return Ok(std::net::IpAddr::V6(v6).to_canonical().to_string());
    }
    if let Ok(ip) = n.parse::<std::net::IpAddr>() {
        return Ok(ip.to_canonical().to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if n.is_empty() || n.len() > 253 || !n.split('.').all(label_ok) {
        return Err(bad());
    }
    // A last label that is a number (decimal, or hex after 0x) makes the whole an IPv4
    // address to a URL parser (WHATWG): not a host name, whatever else it is.
    let last = n.rsplit('.').next().unwrap_or("");
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if last.bytes().all(|b| b.is_ascii_digit()) || hex {
        return Err(bad());
    }
    Ok(n)
}

/// The most a certificate file may hold (the system's bundle is ~200 KiB).
pub const MAX_PEM: u64 = 4 << 20;

/// A regular file's bytes, at most [`MAX_PEM`] (a device or a pipe is refused, never waited
/// on).
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    ward_core::bounded::read_regular(path, MAX_PEM)
}

/// The certificates in the PEM file at `path` (the system's roots, or a manifest's
/// `ca_file`).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, InterceptError> {
    let err = |reason: String| InterceptError::Roots {
        path: path.display().to_string(),
        reason,
    };
    let bytes = read_bounded(path).map_err(|e| err(e.to_string()))?;
    certificates_in(&bytes, &path.display().to_string())
}

/// The certificates in `bytes` (PEM), read from `path` (for the error).
pub fn certificates_in(
    bytes: &[u8],
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, InterceptError> {
    let err = |reason: String| InterceptError::Roots {
        path: path.to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM bundle ({e})")))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(certs)
}

/// The client side toward real servers: the system's roots (and `extra`, a manifest's
/// `ca_file`), with the server's certificate always verified; ALPN `alpn`.
pub fn upstream_config(
    system: &Path,
    extra: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, InterceptError> {
    let mut roots = rustls::RootCertStore::empty();
    let (_, refused) = roots.add_parsable_certificates(read_certificates(system)?);
    for c in extra {
        roots.add(c.clone()).map_err(|e| InterceptError::Roots {
            path: "the manifest's ca_file".into(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(InterceptError::Roots {
            path: system.display().to_string(),
            reason: format!("none of its certificates is usable ({refused} refused)"),
        });
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| InterceptError::Roots {
            path: system.display().to_string(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// What the sandbox trusts: the system's roots followed by the session's authority, as one
/// PEM bundle (what `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` and the system
/// store's path inside name).
pub fn trust_bundle(system_pem: &str, authority: &Authority) -> String {
    let mut out = String::with_capacity(system_pem.len() + authority.ca_pem().len() + 64);
    out.push_str(system_pem);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# Ward: this session's own certificate authority\n");
    out.push_str(authority.ca_pem());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::ServerName;

    /// A handshake in memory between a client trusting `roots` and `server`, for `sni`.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        roots: &[CertificateDer<'static>],
        sni: &str,
        alpn: &[&[u8]],
    ) -> Result<Option<Vec<u8>>, String> {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).unwrap();
        }
        let mut cc = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
        cc.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
        let mut c = rustls::ClientConnection::new(Arc::new(cc), name).map_err(|e| e.to_string())?;
        let mut s = rustls::ServerConnection::new(server).map_err(|e| e.to_string())?;
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets().map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets().map_err(|e| e.to_string())?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.alpn_protocol().map(|a| a.to_vec()));
            }
        }
        Err("the handshake did not finish".into())
    }

    #[test]
    fn a_leaf_is_trusted_for_its_name_only_through_the_session_authority() {
        let a = Authority::new("s1", &[b"h2", b"http/1.1"]).unwrap();
        let cfg = a.server_config("API.Example.com.").unwrap();
        let alpn = handshake(
            cfg.clone(),
            &[a.ca_der().clone()],
            "api.example.com",
            &[b"http/1.1"],
        )
        .unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        // Another name: the certificate does not cover it.
        let e = handshake(cfg.clone(), &[a.ca_der().clone()], "evil.example", &[]).unwrap_err();
        assert!(
            e.contains("NotValidForName") || e.contains("not valid"),
            "{e}"
        );
        // Another session's authority is not trusted for it.
        let other = Authority::new("s2", &[]).unwrap();
        let e = handshake(cfg, &[other.ca_der().clone()], "api.example.com", &[]).unwrap_err();
        assert!(e.contains("UnknownIssuer") || e.contains("issuer"), "{e}");
        // An address gets an IP SAN.
        let ip = a.server_config("127.0.0.1").unwrap();
        handshake(ip, &[a.ca_der().clone()], "127.0.0.1", &[]).unwrap();
    }

    /// The serial number of a certificate (DER: the certificate's and the TBS's SEQUENCE
    /// headers, the explicit version, then the INTEGER).
    fn serial(der: &[u8]) -> Vec<u8> {
        fn header(b: &[u8]) -> (usize, usize) {
            let l = b[1] as usize;
            if l < 0x80 {
                (2, l)
            } else {
                let n = l & 0x7f;
                (
                    2 + n,
                    b[2..2 + n].iter().fold(0, |a, &x| a << 8 | x as usize),
                )
            }
        }
        let (h, _) = header(der);
        let tbs = &der[h..];
        let (h, _) = header(tbs);
        let mut at = &tbs[h..];
        if at[0] == 0xa0 {
            let (h, l) = header(at);
            at = &at[h + l..];
        }
        assert_eq!(at[0], 0x02, "an INTEGER");
        let (h, l) = header(at);
        at[h..h + l].to_vec()
    }

    #[test]
    fn every_leaf_has_its_own_random_serial() {
        let a = Authority::new("s", &[]).unwrap();
        let one = serial(&a.leaf("a.example").unwrap());
        let two = serial(&a.leaf("a.example").unwrap());
        assert_eq!(one.len(), 16);
        assert_ne!(one, two);
        assert_ne!(serial(a.ca_der()), one);
    }

    #[test]
    fn leaves_are_kept_per_name_and_bounded() {
        let a = Authority::new("s", &[]).unwrap();
        let one = a.server_config("a.example").unwrap();
        let again = a.server_config("A.EXAMPLE").unwrap();
        assert!(Arc::ptr_eq(&one, &again));
        for i in 0..KEPT + 10 {
            a.server_config(&format!("h{i}.example")).unwrap();
        }
        assert_eq!(a.kept_names(), KEPT);
        // The oldest went first.
        let later = a.server_config("a.example").unwrap();
        assert!(!Arc::ptr_eq(&one, &later));
    }

    #[test]
    fn names_no_certificate_is_made_for() {
        for n in [
            "",
            ".",
            "*.example.com",
            "a b.example",
            "a..example",
            "-a.example",
            "1.2.3",
            "a.0x7f",
            "0x7f.0.0.1",
            "x.1",
            "[1.2.3.4]",
            "[[::1]]",
            "exa\u{0}mple.com",
            "ex\u{e4}mple.com",
            &"a".repeat(64),
            &format!("{}.x", "a.".repeat(130)),
        ] {
            assert!(
                matches!(certified_name(n), Err(InterceptError::Name(_))),
                "{n:?}"
            );
        }
        assert_eq!(certified_name("[::1]").unwrap(), "::1");
        assert_eq!(certified_name("[::ffff:1.2.3.4]").unwrap(), "1.2.3.4");
        assert_eq!(certified_name("0x7f.example").unwrap(), "0x7f.example");
        assert_eq!(
            certified_name("Xn--Bcher-kva.Example.").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn the_upstream_side_reads_the_system_roots_and_refuses_what_is_not_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let a = Authority::new("s", &[]).unwrap();
        let bundle = dir.path().join("roots.pem");
        std::fs::write(&bundle, trust_bundle("", &a)).unwrap();
        let cfg = upstream_config(&bundle, &[], &[b"http/1.1"]).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let e = upstream_config(&empty, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
        for special in ["/dev/zero", "/dev/null"] {
            let e = upstream_config(Path::new(special), &[], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = upstream_config(&fifo, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = upstream_config(&dir.path().join("missing"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
        if Path::new(SYSTEM_ROOTS).exists() {
            upstream_config(Path::new(SYSTEM_ROOTS), &[], &[]).unwrap();
        } else {
            eprintln!("NOTE: {SYSTEM_ROOTS} is missing here (ca-certificates): the system roots were not read");
        }
    }

    #[test]
    fn the_bundle_ends_with_the_session_authority_and_no_key() {
        let a = Authority::new("s", &[]).unwrap();
        let b = trust_bundle(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            &a,
        );
        assert!(b.ends_with(a.ca_pem()));
        assert!(!b.contains("PRIVATE KEY"));
        assert!(!format!("{a:?}").contains("KEY"));
    }
}

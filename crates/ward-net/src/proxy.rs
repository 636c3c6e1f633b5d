//! The proxy server: one listening socket speaking HTTP/1.1, HTTP/2 (prior knowledge) and
//! SOCKS5, told apart by the first byte.

use crate::canon::{self, Authority, Host};
use crate::{classify, socks, tls};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ward_audit::{AuditLog, Event};
use ward_broker::{Broker, Outcome};
use ward_consent::Consent;
use ward_core::{Action, ActionKind, Consented, Decision, Effect, HostPattern, Manifest};
use ward_policy::Pdp;

/// The port the proxy listens on inside a session's network namespace (127.0.0.1).
pub const PROXY_PORT: u16 = 3128;

/// Chunked request bodies held at once, across all requests, in KiB (256 MiB).
const BUFFER_BUDGET_KIB: usize = 256 * 1024;
/// Connections served at once; past this, new ones are closed (and counted).
const MAX_CONNECTIONS: usize = 4096;
/// Refusal records per destination; past this they are only counted.
const REFUSAL_RECORDS: u64 = 20;
/// A tunnel with no traffic either way for this long is closed.
const TUNNEL_IDLE: Duration = Duration::from_secs(3600);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// Where names are resolved.
#[derive(Debug, Clone)]
pub enum Dns {
    /// The system's configuration (`/etc/resolv.conf`, `/etc/hosts`).
    System,
    /// These servers only (UDP and TCP), no hosts file.
    Servers(Vec<SocketAddr>),
}

/// What the proxy needs.
pub struct Config {
    pub manifest: Manifest,
    pub log: Arc<AuditLog>,
    /// The session the records belong to (`ward run`), if any.
    pub session: Option<String>,
    pub agent: Option<String>,
    /// Who answers `ask`; `None`: nobody, so asks are refused.
    pub consent: Option<Box<dyn Consent + Send>>,
    pub ask_timeout: Duration,
    pub dns: Dns,
    /// Bodies of unknown length (chunked) are held up to this size to be judged as uploads;
    /// the manifest's upload limit lowers it.
    pub max_buffered_upload: u64,
    /// The session's broker (shared with exec and the review, so answers given once hold
    /// everywhere). `None`: the proxy makes its own from the fields above (`ward proxy`).
    pub broker: Option<Broker>,
}

impl Config {
    pub fn new(manifest: Manifest, log: Arc<AuditLog>) -> Config {
        Config {
            manifest,
            log,
            session: None,
            agent: None,
            consent: None,
            ask_timeout: Duration::from_secs(60),
            dns: Dns::System,
            max_buffered_upload: 64 << 20,
            broker: None,
        }
    }
}

/// A running proxy's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// Decides, asks and records every action of the proxy.
    broker: Broker,
    manifest: Manifest,
    resolver: Option<hickory_resolver::TokioResolver>,
    resolver_error: String,
    own: Mutex<Vec<SocketAddr>>,
    upload_cap: u64,
    active: AtomicUsize,
    has_upload_rules: bool,
    admitted: AtomicU64,
    refused: AtomicU64,
    /// Bytes sent through tunnels this session, per destination.
    /// What the session has sent to each destination (`scheme://host:port`): request lines,
    /// headers and bodies of plain requests, every byte of tunnels.
    tunnel_sent: Mutex<HashMap<String, u64>>,
    /// Bytes of chunked bodies held right now, across all requests.
    buffering: Arc<tokio::sync::Semaphore>,
    /// This machine's own addresses (the proxy dials from the host's network).
    local: Vec<IpAddr>,
    /// Refusal records per destination (past a bound they are only counted).
    refusals_by: Mutex<HashMap<String, u64>>,
}

/// Why something was refused: what the client is told and what the log says.
struct Refusal {
    status: StatusCode,
    socks: u8,
    by: String,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, socks: u8, by: &str, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            socks,
            by: by.into(),
            reason: reason.into(),
        }
    }
}

/// A destination that passed: where to dial.
struct Vetted {
    addrs: Vec<SocketAddr>,
}

impl Proxy {
    pub fn new(cfg: Config) -> anyhow::Result<Proxy> {
        raise_fd_limit();
        let broker = match cfg.broker {
            Some(b) => b,
            None => Broker::new(ward_broker::Config {
                pdp: Pdp::new(cfg.manifest.clone())?,
                log: cfg.log,
                session: cfg.session,
                agent: cfg.agent,
                channels: cfg.consent.into_iter().collect(),
                ask_timeout: cfg.ask_timeout,
                always: None,
            }),
        };
        let (resolver, resolver_error) = match build_resolver(&cfg.dns) {
            Ok(r) => (Some(r), String::new()),
            Err(e) => (None, e),
        };
        let limit = cfg.manifest.limits.upload.as_ref().map(|(v, _)| *v);
        let has_upload_rules = limit.is_some()
            || cfg
                .manifest
                .policies
                .iter()
                .any(|p| p.actions.iter().any(|k| k.matches(&ActionKind::NetUpload)));
        Ok(Proxy {
            inner: Arc::new(Inner {
                broker,
                manifest: cfg.manifest,
                resolver,
                resolver_error,
                own: Mutex::new(Vec::new()),
                upload_cap: limit
                    .map_or(cfg.max_buffered_upload, |l| l.min(cfg.max_buffered_upload)),
                active: AtomicUsize::new(0),
                has_upload_rules,
                admitted: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                tunnel_sent: Mutex::new(HashMap::new()),
                buffering: Arc::new(tokio::sync::Semaphore::new(BUFFER_BUDGET_KIB)),
                local: local_addresses(),
                refusals_by: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Connections being served right now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Destinations admitted and actions refused so far (for the session's end record).
    pub fn stats(&self) -> serde_json::Value {
        let unrecorded: u64 = lock(&self.inner.refusals_by)
            .values()
            .map(|n| n.saturating_sub(REFUSAL_RECORDS))
            .sum();
        json!({
            "admitted": self.inner.admitted.load(Ordering::Relaxed),
            "refused": self.inner.refused.load(Ordering::Relaxed),
            "refusals_only_counted": unrecorded,
        })
    }

    /// Accept and serve until the listener fails.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        if let Ok(a) = listener.local_addr() {
            lock(&self.inner.own).push(a);
        }
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    // Out of descriptors or memory for a moment: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.inner.active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                // Past the cap a connection is closed at once (and counted): descriptors stay
                // for the audit log and the connections already served.
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let p = self.clone();
            p.inner.active.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                // Counted down however the task ends (a panic included).
                struct Active(Proxy);
                impl Drop for Active {
                    fn drop(&mut self) {
                        self.0.inner.active.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                let guard = Active(p);
                guard.0.connection(stream).await;
            });
        }
    }

    async fn connection(&self, stream: TcpStream) {
        let mut first = [0u8; 1];
        let n = match tokio::time::timeout(Duration::from_secs(30), stream.peek(&mut first)).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if n == 1 && first[0] == 5 {
            self.socks(stream).await;
            return;
        }
        if n == 1 && first[0] == b'C' {
            let mut head = [0u8; 8];
            if let Ok(Ok(8)) =
                tokio::time::timeout(Duration::from_secs(30), stream.peek(&mut head)).await
            {
                if &head == b"CONNECT " {
                    self.raw_connect(stream).await;
                    return;
                }
            }
        }
        // hyper reads up to the HTTP/2 preface's length to tell the versions apart, with no
        // deadline of its own: wait for those bytes here, with one.
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let enough = tokio::time::timeout(Duration::from_secs(30), async {
            let mut buf = [0u8; 24];
            loop {
                match stream.peek(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) if n >= PREFACE.len() || buf[..n] != PREFACE[..n] => return true,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await;
        if enough != Ok(true) {
            return;
        }
        let conn = Arc::new(ClientConn {
            upstream: Mutex::new(None),
        });
        let p = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let (p, conn) = (p.clone(), conn.clone());
            async move { Ok::<_, std::convert::Infallible>(p.request(req, conn).await) }
        });
        let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(64 * 1024);
        b.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(100)
            .keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20));
        let _ = b
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .await;
    }

    // ----- decisions -----

    fn event(&self, a: &Action, d: &Decision, detail: serde_json::Value) -> Event {
        self.outcome_event(
            a,
            &Outcome {
                decision: d.clone(),
                consent: None,
                channel: None,
            },
            detail,
        )
    }

    fn outcome_event(&self, a: &Action, o: &Outcome, detail: serde_json::Value) -> Event {
        self.inner.broker.event(a, o, detail)
    }

    /// Record something that already happened (or was refused): queued, not waited for.
    fn note(&self, ev: Event) {
        if ev
            .decision
            .as_ref()
            .is_some_and(|d| d.result == Effect::Deny)
        {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            // A looping agent must not fill the disk with the same refusal: the first few per
            // destination are recorded, the rest counted (in the session's end record).
            let key = ev.resource.clone().unwrap_or_default();
            let mut by = lock(&self.inner.refusals_by);
            let known = by.contains_key(&key);
            if !known && by.len() >= 4096 {
                return;
            }
            let n = by.entry(key).or_insert(0);
            *n += 1;
            if *n > REFUSAL_RECORDS {
                return;
            }
        }
        self.inner.broker.note(ev);
    }

    fn bad_request(&self, via: &str, what: &str, why: &str) -> Refusal {
        let a = Action::new(ActionKind::NetConnect, what.to_string());
        let d = Decision::new(Effect::Deny, "builtin:malformed", why.to_string());
        self.note(self.event(&a, &d, json!({"via": via, "malformed": true})));
        Refusal::new(
            StatusCode::BAD_REQUEST,
            socks::REP_FAILURE,
            "builtin:malformed",
            why,
        )
    }

    fn policy(&self, a: &Action) -> Decision {
        self.inner.broker.decide(a)
    }

    /// Ask the person about `key` (a destination) through the broker: once per session per
    /// destination; concurrent asks for the same one wait for the first answer.
    async fn ask(&self, d: Decision, key: String, text: String, host: String) -> Outcome {
        let broker = self.inner.broker.clone();
        let fallback = Outcome {
            decision: Decision::new(
                Effect::Deny,
                d.by.clone(),
                format!("{} (asked: unavailable)", d.reason),
            ),
            consent: Some(Consented::Unavailable),
            channel: None,
        };
        let remember = ward_broker::Remember {
            kind: ActionKind::NetConnect,
            resource: host,
        };
        tokio::task::spawn_blocking(move || broker.ask(d, &key, &text, Some(remember)))
            .await
            .unwrap_or(fallback)
    }

    /// Decide on reaching `auth` over `scheme`, resolve it once, vet every address, and record
    /// the outcome. Allowed destinations are recorded durably before this returns.
    async fn admit(&self, via: &str, scheme: &str, auth: &Authority) -> Result<Vetted, Refusal> {
        let started = Instant::now();
        let target = format!("{scheme}://{auth}");
        let action = Action {
            dest: Some(auth.host.as_match()),
            port: Some(auth.port),
            scheme: Some(scheme.to_string()),
            agent: self.inner.broker.agent().map(str::to_string),
            ..Action::new(ActionKind::NetConnect, target.clone())
        };
        let d = self.policy(&action);
        let outcome = if d.effect == Effect::Ask {
            let text = format!(
                "The agent wants to connect to {} ({via}): {}",
                ward_core::inert::Inert(&target),
                ward_core::inert::Inert(&d.reason)
            );
            self.ask(d, target.clone(), text, auth.host.as_match())
                .await
        } else {
            Outcome {
                decision: d,
                consent: None,
                channel: None,
            }
        };
        // What asking came to stays on every record of this connection below.
        let with = |d: Decision| Outcome {
            decision: d,
            ..outcome.clone()
        };
        let d = outcome.decision.clone();
        if d.effect != Effect::Allow {
            self.note(self.outcome_event(&action, &outcome, json!({"via": via})));
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                socks::REP_NOT_ALLOWED,
                &d.by,
                d.reason,
            ));
        }
        let answers: Vec<IpAddr> = match &auth.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(n) => match self.resolve(n).await {
                Ok(a) => a,
                Err(why) => {
                    let d2 = Decision::new(Effect::Deny, "builtin:dns", why.clone());
                    self.note(self.outcome_event(&action, &with(d2), json!({"via": via})));
                    return Err(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        socks::REP_HOST_UNREACHABLE,
                        "builtin:dns",
                        why,
                    ));
                }
            },
        };
        let own = lock(&self.inner.own).clone();
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for ip in &answers {
            let sa = SocketAddr::new(*ip, auth.port);
            if own
                .iter()
                .any(|o| *o == sa || (o.port() == sa.port() && o.ip().is_unspecified()))
            {
                refused.push(format!("{ip} (the proxy itself)"));
            } else if let Some(class) = classify::non_public(*ip) {
                if self.named(scheme, *ip, auth.port) {
                    ok.push(sa);
                } else {
                    refused.push(format!("{ip} ({class})"));
                }
            } else if self.inner.local.contains(ip) && !self.named(scheme, *ip, auth.port) {
                refused.push(format!("{ip} (this machine)"));
            } else {
                ok.push(sa);
            }
        }
        let detail = json!({
            "via": via,
            "addresses": answers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "refused": refused,
            "ms": started.elapsed().as_secs_f64() * 1e3,
        });
        if ok.is_empty() {
            let why = format!(
                "{} resolves only to addresses the manifest does not name: {}; name the address itself (e.g. {scheme}://{}:{}) to allow it",
                auth.host,
                refused.join(", "),
                answers.first().map(|a| Host::Ip(*a).as_match()).unwrap_or_default(),
                auth.port
            );
            let d2 = Decision::new(Effect::Deny, "builtin:ssrf", why.clone());
            self.note(self.outcome_event(&action, &with(d2), detail));
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                socks::REP_NOT_ALLOWED,
                "builtin:ssrf",
                why,
            ));
        }
        let ev = self.outcome_event(&action, &outcome, detail);
        let broker = self.inner.broker.clone();
        let durable = tokio::task::spawn_blocking(move || broker.record(ev)).await;
        match durable {
            Ok(Ok(())) => {
                self.inner.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Vetted { addrs: ok })
            }
            Ok(Err(e)) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                socks::REP_FAILURE,
                "builtin:audit",
                format!("the audit log could not record this connection, so it is refused: {e}"),
            )),
            Err(_) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                socks::REP_FAILURE,
                "builtin:audit",
                "the audit log could not record this connection",
            )),
        }
    }

    /// Does the manifest name this address itself (an IP destination), so that reaching it is
    /// the person's explicit choice even though it is not public?
    fn named(&self, scheme: &str, ip: IpAddr, port: u16) -> bool {
        let hit = self.inner.manifest.network.iter().any(|e| {
            e.effect == Effect::Allow
                && e.dest.scheme == scheme
                && e.dest.port == port
                && match (&e.dest.host, ip) {
                    (HostPattern::V4(a), IpAddr::V4(b)) => *a == b,
                    (HostPattern::V6(a), IpAddr::V6(b)) => *a == b,
                    _ => false,
                }
        });
        if !hit {
            return false;
        }
        // And the whole decision point (managed ceilings included) agrees.
        let a = Action {
            dest: Some(Host::Ip(ip).as_match()),
            port: Some(port),
            scheme: Some(scheme.into()),
            ..Action::new(
                ActionKind::NetConnect,
                format!("{scheme}://{}", Host::Ip(ip)),
            )
        };
        self.policy(&a).effect == Effect::Allow
    }

    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let Some(r) = &self.inner.resolver else {
            return Err(format!(
                "cannot resolve {name}: no DNS configuration ({})",
                self.inner.resolver_error
            ));
        };
        let fqdn = format!("{name}.");
        match tokio::time::timeout(Duration::from_secs(10), r.lookup_ip(fqdn.as_str())).await {
            Err(_) => Err(format!("resolving {name} timed out")),
            Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
            Ok(Ok(l)) => {
                let v: Vec<IpAddr> = l.iter().map(canon::unwrap_mapped).collect();
                if v.is_empty() {
                    Err(format!("{name} has no addresses"))
                } else {
                    Ok(v)
                }
            }
        }
    }

    // ----- HTTP -----

    async fn request(&self, req: Request<Incoming>, conn: Arc<ClientConn>) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        match self.forward(req, conn).await {
            Ok(r) => r,
            Err(r) => refusal_response(&r),
        }
    }

    async fn connect(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let raw = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let auth = match canon::authority(&raw, None) {
            Ok(a) => a,
            Err(e) => {
                let r = self.bad_request("connect", &raw, &format!("bad CONNECT target: {e}"));
                return refusal_response(&r);
            }
        };
        let vetted = match self.admit("connect", "https", &auth).await {
            Ok(v) => v,
            Err(r) => return refusal_response(&r),
        };
        let p = self.clone();
        tokio::spawn(async move {
            if let Ok(up) = hyper::upgrade::on(req).await {
                p.tunnel(TokioIo::new(up), auth, vetted, "connect", Vec::new())
                    .await
            }
        });
        Response::new(empty())
    }

    /// A connection whose first request is CONNECT (what clients do): read its head here, so
    /// that the tunnel keeps the plain socket and can move bytes with `splice` (no copies
    /// through the proxy). The same decisions as [`Proxy::connect`].
    async fn raw_connect(&self, mut s: TcpStream) {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let end = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Some(i + 4);
                }
                if buf.len() > 16 * 1024 {
                    return None;
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        let Ok(Some(end)) = end else {
            let r = self.bad_request(
                "connect",
                "CONNECT",
                "incomplete or oversized CONNECT request",
            );
            let _ = s.write_all(&refusal_bytes(&r)).await;
            return;
        };
        let early = buf[end..].to_vec();
        let Ok(head) = std::str::from_utf8(&buf[..end]) else {
            let r = self.bad_request("connect", "CONNECT", "the CONNECT request is not text");
            let _ = s.write_all(&refusal_bytes(&r)).await;
            return;
        };
        let line = head.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (m, target, version) = (parts.next(), parts.next(), parts.next());
        if m != Some("CONNECT")
            || !matches!(version, Some("HTTP/1.1") | Some("HTTP/1.0"))
            || parts.next().is_some()
            || head.contains("\r\n ")
            || head.contains("\r\n\t")
            || head[..end.saturating_sub(4)]
                .split("\r\n")
                .any(|l| l.contains('\n'))
        {
            let r = self.bad_request("connect", line, "malformed CONNECT request");
            let _ = s.write_all(&refusal_bytes(&r)).await;
            return;
        }
        let raw = target.unwrap_or("");
        let auth = match canon::authority(raw, None) {
            Ok(a) => a,
            Err(e) => {
                let r = self.bad_request("connect", raw, &format!("bad CONNECT target: {e}"));
                let _ = s.write_all(&refusal_bytes(&r)).await;
                return;
            }
        };
        match self.admit("connect", "https", &auth).await {
            Ok(v) => {
                if s.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    self.tunnel(s, auth, v, "connect", early).await;
                }
            }
            Err(r) => {
                let _ = s.write_all(&refusal_bytes(&r)).await;
            }
        }
    }

    /// The body of a CONNECT or SOCKS tunnel: read the ClientHello, check its name, dial the
    /// vetted address, pass bytes both ways, record what went through.
    async fn tunnel<S>(
        &self,
        mut client: S,
        auth: Authority,
        vetted: Vetted,
        via: &str,
        early: Vec<u8>,
    ) where
        S: Relay,
    {
        let started = Instant::now();
        let target = format!("https://{auth}");
        let action = Action {
            dest: Some(auth.host.as_match()),
            port: Some(auth.port),
            scheme: Some("https".into()),
            agent: self.inner.broker.agent().map(str::to_string),
            ..Action::new(ActionKind::NetConnect, target)
        };
        let mut buf = early;
        let hello = tokio::time::timeout(Duration::from_secs(30), async {
            let mut chunk = [0u8; 4096];
            loop {
                if buf.len() >= tls::need(&buf) || buf.first().is_some_and(|b| *b != 0x16) {
                    match tls::parse(&buf) {
                        Ok(Some(h)) => return Ok(h),
                        Ok(None) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if buf.len() > tls::MAX_HELLO + 1024 {
                    return Err("ClientHello too large".into());
                }
                let n = client.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the client closed before its TLS ClientHello".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| Err("no TLS ClientHello within 30 s".into()));
        let refuse = |why: String| Decision::new(Effect::Deny, "builtin:sni", why);
        let checked = match hello {
            Err(e) => Err(refuse(format!(
                "tunnels carry TLS only ({e}); send plain HTTP as a proxy request (HTTP_PROXY)"
            ))),
            Ok(h) if h.esni => Err(refuse(
                "the ClientHello hides its server name (encrypted_server_name)".into(),
            )),
            Ok(h) => match (&auth.host, h.sni.as_deref()) {
                (Host::Name(n), Some(s))
                    if s.strip_suffix('.').unwrap_or(s).eq_ignore_ascii_case(n) =>
                {
                    Ok(())
                }
                (Host::Name(n), Some(s)) => Err(refuse(format!(
                    "TLS server name `{}` is not the CONNECT host {n} (domain fronting)",
                    s.escape_default()
                ))),
                (Host::Name(n), None) => Err(refuse(format!(
                    "the ClientHello names no server (SNI), so {n} cannot be checked"
                ))),
                (Host::Ip(_), None) => Ok(()),
                (Host::Ip(ip), Some(s)) => Err(refuse(format!(
                    "TLS server name `{}` sent to the address {ip}",
                    s.escape_default()
                ))),
            },
        };
        if let Err(d) = checked {
            self.note(self.event(&action, &d, json!({"via": via, "stage": "tls"})));
            return;
        }
        let mut upstream = None;
        let mut last_err = String::new();
        for a in &vetted.addrs {
            match tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(a)).await {
                Ok(Ok(s)) => {
                    upstream = Some((s, *a));
                    break;
                }
                Ok(Err(e)) => last_err = format!("{a}: {e}"),
                Err(_) => last_err = format!("{a}: timed out"),
            }
        }
        let Some((mut up, addr)) = upstream else {
            let d = Decision::new(
                Effect::Allow,
                "builtin:dial",
                format!("dial failed: {last_err}"),
            );
            self.note(Event {
                kind: "net.close".into(),
                ..self.event(&action, &d, json!({"via": via, "error": last_err}))
            });
            return;
        };
        let _ = up.set_nodelay(true);
        let limit = self.inner.manifest.limits.upload.as_ref().map(|(v, _)| *v);
        let mut gate = Gate {
            proxy: self,
            key: format!("https://{auth}"),
            action: action.clone(),
            next: TUNNEL_FREE,
            limit,
            refusal: None,
            total: 0,
        };
        let res = if gate.add(buf.len() as u64) {
            async {
                up.write_all(&buf)
                    .await
                    .map_err(|e| PipeError::Io(0, 0, e))?;
                match client.tcp() {
                    Some(c) => splice_pipe(c, &up, buf.len() as u64, |n| gate.add(n)).await,
                    None => pipe(&mut client, &mut up, buf.len() as u64, |n| gate.add(n)).await,
                }
            }
            .await
        } else {
            Err(PipeError::Limit(0, 0))
        };
        let (sent, received, end) = match res {
            Ok((s, r)) => (s, r, "closed".to_string()),
            Err(PipeError::Io(s, r, e)) => (s, r, format!("error: {e}")),
            Err(PipeError::Limit(s, r)) => (s, r, "upload limit".to_string()),
        };
        let detail = json!({
            "via": via, "addr": addr.to_string(), "up": sent, "down": received,
            "ms": started.elapsed().as_secs_f64() * 1e3, "end": end,
        });
        if end == "upload limit" {
            let d = gate
                .refusal
                .take()
                .unwrap_or_else(|| Decision::new(Effect::Deny, self.upload_by(), "upload refused"));
            let a = Action {
                kind: ActionKind::NetUpload,
                size: Some(gate.total),
                ..action.clone()
            };
            self.note(self.event(&a, &d, detail));
        } else {
            let d = Decision::new(Effect::Allow, "session", "tunnel ended");
            self.note(Event {
                kind: "net.close".into(),
                ..self.event(&action, &d, detail)
            });
        }
    }

    /// Take back `n` bytes counted for a request that was refused.
    fn refund_sent(&self, key: &str, n: u64) {
        if let Some(t) = lock(&self.inner.tunnel_sent).get_mut(key) {
            *t = t.saturating_sub(n);
        }
    }

    /// Add `n` bytes to what the session has sent to `key`; the new total.
    fn count_sent(&self, key: &str, n: u64) -> u64 {
        let mut m = lock(&self.inner.tunnel_sent);
        let t = m.entry(key.to_string()).or_insert(0);
        *t = t.saturating_add(n);
        *t
    }

    fn upload_by(&self) -> String {
        self.inner
            .manifest
            .limits
            .upload
            .as_ref()
            .map(|(_, o)| o.to_string())
            .unwrap_or_else(|| "limits.upload".into())
    }

    /// A plain-HTTP proxy request (absolute-form URI): decide, forward to the vetted address,
    /// record.
    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: Arc<ClientConn>,
    ) -> Result<Response<ProxyBody>, Refusal> {
        let started = Instant::now();
        let uri = req.uri().clone();
        let shown = uri.to_string();
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(self.bad_request(
                    "http",
                    &shown,
                    "https:// URLs go through CONNECT (set HTTPS_PROXY), not as a proxy request",
                ))
            }
            Some(other) => {
                let why = format!("unsupported scheme `{other}`");
                return Err(self.bad_request("http", &shown, &why));
            }
            None => {
                return Err(self.bad_request(
                    "http",
                    &shown,
                    "a proxy request needs an absolute URL (GET http://host/path); this is a \
                     proxy, not a web server",
                ))
            }
        }
        let raw = uri.authority().map(|a| a.as_str()).unwrap_or("");
        let auth = canon::authority(raw, Some(80))
            .map_err(|e| self.bad_request("http", &shown, &format!("bad host in the URL: {e}")))?;
        // The host as rules and records name it (formatted once per request).
        let dest = auth.host.as_match();
        // The Host header must name what the URL names: a server behind the vetted address
        // may route on Host, so a different one would reach a host nobody decided on.
        for h in req.headers().get_all(HOST) {
            let same = h
                .to_str()
                .ok()
                .and_then(|s| canon::authority(s, Some(80)).ok())
                .is_some_and(|a| a == auth);
            if !same {
                let why = format!(
                    "the Host header `{}` does not name the URL's host {auth}",
                    String::from_utf8_lossy(h.as_bytes()).escape_default()
                );
                return Err(self.bad_request("http", &shown, &why));
            }
        }
        if req.headers().contains_key(hyper::header::UPGRADE) {
            return Err(self.bad_request(
                "http",
                &shown,
                "protocol upgrades (WebSocket, h2c) through a proxy request are not supported; \
                 use wss:// (CONNECT)",
            ));
        }
        // Judge the body as an upload before anything is sent.
        let (parts, body) = req.into_parts();
        let hint = body.size_hint();
        let declared = hint.exact();
        let has_body = declared.map_or(!body.is_end_stream(), |n| n > 0);
        let mut upload_size = None;
        // What actually went up (a streamed body is counted as it passes).
        let sent_up = Arc::new(AtomicU64::new(0));
        let body: ProxyBody = if !has_body {
            empty()
        } else if let Some(n) = declared {
            upload_size = Some(n);
            Counting {
                inner: body,
                counter: sent_up.clone(),
            }
            .boxed()
        } else if self.inner.has_upload_rules {
            // Unknown length (chunked): hold it, up to the cap, to know its size.
            let cap = self.inner.upload_cap;
            let kib = (cap / 1024 + 1).min(BUFFER_BUDGET_KIB as u64) as u32;
            let Ok(_permit) = self.inner.buffering.clone().try_acquire_many_owned(kib) else {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    socks::REP_FAILURE,
                    "builtin:busy",
                    "too many chunked uploads are being checked at once; retry, or send a \
                     Content-Length",
                ));
            };
            let limited = http_body_util::Limited::new(body, cap as usize);
            let collected =
                match tokio::time::timeout(Duration::from_secs(120), limited.collect()).await {
                    Ok(r) => r,
                    Err(_) => Err("the upload did not arrive within 120 s".into()),
                };
            match collected {
                Ok(c) => {
                    let b = c.to_bytes();
                    upload_size = Some(b.len() as u64);
                    sent_up.store(b.len() as u64, Ordering::Relaxed);
                    Full::new(b).map_err(|e| match e {}).boxed()
                }
                Err(e) => {
                    let too_big = e.is::<http_body_util::LengthLimitError>();
                    let a = Action {
                        dest: Some(dest.clone()),
                        port: Some(auth.port),
                        scheme: Some("http".into()),
                        ..Action::new(ActionKind::NetUpload, shown.clone())
                    };
                    let why = if too_big {
                        format!("chunked upload larger than {cap} bytes")
                    } else {
                        format!("the upload could not be read: {e}")
                    };
                    let d = Decision::new(Effect::Deny, self.upload_by(), why.clone());
                    self.note(self.event(&a, &d, json!({"via": "http"})));
                    return Err(Refusal::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        socks::REP_NOT_ALLOWED,
                        &d.by,
                        why,
                    ));
                }
            }
        } else {
            Counting {
                inner: body,
                counter: sent_up.clone(),
            }
            .boxed()
        };
        // The destination, then (for a body) the upload.
        let key = auth.clone();
        let mut cached = lock(&conn.upstream).take();
        if cached.as_ref().is_some_and(|c| c.auth != key) {
            cached = None;
        }
        let reuse = cached.is_some();
        if reuse {
            // Already vetted and recorded when it was dialed; the name is decided again.
            let a = Action {
                dest: Some(dest.clone()),
                port: Some(auth.port),
                scheme: Some("http".into()),
                ..Action::new(ActionKind::NetConnect, format!("http://{auth}"))
            };
            let d = self.policy(&a);
            if d.effect != Effect::Allow {
                // Asks were answered when the connection was made; anything else is a change.
                if d.effect == Effect::Deny {
                    self.note(self.event(&a, &d, json!({"via": "http"})));
                    return Err(Refusal::new(
                        StatusCode::FORBIDDEN,
                        socks::REP_NOT_ALLOWED,
                        &d.by,
                        d.reason,
                    ));
                }
            }
        }
        let vetted = if reuse {
            None
        } else {
            Some(self.admit("http", "http", &auth).await?)
        };
        // Everything that leaves counts, per destination for the session: the request line and
        // headers (a query string or a header can carry data too) and the body. Past the free
        // allowance, or with a body, the upload policy and limit decide on the running total.
        let head = request_head_len(&parts);
        let sent_key = format!("http://{auth}");
        let mine = head + upload_size.unwrap_or(0);
        // Counted now, so that requests in parallel see each other; given back if refused (a
        // refused request sends nothing).
        let total = self.count_sent(&sent_key, mine);
        let over_limit = self
            .inner
            .manifest
            .limits
            .upload
            .as_ref()
            .is_some_and(|(l, _)| total > *l);
        if has_body || total > TUNNEL_FREE || over_limit {
            let a = Action {
                dest: Some(dest.clone()),
                port: Some(auth.port),
                scheme: Some("http".into()),
                size: Some(total),
                agent: self.inner.broker.agent().map(str::to_string),
                ..Action::new(ActionKind::NetUpload, shown.clone())
            };
            let d = self.policy(&a);
            let ok = d.effect == Effect::Allow;
            if !ok {
                let status = if over_limit {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::FORBIDDEN
                };
                let d = if d.effect == Effect::Ask {
                    Decision::new(
                        Effect::Deny,
                        d.by,
                        format!("{} (uploads are not asked about yet)", d.reason),
                    )
                } else {
                    d
                };
                self.note(self.event(
                    &a,
                    &d,
                    json!({"via": "http", "body": upload_size, "request_bytes": mine}),
                ));
                self.refund_sent(&sent_key, mine);
                return Err(Refusal::new(
                    status,
                    socks::REP_NOT_ALLOWED,
                    &d.by,
                    d.reason,
                ));
            }
            self.note(self.event(
                &a,
                &d,
                json!({"via": "http", "body": upload_size, "request_bytes": mine}),
            ));
        }
        let mut up = match cached {
            Some(c) => c,
            None => {
                let Some(v) = vetted else {
                    return Err(Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        socks::REP_FAILURE,
                        "builtin:proxy",
                        "no admitted destination to dial",
                    ));
                };
                dial_http(&v, key.clone()).await.map_err(|e| {
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        socks::REP_FAILURE,
                        "builtin:dial",
                        e,
                    )
                })?
            }
        };
        // Origin-form upstream, our own framing, the canonical Host.
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
            )
            .version(hyper::Version::HTTP_11)
            .body(body)
            .map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    socks::REP_FAILURE,
                    "builtin:malformed",
                    e.to_string(),
                )
            })?;
        *out.headers_mut() = parts.headers;
        strip_hop_by_hop(out.headers_mut());
        let host = if auth.port == 80 {
            dest.clone()
        } else {
            auth.to_string()
        };
        out.headers_mut().insert(
            HOST,
            HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static("invalid")),
        );
        let meter = Arc::new(Meter {
            proxy: self.clone(),
            action: Action {
                dest: Some(dest.clone()),
                port: Some(auth.port),
                scheme: Some("http".into()),
                agent: self.inner.broker.agent().map(str::to_string),
                ..Action::new(ActionKind::NetConnect, shown.clone())
            },
            method: parts.method.to_string(),
            addr: up.addr,
            up: sent_up,
            down: AtomicU64::new(0),
            status: AtomicU64::new(0),
            started,
            count_after: (has_body && upload_size.is_none()).then(|| format!("http://{auth}")),
        });
        if up.send.ready().await.is_err() {
            // The kept-alive upstream went away between requests: dial afresh (vetted anew).
            let v = self.admit("http", "http", &auth).await?;
            up = dial_http(&v, key.clone()).await.map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    socks::REP_FAILURE,
                    "builtin:dial",
                    e,
                )
            })?;
        }
        let resp = up.send.send_request(out).await.map_err(|e| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                socks::REP_FAILURE,
                "builtin:upstream",
                format!("the upstream failed: {e}"),
            )
        })?;
        meter
            .status
            .store(resp.status().as_u16() as u64, Ordering::Relaxed);
        *lock(&conn.upstream) = Some(up);
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let counted = Counting {
            inner: body,
            counter: meter,
        };
        Ok(Response::from_parts(parts, counted.boxed()))
    }

    // ----- SOCKS5 -----

    async fn socks(&self, mut s: TcpStream) {
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            let mut head = [0u8; 2];
            s.read_exact(&mut head).await?;
            let mut methods = vec![0u8; head[1] as usize];
            s.read_exact(&mut methods).await?;
            if !methods.contains(&0) {
                s.write_all(&[5, 0xff]).await?;
                return Ok::<_, std::io::Error>(None);
            }
            s.write_all(&[5, 0]).await?;
            let mut buf = Vec::with_capacity(262);
            let mut chunk = [0u8; 262];
            loop {
                match socks::request(&buf) {
                    Ok(Some((req, used))) => return Ok(Some((req, buf[used..].to_vec()))),
                    Ok(None) if buf.len() < 262 => {}
                    _ => {
                        return Ok(Some((
                            socks::Request::Refused {
                                code: socks::REP_FAILURE,
                                why: "malformed SOCKS5 request".into(),
                            },
                            Vec::new(),
                        )))
                    }
                }
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let (req, early) = match r {
            Ok(Ok(Some(x))) => x,
            _ => return,
        };
        let auth = match req {
            socks::Request::Connect(a) => a,
            socks::Request::Refused { code, why } => {
                self.bad_request("socks", "socks5", &why);
                let _ = s.write_all(&socks::reply(code)).await;
                return;
            }
        };
        match self.admit("socks", "https", &auth).await {
            Ok(v) => {
                if s.write_all(&socks::reply(socks::REP_OK)).await.is_ok() {
                    self.tunnel(s, auth, v, "socks", early).await;
                }
            }
            Err(r) => {
                let _ = s.write_all(&socks::reply(r.socks)).await;
            }
        }
    }
}

/// The upstream connection a client connection keeps for its next request to the same place.
struct ClientConn {
    /// Taken for a request and put back after it (never held across an await).
    upstream: Mutex<Option<Upstream>>,
}

struct Upstream {
    auth: Authority,
    addr: SocketAddr,
    send: hyper::client::conn::http1::SendRequest<ProxyBody>,
}

async fn dial_http(v: &Vetted, auth: Authority) -> Result<Upstream, String> {
    let mut last = String::from("no address");
    for a in &v.addrs {
        match tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                let (send, conn) = hyper::client::conn::http1::Builder::new()
                    .handshake(TokioIo::new(s))
                    .await
                    .map_err(|e| format!("{a}: {e}"))?;
                tokio::spawn(conn);
                return Ok(Upstream {
                    auth,
                    addr: *a,
                    send,
                });
            }
            Ok(Err(e)) => last = format!("cannot connect to {a}: {e}"),
            Err(_) => last = format!("cannot connect to {a}: timed out"),
        }
    }
    Err(last)
}

/// Counts a response body and records the request when it is done (or dropped).
struct Meter {
    proxy: Proxy,
    action: Action,
    method: String,
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: AtomicU64,
    status: AtomicU64,
    started: Instant,
    /// A body whose size was not known when the request was decided: its bytes join the
    /// session's total to this destination (`scheme://host:port`) once they have passed.
    count_after: Option<String>,
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(k) = &self.count_after {
            self.proxy.count_sent(k, self.up.load(Ordering::Relaxed));
        }
        let d = Decision::new(Effect::Allow, "session", "request forwarded");
        let ev = Event {
            kind: "net.request".into(),
            ..self.proxy.event(
                &self.action,
                &d,
                json!({
                    "via": "http", "method": self.method, "addr": self.addr.to_string(),
                    "status": self.status.load(Ordering::Relaxed),
                    "up": self.up.load(Ordering::Relaxed), "down": self.down.load(Ordering::Relaxed),
                    "ms": self.started.elapsed().as_secs_f64() * 1e3,
                }),
            )
        };
        self.proxy.note(ev);
    }
}

/// Where a [`Counting`] body adds the bytes it passes: a plain counter (a request body on its
/// way up) or a response's [`Meter`] (held until the body ends, when it records the request).
trait Count {
    fn add(&self, n: u64);
}

impl Count for AtomicU64 {
    fn add(&self, n: u64) {
        self.fetch_add(n, Ordering::Relaxed);
    }
}

impl Count for Meter {
    fn add(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }
}

/// A body passed through, its data bytes counted.
struct Counting<C: Count> {
    inner: Incoming,
    counter: Arc<C>,
}

impl<C: Count> Body for Counting<C> {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.counter.add(d.len() as u64);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

enum PipeError {
    Io(u64, u64, std::io::Error),
    Limit(u64, u64),
}

/// Ends with an error once `last` (seconds since `started` of the last byte either way) is
/// [`TUNNEL_IDLE`] old.
async fn idle_watchdog(started: Instant, last: &AtomicU64) -> std::io::Result<()> {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if started.elapsed().as_secs() - last.load(Ordering::Relaxed) >= TUNNEL_IDLE.as_secs() {
            return Err(std::io::Error::other("idle"));
        }
    }
}

/// Copy both ways until both sides are done. `gate` sees every chunk going up before it is
/// passed on, and stops the copy by returning `false`.
async fn pipe<A, B>(
    a: &mut A,
    b: &mut B,
    already_up: u64,
    mut gate: impl FnMut(u64) -> bool,
) -> Result<(u64, u64), PipeError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let up = AtomicU64::new(already_up);
    let down = AtomicU64::new(0);
    let over = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(started.elapsed().as_secs(), Ordering::Relaxed);
    let watchdog = idle_watchdog(started, &last);
    let upward = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = ar.read(&mut buf).await?;
            if n == 0 {
                let _ = bw.shutdown().await;
                return Ok::<_, std::io::Error>(());
            }
            touch();
            if !gate(n as u64) {
                over.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("upload refused"));
            }
            up.fetch_add(n as u64, Ordering::Relaxed);
            bw.write_all(&buf[..n]).await?;
        }
    };
    let downward = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = br.read(&mut buf).await?;
            if n == 0 {
                let _ = aw.shutdown().await;
                return Ok::<_, std::io::Error>(());
            }
            touch();
            down.fetch_add(n as u64, Ordering::Relaxed);
            aw.write_all(&buf[..n]).await?;
        }
    };
    let both = async { tokio::try_join!(upward, downward) };
    let r = tokio::select! {
        r = both => r.map(|_| ()),
        r = watchdog => r,
    };
    let (u, d) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    match r {
        Ok(_) => Ok((u, d)),
        Err(_) if over.load(Ordering::Relaxed) => Err(PipeError::Limit(u, d)),
        Err(e) => Err(PipeError::Io(u, d, e)),
    }
}

/// A tunnel's client side: a plain socket can be spliced.
trait Relay: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Relay for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Relay for TokioIo<hyper::upgrade::Upgraded> {}

/// A pipe for `splice`, closed on drop, with its current capacity.
struct SplicePipe(i32, i32, usize);

impl SplicePipe {
    fn new() -> std::io::Result<SplicePipe> {
        let mut p = [0i32; 2];
        // SAFETY: pipe2 fills the array.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The default size (64 KiB) to start: a bigger pipe counts against the user's pipe
        // quota (`pipe-user-pages-soft`), which the agent's and the user's own pipes share.
        // Only a tunnel that keeps filling it (a bulk transfer) grows it.
        Ok(SplicePipe(p[0], p[1], 64 << 10))
    }

    /// Grow to [`SPLICE_MAX`] (best effort: the quota may say no).
    fn grow(&mut self) {
        // SAFETY: fcntl on our own pipe.
        let r = unsafe { libc::fcntl(self.1, libc::F_SETPIPE_SZ, SPLICE_MAX as i32) };
        if r > 0 {
            self.2 = r as usize;
        }
    }
}

impl Drop for SplicePipe {
    fn drop(&mut self) {
        // SAFETY: our own two descriptors.
        unsafe {
            libc::close(self.0);
            libc::close(self.1);
        }
    }
}

/// The most a tunnel's pipe grows to.
const SPLICE_MAX: usize = 1 << 20;

fn splice(from: i32, to: i32, len: usize) -> std::io::Result<usize> {
    // SAFETY: splice between descriptors we hold; no user memory involved.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Move what `src` receives to `dst` through the kernel (socket -> pipe -> socket), asking
/// `gate` before each chunk leaves; `Ok(total)` at end of stream.
///
/// Both sides move at once: the pipe takes more from `src` while `dst` cannot take what it
/// holds yet, so neither the sender nor the receiver waits on the other's turn.
async fn splice_one(
    src: &TcpStream,
    dst: &TcpStream,
    mut gate: impl FnMut(u64) -> bool,
    touch: &(dyn Fn() + Sync),
    moved: &AtomicU64,
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let mut pipe = SplicePipe::new()?;
    let mut full = 0u32;
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut total = 0u64;
    // Bytes in the pipe, and whether `src` has ended.
    let mut held = 0usize;
    let mut eof = false;
    // The pipe refused more (it counts pages, not bytes): wait for `dst` before reading again.
    let mut pipe_full = false;
    loop {
        let mut progress = false;
        if !eof && !pipe_full && held < pipe.2 {
            match src.try_io(Interest::READABLE, || {
                fill(sfd, pipe.1, pipe.2 - held, held)
            }) {
                Ok(Some(0)) => eof = true,
                Ok(Some(n)) => {
                    touch();
                    if !gate(n as u64) {
                        return Err(std::io::Error::other(GATE_CLOSED));
                    }
                    held += n;
                    progress = true;
                    if held == pipe.2 {
                        full = full.saturating_add(1);
                    }
                }
                Ok(None) => {
                    pipe_full = true;
                    full = full.saturating_add(1);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if held > 0 {
            // The pipe holds data, so a refusal here is `dst`'s (its buffer is full).
            match dst.try_io(Interest::WRITABLE, || splice(pipe.0, dfd, held)) {
                Ok(m) => {
                    held -= m;
                    total += m as u64;
                    moved.fetch_add(m as u64, Ordering::Relaxed);
                    pipe_full = false;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        // A tunnel that keeps filling its pipe is a bulk transfer: a bigger pipe, once.
        if full == 4 {
            full += 1;
            if pipe.2 < SPLICE_MAX {
                pipe.grow();
            }
        }
        if eof && held == 0 {
            // SAFETY: half-close the other side's socket, as a read of 0 means.
            unsafe {
                libc::shutdown(dfd, libc::SHUT_WR);
            }
            return Ok(total);
        }
        // Keep other tasks on this worker served during a long transfer (and never spin on
        // readiness that stays set).
        tokio::task::coop::consume_budget().await;
        if progress {
            continue;
        }
        let read = !eof && !pipe_full && held < pipe.2;
        match (read, held > 0) {
            (true, true) => {
                tokio::select! {
                    r = src.readable() => r?,
                    r = dst.writable() => r?,
                }
            }
            (true, false) => src.readable().await?,
            (false, _) => dst.writable().await?,
        }
    }
}

/// Move up to `room` bytes from the socket `sfd` into a pipe that holds `held` bytes:
/// `Ok(Some(n))` (0 at end of stream), `Ok(None)` when the pipe is full while the socket still
/// has data, `WouldBlock` only when the socket is empty.
///
/// A full pipe (it counts pages, not bytes) refuses with the same EAGAIN as an empty socket;
/// only an empty socket may clear the socket's readiness, or its next data would never wake
/// the tunnel.
fn fill(sfd: i32, pipe_in: i32, room: usize, held: usize) -> std::io::Result<Option<usize>> {
    match splice(sfd, pipe_in, room) {
        // The pipe may be full: the socket says what it holds. An end of stream behind a full
        // pipe is an end of stream (the pipe still drains): reported as a WouldBlock it would
        // never clear (a closed socket stays readable) and the tunnel would spin.
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && held > 0 => match peek(sfd) {
            Ok(0) => Ok(Some(0)),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        },
        r => r.map(Some),
    }
}

/// Whether a socket has data (`Ok(1)`), has ended (`Ok(0)`), or neither (`WouldBlock`),
/// without taking anything.
fn peek(fd: i32) -> std::io::Result<usize> {
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a live byte.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

const GATE_CLOSED: &str = "upload refused";

/// [`pipe`] for two plain sockets, with `splice`.
async fn splice_pipe(
    client: &TcpStream,
    up: &TcpStream,
    already_up: u64,
    gate: impl FnMut(u64) -> bool,
) -> Result<(u64, u64), PipeError> {
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(started.elapsed().as_secs(), Ordering::Relaxed);
    let sent = AtomicU64::new(already_up);
    let recv = AtomicU64::new(0);
    let upward = splice_one(client, up, gate, &touch, &sent);
    let downward = splice_one(up, client, |_| true, &touch, &recv);
    let watchdog = idle_watchdog(started, &last);
    let both = async { tokio::try_join!(upward, downward).map(|_| ()) };
    let r = tokio::select! {
        r = both => r,
        r = watchdog => r,
    };
    let (u, d) = (sent.load(Ordering::Relaxed), recv.load(Ordering::Relaxed));
    match r {
        Ok(()) => Ok((u, d)),
        Err(e) if e.to_string() == GATE_CLOSED => Err(PipeError::Limit(u, d)),
        Err(e) => Err(PipeError::Io(u, d, e)),
    }
}

/// What a session has sent through tunnels to one destination: the requests inside are
/// encrypted, so the bytes are the upload. The first [`TUNNEL_FREE`] bytes per destination (TLS
/// handshakes, small requests) pass unasked; past that the upload policy and limit decide
/// with the running total as the size, again at every doubling and whenever the total passes
/// the limit. A refusal closes the tunnel and stands for the rest of the session.
struct Gate<'a> {
    proxy: &'a Proxy,
    key: String,
    action: Action,
    next: u64,
    limit: Option<u64>,
    refusal: Option<Decision>,
    /// The session's total to this destination at the last check.
    total: u64,
}

/// Bytes a session may send to a destination (through tunnels, or as request lines and headers
/// of plain requests) before the upload policy is asked.
pub const TUNNEL_FREE: u64 = 64 * 1024;

/// The bytes of a request's line and headers as the client sent them (close enough: the
/// method, target, version and each `name: value\r\n`).
fn request_head_len(p: &hyper::http::request::Parts) -> u64 {
    let line = p.method.as_str().len() + p.uri.to_string().len() + 12;
    let headers: usize = p
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (line + headers + 2) as u64
}

impl Gate<'_> {
    fn add(&mut self, n: u64) -> bool {
        let total = self.proxy.count_sent(&self.key, n);
        self.total = total;
        if total < self.next && self.limit.is_none_or(|l| total <= l) {
            return true;
        }
        while self.next <= total {
            self.next = self.next.saturating_mul(2);
        }
        let a = Action {
            kind: ActionKind::NetUpload,
            size: Some(total),
            ..self.action.clone()
        };
        let d = self.proxy.policy(&a);
        if d.effect == Effect::Allow {
            return true;
        }
        self.refusal = Some(Decision::new(
            Effect::Deny,
            d.by,
            format!(
                "{} bytes sent to {} through tunnels this session: {} (the tunnel was closed)",
                total, self.key, d.reason
            ),
        ));
        false
    }
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    use hyper::header;
    if h.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in listed {
            h.remove(n);
        }
    }
    // Names known in advance: no parsing per request.
    const HOP: [HeaderName; 9] = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    for n in &HOP {
        if h.contains_key(n) {
            h.remove(n);
        }
    }
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// A refusal as raw HTTP/1.1 bytes (for the CONNECT fast path); the connection then closes.
fn refusal_bytes(r: &Refusal) -> Vec<u8> {
    let body = format!(
        "ward: {}: {}\n",
        if r.status == StatusCode::BAD_REQUEST {
            "bad request"
        } else {
            "blocked"
        },
        r.reason
    );
    let by: String = r.by.chars().filter(|c| !c.is_control()).collect();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-ward-decision: deny\r\nx-ward-by: {by}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        r.status.as_u16(),
        r.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

fn refusal_response(r: &Refusal) -> Response<ProxyBody> {
    let text = format!(
        "ward: {}: {}\n",
        if r.status == StatusCode::BAD_REQUEST {
            "bad request"
        } else {
            "blocked"
        },
        r.reason
    );
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-ward-decision", HeaderValue::from_static("deny"));
    if let Ok(v) = HeaderValue::from_str(&r.by) {
        h.insert("x-ward-by", v);
    }
    resp
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    )
}

fn build_resolver(dns: &Dns) -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::config::{
        ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut b = match dns {
        Dns::System => {
            hickory_resolver::TokioResolver::builder_tokio().map_err(|e| e.to_string())?
        }
        Dns::Servers(list) => {
            let servers = list
                .iter()
                .map(|sa| {
                    let mut u = ConnectionConfig::udp();
                    u.port = sa.port();
                    let mut t = ConnectionConfig::tcp();
                    t.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![u, t])
                })
                .collect();
            let mut b = hickory_resolver::TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        }
    };
    let o = b.options_mut();
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    o.timeout = Duration::from_secs(5);
    o.attempts = 2;
    o.ndots = 0;
    b.build().map_err(|e| e.to_string())
}

/// A tunnel holds six descriptors (two sockets, two pipes): take the soft limit up to the
/// hard one, so the usual 1,024 does not cap a proxy at ~160 tunnels. (In `ward run` the agent
/// is forked before the proxy starts and keeps its own limits.)
fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get and set this process's own limit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// This machine's own addresses: the proxy dials from the host's network, where a name that
/// resolves to one of them reaches services listening on all interfaces.
fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifa) != 0 {
            return out;
        }
        let mut p = ifa;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match (*a).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifa);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// A connected loopback pair: (sender, receiver), the receiver non-blocking.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Bytes waiting in a socket's receive queue.
    fn unread(fd: i32) -> i32 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
        n
    }

    /// Fill a pipe to its last page with plain writes.
    fn stuff(pipe: &SplicePipe) {
        let chunk = [1u8; 4096];
        // SAFETY: writes to our own non-blocking pipe from a live buffer.
        while unsafe { libc::write(pipe.1, chunk.as_ptr().cast(), chunk.len()) } > 0 {}
    }

    fn drain(pipe: &SplicePipe) {
        let mut sink = vec![0u8; 1 << 20];
        // SAFETY: reads from our own non-blocking pipe into a live buffer.
        while unsafe { libc::read(pipe.0, sink.as_mut_ptr().cast(), sink.len()) } > 0 {}
    }

    fn wait_unread(fd: i32, n: i32) {
        for _ in 0..500 {
            if unread(fd) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the data never arrived");
    }

    #[test]
    fn a_full_pipe_is_told_apart_from_an_empty_socket() {
        let (mut tx, rx) = pair();
        let fd = rx.as_raw_fd();
        let pipe = SplicePipe::new().unwrap();
        // An empty socket: WouldBlock, whatever the pipe holds.
        let e = fill(fd, pipe.1, 4096, 0).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let e = fill(fd, pipe.1, 4096, 100).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        // Data arrives and moves into the pipe.
        tx.write_all(&[7u8; 1000]).unwrap();
        wait_unread(fd, 1000);
        assert_eq!(fill(fd, pipe.1, 64 << 10, 0).unwrap(), Some(1000));
        // Fill the pipe to the last page, then send more to the socket.
        stuff(&pipe);
        tx.write_all(&[8u8; 500]).unwrap();
        wait_unread(fd, 500);
        // The pipe is full, the socket is not empty: not WouldBlock (which would clear the
        // socket's readiness and strand its data).
        assert_eq!(fill(fd, pipe.1, 4096, 1000).unwrap(), None);
        // Drain the pipe: the data moves again.
        drain(&pipe);
        assert_eq!(fill(fd, pipe.1, 4096, 0).unwrap(), Some(500));
        // An end of stream behind a full pipe is an end of stream (a closed socket stays
        // readable: a WouldBlock here would make the tunnel spin).
        stuff(&pipe);
        drop(tx);
        for _ in 0..500 {
            if peek(fd).ok() == Some(0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(fill(fd, pipe.1, 4096, 1000).unwrap(), Some(0));
        // And with an empty pipe.
        drain(&pipe);
        assert_eq!(fill(fd, pipe.1, 4096, 0).unwrap(), Some(0));
    }
}

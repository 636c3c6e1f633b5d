//! The proxy server: one listening socket speaking HTTP/1.1, HTTP/2 (prior knowledge) and
//! SOCKS5, told apart by the first byte.

mod admission;
mod findings;
mod http;
mod resolver;
mod socks_server;
mod splice;
mod tunnel;

use resolver::*;
use splice::*;
use tunnel::*;

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
use ward_core::{Action, ActionKind, By, Consented, Decision, Effect, HostPattern, Manifest};
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
    /// TLS interception: tunnels to `https` destinations are opened, each request inside
    /// decided like a plain one. `None`: tunnels stay closed boxes (SNI checked, bytes counted).
    pub intercept: Option<Intercept>,
    /// Credentials the agent holds placeholders of: their secrets are put in toward their
    /// destinations (inspected), and a placeholder anywhere else is refused.
    pub credentials: Vec<crate::credentials::Credential>,
}

/// What inspecting tunnels takes: the session's certificate authority (which the agent's
/// clients must trust) and the client side toward the real servers.
#[derive(Clone)]
pub struct Intercept {
    pub authority: Arc<crate::intercept::Authority>,
    /// Verifies the real servers (system roots, or a manifest's `ca_file`); its ALPN must be
    /// `http/1.1` (requests go up over HTTP/1.1).
    pub upstream: Arc<tokio_rustls::rustls::ClientConfig>,
    /// Only these destinations (host, port) are inspected (the credentials' when the
    /// manifest does not turn inspection on); `None`: every `https` one.
    pub only: Option<Vec<(String, u16)>>,
}

impl Intercept {
    /// Whether a tunnel to `host:port` is opened.
    pub fn inspects(&self, host: &str, port: u16) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|(h, p)| h == host && *p == port))
    }
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
            intercept: None,
            credentials: Vec::new(),
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
    /// Refusals and failures per destination (past a bound they are only counted), with the
    /// first one's words, for the session's end record and the person's report.
    refusals_by: Mutex<HashMap<String, Noted>>,
    /// Refusals past the bound of destinations (only counted).
    unrecorded: AtomicU64,
    /// Names the sandbox's resolver refused, and how often (a bound of their own).
    dns_refused: Mutex<HashMap<String, u64>>,
    dns_unrecorded: AtomicU64,
    intercept: Option<Intercept>,
    credentials: Vec<crate::credentials::Credential>,
    /// Some network entry names paths: requests are decided by path too.
    has_paths: bool,
    /// The credentials' names and placeholders, looked for in every request read.
    marks: Vec<crate::dlp::Mark>,
}

/// At most this many distinct names refused by the resolver are recorded.
const DNS_NAMES_RECORDED: usize = 1024;

/// What the proxy refused, or failed to reach, at one destination.
#[derive(Default)]
struct Noted {
    count: u64,
    /// `net.failed` (allowed, but it could not be reached) rather than refused.
    failed: bool,
    by: String,
    reason: String,
}

/// Why something was refused: what the client is told and what the log says.
struct Refusal {
    status: StatusCode,
    socks: u8,
    by: By,
    reason: String,
}

impl Refusal {
    fn new(status: StatusCode, socks: u8, by: By, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            socks,
            by,
            reason: reason.into(),
        }
    }
}

/// A destination that passed: where to dial.
struct Vetted {
    addrs: Vec<SocketAddr>,
}

/// A service on this machine's loopback the manifest names (`http://localhost:11434`),
/// reached from inside the sandbox at the same address and port: what the connections
/// accepted there are decided and recorded as.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The manifest's scheme: `https` tunnels are checked for TLS like any CONNECT; `http`
    /// carries any protocol (a database's too), as the person named the port.
    pub scheme: String,
    pub to: canon::Authority,
    /// How the agent came (`loopback`: a service on this machine; `name`: an address the
    /// sandbox's resolver gave), on the records.
    pub via: &'static str,
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
        let has_paths = cfg.manifest.network.iter().any(|e| e.path.is_some())
            || cfg.manifest.ceilings.iter().any(|c| {
                c.network
                    .as_ref()
                    .is_some_and(|(n, _, _)| n.iter().any(|e| e.path.is_some()))
            });
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
                unrecorded: AtomicU64::new(0),
                dns_refused: Mutex::new(HashMap::new()),
                dns_unrecorded: AtomicU64::new(0),
                intercept: cfg.intercept,
                has_paths,
                marks: cfg
                    .credentials
                    .iter()
                    .map(|c| (c.spec.name.clone(), c.placeholder.clone()))
                    .collect(),
                credentials: cfg.credentials,
            }),
        })
    }

    /// Connections being served right now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Destinations admitted and actions refused so far (for the session's end record).
    pub fn stats(&self) -> serde_json::Value {
        let by = lock(&self.inner.refusals_by);
        let unrecorded: u64 = by
            .values()
            .map(|n| n.count.saturating_sub(REFUSAL_RECORDS))
            .sum();
        // The most frequent first (and a bounded list: the end record stays small).
        let mut listed: Vec<(&String, &Noted)> = by.iter().collect();
        listed.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        let list = |failed: bool| {
            listed
                .iter()
                .filter(|(_, n)| n.failed == failed)
                .take(50)
                .map(|(r, n)| json!({"resource": r, "count": n.count, "by": n.by, "reason": n.reason}))
                .collect::<Vec<_>>()
        };
        let mut names: Vec<(String, u64)> = lock(&self.inner.dns_refused)
            .iter()
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        json!({
            "admitted": self.inner.admitted.load(Ordering::Relaxed),
            "refused": self.inner.refused.load(Ordering::Relaxed),
            "refusals_only_counted": unrecorded + self.inner.unrecorded.load(Ordering::Relaxed),
            "refused_destinations": list(false),
            "failed_destinations": list(true),
            "refused_names": names.iter().take(50).map(|(n, c)| json!({"name": n, "count": c})).collect::<Vec<_>>(),
            "refused_names_total": names.len(),
            "names_only_counted": self.inner.dns_unrecorded.load(Ordering::Relaxed),
        })
    }

    /// Accept and serve until the listener fails.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        if let Ok(a) = listener.local_addr() {
            lock(&self.inner.own).push(a);
        }
        self.accept_loop(listener, None).await
    }

    /// Accept on a listener inside the sandbox at a loopback service's own address and port,
    /// and carry each connection to that service on this machine through the same decisions
    /// and records as a CONNECT to it ([`Forward`]).
    pub async fn serve_forward(&self, listener: TcpListener, to: Forward) -> std::io::Result<()> {
        self.accept_loop(listener, Some(Arc::new(to))).await
    }

    /// Answer the sandbox's DNS queries on `sock` (see [`crate::dns`]) until it fails: the
    /// names in `names` get their address inside; every other name is NXDOMAIN, on record.
    pub async fn serve_dns(
        &self,
        sock: tokio::net::UdpSocket,
        names: Vec<crate::dns::Named>,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await?;
            let lookup = |q: &str| {
                names
                    .iter()
                    .find(|x| x.name == q)
                    .and_then(|x| match x.at.ip() {
                        IpAddr::V4(ip) => Some(ip),
                        IpAddr::V6(_) => None,
                    })
            };
            let Some((reply, asked)) = crate::dns::respond(&buf[..n], lookup) else {
                continue;
            };
            let _ = sock.send_to(&reply, from).await;
            if let Some(a) = asked.filter(|a| a.address.is_none()) {
                let name = a.question.name;
                // A name the manifest allows by a wildcard (or `localhost`) is not a refusal:
                // it is reached through the proxy (or at the loopback), only not by address.
                let allowed = name == "localhost"
                    || self
                        .inner
                        .manifest
                        .network
                        .iter()
                        .any(|e| e.effect != Effect::Deny && e.dest.host.matches(&name));
                if allowed {
                    continue;
                }
                // Apart from the proxy's refusals (their own bound): a flood of made-up names
                // must not crowd out the records of destinations.
                {
                    let mut by = lock(&self.inner.dns_refused);
                    let known = by.contains_key(&name);
                    if !known && by.len() >= DNS_NAMES_RECORDED {
                        self.inner.dns_unrecorded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let n = by.entry(name.clone()).or_insert(0);
                    *n += 1;
                    if *n > REFUSAL_RECORDS {
                        self.inner.dns_unrecorded.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                let action = Action {
                    dest: Some(name.clone()),
                    ..Action::new(ActionKind::NetConnect, format!("dns:{name}"))
                };
                let d = Decision::new(
                    Effect::Deny,
                    By::builtin("dns"),
                    "the sandbox's resolver answers only for the names the manifest allows \
                     (NXDOMAIN)",
                );
                let mut ev = self.event(
                    &action,
                    &d,
                    json!({"via": "dns", "qtype": a.question.qtype}),
                );
                ev.kind = ward_core::EventKind::NetDirect.as_str().into();
                self.inner.broker.note(ev);
            }
        }
    }

    async fn accept_loop(
        &self,
        listener: TcpListener,
        forward: Option<Arc<Forward>>,
    ) -> std::io::Result<()> {
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
            let forward = forward.clone();
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
                match forward {
                    Some(to) => guard.0.loopback(stream, &to).await,
                    None => guard.0.connection(stream).await,
                }
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

    /// Record that an allowed destination could not be reached, or failed on the way: a
    /// failure (`net.failed`, in the person's report), not a refusal.
    fn note_failed(&self, a: &Action, d: &Decision, detail: serde_json::Value) {
        self.note(Event {
            kind: ward_core::EventKind::NetFailed.as_str().into(),
            ..self.event(a, d, detail)
        });
    }

    /// Record something that already happened (or was refused): queued, not waited for.
    fn note(&self, ev: Event) {
        let failed = ev.kind == ward_core::EventKind::NetFailed.as_str();
        let refused = ev
            .decision
            .as_ref()
            .is_some_and(|d| d.result == Effect::Deny);
        if refused || failed {
            if refused {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
            }
            // A looping agent must not fill the disk with the same refusal: the first few per
            // destination are recorded, the rest counted (in the session's end record).
            let key = ev.resource.clone().unwrap_or_default();
            let mut by = lock(&self.inner.refusals_by);
            let known = by.contains_key(&key);
            if !known && by.len() >= 4096 {
                self.inner.unrecorded.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let n = by.entry(key).or_insert_with(|| Noted {
                failed,
                by: ev
                    .decision
                    .as_ref()
                    .map(|d| d.by.to_string())
                    .unwrap_or_default(),
                reason: match (&ev.detail, &ev.decision) {
                    (Some(d), _) if failed => d["error"].as_str().unwrap_or_default().to_string(),
                    (_, Some(d)) => d.reason.clone(),
                    _ => String::new(),
                },
                count: 0,
            });
            n.count += 1;
            if n.count > REFUSAL_RECORDS {
                return;
            }
        }
        self.inner.broker.note(ev);
    }

    fn bad_request(&self, via: &str, what: &str, why: &str) -> Refusal {
        let a = Action::new(ActionKind::NetConnect, what.to_string());
        let d = Decision::new(Effect::Deny, By::builtin("malformed"), why.to_string());
        self.note(self.event(&a, &d, json!({"via": via, "malformed": true})));
        Refusal::new(
            StatusCode::BAD_REQUEST,
            socks::REP_FAILURE,
            By::builtin("malformed"),
            why,
        )
    }

    fn policy(&self, a: &Action) -> Decision {
        self.inner.broker.decide(a)
    }

    /// Ask the person about `key` (a destination) through the broker: once per session per
    /// destination; concurrent asks for the same one wait for the first answer.
    async fn ask(&self, d: Decision, key: String, text: String, host: Option<String>) -> Outcome {
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
        let remember = host.map(|resource| ward_broker::Remember {
            kind: ActionKind::NetConnect,
            resource,
        });
        tokio::task::spawn_blocking(move || broker.ask(d, &key, &text, remember))
            .await
            .unwrap_or(fallback)
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

/// Counts a response body and records the request when it is done (or dropped).
struct Meter {
    proxy: Proxy,
    action: Action,
    /// How the request came: `http` (a proxy request) or `inspected` (inside a tunnel).
    via: &'static str,
    method: String,
    addr: SocketAddr,
    up: Arc<AtomicU64>,
    down: AtomicU64,
    status: AtomicU64,
    /// The upstream failed before it answered: that is on record (`net.failed`) instead.
    failed: std::sync::atomic::AtomicBool,
    started: Instant,
    /// A body whose size was not known when the request was decided: its bytes join the
    /// session's total to this destination (`scheme://host:port`) once they have passed.
    count_after: Option<String>,
    /// What the scan of the request found and let through.
    found: Arc<findings::Found>,
}

/// Where a [`Counting`] body adds the bytes it passes: a plain counter (a request body on its
/// way up) or a response's [`Meter`] (held until the body ends, when it records the request).
trait Count {
    fn add(&self, n: u64);
}

/// A body passed through, its data bytes counted.
struct Counting<C: Count> {
    inner: Incoming,
    counter: Arc<C>,
}

enum PipeError {
    Io(u64, u64, std::io::Error),
    Limit(u64, u64),
}

/// A tunnel's client side: a plain socket can be spliced.
trait Relay: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

/// A pipe for `splice`, closed on drop, with its current capacity.
struct SplicePipe(i32, i32, usize);

/// The most a tunnel's pipe grows to.
const SPLICE_MAX: usize = 1 << 20;

const GATE_CLOSED: &str = "upload refused";

/// What a session has sent through tunnels to one destination: the requests inside are
/// encrypted (unless the proxy inspects TLS: then each request counts, under the same key),
/// so the bytes are the upload. The first [`TUNNEL_FREE`] bytes per destination (TLS
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

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

/// A refusal as raw HTTP/1.1 bytes (for the CONNECT fast path); the connection then closes.
fn refusal_bytes(r: &Refusal) -> Vec<u8> {
    let body = refusal_text(r);
    let by: String =
        r.by.to_string()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-ward-decision: deny\r\nx-ward-by: {by}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        r.status.as_u16(),
        r.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// What the client reads in a refusal's body.
fn refusal_text(r: &Refusal) -> String {
    format!(
        "ward: {}: {}\n",
        if r.status == StatusCode::BAD_REQUEST {
            "bad request"
        } else {
            "blocked"
        },
        r.reason
    )
}

fn refusal_response(r: &Refusal) -> Response<ProxyBody> {
    let text = refusal_text(r);
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-ward-decision", HeaderValue::from_static("deny"));
    if let Ok(v) = HeaderValue::from_str(&r.by.to_string()) {
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

//! TLS inspection against what it replaces, side by side in one run, on loopback:
//! - bulk: an HTTPS download from a local origin (rustls), direct, through a plain CONNECT
//!   tunnel (spliced), and through an inspected tunnel (TLS ended at the proxy, the request
//!   decided, TLS again to the origin); the ratio inspected / direct (target >= 0.6x);
//! - handshake: from connect to the first byte of a small response on a new connection, plain
//!   tunnel against inspected (the leaf certificate kept after the first); the time added
//!   (target <= 1 ms p50).
//!
//! - uploads: 1 MiB JSON bodies POSTed over one kept-alive inspected connection, with the
//!   data-loss scan (the default `[network.findings]`) against without it (every finding
//!   `allow`: nothing read); the ratio (target: the scan costs <= 10%). Toward this machine's
//!   own non-loopback address: nothing sent to loopback is scanned (it does not leave).
//!
//! `WARD_BENCH_INSPECT_MB` (default 128) per download, `WARD_BENCH_ROUNDS` rounds.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

const CHUNK: usize = 256 * 1024;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub fn run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `left` copies of one chunk.
struct Chunks {
    left: usize,
    chunk: Bytes,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.left * CHUNK) as u64)
    }
}

/// The origin: HTTPS on loopback with a self-signed certificate for 127.0.0.1; `/big` is
/// `mb` MiB, anything else `ok`.
async fn origin(mb: usize, also: Option<IpAddr>) -> (SocketAddr, CertificateDer<'static>, String) {
    let mut names = vec!["127.0.0.1".to_string()];
    names.extend(also.map(|a| a.to_string()));
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let der = ck.cert.der().clone();
    let pem = ck.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], l.local_addr().unwrap().port()));
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let _ = s.set_nodelay(true);
            let (acceptor, chunk) = (acceptor.clone(), chunk.clone());
            tokio::spawn(async move {
                let Ok(t) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let chunk = chunk.clone();
                        async move {
                            if req.method() == hyper::Method::POST {
                                // Read what was sent before answering.
                                let _ = req.into_body().collect().await;
                                let ok =
                                    Full::new(Bytes::from_static(b"ok")).map_err(|e| match e {});
                                return Ok(hyper::Response::new(ok.boxed()));
                            }
                            let body: Body = if req.uri().path() == "/big" {
                                Chunks {
                                    left: mb * (1 << 20) / CHUNK,
                                    chunk,
                                }
                                .boxed()
                            } else {
                                Full::new(Bytes::from_static(b"ok"))
                                    .map_err(|e| match e {})
                                    .boxed()
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(t), svc)
                    .await;
            });
        }
    });
    (addr, der, pem)
}

/// A proxy on loopback allowing the origin, inspecting TLS or not.
async fn proxy(
    dir: &std::path::Path,
    origin: SocketAddr,
    origin_pem: &str,
    (inspect, name, more): (bool, &str, &str),
) -> (SocketAddr, Option<CertificateDer<'static>>) {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let mpath = sub.join("ward.toml");
    std::fs::write(
        &mpath,
        format!("name = \"bench\"\n[network]\nallow = [\"https://{origin}\"]\n{more}"),
    )
    .unwrap();
    let opts = ward_core::LoadOptions {
        managed: vec![],
        home: Some(sub.clone()),
        ..ward_core::LoadOptions::default()
    };
    let m = ward_core::Manifest::load(&mpath, &opts).unwrap();
    let log = Arc::new(
        ward_audit::AuditLog::open(
            &sub.join("log/audit.jsonl"),
            &ward_audit::KeyStore::new(sub.join("keys")),
            ward_audit::WriterOptions::default(),
        )
        .unwrap(),
    );
    let mut cfg = ward_net::Config::new(m, log);
    let mut ca = None;
    if inspect {
        // The origin's certificate stands for the system's roots.
        let roots = sub.join("roots.pem");
        std::fs::write(&roots, origin_pem).unwrap();
        let alpn: &[&[u8]] = &[b"http/1.1"];
        let authority = Arc::new(ward_net::intercept::Authority::new("bench", alpn).unwrap());
        ca = Some(authority.ca_der().clone());
        cfg.intercept = Some(ward_net::Intercept {
            authority,
            upstream: ward_net::intercept::upstream_config(&roots, &[], alpn).unwrap(),
            only: None,
        });
    }
    let p = ward_net::Proxy::new(cfg).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { p.serve(l).await });
    (addr, ca)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A TCP connection to `origin`, through the proxy at `via` (CONNECT) or directly.
async fn open(origin: SocketAddr, via: Option<SocketAddr>) -> TcpStream {
    let s = crate::proxy::tunnel(origin, via).await;
    let _ = s.set_nodelay(true);
    s
}

/// GET `path` over TLS (trusting `root`) on `s`: the response body's length, and the time
/// from `start` to its first byte.
async fn get(
    s: impl Io,
    root: &CertificateDer<'static>,
    (origin, path): (SocketAddr, &str),
    start: Instant,
) -> (u64, Duration) {
    let mut send = https1(s, root, IpAddr::from([127, 0, 0, 1])).await;
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", origin.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0u64;
    let mut first = None;
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            first.get_or_insert_with(|| start.elapsed());
            n += d.len() as u64;
        }
    }
    (n, first.unwrap_or_else(|| start.elapsed()))
}

/// An HTTP/1.1 client over TLS on `s`, trusting only `root`, for the server at `ip`.
async fn https1(
    s: impl Io,
    root: &CertificateDer<'static>,
    ip: IpAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let t = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::IpAddress(ip.into()), s)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(t))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn bench() {
    let mb: usize = std::env::var("WARD_BENCH_INSPECT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let rounds: usize = std::env::var("WARD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let outer = outer_address();
    let (origin, origin_der, origin_pem) = origin(mb, outer).await;
    let (plain, _) = proxy(dir.path(), origin, &origin_pem, (false, "plain", "")).await;
    let (inspecting, ca) = proxy(dir.path(), origin, &origin_pem, (true, "inspect", "")).await;
    let ca = ca.unwrap();
    // Each mode: (name, proxy, the root its client trusts).
    let modes: [(&str, Option<SocketAddr>, &CertificateDer<'static>); 3] = [
        ("direct TLS to the origin", None, &origin_der),
        ("through a plain tunnel", Some(plain), &origin_der),
        ("through an inspected tunnel", Some(inspecting), &ca),
    ];
    // Warm up (the inspected leaf is made and kept here).
    for (_, via, root) in &modes {
        get(
            open(origin, *via).await,
            root,
            (origin, "/small"),
            Instant::now(),
        )
        .await;
    }
    let mut bulk = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        for j in 0..modes.len() {
            let i = (r + j) % modes.len();
            let (_, via, root) = modes[i];
            let t = Instant::now();
            let (n, _) = get(open(origin, via).await, root, (origin, "/big"), t).await;
            assert_eq!(n, (mb * (1 << 20) / CHUNK * CHUNK) as u64);
            bulk[i].push(n as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64);
        }
    }
    println!("== TLS inspection: {mb} MiB over HTTPS on loopback, median of {rounds} interleaved rounds ==");
    let rates: Vec<f64> = bulk.into_iter().map(median).collect();
    for ((name, _, _), r) in modes.iter().zip(&rates) {
        println!("{name:<34} {r:>8.0} MiB/s   {:.2}x direct", r / rates[0]);
    }
    println!(
        "inspected / direct {:.2}x (target >= 0.6x)",
        rates[2] / rates[0]
    );
    let n = 201;
    let mut first = vec![Vec::new(); modes.len()];
    for r in 0..n {
        for j in 0..modes.len() {
            let i = (r + j) % modes.len();
            let (_, via, root) = modes[i];
            let t = Instant::now();
            let (_, d) = get(open(origin, via).await, root, (origin, "/small"), t).await;
            first[i].push(d.as_secs_f64() * 1e3);
        }
    }
    let f: Vec<f64> = first.into_iter().map(median).collect();
    println!("== a new connection to the first byte of a small response, median of {n} interleaved rounds ==");
    for ((name, _, _), ms) in modes.iter().zip(&f) {
        println!("{name:<34} {ms:>8.3} ms");
    }
    println!(
        "inspected - plain tunnel {:+.3} ms (target <= 1 ms, the leaf certificate kept)",
        f[2] - f[1]
    );
    match outer {
        Some(ip) => uploads(dir.path(), SocketAddr::new(ip, origin.port()), &origin_pem, rounds).await,
        None => println!(
            "== uploads: SKIPPED, this machine has no address but loopback (requests to loopback are not scanned) =="
        ),
    }
}

/// This machine's first IPv4 address that is not loopback.
fn outer_address() -> Option<IpAddr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list that freeifaddrs releases below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is an entry of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr; its family says which.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(IpAddr::V4(ip));
                    break;
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// 1 MiB JSON bodies POSTed over one inspected connection to `origin`, scanned and not.
async fn uploads(dir: &std::path::Path, origin: SocketAddr, origin_pem: &str, rounds: usize) {
    let none = "findings = { high = \"allow\", medium = \"allow\", low = \"allow\" }\n";
    let (unscanned, ca1) = proxy(dir, origin, origin_pem, (true, "unscanned", none)).await;
    let (scanned, ca2) = proxy(dir, origin, origin_pem, (true, "scanned", "")).await;
    let body = json_body(1 << 20);
    let per = 32;
    let modes = [
        ("inspected, not scanned", unscanned, ca1.unwrap()),
        ("inspected and scanned", scanned, ca2.unwrap()),
    ];
    for (_, via, ca) in &modes {
        post_many(open(origin, Some(*via)).await, ca, origin, 2, &body).await;
    }
    let mut rates = vec![Vec::new(); modes.len()];
    for r in 0..rounds {
        for j in 0..modes.len() {
            let i = (r + j) % modes.len();
            let (_, via, ca) = &modes[i];
            let t = Instant::now();
            post_many(open(origin, Some(*via)).await, ca, origin, per, &body).await;
            rates[i].push((per * body.len()) as f64 / t.elapsed().as_secs_f64() / (1 << 20) as f64);
        }
    }
    println!(
        "== uploads: {per} POSTs of 1 MiB JSON on one inspected connection to {}, median of {rounds} interleaved rounds ==",
        origin.ip()
    );
    let r: Vec<f64> = rates.into_iter().map(median).collect();
    for ((name, _, _), v) in modes.iter().zip(&r) {
        println!("{name:<34} {v:>8.0} MiB/s");
    }
    println!(
        "scanned / not scanned {:.2}x (target >= 0.90x: the scan costs <= 10%)",
        r[1] / r[0]
    );
}

/// A JSON body of about `n` bytes, like a model request: messages of ordinary words, with no
/// secret in them.
fn json_body(n: usize) -> Bytes {
    const WORDS: &[&str] = &[
        "the",
        "file",
        "function",
        "returns",
        "error",
        "when",
        "path",
        "is",
        "missing",
        "test",
        "build",
        "fails",
        "because",
        "config",
        "value",
        "expected",
        "string",
        "found",
        "number",
        "please",
        "update",
        "module",
        "import",
        "from",
        "src/lib.rs",
        "line",
        "42",
        "and",
    ];
    let mut s = String::from("{\"model\":\"m\",\"messages\":[");
    let mut k = 7usize;
    while s.len() < n - 200 {
        s.push_str("{\"role\":\"user\",\"content\":\"");
        for _ in 0..200 {
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(WORDS[(k >> 33) % WORDS.len()]);
            s.push(' ');
        }
        s.push_str("\\n\"},");
    }
    s.push_str("{\"role\":\"user\",\"content\":\"end\"}]}");
    Bytes::from(s)
}

/// `n` POSTs of `body` over TLS (trusting `root`) on `s`, one after the other.
async fn post_many(
    s: impl Io,
    root: &CertificateDer<'static>,
    origin: SocketAddr,
    n: usize,
    body: &Bytes,
) {
    let mut send = https1(s, root, origin.ip()).await;
    for _ in 0..n {
        send.ready().await.unwrap();
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/v1/messages")
            .header("host", origin.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.headers());
        let _ = resp.into_body().collect().await;
    }
}

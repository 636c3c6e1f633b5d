//! A small internet per test: a fresh network namespace with "public" addresses on its
//! loopback, real HTTP and TLS servers on them, a stub DNS server whose answers the test
//! chooses (and which remembers every query), Ward's proxy on 127.0.0.1, and its audit log.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ward_audit::{AuditLog, Event, KeyStore, WriterOptions};
use ward_core::{LoadOptions, Manifest};
use ward_net::{Config, Dns, Proxy};

/// "Public" addresses of the servers, in a network namespace of their own.
pub const API: &str = "44.1.1.1";
pub const OTHER: &str = "44.1.1.2";
/// A public address of the proxy's own machine.
pub const HOST_PUBLIC: &str = "45.0.0.1";
/// The stub DNS server, beside the proxy.
pub const DNS: &str = "127.0.0.53";

thread_local! {
    /// The servers' network namespace, for [`bind`].
    static SERVERS: std::cell::RefCell<Option<std::fs::File>> = const { std::cell::RefCell::new(None) };
}

/// A listening socket on `addr` in the servers' namespace (a short thread enters it to bind;
/// the socket stays there).
pub fn bind(addr: &str) -> TcpListener {
    use std::os::fd::AsRawFd;
    let ns = SERVERS.with(|s| s.borrow().as_ref().map(|f| f.as_raw_fd()));
    let ns = ns.expect("bind() runs on the test's thread, inside in_netns");
    let addr = addr.to_string();
    let l = std::thread::scope(|sc| {
        sc.spawn(|| {
            // SAFETY: setns on this short-lived thread only.
            assert_eq!(unsafe { libc::setns(ns, libc::CLONE_NEWNET) }, 0, "setns");
            std::net::TcpListener::bind(&addr).unwrap()
        })
        .join()
        .unwrap()
    });
    l.set_nonblocking(true).unwrap();
    TcpListener::from_std(l).unwrap()
}

/// Run `f` on a thread of its own in a new network namespace (the proxy's, like the host's
/// network under `ward run`), joined by a veth pair to a second namespace where the test's
/// servers have their public addresses: from the proxy they are remote, as on the internet.
/// Needs root (CI runs as root): without it the test says so loudly and, under CI, fails.
pub fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } != 0 {
        let msg = "SKIPPED: network tests need root to create network namespaces";
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI runs as root: this must not happen there)");
        }
        eprintln!("\n\n*** {msg} ***\n");
        return;
    }
    let h = std::thread::spawn(move || {
        // SAFETY: unshare on this thread only (network namespaces are per thread).
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare(CLONE_NEWNET)");
        sh(&format!(
            "ip link set lo up && ip addr add {HOST_PUBLIC}/32 dev lo"
        ));
        // The servers' namespace: a parked thread holds it while the test runs.
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::spawn(move || {
            // SAFETY: unshare on this thread only.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(r, 0);
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            tx.send((
                tid,
                std::fs::File::open("/proc/thread-self/ns/net").unwrap(),
            ))
            .unwrap();
            let _ = stop_rx.recv();
        });
        let (tid, ns) = rx.recv().unwrap();
        let pid = std::process::id();
        let there = format!("nsenter --net=/proc/{pid}/task/{tid}/ns/net");
        sh(&format!(
            "ip link add wp type veth peer name ws netns {tid}"
        ));
        sh("ip link set wp up && ip addr add 192.0.2.1/32 dev wp && ip route add 44.1.1.0/24 dev wp");
        sh(&format!(
            "{there} sh -c 'ip link set lo up && ip link set ws up && ip addr add {API}/32 dev ws \
             && ip addr add {OTHER}/32 dev ws && ip route add 192.0.2.1/32 dev ws'"
        ));
        SERVERS.with(|s| *s.borrow_mut() = Some(ns));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = stop_tx.send(());
        let _ = parked.join();
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    });
    if let Err(e) = h.join() {
        std::panic::resume_unwind(e);
    }
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "`{cmd}` failed (is iproute2 installed? scripts/setup.sh installs it)"
    );
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The stub DNS server: name -> answers (in order), and every name asked.
#[derive(Clone, Default)]
pub struct Stub {
    pub answers: Arc<Mutex<HashMap<String, Vec<Vec<IpAddr>>>>>,
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    /// Answer `name` with `ips` (each later query takes the next list; the last repeats).
    pub fn set(&self, name: &str, lists: Vec<Vec<&str>>) {
        self.answers.lock().unwrap().insert(
            name.to_string(),
            lists
                .into_iter()
                .map(|l| l.into_iter().map(|s| s.parse().unwrap()).collect())
                .collect(),
        );
    }

    pub fn asked(&self, name: &str) -> bool {
        self.asked.lock().unwrap().iter().any(|n| n == name)
    }

    pub async fn serve(self) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind((DNS, 53)).await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(resp) = self.answer(&buf[..n]) {
                    let _ = sock.send_to(&resp, from).await;
                }
            }
        });
        addr
    }

    fn answer(&self, q: &[u8]) -> Option<Vec<u8>> {
        if q.len() < 12 {
            return None;
        }
        let mut i = 12;
        let mut labels = Vec::new();
        loop {
            let l = *q.get(i)? as usize;
            i += 1;
            if l == 0 {
                break;
            }
            labels.push(String::from_utf8_lossy(q.get(i..i + l)?).to_lowercase());
            i += l;
        }
        let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
        let qend = i + 4;
        let name = labels.join(".");
        self.asked.lock().unwrap().push(name.clone());
        let ips = {
            let mut m = self.answers.lock().unwrap();
            match m.get_mut(&name) {
                None => None,
                Some(lists) => {
                    let l = lists[0].clone();
                    // A and AAAA queries come in pairs: advance after the A query.
                    if qtype == 1 && lists.len() > 1 {
                        lists.remove(0);
                    }
                    Some(l)
                }
            }
        };
        let mut r = q[..qend].to_vec();
        r[2] = 0x81;
        r[3] = if ips.is_some() { 0x80 } else { 0x83 }; // NXDOMAIN for unknown names
        r[6] = 0;
        r[7] = 0;
        r[8..12].fill(0);
        let mut n = 0u16;
        for ip in ips.unwrap_or_default() {
            let (ty, data): (u16, Vec<u8>) = match ip {
                IpAddr::V4(a) if qtype == 1 => (1, a.octets().to_vec()),
                IpAddr::V6(a) if qtype == 28 => (28, a.octets().to_vec()),
                _ => continue,
            };
            r.extend_from_slice(&[0xc0, 12]);
            r.extend_from_slice(&ty.to_be_bytes());
            r.extend_from_slice(&[0, 1, 0, 0, 0, 0]); // IN, TTL 0
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(&data);
            n += 1;
        }
        r[6..8].copy_from_slice(&n.to_be_bytes());
        Some(r)
    }
}

/// An HTTP server that answers with what it saw; counts its connections.
pub async fn http_server(addr: &str) -> Arc<AtomicUsize> {
    let l = if addr.starts_with("127.") || addr.starts_with(HOST_PUBLIC) {
        TcpListener::bind(addr).await.unwrap()
    } else {
        bind(addr)
    };
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let local = s.local_addr().unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap_or("?").to_string())
                        .unwrap_or_default();
                    let path = req.uri().to_string();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len())
                        .unwrap_or(0);
                    let text = format!("hello from {local} host={host} path={path} body={body}");
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    count
}

/// A server's TLS side for `names` with a self-signed certificate (returned, DER), offering
/// `alpn`.
fn self_signed(names: &[&str], alpn: &[&[u8]]) -> (tokio_rustls::TlsAcceptor, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert_der = ck.cert.der().to_vec();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
        ck.signing_key.serialize_der().into(),
    );
    let mut cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der.clone().into()], key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    (tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), cert_der)
}

/// A TLS server for `names` on `addr`: after the handshake it writes `tls ok <sni>\n`.
pub async fn tls_server(addr: &str, names: &[&str]) -> (Arc<AtomicUsize>, Vec<u8>) {
    let (acceptor, cert_der) = self_signed(names, &[]);
    let l = bind(addr);
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut t) = acceptor.accept(s).await {
                    let sni = t.get_ref().1.server_name().unwrap_or("-").to_string();
                    let _ = t.write_all(format!("tls ok {sni}\n").as_bytes()).await;
                    let _ = t.shutdown().await;
                }
            });
        }
    });
    (count, cert_der)
}

/// TLS client over an already-open stream; returns the first line the server sent.
pub async fn tls_hello<S>(s: S, sni: &str, cert: &[u8]) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.to_vec().into()).map_err(|e| e.to_string())?;
    let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|e| e.to_string())?;
    let mut t = tokio::time::timeout(Duration::from_secs(10), conn.connect(name, s))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    t.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

pub struct World {
    pub proxy: Proxy,
    pub addr: SocketAddr,
    pub log: Arc<AuditLog>,
    pub stub: Stub,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Start Ward's proxy with a manifest written in TOML (policy files may sit beside it in
    /// `files`).
    pub async fn start(manifest: &str, files: &[(&str, &str)]) -> World {
        Self::start_with(manifest, files, |_| {}).await
    }

    pub async fn start_with(
        manifest: &str,
        files: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let mpath = dir.path().join("ward.toml");
        std::fs::write(&mpath, manifest).unwrap();
        let opts = LoadOptions {
            managed: vec![],
            home: Some(dir.path().to_path_buf()),
            ..LoadOptions::default()
        };
        let m = Manifest::load(&mpath, &opts).unwrap();
        let log = Arc::new(
            AuditLog::open(
                &dir.path().join("log/audit.jsonl"),
                &KeyStore::new(dir.path().join("keys")),
                WriterOptions::default(),
            )
            .unwrap(),
        );
        let stub = Stub::default();
        let dns = stub.clone().serve().await;
        let mut cfg = Config::new(m, log.clone());
        cfg.dns = Dns::Servers(vec![dns]);
        cfg.session = Some("test".into());
        tweak(&mut cfg);
        let proxy = Proxy::new(cfg).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let p = proxy.clone();
        tokio::spawn(async move { p.serve(l).await });
        World {
            proxy,
            addr,
            log,
            stub,
            dir,
        }
    }

    /// Every record so far (after making the queued ones durable).
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.log
            .append(Event {
                kind: "test.sync".into(),
                ..Event::default()
            })
            .unwrap();
        read_records(self.log.path())
    }

    /// Records of `kind` whose JSON text contains `needle`.
    pub fn find(&self, kind: &str, needle: &str) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == kind && r.to_string().contains(needle))
            .collect()
    }

    /// Assert that a deny of `needle` is on record with `by` in its decision.
    pub fn assert_denied(&self, needle: &str, by: &str) {
        let all = self.records();
        let hit = all.iter().any(|r| {
            r["decision"]["result"] == "deny"
                && r.to_string().contains(needle)
                && r["decision"]["by"].as_str().unwrap_or("").contains(by)
        });
        assert!(
            hit,
            "no deny record for {needle} by {by}; records:\n{}",
            all.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    pub async fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Send raw bytes on a new connection and read one response.
    pub async fn raw(&self, req: &str) -> Resp {
        let mut s = self.tcp().await;
        s.write_all(req.as_bytes()).await.unwrap();
        read_response(&mut s).await
    }

    /// `GET url` as a proxy request.
    pub async fn get(&self, url: &str, host: &str) -> Resp {
        self.raw(&format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
            .await
    }

    /// Open a CONNECT tunnel; the status and, when 200, the stream.
    pub async fn connect(&self, target: &str) -> (u16, TcpStream) {
        let mut s = self.tcp().await;
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let r = read_head(&mut s).await;
        (r.status, s)
    }

    /// A SOCKS5 CONNECT by domain name; the reply code and the stream.
    pub async fn socks(&self, host: &str, port: u16) -> (u8, TcpStream) {
        let mut s = self.tcp().await;
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0]);
        let mut r = vec![5, 1, 0, 3, host.len() as u8];
        r.extend_from_slice(host.as_bytes());
        r.extend_from_slice(&port.to_be_bytes());
        s.write_all(&r).await.unwrap();
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep).await.unwrap();
        (rep[1], s)
    }
}

pub fn read_records(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

pub async fn read_head(s: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
            Ok(Ok(1)) => buf.push(b[0]),
            _ => {
                return Resp {
                    status: 0,
                    head: String::from_utf8_lossy(&buf).into(),
                    body: String::new(),
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        head,
        body: String::new(),
    }
}

/// One response with a Content-Length body (what both the proxy and the test servers send).
pub async fn read_response(s: &mut TcpStream) -> Resp {
    let mut r = read_head(s).await;
    let len = r
        .head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body))
        .await
        .is_ok()
    {
        r.body = String::from_utf8_lossy(&body).into();
    }
    r
}

/// A ClientHello naming `sni` (enough for the proxy's check; an echo server does not care).
pub fn client_hello(sni: &str) -> Vec<u8> {
    ward_net::tls::client_hello(Some(sni), false)
}

/// An echo server on `addr` in the servers' namespace; counts the bytes it echoed.
pub async fn echo_server(addr: &str) -> Arc<std::sync::atomic::AtomicU64> {
    let l = bind(addr);
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let n = n2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    let k = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => k,
                    };
                    n.fetch_add(k as u64, Ordering::SeqCst);
                    if s.write_all(&buf[..k]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    n
}

/// An HTTPS server for `names` on `addr` with a certificate of its own (returned, DER): it
/// answers every request like [`http_server`] (`hello from ... host=... path=... body=...`),
/// over HTTP/1.1. Counts requests.
pub async fn https_server(addr: &str, names: &[&str]) -> (Arc<AtomicUsize>, Vec<u8>) {
    let (acceptor, cert_der) = self_signed(names, &[b"http/1.1"]);
    let l = bind(addr);
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let local = s.local_addr().unwrap();
            let (acceptor, c) = (acceptor.clone(), c.clone());
            tokio::spawn(async move {
                let Ok(t) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .map(|h| h.to_str().unwrap_or("?").to_string())
                                .unwrap_or_default()
                        };
                        let (host, xfh) = (header("host"), header("x-forwarded-host"));
                        let key = header("x-api-key");
                        let path = req.uri().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        let text = format!(
                            "hello from {local} host={host} path={path} body={body} key={key} xfh={xfh}"
                        );
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            text,
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(t), svc)
                    .await;
            });
        }
    });
    (count, cert_der)
}

/// One request of [`tls_requests`]: method, path, `Host`, body, more headers.
pub type Req<'a> = (&'a str, &'a str, &'a str, Vec<u8>, &'a [(&'a str, &'a str)]);

/// Over `s` (a tunnel), TLS for `sni` trusting only `root` (DER), then one HTTP/1.1 request
/// `method path` with `Host: host` and `body`: the status and the response body.
pub async fn tls_request<S>(
    s: S,
    sni: &str,
    root: &[u8],
    (method, path, host, body): (&str, &str, &str, Vec<u8>),
) -> Result<(u16, String), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut r = tls_requests(s, sni, root, vec![(method, path, host, body, &[])]).await?;
    Ok(r.remove(0))
}

/// [`tls_request`] for several requests, one after the other on the same connection.
pub async fn tls_requests<S>(
    s: S,
    sni: &str,
    root: &[u8],
    reqs: Vec<Req<'_>>,
) -> Result<Vec<(u16, String)>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(root.to_vec().into()).map_err(|e| e.to_string())?;
    let mut cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|e| e.to_string())?;
    let t = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, s),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(t))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut out = Vec::new();
    for (method, path, host, body, more) in reqs {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (k, v) in more {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .map_err(|_| "request timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let b = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        out.push((status, String::from_utf8_lossy(&b).into_owned()));
    }
    Ok(out)
}

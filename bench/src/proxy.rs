//! `ward-bench proxy`: the egress proxy side by side with no proxy (direct) and with squid, in
//! one run, in a network namespace of its own: 1 KiB requests/s, 1 MiB requests/s (both over
//! kept-alive connections), and one 256 MiB stream through CONNECT. Ward runs as the release
//! `ward proxy` binary (its audit log on), squid as Debian's with its access log on.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SERVER: &str = "44.1.1.1";
/// A positive number from the environment variable `name`, or `default`.
fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The stream's size: 256 MiB, or `WARD_BENCH_STREAM_MB`.
fn stream_len() -> u64 {
    env_count("WARD_BENCH_STREAM_MB", 256) << 20
}

pub fn run() {
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } != 0 {
        println!("proxy: SKIPPED (needs root for a network namespace)");
        return;
    }
    let ward = std::env::current_exe().unwrap().with_file_name("ward");
    assert!(
        ward.exists(),
        "build the ward binary first: cargo build --release -p ward -p ward-bench"
    );
    let squid = ["/usr/sbin/squid", "/usr/bin/squid"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    std::thread::spawn(move || {
        // SAFETY: unshare for this thread (and what it spawns) only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        for c in [
            "ip link set lo up",
            &format!("ip addr add {SERVER}/32 dev lo"),
        ] {
            assert!(Command::new("sh")
                .arg("-c")
                .arg(c)
                .status()
                .unwrap()
                .success());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(bench(ward, squid));
    })
    .join()
    .unwrap();
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(a: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(a).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {a}");
}

async fn bench(ward: std::path::PathBuf, squid: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    servers().await;
    let ward_addr: SocketAddr = "127.0.0.1:3128".parse().unwrap();
    let squid_addr: SocketAddr = "127.0.0.1:3129".parse().unwrap();
    std::fs::write(
        dir.path().join("ward.toml"),
        format!(
            "name = \"bench\"\n[network]\nallow = [\"http://{SERVER}\", \"https://{SERVER}\", \"https://{SERVER}:8443\"]\n"
        ),
    )
    .unwrap();
    let w = Proc(
        Command::new(&ward)
            .args(["proxy", "-m"])
            .arg(dir.path().join("ward.toml"))
            .args(["--listen", &ward_addr.to_string()])
            .env("HOME", dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("WARD_MANAGED", dir.path().join("none.toml"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(ward_addr).await;
    let sq = squid.map(|bin| {
        let sd = dir.path().join("squid");
        std::fs::create_dir_all(&sd).unwrap();
        let _ = Command::new("chmod").arg("777").arg(&sd).status();
        let conf = sd.join("squid.conf");
        let mut f = std::fs::File::create(&conf).unwrap();
        // squid's access log, as Ward records every request: written by squid itself
        // (`stdio`, the default here) or by its log daemon (`WARD_BENCH_SQUID_LOG=daemon`,
        // Debian's default) or off (`none`).
        let log = match std::env::var("WARD_BENCH_SQUID_LOG").as_deref() {
            Ok("daemon") => format!("daemon:{}/access.log", sd.display()),
            Ok("none") => "none".to_string(),
            _ => format!("stdio:{}/access.log", sd.display()),
        };
        write!(
            f,
            "http_port {squid_addr}\nhttp_access allow all\ncache deny all\ncache_mem 8 MB\n\
             access_log {log}\ncache_log {d}/cache.log\npid_filename none\n\
             coredump_dir {d}\nshutdown_lifetime 0 seconds\ndns_nameservers 127.0.0.1\n",
            d = sd.display()
        )
        .unwrap();
        let p = Proc(
            Command::new(bin)
                .args(["-N", "-f"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        p
    });
    // The floor: a relay that parses nothing and records nothing, one upstream connection per
    // client connection, bytes copied both ways (what any user-space proxy does at least).
    // Requests only: it cannot answer CONNECT.
    let relay_addr: SocketAddr = "127.0.0.1:3130".parse().unwrap();
    let relay = Proc(
        Command::new(std::env::current_exe().unwrap())
            .args(["relay", &relay_addr.to_string(), &format!("{SERVER}:80")])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(relay_addr).await;
    let mut modes = vec![
        ("direct", None),
        ("ward", Some(ward_addr)),
        ("relay", Some(relay_addr)),
    ];
    if squid.is_some() {
        wait_port(squid_addr).await;
        modes.push(("squid", Some(squid_addr)));
    } else {
        println!("proxy: squid not installed (apt-get install squid): its column is empty");
    }
    // `WARD_BENCH_MODES=ward` (a comma list) measures only those (for profiling one of them).
    if let Ok(only) = std::env::var("WARD_BENCH_MODES") {
        modes.retain(|(m, _)| only.split(',').any(|o| o == *m));
    }
    println!(
        "proxy: one run, {} interleaved rounds, medians. Shared: client, server and proxy on both cores.",
        rounds()
    );
    measure(&modes).await;
    // Pinned: the load generator and the servers on CPU 0, the proxy on CPU 1 (what a proxy
    // can do with one core of its own).
    let pin = |pid: u32, cpu: &str| {
        Command::new("taskset")
            .args(["-a", "-cp", cpu, &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut pinned = pin(std::process::id(), "0") && pin(w.0.id(), "1") && pin(relay.0.id(), "1");
    if let Some(p) = &sq {
        pinned &= pin(p.0.id(), "1");
    }
    if pinned {
        println!("\nPinned: load generator and servers on CPU 0, the proxy on CPU 1.");
        measure(&modes).await;
    } else {
        println!("\n(taskset unavailable: no pinned run)");
    }
}

async fn measure(modes: &[(&str, Option<SocketAddr>)]) {
    let mut table: Vec<(String, Vec<(&str, f64)>)> = Vec::new();
    // `WARD_BENCH_PROXY=stream` measures the stream alone (quicker, when working on tunnels),
    // `WARD_BENCH_PROXY=1k` the 1 KiB requests alone.
    let only = std::env::var("WARD_BENCH_PROXY").unwrap_or_default();
    let all: &[(&str, &str, usize)] = &[
        ("1 KiB requests/s", "/1k", 32),
        ("1 MiB requests/s", "/1m", 8),
    ];
    let requests = match only.as_str() {
        "stream" => &[][..],
        "1k" => &all[..1],
        _ => all,
    };
    for &(label, path, conns) in requests {
        let mut per: Vec<(&str, Vec<f64>)> = modes.iter().map(|(m, _)| (*m, vec![])).collect();
        for _ in 0..rounds() {
            for (i, (_, via)) in modes.iter().enumerate() {
                per[i]
                    .1
                    .push(rps(*via, path, conns, Duration::from_secs(2)).await);
            }
        }
        table.push((
            label.into(),
            per.into_iter().map(|(m, v)| (m, median(v))).collect(),
        ));
    }
    let streams: &[(&str, u16)] = &[
        ("origin writes from memory", 443),
        ("origin uses sendfile", 8443),
    ];
    for &(how, port) in if only == "1k" { &[][..] } else { streams } {
        let mut per: Vec<(&str, Vec<f64>)> = modes.iter().map(|(m, _)| (*m, vec![])).collect();
        for _ in 0..rounds() {
            for (i, (m, via)) in modes.iter().enumerate() {
                if *m != "relay" {
                    per[i].1.push(stream(*via, port).await);
                }
            }
        }
        table.push((
            format!("{} MiB CONNECT stream ({how}), MB/s", stream_len() >> 20),
            per.into_iter().map(|(m, v)| (m, median(v))).collect(),
        ));
    }
    println!(
        "| measure | direct | ward | squid | relay | ward/direct | squid/direct | relay/direct | ward/squid | relay/squid |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, vals) in &table {
        let get = |m: &str| vals.iter().find(|(k, _)| *k == m).map(|(_, v)| *v);
        let (d, w, s) = (get("direct"), get("ward"), get("squid"));
        let y = get("relay").filter(|v| !v.is_nan());
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(d),
            f(w),
            f(s),
            f(y),
            r(w, d),
            r(s, d),
            r(y, d),
            r(w, s),
            r(y, s)
        );
    }
}

/// Rounds per measure: 5, or `WARD_BENCH_ROUNDS`.
fn rounds() -> usize {
    env_count("WARD_BENCH_ROUNDS", 5) as usize
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `ward-bench relay LISTEN TARGET`: accept on LISTEN and copy bytes to and from TARGET,
/// one upstream connection per client connection; two worker threads, like `ward proxy`.
pub fn relay(listen: SocketAddr, target: SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = TcpListener::bind(listen).await.unwrap();
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut u) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = c.set_nodelay(true);
                let _ = u.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
            });
        }
    });
}

/// The servers: HTTP on :80 (`/1k`, `/1m`), and on :443 a stream of 256 MiB after the first
/// TLS record (the ClientHello, which the proxy checks).
async fn servers() {
    let small = bytes::Bytes::from(vec![b'a'; 1024]);
    let big = bytes::Bytes::from(vec![b'b'; 1 << 20]);
    let l = TcpListener::bind((SERVER, 80)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let _ = s.set_nodelay(true);
            let (small, big) = (small.clone(), big.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = if req.uri().path() == "/1m" {
                            big.clone()
                        } else {
                            small.clone()
                        };
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(body),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    // :8443 sends the same stream from a file with sendfile(2), as nginx does with
    // `sendfile on` (the origin of the research baselines): the origin copies nothing, so the
    // client's copy is the one cost both ways and the proxy's own cost shows.
    let file = std::sync::Arc::new(stream_file());
    let l = TcpListener::bind((SERVER, 8443)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let file = file.clone();
            tokio::spawn(async move {
                if skip_hello(&mut s).await.is_err() {
                    return;
                }
                use std::os::fd::AsRawFd;
                let (sfd, ffd) = (s.as_raw_fd(), file.as_raw_fd());
                let mut off: libc::off_t = 0;
                let len = stream_len() as libc::off_t;
                while off < len {
                    if s.writable().await.is_err() {
                        return;
                    }
                    let r = s.try_io(tokio::io::Interest::WRITABLE, || {
                        // SAFETY: sendfile between descriptors we hold; `off` is ours.
                        let n = unsafe { libc::sendfile(sfd, ffd, &mut off, (len - off) as usize) };
                        if n < 0 {
                            Err(std::io::Error::last_os_error())
                        } else {
                            Ok(n)
                        }
                    });
                    match r {
                        Ok(0) => return, // the file is shorter than it should be
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let l = TcpListener::bind((SERVER, 443)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if skip_hello(&mut s).await.is_err() {
                    return;
                }
                let chunk = vec![b'c'; 256 << 10];
                let mut left = stream_len();
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = s.shutdown().await;
            });
        }
    });
}

/// Read the first TLS record (the ClientHello).
async fn skip_hello(s: &mut TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await?;
    let mut rest = vec![0u8; u16::from_be_bytes([head[3], head[4]]) as usize];
    s.read_exact(&mut rest).await?;
    Ok(())
}

/// The stream's bytes in a memory-backed file, for sendfile.
fn stream_file() -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a static name; the descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(c"ward-bench-stream".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor of ours.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let chunk = vec![b'f'; 1 << 20];
    for _ in 0..(stream_len() >> 20) {
        f.write_all(&chunk).unwrap();
    }
    f
}

/// Requests per second over `conns` kept-alive connections for `dur`.
async fn rps(via: Option<SocketAddr>, path: &str, conns: usize, dur: Duration) -> f64 {
    let target: SocketAddr = format!("{SERVER}:80").parse().unwrap();
    let req = match via {
        None => format!("GET {path} HTTP/1.1\r\nHost: {SERVER}\r\n\r\n"),
        Some(_) => format!("GET http://{SERVER}{path} HTTP/1.1\r\nHost: {SERVER}\r\n\r\n"),
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(via.unwrap_or(target)).await.unwrap();
            let _ = s.set_nodelay(true);
            let mut buf = Vec::with_capacity(1 << 21);
            let mut n = 0u64;
            while start.elapsed() < dur {
                s.write_all(req.as_bytes()).await.unwrap();
                read_one(&mut s, &mut buf).await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Read one response with a Content-Length body (leftover bytes kept in `buf`).
async fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut tmp = vec![0u8; 256 << 10];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])
                .unwrap()
                .to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = s.read(&mut tmp).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&tmp[..n]);
            }
            buf.drain(..total);
            return;
        }
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// A TCP connection to `target`, through a CONNECT tunnel of the proxy at `via` (its `200`
/// read), or directly.
pub(crate) async fn tunnel(target: SocketAddr, via: Option<SocketAddr>) -> TcpStream {
    let mut s = TcpStream::connect(via.unwrap_or(target)).await.unwrap();
    if via.is_some() {
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    s
}

/// One 256 MiB download through a CONNECT tunnel (or directly); MB/s.
async fn stream(via: Option<SocketAddr>, port: u16) -> f64 {
    let target: SocketAddr = format!("{SERVER}:{port}").parse().unwrap();
    let start = Instant::now();
    let mut s = tunnel(target, via).await;
    // A ClientHello without SNI (the CONNECT host is an address).
    s.write_all(&ward_net::tls::client_hello(None, false))
        .await
        .unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert_eq!(got, stream_len(), "short stream");
    got as f64 / start.elapsed().as_secs_f64() / 1e6
}

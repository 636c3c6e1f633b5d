//! Load: 1,000 tunnels open at once, then 100,000 proxied requests, against real servers. After
//! each, every connection is gone, the proxy holds no descriptor it did not hold before, and
//! its memory is back near where it started. (Durations are reported, never asserted; a guard
//! only stops a hung test.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TUNNELS: usize = 1000;
const CONNS: usize = 50;
const REQUESTS: usize = 100_000;
const GUARD: Duration = Duration::from_secs(600);

/// One load test at a time in a process (the descriptor and memory counts are the process's).
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    // SAFETY: returns freed heap to the system so that the figure shows what is still held.
    unsafe {
        libc::malloc_trim(0);
    }
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/set of this process's limit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_max = r.rlim_max.max(65536);
        r.rlim_cur = r.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[test]
fn a_thousand_tunnels_then_a_hundred_thousand_requests() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    in_netns(|| {
        raise_fd_limit();
        rt().block_on(async {
            // An echo server where the tunnels lead.
            let l = bind(&format!("{API}:443"));
            tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        return;
                    };
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"http://api.test\", \"https://api.test\"]\n",
                &[],
            )
            .await;
            w.stub.set("api.test", vec![vec![API]]);
            // Warm up (resolver, runtime threads, allocator), then take the baseline.
            for _ in 0..20 {
                assert_eq!(w.get("http://api.test/", "api.test").await.status, 200);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (fd0, rss0) = (fds(), rss_kib());

            // 1,000 tunnels open at the same time, each carrying data both ways.
            let t = Instant::now();
            let hello = client_hello("api.test");
            let opened = tokio::time::timeout(GUARD, async {
                let mut tasks = Vec::new();
                let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TUNNELS));
                for i in 0..TUNNELS {
                    let (addr, hello, barrier) = (w.addr, hello.clone(), barrier.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                        s.write_all(b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n")
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
                        s.write_all(&hello).await.unwrap();
                        let mut back = vec![0u8; hello.len()];
                        s.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, hello);
                        // All open at once before any closes.
                        barrier.wait().await;
                        let msg = format!("tunnel {i}");
                        s.write_all(msg.as_bytes()).await.unwrap();
                        let mut echo = vec![0u8; msg.len()];
                        s.read_exact(&mut echo).await.unwrap();
                        assert_eq!(echo, msg.as_bytes());
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await;
            assert!(opened.is_ok(), "the tunnels hung");
            eprintln!("{TUNNELS} concurrent tunnels: {:?}", t.elapsed());

            // 100,000 requests over 50 kept-alive connections.
            let t = Instant::now();
            let done = tokio::time::timeout(GUARD, async {
                let mut tasks = Vec::new();
                for _ in 0..CONNS {
                    let addr = w.addr;
                    tasks.push(tokio::spawn(async move {
                        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                        for _ in 0..REQUESTS / CONNS {
                            s.write_all(b"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n")
                                .await
                                .unwrap();
                            let r = read_response(&mut s).await;
                            assert_eq!(r.status, 200);
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await;
            assert!(done.is_ok(), "the requests hung");
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "{REQUESTS} requests: {secs:.1} s ({:.0}/s, debug build)",
                REQUESTS as f64 / secs
            );
            assert!(hits.load(Ordering::SeqCst) >= CONNS);

            // Everything closed: back to the baseline.
            let settle = Instant::now();
            while w.proxy.active() > 0 && settle.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(w.proxy.active(), 0, "connections still open in the proxy");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (fd1, rss1) = (fds(), rss_kib());
            eprintln!("descriptors {fd0} -> {fd1}; RSS {rss0} KiB -> {rss1} KiB");
            assert!(fd1 <= fd0 + 2, "descriptors leaked: {fd0} -> {fd1}");
            assert!(
                rss1 < rss0 + 32 * 1024,
                "memory not back near the baseline: {rss0} KiB -> {rss1} KiB"
            );
            // Every request is on record.
            let reqs = w
                .records()
                .iter()
                .filter(|r| r["kind"] == "net.request")
                .count();
            assert!(reqs >= REQUESTS, "{reqs} request records");
            let closes = w
                .records()
                .iter()
                .filter(|r| r["kind"] == "net.close")
                .count();
            assert_eq!(closes, TUNNELS);
        })
    });
}

/// A download through a tunnel whose client stops reading for a while: the socket buffers and
/// the proxy's pipe fill while the upstream keeps sending, then the client reads in small
/// pieces. Every byte arrives, in order, and the tunnel's record
/// counts them all.
#[test]
fn a_stalled_reader_gets_every_byte_of_a_tunnel_in_order() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    const SIZE: usize = 48 << 20;
    fn byte(i: usize) -> u8 {
        (i % 251) as u8
    }
    in_netns(|| {
        rt().block_on(async {
            let l = bind(&format!("{API}:443"));
            tokio::spawn(async move {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                // The first TLS record (the ClientHello), then the download.
                let mut head = [0u8; 5];
                s.read_exact(&mut head).await.unwrap();
                let mut rest = vec![0u8; u16::from_be_bytes([head[3], head[4]]) as usize];
                s.read_exact(&mut rest).await.unwrap();
                let data: Vec<u8> = (0..SIZE).map(byte).collect();
                s.write_all(&data).await.unwrap();
                s.shutdown().await.unwrap();
            });
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"https://api.test\"]\n",
                &[],
            )
            .await;
            w.stub.set("api.test", vec![vec![API]]);
            let (st, mut s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            s.write_all(&client_hello("api.test")).await.unwrap();
            // Stall while the server writes as much as the buffers on the way take.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut got = 0usize;
            let mut buf = vec![0u8; 1000];
            let deadline = Instant::now() + GUARD;
            loop {
                assert!(
                    Instant::now() < deadline,
                    "the download hung at {got} bytes"
                );
                let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
                    .await
                    .expect("no data for 30 s: the tunnel stalled")
                    .unwrap();
                if n == 0 {
                    break;
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, byte(got + k), "byte {} differs", got + k);
                }
                got += n;
            }
            assert_eq!(got, SIZE, "the tunnel ended early");
            // The client's side ends too, which ends the tunnel.
            s.shutdown().await.unwrap();
            // The tunnel's record: allowed, with every byte counted down.
            let mut closed = Vec::new();
            for _ in 0..400 {
                closed = w.find("net.close", "api.test");
                if !closed.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(closed.len(), 1, "{:#?}", w.records());
            assert_eq!(closed[0]["detail"]["down"].as_u64(), Some(SIZE as u64));
            assert_eq!(closed[0]["detail"]["end"], "closed");
        })
    });
}

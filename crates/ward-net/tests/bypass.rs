//! The egress proxy against the published ways around allowlist proxies
//! (`reference/proxy-bypass-cases.md`): each attempt is refused, reaches no server, and is on
//! record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::*;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;

const ALLOW_API: &str = r#"
name = "t"
[network]
allow = ["http://api.test", "https://api.test"]
unknown = "deny"
"#;

#[test]
fn allowed_host_passes_and_is_recorded() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            let r = w.get("http://api.test/x?y=1", "api.test").await;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("host=api.test path=/x?y=1"), "{}", r.body);
            assert_eq!(hits.load(Ordering::SeqCst), 1);
            let c = w.find("net.connect", "http://api.test:80");
            assert_eq!(c[0]["decision"]["result"], "allow", "{c:?}");
            assert_eq!(c[0]["detail"]["addresses"][0], API);
            let req = w.find("net.request", "api.test");
            assert_eq!(req[0]["detail"]["status"], 200);
            assert!(req[0]["detail"]["down"].as_u64().unwrap() > 10);
            assert!(req[0]["detail"]["ms"].as_f64().is_some());
        })
    });
}

#[test]
fn unlisted_host_is_refused_before_any_dns_query() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{OTHER}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("other.test", vec![vec![OTHER]]);
            let r = w.get("http://other.test/", "other.test").await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("not in the manifest"), "{}", r.body);
            let (st, _) = w.connect("other.test:443").await;
            assert_eq!(st, 403);
            let (code, _) = w.socks("other.test", 443).await;
            assert_eq!(code, 2);
            // Wildcard/suffix look-alikes of the allowed name.
            for h in ["api.test.evil.test", "evilapi.test", "api.tes"] {
                let r = w.get(&format!("http://{h}/"), h).await;
                assert_eq!(r.status, 403, "{h}");
            }
            assert!(!w.stub.asked("other.test"), "a refused name was resolved");
            assert_eq!(hits.load(Ordering::SeqCst), 0);
            w.assert_denied("other.test", "");
        })
    });
}

#[test]
fn ip_literal_spellings_of_loopback_and_metadata_are_refused() {
    in_netns(|| {
        rt().block_on(async {
            // Even a manifest that lets every name through keeps these out.
            let w = World::start_with("name = \"t\"\n[network]\nunknown = \"ask\"\n", &[], |c| {
                c.consent = Some(Box::new(Yes))
            })
            .await;
            let lo = http_server("127.0.0.1:80").await;
            let lo2 = http_server("127.0.0.2:80").await;
            for h in [
                "2130706433",
                "0x7f.1",
                "127.1",
                "0177.0.0.1",
                "0x7f000001",
                "[::ffff:127.0.0.1]",
                "[::ffff:7f00:1]",
                "127.0.0.2",
                "[::1]",
                "0.0.0.0",
                "169.254.169.254",
                "2852039166",
                "0251.0376.0251.0376",
                "169.254.43518",
                "[64:ff9b::a9fe:a9fe]",
                "100.100.100.200",
                "10.0.0.1",
                "[fd00:ec2::254]",
            ] {
                let r = w.get(&format!("http://{h}/"), h).await;
                assert_eq!(r.status, 403, "GET {h}: {r:?}");
                let (st, _) = w.connect(&format!("{h}:443")).await;
                assert_eq!(st, 403, "CONNECT {h}");
            }
            for h in ["2130706433", "0x7f.1", "127.1", "169.254.169.254"] {
                let (code, _) = w.socks(h, 80).await;
                assert_eq!(code, 2, "SOCKS {h}");
            }
            assert_eq!(lo.load(Ordering::SeqCst), 0, "loopback server reached");
            assert_eq!(lo2.load(Ordering::SeqCst), 0);
            w.assert_denied("127.0.0.1 (loopback)", "builtin:ssrf");
            w.assert_denied("169.254.169.254 (link-local", "builtin:ssrf");
            // Malformed spellings are refused as malformed.
            for h in ["08.0.0.1", "1.2.3.4.5", "256.0.0.1"] {
                let r = w.get(&format!("http://{h}/"), h).await;
                assert_eq!(r.status, 400, "{h}: {r:?}");
            }
        })
    });
}

#[test]
fn listed_name_resolving_to_private_address_is_refused() {
    in_netns(|| {
        rt().block_on(async {
            let lo = http_server("127.0.0.1:80").await;
            let api = http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            // Straight to loopback.
            w.stub.set("api.test", vec![vec!["127.0.0.1"]]);
            let r = w.get("http://api.test/", "api.test").await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("loopback"), "{}", r.body);
            w.assert_denied("api.test", "builtin:ssrf");
            // Rebinding: public first, loopback on the next lookup. Each decision dials what
            // it vetted; the second one is refused.
            w.stub.set("api.test", vec![vec![API], vec!["127.0.0.1"]]);
            let r = w.get("http://api.test/", "api.test").await;
            assert_eq!(r.status, 200, "{r:?}");
            let r = w.get("http://api.test/", "api.test").await;
            assert_eq!(r.status, 403, "{r:?}");
            // Mixed answers: never the private one.
            w.stub.set("api.test", vec![vec!["127.0.0.1", API]]);
            let r = w.get("http://api.test/", "api.test").await;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains(API), "{}", r.body);
            assert_eq!(lo.load(Ordering::SeqCst), 0, "loopback reached");
            assert_eq!(api.load(Ordering::SeqCst), 2);
        })
    });
}

#[test]
fn an_address_the_manifest_names_is_reachable() {
    in_netns(|| {
        rt().block_on(async {
            let lo = http_server("127.0.0.1:8080").await;
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"http://127.0.0.1:8080\"]\n",
                &[],
            )
            .await;
            let r = w.get("http://127.0.0.1:8080/", "127.0.0.1:8080").await;
            assert_eq!(r.status, 200, "{r:?}");
            // Another port of the same address is not named.
            let r = w.get("http://127.0.0.1:8081/", "127.0.0.1:8081").await;
            assert_eq!(r.status, 403, "{r:?}");
            // Nor is the proxy itself.
            let own = w.addr;
            let r = w.get(&format!("http://{own}/"), &own.to_string()).await;
            assert_eq!(r.status, 403, "{r:?}");
            assert_eq!(lo.load(Ordering::SeqCst), 1);
        })
    });
}

#[test]
fn connect_with_mismatched_sni_is_refused_and_real_tls_passes() {
    in_netns(|| {
        rt().block_on(async {
            let (hits, cert) = tls_server(&format!("{API}:443"), &["api.test", "other.test"]).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            // The real thing: rustls through the tunnel.
            let (st, s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            assert_eq!(
                tls_hello(s, "api.test", &cert).await.unwrap(),
                "tls ok api.test\n"
            );
            assert_eq!(hits.load(Ordering::SeqCst), 1);
            // Domain fronting: CONNECT to the allowed name, TLS for another.
            let (st, s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            assert!(tls_hello(s, "other.test", &cert).await.is_err());
            assert_eq!(hits.load(Ordering::SeqCst), 1, "the upstream was dialed");
            w.assert_denied("api.test", "builtin:sni");
            assert!(w.find("net.connect", "domain fronting").len() == 1);
            // Not TLS at all (an SSH banner) through the tunnel.
            let (st, mut s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf).await;
            assert_eq!(hits.load(Ordering::SeqCst), 1);
            w.assert_denied("tunnels carry TLS only", "builtin:sni");
            // The same through SOCKS5.
            let (code, s) = w.socks("api.test", 443).await;
            assert_eq!(code, 0);
            assert_eq!(
                tls_hello(s, "api.test", &cert).await.unwrap(),
                "tls ok api.test\n"
            );
            let (code, s) = w.socks("api.test", 443).await;
            assert_eq!(code, 0);
            assert!(tls_hello(s, "other.test", &cert).await.is_err());
            assert_eq!(hits.load(Ordering::SeqCst), 2);
            // A port the manifest does not name.
            let (st, _) = w.connect("api.test:22").await;
            assert_eq!(st, 403);
        })
    });
}

#[test]
fn host_header_switch_on_a_kept_alive_connection_is_refused() {
    in_netns(|| {
        rt().block_on(async {
            let api = http_server(&format!("{API}:80")).await;
            let other = http_server(&format!("{OTHER}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("other.test", vec![vec![OTHER]]);
            let mut s = w.tcp().await;
            s.write_all(b"GET http://api.test/1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(read_response(&mut s).await.status, 200);
            // Same connection, the Host header now names another server.
            s.write_all(b"GET http://api.test/2 HTTP/1.1\r\nHost: other.test\r\n\r\n")
                .await
                .unwrap();
            let r = read_response(&mut s).await;
            assert_eq!(r.status, 400, "{r:?}");
            w.assert_denied("does not name the URL's host", "builtin:malformed");
            // A fresh connection: the absolute URL names another server, Host the allowed one.
            let r = w.get("http://other.test/", "api.test").await;
            assert_eq!(r.status, 400, "{r:?}");
            // Kept-alive: a second request to an unlisted name on the same connection.
            let mut s = w.tcp().await;
            s.write_all(b"GET http://api.test/1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(read_response(&mut s).await.status, 200);
            s.write_all(b"GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(read_response(&mut s).await.status, 403);
            assert_eq!(
                other.load(Ordering::SeqCst),
                0,
                "the other server was reached"
            );
            assert_eq!(api.load(Ordering::SeqCst), 2);
        })
    });
}

#[test]
fn http2_stream_for_another_authority_is_refused() {
    in_netns(|| {
        rt().block_on(async {
            let api = http_server(&format!("{API}:80")).await;
            let other = http_server(&format!("{OTHER}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("other.test", vec![vec![OTHER]]);
            let s = w.tcp().await;
            let (mut send, conn) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .handshake::<_, http_body_util::Empty<bytes::Bytes>>(
                        hyper_util::rt::TokioIo::new(s),
                    )
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = |u: &str| {
                hyper::Request::builder()
                    .uri(u)
                    .body(http_body_util::Empty::new())
                    .unwrap()
            };
            let r = send.send_request(req("http://api.test/a")).await.unwrap();
            assert_eq!(r.status(), 200);
            let r = send.send_request(req("http://other.test/b")).await.unwrap();
            assert_eq!(r.status(), 403);
            let r = send.send_request(req("http://api.test/c")).await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(other.load(Ordering::SeqCst), 0);
            assert!(api.load(Ordering::SeqCst) >= 1);
            w.assert_denied("other.test", "");
        })
    });
}

const UPLOADS: &str = r#"
name = "t"
[network]
allow = ["http://api.test", "http://uploads.test"]
[[policies]]
path = "policy.rego"
rule = "data.agent.security.allow_upload"
actions = ["net.upload"]
[limits]
upload = "1KiB"
"#;

const POLICY: &str = r#"package agent.security

default allow_upload := false

allow_upload if {
	input.size < 10485760
	input.dest in ["uploads.test"]
}
"#;

#[test]
fn uploads_are_sized_limited_and_put_to_the_policy() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(UPLOADS, &[("policy.rego", POLICY)]).await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("uploads.test", vec![vec![API]]);
            let post = |host: &str, body: &str| {
                format!(
                    "POST http://{host}/up HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            // The policy allows uploads.test only.
            let r = w.raw(&post("uploads.test", "hello")).await;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("body=5"), "{}", r.body);
            let r = w.raw(&post("api.test", "hello")).await;
            assert_eq!(r.status, 403, "{r:?}");
            w.assert_denied("api.test", "policy:");
            // Over the manifest's limit, declared.
            let big = "x".repeat(2000);
            let r = w.raw(&post("uploads.test", &big)).await;
            assert_eq!(r.status, 413, "{r:?}");
            w.assert_denied("exceeds the limit", "");
            // Over the limit, chunked.
            let mut chunked = String::from(
                "POST http://uploads.test/up HTTP/1.1\r\nHost: uploads.test\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            for _ in 0..3 {
                chunked.push_str(&format!("{:x}\r\n{}\r\n", 600, "y".repeat(600)));
            }
            chunked.push_str("0\r\n\r\n");
            let r = w.raw(&chunked).await;
            assert_eq!(r.status, 413, "{r:?}");
            // Chunked, small: sized and allowed.
            let r = w
                .raw("POST http://uploads.test/up HTTP/1.1\r\nHost: uploads.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("body=5"), "{}", r.body);
            assert_eq!(hits.load(Ordering::SeqCst), 2, "only the two allowed uploads arrived");
            // Decided on what the session has sent there in all (request lines, headers and
            // bodies of what was let through), each record naming this request's body too.
            let ups = w.find("net.upload", "uploads.test");
            assert!(ups.iter().any(|u| u["detail"]["body"] == 5
                && u["size"].as_u64().unwrap() > 5
                && u["decision"]["result"] == "allow"));
        })
    });
}

#[test]
fn many_small_requests_add_up_to_an_upload() {
    // Exfiltration in pieces: each request small (data in the query string and a header),
    // together past the limit. What left is counted per destination for the session.
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"http://api.test\"]\n[limits]\nupload = \"4KiB\"\n",
                &[],
            )
            .await;
            w.stub.set("api.test", vec![vec![API]]);
            let piece = "a".repeat(500);
            let mut refused_at = None;
            for i in 0..20 {
                let r = w
                    .raw(&format!(
                        "GET http://api.test/q?d={piece} HTTP/1.1\r\nHost: api.test\r\nX-Data: {piece}\r\n\r\n"
                    ))
                    .await;
                if r.status != 200 {
                    assert_eq!(r.status, 413, "{r:?}");
                    refused_at = Some(i);
                    break;
                }
            }
            let n = refused_at.expect("twenty requests of 1 KiB each all went through a 4 KiB limit");
            assert!((3..=4).contains(&n), "refused at request {n}");
            assert_eq!(hits.load(Ordering::SeqCst), n, "the refused request did not arrive");
            w.assert_denied("exceeds the limit", "");
        })
    });
}

#[test]
fn malformed_requests_get_400_and_the_proxy_lives_on() {
    in_netns(|| {
        rt().block_on(async {
            http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            for bad in [
                "GET / HTTP/1.1\r\nHost: api.test\r\n\r\n",
                "GET http://api.test:99999/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
                "GET http://user@api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
                "GET http://a..b/ HTTP/1.1\r\nHost: a..b\r\n\r\n",
                "GET https://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
                "CONNECT api.test HTTP/1.1\r\nHost: api.test\r\n\r\n",
                "CONNECT [[api.test]]:443 HTTP/1.1\r\n\r\n",
                "POST http://api.test/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                "GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\nX: a\r\n folded\r\n\r\n",
                "\x16\x03\x01\x00\x05hello",
                "BREW http://api.test/ HTCPCP/1.0\r\n\r\n",
                "GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            ] {
                let r = w.raw(bad).await;
                assert!(
                    r.status == 400 || r.status == 0,
                    "{bad:?} got {r:?}"
                );
                let ok = w.get("http://api.test/", "api.test").await;
                assert_eq!(ok.status, 200, "the proxy did not live on after {bad:?}");
            }
            w.assert_denied("absolute URL", "builtin:malformed");
            // Bytes that are not text in a CONNECT head: refused, the proxy lives on.
            let mut s = w.tcp().await;
            s.write_all(b"CONNECT api.test:443 HTTP/1.1\r\nX: \xff\xfe\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(read_response(&mut s).await.status, 400);
            // Empty TLS records, then a stream: refused, not buffered without end.
            let (st, mut s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            // The proxy may refuse (and close) after the first empty record: later writes can
            // fail with a broken pipe, which is the point.
            for _ in 0..17 {
                let _ = s.write_all(&[0x16, 3, 1, 0, 0]).await;
            }
            let _ = s.write_all(&[0x41; 65536]).await;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf),
            )
            .await
            .expect("the tunnel was not closed");
            assert_eq!(w.get("http://api.test/", "api.test").await.status, 200);
        })
    });
}

/// Says yes to everything.
struct Yes;

impl ward_consent::Consent for Yes {
    fn show(&mut self, _: &str) {}
    fn ask(&mut self, _: &ward_consent::Question) -> ward_consent::Reply {
        ward_consent::Reply::Chose('y')
    }
    fn channel(&self) -> &'static str {
        "script"
    }
}

struct Scripted(char, std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl ward_consent::Consent for Scripted {
    fn show(&mut self, _: &str) {}
    fn ask(&mut self, q: &ward_consent::Question) -> ward_consent::Reply {
        self.1.fetch_add(1, Ordering::SeqCst);
        assert!(q.text.contains("http://ask.test:80"), "{}", q.text);
        std::thread::sleep(std::time::Duration::from_millis(100));
        match self.0 {
            't' => ward_consent::Reply::TimedOut,
            c => ward_consent::Reply::Chose(c),
        }
    }
    fn channel(&self) -> &'static str {
        "script"
    }
}

#[test]
fn asked_destinations_wait_for_the_person() {
    for (answer, status) in [('y', 200), ('n', 403), ('t', 403)] {
        in_netns(move || {
            rt().block_on(async move {
                let hits = http_server(&format!("{API}:80")).await;
                let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let a2 = asked.clone();
                let w = World::start_with(
                    "name = \"t\"\n[network]\nask = [\"http://ask.test\"]\n",
                    &[],
                    move |c| c.consent = Some(Box::new(Scripted(answer, a2))),
                )
                .await;
                w.stub.set("ask.test", vec![vec![API]]);
                // Three at once: one question, one answer for all.
                let (a, b, c) = tokio::join!(
                    w.get("http://ask.test/", "ask.test"),
                    w.get("http://ask.test/", "ask.test"),
                    w.get("http://ask.test/", "ask.test")
                );
                for r in [a, b, c] {
                    assert_eq!(r.status, status, "answer {answer}: {r:?}");
                }
                assert_eq!(asked.load(Ordering::SeqCst), 1, "asked more than once");
                assert_eq!(hits.load(Ordering::SeqCst) > 0, status == 200);
                if status != 200 {
                    assert!(!w.stub.asked("ask.test"), "resolved before the answer");
                    w.assert_denied("ask.test", "");
                }
            })
        });
    }
    // Nobody to ask: refused, saying so.
    in_netns(|| {
        rt().block_on(async {
            let w = World::start(
                "name = \"t\"\n[network]\nask = [\"http://ask.test\"]\n",
                &[],
            )
            .await;
            let r = w.get("http://ask.test/", "ask.test").await;
            assert_eq!(r.status, 403);
            assert!(r.body.contains("nobody to ask"), "{}", r.body);
        })
    });
}

#[test]
fn smuggled_second_request_is_decided_on_its_own() {
    in_netns(|| {
        rt().block_on(async {
            let api = http_server(&format!("{API}:80")).await;
            let other = http_server(&format!("{OTHER}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("other.test", vec![vec![OTHER]]);
            // Content-Length covers the whole tail; chunked ends the body early. Whichever
            // framing wins, the tail is never passed on unread: the proxy re-frames every body,
            // and a second request is decided like any other.
            let tail = "GET http://other.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n";
            let body = format!("0\r\n\r\n{tail}");
            let req = format!(
                "POST http://api.test/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
                body.len()
            );
            let mut s = w.tcp().await;
            s.write_all(req.as_bytes()).await.unwrap();
            let r = read_response(&mut s).await;
            assert!(r.status == 200 || r.status == 400, "{r:?}");
            let r2 = read_response(&mut s).await;
            assert!(r2.status == 0 || r2.status == 403, "{r2:?}");
            assert_eq!(other.load(Ordering::SeqCst), 0, "the smuggled request reached other.test");
            // Duplicate, disagreeing Content-Length: refused outright.
            let r = w
                .raw("POST http://api.test/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 60\r\n\r\nhello")
                .await;
            assert!(r.status == 400 || r.status == 0, "{r:?}");
            assert!(api.load(Ordering::SeqCst) <= 1);
        })
    });
}

const TUNNEL_UPLOADS: &str = r#"
name = "t"
[network]
allow = ["https://api.test", "https://uploads.test"]
[[policies]]
path = "policy.rego"
rule = "data.agent.security.allow_upload"
actions = ["net.upload"]
"#;

/// Send `hello` then `n` bytes through a CONNECT tunnel, reading the echo; how many came back.
async fn tunnel_send(w: &World, host: &str, n: usize) -> usize {
    let (st, mut s) = w.connect(&format!("{host}:443")).await;
    assert_eq!(st, 200);
    let hello = client_hello(host);
    let data = vec![b'z'; n];
    let mut back = 0usize;
    let mut buf = vec![0u8; 65536];
    if s.write_all(&hello).await.is_err() {
        return 0;
    }
    let want = hello.len() + n;
    let (mut r, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for c in data.chunks(8192) {
            if wr.write_all(c).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    while back < want {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut r, &mut buf),
        )
        .await
        {
            Ok(Ok(k)) if k > 0 => back += k,
            _ => break,
        }
    }
    writer.abort();
    back.saturating_sub(hello.len())
}

#[test]
fn tunnels_are_uploads_too_counted_per_destination_across_tunnels() {
    in_netns(|| {
        rt().block_on(async {
            echo_server(&format!("{API}:443")).await;
            let w = World::start(TUNNEL_UPLOADS, &[("policy.rego", POLICY)]).await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("uploads.test", vec![vec![API]]);
            // Under the free budget: passes, though the policy allows no uploads to api.test.
            let got = tunnel_send(&w, "api.test", 40_000).await;
            assert_eq!(got, 40_000, "{:#?}", w.records());
            // A second tunnel to the same place: the session's total crosses the budget, the
            // policy is asked and says no; the tunnel is closed part-way.
            let got = tunnel_send(&w, "api.test", 200_000).await;
            assert!(
                got < 200_000,
                "the second tunnel carried everything ({got})"
            );
            w.assert_denied("api.test", "policy:");
            // The policy allows uploads.test.
            let got = tunnel_send(&w, "uploads.test", 200_000).await;
            assert_eq!(got, 200_000, "{:#?}", w.records());
            let ups = w.find("net.upload", "https://api.test:443");
            assert!(
                !ups.is_empty(),
                "{:#?}",
                w.records()
                    .iter()
                    .filter(|r| r["decision"]["result"] == "deny")
                    .collect::<Vec<_>>()
            );
            assert!(
                ups.iter()
                    .any(|u| u["decision"]["result"] == "deny"
                        && u["size"].as_u64().unwrap() > 65536),
                "{ups:#?}"
            );
        })
    });
}

#[test]
fn a_name_resolving_to_this_machine_is_refused() {
    in_netns(|| {
        rt().block_on(async {
            let own = http_server(&format!("{HOST_PUBLIC}:80")).await;
            let w = World::start(ALLOW_API, &[]).await;
            w.stub.set("api.test", vec![vec![HOST_PUBLIC]]);
            let r = w.get("http://api.test/", "api.test").await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("this machine"), "{}", r.body);
            assert_eq!(own.load(Ordering::SeqCst), 0);
            w.assert_denied("this machine", "builtin:ssrf");
        })
    });
}

struct Slow(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl ward_consent::Consent for Slow {
    fn show(&mut self, _: &str) {}
    fn ask(&mut self, _: &ward_consent::Question) -> ward_consent::Reply {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        ward_consent::Reply::Chose('n')
    }
    fn channel(&self) -> &'static str {
        "script"
    }
}

#[test]
fn a_flood_of_questions_is_refused_not_queued() {
    in_netns(|| {
        rt().block_on(async {
            let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let a2 = asked.clone();
            let w = World::start_with(
                "name = \"t\"\n[network]\nunknown = \"ask\"\n",
                &[],
                move |c| c.consent = Some(Box::new(Slow(a2))),
            )
            .await;
            let mut tasks = Vec::new();
            for i in 0..40 {
                let addr = w.addr;
                tasks.push(tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let h = format!("q{i}.attacker.test");
                    s.write_all(
                        format!("GET http://{h}/ HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes(),
                    )
                    .await
                    .unwrap();
                    read_response(&mut s).await
                }));
            }
            let mut waiting = 0;
            for t in tasks {
                let r = t.await.unwrap();
                assert_eq!(r.status, 403);
                if r.body.contains("too many questions waiting") {
                    waiting += 1;
                }
            }
            assert!(waiting > 0, "every question was queued");
            assert!(asked.load(Ordering::SeqCst) < 40);
        })
    });
}

#[test]
fn spellings_wildcards_and_ports_of_allowed_names() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"http://*.example.test\"]\n",
                &[],
            )
            .await;
            w.stub.set("a.example.test", vec![vec![API]]);
            w.stub.set("example.test", vec![vec![API]]);
            w.stub.set("a.example.test.evil.test", vec![vec![API]]);
            for (url, host, status) in [
                ("http://A.Example.TEST./x", "a.example.test", 200),
                // hyper refuses `%` in a request's authority before Ward sees it.
                ("http://a.exa%6Dple.test/x", "a.example.test", 400),
                ("http://example.test/", "example.test", 403),
                ("http://a.example.test.evil.test/", "a.example.test.evil.test", 403),
                ("http://evilexample.test/", "evilexample.test", 403),
                ("http://a.example.test:007/", "a.example.test:7", 403),
                ("http://a.example.test:8080/", "a.example.test:8080", 403),
            ] {
                let r = w.get(url, host).await;
                assert_eq!(r.status, status, "{url}: {r:?}");
            }
            assert_eq!(hits.load(Ordering::SeqCst), 1);
            assert!(!w.stub.asked("a.example.test.evil.test"));
            // A streamed (chunked) body with no upload rules passes, and its bytes are counted.
            let r = w
                .raw("POST http://a.example.test/up HTTP/1.1\r\nHost: a.example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("body=8"), "{}", r.body);
            let reqs = w.find("net.request", "/up");
            assert_eq!(reqs[0]["detail"]["up"], 8, "{reqs:?}");
        })
    });
}

#[test]
fn socks_address_forms_and_commands() {
    in_netns(|| {
        rt().block_on(async {
            let lo = http_server("127.0.0.1:80").await;
            let w = World::start(ALLOW_API, &[]).await;
            let ask = |req: Vec<u8>| {
                let addr = w.addr;
                async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    s.write_all(&[5, 1, 0]).await.unwrap();
                    let mut m = [0u8; 2];
                    tokio::io::AsyncReadExt::read_exact(&mut s, &mut m)
                        .await
                        .unwrap();
                    s.write_all(&req).await.unwrap();
                    let mut rep = [0u8; 10];
                    tokio::io::AsyncReadExt::read_exact(&mut s, &mut rep)
                        .await
                        .unwrap();
                    rep[1]
                }
            };
            // IPv4 address form: loopback.
            assert_eq!(ask(vec![5, 1, 0, 1, 127, 0, 0, 1, 0, 80]).await, 2);
            // IPv6 form of an IPv4-mapped loopback.
            let mut v6 = vec![5, 1, 0, 4];
            v6.extend_from_slice(
                &"::ffff:127.0.0.1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            v6.extend_from_slice(&80u16.to_be_bytes());
            assert_eq!(ask(v6).await, 2);
            // BIND and UDP ASSOCIATE are not offered.
            assert_eq!(ask(vec![5, 2, 0, 1, 44, 1, 1, 1, 0, 80]).await, 7);
            assert_eq!(ask(vec![5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).await, 7);
            assert_eq!(lo.load(Ordering::SeqCst), 0);
            w.assert_denied("127.0.0.1", "");
        })
    });
}

#[test]
fn cloud_metadata_names_are_refused_by_their_address() {
    in_netns(|| {
        rt().block_on(async {
            let w = World::start_with("name = \"t\"\n[network]\nunknown = \"ask\"\n", &[], |c| {
                c.consent = Some(Box::new(Yes))
            })
            .await;
            w.stub
                .set("metadata.google.internal", vec![vec!["169.254.169.254"]]);
            w.stub.set("metadata.aws.test", vec![vec!["fd00:ec2::254"]]);
            for h in ["metadata.google.internal", "metadata.aws.test"] {
                let r = w.get(&format!("http://{h}/computeMetadata/v1/"), h).await;
                assert_eq!(r.status, 403, "{h}: {r:?}");
            }
            w.assert_denied("169.254.169.254 (link-local", "builtin:ssrf");
            w.assert_denied("fd00:ec2::254 (unique local", "builtin:ssrf");
        })
    });
}

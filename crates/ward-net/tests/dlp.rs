//! Data-loss prevention on plain requests: a credential in the target, a header or the body
//! (raw, compressed, base64- or percent-encoded, chunked, or deep in a large streamed
//! upload) is refused before it reaches the server, the refusal names the rule with the
//! secret masked, and the record carries the masked finding. A credential on its way to its
//! own issuer, and ordinary requests, pass.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::*;
use std::io::Write;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A made-up GitHub token whose checksum holds (the rules call it high confidence).
const PAT: &str = "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";

const ALLOW: &str = r#"
name = "t"
[network]
allow = ["http://api.test", "http://api.github.com", "http://*.files.test"]
"#;

fn post(host: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST http://{host}/up HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn send(w: &World, req: &[u8]) -> Resp {
    let mut s = w.tcp().await;
    s.write_all(req).await.unwrap();
    read_response(&mut s).await
}

use ward_scan::decode::base64_encode as b64;

/// The refusal names the rule, masks the secret, and a deny with the finding is on record.
fn refused(w: &World, r: &Resp, place: &str) {
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("rule github-pat"), "{}", r.body);
    assert!(r.body.contains(place), "{place}: {}", r.body);
    assert!(
        !r.body.contains(PAT),
        "the refusal shows the secret: {}",
        r.body
    );
    let recs: Vec<_> = w
        .records()
        .into_iter()
        .filter(|r| {
            r["kind"] == "net.upload"
                && r["decision"]["result"] == "deny"
                && r["detail"]["findings"][0]["place"] == place
        })
        .collect();
    assert_eq!(recs.len(), 1, "no deny record for {place}");
    assert_eq!(recs[0]["detail"]["findings"][0]["rule"], "github-pat");
    let all = w.records();
    assert!(
        !all.iter().any(|r| r.to_string().contains(PAT)),
        "a record holds the secret"
    );
}

#[test]
fn a_credential_leaving_in_any_part_of_a_request_is_refused_before_the_server_sees_it() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);

            // In the query string, plain and percent-encoded twice.
            let r = w.get(&format!("http://api.test/x?k={PAT}"), "api.test").await;
            refused(&w, &r, "target");
            let twice: String = PAT
                .bytes()
                .map(|b| format!("%25{b:02X}"))
                .collect();
            let r = w.get(&format!("http://api.test/y?k={twice}"), "api.test").await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("target (url, url)"), "{}", r.body);

            // In a header of its own.
            let r = send(&w, &post("api.test", &format!("X-Note: {PAT}\r\n"), b"")).await;
            refused(&w, &r, "header x-note");

            // In a JSON body, in base64 and as \u escapes.
            let body = format!("{{\"a\":1,\"k\":\"{PAT}\"}}");
            let r = send(&w, &post("api.test", "", body.as_bytes())).await;
            refused(&w, &r, "body");
            let body = format!("{{\"blob\":\"{}\"}}", b64(PAT.as_bytes()));
            let r = send(&w, &post("api.test", "", body.as_bytes())).await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("body (base64)"), "{}", r.body);
            let esc: String = PAT.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
            let r = send(&w, &post("api.test", "", format!("{{\"k\":\"{esc}\"}}").as_bytes())).await;
            assert_eq!(r.status, 403, "{r:?}");

            // Compressed.
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(format!("token={PAT}").as_bytes()).unwrap();
            let gz_pat = gz.finish().unwrap();
            let r = send(&w, &post("api.test", "Content-Encoding: gzip\r\n", &gz_pat)).await;
            refused(&w, &r, "body (gzip)");

            // Chunked (no length given).
            let mut chunked =
                b"POST http://api.test/up HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            let (a, b) = PAT.split_at(20);
            for piece in [a, b] {
                chunked.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            let r = send(&w, &chunked).await;
            assert_eq!(r.status, 403, "{r:?}");

            assert_eq!(hits.load(Ordering::SeqCst), 0, "the server saw a request");

            // A coding Ward cannot read, and a bomb: refused unread.
            let r = send(&w, &post("api.test", "Content-Encoding: zstd\r\n", b"xx")).await;
            assert_eq!(r.status, 415, "{r:?}");
            assert!(r.body.contains("cannot be inspected"), "{}", r.body);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&vec![b'a'; 80 << 20]).unwrap();
            let bomb = gz.finish().unwrap();
            let r = send(&w, &post("api.test", "Content-Encoding: gzip\r\n", &bomb)).await;
            assert_eq!(r.status, 415, "{r:?}");
            assert!(r.body.contains("decodes to more than"), "{}", r.body);
            // Two Content-Encoding headers: both are undone.
            let r = send(
                &w,
                &post("api.test", "Content-Encoding: identity\r\nContent-Encoding: gzip\r\n", &gz_pat),
            )
            .await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("body (gzip)"), "{}", r.body);
            // More encoded data than Ward decodes for one request: not let through unread
            // (asked about; nobody can answer here).
            let mut blobs = String::new();
            while blobs.len() < 2 << 20 {
                blobs.push_str(&b64(&[0xA5u8; 120]));
                blobs.push(' ');
            }
            let r = send(&w, &post("api.test", "", blobs.as_bytes())).await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("unread-encoding"), "{}", r.body);
            assert_eq!(hits.load(Ordering::SeqCst), 0, "the server saw a request");
            w.assert_denied("zstd", "findings");
        })
    });
}

#[test]
fn ordinary_requests_and_a_credential_to_its_issuer_pass() {
    in_netns(|| {
        rt().block_on(async {
            let _hits = http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("api.github.com", vec![vec![API]]);

            let body = br#"{"model":"m","messages":[{"role":"user","content":"list the files\nand say hello"}]}"#;
            let r = send(&w, &post("api.test", "Content-Type: application/json\r\n", body)).await;
            assert_eq!(r.status, 200, "{r:?}");
            // The token, where it belongs.
            let r = send(
                &w,
                &post("api.github.com", &format!("Authorization: token {PAT}\r\n"), b"{}"),
            )
            .await;
            assert_eq!(r.status, 200, "{r:?}");
            // In the body of a request to it (a gist, an issue), a token is a paste: refused.
            let gist = format!("{{\"files\":{{\"a.txt\":{{\"content\":\"{PAT}\"}}}}}}");
            let r = send(&w, &post("api.github.com", "", gist.as_bytes())).await;
            assert_eq!(r.status, 403, "{r:?}");
            // A bearer token of no known issuer in its header: through, and on the record.
            let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk4";
            let r = send(&w, &post("api.test", &format!("Authorization: Bearer {jwt}\r\n"), b"")).await;
            assert_eq!(r.status, 200, "{r:?}");
            let reqs = w.find("net.request", "header authorization");
            assert_eq!(reqs.len(), 1, "{reqs:?}");
            assert_eq!(reqs[0]["detail"]["findings"][0]["confidence"], "low");
            assert!(!reqs[0].to_string().contains("dBjftJeZ4CVPmB92K27uhbUJU1p1r"));
        })
    });
}

#[test]
fn deep_in_a_large_upload_a_credential_never_leaves() {
    in_netns(|| {
        rt().block_on(async {
            // A server that counts the body bytes it received.
            let l = bind(&format!("{API}:80"));
            let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
            let g = got.clone();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let g = g.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            g.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                    });
                }
            });
            let w = World::start(ALLOW, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            let leaked = |seen: &[u8], what: &[u8]| seen.windows(10).any(|w| w == &what[..10]);
            // Plain, 10 MiB in (past what is held), declared length.
            let mut body = vec![b'a'; 10 << 20];
            body.extend_from_slice(format!(" {PAT} ").as_bytes());
            body.extend_from_slice(&vec![b'b'; 1 << 20]);
            let r = send(&w, &post("api.test", "", &body)).await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("cut short"), "{}", r.body);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let seen = std::mem::take(&mut *got.lock().unwrap());
            assert!(
                seen.windows(4096).any(|w| w.iter().all(|&b| b == b'a')),
                "the upload started (it is streamed)"
            );
            assert!(!leaked(&seen, PAT.as_bytes()), "part of the secret reached the server");
            let r = w.find("net.upload", "\"streamed\":true");
            assert_eq!(r.len(), 1);
            assert_eq!(r[0]["decision"]["result"], "deny");

            // Base64-encoded, in the held first part of a large declared upload, and in the
            // streamed rest; and plain in the rest of a large chunked upload.
            let enc = b64(format!("token {PAT}").as_bytes());
            for (at, chunked) in [(1usize << 20, false), (9 << 20, false), (9 << 20, true)] {
                let mut body = vec![b'a'; 10 << 20];
                let secret = if chunked { PAT.as_bytes() } else { enc.as_bytes() };
                body[at..at + secret.len()].copy_from_slice(secret);
                body[at - 1] = b' ';
                body[at + secret.len()] = b' ';
                let req = if chunked {
                    let mut r = b"POST http://api.test/up HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                    for piece in body.chunks(100_000) {
                        r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        r.extend_from_slice(piece);
                        r.extend_from_slice(b"\r\n");
                    }
                    r.extend_from_slice(b"0\r\n\r\n");
                    r
                } else {
                    post("api.test", "", &body)
                };
                let r = send(&w, &req).await;
                assert_eq!(r.status, 403, "at {at}, chunked {chunked}: {r:?}");
                assert!(r.body.contains("rule github-pat"), "{}", r.body);
                if !chunked {
                    assert!(r.body.contains("(base64)"), "{}", r.body);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let seen = std::mem::take(&mut *got.lock().unwrap());
                assert!(!leaked(&seen, secret), "at {at}: part of the secret reached the server");
            }
        })
    });
}

#[test]
fn a_host_name_that_carries_data_is_not_looked_up() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW, &[]).await;
            let name = "mzxw6ytboi2dkmzrgiztemzsgq2dmnbvgiydqmzx.files.test";
            w.stub.set(name, vec![vec![API]]);
            w.stub.set("docs.files.test", vec![vec![API]]);
            let r = w.get(&format!("http://{name}/"), name).await;
            // Medium confidence: asked, and nobody can answer here.
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("dns-exfiltration"), "{}", r.body);
            assert!(!w.stub.asked(name), "the name was looked up");
            assert_eq!(hits.load(Ordering::SeqCst), 0);
            w.assert_denied("dns-exfiltration", "findings");
            let r = w.get("http://docs.files.test/", "docs.files.test").await;
            assert_eq!(r.status, 200, "{r:?}");
        })
    });
}

#[test]
fn the_manifest_says_what_a_finding_does() {
    in_netns(|| {
        rt().block_on(async {
            let _hits = http_server(&format!("{API}:80")).await;
            let m = format!("{ALLOW}findings = {{ high = \"record\" }}\n");
            let w = World::start(&m, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            let r = w
                .get(&format!("http://api.test/x?k={PAT}"), "api.test")
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            let reqs = w.find("net.request", "github-pat");
            assert_eq!(reqs.len(), 1);
            assert!(!reqs[0].to_string().contains(PAT));
        })
    });
}

#[test]
fn findings_all_allowed_is_no_scan_at_all() {
    in_netns(|| {
        rt().block_on(async {
            let _hits = http_server(&format!("{API}:80")).await;
            let m = format!(
                "{ALLOW}findings = {{ high = \"allow\", medium = \"allow\", low = \"allow\" }}\n"
            );
            let w = World::start(&m, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            let r = w
                .get(&format!("http://api.test/x?k={PAT}"), "api.test")
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(w.find("net.request", "github-pat").is_empty());
        })
    });
}

#[test]
fn huge_or_many_headers_get_a_clear_refusal_and_the_proxy_lives_on() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(ALLOW, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            // One header past the proxy's 64 KiB for a request head, and 500 small ones.
            let big = format!("X-Big: {}\r\n", "a".repeat(100 * 1024));
            let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
            for extra in [big, many] {
                let mut s = w.tcp().await;
                let req = format!("GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n{extra}\r\n");
                let _ = s.write_all(req.as_bytes()).await;
                let r = read_response(&mut s).await;
                assert!(r.status == 431 || r.status == 400, "{r:?}");
            }
            assert_eq!(hits.load(Ordering::SeqCst), 0);
            // Still serving.
            assert_eq!(w.get("http://api.test/ok", "api.test").await.status, 200);
        })
    });
}

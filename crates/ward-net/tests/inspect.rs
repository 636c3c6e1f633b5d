//! Inspected tunnels (TLS interception): the agent's TLS ends at the proxy with a certificate
//! from the session's authority, the real server is verified, and every request inside is
//! decided and recorded like a plain one. Each bypass attempt is refused, reaches no server
//! and is on record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use ward_net::intercept::Authority;

const ALLOW_API: &str = r#"
name = "t"
[network]
allow = ["https://api.test"]
unknown = "deny"
[limits]
upload = "64KiB"
"#;

/// A proxy inspecting tunnels, trusting `origin` (DER) as the real servers' authority.
async fn inspecting(manifest: &str, origin: Option<&[u8]>) -> (World, Arc<Authority>) {
    inspecting_with(manifest, origin, None, Vec::new()).await
}

/// [`inspecting`] only `only` (host, port), with `credentials`.
async fn inspecting_with(
    manifest: &str,
    origin: Option<&[u8]>,
    only: Option<Vec<(String, u16)>>,
    credentials: Vec<ward_net::credentials::Credential>,
) -> (World, Arc<Authority>) {
    let authority = Arc::new(Authority::new("test", &[b"http/1.1"]).unwrap());
    let a = authority.clone();
    let dir = tempfile::tempdir().unwrap();
    // The system's roots stand for an unrelated authority; the test's origin is trusted (as
    // a manifest's `ca_file` would be) or not.
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, Authority::new("unrelated", &[]).unwrap().ca_pem()).unwrap();
    let extra: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> =
        origin.map(|d| vec![d.to_vec().into()]).unwrap_or_default();
    let upstream = ward_net::intercept::upstream_config(&roots, &extra, &[b"http/1.1"]).unwrap();
    let w = World::start_with(manifest, &[], move |c| {
        c.intercept = Some(ward_net::Intercept {
            authority: a,
            upstream,
            only,
        });
        c.credentials = credentials;
    })
    .await;
    (w, authority)
}

#[test]
fn requests_inside_an_inspected_tunnel_are_decided_and_recorded_one_by_one() {
    in_netns(|| {
        rt().block_on(async {
            let (hits, origin) = https_server(&format!("{API}:443"), &["api.test"]).await;
            let (w, authority) = inspecting(ALLOW_API, Some(&origin)).await;
            w.stub.set("api.test", vec![vec![API]]);
            let ca = authority.ca_der().to_vec();

            // A request passes, seen by the proxy in the clear.
            let (st, s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            let (status, body) = tls_request(
                s,
                "api.test",
                &ca,
                ("GET", "/repos/acme/x?y=1", "api.test", vec![]),
            )
            .await
            .unwrap();
            assert_eq!(status, 200, "{body}");
            assert!(
                body.contains("host=api.test path=/repos/acme/x?y=1"),
                "{body}"
            );
            assert_eq!(hits.load(Ordering::SeqCst), 1);
            let r = w.find("net.request", "/repos/acme/x?y=1");
            assert_eq!(r.len(), 1, "{r:?}");
            assert_eq!(r[0]["detail"]["via"], "inspected", "{r:?}");
            assert_eq!(r[0]["detail"]["method"], "GET", "{r:?}");

            // More requests on the same connection: each decided again, and headers that name
            // another host to route by never reach the server; an upgrade (a WebSocket) is
            // refused for now; two uploads that pass alone count together.
            let (_, s) = w.connect("api.test:443").await;
            let r = tls_requests(
                s,
                "api.test",
                &ca,
                vec![
                    ("GET", "/one", "api.test", vec![], &[]),
                    (
                        "GET",
                        "/two",
                        "api.test",
                        vec![],
                        &[
                            ("x-forwarded-host", "other.test"),
                            ("forwarded", "host=other.test"),
                        ],
                    ),
                    (
                        "GET",
                        "/ws",
                        "api.test",
                        vec![],
                        &[("connection", "upgrade"), ("upgrade", "websocket")],
                    ),
                ],
            )
            .await
            .unwrap();
            assert_eq!(r[0].0, 200, "{r:?}");
            assert!(
                r[1].1.contains("path=/two") && r[1].1.ends_with("xfh="),
                "{r:?}"
            );
            assert_eq!(r[2].0, 400, "{r:?}");
            assert!(r[2].1.contains("protocol upgrades"), "{r:?}");
            assert_eq!(hits.load(Ordering::SeqCst), 3);
            assert_eq!(w.find("net.request", "/one").len(), 1);
            assert_eq!(w.find("net.request", "/two").len(), 1);
            let (_, s) = w.connect("api.test:443").await;
            let r = tls_requests(
                s,
                "api.test",
                &ca,
                vec![
                    ("POST", "/a", "api.test", vec![b'x'; 40 * 1024], &[]),
                    ("POST", "/b", "api.test", vec![b'x'; 40 * 1024], &[]),
                ],
            )
            .await
            .unwrap();
            assert_eq!((r[0].0, r[1].0), (200, 413), "{r:?}");
            assert_eq!(hits.load(Ordering::SeqCst), 4);

            // Domain fronting inside TLS: the Host names another server.
            let (_, s) = w.connect("api.test:443").await;
            let (status, body) =
                tls_request(s, "api.test", &ca, ("GET", "/", "other.test", vec![]))
                    .await
                    .unwrap();
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("does not name the URL's host"), "{body}");
            assert_eq!(hits.load(Ordering::SeqCst), 4, "the origin saw it");
            assert!(!w
                .find("net.connect", "does not name the URL's host")
                .is_empty());

            // A request in absolute form for another host.
            let (_, s) = w.connect("api.test:443").await;
            let (status, body) = tls_request(
                s,
                "api.test",
                &ca,
                ("GET", "https://other.test/", "api.test", vec![]),
            )
            .await
            .unwrap();
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("inside the tunnel to api.test:443"), "{body}");
            assert_eq!(hits.load(Ordering::SeqCst), 4);

            // An upload past the limit, inside the tunnel: refused before it leaves.
            let (_, s) = w.connect("api.test:443").await;
            let (status, body) = tls_request(
                s,
                "api.test",
                &ca,
                ("POST", "/upload", "api.test", vec![b'x'; 100 * 1024]),
            )
            .await
            .unwrap();
            assert_eq!(status, 413, "{body}");
            assert_eq!(
                hits.load(Ordering::SeqCst),
                4,
                "the upload reached the origin"
            );
            let up = w.find("net.upload", "/upload");
            assert_eq!(up[0]["decision"]["result"], "deny", "{up:?}");

            // A client that trusts only the real server's certificate does not accept Ward's
            // (it is not fooled into talking to the origin either).
            let (_, s) = w.connect("api.test:443").await;
            let e = tls_request(s, "api.test", &origin, ("GET", "/", "api.test", vec![]))
                .await
                .unwrap_err();
            assert!(e.contains("handshake"), "{e}");
            assert_eq!(hits.load(Ordering::SeqCst), 4);
            // The proxy learns of it from the client's alert, a moment later.
            let mut seen = false;
            for _ in 0..100 {
                seen = !w
                    .find("net.failed", "the client's TLS with Ward failed")
                    .is_empty();
                if seen {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(seen, "{:?}", w.records());
        })
    });
}

#[test]
fn a_server_whose_certificate_is_not_trusted_is_never_spoken_to() {
    in_netns(|| {
        rt().block_on(async {
            let (hits, _origin) = https_server(&format!("{API}:443"), &["api.test"]).await;
            // The proxy's roots do not include the origin's certificate.
            let (w, authority) = inspecting(ALLOW_API, None).await;
            w.stub.set("api.test", vec![vec![API]]);
            let (_, s) = w.connect("api.test:443").await;
            let (status, body) = tls_request(
                s,
                "api.test",
                authority.ca_der(),
                ("GET", "/secret?k=1", "api.test", vec![]),
            )
            .await
            .unwrap();
            assert_eq!(status, 502, "{body}");
            assert!(body.contains("failed"), "{body}");
            assert_eq!(
                hits.load(Ordering::SeqCst),
                0,
                "a request reached the origin"
            );
            let f = w.find("net.failed", "TLS with api.test:443");
            assert!(!f.is_empty(), "{:?}", w.records());
        })
    });
}

#[test]
fn a_credential_inside_inspected_tls_is_refused_and_recorded_masked() {
    const PAT: &str = "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";
    in_netns(|| {
        rt().block_on(async {
            let (hits, origin) = https_server(&format!("{API}:443"), &["api.test"]).await;
            let (w, authority) = inspecting(ALLOW_API, Some(&origin)).await;
            w.stub.set("api.test", vec![vec![API]]);
            let ca = authority.ca_der().to_vec();
            let (_, s) = w.connect("api.test:443").await;
            let body = format!("{{\"note\":\"deploy with {PAT}\"}}").into_bytes();
            let r = tls_requests(
                s,
                "api.test",
                &ca,
                vec![
                    ("POST", "/v1/messages", "api.test", body, &[]),
                    ("GET", "/fine", "api.test", vec![], &[]),
                ],
            )
            .await
            .unwrap();
            assert_eq!(r[0].0, 403, "{r:?}");
            assert!(
                r[0].1.contains("rule github-pat") && !r[0].1.contains(PAT),
                "{r:?}"
            );
            // The connection carries on; the next request is its own.
            assert_eq!(r[1].0, 200, "{r:?}");
            assert_eq!(
                hits.load(Ordering::SeqCst),
                1,
                "only the clean request arrived"
            );
            let d = w.find("net.upload", "github-pat");
            assert_eq!(d.len(), 1, "{d:?}");
            assert_eq!(d[0]["decision"]["result"], "deny");
            assert_eq!(d[0]["detail"]["via"], "inspected");
            assert!(!w.records().iter().any(|r| r.to_string().contains(PAT)));
        })
    });
}

#[test]
fn a_credential_is_put_in_only_toward_its_destination_and_only_there_is_tls_opened() {
    const SECRET: &str = "sk-ant-api03-Zq8Xc2Vb7Nm4Lk1Jh6Gf3Ds9Ap0Oi5UyTt";
    in_netns(|| {
        rt().block_on(async {
            let (hits, origin) = https_server(&format!("{API}:443"), &["api.test"]).await;
            let (_, other_cert) = https_server(&format!("{OTHER}:443"), &["other.test"]).await;
            let spec = ward_core::CredentialSpec {
                name: "api".into(),
                source: ward_core::SecretSource::Env("X".into()),
                env: Some("K".into()),
                to: ward_core::Destination::parse("https://api.test").unwrap(),
                path: "/v1/".into(),
                placement: ward_core::Placement::Header("x-api-key".into()),
                optional: false,
                unless_env: vec![],
                origin: ward_core::Origin::Default,
            };
            let cred = ward_net::credentials::Credential::new(spec, SECRET.into()).unwrap();
            let ph = cred.placeholder.clone();
            let m =
                "name = \"t\"\n[network]\nallow = [\"https://api.test\", \"https://other.test\"]\n";
            let (w, authority) = inspecting_with(
                m,
                Some(&origin),
                Some(vec![("api.test".into(), 443)]),
                vec![cred],
            )
            .await;
            w.stub.set("api.test", vec![vec![API]]);
            w.stub.set("other.test", vec![vec![OTHER]]);
            let ca = authority.ca_der().to_vec();
            let (_, s) = w.connect("api.test:443").await;
            let r = tls_requests(
                s,
                "api.test",
                &ca,
                vec![
                    (
                        "POST",
                        "/v1/messages",
                        "api.test",
                        b"{}".to_vec(),
                        &[("x-api-key", ph.as_str())],
                    ),
                    (
                        "GET",
                        "/v2/other",
                        "api.test",
                        vec![],
                        &[("x-api-key", ph.as_str())],
                    ),
                    (
                        "POST",
                        "/v1/messages",
                        "api.test",
                        ph.clone().into_bytes(),
                        &[],
                    ),
                ],
            )
            .await
            .unwrap();
            assert_eq!(r[0].0, 200, "{r:?}");
            assert!(r[0].1.contains(&format!("key={SECRET}")), "{r:?}");
            assert_eq!((r[1].0, r[2].0), (403, 403), "{r:?}");
            assert!(
                r[1].1.contains("credential `api`") && !r[1].1.contains(SECRET),
                "{r:?}"
            );
            assert_eq!(hits.load(Ordering::SeqCst), 1, "a refused request arrived");
            // Another destination is not opened: its own certificate reaches the client.
            let (st, s) = w.connect("other.test:443").await;
            assert_eq!(st, 200);
            let (status, _) = tls_request(
                s,
                "other.test",
                &other_cert,
                ("GET", "/", "other.test", vec![]),
            )
            .await
            .unwrap();
            assert_eq!(status, 200);
            let recs = w.records();
            assert!(
                !recs.iter().any(|r| r.to_string().contains(SECRET)),
                "a record holds the secret"
            );
            assert!(recs
                .iter()
                .any(|r| r["kind"] == "net.request" && r["detail"]["credentials"][0] == "api"));
            assert_eq!(
                recs.iter()
                    .filter(|r| r["decision"]["by"]
                        .as_str()
                        .is_some_and(|b| b.contains("credentials")))
                    .count(),
                2,
                "{recs:?}"
            );
        })
    });
}

#[test]
fn path_rules_inside_tls_and_a_tunnel_that_cannot_show_its_paths_is_refused() {
    const M: &str = "name = \"t\"\n[network]\nallow = [\"https://api.test/repos/acme/*\"]\n";
    in_netns(|| {
        rt().block_on(async {
            let (hits, origin) = https_server(&format!("{API}:443"), &["api.test"]).await;
            let (w, authority) = inspecting_with(
                M,
                Some(&origin),
                Some(vec![("api.test".into(), 443)]),
                Vec::new(),
            )
            .await;
            w.stub.set("api.test", vec![vec![API]]);
            let (_, s) = w.connect("api.test:443").await;
            let r = tls_requests(
                s,
                "api.test",
                authority.ca_der(),
                vec![
                    ("GET", "/repos/acme/tool/issues", "api.test", vec![], &[]),
                    ("GET", "/repos/other/tool", "api.test", vec![], &[]),
                    ("GET", "/repos/acme/../other/tool", "api.test", vec![], &[]),
                ],
            )
            .await
            .unwrap();
            assert_eq!((r[0].0, r[1].0, r[2].0), (200, 403, 403), "{r:?}");
            assert_eq!(hits.load(Ordering::SeqCst), 1);
            w.assert_denied("/repos/other/tool", "manifest:");
        })
    });
    // Without TLS opened the paths cannot be seen: the tunnel is refused, not passed whole.
    in_netns(|| {
        rt().block_on(async {
            let (hits, origin) = https_server(&format!("{API}:443"), &["api.test"]).await;
            let w = World::start(M, &[]).await;
            w.stub.set("api.test", vec![vec![API]]);
            let (st, s) = w.connect("api.test:443").await;
            assert_eq!(st, 200);
            let r = tls_request(
                s,
                "api.test",
                &origin,
                ("GET", "/repos/acme/x", "api.test", vec![]),
            )
            .await;
            assert!(r.is_err(), "{r:?}");
            assert_eq!(hits.load(Ordering::SeqCst), 0);
            w.assert_denied("api.test", "paths");
        })
    });
}

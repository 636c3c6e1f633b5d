//! Path rules and git-aware egress on plain HTTP: each request to a destination some entries
//! name paths of is decided by its path (spellings a server reads as another path refused),
//! and a `git push` over smart HTTP reaches only the repositories `git_push` names while
//! fetches pass. Every refusal reaches no server and is on record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;
use common::*;
use std::sync::atomic::Ordering;

#[test]
fn requests_are_decided_by_their_path() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"http://api.test/v1/*\"]\n",
                &[],
            )
            .await;
            w.stub.set("api.test", vec![vec![API]]);
            let r = w.get("http://api.test/v1/models", "api.test").await;
            assert_eq!(r.status, 200, "{r:?}");
            for path in [
                "/v2/models",
                "/",
                "/v1/../v2/models",
                "/%76%31/models",
                "/v1//x",
            ] {
                let r = w.get(&format!("http://api.test{path}"), "api.test").await;
                assert_eq!(r.status, 403, "{path}: {r:?}");
            }
            assert_eq!(hits.load(Ordering::SeqCst), 1, "a refused request arrived");
            w.assert_denied("/v2/models", "manifest:");
            let recs = w.find("net.connect", "/v2/models");
            assert!(
                recs[0]["decision"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("/v1/*")),
                "{recs:?}"
            );
        })
    });
}

#[test]
fn git_push_reaches_only_the_named_repositories() {
    in_netns(|| {
        rt().block_on(async {
            let hits = http_server(&format!("{API}:80")).await;
            let w = World::start(
                "name = \"t\"\n[network]\nallow = [\"http://git.test\"]\n\
                 git_push = [\"http://git.test/acme/tool.git\"]\n",
                &[],
            )
            .await;
            w.stub.set("git.test", vec![vec![API]]);
            let post = |path: &str| {
                format!(
                    "POST http://git.test{path} HTTP/1.1\r\nHost: git.test\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: 4\r\n\r\n0000"
                )
            };
            // The named repository: its push (discovery, then the pack) passes.
            let r = w
                .get("http://git.test/acme/tool.git/info/refs?service=git-receive-pack", "git.test")
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(w.raw(&post("/acme/tool.git/git-receive-pack")).await.status, 200);
            assert_eq!(w.raw(&post("/acme/tool/git-receive-pack")).await.status, 200);
            // Another repository: refused, naming the rule; a fetch from it passes.
            let r = w
                .get("http://git.test/acme/other.git/info/refs?service=git-receive-pack", "git.test")
                .await;
            assert_eq!(r.status, 403, "{r:?}");
            assert!(r.body.contains("git_push allows pushes only to"), "{}", r.body);
            assert!(r.body.contains("acme/tool"), "{}", r.body);
            assert_eq!(w.raw(&post("/acme/other.git/git-receive-pack")).await.status, 403);
            assert_eq!(w.raw(&post("/acme/tool.git/../other.git/git-receive-pack")).await.status, 403);
            assert_eq!(w.raw(&post("/acme/other.git/git-receive%2Dpack")).await.status, 403);
            let r = w
                .get("http://git.test/acme/other.git/info/refs?service=git-upload-pack", "git.test")
                .await;
            assert_eq!(r.status, 200, "a fetch was refused: {r:?}");
            assert_eq!(hits.load(Ordering::SeqCst), 4, "a refused push arrived");
            let d = w.find("net.upload", "\"git\":\"push\"");
            assert_eq!(d.len(), 4, "{d:?}");
            assert!(d.iter().all(|r| r["decision"]["result"] == "deny"));
        })
    });
}

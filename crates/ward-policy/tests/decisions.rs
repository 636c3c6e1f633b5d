//! Decision precedence through the whole decision point: manifest rules, grants, network,
//! limits and Rego together.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::fs;
use std::path::Path;
use ward_core::{Action, ActionKind, Effect, LoadOptions, Manifest};
use ward_policy::testing::{run_tests, Outcome};
use ward_policy::Pdp;

fn setup() -> (tempfile::TempDir, Pdp) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs::create_dir_all(root.join("proj/.git/hooks")).unwrap();
    fs::create_dir_all(root.join("ro")).unwrap();
    fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy.rego"),
        root.join("policy.rego"),
    )
    .unwrap();
    let text = format!(
        r#"name = "t"
[[files]]
path = "{r}/proj"
deny = ["build/secret"]
[[files]]
path = "{r}/ro"
access = "read"
[network]
allow = ["https://api.acme.com", "https://uploads.acme.com", "https://*.cdn.acme.com"]
ask = ["https://github.com"]
deny = ["https://bad.cdn.acme.com"]
[[rules]]
action = "file.write"
effect = "ask"
resource = "{r}/proj/*.lock"
[[rules]]
action = ["file.read", "file.write"]
effect = "deny"
resource = "{r}/proj/private/**"
[[rules]]
action = "exec"
effect = "allow"
resource = "/usr/bin/git"
[[rules]]
action = "exec"
effect = "ask"
resource = "/usr/bin/*"
[[rules]]
action = "device.*"
effect = "deny"
[[rules]]
action = "net.connect"
effect = "allow"
resource = "*.allowed-by-rule.com"
[[policies]]
path = "policy.rego"
rule = "data.agent.security.allow_upload"
actions = ["net.upload"]
[limits]
upload = "8MiB"
"#,
        r = root.display()
    );
    fs::write(root.join("ward.toml"), text).unwrap();
    let opts = LoadOptions {
        managed: vec![],
        home: Some(root.join("home")),
        ..LoadOptions::default()
    };
    let m = Manifest::load(&root.join("ward.toml"), &opts).unwrap();
    (dir, Pdp::new(m).unwrap())
}

fn file(kind: ActionKind, p: &Path) -> Action {
    Action::new(kind, p.display().to_string())
}

#[test]
fn file_decisions() {
    let (dir, mut pdp) = setup();
    let r = dir.path().canonicalize().unwrap();
    let cases = [
        (
            ActionKind::FileRead,
            r.join("proj/src/main.rs"),
            Effect::Allow,
        ),
        (
            ActionKind::FileWrite,
            r.join("proj/src/main.rs"),
            Effect::Allow,
        ),
        (
            ActionKind::FileDelete,
            r.join("proj/src/main.rs"),
            Effect::Allow,
        ),
        (
            ActionKind::FileWrite,
            r.join("proj/Cargo.lock"),
            Effect::Ask,
        ),
        (
            ActionKind::FileRead,
            r.join("proj/Cargo.lock"),
            Effect::Allow,
        ),
        (
            ActionKind::FileRead,
            r.join("proj/private/x/y"),
            Effect::Deny,
        ),
        (
            ActionKind::FileWrite,
            r.join("proj/.git/hooks/pre-commit"),
            Effect::Deny,
        ),
        (ActionKind::FileRead, r.join("proj/sub/.env"), Effect::Deny),
        (
            ActionKind::FileRead,
            r.join("proj/tls/server.pem"),
            Effect::Deny,
        ),
        (
            ActionKind::FileRead,
            r.join("proj/build/secret/k"),
            Effect::Deny,
        ),
        (ActionKind::FileRead, r.join("ro/notes.txt"), Effect::Allow),
        (ActionKind::FileWrite, r.join("ro/notes.txt"), Effect::Deny),
        (ActionKind::FileDelete, r.join("ro/notes.txt"), Effect::Deny),
        (ActionKind::FileRead, r.join("elsewhere"), Effect::Deny),
        (ActionKind::FileRead, r.join("proj/../ro2/x"), Effect::Deny),
        (
            ActionKind::FileRead,
            r.join("proj/../../etc/passwd"),
            Effect::Deny,
        ),
        (ActionKind::FileRead, "/etc/shadow".into(), Effect::Deny),
    ];
    for (kind, path, want) in cases {
        let d = pdp.decide(&file(kind.clone(), &path));
        assert_eq!(d.effect, want, "{kind} {}: {d:?}", path.display());
        assert!(!d.by.to_string().is_empty() && !d.reason.is_empty());
    }
    let d = pdp.decide(&Action::new(ActionKind::FileRead, "relative/path"));
    assert_eq!(d.effect, Effect::Deny);
    let d = pdp.decide(&file(ActionKind::FileRead, &r.join("nowhere")));
    assert_eq!(
        (d.effect, d.by.to_string().as_str()),
        (Effect::Deny, "default")
    );
}

#[test]
fn exec_and_device_rules() {
    let (_dir, mut pdp) = setup();
    // deny > ask > allow: git matches both the allow and the broader ask; ask wins.
    let git = pdp.decide(&Action::new(ActionKind::Exec, "/usr/bin/git"));
    assert_eq!(git.effect, Effect::Ask, "{git:?}");
    // A program no rule names runs (`[exec] unknown` is allow unless the manifest says).
    let other = pdp.decide(&Action::new(ActionKind::Exec, "/opt/tool"));
    assert_eq!(
        (other.effect, other.by.to_string().as_str()),
        (Effect::Allow, "manifest:default")
    );
    // Rules see every name the program was reached by, and a bare name is the file name.
    let via_link = Action {
        names: vec!["/usr/bin/git".into()],
        ..Action::new(ActionKind::Exec, "/opt/git-2/bin/git")
    };
    assert_eq!(pdp.decide(&via_link).effect, Effect::Ask, "{via_link:?}");
    assert_eq!(
        pdp.decide(&Action::new(
            ActionKind::Device("camera".into()),
            "/dev/video0"
        ))
        .effect,
        Effect::Deny
    );
    assert_eq!(
        pdp.decide(&Action::new(ActionKind::ClipboardRead, ""))
            .effect,
        Effect::Deny
    );
    assert_eq!(
        pdp.decide(&Action::new(ActionKind::ScreenCapture, ""))
            .effect,
        Effect::Deny
    );
}

#[test]
fn network_decisions() {
    let (_dir, mut pdp) = setup();
    let connect =
        |pdp: &mut Pdp, url: &str| pdp.decide(&Action::new(ActionKind::NetConnect, url)).effect;
    assert_eq!(
        connect(&mut pdp, "https://api.acme.com/v1/x"),
        Effect::Allow
    );
    assert_eq!(
        connect(&mut pdp, "https://API.acme.com:443/"),
        Effect::Allow
    );
    assert_eq!(
        connect(&mut pdp, "http://api.acme.com/"),
        Effect::Deny,
        "scheme/port differ"
    );
    assert_eq!(
        connect(&mut pdp, "https://api.acme.com:8443/"),
        Effect::Deny
    );
    assert_eq!(
        connect(&mut pdp, "https://img.cdn.acme.com/a.png"),
        Effect::Allow
    );
    assert_eq!(
        connect(&mut pdp, "https://bad.cdn.acme.com/"),
        Effect::Deny,
        "deny beats wildcard allow"
    );
    assert_eq!(connect(&mut pdp, "https://github.com/"), Effect::Ask);
    assert_eq!(connect(&mut pdp, "https://evil.com/"), Effect::Deny);
    assert_eq!(
        connect(&mut pdp, "https://x.allowed-by-rule.com/"),
        Effect::Allow
    );
    assert_eq!(connect(&mut pdp, "not a url"), Effect::Deny);
}

#[test]
fn uploads_go_through_limits_and_the_seed_policy() {
    let (_dir, mut pdp) = setup();
    let up = |pdp: &mut Pdp, host: &str, size: u64| pdp.decide(&Action::upload(host, size));
    assert_eq!(
        up(&mut pdp, "uploads.acme.com", 5 << 20).effect,
        Effect::Allow
    );
    let big = up(&mut pdp, "uploads.acme.com", 9 << 20);
    assert_eq!(big.effect, Effect::Deny, "over the manifest's 8 MiB limit");
    assert!(big.reason.contains("exceeds the limit"), "{big:?}");
    let api = up(&mut pdp, "api.acme.com", 1 << 20);
    assert_eq!(
        api.effect,
        Effect::Deny,
        "allowed host, but the policy only allows its two"
    );
    assert_eq!(api.by.source, ward_core::Source::Policy, "{api:?}");
    assert_eq!(up(&mut pdp, "evil.example.com", 1).effect, Effect::Deny);
}

#[test]
fn policy_test_runner_reports_like_opa() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/policy-tests");
    let report = run_tests(Path::new(dir), None).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.results.len(), 4);
    let text = report.to_string();
    assert!(
        text.contains("data.agent.security_test.test_large_upload_denied: PASS ("),
        "{text}"
    );
    assert!(text.trim_end().ends_with("PASS: 4/4"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("t.rego"),
        "package t\n\ntest_ok if { 1 == 1 }\n\ntest_bad if { 1 == 2 }\n\ntest_err if { 1 / 0 }\n",
    )
    .unwrap();
    let report = run_tests(tmp.path(), None).unwrap();
    assert!(!report.passed());
    assert_eq!(report.count(Outcome::Pass), 1);
    assert_eq!(
        report.count(Outcome::Pass) + report.count(Outcome::Fail) + report.count(Outcome::Error),
        3
    );
    assert!(
        report.to_string().contains("data.t.test_bad: FAIL"),
        "{report}"
    );
    let only = run_tests(tmp.path(), Some("test_ok")).unwrap();
    assert!(only.passed());
}

/// Bypasses an independent review found, each now denied.
#[test]
fn rules_judge_the_normalized_path() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().canonicalize().unwrap();
    fs::create_dir_all(r.join("proj/secrets")).unwrap();
    let text = format!(
        "[[files]]\npath = \"{p}\"\n[[rules]]\naction = \"file.read\"\neffect = \"allow\"\nresource = \"/usr/share/**\"\n\
         [[rules]]\naction = \"file.read\"\neffect = \"deny\"\nresource = \"{p}/secrets/**\"\n",
        p = r.join("proj").display()
    );
    fs::write(r.join("w.toml"), text).unwrap();
    let opts = LoadOptions {
        managed: vec![],
        ..LoadOptions::default()
    };
    let mut pdp = Pdp::new(Manifest::load(&r.join("w.toml"), &opts).unwrap()).unwrap();
    let read = |pdp: &mut Pdp, p: String| pdp.decide(&Action::new(ActionKind::FileRead, p)).effect;
    assert_eq!(read(&mut pdp, "/usr/share/doc/x".into()), Effect::Allow);
    assert_eq!(
        read(&mut pdp, "/usr/share/../../root/.ssh/id_rsa".into()),
        Effect::Deny
    );
    assert_eq!(
        read(&mut pdp, format!("{}/proj/x/../secrets/a", r.display())),
        Effect::Deny
    );
    assert_eq!(
        read(&mut pdp, format!("{}/proj/./secrets//a", r.display())),
        Effect::Deny
    );
    assert_eq!(
        read(&mut pdp, format!("{}/proj/x/../ok", r.display())),
        Effect::Allow
    );
}

#[test]
fn ssrf_style_url_tricks_are_denied() {
    let (_dir, mut pdp) = setup();
    let connect =
        |pdp: &mut Pdp, url: &str| pdp.decide(&Action::new(ActionKind::NetConnect, url)).effect;
    assert_eq!(
        connect(&mut pdp, "https://evil.com\\@api.acme.com/"),
        Effect::Deny,
        "backslash"
    );
    assert_eq!(
        connect(&mut pdp, "https://api.acme.com@evil.com/"),
        Effect::Deny,
        "userinfo"
    );
    assert_eq!(
        connect(&mut pdp, "https://api.acme.com./"),
        Effect::Allow,
        "FQDN dot"
    );
    assert_eq!(
        connect(&mut pdp, "https://bad.cdn.acme.com./"),
        Effect::Deny,
        "FQDN dot on a deny"
    );
    let mut a = Action::new(ActionKind::NetConnect, "https://evil.com/");
    a.dest = Some("api.acme.com".into());
    let d = pdp.decide(&a);
    assert_eq!(d.effect, Effect::Deny, "dest and URL disagree: {d:?}");
    let mut a = Action::new(ActionKind::NetConnect, "http://api.acme.com:8080/");
    a.dest = Some("api.acme.com".into());
    assert_eq!(
        pdp.decide(&a).effect,
        Effect::Deny,
        "the URL's scheme and port count"
    );
}

#[test]
fn an_upload_of_unknown_size_is_denied_under_a_limit() {
    let (_dir, mut pdp) = setup();
    let mut a = Action::upload("uploads.acme.com", 1);
    a.size = None;
    let d = pdp.decide(&a);
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.reason.contains("unknown size"), "{d:?}");
}

#[test]
fn git_hooks_are_denied_at_any_depth_and_in_a_granted_folder() {
    let (dir, mut pdp) = setup();
    let r = dir.path().canonicalize().unwrap();
    let w = |pdp: &mut Pdp, p: &Path| pdp.decide(&file(ActionKind::FileWrite, p)).effect;
    assert_eq!(
        w(
            &mut pdp,
            &r.join("proj/vendor/lib/.git/hooks/post-checkout")
        ),
        Effect::Deny
    );
    // A grant of the hooks folder itself does not escape the deny.
    fs::create_dir_all(r.join("repo/.git/hooks")).unwrap();
    fs::write(
        r.join("g.toml"),
        format!(
            "[[files]]\npath = \"{}\"\n",
            r.join("repo/.git/hooks").display()
        ),
    )
    .unwrap();
    let opts = LoadOptions {
        managed: vec![],
        ..LoadOptions::default()
    };
    let mut pdp2 = Pdp::new(Manifest::load(&r.join("g.toml"), &opts).unwrap()).unwrap();
    assert_eq!(
        w(&mut pdp2, &r.join("repo/.git/hooks/pre-commit")),
        Effect::Deny
    );
}

#[test]
fn the_managed_file_bounds_user_rules_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().canonicalize().unwrap();
    fs::create_dir_all(r.join("proj")).unwrap();
    fs::create_dir_all(r.join("other")).unwrap();
    fs::write(
        r.join("managed.toml"),
        format!(
            "[[files]]\npath = \"{}\"\naccess = \"read\"\n[network]\nallow = [\"https://*.acme.com\"]\nask = [\"https://github.com\"]\n",
            r.join("proj").display()
        ),
    )
    .unwrap();
    fs::write(
        r.join("p.rego"),
        "package p\nimport rego.v1\nallow := true\n",
    )
    .unwrap();
    fs::write(
        r.join("w.toml"),
        format!(
            "[[files]]\npath = \"{}\"\n[[rules]]\naction = [\"file.read\", \"file.write\"]\neffect = \"allow\"\nresource = \"/etc/**\"\n\
             [[rules]]\naction = \"net.connect\"\neffect = \"allow\"\n\
             [network]\nallow = [\"https://github.com\"]\n\
             [[policies]]\npath = \"p.rego\"\nrule = \"data.p.allow\"\nactions = [\"net.upload\", \"file.read\"]\n",
            r.join("proj").display()
        ),
    )
    .unwrap();
    let opts = LoadOptions {
        managed: vec![r.join("managed.toml")],
        ..LoadOptions::default()
    };
    let mut pdp = Pdp::new(Manifest::load(&r.join("w.toml"), &opts).unwrap()).unwrap();
    let d = |pdp: &mut Pdp, a: Action| pdp.decide(&a);
    assert_eq!(
        d(&mut pdp, file(ActionKind::FileRead, &r.join("proj/a"))).effect,
        Effect::Allow
    );
    assert_eq!(
        d(&mut pdp, file(ActionKind::FileWrite, &r.join("proj/a"))).effect,
        Effect::Deny,
        "managed read-only"
    );
    let etc = d(&mut pdp, Action::new(ActionKind::FileRead, "/etc/passwd"));
    assert_eq!(
        etc.effect,
        Effect::Deny,
        "a user allow rule cannot reach outside the managed folders: {etc:?}"
    );
    assert_eq!(
        d(&mut pdp, file(ActionKind::FileRead, &r.join("other/x"))).effect,
        Effect::Deny
    );
    let evil = d(
        &mut pdp,
        Action::new(ActionKind::NetConnect, "https://evil.com/"),
    );
    assert_eq!(
        evil.effect,
        Effect::Deny,
        "a user allow-all net rule is bounded: {evil:?}"
    );
    assert_eq!(
        d(
            &mut pdp,
            Action::new(ActionKind::NetConnect, "https://x.acme.com/")
        )
        .effect,
        Effect::Allow
    );
    assert_eq!(
        d(
            &mut pdp,
            Action::new(ActionKind::NetConnect, "https://github.com/")
        )
        .effect,
        Effect::Ask
    );
    assert_eq!(
        d(&mut pdp, Action::upload("evil.com", 1)).effect,
        Effect::Deny,
        "Rego true is bounded too"
    );
}

/// A decision point for a manifest of network entries only.
fn pdp_of(manifest: &str) -> Pdp {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ward.toml");
    fs::write(&p, manifest).unwrap();
    let opts = LoadOptions {
        managed: vec![],
        home: Some(dir.path().to_path_buf()),
        ..LoadOptions::default()
    };
    Pdp::new(Manifest::load(&p, &opts).unwrap()).unwrap()
}

#[test]
fn path_rules_decide_each_request_and_spellings_do_not_get_around_them() {
    let mut pdp = pdp_of(
        "name = \"t\"\n[network]\nallow = [\"https://api.github.com/repos/acme/*\", \
         \"https://docs.test\"]\ndeny = [\"https://api.github.com/repos/acme/secret*\", \
         \"https://docs.test/admin/*\"]\n",
    );
    let mut at = |url: &str| pdp.decide(&Action::new(ActionKind::NetConnect, url));
    // The connection: allowed, its requests decided one by one.
    let c = at("https://api.github.com:443");
    assert_eq!(c.effect, Effect::Allow, "{c:?}");
    assert!(
        c.reason.contains("each request decided by its path"),
        "{c:?}"
    );
    assert_eq!(
        at("https://api.github.com/repos/acme/tool/issues?x=1").effect,
        Effect::Allow
    );
    let other = at("https://api.github.com/repos/other/tool");
    assert_eq!(other.effect, Effect::Deny, "{other:?}");
    assert!(other.reason.contains("/repos/acme/*"), "{other:?}");
    assert_eq!(at("https://api.github.com/").effect, Effect::Deny);
    // A deny by path, whatever the case.
    assert_eq!(
        at("https://api.github.com/repos/acme/secrets").effect,
        Effect::Deny
    );
    assert_eq!(
        at("https://api.github.com/repos/acme/SECRETS").effect,
        Effect::Deny
    );
    // Spellings a server reads as another path.
    for sneaky in [
        "https://api.github.com/repos/acme/../other/x",
        "https://api.github.com/repos/acme/%2e%2e/other",
        "https://api.github.com/repos/acme//x",
        "https://docs.test/x/../admin/users",
        "https://docs.test/%61dmin/users/..%2f",
        "https://docs.test/%61dmin/users",
        "https://api.github.com/repos/acme/..;/other/x",
        "https://api.github.com/repos/acme/%252e%252e/other",
        "https://api.github.com/repos/acme/%c0%ae%c0%ae/other",
        "https://docs.test/admin%2fusers",
    ] {
        let d = at(sneaky);
        assert_eq!(d.effect, Effect::Deny, "{sneaky}: {d:?}");
    }
    // A host allowed whole, less a denied path.
    assert_eq!(at("https://docs.test/guide").effect, Effect::Allow);
    assert_eq!(at("https://docs.test/admin/users").effect, Effect::Deny);
    assert_eq!(at("https://docs.test/Admin/users").effect, Effect::Deny);
    assert_eq!(
        at("https://docs.test/admin").effect,
        Effect::Deny,
        "a deny holds what is under it"
    );
}

#[test]
fn a_deny_of_some_paths_says_nothing_of_the_others() {
    let mut pdp =
        pdp_of("name = \"t\"\n[network]\nunknown = \"ask\"\ndeny = [\"https://h.test/admin\"]\n");
    let mut at = |url: &str| pdp.decide(&Action::new(ActionKind::NetConnect, url));
    // Another path: what the manifest says of the host (unknown: ask), not "only these paths".
    assert_eq!(at("https://h.test/docs").effect, Effect::Ask);
    assert_eq!(at("https://h.test/admin/users").effect, Effect::Deny);
    assert_eq!(at("https://h.test/ADMIN").effect, Effect::Deny);
}

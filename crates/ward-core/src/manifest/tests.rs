use super::*;
use crate::action::{ActionKind, Effect, KindPattern};
use std::fs;

const SEED: &str = r#"{"name": "acme-cowork-agent",
 "permissions": {"files": ["/home/alice/Documents/ProjectX"], "network": ["https://api.acme.com"]}}"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home/.ssh")).unwrap();
        fs::create_dir_all(dir.path().join("home/.aws")).unwrap();
        fs::create_dir_all(dir.path().join("home/.gnupg")).unwrap();
        fs::create_dir_all(dir.path().join("home/proj/sub")).unwrap();
        fs::create_dir_all(dir.path().join("home/other")).unwrap();
        fs::write(dir.path().join("policy.rego"), "package x\n").unwrap();
        Env { dir }
    }
    fn root(&self) -> String {
        self.dir
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    }
    fn opts(&self) -> LoadOptions {
        LoadOptions {
            force: false,
            managed: vec![self.dir.path().join("managed.toml")],
            home: Some(self.dir.path().join("home")),
            check_paths: true,
            protected: vec![],
            profile: profile::Choice::Auto,
        }
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, text.replace("$ROOT", &self.root())).unwrap();
        p
    }
    fn load(&self, text: &str) -> Result<Manifest, ManifestError> {
        let p = self.write("ward.toml", text);
        Manifest::load(&p, &self.opts())
    }
    /// The error message with the temporary directory replaced by `[TMP]`.
    fn err(&self, text: &str) -> String {
        let e = self.load(text).expect_err("manifest was accepted");
        let raw = self.dir.path().display().to_string();
        e.to_string()
            .replace(&self.root(), "[TMP]")
            .replace(&raw, "[TMP]")
    }
}

#[test]
fn seed_json_loads_verbatim() {
    let env = Env::new();
    let p = env.write("seed.json", SEED);
    let opts = LoadOptions {
        check_paths: false,
        ..env.opts()
    };
    let m = Manifest::load(&p, &opts).unwrap();
    assert_eq!(m.name, "acme-cowork-agent");
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].path, Path::new("/home/alice/Documents/ProjectX"));
    assert_eq!(m.files[0].access, Access::ReadWrite);
    assert_eq!(m.files[0].mode, Mode::Staged);
    assert_eq!(m.network.len(), 1);
    assert_eq!(m.network[0].effect, Effect::Allow);
    assert_eq!(m.network[0].dest.to_string(), "https://api.acme.com:443");
    assert_eq!(m.unknown_network.0, Effect::Deny);
}

#[test]
fn seed_json_on_a_machine_without_the_folder_names_its_position() {
    let env = Env::new();
    let p = env.write("seed.json", SEED);
    let e = Manifest::load(&p, &env.opts()).unwrap_err();
    assert_eq!((e.line, e.column), (2, 28));
    assert!(
        e.message
            .contains("`/home/alice/Documents/ProjectX` cannot be used"),
        "{e}"
    );
}

#[test]
fn native_toml_loads_with_every_section() {
    let env = Env::new();
    let m = env
        .load(
            r#"name = "full"
deny_paths = ["secrets/**"]

[[files]]
path = "$ROOT/home/proj"
access = "read-write"
mode = "direct"
deny = ["build/keys"]

[[files]]
path = "~/other"
access = "read"

[network]
allow = ["https://api.acme.com", "https://*.cdn.acme.com:8443"]
ask = ["https://github.com"]
deny = ["https://evil.acme.com"]
unknown = "ask"

[[rules]]
action = ["exec"]
effect = "ask"
resource = "/usr/bin/curl"
reason = "network tool"

[[rules]]
action = "device.*"
effect = "deny"

[[policies]]
path = "policy.rego"
rule = "data.x.allow"
actions = ["net.upload"]

[limits]
memory = "2GiB"
pids = 256
cpu = 1.5
upload = 10485760
"#,
        )
        .unwrap();
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.files[0].mode, Mode::Direct);
    assert_eq!(m.files[1].access, Access::Read);
    assert_eq!(m.files[1].path, Path::new(&env.root()).join("home/other"));
    assert_eq!(m.network.len(), 4);
    assert_eq!(m.unknown_network.0, Effect::Ask);
    assert_eq!(m.rules[1].actions, vec![KindPattern::AnyDevice]);
    assert_eq!(
        m.rules[0].actions,
        vec![KindPattern::Exact(ActionKind::Exec)]
    );
    assert_eq!(m.policies[0].rule, "data.x.allow");
    assert_eq!(m.limits.memory.as_ref().unwrap().0, 2 << 30);
    assert_eq!(m.limits.upload.as_ref().unwrap().0, 10485760);
    assert!(m.deny_paths.iter().any(|(p, _)| p == "secrets/**"));
    assert!(m
        .deny_paths
        .iter()
        .any(|(p, o)| p == "**/.git/hooks" && *o == Origin::Builtin));
    match &m.rules[0].origin {
        Origin::File { line, .. } => assert_eq!(*line, 20),
        o => panic!("{o:?}"),
    }
}

#[test]
fn validation_errors_name_file_line_and_column() {
    let env = Env::new();
    let cases: &[(&str, &str)] = &[
        (
            "[[files]]\npath = \"$ROOT/home/proj\"\nacess = \"read\"\n",
            "[TMP]/ward.toml:3:1: unknown field `acess`, expected one of `path`, `access`, `mode`, `deny`",
        ),
        (
            "colour = 1\n",
            "[TMP]/ward.toml:1:1: unknown field `colour`, expected one of `name`, `files`, `deny_paths`, `network`, `exec`, `rules`, `policies`, `limits`, `allow_degraded`, `env`, `devices`, `profile`, `credentials`",
        ),
        (
            "[[files]]\npath = 42\n",
            "[TMP]/ward.toml:2:8: invalid type: integer `42`, expected a string",
        ),
        (
            "[network]\nallow = \"https://a.com\"\n",
            "[TMP]/ward.toml:2:9: invalid type: string \"https://a.com\", expected a sequence",
        ),
        (
            "[[files]]\npath = \"home/proj\"\n",
            "[TMP]/ward.toml:2:8: grant path `home/proj` is relative: write an absolute path or start it with `~/`",
        ),
        (
            "[[files]]\npath = \"$ROOT/nope\"\n",
            "[TMP]/ward.toml:2:8: grant path `[TMP]/nope` cannot be used: No such file or directory (os error 2) (create it first, or fix the path)",
        ),
        (
            "[[files]]\npath = \"$ROOT/home/proj\"\n\n[[files]]\npath = \"$ROOT/home/proj/sub\"\n",
            "[TMP]/ward.toml:5:8: grant `[TMP]/home/proj/sub` overlaps the grant `[TMP]/home/proj` on line 2: grants must not nest (keep the wider one, or list disjoint folders)",
        ),
        (
            "[[files]]\npath = \"/\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `/`: it is the whole filesystem (use --force to override)",
        ),
        (
            "[[files]]\npath = \"~\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `~`: it is your whole home directory, keys and credentials included (use --force to override)",
        ),
        (
            "[[files]]\npath = \"$ROOT\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `[TMP]`: it contains your home directory [TMP]/home (use --force to override)",
        ),
        (
            "[[files]]\npath = \"/etc\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `/etc`: /etc holds system configuration and secrets (use --force to override)",
        ),
        (
            "[[files]]\npath = \"~/.ssh\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `~/.ssh`: ~/.ssh holds credentials (use --force to override)",
        ),
        (
            "[[files]]\npath = \"~/.gnupg\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `~/.gnupg`: ~/.gnupg holds credentials (use --force to override)",
        ),
        (
            "[[files]]\npath = \"$ROOT/home/.aws\"\n",
            "[TMP]/ward.toml:2:8: refusing to grant `[TMP]/home/.aws`: ~/.aws holds credentials (use --force to override)",
        ),
        (
            "[network]\nallow = [\"https://ok.com\", \"api.acme.com\"]\n",
            "[TMP]/ward.toml:2:28: bad network destination `api.acme.com`: missing scheme: write `https://api.acme.com` (or `http://`)",
        ),
        (
            "[network]\nallow = [\"https://acme.com/upload?id=1\"]\n",
            "[TMP]/ward.toml:2:10: bad network destination `https://acme.com/upload?id=1`: the path `/upload?id=1` is a path only: no query, fragment, backslash, space or control character",
        ),
        (
            "[network]\nask = [\"https://a*.com\"]\n",
            "[TMP]/ward.toml:2:8: bad network destination `https://a*.com`: a wildcard is only allowed as a whole leading label (`*.example.com`), not in `a*.com`",
        ),
        (
            "[network]\ninspect = true\nca_file = \"missing.pem\"\n",
            "[TMP]/ward.toml:3:11: `network.ca_file` `missing.pem`: cannot be read (No such file or directory (os error 2)) (paths are relative to the manifest's folder)",
        ),
        (
            "[network]\ninspect = true\nca_file = \"/dev/zero\"\n",
            "[TMP]/ward.toml:3:11: `network.ca_file` `/dev/zero`: cannot be read (not a regular file) (paths are relative to the manifest's folder)",
        ),
        (
            "[network]\ninspect = true\nca_file = \"ward.toml\"\n",
            "[TMP]/ward.toml:3:11: `network.ca_file` `ward.toml`: holds no PEM certificate (-----BEGIN CERTIFICATE-----) (paths are relative to the manifest's folder)",
        ),
        (
            "[network]\nca_file = \"ward.toml\"\n",
            "[TMP]/ward.toml:2:11: `network.ca_file` is used only to verify servers when TLS is inspected: add `inspect = true` (or a credential), or remove it",
        ),
        (
            "[network]\nfindings = { high = \"maybe\" }\n",
            "[TMP]/ward.toml:2:21: `network.findings.high` must be deny, ask, record or allow, not `maybe`",
        ),
        (
            "[network]\nfindings = { severe = \"deny\" }\n",
            "[TMP]/ward.toml:2:14: unknown field `severe`, expected one of `high`, `medium`, `low`",
        ),
        (
            "[network]\ninspect = \"yes\"\n",
            "[TMP]/ward.toml:2:11: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[network]\nunknown = \"allow\"\n",
            "[TMP]/ward.toml:2:11: `network.unknown` is `allow`; expected `deny` or `ask` (an allowlist that allows unknown destinations is not one)",
        ),
        (
            "[[files]]\npath = \"$ROOT/home/proj\"\naccess = \"write\"\n",
            "[TMP]/ward.toml:3:10: unknown access `write` (expected `read` or `read-write`)",
        ),
        (
            "[[rules]]\naction = \"file.execute\"\neffect = \"deny\"\n",
            "[TMP]/ward.toml:2:10: unknown action kind `file.execute` (known: file.read, file.write, file.delete, exec, net.connect, net.upload, device.*, clipboard.read, screen.capture)",
        ),
        (
            "[[rules]]\naction = [\"exec\", \"device.camera\"]\neffect = \"ask\"\n",
            "[TMP]/ward.toml:2:10: `device.camera` cannot be asked: the sandbox has no way to reach devices and Ward cannot grant it yet, so this rule would do nothing (a `deny` rule is accepted: it is so already)",
        ),
        (
            "[[rules]]\naction = \"clipboard.read\"\neffect = \"allow\"\n",
            "[TMP]/ward.toml:2:10: `clipboard.read` cannot be allowed: the sandbox has no way to reach the clipboard and Ward cannot grant it yet, so this rule would do nothing (a `deny` rule is accepted: it is so already)",
        ),
        (
            "[[rules]]\naction = \"exec\"\neffect = \"maybe\"\n",
            "[TMP]/ward.toml:3:10: unknown effect `maybe` (expected allow, ask or deny)",
        ),
        (
            "[limits]\nupload = \"10 parsecs\"\n",
            "[TMP]/ward.toml:2:10: unknown size unit `parsecs` in `10 parsecs` (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)",
        ),
        (
            "[[policies]]\npath = \"missing.rego\"\nrule = \"data.x.allow\"\nactions = [\"net.upload\"]\n",
            "[TMP]/ward.toml:2:8: policy file `missing.rego` does not exist (paths are relative to the manifest's folder)",
        ),
        (
            "name = \"x\"\n[[files]\n",
            "[TMP]/ward.toml:2:9: unclosed array table, expected `]`",
        ),
    ];
    let mut failures = Vec::new();
    for (text, want) in cases {
        let got = env.err(text);
        if got != *want {
            failures.push(format!(
                "manifest:\n{text}\n  want: {want}\n  got:  {got}\n"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_errors_name_line_and_column() {
    let env = Env::new();
    let p = env.write(
        "m.json",
        "{\"name\": \"a\",\n \"permissions\": {\"files\": [], \"netwrok\": []}}",
    );
    let e = Manifest::load(&p, &env.opts()).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.starts_with("unknown field `netwrok`"), "{e}");
    let p = env.write("m.json", "{\"permissions\": {\"files\": [\"relative\"]}}");
    let e = Manifest::load(&p, &env.opts()).unwrap_err();
    assert_eq!((e.line, e.column), (1, 28));
}

#[test]
fn wards_own_state_is_never_grantable() {
    let env = Env::new();
    std::fs::create_dir_all(env.dir.path().join("home/.local/state/ward")).unwrap();
    let p = env.write("ward.toml", "[[files]]\npath = \"~/.local\"\n");
    let opts = LoadOptions {
        force: true,
        protected: vec![env.dir.path().join("home/.local/state/ward")],
        ..env.opts()
    };
    let e = Manifest::load(&p, &opts).unwrap_err();
    assert!(e.message.contains("overlaps Ward's own state"), "{e}");
    // A parent of a credential folder is refused too (unforced).
    std::fs::create_dir_all(env.dir.path().join("home/.config/gcloud")).unwrap();
    let e = env.err("[[files]]\npath = \"~/.config\"\n");
    assert!(e.contains("it contains ~/.config/gcloud"), "{e}");
}

#[test]
fn force_allows_sensitive_grants() {
    let env = Env::new();
    let p = env.write("ward.toml", "[[files]]\npath = \"~/.ssh\"\n");
    let opts = LoadOptions {
        force: true,
        ..env.opts()
    };
    assert!(Manifest::load(&p, &opts).is_ok());
}

#[test]
fn managed_file_only_narrows() {
    let env = Env::new();
    env.write(
        "managed.toml",
        r#"deny_paths = ["*.sqlite"]
[[files]]
path = "$ROOT/home/proj/sub"
access = "read"
[[files]]
path = "$ROOT/home/proj2"
[network]
allow = ["https://*.acme.com"]
deny = ["https://evil.acme.com"]
unknown = "deny"
[[rules]]
action = "exec"
effect = "deny"
resource = "/usr/bin/nc"
[limits]
upload = "1MiB"
"#,
    );
    let m = env
        .load(
            r#"[[files]]
path = "$ROOT/home/proj"
mode = "direct"
[[files]]
path = "$ROOT/home/other"
[network]
allow = ["https://api.acme.com", "https://example.org"]
ask = ["https://*.acme.com"]
unknown = "ask"
[limits]
upload = "10MiB"
"#,
        )
        .unwrap();
    // proj is cut down to the managed sub-folder, read-only; other is dropped entirely.
    assert_eq!(m.files.len(), 1);
    assert_eq!(
        m.files[0].path,
        Path::new(&env.root()).join("home/proj/sub")
    );
    assert_eq!(m.files[0].access, Access::Read);
    assert_eq!(m.files[0].mode, Mode::Direct);
    // Hosts: intersection; the managed deny comes first; example.org is gone.
    let net: Vec<String> = m
        .network
        .iter()
        .map(|e| format!("{} {}", e.effect, e.dest))
        .collect();
    assert_eq!(
        net,
        [
            "deny https://evil.acme.com:443",
            "ask https://*.acme.com:443",
            "allow https://api.acme.com:443",
        ]
    );
    assert_eq!(
        m.unknown_network.0,
        Effect::Deny,
        "the managed, stricter default wins"
    );
    assert!(m.deny_paths.iter().any(|(p, _)| p == "*.sqlite"));
    assert!(m.rules.iter().any(|r| r.effect == Effect::Deny));
    assert_eq!(m.limits.upload.as_ref().unwrap().0, 1 << 20);
    assert_eq!(m.narrowed.len(), 3, "{:?}", m.narrowed);
    let text = m.explain().to_string();
    assert!(text.contains("managed "), "{text}");
    assert!(text.contains("removed"), "{text}");
}

#[test]
fn managed_file_cannot_widen_with_allow_rules() {
    let env = Env::new();
    env.write(
        "managed.toml",
        "[[rules]]\naction = \"exec\"\neffect = \"allow\"\n",
    );
    let e = env.err("name = \"x\"\n");
    assert_eq!(
        e,
        "[TMP]/managed.toml:3:10: the managed file can only narrow: its rules may `deny` or `ask`, not `allow`"
    );
}

#[test]
fn unreadable_managed_file_fails_closed() {
    let env = Env::new();
    fs::create_dir(env.dir.path().join("managed.toml")).unwrap();
    let e = env.err("name = \"x\"\n");
    assert!(e.contains("cannot read the managed file"), "{e}");
}

#[test]
fn explain_names_every_origin() {
    let env = Env::new();
    let m = env
        .load("[[files]]\npath = \"$ROOT/home/proj\"\n[network]\nallow = [\"https://api.acme.com\"]\n")
        .unwrap();
    let text = m.explain().to_string().replace(&env.root(), "[TMP]");
    insta::assert_snapshot!(text, @r"
    Effective permissions of `ward`
      manifest: [TMP]/ward.toml
      managed:  none
      profile:  none

    Files (anything not listed is denied)
      read-write staged [TMP]/home/proj    <- [TMP]/ward.toml:2:8

    Always denied inside grants
      **/.git/hooks  <- built-in
      .env           <- built-in
      .env.*         <- built-in
      .ssh           <- built-in
      .aws           <- built-in
      .gnupg         <- built-in
      .netrc         <- built-in
      .npmrc         <- built-in
      .pypirc        <- built-in
      *.pem          <- built-in
      *.key          <- built-in
      id_rsa*        <- built-in
      id_ecdsa*      <- built-in
      id_ed25519*    <- built-in
      id_dsa*        <- built-in
      .git-credentials <- built-in
      .kube          <- built-in
      *.tfstate*     <- built-in
      .vault-token   <- built-in
      .pgpass        <- built-in
      .my.cnf        <- built-in
      .s3cfg         <- built-in
      .boto          <- built-in
      .azure         <- built-in
      .oci           <- built-in
      **/.config/gcloud <- built-in
      **/.docker/config.json <- built-in
      application_default_credentials.json <- built-in
      credentials.json <- built-in
      service-account*.json <- built-in
      client_secret*.json <- built-in
      credentials.tfrc.json <- built-in
      **/.cargo/credentials <- built-in
      **/.cargo/credentials.toml <- built-in

    Network
      allow https://api.acme.com:443    <- [TMP]/ward.toml:4:10
      deny  any other destination    <- default
      a secret or personal data found in a request (plain, or inside inspected TLS):
        high   confidence: deny      <- default
        medium confidence: ask       <- default
        low    confidence: record    <- default

    Programs (checked at every exec when an exec rule exists)
      allow any program no exec rule names    <- default

    Devices, clipboard, screen
      none available inside the sandbox (rules may only deny them)

    Limits
      memory  8GiB    <- default
      upload  unlimited
      pids    4096    <- default
      /tmp    2GiB    <- default
      /dev/shm 512MiB    <- default
      stage   20GiB    <- default
      stage entries 500000    <- default
      cpu     unlimited
    ");
    let json = m.explain().to_json();
    assert_eq!(json["files"][0]["access"], "read-write");
    assert_eq!(json["unknown_network"]["effect"], "deny");
}

#[test]
fn builtin_default_grants_the_directory_staged() {
    let env = Env::new();
    let dir = env.dir.path().join("home/proj");
    let m = Manifest::builtin_default(&dir, &env.opts()).unwrap();
    assert_eq!(m.files[0].mode, Mode::Staged);
    assert!(m.network.is_empty());
    let home = env.dir.path().join("home");
    assert!(Manifest::builtin_default(&home, &env.opts()).is_err());
}

#[test]
fn a_second_managed_file_cannot_lift_the_first() {
    let env = Env::new();
    env.write(
        "managed.toml",
        "[network]\nallow = [\"https://*.acme.com\"]\n",
    );
    let extra = env.write(
        "team.toml",
        "[network]\nallow = [\"https://example.org\", \"https://api.acme.com\"]\n",
    );
    let p = env.write(
        "ward.toml",
        "[network]\nallow = [\"https://example.org\", \"https://api.acme.com\", \"https://x.acme.com\"]\n",
    );
    let mut opts = env.opts();
    opts.managed.push(extra.clone());
    let m = Manifest::load(&p, &opts).unwrap();
    let dests: Vec<String> = m.network.iter().map(|e| e.dest.to_string()).collect();
    assert_eq!(
        dests,
        ["https://api.acme.com:443"],
        "each managed file narrows in turn"
    );
    assert_eq!(m.managed, vec![env.dir.path().join("managed.toml"), extra]);
}

#[test]
fn allow_degraded_takes_known_features_only() {
    let env = Env::new();
    let m = env
        .load("allow_degraded = [\"cgroup.memory\", \"landlock\", \"cgroup.memory\"]\n")
        .unwrap();
    let names: Vec<&str> = m.allow_degraded.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["cgroup.memory", "landlock"]);
    assert_eq!(
        m.allow_degraded[0].1.to_string(),
        format!("{}/ward.toml:1:19", env.dir.path().display())
    );
    assert_eq!(
        env.err("allow_degraded = [\"seccomp\"]\n"),
        "[TMP]/ward.toml:1:19: `seccomp` is not a feature Ward can run without; allow_degraded takes \
         \"landlock\", \"cgroup.memory\", \"cgroup.pids\", \"cgroup.cpu\""
    );
}

#[test]
fn managed_file_decides_what_may_run_degraded() {
    let env = Env::new();
    env.write("managed.toml", "allow_degraded = [\"cgroup.cpu\"]\n");
    let m = env
        .load("allow_degraded = [\"cgroup.cpu\", \"landlock\"]\n")
        .unwrap();
    let names: Vec<&str> = m.allow_degraded.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["cgroup.cpu"]);
    assert!(
        m.narrowed
            .iter()
            .any(|n| n.contains("\"landlock\" removed")),
        "{:?}",
        m.narrowed
    );
    assert!(m.explain().to_string().contains("cgroup.cpu"));
}

#[test]
fn env_scrub_takes_name_patterns_and_keep_takes_names() {
    let env = Env::new();
    let m = env
        .load("[env]\nscrub = [\"my_*\", \"X?Y\"]\nkeep = [\"GH_TOKEN\"]\n")
        .unwrap();
    let pats: Vec<&str> = m.env_scrub.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(pats, ["MY_*", "X?Y"]);
    assert_eq!(m.env_keep[0].0, "GH_TOKEN");
    assert_eq!(
        env.err("[env]\nscrub = [\"A=B\"]\n"),
        "[TMP]/ward.toml:2:10: `A=B` is not a variable name pattern: letters, digits, `_`, and `*` or `?` as wildcards (`MY_*`)"
    );
    assert_eq!(
        env.err("[env]\nkeep = [\"GH_*\"]\n"),
        "[TMP]/ward.toml:2:9: `GH_*` is not a variable name: `env.keep` takes exact names, no wildcards"
    );
    env.write("managed.toml", "[env]\nscrub = [\"CORP_*\"]\n");
    let m = env.load("[env]\nkeep = [\"CORP_TOKEN\"]\n").unwrap();
    assert!(m.env_scrub.iter().any(|(p, _)| p == "CORP_*"));
}

#[test]
fn every_builtin_profile_loads_with_profile_origins() {
    let e = Env::new();
    for p in profile::PROFILES {
        let m = profile::load(p, &e.opts()).unwrap_or_else(|err| panic!("{}: {err}", p.name));
        assert!(!m.network.is_empty(), "{} names its API", p.name);
        assert!(!m.env_keep.is_empty(), "{} keeps its key", p.name);
        for n in &m.network {
            assert!(
                matches!(&n.origin, Origin::Profile { name, line } if name == p.name && *line > 0),
                "{}: {:?}",
                p.name,
                n.origin
            );
            assert_eq!(n.effect, Effect::Allow);
        }
        // A profile's keep never keeps another provider's key it scrubs.
        for (k, _) in &m.env_keep {
            assert!(
                !m.env_scrub
                    .iter()
                    .any(|(pat, _)| crate::glob::component_matches(pat, k)),
                "{} keeps and scrubs {k}",
                p.name
            );
        }
        for c in p.commands {
            assert_eq!(
                profile::for_command(&format!("/usr/local/bin/{c}"))
                    .unwrap()
                    .name,
                p.name
            );
        }
    }
    assert!(profile::for_command("claude.sh").is_none());
    assert!(profile::for_command("python3").is_none());
}

#[test]
fn the_profile_is_chosen_by_flag_then_manifest_then_program() {
    let e = Env::new();
    let with = |choice: profile::Choice, text: &str| {
        let mut o = e.opts();
        o.profile = choice;
        let p = e.write("ward.toml", text);
        Manifest::load(&p, &o).map(|m| m.profile.map(|p| (p.name, p.chosen_by)))
    };
    let prog = || profile::Choice::Program("/opt/bin/codex".into());
    assert_eq!(
        with(prog(), "").unwrap(),
        Some(("codex".into(), "the agent's program `codex`".into()))
    );
    assert_eq!(with(profile::Choice::Auto, "").unwrap(), None);
    assert_eq!(with(prog(), "profile = \"none\"\n").unwrap(), None);
    let (name, by) = with(prog(), "profile = \"gemini\"\n").unwrap().unwrap();
    assert_eq!(name, "gemini");
    assert!(
        by.starts_with("the manifest (") && by.ends_with(":1:11)"),
        "{by}"
    );
    assert_eq!(
        with(
            profile::Choice::Named("claude".into()),
            "profile = \"none\"\n"
        )
        .unwrap(),
        Some(("claude".into(), "--profile".into()))
    );
    assert_eq!(
        with(profile::Choice::Off, "profile = \"claude\"\n").unwrap(),
        None
    );
    let err = with(profile::Choice::Named("codx".into()), "")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown profile `codx`") && err.contains("`codex`"),
        "{err}"
    );
    assert_eq!(
        e.err("profile = \"cladue\"\n"),
        "[TMP]/ward.toml:1:11: unknown profile `cladue`; Ward's profiles are `claude`, \
         `codex`, `gemini`, or `none`"
    );
}

#[test]
fn the_persons_manifest_narrows_the_profile_and_the_managed_file_narrows_both() {
    let e = Env::new();
    let mut o = e.opts();
    o.profile = profile::Choice::Named("claude".into());
    let p = e.write(
        "ward.toml",
        "[network]\ndeny = [\"https://claude.ai\"]\n[env]\nscrub = [\"ANTHROPIC_MODEL\"]\n\
         set = { DISABLE_AUTOUPDATER = \"0\" }\n",
    );
    let m = Manifest::load(&p, &o).unwrap();
    // The person's entries come first, the profile's after: both stand, and the decision
    // point's deny > allow makes the person's deny win.
    let claude_ai: Vec<_> = m
        .network
        .iter()
        .filter(|n| n.dest.to_string() == "https://claude.ai:443")
        .map(|n| (n.effect, matches!(n.origin, Origin::Profile { .. })))
        .collect();
    assert_eq!(claude_ai, [(Effect::Deny, false), (Effect::Allow, true)]);
    assert!(m.env_scrub.iter().any(|(p, _)| p == "ANTHROPIC_MODEL"));
    // The person's `set` wins over the profile's for the same name.
    let set: Vec<_> = m
        .env_set
        .iter()
        .filter(|(k, _, _)| k == "DISABLE_AUTOUPDATER")
        .map(|(_, v, o)| (v.as_str(), o.to_string().starts_with("profile")))
        .collect();
    assert_eq!(set, [("0", false)]);
    // A managed network section is a ceiling for the profile's destinations too.
    e.write(
        "managed.toml",
        "[network]\nallow = [\"https://api.anthropic.com\"]\n",
    );
    let m = Manifest::load(&p, &o).unwrap();
    let allowed: Vec<String> = m
        .network
        .iter()
        .filter(|n| n.effect == Effect::Allow)
        .map(|n| n.dest.to_string())
        .collect();
    assert_eq!(allowed, ["https://api.anthropic.com:443"]);
    let explained = m.explain().to_string();
    assert!(explained.contains("profile:  claude (Claude Code (Anthropic)), chosen by --profile"));
    assert!(explained
        .contains("set   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1    <- profile claude:"));
}

#[test]
fn env_set_refuses_what_ward_sets_and_the_managed_file_cannot_set() {
    let e = Env::new();
    for (text, msg) in [
        ("[env]\nset = { HOME = \"/x\" }\n", "`HOME` is set by Ward"),
        (
            "[env]\nset = { https_proxy = \"http://evil\" }\n",
            "`https_proxy` is set by Ward",
        ),
        (
            "[env]\nset = { \"A-B\" = \"1\" }\n",
            "is not a variable name",
        ),
        ("[env]\nset = { N = 1 }\n", "a variable's value is a string"),
    ] {
        let err = e.err(text);
        assert!(err.contains(msg), "{text}: {err}");
    }
    e.write("managed.toml", "[env]\nset = { X = \"1\" }\n");
    let err = e.err("name = \"x\"\n");
    assert!(err.contains("cannot set variables"), "{err}");
}

#[test]
fn managed_findings_only_get_stricter() {
    let env = Env::new();
    env.write(
        "managed.toml",
        "[network]\nfindings = { medium = \"deny\", low = \"allow\" }\n",
    );
    let p = env.write(
        "ward.toml",
        "[network]\nfindings = { high = \"record\", medium = \"record\", low = \"ask\" }\n",
    );
    let m = Manifest::load(&p, &env.opts()).unwrap();
    // The managed file said nothing of high: the user's word holds.
    assert_eq!(m.findings.high.0, crate::Reaction::Record);
    // It is stricter on medium, laxer on low: only the stricter word counts.
    assert_eq!(m.findings.medium.0, crate::Reaction::Deny);
    assert!(m.findings.medium.1.to_string().starts_with("managed "));
    assert_eq!(m.findings.low.0, crate::Reaction::Ask);
}

#[test]
fn credentials_name_a_source_one_allowed_https_host_and_one_way_in() {
    let env = Env::new();
    let ok = "[network]\nallow = [\"https://api.acme.com\"]\n[[credentials]]\nname = \"acme\"\n\
              secret = \"env:ACME_KEY\"\nenv = \"ACME_KEY\"\nto = \"https://api.acme.com/v1/\"\n\
              header = \"Authorization\"\n";
    let m = env.load(ok).unwrap();
    let c = &m.credentials[0];
    assert_eq!(c.source, crate::SecretSource::Env("ACME_KEY".into()));
    assert_eq!(c.path, "/v1/");
    assert_eq!(
        c.placement,
        crate::Placement::Header("authorization".into())
    );
    assert!(c.goes_to("https", "api.acme.com", 443, "/v1/messages"));
    assert!(!c.goes_to("https", "api.acme.com", 443, "/v2/x"));
    assert!(!c.goes_to("http", "api.acme.com", 443, "/v1/x"));
    assert!(!c.goes_to("https", "api.acme.com", 443, "/v1/../admin"));
    let m = env.load(&ok.replace("/v1/\"", "/v1\"")).unwrap();
    let c = &m.credentials[0];
    assert!(
        c.goes_to("https", "api.acme.com", 443, "/v1")
            && c.goes_to("https", "api.acme.com", 443, "/v1/x")
    );
    assert!(!c.goes_to("https", "api.acme.com", 443, "/v1evil"));
    let text = crate::Explanation(&m).to_string();
    assert!(
        text.contains("credential acme: the agent holds a placeholder in ACME_KEY"),
        "{text}"
    );
    let bad = |from: &str, to: &str| env.err(&ok.replace(from, to));
    assert!(bad("env:ACME_KEY", "vault:x").contains("write where it comes from"));
    assert!(
        bad("https://api.acme.com/v1/\"", "http://api.acme.com/v1/\"")
            .contains("one `https://` host named exactly")
    );
    assert!(bad(
        "to = \"https://api.acme.com/v1/\"",
        "to = \"https://other.com/\""
    )
    .contains("which the network section does not allow"));
    assert!(bad("header = \"Authorization\"\n", "").contains("say how it is sent, once"));
    assert!(bad(
        "header = \"Authorization\"\n",
        "header = \"a\"\nbasic = true\n"
    )
    .contains("say how it is sent, once"));
    assert!(bad("env = \"ACME_KEY\"", "env = \"HTTPS_PROXY\"").contains("set by Ward"));
    assert!(bad("header = \"Authorization\"", "header = \"host\"").contains("cannot carry"));
    assert!(bad("name = \"acme\"", "name = \"Acme Key\"").contains("a credential's name"));
}

#[test]
fn destinations_with_paths_and_git_push_repositories() {
    let env = Env::new();
    let m = env
        .load(
            "[network]\nallow = [\"https://api.github.com/repos/acme/*\", \"https://github.com\"]\n\
             git_push = [\"https://github.com/acme/tool.git\", \"https://github.com/acme/lib/\"]\n",
        )
        .unwrap();
    assert_eq!(
        m.network[0].shown(),
        "https://api.github.com:443/repos/acme/*"
    );
    let repos = m.git_push.as_ref().unwrap();
    assert_eq!(repos[0].path.as_str(), "/acme/tool");
    assert_eq!(repos[1].path.as_str(), "/acme/lib");
    let push = |t: &str| crate::git_push_repo(t);
    assert_eq!(
        push("/acme/tool.git/info/refs?service=git-receive-pack").as_deref(),
        Some("/acme/tool")
    );
    assert_eq!(
        push("/acme/tool.git/info/refs?service=git-upload-pack"),
        None
    );
    assert_eq!(
        push("/acme/tool/git-receive-pack").as_deref(),
        Some("/acme/tool")
    );
    assert_eq!(
        push("/acme/other/git-receive%2Dpack").as_deref(),
        Some("/acme/other")
    );
    assert_eq!(
        push("/acme/other/info/refs?service=git%2Dreceive-pack").as_deref(),
        Some("/acme/other")
    );
    let text = crate::Explanation(&m).to_string();
    assert!(text.contains("requests whose path matches"), "{text}");
    assert!(text.contains("git push over HTTP(S) only to"), "{text}");
    // `[]`: no push anywhere (not the same as no rule).
    let m = env.load("[network]\ngit_push = []\n").unwrap();
    assert_eq!(m.git_push, Some(vec![]));
    assert_eq!(env.load("[network]\n").unwrap().git_push, None);
    for (bad, says) in [
        ("allow = [\"https://a.com/x/../y\"]", "must be plain"),
        ("allow = [\"https://a.com/x%41\"]", "must be plain"),
        ("allow = [\"https://a.com/x?y=1\"]", "no query"),
        (
            "allow = [\"ssh://a.com/x\"]",
            "an ssh destination has no path",
        ),
        ("git_push = [\"https://github.com\"]", "name a repository"),
        (
            "git_push = [\"ssh://github.com/acme/tool\"]",
            "name a repository",
        ),
    ] {
        let e = env.err(&format!("[network]\n{bad}\n"));
        assert!(e.contains(says), "{bad}: {e}");
    }
}

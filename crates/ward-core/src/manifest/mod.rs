//! The permission manifest: what an agent may touch, reach and run.
//!
//! Two written forms load into one [`Manifest`]: the native TOML and the seed's JSON
//! (`{"name":…, "permissions": {"files": […], "network": […]}}`). Loading validates everything
//! a person can get wrong and names the file, line and column; then the managed (MDM) file is
//! merged so that it can only narrow what the user's manifest allows.

mod explain;
mod managed;
pub mod profile;
mod raw;
mod validate;

pub use explain::Explanation;
pub use raw::Pos;
pub use validate::normalize;

use crate::action::{Effect, KindPattern};
use crate::dest::Destination;
use std::fmt;
use std::path::{Path, PathBuf};

/// The managed file's default location; tests and packagers override it.
pub const MANAGED_PATH: &str = "/etc/ward/managed.toml";

/// Paths inside every grant that are always denied, whatever the manifest says.
pub const BUILTIN_DENIES: &[&str] = &[
    "**/.git/hooks",
    ".env",
    ".env.*",
    ".ssh",
    ".aws",
    ".gnupg",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "id_dsa*",
    ".git-credentials",
    ".kube",
    "*.tfstate*",
    ".vault-token",
    ".pgpass",
    ".my.cnf",
    ".s3cfg",
    ".boto",
    ".azure",
    ".oci",
    "**/.config/gcloud",
    "**/.docker/config.json",
    "application_default_credentials.json",
    "credentials.json",
    "service-account*.json",
    "client_secret*.json",
    "credentials.tfrc.json",
    "**/.cargo/credentials",
    "**/.cargo/credentials.toml",
];

/// How a manifest is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Accept grants of `/`, the home directory, `/etc` and credential directories.
    pub force: bool,
    /// The managed files, each merged in turn so that each can only narrow; a missing file
    /// merges nothing. The system file is always first: an override (for tests, or a stricter
    /// team file) adds to it and never replaces it.
    pub managed: Vec<PathBuf>,
    /// The home directory used for `~` and the sensitive-path checks.
    pub home: Option<PathBuf>,
    /// Paths no grant may contain or lie in, even with `force`: Ward's own state (audit log,
    /// keys, sessions), so the agent can never touch its own record.
    pub protected: Vec<PathBuf>,
    /// Require granted paths to exist here (and resolve their symlinks). Off to check a manifest
    /// written for another machine (`ward manifest check --portable`).
    pub check_paths: bool,
    /// Which agent profile to merge in (see [`profile`]).
    pub profile: profile::Choice,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            force: false,
            managed: vec![PathBuf::from(MANAGED_PATH)],
            home: std::env::var_os("HOME").map(PathBuf::from),
            check_paths: true,
            protected: vec![],
            profile: profile::Choice::default(),
        }
    }
}

/// Where a permission came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of the user's manifest (or the managed file, when `managed`).
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        managed: bool,
    },
    /// Ward's built-in rules (mandatory denies, the default manifest).
    Builtin,
    /// A line of one of Ward's built-in agent profiles.
    Profile { name: String, line: usize },
    /// A `--grant` on the command line.
    CommandLine,
    /// Nothing said anything: Ward's default applies.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line,
                column,
                managed,
            } => {
                if *managed {
                    f.write_str("managed ")?;
                }
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::Profile { name, line } => write!(f, "profile {name}:{line}"),
            Origin::Builtin => f.write_str("built-in"),
            Origin::CommandLine => f.write_str("command line"),
            Origin::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        }
    }
}

/// `Staged` writes go to an overlay and reach the real folder only after review; `Direct`
/// writes go straight through. Staged is the default and the narrower of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Staged,
    Direct,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Staged => "staged",
            Mode::Direct => "direct",
        }
    }
}

/// A folder (or file) the agent may use.
#[derive(Debug, Clone, PartialEq)]
pub struct FileGrant {
    /// Absolute and canonical (symlinks resolved when the manifest was loaded).
    pub path: PathBuf,
    pub access: Access,
    pub mode: Mode,
    /// Extra denies inside this grant (relative patterns), on top of the global ones.
    pub deny: Vec<(String, Origin)>,
    pub origin: Origin,
}

/// A device node granted explicitly (`[[devices]]`): a GPU render node or a camera. Mounted
/// into the sandbox at its path only when the person allows it at the start of the session.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceGrant {
    pub path: PathBuf,
    /// `gpu` (a DRM render node) or `camera` (video4linux), from the node's device numbers.
    pub class: &'static str,
    pub reason: Option<String>,
    pub origin: Origin,
}

/// The class of the character device `rdev`, when it is one Ward can grant.
pub fn device_class(major: u32, minor: u32) -> Option<&'static str> {
    match (major, minor) {
        (226, 128..) => Some("gpu"),
        (81, _) => Some("camera"),
        _ => None,
    }
}

/// One network destination and what to do with it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetEntry {
    pub effect: Effect,
    pub dest: Destination,
    /// Only requests whose path this matches (`https://api.github.com/repos/acme/*`); the
    /// destination's requests are then decided one by one (TLS to it is opened).
    pub path: Option<crate::dest::PathPattern>,
    pub origin: Origin,
}

impl NetEntry {
    /// The destination as written: with its path pattern.
    pub fn shown(&self) -> String {
        match &self.path {
            Some(p) => format!("{}{}", self.dest, p.as_str()),
            None => self.dest.to_string(),
        }
    }
}

/// A manifest rule: for these action kinds and this resource pattern, allow, ask or deny.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub actions: Vec<KindPattern>,
    pub effect: Effect,
    /// A glob over the action's resource; `None` matches every resource.
    pub resource: Option<String>,
    pub reason: Option<String>,
    pub origin: Origin,
}

/// A Rego policy file bound to the action kinds it decides and the rule that answers.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRef {
    pub path: PathBuf,
    /// E.g. `data.agent.security.allow_upload`.
    pub rule: String,
    pub actions: Vec<KindPattern>,
    pub origin: Origin,
}

/// The confinement features a manifest may let `ward run` go without, when the kernel or the
/// user's rights lack them: Landlock, and each cgroup controller for the limits.
pub const DEGRADABLE: &[&str] = &["landlock", "cgroup.memory", "cgroup.pids", "cgroup.cpu"];

/// Resource limits, each with where it was set; `None` means not set (see
/// [`Limits::effective`] for the ceilings every run has anyway).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<(u64, Origin)>,
    pub pids: Option<(u64, Origin)>,
    pub cpu: Option<(f64, Origin)>,
    pub upload: Option<(u64, Origin)>,
    /// Size of the sandbox's private `/tmp` (a tmpfs; full: ENOSPC).
    pub tmp: Option<(u64, Origin)>,
    /// Size of its `/dev/shm`.
    pub shm: Option<(u64, Origin)>,
    /// What the staged grants' stage may hold on disk, and how many entries.
    pub stage: Option<(u64, Origin)>,
    pub stage_entries: Option<(u64, Origin)>,
}

/// The ceilings a run has when the manifest sets none: no session is unbounded by default.
pub const DEFAULT_LIMITS: DefaultLimits = DefaultLimits {
    memory: 8 << 30,
    pids: 4096,
    tmp: 2 << 30,
    shm: 512 << 20,
    stage: 20 << 30,
    stage_entries: 500_000,
};

/// See [`DEFAULT_LIMITS`].
pub struct DefaultLimits {
    pub memory: u64,
    pub pids: u64,
    pub tmp: u64,
    pub shm: u64,
    pub stage: u64,
    pub stage_entries: u64,
}

impl Limits {
    /// These limits with every ceiling the manifest (and the managed file) left unset at its
    /// default (origin `default`). Upload and cpu have none: no default fits every agent.
    pub fn effective(&self) -> Limits {
        let d = &DEFAULT_LIMITS;
        let or = |v: &Option<(u64, Origin)>, n: u64| v.clone().or(Some((n, Origin::Default)));
        Limits {
            memory: or(&self.memory, d.memory),
            pids: or(&self.pids, d.pids),
            cpu: self.cpu.clone(),
            upload: self.upload.clone(),
            tmp: or(&self.tmp, d.tmp),
            shm: or(&self.shm, d.shm),
            stage: or(&self.stage, d.stage),
            stage_entries: or(&self.stage_entries, d.stage_entries),
        }
    }
}

/// What one managed file allows at most, kept beside the merged grants so that the decision
/// point can hold every decision under it: a user's `allow` rule or Rego policy cannot reach
/// past a folder or destination the managed file leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    pub source: PathBuf,
    /// The folders the managed file allows, when it has a `files` section.
    pub files: Option<Vec<FileGrant>>,
    /// The destinations it allows or asks for, and its word on the others, when it has a
    /// `network` section.
    pub network: Option<(Vec<NetEntry>, Effect, Origin)>,
}

/// The effective, validated permissions.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    /// The file this was loaded from (`None` for the built-in default).
    pub source: Option<PathBuf>,
    /// The managed files that were present and merged in.
    pub managed: Vec<PathBuf>,
    pub files: Vec<FileGrant>,
    /// Mandatory denies inside every grant: built-in, manifest and managed.
    pub deny_paths: Vec<(String, Origin)>,
    pub network: Vec<NetEntry>,
    /// What happens to a destination no entry names.
    pub unknown_network: (Effect, Origin),
    /// TLS interception of the allowed `https` destinations (`[network] inspect`): `None`
    /// when no file turns it on.
    pub inspect: Option<Origin>,
    /// Certificate files (PEM) that real servers may be verified against beside the system's
    /// roots (`[network] ca_file`), each with where it was named.
    pub ca_files: Vec<(PathBuf, Origin)>,
    /// What a finding of the scanner in a request does, by its confidence (`[network.findings]`).
    pub findings: Findings,
    /// Secrets the agent never holds (`[[credentials]]`): it gets a placeholder, the proxy
    /// puts the secret in toward its destination.
    pub credentials: Vec<CredentialSpec>,
    /// The repositories `git push` over HTTP(S) may reach (`[network] git_push`); `None`: no
    /// rule of its own (a push is a request like any other); an empty list: none.
    pub git_push: Option<Vec<GitRepo>>,
    /// What happens to a program no exec rule names (`[exec] unknown`): allow by default, so
    /// exec rules deny or ask for the programs they name; `deny` makes the exec rules an
    /// allow-list.
    pub unknown_exec: (Effect, Origin),
    pub rules: Vec<Rule>,
    pub policies: Vec<PolicyRef>,
    pub limits: Limits,
    /// Kernel features `ward run` may go without (each is audited when it does); see
    /// [`DEGRADABLE`].
    pub allow_degraded: Vec<(String, Origin)>,
    /// Extra environment variable patterns removed before the agent starts (`env.scrub`, on top
    /// of the built-in list; a managed file's always apply).
    pub env_scrub: Vec<(String, Origin)>,
    /// Names the built-in list would remove that the agent keeps (`env.keep`); never beats an
    /// explicit `env.scrub`.
    pub env_keep: Vec<(String, Origin)>,
    /// Variables set for the agent (`env.set`), after the scrub: name, value, where set.
    pub env_set: Vec<(String, String, Origin)>,
    /// What the manifest's own `profile` key says (a profile's name, or `none`).
    pub profile_named: Option<(String, Origin)>,
    /// The agent profile merged in, when one applies.
    pub profile: Option<profile::Applied>,
    /// Device nodes granted explicitly (each asked for at the start of a session).
    pub devices: Vec<DeviceGrant>,
    /// What the managed file removed or narrowed, in words, for `ward manifest explain`.
    pub narrowed: Vec<String>,
    /// The managed files' limits, applied to every decision.
    pub ceilings: Vec<Ceiling>,
}

/// A repository `git push` may reach: its server and its path (`/acme/tool`, or a pattern
/// such as `/acme/*`), without `.git`.
#[derive(Debug, Clone, PartialEq)]
pub struct GitRepo {
    pub dest: Destination,
    pub path: crate::dest::PathPattern,
    pub origin: Origin,
}

impl GitRepo {
    pub fn shown(&self) -> String {
        format!("{}{}", self.dest, self.path.as_str())
    }
}

/// A smart-HTTP `git push` in a request: the repository's path (without `.git`), when the
/// request is one (`GET .../info/refs?service=git-receive-pack`, `POST .../git-receive-pack`),
/// read with its %-escapes undone as a server would (`git-receive%2Dpack` is a push).
pub fn git_push_repo(target: &str) -> Option<String> {
    let decoded = percent_decoded(target);
    let (path, query) = decoded.split_once('?').unwrap_or((&decoded, ""));
    let repo = match path.strip_suffix("/git-receive-pack") {
        Some(r) => r,
        None => {
            let r = path.strip_suffix("/info/refs")?;
            if !query
                .split('&')
                .any(|kv| kv.eq_ignore_ascii_case("service=git-receive-pack"))
            {
                return None;
            }
            r
        }
    };
    Some(repo.strip_suffix(".git").unwrap_or(repo).to_string())
}

/// `s` with every `%XX` decoded (bytes that are not UTF-8 shown as U+FFFD).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a credential's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A variable of the environment `ward run` starts in (`env:NAME`).
    Env(String),
    /// Ward's encrypted store (`store:NAME`, `ward secret set NAME`).
    Store(String),
    /// The desktop's keychain through the Secret Service API (`keychain:NAME`).
    Keychain(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(n) => write!(f, "env:{n}"),
            SecretSource::Store(n) => write!(f, "store:{n}"),
            SecretSource::Keychain(n) => write!(f, "keychain:{n}"),
        }
    }
}

/// Where in a request a credential goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// In this header's value (lower-case name), wherever the placeholder stands in it
    /// (`Authorization: Bearer <placeholder>`).
    Header(String),
    /// As this query parameter's value.
    Query(String),
    /// In `Authorization: Basic` (user or password).
    Basic,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Header(h) => write!(f, "header {h}"),
            Placement::Query(q) => write!(f, "query parameter {q}"),
            Placement::Basic => f.write_str("basic authentication"),
        }
    }
}

/// A credential the agent never holds: where its secret comes from, the variable the agent
/// finds its placeholder in, and the one place it may go.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialSpec {
    pub name: String,
    pub source: SecretSource,
    /// The agent's variable holding the placeholder (none: the agent is told another way).
    pub env: Option<String>,
    /// `https`, a host named exactly, a port.
    pub to: Destination,
    /// The path the request's must start with (`/` for any).
    pub path: String,
    pub placement: Placement,
    /// A secret that cannot be had leaves the credential out (the agent then gets no
    /// variable) instead of stopping the session: the agent profiles' entries, for people who
    /// sign in another way.
    pub optional: bool,
    /// Not in effect when `ward run` starts with any of these variables set (a base URL that
    /// sends the agent's requests elsewhere, with the key of that place).
    pub unless_env: Vec<String>,
    pub origin: Origin,
}

impl CredentialSpec {
    /// Whether a request to `scheme://host:port` + `path` is where this credential may go: the
    /// path plain (no `.`/`..` segment, `//` or escaped `.` `/` `\\`) and under the prefix at
    /// a segment's boundary (`/v1` takes in `/v1/x`, not `/v1evil`).
    pub fn goes_to(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        let Some(path) = crate::dest::plain_path(path) else {
            return false;
        };
        let under = match path.strip_prefix(self.path.as_str()) {
            Some(rest) => self.path.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        };
        self.to.matches(scheme, host, port) && under
    }
}

/// What a secret or personal data found in a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reaction {
    /// Let it through unrecorded.
    Allow,
    /// Let it through; the request's record carries the finding.
    Record,
    /// Ask the person; refused when nobody can answer.
    Ask,
    /// Refuse the request.
    Deny,
}

impl Reaction {
    pub const NAMES: &'static str = "deny, ask, record or allow";

    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::Allow => "allow",
            Reaction::Record => "record",
            Reaction::Ask => "ask",
            Reaction::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Reaction> {
        Some(match s {
            "allow" => Reaction::Allow,
            "record" => Reaction::Record,
            "ask" => Reaction::Ask,
            "deny" => Reaction::Deny,
            _ => return None,
        })
    }
}

/// [`Reaction`]s by a finding's confidence, each with where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    pub high: (Reaction, Origin),
    pub medium: (Reaction, Origin),
    pub low: (Reaction, Origin),
}

impl Default for Findings {
    /// A credential the rules are sure of is refused, a likely one asked about, a possible one
    /// recorded.
    fn default() -> Findings {
        Findings {
            high: (Reaction::Deny, Origin::Default),
            medium: (Reaction::Ask, Origin::Default),
            low: (Reaction::Record, Origin::Default),
        }
    }
}

impl Findings {
    /// The setting for `level` (`high`, `medium` or `low`).
    pub fn level_mut(&mut self, level: &str) -> Option<&mut (Reaction, Origin)> {
        match level {
            "high" => Some(&mut self.high),
            "medium" => Some(&mut self.medium),
            "low" => Some(&mut self.low),
            _ => None,
        }
    }

    pub fn levels(&self) -> [(&'static str, &(Reaction, Origin)); 3] {
        [
            ("high", &self.high),
            ("medium", &self.medium),
            ("low", &self.low),
        ]
    }
}

/// A service on this machine's loopback the manifest allows (see
/// [`Manifest::loopback_services`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LoopbackService {
    /// Where the sandbox listens for it (the same address and port as on this machine).
    pub listen: std::net::SocketAddr,
    pub scheme: String,
    /// The host as the manifest names it (`localhost`, or the address).
    pub host: crate::dest::HostPattern,
    pub origin: Origin,
}

/// A manifest problem, with the file, line and column it is at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), if *line > 0 { format!(":{line}:{column}") } else { String::new() })]
pub struct ManifestError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Manifest {
    /// Whether some network entry (the manifest's or a managed file's) names paths of
    /// `scheme://host:port`: its requests are then decided by path, and a tunnel to it that
    /// does not show them is refused.
    pub fn has_paths_at(&self, scheme: &str, host: &str, port: u16) -> bool {
        let at = |e: &NetEntry| e.path.is_some() && e.dest.matches(scheme, host, port);
        self.network.iter().any(at)
            || self
                .ceilings
                .iter()
                .any(|c| c.network.as_ref().is_some_and(|(n, _, _)| n.iter().any(at)))
    }

    /// Every `(scheme, host, port)` named with paths (for opening TLS to those in https).
    pub fn path_destinations(&self) -> Vec<&Destination> {
        self.network
            .iter()
            .chain(
                self.ceilings
                    .iter()
                    .filter_map(|c| c.network.as_ref())
                    .flat_map(|(n, _, _)| n.iter()),
            )
            .filter(|e| e.path.is_some())
            .map(|e| &e.dest)
            .collect()
    }

    /// Whether any rule or policy speaks to file writes or deletions (the review judges staged
    /// changes by them; direct grants hold what they deny read-only).
    pub fn has_file_rules(&self) -> bool {
        let speaks = |k: &crate::action::KindPattern| {
            k.matches(&crate::ActionKind::FileWrite) || k.matches(&crate::ActionKind::FileDelete)
        };
        self.rules.iter().any(|r| r.actions.iter().any(speaks))
            || self.policies.iter().any(|p| p.actions.iter().any(speaks))
    }

    /// Whether `ward run` checks every exec: an exec rule, a policy bound to exec, or a default
    /// other than allow for programs no rule names.
    pub fn exec_checked(&self) -> bool {
        let exec = crate::ActionKind::Exec;
        self.unknown_exec.0 != Effect::Allow
            || self
                .rules
                .iter()
                .any(|r| r.actions.iter().any(|k| k.matches(&exec)))
            || self
                .policies
                .iter()
                .any(|p| p.actions.iter().any(|k| k.matches(&exec)))
    }

    /// Load, validate and merge the managed file. The format follows the extension (`.json` is
    /// the seed's JSON form; anything else is TOML).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the manifest: {e}"),
        })?;
        Self::from_text(&text, path, opts)
    }

    /// Like [`Manifest::load`], with the text already read.
    pub fn from_text(
        text: &str,
        path: &Path,
        opts: &LoadOptions,
    ) -> Result<Manifest, ManifestError> {
        let json = path.extension().is_some_and(|e| e == "json");
        let mut m = validate::load_text(text, path, json, opts, false)?;
        profile::apply(&mut m, opts)?;
        managed::apply(&mut m, opts)?;
        Ok(m)
    }

    /// The built-in default: `dir` granted read-write staged, no network, nothing else.
    pub fn builtin_default(dir: &Path, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
        let mut m = validate::builtin_default(dir, opts)?;
        profile::apply(&mut m, opts)?;
        managed::apply(&mut m, opts)?;
        Ok(m)
    }

    /// A manifest that grants nothing (the base for `ward run --grant ...` without a manifest).
    pub fn empty(opts: &LoadOptions) -> Result<Manifest, ManifestError> {
        let mut m = validate::empty();
        profile::apply(&mut m, opts)?;
        managed::apply(&mut m, opts)?;
        Ok(m)
    }

    /// Add a grant written on the command line: `PATH` (read-write, staged), `PATH:ro`,
    /// `PATH:rw` or `PATH:direct` (read-write, straight to the folder). Relative paths are taken
    /// from `cwd`. The same checks as in a manifest apply, managed limits included.
    pub fn add_cli_grant(
        &mut self,
        spec: &str,
        cwd: &Path,
        opts: &LoadOptions,
    ) -> Result<(), ManifestError> {
        validate::cli_grant(self, spec, cwd, opts)
    }

    /// The services on this machine's loopback that `allow` entries name (`localhost`,
    /// `127.x.y.z`, `::1`): each is reachable inside the sandbox at the same address and port,
    /// where `ward run` listens and carries connections through the proxy's decisions. One per
    /// address and port (the first entry wins); `localhost` listens on 127.0.0.1 and ::1.
    pub fn loopback_services(&self) -> Vec<LoopbackService> {
        use crate::dest::HostPattern;
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let mut out: Vec<LoopbackService> = Vec::new();
        for e in self.network.iter().filter(|e| e.effect == Effect::Allow) {
            let addrs: Vec<IpAddr> = match &e.dest.host {
                HostPattern::Name(n) if n == "localhost" => {
                    vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
                }
                HostPattern::V4(a) if a.is_loopback() => vec![(*a).into()],
                HostPattern::V6(a) if a.is_loopback() => vec![(*a).into()],
                _ => continue,
            };
            for a in addrs {
                let listen = SocketAddr::new(a, e.dest.port);
                if !out.iter().any(|s| s.listen == listen) {
                    out.push(LoopbackService {
                        listen,
                        scheme: e.dest.scheme.clone(),
                        host: e.dest.host.clone(),
                        origin: e.origin.clone(),
                    });
                }
            }
        }
        out
    }

    /// The grant that covers `path` (already absolute and normalized), if any.
    pub fn grant_for(&self, path: &Path) -> Option<&FileGrant> {
        self.files.iter().find(|g| path.starts_with(&g.path))
    }

    /// A report of the effective permissions and where each came from.
    pub fn explain(&self) -> Explanation<'_> {
        Explanation(self)
    }
}

#[cfg(test)]
mod tests;

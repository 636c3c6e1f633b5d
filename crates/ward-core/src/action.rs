//! What an agent tries to do ([`Action`]) and what Ward answers ([`Decision`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kinds of action Ward decides on. `device.*` kinds carry the device class after the dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    FileRead,
    FileWrite,
    FileDelete,
    Exec,
    NetConnect,
    NetUpload,
    /// `device.<class>`, e.g. `device.camera`, `device.microphone`, `device.usb`.
    Device(String),
    ClipboardRead,
    ScreenCapture,
}

impl ActionKind {
    /// Every fixed kind, for help texts and validation messages (`device.*` stands for the family).
    pub const NAMES: &'static [&'static str] = &[
        "file.read",
        "file.write",
        "file.delete",
        "exec",
        "net.connect",
        "net.upload",
        "device.*",
        "clipboard.read",
        "screen.capture",
    ];

    pub fn as_str(&self) -> String {
        match self {
            ActionKind::FileRead => "file.read".into(),
            ActionKind::FileWrite => "file.write".into(),
            ActionKind::FileDelete => "file.delete".into(),
            ActionKind::Exec => "exec".into(),
            ActionKind::NetConnect => "net.connect".into(),
            ActionKind::NetUpload => "net.upload".into(),
            ActionKind::Device(class) => format!("device.{class}"),
            ActionKind::ClipboardRead => "clipboard.read".into(),
            ActionKind::ScreenCapture => "screen.capture".into(),
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(
            self,
            ActionKind::FileRead | ActionKind::FileWrite | ActionKind::FileDelete
        )
    }

    pub fn is_net(&self) -> bool {
        matches!(self, ActionKind::NetConnect | ActionKind::NetUpload)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The error for a kind name Ward does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action kind `{0}` (known: {known})", known = ActionKind::NAMES.join(", "))]
pub struct UnknownKind(pub String);

impl FromStr for ActionKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "file.read" => ActionKind::FileRead,
            "file.write" => ActionKind::FileWrite,
            "file.delete" => ActionKind::FileDelete,
            "exec" => ActionKind::Exec,
            "net.connect" => ActionKind::NetConnect,
            "net.upload" => ActionKind::NetUpload,
            "clipboard.read" => ActionKind::ClipboardRead,
            "screen.capture" => ActionKind::ScreenCapture,
            _ => match s.strip_prefix("device.") {
                Some(class)
                    if !class.is_empty()
                        && class
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
                {
                    ActionKind::Device(class.to_string())
                }
                _ => return Err(UnknownKind(s.to_string())),
            },
        })
    }
}

/// A pattern over action kinds as written in rules: an exact kind, `device.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindPattern {
    Exact(ActionKind),
    AnyDevice,
    Any,
}

impl KindPattern {
    pub fn parse(s: &str) -> Result<Self, UnknownKind> {
        match s {
            "*" => Ok(KindPattern::Any),
            "device.*" => Ok(KindPattern::AnyDevice),
            _ => s.parse().map(KindPattern::Exact),
        }
    }

    pub fn matches(&self, kind: &ActionKind) -> bool {
        match self {
            KindPattern::Any => true,
            KindPattern::AnyDevice => matches!(kind, ActionKind::Device(_)),
            KindPattern::Exact(k) => k == kind,
        }
    }
}

impl Serialize for ActionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One thing an agent attempts. Serialized as the Rego input document, so the seed's policy
/// reads `input.dest` and `input.size` for an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub kind: ActionKind,
    /// The path, command line, device or URL acted on. For network actions, the URL or host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Destination host for network actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Destination port for network actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// URL scheme for network actions (`https` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Bytes involved (upload body, file size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Which agent acts, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// For `exec`: the command line (the program's arguments, its own name first), in the
    /// canonical form of [`crate::command`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// For `exec`: other names the program was reached by (the path as invoked, before links
    /// were followed); rules match `resource` or any of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Action {
    pub fn new(kind: ActionKind, resource: impl Into<String>) -> Self {
        Action {
            kind,
            resource: resource.into(),
            dest: None,
            port: None,
            scheme: None,
            size: None,
            agent: None,
            argv: Vec::new(),
            names: Vec::new(),
        }
    }

    /// An upload of `size` bytes to `dest` (https, port 443).
    pub fn upload(dest: &str, size: u64) -> Self {
        Action {
            dest: Some(dest.to_string()),
            size: Some(size),
            ..Action::new(ActionKind::NetUpload, format!("https://{dest}/"))
        }
    }
}

/// Allow, ask the user, or deny. Ordered so that `max` is the stricter: deny > ask > allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Ask,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Ask => "ask",
            Effect::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Effect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Effect::Allow),
            "ask" => Ok(Effect::Ask),
            "deny" => Ok(Effect::Deny),
            other => Err(format!(
                "unknown effect `{other}` (expected allow, ask or deny)"
            )),
        }
    }
}

/// The kinds of record Ward writes that are not decisions on an action (those carry the
/// action's kind, [`ActionKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A session began (its grants, limits and confinement).
    SessionStart,
    /// A session ended (exit status, counts, limits reached).
    SessionExit,
    /// The kill switch ended a session.
    SessionKill,
    /// Files or sockets that appeared during a session and were not covered.
    SessionUncovered,
    /// A repository created, replaced or moved in a writable grant.
    SessionNewRepository,
    /// A system call the sandbox denies.
    SandboxDenied,
    /// A limit was reached.
    SandboxLimit,
    /// A file the sandbox hides (always denied, or denied by the manifest) that a program
    /// inside opened: it read nothing (an empty file), and the person is told.
    SandboxHidden,
    /// A direct connection or DNS query past the proxy.
    NetDirect,
    /// A destination the decision allowed could not be reached (its name did not resolve).
    NetFailed,
    /// A tunnel ended (its bytes and duration).
    NetClose,
    /// A plain HTTP request forwarded (its sizes and status).
    NetRequest,
    /// Terminal output that reached beyond the agent's screen, dropped.
    TerminalFiltered,
    /// A staged change approved by a person.
    ReviewApprove,
    /// A batch of approved changes applied.
    ReviewApplied,
    /// A staged change held back (conflict, refused, a file rule).
    ReviewHeld,
    /// A staged change that runs code, or that a rule asks about, held.
    ReviewFlagged,
    /// A staged change discarded.
    ReviewDiscard,
    /// Staged changes kept for later.
    ReviewKeep,
    /// A review refused (the grant's token).
    ReviewRefused,
    /// A capability token issued.
    TokenIssue,
    /// A capability token revoked.
    TokenRevoke,
    /// A grant's token rotated after a commit.
    TokenRotate,
    /// A secret set in Ward's store or the keychain (`ward secret set`; its name only).
    SecretSet,
    /// A secret removed (`ward secret rm`).
    SecretRemove,
    /// An "always" answer added a rule to the manifest.
    ManifestRuleAdded,
    /// An "always" answer could not be written.
    ManifestRuleRefused,
    /// `ward proxy` started.
    ProxyStart,
    /// `ward proxy` stopped.
    ProxyStop,
    /// The audit log was opened.
    AuditOpen,
    /// A torn tail of the log was recovered.
    AuditRecovered,
    /// A signed checkpoint.
    AuditCheckpoint,
}

impl EventKind {
    pub const ALL: &'static [EventKind] = &[
        EventKind::SessionStart,
        EventKind::SessionExit,
        EventKind::SessionKill,
        EventKind::SessionUncovered,
        EventKind::SessionNewRepository,
        EventKind::SandboxDenied,
        EventKind::SandboxLimit,
        EventKind::SandboxHidden,
        EventKind::NetDirect,
        EventKind::NetFailed,
        EventKind::NetClose,
        EventKind::NetRequest,
        EventKind::TerminalFiltered,
        EventKind::ReviewApprove,
        EventKind::ReviewApplied,
        EventKind::ReviewHeld,
        EventKind::ReviewFlagged,
        EventKind::ReviewDiscard,
        EventKind::ReviewKeep,
        EventKind::ReviewRefused,
        EventKind::TokenIssue,
        EventKind::TokenRevoke,
        EventKind::TokenRotate,
        EventKind::SecretSet,
        EventKind::SecretRemove,
        EventKind::ManifestRuleAdded,
        EventKind::ManifestRuleRefused,
        EventKind::ProxyStart,
        EventKind::ProxyStop,
        EventKind::AuditOpen,
        EventKind::AuditRecovered,
        EventKind::AuditCheckpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionStart => "session.start",
            EventKind::SessionExit => "session.exit",
            EventKind::SessionKill => "session.kill",
            EventKind::SessionUncovered => "session.uncovered",
            EventKind::SessionNewRepository => "session.new_repository",
            EventKind::SandboxDenied => "sandbox.denied",
            EventKind::SandboxLimit => "sandbox.limit",
            EventKind::SandboxHidden => "sandbox.hidden",
            EventKind::NetDirect => "net.direct",
            EventKind::NetFailed => "net.failed",
            EventKind::NetClose => "net.close",
            EventKind::NetRequest => "net.request",
            EventKind::TerminalFiltered => "terminal.filtered",
            EventKind::ReviewApprove => "review.approve",
            EventKind::ReviewApplied => "review.applied",
            EventKind::ReviewHeld => "review.held",
            EventKind::ReviewFlagged => "review.flagged",
            EventKind::ReviewDiscard => "review.discard",
            EventKind::ReviewKeep => "review.keep",
            EventKind::ReviewRefused => "review.refused",
            EventKind::TokenIssue => "token.issue",
            EventKind::TokenRevoke => "token.revoke",
            EventKind::TokenRotate => "token.rotate",
            EventKind::SecretSet => "secret.set",
            EventKind::SecretRemove => "secret.remove",
            EventKind::ManifestRuleAdded => "manifest.rule_added",
            EventKind::ManifestRuleRefused => "manifest.rule_refused",
            EventKind::ProxyStart => "proxy.start",
            EventKind::ProxyStop => "proxy.stop",
            EventKind::AuditOpen => "audit.open",
            EventKind::AuditRecovered => "audit.recovered",
            EventKind::AuditCheckpoint => "audit.checkpoint",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a decision came from: the first part of [`By`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A line of the user's manifest (or of a managed file): `manifest:FILE:LINE:COL`.
    Manifest,
    /// A Rego policy: `policy:FILE#RULE`.
    Policy,
    /// A managed file's bound on what the manifest may grant: `managed`.
    Managed,
    /// Nothing in the manifest spoke: `default`.
    Default,
    /// One of Ward's own checks: `builtin:NAME` (`ssrf`, `dns`, `audit`, `token`, ...).
    Builtin,
    /// The kernel sandbox refused it: `sandbox:NAME` (`seccomp`, `network`, `cgroup`, ...).
    Sandbox,
    /// The terminal relay: `terminal:relay`.
    Terminal,
    /// A person, answering: `person:NAME`.
    Person,
    /// The session's own bookkeeping (a tunnel's end, a request forwarded): `session`.
    Session,
}

impl Source {
    pub const ALL: [Source; 9] = [
        Source::Manifest,
        Source::Policy,
        Source::Managed,
        Source::Default,
        Source::Builtin,
        Source::Sandbox,
        Source::Terminal,
        Source::Person,
        Source::Session,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manifest => "manifest",
            Source::Policy => "policy",
            Source::Managed => "managed",
            Source::Default => "default",
            Source::Builtin => "builtin",
            Source::Sandbox => "sandbox",
            Source::Terminal => "terminal",
            Source::Person => "person",
            Source::Session => "session",
        }
    }
}

/// Who decided, in one grammar: `SOURCE` or `SOURCE:DETAIL` (`manifest:ward.toml:12:1`,
/// `policy:p.rego#data.x.allow`, `builtin:ssrf`, `sandbox:seccomp`, `person:alice`,
/// `default`). Recorded as that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct By {
    pub source: Source,
    pub detail: Option<String>,
}

impl By {
    fn with(source: Source, detail: impl fmt::Display) -> By {
        By {
            source,
            detail: Some(detail.to_string()),
        }
    }
    /// A manifest line, by its origin (`FILE:LINE:COL`).
    pub fn manifest(origin: impl fmt::Display) -> By {
        By::with(Source::Manifest, origin)
    }
    pub fn policy(file: impl fmt::Display, rule: &str) -> By {
        By::with(Source::Policy, format!("{file}#{rule}"))
    }
    pub fn builtin(name: &str) -> By {
        By::with(Source::Builtin, name)
    }
    pub fn sandbox(name: &str) -> By {
        By::with(Source::Sandbox, name)
    }
    pub fn terminal(name: &str) -> By {
        By::with(Source::Terminal, name)
    }
    pub fn person(who: &str) -> By {
        By::with(Source::Person, who)
    }
    pub fn managed() -> By {
        By {
            source: Source::Managed,
            detail: None,
        }
    }
    pub fn default_rule() -> By {
        By {
            source: Source::Default,
            detail: None,
        }
    }
    pub fn session() -> By {
        By {
            source: Source::Session,
            detail: None,
        }
    }
}

impl fmt::Display for By {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{}:{d}", self.source.as_str()),
            None => f.write_str(self.source.as_str()),
        }
    }
}

/// The error for a `by` that is not in the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` does not say who decided (expected manifest:, policy:, builtin:, sandbox:, terminal:, person:, managed, default or session)")]
pub struct BadBy(pub String);

impl FromStr for By {
    type Err = BadBy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Records before the one grammar wrote `sandbox.seccomp` and `terminal.relay`.
        let (head, detail) = match s.split_once(':') {
            Some((h, d)) => (h, Some(d)),
            None => match s.split_once('.') {
                Some((h @ ("sandbox" | "terminal"), d)) => (h, Some(d)),
                _ => (s, None),
            },
        };
        let source = Source::ALL
            .into_iter()
            .find(|x| x.as_str() == head)
            .ok_or_else(|| BadBy(s.to_string()))?;
        Ok(By {
            source,
            detail: detail.map(str::to_string),
        })
    }
}

impl Serialize for By {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for By {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl PartialEq<str> for By {
    fn eq(&self, other: &str) -> bool {
        other.parse::<By>().is_ok_and(|o| o == *self)
    }
}

impl PartialEq<String> for By {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl PartialEq<&str> for By {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

/// The answer to an [`Action`], always with what decided it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    /// Which rule, policy or check decided (see [`By`]).
    pub by: By,
    /// A sentence a person can read.
    pub reason: String,
}

impl Decision {
    pub fn new(effect: Effect, by: By, reason: impl Into<String>) -> Self {
        Decision {
            effect,
            by,
            reason: reason.into(),
        }
    }
}

/// What asking a person came to, recorded beside the decision (`consent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Consented {
    /// The person allowed it (for this session).
    Granted,
    /// The person allowed it for good: a rule was added to their manifest.
    Always,
    /// The person refused.
    Refused,
    /// Answered earlier this session; the answer stands.
    Remembered,
    /// Nobody answered in time: refused.
    TimedOut,
    /// The channel could not ask (the terminal went away): refused.
    Unavailable,
    /// No channel to ask on (no terminal, no console): refused.
    NobodyToAsk,
    /// Too many questions already waiting: refused.
    TooMany,
}

impl Consented {
    pub fn as_str(self) -> &'static str {
        match self {
            Consented::Granted => "granted",
            Consented::Always => "always",
            Consented::Refused => "refused",
            Consented::Remembered => "remembered",
            Consented::TimedOut => "timeout",
            Consented::Unavailable => "unavailable",
            Consented::NobodyToAsk => "nobody to ask",
            Consented::TooMany => "too many questions waiting",
        }
    }
}

impl fmt::Display for Consented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for name in ActionKind::NAMES.iter().filter(|n| !n.ends_with('*')) {
            let kind: ActionKind = name.parse().unwrap();
            assert_eq!(&kind.as_str(), name);
        }
        assert_eq!(
            "device.camera".parse::<ActionKind>().unwrap(),
            ActionKind::Device("camera".into())
        );
        assert!("device.".parse::<ActionKind>().is_err());
        assert!("device.Cam era".parse::<ActionKind>().is_err());
        assert!("file.execute".parse::<ActionKind>().is_err());
    }

    #[test]
    fn event_kinds_are_distinct_and_not_action_kinds() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.as_str()), "{k} twice");
            assert!(
                k.as_str().parse::<ActionKind>().is_err(),
                "{k} is an action kind"
            );
        }
    }

    #[test]
    fn who_decided_has_one_grammar() {
        for s in [
            "manifest:/w/ward.toml:12:1",
            "policy:p.rego#data.x.allow",
            "builtin:ssrf",
            "sandbox:seccomp",
            "person:alice",
            "default",
            "managed",
            "session",
        ] {
            let by: By = s.parse().unwrap();
            assert_eq!(by.to_string(), s);
        }
        assert_eq!(
            "sandbox.network".parse::<By>().unwrap(),
            By::sandbox("network")
        );
        assert!("somebody".parse::<By>().is_err());
        assert_eq!(By::builtin("dns"), "builtin:dns");
    }

    #[test]
    fn effect_order_is_deny_over_ask_over_allow() {
        assert_eq!(Effect::Allow.max(Effect::Ask), Effect::Ask);
        assert_eq!(Effect::Ask.max(Effect::Deny), Effect::Deny);
        assert_eq!(Effect::Deny.max(Effect::Allow), Effect::Deny);
    }

    #[test]
    fn upload_action_serializes_like_the_seed_input() {
        let v = serde_json::to_value(Action::upload("uploads.acme.com", 5)).unwrap();
        assert_eq!(v["kind"], "net.upload");
        assert_eq!(v["dest"], "uploads.acme.com");
        assert_eq!(v["size"], 5);
    }
}

//! The manifest as written: TOML (native) or the seed's JSON, parsed into one positioned form.

use crate::jsonpos::{self, Seg};
use serde::Deserialize;
use toml::Spanned;

/// 1-based line and column in the manifest text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub value: T,
    pub pos: Pos,
}

#[derive(Debug, Default)]
pub struct Doc {
    pub name: Option<At<String>>,
    pub files: Vec<FileDoc>,
    pub deny_paths: Vec<At<String>>,
    pub network: Option<NetworkDoc>,
    /// `[exec] unknown`: what happens to a program no rule names.
    pub exec_unknown: Option<At<String>>,
    pub rules: Vec<RuleDoc>,
    pub policies: Vec<PolicyDoc>,
    pub limits: LimitsDoc,
    pub allow_degraded: Vec<At<String>>,
    pub env_scrub: Vec<At<String>>,
    pub env_keep: Vec<At<String>>,
    /// `[env] set`: variables the agent gets, name and value (the position is the name's).
    pub env_set: Vec<(At<String>, String)>,
    /// `profile = "NAME"` (or `"none"`): the agent profile this manifest runs its agent under.
    pub profile: Option<At<String>>,
    /// `[[devices]]`: device nodes granted explicitly (GPU render nodes, cameras).
    pub devices: Vec<DeviceDoc>,
    /// `[[credentials]]`: secrets the agent gets placeholders for.
    pub credentials: Vec<CredentialDoc>,
}

#[derive(Debug)]
pub struct CredentialDoc {
    pub name: At<String>,
    pub secret: At<String>,
    pub env: Option<At<String>>,
    pub to: At<String>,
    pub header: Option<At<String>>,
    pub query: Option<At<String>>,
    pub basic: Option<At<bool>>,
    pub optional: Option<At<bool>>,
    pub unless_env: Vec<At<String>>,
}

#[derive(Debug)]
pub struct DeviceDoc {
    pub path: At<String>,
    pub reason: Option<String>,
}

#[derive(Debug)]
pub struct FileDoc {
    pub path: At<String>,
    pub access: Option<At<String>>,
    pub mode: Option<At<String>>,
    pub deny: Vec<At<String>>,
}

#[derive(Debug, Default)]
pub struct NetworkDoc {
    pub allow: Vec<At<String>>,
    pub ask: Vec<At<String>>,
    pub deny: Vec<At<String>>,
    pub unknown: Option<At<String>>,
    /// `inspect`: TLS interception of allowed `https` destinations.
    pub inspect: Option<At<bool>>,
    /// `ca_file`: certificates (PEM) that real servers may be verified against, beside the
    /// system's roots.
    pub ca_file: Option<At<String>>,
    /// `findings`: what a secret or personal data found in a request does, by the finding's
    /// confidence (`high`, `medium`, `low`).
    pub findings: Vec<(&'static str, At<String>)>,
    /// `git_push`: the repositories `git push` over HTTP may reach (`[]`: none).
    pub git_push: Option<Vec<At<String>>>,
}

#[derive(Debug)]
pub struct RuleDoc {
    pub actions: Vec<At<String>>,
    pub effect: At<String>,
    pub resource: Option<At<String>>,
    pub reason: Option<String>,
    pub pos: Pos,
}

#[derive(Debug)]
pub struct PolicyDoc {
    pub path: At<String>,
    pub rule: At<String>,
    pub actions: Vec<At<String>>,
    pub pos: Pos,
}

#[derive(Debug, Default)]
pub struct LimitsDoc {
    pub memory: Option<At<SizeValue>>,
    pub pids: Option<At<i64>>,
    pub cpu: Option<At<f64>>,
    pub upload: Option<At<SizeValue>>,
    pub tmp: Option<At<SizeValue>>,
    pub shm: Option<At<SizeValue>>,
    pub stage: Option<At<SizeValue>>,
    pub stage_entries: Option<At<i64>>,
}

/// A size written as a number of bytes or as a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A syntax-level problem: where, and what the parser said.
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

// ---- TOML ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlDoc {
    name: Option<Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<TomlFile>>,
    #[serde(default)]
    deny_paths: Vec<Spanned<String>>,
    network: Option<TomlNetwork>,
    exec: Option<TomlExec>,
    #[serde(default)]
    rules: Vec<Spanned<TomlRule>>,
    #[serde(default)]
    policies: Vec<Spanned<TomlPolicy>>,
    #[serde(default)]
    limits: TomlLimits,
    #[serde(default)]
    allow_degraded: Vec<Spanned<String>>,
    env: Option<TomlEnv>,
    #[serde(default)]
    devices: Vec<TomlDevice>,
    profile: Option<Spanned<String>>,
    #[serde(default)]
    credentials: Vec<TomlCredential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCredential {
    name: Spanned<String>,
    secret: Spanned<String>,
    env: Option<Spanned<String>>,
    to: Spanned<String>,
    header: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    basic: Option<Spanned<bool>>,
    optional: Option<Spanned<bool>>,
    #[serde(default)]
    unless_env: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlDevice {
    path: Spanned<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEnv {
    #[serde(default)]
    scrub: Vec<Spanned<String>>,
    #[serde(default)]
    keep: Vec<Spanned<String>>,
    #[serde(default)]
    set: toml::map::Map<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    path: Spanned<String>,
    access: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlNetwork {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    ask: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    unknown: Option<Spanned<String>>,
    inspect: Option<Spanned<bool>>,
    ca_file: Option<Spanned<String>>,
    findings: Option<TomlFindings>,
    git_push: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFindings {
    high: Option<Spanned<String>>,
    medium: Option<Spanned<String>>,
    low: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlExec {
    unknown: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlRule {
    /// One kind or a list of kinds. Untagged enums lose spans in toml, so this is read as a value.
    action: Spanned<toml::Value>,
    effect: Spanned<String>,
    resource: Option<Spanned<String>>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlPolicy {
    path: Spanned<String>,
    rule: Spanned<String>,
    actions: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TomlLimits {
    memory: Option<Spanned<SizeValue>>,
    pids: Option<Spanned<i64>>,
    cpu: Option<Spanned<f64>>,
    upload: Option<Spanned<SizeValue>>,
    tmp: Option<Spanned<SizeValue>>,
    shm: Option<Spanned<SizeValue>>,
    stage: Option<Spanned<SizeValue>>,
    stage_entries: Option<Spanned<i64>>,
}

/// A TOML value with the line and column it was written at.
fn spanned<T>(src: &str, s: Spanned<T>) -> At<T> {
    At {
        pos: pos_of(src, s.span().start),
        value: s.into_inner(),
    }
}

pub fn parse_toml(src: &str) -> Result<Doc, SyntaxError> {
    let doc: TomlDoc = toml::from_str(src).map_err(|e| SyntaxError {
        pos: pos_of(src, e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_string(),
    })?;
    let at = |s: Spanned<String>| spanned(src, s);
    let list = |v: Vec<Spanned<String>>| v.into_iter().map(at).collect::<Vec<_>>();
    let (env_scrub, env_keep, env_set_raw) = match doc.env {
        Some(e) => (Some(e.scrub), Some(e.keep), e.set),
        None => (None, None, toml::map::Map::new()),
    };
    // Table keys carry no span in the toml crate: each name is found in the `[env]` table's
    // text, for the error message's position.
    let env_at = src.find("[env]").unwrap_or(0);
    let mut env_set = Vec::new();
    for (name, value) in env_set_raw {
        let pos = pos_of(
            src,
            src[env_at..]
                .find(name.as_str())
                .map_or(env_at, |i| env_at + i),
        );
        let toml::Value::String(value) = value else {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "`env.set.{name}` is a {}; a variable's value is a string",
                    value.type_str()
                ),
            });
        };
        env_set.push((At { value: name, pos }, value));
    }
    Ok(Doc {
        name: doc.name.map(at),
        files: doc
            .files
            .into_iter()
            .map(|f| {
                let f = f.into_inner();
                FileDoc {
                    path: at(f.path),
                    access: f.access.map(at),
                    mode: f.mode.map(at),
                    deny: list(f.deny),
                }
            })
            .collect(),
        deny_paths: list(doc.deny_paths),
        network: doc.network.map(|n| NetworkDoc {
            allow: list(n.allow),
            ask: list(n.ask),
            deny: list(n.deny),
            unknown: n.unknown.map(at),
            inspect: n.inspect.map(|s| spanned(src, s)),
            ca_file: n.ca_file.map(at),
            findings: n
                .findings
                .map(|f| {
                    [("high", f.high), ("medium", f.medium), ("low", f.low)]
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, at(v))))
                        .collect()
                })
                .unwrap_or_default(),
            git_push: n.git_push.map(list),
        }),
        exec_unknown: doc.exec.and_then(|e| e.unknown).map(at),
        devices: doc
            .devices
            .into_iter()
            .map(|d| DeviceDoc {
                path: at(d.path),
                reason: d.reason,
            })
            .collect(),
        credentials: doc
            .credentials
            .into_iter()
            .map(|c| CredentialDoc {
                name: at(c.name),
                secret: at(c.secret),
                env: c.env.map(at),
                to: at(c.to),
                header: c.header.map(at),
                query: c.query.map(at),
                basic: c.basic.map(|b| spanned(src, b)),
                optional: c.optional.map(|b| spanned(src, b)),
                unless_env: list(c.unless_env),
            })
            .collect(),
        rules: doc
            .rules
            .into_iter()
            .map(|r| {
                let pos = pos_of(src, r.span().start);
                let r = r.into_inner();
                let apos = pos_of(src, r.action.span().start);
                let items = match r.action.into_inner() {
                    toml::Value::String(s) => vec![toml::Value::String(s)],
                    toml::Value::Array(v) => v,
                    other => vec![other],
                };
                let mut actions = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(value) => actions.push(At { value, pos: apos }),
                        other => {
                            return Err(SyntaxError {
                                pos: apos,
                                message: format!(
                                    "invalid type: {}, expected an action kind or a list of them",
                                    other.type_str()
                                ),
                            })
                        }
                    }
                }
                Ok(RuleDoc {
                    actions,
                    effect: at(r.effect),
                    resource: r.resource.map(at),
                    reason: r.reason,
                    pos,
                })
            })
            .collect::<Result<_, _>>()?,
        policies: doc
            .policies
            .into_iter()
            .map(|p| {
                let pos = pos_of(src, p.span().start);
                let p = p.into_inner();
                PolicyDoc {
                    path: at(p.path),
                    rule: at(p.rule),
                    actions: list(p.actions),
                    pos,
                }
            })
            .collect(),
        limits: LimitsDoc {
            memory: doc.limits.memory.map(|s| spanned(src, s)),
            pids: doc.limits.pids.map(|s| spanned(src, s)),
            cpu: doc.limits.cpu.map(|s| spanned(src, s)),
            upload: doc.limits.upload.map(|s| spanned(src, s)),
            tmp: doc.limits.tmp.map(|s| spanned(src, s)),
            shm: doc.limits.shm.map(|s| spanned(src, s)),
            stage: doc.limits.stage.map(|s| spanned(src, s)),
            stage_entries: doc.limits.stage_entries.map(|s| spanned(src, s)),
        },
        allow_degraded: list(doc.allow_degraded),
        env_scrub: env_scrub.map_or(vec![], list),
        env_keep: env_keep.map_or(vec![], list),
        env_set,
        profile: doc.profile.map(at),
    })
}

fn pos_of(src: &str, offset: usize) -> Pos {
    let (line, column) = jsonpos::line_col(src, offset);
    Pos { line, column }
}

// ---- JSON (the seed's form) -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDoc {
    name: Option<String>,
    permissions: Option<JsonPermissions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPermissions {
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    network: Vec<String>,
}

pub fn parse_json(src: &str) -> Result<Doc, SyntaxError> {
    let doc: JsonDoc = serde_json::from_str(src).map_err(|e| {
        let msg = e.to_string();
        let message = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        SyntaxError {
            pos: Pos {
                line: e.line().max(1),
                column: e.column().max(1),
            },
            message,
        }
    })?;
    let find = |path: &[Seg]| {
        jsonpos::locate(src, path).map_or(Pos { line: 1, column: 1 }, |o| pos_of(src, o))
    };
    let name = doc.name.map(|n| At {
        value: n,
        pos: find(&[Seg::Key("name")]),
    });
    let perms = doc.permissions.unwrap_or(JsonPermissions {
        files: vec![],
        network: vec![],
    });
    let files = perms
        .files
        .into_iter()
        .enumerate()
        .map(|(i, p)| FileDoc {
            path: At {
                value: p,
                pos: find(&[Seg::Key("permissions"), Seg::Key("files"), Seg::Index(i)]),
            },
            access: None,
            mode: None,
            deny: vec![],
        })
        .collect();
    let network = NetworkDoc {
        allow: perms
            .network
            .into_iter()
            .enumerate()
            .map(|(i, d)| At {
                value: d,
                pos: find(&[Seg::Key("permissions"), Seg::Key("network"), Seg::Index(i)]),
            })
            .collect(),
        ..NetworkDoc::default()
    };
    Ok(Doc {
        name,
        files,
        network: Some(network),
        ..Doc::default()
    })
}

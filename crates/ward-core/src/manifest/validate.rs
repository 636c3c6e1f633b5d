//! From the written form to a validated [`Manifest`]: every check a person can fail, each with
//! the file, line and column.

use super::raw::{self, At, Doc, Pos, SizeValue};
use super::{
    Access, CredentialSpec, DeviceGrant, FileGrant, Findings, Limits, LoadOptions, Manifest,
    ManifestError, Mode, NetEntry, Origin, Placement, PolicyRef, Reaction, Rule, SecretSource,
    BUILTIN_DENIES,
};
use crate::action::{Effect, KindPattern};
use crate::dest::Destination;
use crate::size::parse_size;
use std::path::{Component, Path, PathBuf};

pub(super) struct Ctx<'a> {
    pub file: &'a Path,
    pub managed: bool,
    /// Loading a built-in agent profile of this name.
    pub profile: Option<&'a str>,
}

impl Ctx<'_> {
    pub fn err(&self, pos: Pos, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    pub fn origin(&self, pos: Pos) -> Origin {
        if let Some(name) = self.profile {
            return Origin::Profile {
                name: name.to_string(),
                line: pos.line,
            };
        }
        Origin::File {
            path: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            managed: self.managed,
        }
    }
}

pub(super) fn load_text(
    text: &str,
    file: &Path,
    json: bool,
    opts: &LoadOptions,
    managed: bool,
) -> Result<Manifest, ManifestError> {
    let cx = Ctx {
        file,
        managed,
        profile: None,
    };
    let doc = if json {
        raw::parse_json(text)
    } else {
        raw::parse_toml(text)
    }
    .map_err(|e| cx.err(e.pos, e.message))?;
    build(doc, &cx, opts)
}

pub(super) fn builtin_default(dir: &Path, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
    let cx = Ctx {
        file: Path::new("<built-in default>"),
        managed: false,
        profile: None,
    };
    let path = dir.canonicalize().map_err(|e| {
        cx.err(
            Pos::default(),
            format!("cannot use the current directory {}: {e}", dir.display()),
        )
    })?;
    check_sensitive(
        &path,
        &path.display().to_string(),
        Pos::default(),
        &cx,
        opts,
    )?;
    Ok(Manifest {
        name: "default".into(),
        files: vec![FileGrant {
            path,
            access: Access::ReadWrite,
            mode: Mode::Staged,
            deny: vec![],
            origin: Origin::Builtin,
        }],
        ..empty()
    })
}

pub(super) fn empty() -> Manifest {
    Manifest {
        name: "command line".into(),
        source: None,
        managed: vec![],
        files: vec![],
        deny_paths: builtin_denies(),
        network: vec![],
        unknown_network: (Effect::Deny, Origin::Default),
        inspect: None,
        ca_files: vec![],
        findings: Findings::default(),
        credentials: vec![],
        git_push: None,
        unknown_exec: (Effect::Allow, Origin::Default),
        rules: vec![],
        policies: vec![],
        limits: Limits::default(),
        allow_degraded: vec![],
        env_scrub: vec![],
        env_keep: vec![],
        env_set: vec![],
        profile_named: None,
        profile: None,
        devices: vec![],
        narrowed: vec![],
        ceilings: vec![],
    }
}

pub(super) fn cli_grant(
    m: &mut Manifest,
    spec: &str,
    cwd: &Path,
    opts: &LoadOptions,
) -> Result<(), ManifestError> {
    let cx = Ctx {
        file: Path::new("--grant"),
        managed: false,
        profile: None,
    };
    let (path, suffix) = match spec.rsplit_once(':') {
        Some((p, s)) if matches!(s, "ro" | "rw" | "direct") => (p, Some(s)),
        _ => (spec, None),
    };
    let (access, mode) = match suffix {
        Some("ro") => (Access::Read, Mode::Staged),
        Some("direct") => (Access::ReadWrite, Mode::Direct),
        _ => (Access::ReadWrite, Mode::Staged),
    };
    let written = if path.starts_with('/') || path.starts_with('~') {
        path.to_string()
    } else {
        cwd.join(path).to_string_lossy().into_owned()
    };
    let at = At {
        value: written,
        pos: Pos::default(),
    };
    let p = grant_path(&at, &cx, opts)?;
    if let Some(other) = m
        .files
        .iter()
        .find(|g| p.starts_with(&g.path) || g.path.starts_with(&p))
    {
        return Err(cx.err(
            Pos::default(),
            format!(
                "grant `{}` overlaps the grant `{}` ({}): grants must not nest",
                p.display(),
                other.path.display(),
                other.origin
            ),
        ));
    }
    // A command-line grant is held under the managed files' limits like any other: inside one
    // of their folders, with no more access and no less review than it gives.
    let (mut access, mut mode) = (access, mode);
    for c in &m.ceilings {
        if let Some(allowed) = &c.files {
            let Some(a) = allowed.iter().find(|a| p.starts_with(&a.path)) else {
                return Err(cx.err(
                    Pos::default(),
                    format!(
                        "`{}` is outside every folder the managed file {} allows",
                        p.display(),
                        c.source.display()
                    ),
                ));
            };
            access = access.min(a.access);
            mode = mode.min(a.mode);
        }
    }
    m.files.push(FileGrant {
        path: p,
        access,
        mode,
        deny: vec![],
        origin: Origin::CommandLine,
    });
    Ok(())
}

fn builtin_denies() -> Vec<(String, Origin)> {
    BUILTIN_DENIES
        .iter()
        .map(|p| (p.to_string(), Origin::Builtin))
        .collect()
}

pub(super) fn build(doc: Doc, cx: &Ctx, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
    let name = match doc.name {
        Some(n) if n.value.trim().is_empty() => return Err(cx.err(n.pos, "`name` is empty")),
        Some(n) => n.value,
        None => cx
            .file
            .file_stem()
            .map_or("manifest".into(), |s| s.to_string_lossy().into_owned()),
    };

    let mut files: Vec<(FileGrant, Pos)> = Vec::new();
    for f in doc.files {
        let access = match f.access.as_ref().map(|a| a.value.as_str()) {
            None | Some("read-write") => Access::ReadWrite,
            Some("read") => Access::Read,
            Some(other) => {
                return Err(cx.err(
                    f.access.as_ref().map_or(f.path.pos, |a| a.pos),
                    format!("unknown access `{other}` (expected `read` or `read-write`)"),
                ))
            }
        };
        let mode = match f.mode.as_ref().map(|a| a.value.as_str()) {
            // In the managed file an unstated mode does not constrain the user's choice.
            None if cx.managed => Mode::Direct,
            None | Some("staged") => Mode::Staged,
            Some("direct") => Mode::Direct,
            Some(other) => {
                return Err(cx.err(
                    f.mode.as_ref().map_or(f.path.pos, |a| a.pos),
                    format!("unknown mode `{other}` (expected `staged` or `direct`)"),
                ))
            }
        };
        let path = grant_path(&f.path, cx, opts)?;
        for (other, other_pos) in &files {
            if path.starts_with(&other.path) || other.path.starts_with(&path) {
                return Err(cx.err(
                    f.path.pos,
                    format!(
                        "grant `{}` overlaps the grant `{}` on line {}: grants must not nest \
                         (keep the wider one, or list disjoint folders)",
                        f.path.value,
                        other.path.display(),
                        other_pos.line
                    ),
                ));
            }
        }
        let deny: Vec<(String, Origin)> = f
            .deny
            .iter()
            .map(|d| deny_pattern(d, cx).map(|p| (p, cx.origin(d.pos))))
            .collect::<Result<_, _>>()?;
        if let Some(d) = f.deny.first() {
            if opts.check_paths && path.is_file() {
                return Err(cx.err(
                    d.pos,
                    format!(
                        "`{}` is a file: a file grant has nothing inside to deny (leave `deny` \
                         out, or grant its folder)",
                        f.path.value
                    ),
                ));
            }
        }
        files.push((
            FileGrant {
                path,
                access,
                mode,
                deny,
                origin: cx.origin(f.path.pos),
            },
            f.path.pos,
        ));
    }

    let mut deny_paths = if cx.managed || cx.profile.is_some() {
        vec![]
    } else {
        builtin_denies()
    };
    for d in &doc.deny_paths {
        deny_paths.push((deny_pattern(d, cx)?, cx.origin(d.pos)));
    }

    let mut network = Vec::new();
    let mut unknown_network = (Effect::Deny, Origin::Default);
    let mut inspect = None;
    let mut ca_files = Vec::new();
    let mut findings = Findings::default();
    let mut git_push = None;
    if let Some(net) = doc.network {
        if net.git_push.is_some() {
            git_push = Some(Vec::new());
        }
        for g in net.git_push.iter().flatten() {
            let written = g.value.trim_end_matches('/');
            let written = written.strip_suffix(".git").unwrap_or(written);
            let parsed = crate::dest::split_path(written)
                .map_err(|e| e.to_string())
                .and_then(|(dest, path)| match (dest.scheme.as_str(), path) {
                    ("https" | "http", Some(path)) => Ok((dest, path)),
                    _ => Err("name a repository: https://host/owner/repo (or owner/*)".into()),
                });
            match parsed {
                Ok((dest, path)) => git_push.get_or_insert_with(Vec::new).push(super::GitRepo {
                    dest,
                    path,
                    origin: cx.origin(g.pos),
                }),
                Err(e) => {
                    return Err(cx.err(g.pos, format!("`network.git_push` `{}`: {e}", g.value)))
                }
            }
        }
        for (level, v) in &net.findings {
            let Some(r) = Reaction::parse(&v.value) else {
                return Err(cx.err(
                    v.pos,
                    format!(
                        "`network.findings.{level}` must be {}, not `{}`",
                        Reaction::NAMES,
                        v.value.escape_default()
                    ),
                ));
            };
            if let Some(slot) = findings.level_mut(level) {
                *slot = (r, cx.origin(v.pos));
            }
        }
        if let Some(i) = &net.inspect {
            if i.value {
                inspect = Some(cx.origin(i.pos));
            }
        }
        if let Some(c) = &net.ca_file {
            if net.inspect.as_ref().is_none_or(|i| !i.value) && doc.credentials.is_empty() {
                return Err(cx.err(
                    c.pos,
                    "`network.ca_file` is used only to verify servers when TLS is inspected: \
                     add `inspect = true` (or a credential), or remove it"
                        .to_string(),
                ));
            }
            let path = cx.file.parent().unwrap_or(Path::new(".")).join(&c.value);
            // A file the proxy could not use is said now.
            if let Err(e) = certificate_file(&path) {
                return Err(cx.err(
                    c.pos,
                    format!(
                        "`network.ca_file` `{}`: {e} (paths are relative to the manifest's folder)",
                        c.value
                    ),
                ));
            }
            ca_files.push((path, cx.origin(c.pos)));
        }
        for (effect, list) in [
            (Effect::Deny, &net.deny),
            (Effect::Ask, &net.ask),
            (Effect::Allow, &net.allow),
        ] {
            for d in list {
                let (dest, path) = crate::dest::split_path(&d.value).map_err(|e| {
                    cx.err(d.pos, format!("bad network destination `{}`: {e}", d.value))
                })?;
                if path.is_some() && dest.scheme == "ssh" {
                    return Err(cx.err(
                        d.pos,
                        format!("`{}`: an ssh destination has no path", d.value),
                    ));
                }
                network.push(NetEntry {
                    effect,
                    dest,
                    path,
                    origin: cx.origin(d.pos),
                });
            }
        }
        if let Some(u) = net.unknown {
            let effect = match u.value.as_str() {
                "deny" => Effect::Deny,
                "ask" => Effect::Ask,
                other => {
                    return Err(cx.err(
                        u.pos,
                        format!(
                            "`network.unknown` is `{other}`; expected `deny` or `ask` \
                             (an allowlist that allows unknown destinations is not one)"
                        ),
                    ))
                }
            };
            unknown_network = (effect, cx.origin(u.pos));
        }
    }

    let mut unknown_exec = (Effect::Allow, Origin::Default);
    if let Some(u) = &doc.exec_unknown {
        let effect: Effect = u
            .value
            .parse()
            .map_err(|e: String| cx.err(u.pos, format!("`exec.unknown`: {e}")))?;
        unknown_exec = (effect, cx.origin(u.pos));
    }

    let mut rules = Vec::new();
    for r in doc.rules {
        let effect: Effect = r
            .effect
            .value
            .parse()
            .map_err(|e: String| cx.err(r.effect.pos, e))?;
        if cx.managed && effect == Effect::Allow {
            return Err(cx.err(
                r.effect.pos,
                "the managed file can only narrow: its rules may `deny` or `ask`, not `allow`",
            ));
        }
        if r.actions.is_empty() {
            return Err(cx.err(r.pos, "a rule needs at least one action kind"));
        }
        let actions = kinds(&r.actions, cx)?;
        // Kinds with nothing inside the sandbox to grant: an allow or ask would do nothing, and
        // a rule that silently does nothing is refused.
        if effect != Effect::Deny {
            for (k, at) in actions.iter().zip(&r.actions) {
                let what = match k {
                    KindPattern::AnyDevice | KindPattern::Exact(crate::ActionKind::Device(_)) => {
                        "devices"
                    }
                    KindPattern::Exact(crate::ActionKind::ClipboardRead) => "the clipboard",
                    KindPattern::Exact(crate::ActionKind::ScreenCapture) => "the screen",
                    _ => continue,
                };
                return Err(cx.err(
                    at.pos,
                    format!(
                        "`{}` cannot be {}ed: the sandbox has no way to reach {what} and Ward \
                         cannot grant it yet, so this rule would do nothing (a `deny` rule is \
                         accepted: it is so already)",
                        at.value,
                        if effect == Effect::Allow {
                            "allow"
                        } else {
                            "ask"
                        }
                    ),
                ));
            }
        }
        let resource = match r.resource {
            Some(res) if res.value.is_empty() => {
                return Err(cx.err(
                    res.pos,
                    "empty `resource` pattern (omit it to match everything)",
                ))
            }
            Some(res) => Some(res.value),
            None => None,
        };
        rules.push(Rule {
            actions,
            effect,
            resource,
            reason: r.reason,
            origin: cx.origin(r.pos),
        });
    }

    let base = cx.file.parent().unwrap_or(Path::new("."));
    let mut policies = Vec::new();
    for p in doc.policies {
        let path = base.join(&p.path.value);
        if !path.is_file() {
            return Err(cx.err(
                p.path.pos,
                format!(
                    "policy file `{}` does not exist (paths are relative to the manifest's folder)",
                    p.path.value
                ),
            ));
        }
        let rule = &p.rule.value;
        let valid_rule = rule.starts_with("data.")
            && rule[5..].split('.').all(|seg| {
                !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !valid_rule {
            return Err(cx.err(
                p.rule.pos,
                format!(
                    "`{rule}` is not a rule path (write e.g. `data.agent.security.allow_upload`)"
                ),
            ));
        }
        if p.actions.is_empty() {
            return Err(cx.err(
                p.pos,
                "a policy must name the action kinds it decides (`actions = [\"net.upload\"]`)",
            ));
        }
        policies.push(PolicyRef {
            path,
            rule: rule.clone(),
            actions: kinds(&p.actions, cx)?,
            origin: cx.origin(p.pos),
        });
    }

    let limits = limits(&doc.limits, cx)?;
    let mut allow_degraded: Vec<(String, Origin)> = Vec::new();
    for f in &doc.allow_degraded {
        if !super::DEGRADABLE.contains(&f.value.as_str()) {
            return Err(cx.err(
                f.pos,
                format!(
                    "`{}` is not a feature Ward can run without; allow_degraded takes {}",
                    f.value,
                    super::DEGRADABLE
                        .iter()
                        .map(|d| format!("\"{d}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !allow_degraded.iter().any(|(v, _)| *v == f.value) {
            allow_degraded.push((f.value.clone(), cx.origin(f.pos)));
        }
    }

    let mut env_scrub = Vec::new();
    for p in &doc.env_scrub {
        if p.value.is_empty()
            || !p
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?'))
        {
            return Err(cx.err(
                p.pos,
                format!(
                    "`{}` is not a variable name pattern: letters, digits, `_`, and `*` or `?` as \
                     wildcards (`MY_*`)",
                    p.value
                ),
            ));
        }
        env_scrub.push((p.value.to_ascii_uppercase(), cx.origin(p.pos)));
    }
    let mut env_keep = Vec::new();
    for k in &doc.env_keep {
        if k.value.is_empty()
            || !k
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(cx.err(
                k.pos,
                format!(
                    "`{}` is not a variable name: `env.keep` takes exact names, no wildcards",
                    k.value
                ),
            ));
        }
        env_keep.push((k.value.clone(), cx.origin(k.pos)));
    }
    let mut env_set = Vec::new();
    for (k, v) in &doc.env_set {
        if cx.managed {
            return Err(cx.err(
                k.pos,
                "the managed file can only narrow: it cannot set variables (`env.scrub` removes them)",
            ));
        }
        env_set_check(&k.value, v).map_err(|m| cx.err(k.pos, m))?;
        env_set.push((k.value.clone(), v.clone(), cx.origin(k.pos)));
    }
    let credentials = credentials(&doc.credentials, &network, &env_set, cx)?;
    let profile_named =
        match &doc.profile {
            None => None,
            Some(p) if cx.managed || cx.profile.is_some() => return Err(cx.err(
                p.pos,
                "`profile` chooses the agent's profile; only a manifest of the person's can say it",
            )),
            Some(p) if p.value == "none" || super::profile::find(&p.value).is_some() => {
                Some((p.value.clone(), cx.origin(p.pos)))
            }
            Some(p) => {
                return Err(cx.err(
                    p.pos,
                    format!(
                        "unknown profile `{}`; Ward's profiles are {}, or `none`",
                        p.value,
                        super::profile::names()
                    ),
                ))
            }
        };

    let mut devices = Vec::new();
    for d in doc.devices {
        if cx.managed {
            return Err(cx.err(
                d.path.pos,
                "the managed file can only narrow: it cannot grant devices",
            ));
        }
        let mut path = PathBuf::from(&d.path.value);
        if !path.is_absolute() {
            return Err(cx.err(
                d.path.pos,
                "a device is named by its absolute path (/dev/...)",
            ));
        }
        // The node itself, not a link that could later lead elsewhere (/dev/v4l/by-id/...).
        if opts.check_paths {
            path = std::fs::canonicalize(&path)
                .map_err(|e| cx.err(d.path.pos, format!("cannot use `{}`: {e}", d.path.value)))?;
        }
        let class = if opts.check_paths {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let md = std::fs::metadata(&path)
                .map_err(|e| cx.err(d.path.pos, format!("cannot use `{}`: {e}", d.path.value)))?;
            let rdev = md.rdev();
            let (major, minor) = (libc_major(rdev), libc_minor(rdev));
            match super::device_class(major, minor) {
                Some(c) if md.file_type().is_char_device() => c,
                _ => {
                    return Err(cx.err(
                        d.path.pos,
                        format!(
                            "`{}` is not a GPU render node or a camera (device {major}:{minor}): \
                             only those can be granted",
                            d.path.value
                        ),
                    ))
                }
            }
        } else {
            "device"
        };
        if files.iter().any(|(g, _)| path.starts_with(&g.path)) {
            return Err(cx.err(
                d.path.pos,
                "a device inside a granted folder: grant the device on its own, outside the grants",
            ));
        }
        devices.push(DeviceGrant {
            path,
            class,
            reason: d.reason,
            origin: cx.origin(d.path.pos),
        });
    }

    Ok(Manifest {
        name,
        source: Some(cx.file.to_path_buf()),
        managed: vec![],
        files: files.into_iter().map(|(g, _)| g).collect(),
        deny_paths,
        network,
        unknown_network,
        inspect,
        ca_files,
        findings,
        credentials,
        git_push,
        unknown_exec,
        rules,
        policies,
        limits,
        allow_degraded,
        env_scrub,
        env_keep,
        env_set,
        profile_named,
        profile: None,
        devices,
        narrowed: vec![],
        ceilings: vec![],
    })
}

/// The most a certificate file may hold (the proxy reads no more).
pub const MAX_CA_FILE: u64 = 4 << 20;

/// Whether `path` is a regular file of PEM certificates the proxy can read.
fn certificate_file(path: &Path) -> Result<(), String> {
    let bytes = crate::bounded::read_regular(path, MAX_CA_FILE)
        .map_err(|e| format!("cannot be read ({e})"))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(())
}

/// `[[credentials]]`: each names its secret's source, one `https` destination the network
/// section allows (and a path prefix), and how it is sent.
fn credentials(
    docs: &[raw::CredentialDoc],
    network: &[NetEntry],
    env_set: &[(String, String, Origin)],
    cx: &Ctx,
) -> Result<Vec<CredentialSpec>, ManifestError> {
    let mut out: Vec<CredentialSpec> = Vec::new();
    for c in docs {
        let name = &c.name.value;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(cx.err(
                c.name.pos,
                "a credential's name is 1-64 characters of a-z, 0-9, - and _".to_string(),
            ));
        }
        if out.iter().any(|o| o.name == *name) {
            return Err(cx.err(c.name.pos, format!("credential `{name}` is named twice")));
        }
        let (kind, what) = c.secret.value.split_once(':').unwrap_or(("", ""));
        let bad_name = what.is_empty()
            || what.len() > 128
            || !what
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        let source = match kind {
            _ if bad_name => None,
            "env" => Some(SecretSource::Env(what.to_string())),
            "store" => Some(SecretSource::Store(what.to_string())),
            "keychain" => Some(SecretSource::Keychain(what.to_string())),
            _ => None,
        };
        let Some(source) = source else {
            return Err(cx.err(
                c.secret.pos,
                format!(
                    "`secret = \"{}\"`: write where it comes from: `env:VARIABLE` (the \
                     environment `ward run` starts in), `store:NAME` (`ward secret set NAME`) \
                     or `keychain:NAME` (the desktop's keychain)",
                    crate::inert::line(&c.secret.value)
                ),
            ));
        };
        if let Some(e) = &c.env {
            env_set_check(&e.value, "").map_err(|m| cx.err(e.pos, m))?;
            if env_set.iter().any(|(k, _, _)| *k == e.value)
                || out
                    .iter()
                    .any(|o| o.env.as_deref() == Some(e.value.as_str()))
            {
                return Err(cx.err(
                    e.pos,
                    format!("`{}` is set twice (env.set or another credential)", e.value),
                ));
            }
        }
        let written = &c.to.value;
        let after = written.find("://").map_or(0, |i| i + 3);
        let (dest, path) = match written[after..].find('/') {
            Some(i) => (&written[..after + i], &written[after + i..]),
            None => (written.as_str(), "/"),
        };
        let to = Destination::parse(dest).map_err(|e| {
            cx.err(
                c.to.pos,
                format!("bad credential destination `{written}`: {e}"),
            )
        })?;
        let host = match &to.host {
            crate::HostPattern::Name(h) if to.scheme == "https" => h.clone(),
            _ => {
                return Err(cx.err(
                    c.to.pos,
                    format!(
                        "a credential goes to one `https://` host named exactly (never over \
                         plain HTTP, never to a wildcard), not `{written}`"
                    ),
                ))
            }
        };
        if path.contains(['?', '#']) {
            return Err(cx.err(
                c.to.pos,
                format!("`{written}`: the destination's path is a prefix, without ? or #"),
            ));
        }
        let allowed = network
            .iter()
            .find(|e| e.dest.matches(&to.scheme, &host, to.port))
            .is_some_and(|e| e.effect == Effect::Allow);
        if !allowed {
            return Err(cx.err(
                c.to.pos,
                format!(
                    "credential `{name}` goes to {}://{host}:{}, which the network section does \
                     not allow: add `allow = [\"{}://{host}\"]`",
                    to.scheme, to.port, to.scheme
                ),
            ));
        }
        let how = [
            c.header
                .as_ref()
                .map(|h| Placement::Header(h.value.to_ascii_lowercase())),
            c.query.as_ref().map(|q| Placement::Query(q.value.clone())),
            c.basic
                .as_ref()
                .filter(|b| b.value)
                .map(|_| Placement::Basic),
        ];
        let mut how = how.into_iter().flatten();
        let placement = match (how.next(), how.next()) {
            (Some(p), None) => p,
            _ => {
                return Err(cx.err(
                    c.name.pos,
                    format!(
                        "credential `{name}`: say how it is sent, once: `header = \"x-api-key\"`, \
                         `query = \"key\"` or `basic = true`"
                    ),
                ))
            }
        };
        if let Placement::Header(h) | Placement::Query(h) = &placement {
            let ok = !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            let reserved = matches!(
                h.as_str(),
                "host" | "proxy-authorization" | "content-length" | "transfer-encoding"
            );
            if !ok || reserved {
                return Err(cx.err(
                    c.name.pos,
                    format!(
                        "credential `{name}`: `{}` cannot carry a credential",
                        crate::inert::line(h)
                    ),
                ));
            }
        }
        out.push(CredentialSpec {
            name: name.clone(),
            source,
            env: c.env.as_ref().map(|e| e.value.clone()),
            to,
            path: path.to_string(),
            placement,
            optional: c.optional.as_ref().is_some_and(|o| o.value),
            unless_env: c
                .unless_env
                .iter()
                .map(|u| {
                    env_set_check(&u.value, "")
                        .map(|()| u.value.clone())
                        .or_else(|e| {
                            if e.contains("set by Ward") {
                                Ok(u.value.clone())
                            } else {
                                Err(cx.err(u.pos, e))
                            }
                        })
                })
                .collect::<Result<_, _>>()?,
            origin: cx.origin(c.name.pos),
        });
    }
    Ok(out)
}

/// Names Ward sets itself or that would undo the sandbox's own view, refused in `env.set`.
fn env_set_check(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "`{}` is not a variable name: letters, digits and `_`",
            crate::inert::line(name)
        ));
    }
    let upper = name.to_ascii_uppercase();
    if upper == "HOME" || upper.ends_with("_PROXY") || upper == "NODE_USE_ENV_PROXY" {
        return Err(format!(
            "`{name}` is set by Ward (the agent's home and the way to its egress proxy); it \
             cannot be set in the manifest"
        ));
    }
    if value.contains('\0') {
        return Err(format!("the value of `{name}` holds a NUL byte"));
    }
    Ok(())
}

/// The major and minor numbers of a device number (glibc's encoding).
fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

fn kinds(list: &[At<String>], cx: &Ctx) -> Result<Vec<KindPattern>, ManifestError> {
    list.iter()
        .map(|a| KindPattern::parse(&a.value).map_err(|e| cx.err(a.pos, e.to_string())))
        .collect()
}

fn deny_pattern(d: &At<String>, cx: &Ctx) -> Result<String, ManifestError> {
    let p = d.value.trim_start_matches("./");
    if p.is_empty() || p.split('/').any(|c| c == "..") {
        return Err(cx.err(
            d.pos,
            format!(
                "`{}` is not a deny pattern (a path or glob inside the grant, without `..`)",
                d.value
            ),
        ));
    }
    Ok(p.to_string())
}

/// Expands `~`, requires an absolute path that exists, resolves symlinks and refuses sensitive
/// locations unless forced. The managed file may name paths that do not exist on this machine.
fn grant_path(p: &At<String>, cx: &Ctx, opts: &LoadOptions) -> Result<PathBuf, ManifestError> {
    let written = p.value.as_str();
    let expanded = match (written.strip_prefix('~'), &opts.home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        (Some(_), None) => {
            return Err(cx.err(p.pos, format!("cannot expand `{written}`: HOME is not set")))
        }
        _ => PathBuf::from(written),
    };
    if !expanded.is_absolute() {
        return Err(cx.err(
            p.pos,
            format!(
                "grant path `{written}` is relative: write an absolute path or start it with `~/`"
            ),
        ));
    }
    let normal = normalize(&expanded);
    let path = match normal.canonicalize() {
        Ok(c) => c,
        Err(_) if cx.managed || !opts.check_paths => normal,
        Err(e) => {
            return Err(cx.err(
                p.pos,
                format!(
                    "grant path `{written}` cannot be used: {e} (create it first, or fix the path)"
                ),
            ))
        }
    };
    if !cx.managed {
        check_sensitive(&path, written, p.pos, cx, opts)?;
    }
    // What `ward run` can mount: a folder or a regular file (a device has `[[devices]]`).
    if opts.check_paths && !cx.managed {
        if let Ok(md) = std::fs::metadata(&path) {
            if !md.is_dir() && !md.is_file() {
                return Err(cx.err(
                    p.pos,
                    format!(
                        "grant path `{written}` is neither a folder nor a regular file (a socket, \
                         a pipe or a device): a grant is one of those two (a GPU or a camera is \
                         granted in [[devices]])"
                    ),
                ));
            }
        }
    }
    Ok(path)
}

/// Lexical normalization: drops `.` and resolves `..` without touching the filesystem.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn check_sensitive(
    path: &Path,
    written: &str,
    pos: Pos,
    cx: &Ctx,
    opts: &LoadOptions,
) -> Result<(), ManifestError> {
    for p in &opts.protected {
        let p = p.canonicalize().unwrap_or_else(|_| p.clone());
        if path.starts_with(&p) || p.starts_with(path) {
            return Err(cx.err(
                pos,
                format!(
                    "refusing to grant `{written}`: it overlaps Ward's own state {} (the audit log, keys \
                     and sessions are never visible to an agent, even with --force)",
                    p.display()
                ),
            ));
        }
    }
    if opts.force {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(cx.err(
            pos,
            format!("refusing to grant `{written}`: {why} (use --force to override)"),
        ))
    };
    if path == Path::new("/") {
        return refuse("it is the whole filesystem".into());
    }
    if path.starts_with("/etc") {
        return refuse("/etc holds system configuration and secrets".into());
    }
    if let Some(home) = opts.home.as_ref().and_then(|h| h.canonicalize().ok()) {
        if path == home {
            return refuse("it is your whole home directory, keys and credentials included".into());
        }
        if home.starts_with(path) {
            return refuse(format!(
                "it contains your home directory {}",
                home.display()
            ));
        }
        for dir in CREDENTIAL_DIRS {
            let cred = home.join(dir);
            if path.starts_with(&cred) {
                return refuse(format!("~/{dir} holds credentials"));
            }
            if cred.starts_with(path) {
                return refuse(format!("it contains ~/{dir}, which holds credentials"));
            }
        }
    }
    Ok(())
}

/// Directories under the home directory that hold credentials and are never granted unforced.
pub const CREDENTIAL_DIRS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".password-store",
    ".local/share/keyrings",
];

fn limits(l: &raw::LimitsDoc, cx: &Ctx) -> Result<Limits, ManifestError> {
    let size = |v: &At<SizeValue>, what: &str| -> Result<(u64, Origin), ManifestError> {
        let n = match &v.value {
            SizeValue::Bytes(n) if *n > 0 => *n as u64,
            SizeValue::Bytes(n) => {
                return Err(cx.err(v.pos, format!("`limits.{what}` must be positive, not {n}")))
            }
            SizeValue::Text(s) => parse_size(s).map_err(|e| cx.err(v.pos, e))?,
        };
        if n == 0 {
            return Err(cx.err(v.pos, format!("`limits.{what}` must be positive")));
        }
        Ok((n, cx.origin(v.pos)))
    };
    Ok(Limits {
        memory: l.memory.as_ref().map(|v| size(v, "memory")).transpose()?,
        upload: l.upload.as_ref().map(|v| size(v, "upload")).transpose()?,
        tmp: l.tmp.as_ref().map(|v| size(v, "tmp")).transpose()?,
        shm: l.shm.as_ref().map(|v| size(v, "shm")).transpose()?,
        stage: l.stage.as_ref().map(|v| size(v, "stage")).transpose()?,
        stage_entries: match &l.stage_entries {
            Some(p) if p.value > 0 => Some((p.value as u64, cx.origin(p.pos))),
            Some(p) => {
                return Err(cx.err(
                    p.pos,
                    format!("`limits.stage_entries` must be positive, not {}", p.value),
                ))
            }
            None => None,
        },
        pids: match &l.pids {
            Some(p) if p.value > 0 => Some((p.value as u64, cx.origin(p.pos))),
            Some(p) => {
                return Err(cx.err(
                    p.pos,
                    format!("`limits.pids` must be positive, not {}", p.value),
                ))
            }
            None => None,
        },
        cpu: match &l.cpu {
            Some(c) if c.value > 0.0 && c.value.is_finite() => Some((c.value, cx.origin(c.pos))),
            Some(c) => {
                return Err(cx.err(
                    c.pos,
                    format!("`limits.cpu` is a positive number of CPUs, not {}", c.value),
                ))
            }
            None => None,
        },
    })
}

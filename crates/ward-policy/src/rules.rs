//! The manifest's own word on an action: grants, mandatory denies, network entries, rules and
//! limits. Deny > ask > allow among everything that matches.

use std::path::{Component, Path, PathBuf};
use ward_core::manifest::Manifest;
use ward_core::{glob, Access, Action, ActionKind, Decision, Effect};

/// Keeps the strictest decision seen; the first one wins a tie, so the most specific
/// check should be offered first.
#[derive(Default)]
pub(crate) struct Strictest(pub Option<Decision>);

impl Strictest {
    pub fn offer(&mut self, d: Decision) {
        match &self.0 {
            Some(cur) if cur.effect >= d.effect => {}
            _ => self.0 = Some(d),
        }
    }
}

/// What the manifest says about `a`, or `None` when nothing in it speaks to this action (the
/// caller then applies Rego or the default deny).
pub fn decide_manifest(m: &Manifest, a: &Action) -> Option<Decision> {
    let mut best = Strictest::default();
    let net = a.kind.is_net().then(|| net_target(a));

    for r in &m.rules {
        if !r.actions.iter().any(|k| k.matches(&a.kind)) {
            continue;
        }
        let subject = match &net {
            Some(Ok((_, host, _))) => host.as_str(),
            _ => a.resource.as_str(),
        };
        if let Some(pat) = &r.resource {
            if !glob::matches(pat, subject) {
                continue;
            }
        }
        let reason = r.reason.clone().unwrap_or_else(|| {
            format!(
                "rule: {} {} {}",
                r.effect,
                a.kind,
                r.resource.as_deref().unwrap_or("*")
            )
        });
        best.offer(Decision::new(r.effect, format!("manifest:{}", r.origin), reason));
    }

    if a.kind.is_file() {
        file_decision(m, a, &mut best);
    } else if let Some(target) = net {
        match target {
            Ok((scheme, host, port)) => net_decision(m, a, &scheme, &host, port, &mut best),
            Err(why) => best.offer(Decision::new(Effect::Deny, "builtin:bad-destination", why)),
        }
    }
    best.0
}

fn file_decision(m: &Manifest, a: &Action, best: &mut Strictest) {
    let Some(path) = normalize_abs(&a.resource) else {
        best.offer(Decision::new(
            Effect::Deny,
            "builtin:bad-path",
            format!("`{}` is not an absolute path", a.resource),
        ));
        return;
    };
    let Some(g) = m.grant_for(&path) else {
        return;
    };
    let rel = path.strip_prefix(&g.path).unwrap_or(Path::new(""));
    let rel = rel.to_string_lossy();
    let denies = g.deny.iter().chain(m.deny_paths.iter());
    for (pat, origin) in denies {
        if !rel.is_empty() && glob::deny_covers(pat, &rel) {
            best.offer(Decision::new(
                Effect::Deny,
                format!("manifest:{origin}"),
                format!("`{pat}` is always denied inside grants ({})", path.display()),
            ));
            return;
        }
    }
    if a.kind != ActionKind::FileRead && g.access == Access::Read {
        best.offer(Decision::new(
            Effect::Deny,
            format!("manifest:{}", g.origin),
            format!("the grant {} is read-only", g.path.display()),
        ));
        return;
    }
    best.offer(Decision::new(
        Effect::Allow,
        format!("manifest:{}", g.origin),
        format!(
            "inside the grant {} ({} {})",
            g.path.display(),
            g.access.as_str(),
            g.mode.as_str()
        ),
    ));
}

fn net_decision(m: &Manifest, a: &Action, scheme: &str, host: &str, port: u16, best: &mut Strictest) {
    let mut named = false;
    for e in &m.network {
        if e.dest.matches(scheme, host, port) {
            named = true;
            best.offer(Decision::new(
                e.effect,
                format!("manifest:{}", e.origin),
                format!("{} {}", e.effect, e.dest),
            ));
        }
    }
    if a.kind == ActionKind::NetUpload {
        if let (Some(size), Some((limit, origin))) = (a.size, &m.limits.upload) {
            if size > *limit {
                best.offer(Decision::new(
                    Effect::Deny,
                    format!("manifest:{origin}"),
                    format!("upload of {size} bytes exceeds the limit of {limit} bytes"),
                ));
            }
        }
    }
    if !named && best.0.is_none() {
        let (effect, origin) = &m.unknown_network;
        best.offer(Decision::new(
            *effect,
            format!("manifest:{origin}"),
            format!("{scheme}://{host}:{port} is not in the manifest ({effect} unknown destinations)"),
        ));
    }
}

/// (scheme, lower-cased host, port) of a network action, from `dest`/`port`/`scheme` or else
/// from a URL in `resource`.
fn net_target(a: &Action) -> Result<(String, String, u16), String> {
    let (mut scheme, mut host, mut port) = (a.scheme.clone(), a.dest.clone(), a.port);
    if host.is_none() {
        let url = a.resource.as_str();
        let (s, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` names no destination (set `dest` or a URL)"))?;
        scheme.get_or_insert_with(|| s.to_ascii_lowercase());
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_string(), Some(p))
            }
            _ => (authority.to_string(), None),
        };
        if let Some(p) = p {
            port = Some(p.parse().map_err(|_| format!("bad port in `{url}`"))?);
        }
        host = Some(h);
    }
    let scheme = scheme.unwrap_or_else(|| "https".into()).to_ascii_lowercase();
    let port = match port {
        Some(p) => p,
        None => match scheme.as_str() {
            "http" => 80,
            _ => 443,
        },
    };
    let host = host.unwrap_or_default().to_ascii_lowercase();
    if host.is_empty() {
        return Err("the destination host is empty".into());
    }
    Ok((scheme, host, port))
}

/// An absolute path with `.` and `..` resolved lexically; `None` if it is relative.
fn normalize_abs(p: &str) -> Option<PathBuf> {
    let p = Path::new(p);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    Some(out)
}

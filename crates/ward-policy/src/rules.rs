//! The manifest's own word on an action: grants, mandatory denies, network entries, rules and
//! limits. Deny > ask > allow among everything that matches.
//!
//! The manifest is compiled once ([`CompiledManifest`]): paths and patterns are split, and every
//! `by`/`reason` text is formatted ahead, so that deciding allocates only the decision itself.

use std::borrow::Cow;
use ward_core::action::KindPattern;
use ward_core::manifest::Manifest;
use ward_core::{glob, Access, Action, ActionKind, Decision, Destination, Effect};

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
    /// Offer a decision built only if it would be kept.
    fn offer_with(&mut self, effect: Effect, by: &str, reason: &str) {
        if self.0.as_ref().is_none_or(|cur| effect > cur.effect) {
            self.0 = Some(Decision::new(effect, by, reason));
        }
    }
}

struct Deny {
    pattern: String,
    /// Anchored at the grant root (the pattern has a `/`); else a name matched at any depth.
    anchored: bool,
    by: String,
    reason: String,
}

impl Deny {
    fn covers(&self, rel: &str) -> bool {
        if self.anchored {
            glob::matches_or_contains(&self.pattern, rel)
        } else {
            rel.split('/')
                .any(|c| glob::component_matches(&self.pattern, c))
        }
    }
}

struct Grant {
    prefix: String,
    read_only: bool,
    by: String,
    allow_reason: String,
    ro_reason: String,
    denies: Vec<Deny>,
}

struct Rule {
    kinds: Vec<KindPattern>,
    effect: Effect,
    pattern: Option<String>,
    by: String,
    reason: String,
}

struct Net {
    dest: Destination,
    effect: Effect,
    by: String,
    reason: String,
}

/// A manifest prepared for deciding.
pub struct CompiledManifest {
    grants: Vec<Grant>,
    denies: Vec<Deny>,
    rules: Vec<Rule>,
    network: Vec<Net>,
    unknown: (Effect, String),
    upload_limit: Option<(u64, String)>,
}

fn deny(pattern: &str, origin: &ward_core::Origin) -> Deny {
    Deny {
        pattern: pattern.trim_start_matches('/').to_string(),
        anchored: pattern.trim_start_matches('/').contains('/'),
        by: format!("manifest:{origin}"),
        reason: format!("`{pattern}` is always denied inside grants"),
    }
}

impl CompiledManifest {
    pub fn new(m: &Manifest) -> Self {
        CompiledManifest {
            grants: m
                .files
                .iter()
                .map(|g| Grant {
                    prefix: g.path.to_string_lossy().trim_end_matches('/').to_string(),
                    read_only: g.access == Access::Read,
                    by: format!("manifest:{}", g.origin),
                    allow_reason: format!(
                        "inside the grant {} ({} {})",
                        g.path.display(),
                        g.access.as_str(),
                        g.mode.as_str()
                    ),
                    ro_reason: format!("the grant {} is read-only", g.path.display()),
                    denies: g.deny.iter().map(|(p, o)| deny(p, o)).collect(),
                })
                .collect(),
            denies: m.deny_paths.iter().map(|(p, o)| deny(p, o)).collect(),
            rules: m
                .rules
                .iter()
                .map(|r| Rule {
                    kinds: r.actions.clone(),
                    effect: r.effect,
                    pattern: r.resource.clone(),
                    by: format!("manifest:{}", r.origin),
                    reason: r.reason.clone().unwrap_or_else(|| {
                        format!(
                            "rule: {} {}",
                            r.effect,
                            r.resource.as_deref().unwrap_or("*")
                        )
                    }),
                })
                .collect(),
            network: m
                .network
                .iter()
                .map(|e| Net {
                    dest: e.dest.clone(),
                    effect: e.effect,
                    by: format!("manifest:{}", e.origin),
                    reason: format!("{} {}", e.effect, e.dest),
                })
                .collect(),
            unknown: (
                m.unknown_network.0,
                format!("manifest:{}", m.unknown_network.1),
            ),
            upload_limit: m
                .limits
                .upload
                .as_ref()
                .map(|(n, o)| (*n, format!("manifest:{o}"))),
        }
    }

    /// What the manifest says about `a`, or `None` when nothing in it speaks to this action
    /// (the caller then applies Rego or the default deny).
    pub fn decide(&self, a: &Action) -> Option<Decision> {
        let mut best = Strictest::default();
        let net = a.kind.is_net().then(|| net_target(a));
        let subject = match &net {
            Some(Ok(t)) => &*t.host,
            _ => a.resource.as_str(),
        };
        for r in &self.rules {
            if r.kinds.iter().any(|k| k.matches(&a.kind))
                && r.pattern
                    .as_deref()
                    .is_none_or(|p| glob::matches(p, subject))
            {
                best.offer_with(r.effect, &r.by, &r.reason);
            }
        }
        if a.kind.is_file() {
            self.file(a, &mut best);
        } else if let Some(target) = net {
            match target {
                Ok(t) => self.net(a, &t, &mut best),
                Err(why) => best.offer(Decision::new(Effect::Deny, "builtin:bad-destination", why)),
            }
        }
        best.0
    }

    fn file(&self, a: &Action, best: &mut Strictest) {
        let Some(path) = normalize_abs(&a.resource) else {
            best.offer(Decision::new(
                Effect::Deny,
                "builtin:bad-path",
                format!("`{}` is not an absolute path", a.resource),
            ));
            return;
        };
        let Some((g, rel)) = self.grants.iter().find_map(|g| {
            let rest = path.strip_prefix(g.prefix.as_str())?;
            match rest.strip_prefix('/') {
                Some(rel) => Some((g, rel)),
                None if rest.is_empty() => Some((g, "")),
                None if g.prefix.is_empty() => Some((g, rest)),
                None => None,
            }
        }) else {
            return;
        };
        if !rel.is_empty() {
            if let Some(d) = g.denies.iter().chain(&self.denies).find(|d| d.covers(rel)) {
                best.offer_with(Effect::Deny, &d.by, &d.reason);
                return;
            }
        }
        if a.kind != ActionKind::FileRead && g.read_only {
            best.offer_with(Effect::Deny, &g.by, &g.ro_reason);
            return;
        }
        best.offer_with(Effect::Allow, &g.by, &g.allow_reason);
    }

    fn net(&self, a: &Action, t: &Target, best: &mut Strictest) {
        let mut named = false;
        for e in &self.network {
            if e.dest.matches(&t.scheme, &t.host, t.port) {
                named = true;
                best.offer_with(e.effect, &e.by, &e.reason);
            }
        }
        if a.kind == ActionKind::NetUpload {
            if let (Some(size), Some((limit, by))) = (a.size, &self.upload_limit) {
                if size > *limit {
                    best.offer(Decision::new(
                        Effect::Deny,
                        by.as_str(),
                        format!("upload of {size} bytes exceeds the limit of {limit} bytes"),
                    ));
                }
            }
        }
        if !named && best.0.is_none() {
            let (effect, by) = &self.unknown;
            best.offer(Decision::new(
                *effect,
                by.as_str(),
                format!(
                    "{}://{}:{} is not in the manifest ({effect} unknown destinations)",
                    t.scheme, t.host, t.port
                ),
            ));
        }
    }
}

/// What the manifest says about `a` (compiling it first; [`crate::Pdp`] compiles once).
pub fn decide_manifest(m: &Manifest, a: &Action) -> Option<Decision> {
    CompiledManifest::new(m).decide(a)
}

struct Target<'a> {
    scheme: Cow<'a, str>,
    host: Cow<'a, str>,
    port: u16,
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Scheme, lower-cased host and port of a network action, from `dest`/`port`/`scheme` or else
/// from a URL in `resource`.
fn net_target(a: &Action) -> Result<Target<'_>, String> {
    let (mut scheme, host, mut port) = (a.scheme.as_deref(), a.dest.as_deref(), a.port);
    let host = match host {
        Some(h) => h,
        None => {
            let url = a.resource.as_str();
            let (s, rest) = url
                .split_once("://")
                .ok_or_else(|| format!("`{url}` names no destination (set `dest` or a URL)"))?;
            scheme = scheme.or(Some(s));
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (h, p) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
                _ => (authority, None),
            };
            if let Some(p) = p {
                port = Some(p.parse().map_err(|_| format!("bad port in `{url}`"))?);
            }
            h
        }
    };
    let scheme = lower(scheme.unwrap_or("https"));
    let port = port.unwrap_or(if scheme == "http" { 80 } else { 443 });
    if host.is_empty() {
        return Err("the destination host is empty".into());
    }
    Ok(Target {
        scheme,
        host: lower(host),
        port,
    })
}

/// An absolute path with `.`, `..` and repeated slashes resolved lexically (borrowed when it
/// already is one); `None` if it is relative.
fn normalize_abs(p: &str) -> Option<Cow<'_, str>> {
    if !p.starts_with('/') {
        return None;
    }
    let clean = !p.contains("//")
        && !p.contains("/./")
        && !p.contains("/../")
        && !p.ends_with("/.")
        && !p.ends_with("/..")
        && (p.len() == 1 || !p.ends_with('/'));
    if clean {
        return Some(Cow::Borrowed(p));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Some(Cow::Owned(format!("/{}", parts.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize_abs("/a/b").unwrap(), "/a/b");
        assert!(matches!(normalize_abs("/a/b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(
            normalize_abs("/a/../../etc//passwd").unwrap(),
            "/etc/passwd"
        );
        assert_eq!(normalize_abs("/a/./b/").unwrap(), "/a/b");
        assert_eq!(normalize_abs("/a/b/..").unwrap(), "/a");
        assert_eq!(normalize_abs("/").unwrap(), "/");
        assert!(normalize_abs("a/b").is_none());
    }
}

//! The manifest's own word on an action: grants, mandatory denies, network entries, rules and
//! limits. Deny > ask > allow among everything that matches.
//!
//! The manifest is compiled once ([`CompiledManifest`]): paths and patterns are split, and every
//! `by`/`reason` text is formatted ahead, so that deciding allocates only the decision itself.

use std::borrow::Cow;
use ward_core::action::KindPattern;
use ward_core::manifest::Manifest;
use ward_core::{glob, Access, Action, ActionKind, By, Decision, Destination, Effect};

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
    fn offer_with(&mut self, effect: Effect, by: &By, reason: &str) {
        if self.0.as_ref().is_none_or(|cur| effect > cur.effect) {
            self.0 = Some(Decision::new(effect, by.clone(), reason));
        }
    }
}

/// How one deny pattern is matched, decided once when the manifest is compiled.
enum Matcher {
    /// A name at any depth, without wildcards (`.env`, `.ssh`).
    Name(String),
    /// A name at any depth starting with a literal (`id_rsa*`, `.env.*`).
    NamePrefix(String),
    /// A name at any depth ending with a literal (`*.pem`).
    NameSuffix(String),
    /// A name at any depth with other wildcards.
    NameGlob(String),
    /// `**/a/b`, all literal: a substring of the path.
    DeepLiteral(String),
    /// `**/...` with wildcards: globbed against the whole path.
    DeepGlob(String),
    /// `a/b`: anchored at the grant root.
    Anchored(String),
}

struct Deny {
    matcher: Matcher,
    by: By,
    reason: String,
}

fn literal(s: &str) -> bool {
    !s.contains(['*', '?'])
}

impl Deny {
    #[cfg(test)]
    /// Does this deny cover the absolute `path`, `rel` being its part below the grant? Patterns
    /// that are not anchored look at the whole path, so that granting a folder which is itself
    /// denied (`~/repo/.git/hooks`) does not escape the deny.
    fn covers(&self, path: &str, rel: &str) -> bool {
        self.covers_names(path) || self.covers_deep(path, rel)
    }

    /// The name matchers, on the components of `part`.
    fn covers_names(&self, part: &str) -> bool {
        let mut names = part.split('/');
        match &self.matcher {
            Matcher::Name(n) => names.any(|c| c == n),
            Matcher::NamePrefix(p) => names.any(|c| c.starts_with(p.as_str())),
            Matcher::NameSuffix(x) => names.any(|c| c.ends_with(x.as_str())),
            Matcher::NameGlob(g) => names.any(|c| glob::component_matches(g, c)),
            _ => false,
        }
    }

    /// The path matchers: `**/...` on the whole path, anchored ones below the grant.
    fn covers_deep(&self, path: &str, rel: &str) -> bool {
        match &self.matcher {
            Matcher::DeepLiteral(tail) => {
                // `tail` is `/a/b`: it must end the path or be followed by `/`.
                path.match_indices(tail.as_str())
                    .any(|(i, _)| matches!(path.as_bytes().get(i + tail.len()), None | Some(b'/')))
            }
            Matcher::DeepGlob(g) => glob::matches_or_contains(g, path),
            Matcher::Anchored(g) => !rel.is_empty() && glob::matches_or_contains(g, rel),
            _ => false,
        }
    }
}

fn deny(pattern: &str, origin: &ward_core::Origin) -> Deny {
    let p = pattern.trim_start_matches('/');
    let matcher = if !p.contains('/') {
        let star = p.find('*');
        match star {
            None if literal(p) => Matcher::Name(p.to_string()),
            Some(i) if i == p.len() - 1 && literal(&p[..i]) => {
                Matcher::NamePrefix(p[..i].to_string())
            }
            Some(0) if literal(&p[1..]) => Matcher::NameSuffix(p[1..].to_string()),
            _ => Matcher::NameGlob(p.to_string()),
        }
    } else if let Some(tail) = p.strip_prefix("**/") {
        if literal(tail) && !tail.contains("**") {
            Matcher::DeepLiteral(format!("/{}", tail.trim_end_matches('/')))
        } else {
            Matcher::DeepGlob(p.to_string())
        }
    } else {
        Matcher::Anchored(p.to_string())
    };
    Deny {
        matcher,
        by: By::manifest(origin),
        reason: format!("`{pattern}` is always denied inside grants"),
    }
}

struct Grant {
    prefix: String,
    /// The first deny whose name matcher already matches the grant's own path (index into
    /// the grant's denies followed by the global ones): everything in the grant is denied.
    prefix_deny: Option<usize>,
    read_only: bool,
    by: By,
    allow_reason: String,
    ro_reason: String,
    denies: Vec<Deny>,
}

impl Grant {
    /// The part of `path` below this grant, if the grant covers it.
    fn rel<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(self.prefix.as_str())?;
        match rest.strip_prefix('/') {
            Some(rel) => Some(rel),
            None if rest.is_empty() => Some(""),
            None if self.prefix.is_empty() => Some(rest),
            None => None,
        }
    }
}

struct Rule {
    kinds: Vec<KindPattern>,
    effect: Effect,
    pattern: Option<String>,
    by: By,
    reason: String,
}

struct Net {
    dest: Destination,
    path: Option<ward_core::PathPattern>,
    effect: Effect,
    by: By,
    reason: String,
}

/// What a network entry says about an action on its destination: the request's target (its
/// path and query) when the action is one request, `None` when it is a connection.
enum Says {
    /// The entry does not speak to it.
    Nothing,
    /// Its effect applies.
    Effect(Effect),
    /// A connection to a destination some of whose requests the entry allows or asks about:
    /// allowed, its requests decided one by one.
    Connection,
    /// A request whose path the entry does not name (or could not be read as one path).
    OtherPath,
}

impl Net {
    fn says(&self, t: &Target, target: Option<&str>) -> Says {
        if !self.dest.matches(&t.scheme, &t.host, t.port) {
            return Says::Nothing;
        }
        let Some(p) = &self.path else {
            return Says::Effect(self.effect);
        };
        let Some(target) = target else {
            return if self.effect == Effect::Deny {
                Says::Nothing
            } else {
                Says::Connection
            };
        };
        match ward_core::plain_path(target) {
            // A deny names paths whatever their case (servers often ignore it).
            Some(path) if p.matches(path, self.effect != Effect::Allow) => {
                Says::Effect(self.effect)
            }
            // A deny of some paths says nothing of the others.
            _ if self.effect == Effect::Deny => Says::Nothing,
            _ => Says::OtherPath,
        }
    }
}

/// The target (path and query) of a URL in an action's resource, when it has one.
fn url_target(resource: &str) -> Option<&str> {
    let rest = resource.split_once("://")?.1;
    let i = rest.find(['/', '?'])?;
    Some(&rest[i..])
}

/// One managed file's limits (see [`ward_core::Ceiling`]).
struct Ceiling {
    files: Option<Vec<Grant>>,
    network: Option<(Vec<Net>, Effect, By)>,
    outside: String,
}

/// A manifest prepared for deciding.
pub struct CompiledManifest {
    ceilings: Vec<Ceiling>,
    grants: Vec<Grant>,
    denies: Vec<Deny>,
    rules: Vec<Rule>,
    network: Vec<Net>,
    unknown: (Effect, By),
    unknown_exec: (Effect, By),
    upload_limit: Option<(u64, By)>,
}

fn grant(g: &ward_core::FileGrant, global: &[Deny]) -> Grant {
    let prefix = g.path.to_string_lossy().trim_end_matches('/').to_string();
    let own: Vec<Deny> = g.deny.iter().map(|(p, o)| deny(p, o)).collect();
    let prefix_deny = own
        .iter()
        .chain(global)
        .position(|d| d.covers_names(&prefix));
    Grant {
        prefix,
        prefix_deny,
        read_only: g.access == Access::Read,
        by: By::manifest(&g.origin),
        allow_reason: format!(
            "inside the grant {} ({} {})",
            g.path.display(),
            g.access.as_str(),
            g.mode.as_str()
        ),
        ro_reason: format!("the grant {} is read-only", g.path.display()),
        denies: own,
    }
}

fn net_entry(e: &ward_core::NetEntry) -> Net {
    Net {
        dest: e.dest.clone(),
        path: e.path.clone(),
        effect: e.effect,
        by: By::manifest(&e.origin),
        reason: format!("{} {}", e.effect, e.shown()),
    }
}

impl CompiledManifest {
    pub fn new(m: &Manifest) -> Self {
        let denies: Vec<Deny> = m.deny_paths.iter().map(|(p, o)| deny(p, o)).collect();
        CompiledManifest {
            ceilings: m
                .ceilings
                .iter()
                .map(|c| Ceiling {
                    files: c
                        .files
                        .as_ref()
                        .map(|fs| fs.iter().map(|g| grant(g, &[])).collect()),
                    network: c.network.as_ref().map(|(entries, effect, origin)| {
                        (
                            entries.iter().map(net_entry).collect(),
                            *effect,
                            By::manifest(origin),
                        )
                    }),
                    outside: format!("the managed file {} does not allow it", c.source.display()),
                })
                .collect(),
            grants: m.files.iter().map(|g| grant(g, &denies)).collect(),
            denies,
            rules: m
                .rules
                .iter()
                .map(|r| Rule {
                    kinds: r.actions.clone(),
                    effect: r.effect,
                    pattern: r.resource.clone(),
                    by: By::manifest(&r.origin),
                    reason: r.reason.clone().unwrap_or_else(|| {
                        format!(
                            "rule: {} {}",
                            r.effect,
                            r.resource.as_deref().unwrap_or("*")
                        )
                    }),
                })
                .collect(),
            network: m.network.iter().map(net_entry).collect(),
            unknown: (m.unknown_network.0, By::manifest(&m.unknown_network.1)),
            unknown_exec: (m.unknown_exec.0, By::manifest(&m.unknown_exec.1)),
            upload_limit: m.limits.upload.as_ref().map(|(n, o)| (*n, By::manifest(o))),
        }
    }

    /// What the manifest says about `a`, or `None` when nothing in it speaks to this action
    /// (the caller then applies Rego or the default deny). `a` must come from [`normalized`]:
    /// rules, grants and policies all see the same lexically normalized path.
    pub fn decide(&self, a: &Action) -> Option<Decision> {
        let mut best = Strictest::default();
        let net = a.kind.is_net().then(|| net_target(a));
        if let Some(Err(why)) = &net {
            return Some(Decision::new(
                Effect::Deny,
                By::builtin("bad-destination"),
                why.clone(),
            ));
        }
        if a.kind.is_file() && !a.resource.starts_with('/') {
            return Some(Decision::new(
                Effect::Deny,
                By::builtin("bad-path"),
                format!("`{}` is not an absolute path", a.resource),
            ));
        }
        let subject = match &net {
            Some(Ok(t)) => &*t.host,
            _ => a.resource.as_str(),
        };
        let exec = a.kind == ActionKind::Exec;
        for r in &self.rules {
            if r.kinds.iter().any(|k| k.matches(&a.kind))
                && r.pattern.as_deref().is_none_or(|p| {
                    if exec {
                        exec_matches(p, a, r.effect)
                    } else {
                        glob::matches(p, subject)
                    }
                })
            {
                best.offer_with(r.effect, &r.by, &r.reason);
            }
        }
        if exec && best.0.is_none() {
            let (effect, by) = &self.unknown_exec;
            best.offer(Decision::new(
                *effect,
                by.clone(),
                format!(
                    "no exec rule names {} ({effect} other programs)",
                    a.resource
                ),
            ));
        }
        match &net {
            Some(Ok(t)) => self.net(a, t, &mut best),
            _ if a.kind.is_file() => self.file(a, &mut best),
            _ => {}
        }
        // The managed files' limits hold whatever the user's manifest or policies allow.
        for c in &self.ceilings {
            match &net {
                Some(Ok(t)) => c.net(a, t, &mut best),
                _ if a.kind.is_file() => c.file(a, &mut best),
                _ => {}
            }
        }
        best.0
    }

    fn file(&self, a: &Action, best: &mut Strictest) {
        let path = a.resource.as_str();
        let Some((g, rel)) = self.grants.iter().find_map(|g| g.rel(path).map(|r| (g, r))) else {
            return;
        };
        // Names in the grant's own path were matched when compiling; below it, only `rel`.
        let hit = match g.prefix_deny {
            Some(i) => g.denies.iter().chain(&self.denies).nth(i),
            None => g
                .denies
                .iter()
                .chain(&self.denies)
                .find(|d| d.covers_names(rel) || d.covers_deep(path, rel)),
        };
        if let Some(d) = hit {
            best.offer_with(Effect::Deny, &d.by, &d.reason);
            return;
        }
        if a.kind != ActionKind::FileRead && g.read_only {
            best.offer_with(Effect::Deny, &g.by, &g.ro_reason);
            return;
        }
        best.offer_with(Effect::Allow, &g.by, &g.allow_reason);
    }

    fn net(&self, a: &Action, t: &Target, best: &mut Strictest) {
        let mut named = false;
        let target = url_target(&a.resource);
        // Entries with paths for this destination, none of which names this request's.
        let mut other_path: Option<&Net> = None;
        let mut spoke = false;
        for e in &self.network {
            match e.says(t, target) {
                Says::Nothing => {}
                Says::Effect(eff) => {
                    named = true;
                    spoke = true;
                    best.offer_with(eff, &e.by, &e.reason);
                }
                Says::Connection => {
                    named = true;
                    spoke = true;
                    best.offer_with(
                        Effect::Allow,
                        &e.by,
                        &format!("{} (each request decided by its path)", e.reason),
                    );
                }
                Says::OtherPath => {
                    named = true;
                    other_path.get_or_insert(e);
                }
            }
        }
        // A path that could be read as another one is refused wherever paths are named (a
        // deny on one path must not be walked around by spelling it differently).
        let ambiguous = target.is_some_and(|p| ward_core::plain_path(p).is_none());
        let pathy = self
            .network
            .iter()
            .find(|e| e.path.is_some() && e.dest.matches(&t.scheme, &t.host, t.port));
        let refuse = match (other_path, pathy) {
            (_, Some(e)) if ambiguous => Some(e),
            (Some(e), _) if !spoke => Some(e),
            _ => None,
        };
        if let Some(e) = refuse {
            let path = target.unwrap_or("/");
            let why = match ward_core::plain_path(path) {
                Some(p) => format!(
                    "{}://{}:{} allows only the requests its paths name ({}); not {}",
                    t.scheme,
                    t.host,
                    t.port,
                    self.paths_of(t).join(", "),
                    ward_core::inert::line(p)
                ),
                None => format!(
                    "the path `{}` could be read as another one (`.`/`..` segments, `//`, \
                     escaped `.` `/` `\\`): {}://{}:{} has path rules",
                    ward_core::inert::line(path),
                    t.scheme,
                    t.host,
                    t.port
                ),
            };
            best.offer_with(Effect::Deny, &e.by, &why);
        }
        if a.kind == ActionKind::NetUpload {
            if let Some((limit, by)) = &self.upload_limit {
                match a.size {
                    Some(size) if size > *limit => best.offer(Decision::new(
                        Effect::Deny,
                        by.clone(),
                        format!("upload of {size} bytes exceeds the limit of {limit} bytes"),
                    )),
                    None => best.offer(Decision::new(
                        Effect::Deny,
                        by.clone(),
                        format!("upload of unknown size, and uploads are limited to {limit} bytes"),
                    )),
                    _ => {}
                }
            }
        }
        if !named && best.0.is_none() {
            let (effect, by) = &self.unknown;
            best.offer(Decision::new(
                *effect,
                by.clone(),
                format!(
                    "{}://{}:{} is not in the manifest ({effect} unknown destinations)",
                    t.scheme, t.host, t.port
                ),
            ));
        }
    }
}

impl CompiledManifest {
    /// The path patterns allowed at a destination.
    fn paths_of(&self, t: &Target) -> Vec<String> {
        self.network
            .iter()
            .filter(|e| e.effect == Effect::Allow && e.dest.matches(&t.scheme, &t.host, t.port))
            .filter_map(|e| e.path.as_ref().map(|p| p.as_str().to_string()))
            .collect()
    }
}

impl Ceiling {
    fn file(&self, a: &Action, best: &mut Strictest) {
        let Some(grants) = &self.files else { return };
        let path = a.resource.as_str();
        match grants.iter().find(|g| g.rel(path).is_some()) {
            None => best.offer(Decision::new(
                Effect::Deny,
                By::managed(),
                self.outside.clone(),
            )),
            Some(g) if g.read_only && a.kind != ActionKind::FileRead => {
                best.offer_with(Effect::Deny, &g.by, &g.ro_reason)
            }
            Some(_) => {}
        }
    }

    fn net(&self, a: &Action, t: &Target, best: &mut Strictest) {
        let Some((entries, unknown, by)) = &self.network else {
            return;
        };
        let target = url_target(&a.resource);
        let matched = entries.iter().filter_map(|e| match e.says(t, target) {
            Says::Effect(eff) => Some((eff, e)),
            Says::Connection => Some((Effect::Allow, e)),
            Says::Nothing | Says::OtherPath => None,
        });
        match matched.max_by_key(|(eff, _)| *eff) {
            None => best.offer_with(*unknown, by, &self.outside),
            Some((Effect::Allow, _)) => {}
            Some((eff, e)) => best.offer_with(eff, &e.by, &e.reason),
        }
    }
}

/// Does the exec rule pattern `p` name the program of `a`? A deny or ask matches its path or
/// any other name it was reached by (the path as invoked, before links), and a pattern
/// without `/` matches the file name (`curl` is any curl). An allow matches only where the
/// program really is, and a bare name only in the system's program folders: a copy or a link
/// the agent made named `git` is not the git the person allowed.
fn exec_matches(p: &str, a: &Action, effect: Effect) -> bool {
    const SYSTEM: &[&str] = &[
        "/usr/bin/",
        "/usr/sbin/",
        "/bin/",
        "/sbin/",
        "/usr/local/bin/",
        "/usr/local/sbin/",
        "/usr/libexec/",
    ];
    let file = ward_core::command::base;
    if effect == Effect::Allow {
        let real = a.resource.as_str();
        return glob::matches(p, real)
            || (!p.contains('/')
                && SYSTEM
                    .iter()
                    .any(|d| real.strip_prefix(d).is_some_and(|rest| !rest.contains('/')))
                && glob::matches(p, file(real)));
    }
    std::iter::once(&a.resource)
        .chain(&a.names)
        .any(|n| glob::matches(p, n) || (!p.contains('/') && glob::matches(p, file(n))))
}

/// `a` with its path normalized lexically (`.`, `..`, repeated `/`) when it is a file action or
/// an absolute command, so that every rule, grant and policy judges the path the kernel will
/// see (symlinks are the sandbox's business: it mounts grants at their real paths).
pub fn normalized(a: &Action) -> Cow<'_, Action> {
    let is_path = a.kind.is_file() || (a.kind == ActionKind::Exec && a.resource.starts_with('/'));
    match is_path.then(|| normalize_abs(&a.resource)).flatten() {
        Some(Cow::Owned(p)) => Cow::Owned(Action {
            resource: p,
            ..a.clone()
        }),
        _ => Cow::Borrowed(a),
    }
}

struct Target<'a> {
    scheme: Cow<'a, str>,
    host: Cow<'a, str>,
    port: u16,
}

/// Lower-cased, without the trailing dot of a fully qualified name.
fn host_key(s: &str) -> Cow<'_, str> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// (scheme, host, port) of a URL, reading `\` as `/` the way WHATWG URL parsers (and so
/// browsers and HTTP clients) do for http(s), so `https://evil.com\@good.com/` is evil.com.
fn parse_url(url: &str) -> Result<(&str, &str, Option<u16>), String> {
    let (s, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` names no destination (set `dest` or a URL)"))?;
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (h, p) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = match p {
        Some(p) => Some(p.parse().map_err(|_| format!("bad port in `{url}`"))?),
        None => None,
    };
    Ok((s, h, port))
}

/// Scheme, host and port of a network action, from `dest`/`port`/`scheme` and from a URL in
/// `resource`; when both name a host they must agree.
fn net_target(a: &Action) -> Result<Target<'_>, String> {
    let url = if a.resource.contains("://") {
        Some(parse_url(&a.resource)?)
    } else {
        None
    };
    let host = match (a.dest.as_deref(), url) {
        (Some(d), Some((_, h, _))) if host_key(d) != host_key(h) => {
            return Err(format!(
                "`dest` {d} and the URL's host {h} disagree; refusing to guess which one is reached"
            ))
        }
        (Some(d), _) => d,
        (None, Some((_, h, _))) => h,
        (None, None) => {
            return Err(format!(
                "`{}` names no destination (set `dest` or a URL)",
                a.resource
            ))
        }
    };
    let scheme = host_key(a.scheme.as_deref().or(url.map(|u| u.0)).unwrap_or("https"));
    let port = a
        .port
        .or(url.and_then(|u| u.2))
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    if host.is_empty() {
        return Err("the destination host is empty".into());
    }
    Ok(Target {
        scheme,
        host: host_key(host),
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
    fn deny_matchers_agree_with_the_glob_definition() {
        let o = ward_core::Origin::Builtin;
        let cases = [
            (".env", "/p/a/.env", true),
            (".env", "/p/a/.envrc", false),
            ("id_rsa*", "/p/k/id_rsa.pub", true),
            ("*.pem", "/p/tls/s.pem", true),
            ("*.pem", "/p/tls/s.pem.txt", false),
            ("a?c*", "/p/abcd", true),
            ("**/.git/hooks", "/p/r/.git/hooks/pre-commit", true),
            ("**/.git/hooks", "/p/r/.git/hooks", true),
            ("**/.git/hooks", "/p/r/.git/hooksx/y", false),
            ("**/.git/h*", "/p/r/.git/hx/y", true),
            ("build/keys", "/p/build/keys/k", true),
        ];
        for (pat, path, want) in cases {
            let rel = path.strip_prefix("/p/").unwrap();
            assert_eq!(deny(pat, &o).covers(path, rel), want, "{pat} {path}");
        }
    }

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

//! `ward manifest explain`: the effective permissions and where each one came from.

use super::Manifest;
use crate::size::format_size;
use serde_json::{json, Value};
use std::fmt;

/// Borrowed view of a [`Manifest`] that prints as a report (Display) or as JSON.
pub struct Explanation<'a>(pub &'a Manifest);

impl Explanation<'_> {
    pub fn to_json(&self) -> Value {
        let m = self.0;
        let lim = m.limits.effective();
        let kinds =
            |k: &[crate::action::KindPattern]| -> Vec<String> { k.iter().map(kind_str).collect() };
        json!({
            "name": m.name,
            "source": m.source.as_ref().map(|p| p.display().to_string()),
            "managed": m.managed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "files": m.files.iter().map(|g| json!({
                "path": g.path.display().to_string(),
                "access": g.access.as_str(),
                "mode": g.mode.as_str(),
                "deny": g.deny.iter().map(|(p, o)| json!({"pattern": p, "origin": o.to_string()})).collect::<Vec<_>>(),
                "origin": g.origin.to_string(),
            })).collect::<Vec<_>>(),
            "deny_paths": m.deny_paths.iter().map(|(p, o)| json!({"pattern": p, "origin": o.to_string()})).collect::<Vec<_>>(),
            "network": m.network.iter().map(|e| json!({
                "effect": e.effect, "destination": e.shown(), "origin": e.origin.to_string(),
            })).collect::<Vec<_>>(),
            "unknown_network": {"effect": m.unknown_network.0, "origin": m.unknown_network.1.to_string()},
            "inspect": m.inspect.as_ref().map(|o| json!({"origin": o.to_string()})),
            "findings": m.findings.levels().iter().map(|(level, (r, o))| (level.to_string(), json!({"reaction": r.as_str(), "origin": o.to_string()}))).collect::<serde_json::Map<_, _>>(),
            "git_push": m.git_push.as_ref().map(|l| l.iter().map(|r| json!({"repository": r.shown(), "origin": r.origin.to_string()})).collect::<Vec<_>>()),
            "credentials": m.credentials.iter().map(|c| json!({
                "name": c.name, "secret": c.source.to_string(), "env": c.env,
                "to": format!("{}{}", c.to, c.path), "how": c.placement.to_string(),
                "origin": c.origin.to_string(),
            })).collect::<Vec<_>>(),
            "ca_files": m.ca_files.iter().map(|(p, o)| json!({"path": p.display().to_string(), "origin": o.to_string()})).collect::<Vec<_>>(),
            "unknown_exec": {"effect": m.unknown_exec.0, "origin": m.unknown_exec.1.to_string()},
            "none_inside": ["device.*", "clipboard.read", "screen.capture"],
            "devices": m.devices.iter().map(|d| json!({
                "path": d.path.display().to_string(), "class": d.class, "reason": d.reason,
                "origin": d.origin.to_string(), "asked": "at the start of each session",
            })).collect::<Vec<_>>(),
            "rules": m.rules.iter().map(|r| json!({
                "actions": kinds(&r.actions), "effect": r.effect, "resource": r.resource,
                "reason": r.reason, "origin": r.origin.to_string(),
            })).collect::<Vec<_>>(),
            "policies": m.policies.iter().map(|p| json!({
                "path": p.path.display().to_string(), "rule": p.rule, "actions": kinds(&p.actions),
                "origin": p.origin.to_string(),
            })).collect::<Vec<_>>(),
            "limits": {
                "memory": lim.memory.as_ref().map(|(v, o)| json!({"bytes": v, "origin": o.to_string()})),
                "pids": lim.pids.as_ref().map(|(v, o)| json!({"max": v, "origin": o.to_string()})),
                "cpu": lim.cpu.as_ref().map(|(v, o)| json!({"cpus": v, "origin": o.to_string()})),
                "upload": lim.upload.as_ref().map(|(v, o)| json!({"bytes": v, "origin": o.to_string()})),
                "tmp": lim.tmp.as_ref().map(|(v, o)| json!({"bytes": v, "origin": o.to_string()})),
                "shm": lim.shm.as_ref().map(|(v, o)| json!({"bytes": v, "origin": o.to_string()})),
                "stage": lim.stage.as_ref().map(|(v, o)| json!({"bytes": v, "origin": o.to_string()})),
                "stage_entries": lim.stage_entries.as_ref().map(|(v, o)| json!({"max": v, "origin": o.to_string()})),
            },
            "env": {
                "scrub": m.env_scrub.iter().map(|(p, o)| json!({"pattern": p, "origin": o.to_string()})).collect::<Vec<_>>(),
                "keep": m.env_keep.iter().map(|(p, o)| json!({"name": p, "origin": o.to_string()})).collect::<Vec<_>>(),
                "set": m.env_set.iter().map(|(k, v, o)| json!({"name": k, "value": v, "origin": o.to_string()})).collect::<Vec<_>>(),
            },
            "profile": m.profile.as_ref().map(|p| json!({
                "name": p.name, "about": p.about, "chosen_by": p.chosen_by,
                "home": format!("homes/{}", p.name),
                "seed": p.seed.iter().map(|(path, _, why)| json!({"path": path, "why": why})).collect::<Vec<_>>(),
                "never": p.never,
                "guard": p.guard,
            })),
            "allow_degraded": m.allow_degraded.iter().map(|(f, o)| json!({"feature": f, "origin": o.to_string()})).collect::<Vec<_>>(),
            "narrowed_by_managed": m.narrowed,
        })
    }
}

fn kind_str(k: &crate::action::KindPattern) -> String {
    use crate::action::KindPattern::*;
    match k {
        Exact(k) => k.as_str(),
        AnyDevice => "device.*".into(),
        Any => "*".into(),
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        writeln!(f, "Effective permissions of `{}`", m.name)?;
        match &m.source {
            Some(p) => writeln!(f, "  manifest: {}", p.display())?,
            None => writeln!(f, "  manifest: built-in default")?,
        }
        if m.managed.is_empty() {
            writeln!(f, "  managed:  none")?;
        }
        for p in &m.managed {
            writeln!(f, "  managed:  {} (can only narrow)", p.display())?;
        }
        match &m.profile {
            Some(p) => {
                writeln!(
                    f,
                    "  profile:  {} ({}), chosen by {}",
                    p.name, p.about, p.chosen_by
                )?;
                writeln!(
                    f,
                    "            its home: homes/{} under Ward's state, kept between sessions",
                    p.name
                )?;
                for (path, _, why) in &p.seed {
                    writeln!(f, "            its home starts with ~/{path}: {why}")?;
                }
                for n in &p.never {
                    writeln!(f, "            never: {n}")?;
                }
                if !p.guard.is_empty() {
                    // `rel#/a/*/b` entries of one file on one line: "~/.claude.json (keys
                    // mcpServers, projects.*.allowedTools)".
                    let mut shown: Vec<(String, Vec<String>)> = Vec::new();
                    for g in &p.guard {
                        let (rel, key) = match g.split_once('#') {
                            Some((r, k)) => (r, Some(k.trim_start_matches('/').replace('/', "."))),
                            None => (g.as_str(), None),
                        };
                        match shown.iter_mut().find(|(r, _)| r == rel) {
                            Some((_, keys)) => keys.extend(key),
                            None => shown.push((rel.to_string(), key.into_iter().collect())),
                        }
                    }
                    writeln!(
                        f,
                        "            held for review when it changes them (and the files they \
                         name in its home):"
                    )?;
                    for (rel, keys) in shown {
                        if keys.is_empty() {
                            writeln!(f, "              ~/{rel}")?;
                        } else {
                            writeln!(f, "              ~/{rel} (keys {})", keys.join(", "))?;
                        }
                    }
                }
            }
            None => writeln!(f, "  profile:  none")?,
        }
        writeln!(f, "\nFiles (anything not listed is denied)")?;
        if m.files.is_empty() {
            writeln!(f, "  (no folder granted)")?;
        }
        for g in &m.files {
            writeln!(
                f,
                "  {:<10} {:<6} {}    <- {}",
                g.access.as_str(),
                g.mode.as_str(),
                g.path.display(),
                g.origin
            )?;
            for (p, o) in &g.deny {
                writeln!(f, "      deny {p}    <- {o}")?;
            }
        }
        writeln!(f, "\nAlways denied inside grants")?;
        for (p, o) in &m.deny_paths {
            writeln!(f, "  {p:<14} <- {o}")?;
        }
        writeln!(f, "\nNetwork")?;
        for e in &m.network {
            writeln!(
                f,
                "  {:<5} {}{}    <- {}",
                e.effect.as_str(),
                e.shown(),
                if e.path.is_some() {
                    " (requests whose path matches; TLS to it is opened)"
                } else {
                    ""
                },
                e.origin
            )?;
        }
        writeln!(
            f,
            "  {:<5} any other destination    <- {}",
            m.unknown_network.0.as_str(),
            m.unknown_network.1
        )?;
        if let Some(o) = &m.inspect {
            writeln!(
                f,
                "  TLS to allowed https destinations is opened and each request inside decided \
                 (the session's own certificate authority, trusted inside only)    <- {o}"
            )?;
        }
        writeln!(
            f,
            "  a secret or personal data found in a request (plain, or inside inspected TLS):"
        )?;
        for (level, (r, o)) in m.findings.levels() {
            writeln!(f, "    {level:<6} confidence: {:<6}    <- {o}", r.as_str())?;
        }
        if let Some(repos) = &m.git_push {
            writeln!(
                f,
                "  git push over HTTP(S) only to: {}  (TLS to every https destination is opened; \
                 pushes over SSH are not seen)",
                if repos.is_empty() {
                    "no repository".to_string()
                } else {
                    repos
                        .iter()
                        .map(|r| format!("{} <- {}", r.shown(), r.origin))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )?;
        }
        for c in &m.credentials {
            writeln!(
                f,
                "  credential {}: the agent holds a placeholder{}; the secret ({}) is put in \
                 only toward {}{} ({})    <- {}",
                c.name,
                c.env
                    .as_ref()
                    .map(|e| format!(" in {e}"))
                    .unwrap_or_default(),
                c.source,
                c.to,
                c.path,
                c.placement,
                c.origin
            )?;
        }
        for (p, o) in &m.ca_files {
            writeln!(
                f,
                "  real servers may also be verified against {}    <- {o}",
                crate::inert::path(p)
            )?;
        }
        writeln!(
            f,
            "\nPrograms (checked at every exec when an exec rule exists)"
        )?;
        writeln!(
            f,
            "  {:<5} any program no exec rule names    <- {}",
            m.unknown_exec.0.as_str(),
            m.unknown_exec.1
        )?;
        writeln!(f, "\nDevices, clipboard, screen")?;
        for d in &m.devices {
            writeln!(
                f,
                "  ask   {} {} (asked at the start of each session)    <- {}",
                d.class,
                d.path.display(),
                d.origin
            )?;
        }
        writeln!(
            f,
            "  {} (rules may only deny them)",
            if m.devices.is_empty() {
                "none available inside the sandbox"
            } else {
                "nothing else available inside the sandbox"
            }
        )?;
        if !m.rules.is_empty() {
            writeln!(f, "\nRules (deny > ask > allow)")?;
            for r in &m.rules {
                let kinds: Vec<String> = r.actions.iter().map(kind_str).collect();
                write!(
                    f,
                    "  {:<5} {} {}",
                    r.effect.as_str(),
                    kinds.join(","),
                    r.resource.as_deref().unwrap_or("*")
                )?;
                if let Some(why) = &r.reason {
                    write!(f, " ({why})")?;
                }
                writeln!(f, "    <- {}", r.origin)?;
            }
        }
        if !m.policies.is_empty() {
            writeln!(f, "\nPolicies (Rego)")?;
            for p in &m.policies {
                let kinds: Vec<String> = p.actions.iter().map(kind_str).collect();
                writeln!(
                    f,
                    "  {} answers {} for {}    <- {}",
                    p.path.display(),
                    p.rule,
                    kinds.join(", "),
                    p.origin
                )?;
            }
        }
        writeln!(f, "\nLimits")?;
        let size = |v: &Option<(u64, super::Origin)>| match v {
            Some((n, o)) => format!("{}    <- {o}", format_size(*n)),
            None => "unlimited".into(),
        };
        let lim = m.limits.effective();
        writeln!(f, "  memory  {}", size(&lim.memory))?;
        writeln!(f, "  upload  {}", size(&lim.upload))?;
        match &lim.pids {
            Some((n, o)) => writeln!(f, "  pids    {n}    <- {o}")?,
            None => writeln!(f, "  pids    unlimited")?,
        }
        writeln!(f, "  /tmp    {}", size(&lim.tmp))?;
        writeln!(f, "  /dev/shm {}", size(&lim.shm))?;
        writeln!(f, "  stage   {}", size(&lim.stage))?;
        if let Some((n, o)) = &lim.stage_entries {
            writeln!(f, "  stage entries {n}    <- {o}")?;
        }
        match &lim.cpu {
            Some((n, o)) => writeln!(f, "  cpu     {n}    <- {o}")?,
            None => writeln!(f, "  cpu     unlimited")?,
        }
        if !m.env_scrub.is_empty() || !m.env_keep.is_empty() || !m.env_set.is_empty() {
            writeln!(f, "\nEnvironment (on top of the built-in scrub list)")?;
            for (p, o) in &m.env_scrub {
                writeln!(f, "  scrub {p}    <- {o}")?;
            }
            for (k, o) in &m.env_keep {
                writeln!(f, "  keep  {k}    <- {o}")?;
            }
            for (k, v, o) in &m.env_set {
                writeln!(f, "  set   {k}={}    <- {o}", crate::inert::line(v))?;
            }
        }
        if !m.allow_degraded.is_empty() {
            writeln!(f, "\nMay run without (audited when it does)")?;
            for (feat, o) in &m.allow_degraded {
                writeln!(f, "  {feat}    <- {o}")?;
            }
        }
        if !m.narrowed.is_empty() {
            writeln!(f, "\nNarrowed by the managed file")?;
            for n in &m.narrowed {
                writeln!(f, "  {n}")?;
            }
        }
        Ok(())
    }
}

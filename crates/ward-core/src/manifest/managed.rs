//! The managed (MDM) overlay: an administrator's file that users can only narrow.
//! Grants and destinations are intersected, denies are united, limits take the minimum, and the
//! stricter of the two defaults for unknown destinations wins. A section the managed file leaves
//! out does not constrain.

use super::validate::load_text;
use super::{Ceiling, FileGrant, LoadOptions, Manifest, ManifestError, NetEntry, Origin};
use crate::action::Effect;

pub(super) fn apply(m: &mut Manifest, opts: &LoadOptions) -> Result<(), ManifestError> {
    for path in &opts.managed {
        apply_one(m, path, opts)?;
    }
    Ok(())
}

fn apply_one(
    m: &mut Manifest,
    path: &std::path::Path,
    opts: &LoadOptions,
) -> Result<(), ManifestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            // Fail closed: an unreadable managed file must not silently lift the admin's limits.
            return Err(ManifestError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the managed file: {e}"),
            });
        }
    };
    let has_files = section_present(&text, "files");
    let has_network = section_present(&text, "network");
    let admin = load_text(&text, path, false, opts, true)?;
    merge(m, admin, has_files, has_network);
    m.managed.push(path.to_path_buf());
    Ok(())
}

/// Whether the managed file speaks about a section at all (an empty list still constrains).
fn section_present(text: &str, key: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key(key))
}

fn merge(m: &mut Manifest, admin: Manifest, has_files: bool, has_network: bool) {
    m.ceilings.push(Ceiling {
        source: admin.source.clone().unwrap_or_default(),
        files: has_files.then(|| admin.files.clone()),
        network: has_network.then(|| {
            let allowed = admin
                .network
                .iter()
                .filter(|e| e.effect != Effect::Deny)
                .cloned()
                .collect();
            (
                allowed,
                admin.unknown_network.0,
                admin.unknown_network.1.clone(),
            )
        }),
    });
    if has_files {
        let mut kept = Vec::new();
        for g in m.files.drain(..) {
            let mut any = false;
            for a in &admin.files {
                if let Some(n) = intersect_grant(&g, a) {
                    if n.path != g.path || n.access != g.access || n.mode != g.mode {
                        m.narrowed.push(format!(
                            "grant {} narrowed to {} {} {} by {}",
                            g.path.display(),
                            n.access.as_str(),
                            n.mode.as_str(),
                            n.path.display(),
                            a.origin
                        ));
                    }
                    kept.push(n);
                    any = true;
                }
            }
            if !any {
                m.narrowed.push(format!(
                    "grant {} removed: the managed file allows no folder that overlaps it",
                    g.path.display()
                ));
            }
        }
        m.files = kept;
    }

    if has_network {
        let admin_allow: Vec<&NetEntry> = admin
            .network
            .iter()
            .filter(|e| e.effect != Effect::Deny)
            .collect();
        let mut kept = Vec::new();
        for e in m.network.drain(..) {
            if e.effect == Effect::Deny {
                kept.push(e);
                continue;
            }
            let mut any = false;
            for a in &admin_allow {
                if let Some(dest) = e.dest.intersect(&a.dest) {
                    // Paths: the one that is there, or the same one; two different ones
                    // cannot be combined (the entry goes: fail closed).
                    let path = match (&e.path, &a.path) {
                        (p, None) | (None, p) => p.clone(),
                        // The user's, when the managed file's takes it in.
                        (Some(x), Some(y)) if y.matches(x.as_str(), false) => Some(x.clone()),
                        _ => continue,
                    };
                    let effect = e.effect.max(a.effect);
                    if dest != e.dest || effect != e.effect || path != e.path {
                        m.narrowed.push(format!(
                            "destination {} narrowed to {effect} {dest}{} by {}",
                            e.shown(),
                            path.as_ref().map_or("", |p| p.as_str()),
                            a.origin
                        ));
                    }
                    kept.push(NetEntry {
                        effect,
                        dest,
                        path,
                        origin: e.origin.clone(),
                    });
                    any = true;
                }
            }
            if !any {
                m.narrowed.push(format!(
                    "destination {} removed: the managed file does not allow it",
                    e.shown()
                ));
            }
        }
        m.network = kept;
    }
    // Denies from the managed file always apply, listed first so they read as the stronger word.
    let mut net: Vec<NetEntry> = admin
        .network
        .into_iter()
        .filter(|e| e.effect == Effect::Deny)
        .collect();
    net.append(&mut m.network);
    m.network = net;

    // Inspection an administrator turns on stays on; their certificate files count too.
    if m.inspect.is_none() {
        m.inspect = admin.inspect;
    }
    m.ca_files.extend(admin.ca_files);
    // Repositories a push may reach: both lists hold (the managed file's, when it has one,
    // bounds the user's: a push must be named by both).
    if let Some(admin_list) = admin.git_push {
        match &mut m.git_push {
            None => m.git_push = Some(admin_list),
            Some(mine) => {
                mine.retain(|r| {
                    admin_list
                        .iter()
                        .any(|a| a.dest == r.dest && a.path.matches(r.path.as_str(), false))
                });
                if mine.is_empty() {
                    m.narrowed.push(
                        "git_push: none of the repositories is one the managed file names (no \
                         push is allowed)"
                            .into(),
                    );
                }
            }
        }
    }
    // Credentials an administrator provides (theirs win over a user's of the same name).
    m.credentials
        .retain(|c| !admin.credentials.iter().any(|a| a.name == c.name));
    m.credentials.extend(admin.credentials);
    // What a finding does: the stricter word holds, level by level (where the managed file
    // says something).
    for (level, (r, o)) in admin.findings.levels() {
        if let Some(mine) = m.findings.level_mut(level) {
            if *o != Origin::Default && *r > mine.0 {
                *mine = (*r, o.clone());
            }
        }
    }
    // A managed file without a network section says nothing about unknown destinations.
    if has_network && admin.unknown_network.0 > m.unknown_network.0 {
        m.unknown_network = admin.unknown_network;
    }
    // The stricter default for programs no rule names holds.
    if admin.unknown_exec.0 > m.unknown_exec.0 {
        m.unknown_exec = admin.unknown_exec;
    }
    m.deny_paths.extend(admin.deny_paths);
    m.rules.extend(admin.rules);
    m.policies.extend(admin.policies);

    // Running with less confinement is the admin's call too: only what every managed file
    // also allows stays allowed.
    let before = std::mem::take(&mut m.allow_degraded);
    for (f, o) in before {
        if admin.allow_degraded.iter().any(|(a, _)| *a == f) {
            m.allow_degraded.push((f, o));
        } else {
            m.narrowed.push(format!(
                "allow_degraded \"{f}\" removed: {} does not allow it",
                admin
                    .source
                    .as_ref()
                    .map_or("the managed file".into(), |p| p.display().to_string())
            ));
        }
    }

    // The admin's scrub patterns apply on top of the user's (and beat any `keep`); the admin's
    // `keep` does not widen the user's environment.
    m.env_scrub.extend(admin.env_scrub);

    let lim = &mut m.limits;
    min_limit(&mut lim.memory, admin.limits.memory);
    min_limit(&mut lim.pids, admin.limits.pids);
    min_limit(&mut lim.upload, admin.limits.upload);
    min_limit(&mut lim.tmp, admin.limits.tmp);
    min_limit(&mut lim.shm, admin.limits.shm);
    min_limit(&mut lim.stage, admin.limits.stage);
    min_limit(&mut lim.stage_entries, admin.limits.stage_entries);
    if let Some(a) = admin.limits.cpu {
        if lim.cpu.as_ref().is_none_or(|u| a.0 < u.0) {
            lim.cpu = Some(a);
        }
    }
}

fn min_limit(user: &mut Option<(u64, Origin)>, admin: Option<(u64, Origin)>) {
    if let Some(a) = admin {
        if user.as_ref().is_none_or(|u| a.0 < u.0) {
            *user = Some(a);
        }
    }
}

/// The part of grant `g` that managed grant `a` allows: the deeper of the two paths when one
/// contains the other, the weaker access, the narrower mode, and both sets of denies.
fn intersect_grant(g: &FileGrant, a: &FileGrant) -> Option<FileGrant> {
    let path = if g.path.starts_with(&a.path) {
        g.path.clone()
    } else if a.path.starts_with(&g.path) {
        a.path.clone()
    } else {
        return None;
    };
    let mut deny = g.deny.clone();
    deny.extend(a.deny.iter().cloned());
    Some(FileGrant {
        path,
        access: g.access.min(a.access),
        mode: g.mode.min(a.mode),
        deny,
        origin: g.origin.clone(),
    })
}

//! Repositories in writable grants, known by identity. Git runs a repository's config
//! (`core.fsmonitor`, `core.hooksPath`, filters) and hooks the next time someone works there,
//! so the sandbox keeps each `.git` of a writable grant read-only; what it cannot stop (a new
//! repository, or the folder holding a protected `.git` renamed and a new repository made in
//! its place) is reported when the session ends, on the terminal and in the log.

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use ward_audit::{AuditLog, Event};
use ward_core::{Access, Manifest};

/// How many entries of the writable grants are looked at when the session ends.
const SCAN_LIMIT: usize = 200_000;

/// A git repository whose config and hooks git would run: a `.git` folder or gitfile, or a
/// bare repository (`HEAD`, `objects/`, `refs/`; pushing to it runs its hooks).
pub fn is_repository(path: &Path, is_dir: bool) -> bool {
    path.file_name().is_some_and(|n| n == ".git")
        || (is_dir
            && path.join("HEAD").is_file()
            && path.join("objects").is_dir()
            && path.join("refs").is_dir())
}

/// The repositories in the writable grants now (see [`is_repository`]), and whether the scan
/// stopped at its limit before seeing everything.
pub fn repositories(m: &Manifest) -> (BTreeSet<PathBuf>, bool) {
    let mut out = BTreeSet::new();
    let mut seen = 0usize;
    for g in m.files.iter().filter(|g| g.access == Access::ReadWrite) {
        let mut stack = vec![g.path.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                seen += 1;
                if seen > SCAN_LIMIT {
                    return (out, true);
                }
                let path = e.path();
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                if is_repository(&path, is_dir) {
                    out.insert(path);
                } else if is_dir {
                    stack.push(path);
                }
            }
        }
    }
    (out, false)
}

/// Device and inode of each path (the repositories found before the agent started).
pub type Identities = BTreeMap<PathBuf, (u64, u64)>;

pub fn identities(paths: &[PathBuf]) -> Identities {
    paths
        .iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(p).ok()?;
            Some((p.clone(), (m.dev(), m.ino())))
        })
        .collect()
}

/// What became of the repositories: new paths, paths whose repository is another one now,
/// and repositories no longer where they were.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub new: Vec<PathBuf>,
    pub replaced: Vec<PathBuf>,
    pub gone: Vec<PathBuf>,
}

pub fn compare(before: &Identities, now: &BTreeSet<PathBuf>) -> Changed {
    let ids = identities(&now.iter().cloned().collect::<Vec<_>>());
    let mut c = Changed::default();
    for p in now {
        match (before.get(p), ids.get(p)) {
            (None, _) => c.new.push(p.clone()),
            (Some(a), Some(b)) if a != b => c.replaced.push(p.clone()),
            _ => {}
        }
    }
    for p in before.keys() {
        if !now.contains(p) {
            c.gone.push(p.clone());
        }
    }
    c
}

/// Compare with what was there before the agent, say what changed, and record it.
pub fn report(before: &Identities, m: &Manifest, log: &AuditLog, session: &str) {
    let (now, truncated) = repositories(m);
    let c = compare(before, &now);
    if truncated {
        eprintln!(
            "ward: warning: the writable grants hold more than {SCAN_LIMIT} entries; Ward looked \
             at those only for new or replaced git repositories: check the rest yourself"
        );
    }
    if c == Changed::default() && !truncated {
        return;
    }
    let list = |v: &[PathBuf]| {
        v.iter()
            .map(|p| ward_core::inert::path(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !c.new.is_empty() {
        eprintln!(
            "ward: warning: the agent created git repositories; their config and hooks run code \
             when you use git there, so inspect them first: {}",
            list(&c.new)
        );
    }
    if !c.replaced.is_empty() {
        eprintln!(
            "ward: warning: the agent replaced git repositories (the one there now is not the \
             one that was; its config and hooks run code when you use git there): {}",
            list(&c.replaced)
        );
    }
    if !c.gone.is_empty() {
        eprintln!(
            "ward: warning: git repositories were moved or removed by the agent (look for them \
             under other names): {}",
            list(&c.gone)
        );
    }
    let r = log.append(Event {
        session: Some(session.to_string()),
        detail: Some(json!({
            "repositories": c.new,
            "replaced": c.replaced,
            "moved_or_removed": c.gone,
            "scan_truncated": truncated,
            "why": "git runs a repository's config (core.fsmonitor, core.hooksPath, filters) and hooks",
        })),
        ..Event::new(ward_core::EventKind::SessionNewRepository)
    });
    if let Err(e) = r {
        eprintln!("ward: warning: cannot record the new repositories: {e}");
    }
}

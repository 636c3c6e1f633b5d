//! Staged writes: what an agent changed in a staged grant, read from the overlay's upper
//! layer, for review. A staged grant is an overlay whose lower layer is the real folder and
//! whose upper layer, kept in the session's state directory, holds every change: new and
//! modified files in full, deleted ones as *whiteouts* (a character device 0:0), folders that
//! replaced a folder of the same name marked *opaque* (`user.overlay.opaque`, written because
//! the overlay is mounted with `userxattr`).
//!
//! [`changes`] turns the layer into a list (added, modified, deleted, renamed where the same
//! content left one path and arrived at another, mode changes, type changes); [`diff`] renders
//! one change as a unified diff, or a summary for binary and large files. Nothing here writes
//! to the real folder.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One staged grant: the real folder and the upper layer that holds the changes.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Stage {
    pub grant: PathBuf,
    pub upper: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Modified,
    Deleted,
    Renamed,
    /// Same content, other permissions.
    Mode,
    /// A file became a folder or a link, or the other way round.
    Type,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Added => "added",
            Kind::Modified => "modified",
            Kind::Deleted => "deleted",
            Kind::Renamed => "renamed",
            Kind::Mode => "mode",
            Kind::Type => "type",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device: never applied to the real folder.
    Special,
}

/// One side of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub size: u64,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// SHA-256 of a file's content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A link's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
}

/// One change, relative to the grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: PathBuf,
    pub kind: Kind,
    /// For a rename: where the content was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    /// The real folder's entry (`None` when added).
    pub before: Option<Entry>,
    /// The staged entry (`None` when deleted).
    pub after: Option<Entry>,
}

/// Errors name the path they concern.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, StageError> {
    let mut f = deep::readable(path, |p| std::fs::File::open(p)).map_err(io(path))?;
    sha256_reader(&mut f).map_err(io(path))
}

/// SHA-256 of everything `r` yields, hex.
pub fn sha256_reader(r: &mut impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The entry at `path` (not following a final link), or `None` when nothing is there.
pub fn entry(path: &Path) -> Result<Option<Entry>, StageError> {
    let meta = match deep::short(path).and_then(std::fs::symlink_metadata) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let ft = meta.file_type();
    let mode = meta.permissions().mode() & 0o7777;
    let e = if ft.is_file() {
        Entry {
            kind: EntryType::File,
            size: meta.len(),
            mode,
            sha256: Some(sha256_file(path)?),
            target: None,
        }
    } else if ft.is_dir() {
        Entry {
            kind: EntryType::Dir,
            size: 0,
            mode,
            sha256: None,
            target: None,
        }
    } else if ft.is_symlink() {
        Entry {
            kind: EntryType::Symlink,
            size: 0,
            mode,
            sha256: None,
            target: Some(
                deep::short(path)
                    .and_then(std::fs::read_link)
                    .map_err(io(path))?,
            ),
        }
    } else {
        Entry {
            kind: EntryType::Special,
            size: 0,
            mode,
            sha256: None,
            target: None,
        }
    };
    Ok(Some(e))
}

/// Whether an upper-layer entry is a whiteout (the lower entry was deleted).
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether an upper-layer folder hides the lower folder of the same name entirely.
fn is_opaque(path: &Path) -> bool {
    let Ok(short) = deep::short(path) else {
        return false;
    };
    let Ok(c) = std::ffi::CString::new(short.path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    for name in [c"user.overlay.opaque", c"trusted.overlay.opaque"] {
        // SAFETY: valid C strings and a buffer of the given size.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n == 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}

/// Every file, link and folder under `dir` (in the real folder), relative to `base`, deepest
/// first: what a deleted or replaced folder took with it.
fn lower_tree(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, Entry)>) -> Result<(), StageError> {
    let mut names: Vec<_> = deep::short(dir)
        .and_then(std::fs::read_dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name()).map_err(io(dir)))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let r = rel.join(&name);
        if let Some(e) = entry(&p)? {
            if e.kind == EntryType::Dir {
                lower_tree(&p, &r, out)?;
            }
            out.push((r, e));
        }
    }
    Ok(())
}

/// The changes staged in `stage`, sorted by path, renames paired.
pub fn changes(stage: &Stage) -> Result<Vec<Change>, StageError> {
    let mut out = Vec::new();
    walk(stage, Path::new(""), true, &mut out)?;
    pair_renames(&mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `lower_ok`: every folder on the way to `rel` is a real folder in the grant. When one is not
/// (the agent replaced a link or a file by a folder), nothing below it has a "before": looking
/// there would follow a link out of the grant.
fn walk(
    stage: &Stage,
    rel: &Path,
    lower_ok: bool,
    out: &mut Vec<Change>,
) -> Result<(), StageError> {
    let udir = stage.upper.join(rel);
    let mut names: Vec<_> = deep::short(&udir)
        .and_then(std::fs::read_dir)
        .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(io(&udir))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let up = stage.upper.join(&r);
        let low = stage.grant.join(&r);
        let umeta = match deep::short(&up).and_then(std::fs::symlink_metadata) {
            Ok(m) => m,
            // Gone since the listing (only a running session changes its stage).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&up)(e)),
        };
        let before = if lower_ok { entry(&low)? } else { None };
        if is_whiteout(&umeta) {
            if let Some(b) = before {
                if b.kind == EntryType::Dir {
                    let mut gone = Vec::new();
                    lower_tree(&low, &r, &mut gone)?;
                    for (p, e) in gone {
                        out.push(deleted(p, e));
                    }
                }
                out.push(deleted(r, b));
            }
            continue;
        }
        let Some(after) = entry(&up)? else { continue };
        if after.kind == EntryType::Dir {
            match &before {
                Some(b) if b.kind == EntryType::Dir => {
                    if is_opaque(&up) {
                        // The agent deleted the folder and made a new one of the same name:
                        // whatever the real one held and the new one does not is deleted.
                        let mut gone = Vec::new();
                        lower_tree(&low, &r, &mut gone)?;
                        for (p, e) in gone {
                            if deep::short(&stage.upper.join(&p))
                                .and_then(std::fs::symlink_metadata)
                                .is_err()
                            {
                                out.push(deleted(p, e));
                            }
                        }
                    }
                    if b.mode != after.mode {
                        out.push(Change {
                            path: r.clone(),
                            kind: Kind::Mode,
                            from: None,
                            before: before.clone(),
                            after: Some(after.clone()),
                        });
                    }
                }
                Some(b) => out.push(Change {
                    path: r.clone(),
                    kind: Kind::Type,
                    from: None,
                    before: Some(b.clone()),
                    after: Some(after.clone()),
                }),
                None => out.push(Change {
                    path: r.clone(),
                    kind: Kind::Added,
                    from: None,
                    before: None,
                    after: Some(after.clone()),
                }),
            }
            let below_ok = lower_ok && before.as_ref().is_some_and(|b| b.kind == EntryType::Dir);
            // A folder the agent left without its owner's read or search permission (the
            // stage is ours): opened up while it is walked, its mode put back after (and
            // recorded as the agent left it).
            let closed = after.mode & 0o500 != 0o500;
            if closed {
                deep::set_mode(&up, after.mode | 0o700).map_err(io(&up))?;
            }
            let walked = walk(stage, &r, below_ok, out);
            if closed {
                deep::set_mode(&up, after.mode).map_err(io(&up))?;
            }
            walked?;
            continue;
        }
        if before.as_ref().is_some_and(|b| b.kind == EntryType::Dir) {
            // A folder replaced by a file or a link: what it held is deleted too.
            let mut gone = Vec::new();
            lower_tree(&low, &r, &mut gone)?;
            for (p, e) in gone {
                out.push(deleted(p, e));
            }
        }
        let kind = match &before {
            None => Some(Kind::Added),
            Some(b) if b.kind != after.kind => Some(Kind::Type),
            Some(b) if b.sha256 != after.sha256 || b.target != after.target => Some(Kind::Modified),
            Some(b) if b.mode != after.mode => Some(Kind::Mode),
            // Copied up without a change (opened for writing, touched).
            Some(_) => None,
        };
        if let Some(kind) = kind {
            out.push(Change {
                path: r,
                kind,
                from: None,
                before,
                after: Some(after),
            });
        }
    }
    Ok(())
}

fn deleted(path: PathBuf, e: Entry) -> Change {
    Change {
        path,
        kind: Kind::Deleted,
        from: None,
        before: Some(e),
        after: None,
    }
}

/// A deleted file and an added file with the same content (non-empty) are a rename. Each
/// deleted file pairs with at most one added file.
fn pair_renames(changes: &mut Vec<Change>) {
    let mut deleted_by_hash: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        if let (Kind::Deleted, Some(b)) = (c.kind, &c.before) {
            if let (EntryType::File, Some(h), true) = (b.kind, &b.sha256, b.size > 0) {
                deleted_by_hash.entry(h.clone()).or_default().push(i);
            }
        }
    }
    let mut remove = Vec::new();
    for i in 0..changes.len() {
        let c = &changes[i];
        if c.kind != Kind::Added {
            continue;
        }
        let Some(a) = &c.after else { continue };
        let Some(h) = &a.sha256 else { continue };
        if let Some(list) = deleted_by_hash.get_mut(h) {
            if let Some(j) = list.pop() {
                let from = changes[j].path.clone();
                let before = changes[j].before.clone();
                let c = &mut changes[i];
                c.kind = Kind::Renamed;
                c.from = Some(from);
                c.before = before;
                remove.push(j);
            }
        }
    }
    remove.sort_unstable();
    for j in remove.into_iter().rev() {
        changes.remove(j);
    }
}

/// Drop one change from the stage, so the real folder keeps its version: the upper layer's
/// entry at the change's path (and, for a rename, the whiteout at its source) is removed.
/// Returns `false` when the change has no entry of its own there (a file inside a deleted
/// folder: discard the folder).
pub fn discard(stage: &Stage, c: &Change) -> Result<bool, StageError> {
    let mut any = false;
    let mut paths = vec![c.path.clone()];
    paths.extend(c.from.clone());
    for rel in paths {
        // Never leave the upper layer: the path is relative and free of `..` by construction
        // (it came from walking the layer), checked anyway.
        if rel.is_absolute()
            || rel
                .components()
                .any(|x| x == std::path::Component::ParentDir)
        {
            continue;
        }
        let p = stage.upper.join(&rel);
        let short = deep::short(&p).map_err(io(&p))?;
        let meta = match std::fs::symlink_metadata(&short) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&p)(e)),
        };
        if meta.is_dir() {
            deep::remove_all(&p).map_err(io(&p))?;
        } else {
            std::fs::remove_file(&short).map_err(io(&p))?;
        }
        any = true;
    }
    Ok(any)
}

/// A path for a person to read: through Ward's one printer for agent-chosen text.
pub fn shown(p: &Path) -> String {
    ward_core::inert::path(p)
}

/// Files larger than this are summarised, not diffed.
pub const DIFF_LIMIT: u64 = 4 << 20;

fn text_of(path: &Path, e: Option<&Entry>) -> Result<Option<String>, StageError> {
    match e {
        Some(e) if e.kind == EntryType::File => {
            if e.size > DIFF_LIMIT {
                return Ok(None);
            }
            let bytes = deep::readable(path, |p| std::fs::read(p)).map_err(io(path))?;
            if bytes[..bytes.len().min(8000)].contains(&0) {
                return Ok(None);
            }
            Ok(String::from_utf8(bytes).ok())
        }
        Some(e) if e.kind == EntryType::Symlink => Ok(Some(format!(
            "-> {}\n",
            e.target
                .as_ref()
                .map_or(String::new(), |t| t.display().to_string())
        ))),
        Some(_) => Ok(None),
        None => Ok(Some(String::new())),
    }
}

/// A unified diff of one change (real folder -> stage), or a one-line summary for binary,
/// large or special files. `color` adds ANSI colours for a terminal.
pub fn diff(stage: &Stage, c: &Change, color: bool) -> Result<String, StageError> {
    let old_path = stage.grant.join(c.from.as_ref().unwrap_or(&c.path));
    let new_path = stage.upper.join(&c.path);
    let old = text_of(&old_path, c.before.as_ref())?;
    let new = text_of(&new_path, c.after.as_ref())?;
    let a = match c.before {
        Some(_) => format!("a/{}", shown(c.from.as_ref().unwrap_or(&c.path))),
        None => "/dev/null".into(),
    };
    let b = match c.after {
        Some(_) => format!("b/{}", shown(&c.path)),
        None => "/dev/null".into(),
    };
    let (old, new) = match (old, new) {
        (Some(o), Some(n)) => (o, n),
        _ => {
            // Not diffed (binary, large or special): what each side is, and what it says.
            let side = |p: &Path, e: Option<&Entry>| match e {
                Some(e) => summary::describe(p, e),
                None => "nothing\n".into(),
            };
            let (was, now) = (
                side(&old_path, c.before.as_ref()),
                side(&new_path, c.after.as_ref()),
            );
            let nl = |s: String| if s.ends_with('\n') { s } else { s + "\n" };
            return Ok(format!(
                "--- {a}\n+++ {b}\nwas: {}now: {}",
                nl(was),
                nl(now)
            ));
        }
    };
    let mode = match (&c.before, &c.after) {
        (Some(be), Some(af)) if be.mode != af.mode => Some((be.mode, af.mode)),
        _ => None,
    };
    Ok(unified(&a, &b, &old, &new, mode, color))
}

/// A unified diff of two texts under the names `a` and `b` (with a mode line when the
/// permissions differ). Text the agent wrote goes through here: never panics on any input.
pub fn unified(
    a: &str,
    b: &str,
    old: &str,
    new: &str,
    mode: Option<(u32, u32)>,
    color: bool,
) -> String {
    let text = similar::TextDiff::from_lines(old, new);
    let mut out = format!(
        "--- {}\n+++ {}\n",
        ward_core::inert::line(a),
        ward_core::inert::line(b)
    );
    if let Some((from, to)) = mode {
        out.push_str(&format!("mode {from:o} -> {to:o}\n"));
    }
    for group in text.grouped_ops(3) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let (o0, o1) = (first.old_range().start, last.old_range().end);
        let (n0, n1) = (first.new_range().start, last.new_range().end);
        let hunk = format!(
            "@@ -{},{} +{},{} @@\n",
            if o1 > o0 { o0 + 1 } else { o0 },
            o1 - o0,
            if n1 > n0 { n0 + 1 } else { n0 },
            n1 - n0
        );
        out.push_str(&paint(&hunk, "36", color));
        for op in &group {
            for ch in text.iter_changes(op) {
                let (sign, code) = match ch.tag() {
                    similar::ChangeTag::Delete => ('-', "31"),
                    similar::ChangeTag::Insert => ('+', "32"),
                    similar::ChangeTag::Equal => (' ', ""),
                };
                let mut line = format!("{sign}{}", ward_core::inert::text(ch.value()));
                if !line.ends_with('\n') {
                    line.push_str("\n\\ No newline at end of file\n");
                }
                out.push_str(&if code.is_empty() {
                    line
                } else {
                    paint(&line, code, color)
                });
            }
        }
    }
    out
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

pub mod apply;
pub mod classify;
pub mod deep;
pub mod summary;

#[cfg(test)]
mod tests;

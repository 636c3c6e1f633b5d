//! Applying reviewed changes to the real folder: atomically per file, journaled per batch, never
//! following a link, never overwriting what changed since the session started.
//!
//! [`plan`] turns the approved [`Change`]s into operations, setting aside *conflicts* (the real
//! entry changed after the session started, or appeared where the agent added one) and what is
//! never applied (special files; links pointing out of the grant). [`execute`] writes the plan
//! to a journal (synced) and carries it out:
//! 1. removals, deepest first;
//! 2. new content written to temporary files beside their targets (`.ward-apply.N`), then the
//!    filesystem synced (`syncfs`: one flush for the batch instead of one per file);
//! 3. each temporary renamed over its target (atomic: a reader sees the old file or the new,
//!    never a mix), folders and links made, modes set;
//! 4. the filesystem synced again (the renames), the journal removed.
//!
//! Every path is resolved from the grant with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
//! so a link anywhere on the way, planted by anyone at any time, makes the operation fail
//! instead of landing outside the grant. Each operation is idempotent against the state it
//! aims at, which is what [`resume`] relies on after a crash: the journal's plan is run again;
//! what is already done is recognised (same content, already gone) and skipped; what is
//! neither the old nor the new state is reported as a conflict and left alone.

use crate::{Change, Entry, EntryType, Kind, Stage, StageError};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One step of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Replace (or create) a file with the stage's content.
    Write {
        path: PathBuf,
        mode: u32,
        /// SHA-256 of the real file when planned (`None`: nothing there).
        before: Option<String>,
        after: String,
    },
    /// Make a folder (0700 while its content arrives; its mode is set at the end).
    Mkdir {
        path: PathBuf,
    },
    Link {
        path: PathBuf,
        target: PathBuf,
        /// The link there when planned (`None`: nothing may be there).
        was: Option<PathBuf>,
    },
    /// Remove a file or link that still is what it was when planned.
    Remove {
        path: PathBuf,
        was: Was,
        /// A rename's source: removed only once this path holds the same content, after the
        /// new copy is in place.
        #[serde(default)]
        moved_to: Option<PathBuf>,
    },
    RemoveDir {
        path: PathBuf,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
}

/// What a real entry was when the plan was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Was {
    File(String),
    Link(PathBuf),
}

impl Op {
    pub fn path(&self) -> &Path {
        match self {
            Op::Write { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Link { path, .. }
            | Op::Remove { path, .. }
            | Op::RemoveDir { path }
            | Op::Chmod { path, .. } => path,
        }
    }
}

/// A change set aside, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub path: PathBuf,
    pub reason: String,
}

/// What [`plan`] makes of the approved changes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Approved changes that go ahead.
    #[serde(skip)]
    pub changes: Vec<Change>,
    /// The real entry changed since the session started: shown, not overwritten.
    pub conflicts: Vec<Held>,
    /// Never applied: special files, links out of the grant.
    pub refused: Vec<Held>,
}

/// What [`execute`] or [`resume`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub applied: usize,
    /// Operations found already done (a resumed batch).
    pub already: usize,
    /// Operations that met neither the old nor the new state (or a link on the way).
    pub conflicts: Vec<Held>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the real entry at `p` changed (content, metadata, or appeared) after `started_ns`
/// (nanoseconds since the epoch): its change time, which no one can set back.
fn changed_since(p: &Path, started_ns: i128) -> bool {
    match crate::deep::short(p).and_then(std::fs::symlink_metadata) {
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            let ctime = i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
            ctime > started_ns
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Cannot tell: a conflict (nothing is overwritten unseen).
        Err(_) => true,
    }
}

/// Whether something is at `p` in the real folder (or it cannot be told: then yes).
fn exists(p: &Path) -> bool {
    match crate::deep::short(p).and_then(std::fs::symlink_metadata) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Whether a link at `rel` (relative to the grant) pointing at `target` stays inside the grant
/// by its text alone: `..` only at the start and no more of them than the link is deep, no `.`
/// games, absolute targets inside the grant. (Links already in the folder could still lead
/// out; the commit checks where each new link really resolves.)
fn link_stays_inside(grant: &Path, rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return match target.strip_prefix(grant) {
            Ok(r) => r.components().all(|c| matches!(c, Component::Normal(_))),
            Err(_) => false,
        };
    }
    let depth = rel.components().count().saturating_sub(1);
    let mut ups = 0;
    let mut seen_name = false;
    for c in target.components() {
        match c {
            Component::ParentDir if !seen_name => ups += 1,
            Component::Normal(_) => seen_name = true,
            _ => return false,
        }
    }
    ups <= depth && !target.as_os_str().is_empty()
}

/// The system's read-only folders: a link to an existing file or folder there (a virtual
/// environment's `bin/python3 -> /usr/bin/python3`) is applied as the link it is. Links into
/// the person's home, /tmp or anywhere else writable stay refused.
const SYSTEM_TARGETS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Is `target` an absolute path, plainly written (no `.` or `..`), to something that exists
/// in one of the system's read-only folders (through links that stay there)?
pub fn system_target(target: &Path) -> bool {
    let plain = target.is_absolute()
        && target
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    // (/usr/local is often the person's own to write.)
    let under =
        |p: &Path| SYSTEM_TARGETS.iter().any(|s| p.starts_with(s)) && !p.starts_with("/usr/local");
    plain && under(target) && std::fs::canonicalize(target).is_ok_and(|real| under(&real))
}

/// The prefix of Ward's temporaries in the real folder; staged files named so are refused.
pub const TMP_PREFIX: &str = ".ward-apply.";

/// Turn approved changes into a plan. `started_ns`: when the session started (its
/// `stage.json`), to tell conflicts.
pub fn plan(stage: &Stage, approved: &[Change], started_ns: i128) -> Plan {
    let mut p = Plan::default();
    let mut removals: Vec<Op> = Vec::new();
    let mut creations: Vec<Op> = Vec::new();
    let mut late: Vec<Op> = Vec::new();
    let mut modes: Vec<Op> = Vec::new();
    let refuse = |p: &mut Plan, c: &Change, reason: String| {
        p.refused.push(Held {
            path: c.path.clone(),
            reason,
        })
    };
    for c in approved {
        let real = stage.grant.join(&c.path);
        let names_ok = c.path.to_str().is_some()
            && c.from.as_ref().is_none_or(|f| f.to_str().is_some())
            && c.after
                .as_ref()
                .and_then(|a| a.target.as_ref())
                .is_none_or(|t| t.to_str().is_some());
        if !names_ok {
            refuse(&mut p, c, "a name that is not UTF-8 is not applied".into());
            continue;
        }
        if c.path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
        {
            refuse(
                &mut p,
                c,
                format!("names starting with {TMP_PREFIX} are Ward's own"),
            );
            continue;
        }
        if let Some(a) = &c.after {
            if a.kind == EntryType::Special {
                refuse(
                    &mut p,
                    c,
                    "a fifo, socket or device is never applied".into(),
                );
                continue;
            }
            if let (EntryType::Symlink, Some(t)) = (a.kind, &a.target) {
                if !link_stays_inside(&stage.grant, &c.path, t) && !system_target(t) {
                    refuse(
                        &mut p,
                        c,
                        format!("a link to {} points out of the granted folder", t.display()),
                    );
                    continue;
                }
            }
        }
        // Conflicts: the real entry (or, for a rename, its source) changed since the start.
        let touched = match c.kind {
            Kind::Added => exists(&real),
            Kind::Renamed => {
                exists(&real)
                    || c.from
                        .as_ref()
                        .is_none_or(|f| changed_since(&stage.grant.join(f), started_ns))
            }
            _ => changed_since(&real, started_ns),
        };
        if touched {
            p.conflicts.push(Held {
                path: c.path.clone(),
                reason: "the real entry changed after the session started".into(),
            });
            continue;
        }
        // Permissions come along; set-id, sticky and world-writable bits do not.
        let mode = |e: &Entry| e.mode & 0o775;
        let was = |e: &Entry| -> Option<Was> {
            match e.kind {
                EntryType::File => e.sha256.clone().map(Was::File),
                EntryType::Symlink => e.target.clone().map(Was::Link),
                _ => None,
            }
        };
        let create = |after: &Entry, before: Option<&Entry>, modes: &mut Vec<Op>| -> Op {
            match after.kind {
                EntryType::Dir => {
                    if mode(after) != 0o700 {
                        modes.push(Op::Chmod {
                            path: c.path.clone(),
                            mode: mode(after),
                        });
                    }
                    Op::Mkdir {
                        path: c.path.clone(),
                    }
                }
                EntryType::Symlink => Op::Link {
                    path: c.path.clone(),
                    target: after.target.clone().unwrap_or_default(),
                    was: before.and_then(|b| b.target.clone()),
                },
                _ => Op::Write {
                    path: c.path.clone(),
                    mode: mode(after),
                    before: before.and_then(|b| b.sha256.clone()),
                    after: after.sha256.clone().unwrap_or_default(),
                },
            }
        };
        let remove = |path: &Path, e: &Entry, moved_to: Option<PathBuf>| -> Option<Op> {
            if e.kind == EntryType::Dir {
                return Some(Op::RemoveDir {
                    path: path.to_path_buf(),
                });
            }
            Some(Op::Remove {
                path: path.to_path_buf(),
                was: was(e)?,
                moved_to,
            })
        };
        match (c.kind, &c.before, &c.after) {
            (Kind::Deleted, Some(b), _) => removals.extend(remove(&c.path, b, None)),
            (Kind::Added, _, Some(a)) => creations.push(create(a, None, &mut modes)),
            (Kind::Modified, Some(b), Some(a)) => creations.push(create(a, Some(b), &mut modes)),
            (Kind::Mode, _, Some(a)) => modes.push(Op::Chmod {
                path: c.path.clone(),
                mode: mode(a),
            }),
            (Kind::Type, Some(b), Some(a)) => {
                removals.extend(remove(&c.path, b, None));
                creations.push(create(a, None, &mut modes));
            }
            (Kind::Renamed, Some(b), Some(a)) => {
                creations.push(create(a, None, &mut modes));
                // The source goes only once the new copy is in place.
                if let Some(from) = &c.from {
                    late.extend(remove(from, b, Some(c.path.clone())));
                }
            }
            _ => continue,
        }
        p.changes.push(c.clone());
    }
    let depth = |o: &Op| o.path().components().count();
    removals.sort_by_key(|o| std::cmp::Reverse(depth(o)));
    creations.sort_by_key(depth);
    modes.sort_by_key(|o| std::cmp::Reverse(depth(o)));
    p.ops = removals;
    p.ops.extend(creations);
    p.ops.extend(late);
    p.ops.extend(modes);
    p
}

/// The journal of a batch: the stage it applies and the plan, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    grant: PathBuf,
    upper: PathBuf,
    ops: usize,
    /// Names this batch's temporaries (`.ward-apply.NONCE.N`).
    nonce: String,
}

fn cstr(p: &Path) -> Result<CString, StageError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| StageError::Io {
        path: p.to_path_buf(),
        source: std::io::Error::other("path with a NUL byte"),
    })
}

/// Open `rel` beneath `root` (a folder descriptor); `follow`: resolve links on the way, but
/// never out of `root`.
fn open_at(root: &OwnedFd, rel: &Path, flags: i32, follow: bool) -> std::io::Result<OwnedFd> {
    // Deeper than one call takes: the folders on the way are opened a piece at a time, each
    // beneath the last (so beneath the grant), never following a link.
    let parts = crate::deep::pieces(rel);
    if let Some((last, dirs)) = parts.split_last().filter(|(_, dirs)| !dirs.is_empty()) {
        let mut dir: Option<OwnedFd> = None;
        for d in dirs {
            let at = dir.as_ref().unwrap_or(root);
            dir = Some(open_at1(at, d, libc::O_PATH | libc::O_DIRECTORY, false)?);
        }
        return open_at1(dir.as_ref().unwrap_or(root), last, flags, follow);
    }
    open_at1(root, rel, flags, follow)
}

fn open_at1(root: &OwnedFd, rel: &Path, flags: i32, follow: bool) -> std::io::Result<OwnedFd> {
    let c = CString::new(if rel.as_os_str().is_empty() {
        b".".to_vec()
    } else {
        rel.as_os_str().as_bytes().to_vec()
    })
    .map_err(|_| std::io::Error::other("path with a NUL byte"))?;
    let resolve = libc::RESOLVE_BENEATH
        | if follow {
            libc::RESOLVE_NO_MAGICLINKS
        } else {
            libc::RESOLVE_NO_SYMLINKS
        };
    let flags = flags | if follow { 0 } else { libc::O_NOFOLLOW };
    ward_sys::openat2(root.as_fd(), &c, flags, resolve)
}

/// Open `rel` beneath `root` without following any link.
fn open_beneath(root: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    open_at(root, rel, flags, false)
}

/// The parent folder of `rel` (opened beneath the grant) and the last component.
fn parent_of(root: &OwnedFd, rel: &Path) -> std::io::Result<(OwnedFd, CString)> {
    let name = rel
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let dir = open_beneath(
        root,
        rel.parent().unwrap_or(Path::new("")),
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    let name = CString::new(name.as_bytes()).map_err(|_| std::io::Error::other("NUL"))?;
    Ok((dir, name))
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r != 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What is in the real folder at `name` in `dir`, never following a link, never blocking on
/// a fifo.
#[derive(Debug, PartialEq, Eq)]
enum Real {
    Missing,
    File(String),
    Link(PathBuf),
    Dir,
    Other,
}

fn real_state(dir: &OwnedFd, name: &CString) -> std::io::Result<Real> {
    // SAFETY: fstatat into a zeroed struct, not following a final link.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory descriptor and C string; the kernel fills `st`.
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(Real::Missing)
        } else {
            Err(e)
        };
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Ok(Real::Dir),
        libc::S_IFLNK => {
            let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
            // SAFETY: readlinkat into a buffer of the given size.
            let n = unsafe {
                libc::readlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr() as *mut libc::c_char,
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            Ok(Real::Link(PathBuf::from(std::ffi::OsString::from_vec(buf))))
        }
        libc::S_IFREG => {
            // SAFETY: openat with a valid dirfd and name; O_NONBLOCK so a swapped-in fifo
            // cannot hang the reviewer, O_NOFOLLOW so a swapped-in link is refused.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: just opened.
            let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            if !f.metadata()?.is_file() {
                return Ok(Real::Other);
            }
            Ok(Real::File(crate::sha256_reader(&mut f)?))
        }
        _ => Ok(Real::Other),
    }
}

fn tmp_name(nonce: &str, i: usize) -> CString {
    #[allow(clippy::expect_used)] // a fixed prefix and two numbers: never a NUL
    CString::new(format!("{TMP_PREFIX}{nonce}.{i}")).expect("no NUL")
}

fn nonce() -> String {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Write the journal, then carry out the plan. The journal is removed once everything is on
/// disk; if this is interrupted, [`resume`] finishes from it.
pub fn execute(stage: &Stage, plan: &Plan, journal: &Path) -> Result<Report, StageError> {
    let header = Header {
        grant: stage.grant.clone(),
        upper: stage.upper.clone(),
        ops: plan.ops.len(),
        nonce: nonce(),
    };
    let mut text = serde_json::to_string(&header).map_err(|e| io(journal)(e.into()))?;
    text.push('\n');
    for op in &plan.ops {
        text.push_str(&serde_json::to_string(op).map_err(|e| io(journal)(e.into()))?);
        text.push('\n');
    }
    let tmp = journal.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, journal).map_err(io(journal))?;
    if let Some(d) = journal.parent() {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io(d))?;
    }
    run(stage, &plan.ops, journal, &header.nonce, false)
}

/// Finish a batch a crash interrupted. `Ok(None)` when there is no journal. `expect`: the
/// stage the journal must be about (a journal naming other folders is refused).
pub fn resume(journal: &Path, expect: &Stage) -> Result<Option<Report>, StageError> {
    let text = match std::fs::read_to_string(journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(journal)(e)),
    };
    let damaged = |why: String| StageError::Io {
        path: journal.to_path_buf(),
        source: std::io::Error::other(format!("damaged journal: {why}")),
    };
    let (stage, ops, nonce) = parse_journal_nonce(&text).map_err(damaged)?;
    if stage != *expect {
        return Err(damaged(
            "it names other folders than the session's stage".into(),
        ));
    }
    let report = run(&stage, &ops, journal, &nonce, true)?;
    Ok(Some(report))
}

/// Read a journal: the stage it applies and its operations. Paths in operations must be
/// relative and free of `..` (they are joined to the grant).
pub fn parse_journal(text: &str) -> Result<(Stage, Vec<Op>), String> {
    parse_journal_nonce(text).map(|(s, o, _)| (s, o))
}

fn parse_journal_nonce(text: &str) -> Result<(Stage, Vec<Op>, String), String> {
    let mut lines = text.lines();
    let header: Header = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("no header")?;
    let ops: Vec<Op> = lines
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if ops.len() != header.ops {
        return Err(format!(
            "{} operations announced, {} found",
            header.ops,
            ops.len()
        ));
    }
    let relative = |p: &Path| {
        !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
    };
    for op in &ops {
        let moved = match op {
            Op::Remove {
                moved_to: Some(m), ..
            } => relative(m),
            _ => true,
        };
        if !relative(op.path()) || !moved {
            return Err(format!(
                "operation on {} outside the grant",
                op.path().display()
            ));
        }
    }
    if !header.grant.is_absolute() || !header.upper.is_absolute() {
        return Err("relative folders".into());
    }
    if !header.nonce.bytes().all(|b| b.is_ascii_hexdigit()) || header.nonce.len() != 16 {
        return Err("bad temporary name".into());
    }
    Ok((
        Stage {
            grant: header.grant,
            upper: header.upper,
        },
        ops,
        header.nonce,
    ))
}

/// What one step came to.
enum Step {
    Applied,
    Already,
    Held(String),
    /// Its new content is in a temporary (pass 1); pass 2 moves it into place.
    Written,
    /// Nothing in pass 1; pass 2 does it.
    Later,
}

/// Pass 1: removals, and new file content into temporaries where the folder exists.
fn pass1(stage: &Stage, root: &OwnedFd, op: &Op, tmp: &CString) -> std::io::Result<Step> {
    let path = op.path();
    match op {
        Op::Remove { moved_to: None, .. } | Op::RemoveDir { .. } => remove(root, op),
        Op::Write {
            before,
            after,
            mode,
            ..
        } => {
            let Ok((dir, name)) = parent_of(root, path) else {
                return Ok(Step::Later); // its folder comes in pass 2
            };
            Ok(match write_state(&dir, &name, before, after)? {
                Some(step) => step,
                None => {
                    write_tmp(stage, path, &dir, tmp, *mode, after)?;
                    Step::Written
                }
            })
        }
        _ => Ok(Step::Later),
    }
}

fn remove(root: &OwnedFd, op: &Op) -> std::io::Result<Step> {
    let path = op.path();
    let (dir, name) = match parent_of(root, path) {
        Ok(x) => x,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Step::Already),
        Err(e) => return Ok(Step::Held(unreachable(e))),
    };
    match op {
        Op::Remove { was, moved_to, .. } => {
            let now = real_state(&dir, &name)?;
            let same = match (&now, was) {
                (Real::Missing, _) => return Ok(Step::Already),
                (Real::File(h), Was::File(w)) => h == w,
                (Real::Link(t), Was::Link(w)) => t == w,
                _ => false,
            };
            if !same {
                return Ok(Step::Held("changed since it was planned".into()));
            }
            if let (Some(to), Was::File(w)) = (moved_to, was) {
                // A rename's source: only once the new copy holds the same content.
                let there = match parent_of(root, to) {
                    Ok((d, n)) => real_state(&d, &n)?,
                    Err(_) => Real::Missing,
                };
                if there != Real::File(w.clone()) {
                    return Ok(Step::Held(format!(
                        "kept: its new copy at {} is not in place",
                        to.display()
                    )));
                }
            }
            // SAFETY: unlinkat with a valid dirfd and name.
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
            Ok(Step::Applied)
        }
        _ => {
            // SAFETY: as above; not recursive: a folder with content left is held.
            let r = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
            let e = std::io::Error::last_os_error();
            Ok(match (r, e.raw_os_error()) {
                (0, _) => Step::Applied,
                (_, Some(libc::ENOENT)) => Step::Already,
                _ => Step::Held(format!("cannot remove the folder: {e}")),
            })
        }
    }
}

fn unreachable(e: std::io::Error) -> String {
    format!("cannot reach it without following a link: {e}")
}

/// Pass 2, in plan order (a folder before what goes in it).
fn pass2(
    stage: &Stage,
    root: &OwnedFd,
    op: &Op,
    tmp: &CString,
    written: bool,
) -> std::io::Result<Step> {
    let path = op.path();
    if let Op::Remove {
        moved_to: Some(_), ..
    } = op
    {
        return remove(root, op);
    }
    let (dir, name) = match parent_of(root, path) {
        Ok(x) => x,
        Err(e) => return Ok(Step::Held(unreachable(e))),
    };
    match op {
        Op::Write {
            before,
            after,
            mode,
            ..
        } => {
            if !written {
                if let Some(step) = write_state(&dir, &name, before, after)? {
                    return Ok(step);
                }
                write_tmp(stage, path, &dir, tmp, *mode, after)?.sync_data()?;
            }
            rename_in(&dir, tmp, &name, before.is_none())?;
            Ok(Step::Applied)
        }
        Op::Mkdir { .. } => {
            // SAFETY: mkdirat with a valid dirfd and name.
            if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) } == 0 {
                return Ok(Step::Applied);
            }
            let e = std::io::Error::last_os_error();
            Ok(
                if e.raw_os_error() == Some(libc::EEXIST) && real_state(&dir, &name)? == Real::Dir {
                    Step::Already
                } else {
                    Step::Held(format!("cannot make the folder: {e}"))
                },
            )
        }
        Op::Link { target, was, .. } => {
            let now = real_state(&dir, &name)?;
            if now == Real::Link(target.clone()) {
                return Ok(Step::Already);
            }
            let expected = match was {
                Some(w) => Real::Link(w.clone()),
                None => Real::Missing,
            };
            if now != expected {
                return Ok(Step::Held("changed since it was planned".into()));
            }
            let t = CString::new(target.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::other("NUL in a link target"))?;
            // SAFETY: symlinkat with valid arguments; a leftover temporary is replaced.
            unsafe {
                libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
                check(libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), tmp.as_ptr()))?;
            }
            // Where does it really lead, through the links already in the folder? (A link
            // to a system file leads there whatever the folder holds.)
            let tmp_rel = path.with_file_name(std::ffi::OsStr::from_bytes(tmp.as_bytes()));
            let checked = if system_target(target) {
                Ok(())
            } else {
                open_at(root, &tmp_rel, libc::O_PATH, true).map(drop)
            };
            if let Err(e) = checked {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    // SAFETY: removing our own temporary.
                    unsafe {
                        libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
                    }
                    return Ok(Step::Held(format!(
                        "the link to {} would lead out of the granted folder ({e})",
                        target.display()
                    )));
                }
            }
            rename_in(&dir, tmp, &name, was.is_none())?;
            Ok(Step::Applied)
        }
        Op::Chmod { mode, .. } => match open_beneath(root, path, libc::O_RDONLY | libc::O_NONBLOCK)
        {
            Ok(fd) => {
                // SAFETY: fchmod on an open descriptor.
                check(unsafe { libc::fchmod(fd.as_raw_fd(), *mode) })?;
                Ok(Step::Applied)
            }
            Err(e) => Ok(Step::Held(unreachable(e))),
        },
        Op::Remove { .. } | Op::RemoveDir { .. } => Ok(Step::Later),
    }
}

fn run(
    stage: &Stage,
    ops: &[Op],
    journal: &Path,
    nonce: &str,
    resumed: bool,
) -> Result<Report, StageError> {
    let grant = &stage.grant;
    let root = {
        let c = cstr(grant)?;
        // SAFETY: open of a path we own the C string for.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io(grant)(std::io::Error::last_os_error()));
        }
        // SAFETY: just opened.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut report = Report::default();
    let tally = |report: &mut Report, path: &Path, r: std::io::Result<Step>| -> Option<Step> {
        match r {
            Ok(Step::Applied) => report.applied += 1,
            Ok(Step::Already) => report.already += 1,
            Ok(Step::Held(reason)) => report.conflicts.push(Held {
                path: path.to_path_buf(),
                reason,
            }),
            // A step that fails is held with the reason; the batch goes on.
            Err(e) => report.conflicts.push(Held {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
            Ok(other) => return Some(other),
        }
        None
    };
    let mut written = vec![false; ops.len()];
    let mut later = vec![false; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        match tally(
            &mut report,
            op.path(),
            pass1(stage, &root, op, &tmp_name(nonce, i)),
        ) {
            Some(Step::Written) => written[i] = true,
            Some(Step::Later) => later[i] = true,
            _ => {}
        }
    }
    // The temporaries' content is on disk before any of them replaces a file.
    syncfs(&root).map_err(io(grant))?;
    for (i, op) in ops.iter().enumerate() {
        if written[i] || later[i] {
            let r = pass2(stage, &root, op, &tmp_name(nonce, i), written[i]);
            tally(&mut report, op.path(), r);
        }
    }
    // Temporaries this batch (or its crashed first run) left behind.
    for (i, op) in ops
        .iter()
        .enumerate()
        .filter(|(i, _)| resumed || written[*i])
    {
        if let Ok((dir, _)) = parent_of(&root, op.path()) {
            // SAFETY: unlinkat of our own temporary name; ENOENT is the usual answer.
            unsafe {
                libc::unlinkat(dir.as_raw_fd(), tmp_name(nonce, i).as_ptr(), 0);
            }
        }
    }
    // The renames are on disk; the batch is done.
    syncfs(&root).map_err(io(grant))?;
    std::fs::remove_file(journal).map_err(io(journal))?;
    Ok(report)
}

/// Where a planned file write stands against the real file now: `Some` when there is nothing
/// to write (already done, or changed and held), `None` to go ahead.
fn write_state(
    dir: &OwnedFd,
    name: &CString,
    before: &Option<String>,
    after: &str,
) -> std::io::Result<Option<Step>> {
    let now = real_state(dir, name)?;
    Ok(match (&now, before) {
        (Real::File(h), _) if h == after => Some(Step::Already),
        (Real::Missing, None) => None,
        (Real::File(h), Some(b)) if h == b => None,
        _ => Some(Step::Held("changed since it was planned".into())),
    })
}

/// Rename `from` over `to`, both in `dir` (atomic: `to` is the old file or the new one);
/// `new`: `to` must not exist (RENAME_NOREPLACE), so nothing that appeared since is replaced.
fn rename_in(dir: &OwnedFd, from: &CString, to: &CString, new: bool) -> std::io::Result<()> {
    let flags: libc::c_uint = if new { libc::RENAME_NOREPLACE } else { 0 };
    // SAFETY: renameat2 within one folder descriptor, valid names.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            flags,
        )
    };
    check(r as libc::c_int)
}

/// Copy the stage's file to the temporary `tmp` in `dir`, checking it is the content that
/// was approved, with `mode`, synced later by the caller.
fn write_tmp(
    stage: &Stage,
    path: &Path,
    dir: &OwnedFd,
    tmp: &CString,
    mode: u32,
    after: &str,
) -> std::io::Result<std::fs::File> {
    let mut src = crate::deep::readable(&stage.upper.join(path), |p| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(p)
    })?;
    // SAFETY: openat creating a new file in a valid dirfd; a leftover from an interrupted run
    // is removed first.
    let fd = unsafe {
        libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened.
    let mut dst = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut h, &buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    let got: String = sha2::Digest::finalize(h)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != after {
        // SAFETY: unlinkat of our own temporary.
        unsafe {
            libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
        }
        return Err(std::io::Error::other(
            "the staged file changed after it was reviewed",
        ));
    }
    // SAFETY: fchmod on an open descriptor.
    check(unsafe { libc::fchmod(dst.as_raw_fd(), mode) })?;
    Ok(dst)
}

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;

fn syncfs(fd: &OwnedFd) -> std::io::Result<()> {
    // An O_PATH descriptor cannot be synced: open the folder for reading.
    let d = open_beneath(fd, Path::new(""), libc::O_RDONLY | libc::O_DIRECTORY)?;
    // SAFETY: syncfs on an open descriptor.
    check(unsafe { libc::syncfs(d.as_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_by_where_they_lead() {
        let g = Path::new("/home/u/proj");
        assert!(link_stays_inside(g, Path::new("a/l"), Path::new("b")));
        assert!(link_stays_inside(g, Path::new("a/l"), Path::new("../b")));
        assert!(!link_stays_inside(
            g,
            Path::new("a/l"),
            Path::new("../../b")
        ));
        assert!(!link_stays_inside(
            g,
            Path::new("l"),
            Path::new("../proj2/x")
        ));
        assert!(link_stays_inside(
            g,
            Path::new("l"),
            Path::new("/home/u/proj/x")
        ));
        assert!(!link_stays_inside(
            g,
            Path::new("l"),
            Path::new("/home/u/proj/../x")
        ));
        assert!(!link_stays_inside(
            g,
            Path::new("l"),
            Path::new("/etc/passwd")
        ));
    }
}

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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Link {
        path: PathBuf,
        target: PathBuf,
    },
    /// Remove a file or link.
    Remove {
        path: PathBuf,
        before: Option<String>,
    },
    RemoveDir {
        path: PathBuf,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
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
    match std::fs::symlink_metadata(p) {
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            let ctime = i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec());
            ctime > started_ns
        }
        Err(_) => false,
    }
}

/// Whether a link at `rel` (relative to the grant) pointing at `target` stays inside the grant.
fn link_stays_inside(grant: &Path, rel: &Path, target: &Path) -> bool {
    let mut at: Vec<Component> = if target.is_absolute() {
        match target.strip_prefix(grant) {
            Ok(r) => return !r.components().any(|c| c == Component::ParentDir),
            Err(_) => return false,
        }
    } else {
        rel.parent()
            .map(|p| p.components().collect())
            .unwrap_or_default()
    };
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if at.pop().is_none() {
                    return false;
                }
            }
            Component::Normal(_) => at.push(c),
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// Turn approved changes into a plan. `started_ns`: when the session started (its
/// `stage.json`), to tell conflicts.
pub fn plan(stage: &Stage, approved: &[Change], started_ns: i128) -> Plan {
    let mut p = Plan::default();
    let mut removals: Vec<Op> = Vec::new();
    let mut creations: Vec<Op> = Vec::new();
    let mut modes: Vec<Op> = Vec::new();
    for c in approved {
        let real = stage.grant.join(&c.path);
        if let Some(a) = &c.after {
            if a.kind == EntryType::Special {
                p.refused.push(Held {
                    path: c.path.clone(),
                    reason: "a fifo, socket or device is never applied".into(),
                });
                continue;
            }
            if let (EntryType::Symlink, Some(t)) = (a.kind, &a.target) {
                if !link_stays_inside(&stage.grant, &c.path, t) {
                    p.refused.push(Held {
                        path: c.path.clone(),
                        reason: format!(
                            "a link to {} points out of the granted folder",
                            t.display()
                        ),
                    });
                    continue;
                }
            }
        }
        // Conflicts: the real entry (or, for a rename, its source) changed since the start.
        let touched = match c.kind {
            Kind::Added => real.symlink_metadata().is_ok(),
            Kind::Renamed => {
                real.symlink_metadata().is_ok()
                    || changed_since(&stage.grant.join(c.from.as_ref().unwrap()), started_ns)
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
        let before_sha = c.before.as_ref().and_then(|b| b.sha256.clone());
        let create = |after: &Entry, before: Option<String>| -> Op {
            match after.kind {
                EntryType::Dir => Op::Mkdir {
                    path: c.path.clone(),
                    mode: after.mode,
                },
                EntryType::Symlink => Op::Link {
                    path: c.path.clone(),
                    target: after.target.clone().unwrap_or_default(),
                },
                _ => Op::Write {
                    path: c.path.clone(),
                    mode: after.mode,
                    before,
                    after: after.sha256.clone().unwrap_or_default(),
                },
            }
        };
        let remove = |path: &Path, e: &Entry| -> Op {
            if e.kind == EntryType::Dir {
                Op::RemoveDir {
                    path: path.to_path_buf(),
                }
            } else {
                Op::Remove {
                    path: path.to_path_buf(),
                    before: e.sha256.clone(),
                }
            }
        };
        match (c.kind, &c.before, &c.after) {
            (Kind::Deleted, Some(b), _) => removals.push(remove(&c.path, b)),
            (Kind::Added, _, Some(a)) => creations.push(create(a, None)),
            (Kind::Modified, _, Some(a)) => creations.push(create(a, before_sha)),
            (Kind::Mode, _, Some(a)) => modes.push(Op::Chmod {
                path: c.path.clone(),
                mode: a.mode,
            }),
            (Kind::Type, Some(b), Some(a)) => {
                removals.push(remove(&c.path, b));
                creations.push(create(a, None));
            }
            (Kind::Renamed, Some(b), Some(a)) => {
                creations.push(create(a, None));
                removals.push(remove(c.from.as_ref().unwrap(), b));
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
    p.ops.extend(modes);
    p
}

/// The journal of a batch: the stage it applies and the plan, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    grant: PathBuf,
    upper: PathBuf,
    ops: usize,
}

fn cstr(p: &Path) -> Result<CString, StageError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| StageError::Io {
        path: p.to_path_buf(),
        source: std::io::Error::other("path with a NUL byte"),
    })
}

/// Open `rel` beneath `root` (a folder descriptor) without following any link.
fn open_beneath(root: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let c = CString::new(if rel.as_os_str().is_empty() {
        b".".to_vec()
    } else {
        rel.as_os_str().as_bytes().to_vec()
    })
    .map_err(|_| std::io::Error::other("path with a NUL byte"))?;
    // SAFETY: open_how is plain data.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.mode = 0;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: valid pointers and size, as openat2 expects.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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

/// SHA-256 of the regular file `name` in `dir`, or `None` when there is none (a folder or a
/// link there is `Some("not a file")`).
fn real_sha(dir: &OwnedFd, name: &CString) -> std::io::Result<Option<String>> {
    // SAFETY: openat with a valid dirfd and name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            Some(libc::ELOOP) => Ok(Some("not a file".into())),
            _ => Err(e),
        };
    }
    // SAFETY: just opened.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !f.metadata()?.is_file() {
        return Ok(Some("not a file".into()));
    }
    Ok(Some(crate::sha256_reader(&mut f)?))
}

fn tmp_name(i: usize) -> CString {
    CString::new(format!(".ward-apply.{i}")).expect("no NUL")
}

/// Write the journal, then carry out the plan. The journal is removed once everything is on
/// disk; if this is interrupted, [`resume`] finishes from it.
pub fn execute(stage: &Stage, plan: &Plan, journal: &Path) -> Result<Report, StageError> {
    let mut text = serde_json::to_string(&Header {
        grant: stage.grant.clone(),
        upper: stage.upper.clone(),
        ops: plan.ops.len(),
    })
    .expect("serializable");
    text.push('\n');
    for op in &plan.ops {
        text.push_str(&serde_json::to_string(op).expect("serializable"));
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
    run(stage, &plan.ops, journal, false)
}

/// Finish a batch a crash interrupted. `Ok(None)` when there is no journal.
pub fn resume(journal: &Path) -> Result<Option<(Stage, Report)>, StageError> {
    let text = match std::fs::read_to_string(journal) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(journal)(e)),
    };
    let (stage, ops) = parse_journal(&text).map_err(|why| StageError::Io {
        path: journal.to_path_buf(),
        source: std::io::Error::other(format!("damaged journal: {why}")),
    })?;
    let report = run(&stage, &ops, journal, true)?;
    Ok(Some((stage, report)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Todo,
    /// Its temporary is written (pass 1).
    Written,
    /// Done or set aside: nothing left for pass 2.
    Finished,
}

/// Read a journal: the stage it applies and its operations. Paths in operations must be
/// relative and free of `..` (they are joined to the grant).
pub fn parse_journal(text: &str) -> Result<(Stage, Vec<Op>), String> {
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
    for op in &ops {
        let p = op.path();
        if p.as_os_str().is_empty()
            || p.is_absolute()
            || p.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(format!("operation on {} outside the grant", p.display()));
        }
    }
    if !header.grant.is_absolute() || !header.upper.is_absolute() {
        return Err("relative folders".into());
    }
    Ok((
        Stage {
            grant: header.grant,
            upper: header.upper,
        },
        ops,
    ))
}

/// `resumed`: a crashed run may have left temporaries for steps that are done by now.
fn run(stage: &Stage, ops: &[Op], journal: &Path, resumed: bool) -> Result<Report, StageError> {
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
    let held = |report: &mut Report, path: &Path, reason: String| {
        report.conflicts.push(Held {
            path: path.to_path_buf(),
            reason,
        });
    };
    let unreachable = |e: std::io::Error| format!("cannot reach it without following a link: {e}");
    let mut status = vec![Status::Todo; ops.len()];

    // Pass 1: removals (deepest first), and new content into temporaries where the folder
    // exists already.
    for (i, op) in ops.iter().enumerate() {
        let path = op.path();
        match op {
            Op::Remove { .. } | Op::RemoveDir { .. } => {
                status[i] = Status::Finished;
                let (dir, name) = match parent_of(&root, path) {
                    Ok(x) => x,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        report.already += 1;
                        continue;
                    }
                    Err(e) => {
                        held(&mut report, path, unreachable(e));
                        continue;
                    }
                };
                if let Op::Remove { before, .. } = op {
                    let now = real_sha(&dir, &name).map_err(io(path))?;
                    if now.is_none() {
                        report.already += 1;
                        continue;
                    }
                    // A link has no hash: `before` is None and `now` says "not a file".
                    let link = before.is_none() && now.as_deref() == Some("not a file");
                    if now.as_deref() != before.as_deref() && !link {
                        held(&mut report, path, "changed since it was planned".into());
                        continue;
                    }
                    // SAFETY: unlinkat with a valid dirfd and name.
                    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
                        .map_err(io(path))?;
                    report.applied += 1;
                } else {
                    // SAFETY: as above.
                    let r = unsafe {
                        libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR)
                    };
                    let e = std::io::Error::last_os_error();
                    match (r, e.raw_os_error()) {
                        (0, _) => report.applied += 1,
                        (_, Some(libc::ENOENT)) => report.already += 1,
                        _ => held(&mut report, path, format!("cannot remove the folder: {e}")),
                    }
                }
            }
            Op::Write {
                before,
                after,
                mode,
                ..
            } => {
                let Ok((dir, name)) = parent_of(&root, path) else {
                    continue; // its folder comes in pass 2
                };
                let now = real_sha(&dir, &name).map_err(io(path))?;
                if now.as_deref() == Some(after.as_str()) {
                    report.already += 1;
                    status[i] = Status::Finished;
                } else if now != *before {
                    held(&mut report, path, "changed since it was planned".into());
                    status[i] = Status::Finished;
                } else {
                    write_tmp(stage, path, &dir, &tmp_name(i), *mode, after)?;
                    status[i] = Status::Written;
                }
            }
            _ => {}
        }
    }
    // The temporaries' content is on disk before any of them replaces a file.
    syncfs(&root).map_err(io(grant))?;

    // Pass 2, in plan order (a folder before what goes in it): renames, folders, links, modes.
    for (i, op) in ops.iter().enumerate() {
        if status[i] == Status::Finished {
            continue;
        }
        let path = op.path();
        let (dir, name) = match parent_of(&root, path) {
            Ok(x) => x,
            Err(e) => {
                held(&mut report, path, unreachable(e));
                continue;
            }
        };
        let tmp = tmp_name(i);
        match op {
            Op::Write {
                before,
                after,
                mode,
                ..
            } => {
                if status[i] == Status::Todo {
                    let now = real_sha(&dir, &name).map_err(io(path))?;
                    if now.as_deref() == Some(after.as_str()) {
                        report.already += 1;
                        continue;
                    }
                    if now != *before {
                        held(&mut report, path, "changed since it was planned".into());
                        continue;
                    }
                    write_tmp(stage, path, &dir, &tmp, *mode, after)?
                        .sync_data()
                        .map_err(io(path))?;
                }
                // SAFETY: renameat within one folder descriptor.
                check(unsafe {
                    libc::renameat(
                        dir.as_raw_fd(),
                        tmp.as_ptr(),
                        dir.as_raw_fd(),
                        name.as_ptr(),
                    )
                })
                .map_err(io(path))?;
                report.applied += 1;
            }
            Op::Mkdir { mode, .. } => {
                // SAFETY: mkdirat with a valid dirfd and name.
                let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), *mode) };
                let exists =
                    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST);
                if r == 0 {
                    report.applied += 1;
                } else if exists
                    && open_beneath(&root, path, libc::O_PATH | libc::O_DIRECTORY).is_ok()
                {
                    report.already += 1;
                } else {
                    held(
                        &mut report,
                        path,
                        "cannot make the folder (something else is there)".into(),
                    );
                }
            }
            Op::Link { target, .. } => {
                let t = cstr(target)?;
                // SAFETY: symlinkat/renameat with valid arguments; a leftover temporary from an
                // interrupted run is replaced.
                unsafe {
                    libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
                    check(libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), tmp.as_ptr()))
                        .map_err(io(path))?;
                    check(libc::renameat(
                        dir.as_raw_fd(),
                        tmp.as_ptr(),
                        dir.as_raw_fd(),
                        name.as_ptr(),
                    ))
                    .map_err(io(path))?;
                }
                report.applied += 1;
            }
            Op::Chmod { mode, .. } => {
                match open_beneath(&root, path, libc::O_RDONLY | libc::O_NONBLOCK) {
                    Ok(fd) => {
                        // SAFETY: fchmod on an open descriptor.
                        check(unsafe { libc::fchmod(fd.as_raw_fd(), *mode) }).map_err(io(path))?;
                        report.applied += 1;
                    }
                    Err(e) => held(&mut report, path, unreachable(e)),
                }
            }
            Op::Remove { .. } | Op::RemoveDir { .. } => {}
        }
    }
    // Temporaries an interrupted run left behind for steps now done.
    for (i, op) in ops.iter().enumerate().filter(|_| resumed) {
        if let Ok((dir, _)) = parent_of(&root, op.path()) {
            // SAFETY: unlinkat of our own temporary name; ENOENT is the usual answer.
            unsafe {
                libc::unlinkat(dir.as_raw_fd(), tmp_name(i).as_ptr(), 0);
            }
        }
    }
    // The renames are on disk; the batch is done.
    syncfs(&root).map_err(io(grant))?;
    std::fs::remove_file(journal).map_err(io(journal))?;
    Ok(report)
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
) -> Result<std::fs::File, StageError> {
    let src_path = stage.upper.join(path);
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&src_path)
        .map_err(io(&src_path))?;
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
        return Err(io(path)(std::io::Error::last_os_error()));
    }
    // SAFETY: just opened.
    let mut dst = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(io(&src_path))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut h, &buf[..n]);
        dst.write_all(&buf[..n]).map_err(io(path))?;
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
        return Err(io(path)(std::io::Error::other(
            "the staged file changed after it was reviewed",
        )));
    }
    // SAFETY: fchmod on an open descriptor.
    check(unsafe { libc::fchmod(dst.as_raw_fd(), mode) }).map_err(io(path))?;
    Ok(dst)
}

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

//! The running sessions and the kill switch.

use crate::state::{SessionFile, StageFile};
use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use ward_audit::{AuditLog, Event, KeyStore, LogPaths, WriterOptions};
/// Where each running session keeps its `session.json` (and, later, its stage): beside the
/// audit log's directory, never inside a sandbox.
pub(crate) fn sessions_dir(paths: &LogPaths) -> PathBuf {
    paths.state_dir().unwrap_or(Path::new(".")).join("sessions")
}

/// Whether `pid` is the launcher `session.json` describes: alive, named `ward-launch` (the
/// name `ward run` gives its launcher), started when recorded (not a recycled pid), and ours.
fn is_launcher(pid: u32, start: Option<u64>) -> bool {
    let named = std::fs::read(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == crate::run::LAUNCHER_NAME.to_bytes());
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let ours = std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
        .unwrap_or(false);
    named && ours && start.is_some() && crate::run::start_time(pid) == start
}

/// Whether the session's `ward run` is still alive (finishing after its launcher ended).
fn supervising(v: &SessionFile) -> bool {
    let Some(pid) = v.supervisor else {
        return false;
    };
    v.supervisor_start.is_some() && crate::run::start_time(pid) == v.supervisor_start
}

/// Remove the cgroup folders a dead session left (only its own `ward-ID` folders; one still
/// holding a process stays).
fn remove_cgroups(v: &SessionFile) {
    let name = format!("ward-{}", v.session);
    for c in v
        .cgroups
        .iter()
        .filter(|c| c.file_name().is_some_and(|n| *n == *name))
    {
        let _ = std::fs::remove_dir(c);
    }
}

/// The running sessions: their recorded info, for launchers still alive.
pub fn running() -> anyhow::Result<Vec<SessionFile>> {
    let dir = sessions_dir(&LogPaths::default_paths()?);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let file = e.path().join("session.json");
        if !file.exists() {
            continue;
        }
        let v: SessionFile = match crate::state::read(&file) {
            Ok(v) => v,
            // Not JSON at all, and written before this machine last started (a power cut
            // before it reached the disk: a live session's file is always whole, being
            // renamed into place): no process of it can be alive; its directory is cleaned (a
            // stage stays).
            Err(_) if not_json(&file) && from_before_boot(&file) => {
                forget_run(&e.path());
                continue;
            }
            Err(err) => {
                // A session being written, or a damaged file: not listed, and said so.
                eprintln!("ward: warning: {err}");
                continue;
            }
        };
        if v.pid > 0 && is_launcher(v.pid, v.start_time) {
            out.push(v);
        } else if !supervising(&v) {
            // A session whose launcher and supervisor are gone (`ward run` killed outright):
            // remove its cgroups and clean its directory, but keep a stage for review
            // (nothing the agent wrote is lost). One whose supervisor lives is finishing.
            remove_cgroups(&v);
            forget_run(&e.path());
        }
    }
    out.sort_by(|a, b| a.started.cmp(&b.started));
    Ok(out)
}

/// Whether `file` can be read and is not JSON (empty, cut short).
fn not_json(file: &Path) -> bool {
    std::fs::read(file).is_ok_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_err())
}

/// Whether `file` was last changed before this machine started (`btime` in /proc/stat).
fn from_before_boot(file: &Path) -> bool {
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<i64>().ok())
    });
    let changed = std::fs::metadata(file)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::mtime(&m));
    matches!((boot, changed), (Some(b), Some(c)) if c < b)
}

/// Remove what a finished session no longer needs: everything, or, when it has a stage, all
/// but the stage and `stage.json`.
pub(crate) fn forget_run(dir: &Path) {
    if dir.join("stage.json").exists() {
        let _ = std::fs::remove_file(dir.join("session.json"));
        let _ = std::fs::remove_dir(dir.join("root"));
        // A session's own home (when the kept one was in use) goes with it.
        let _ = ward_stage::deep::remove_all(&dir.join("home"));
        if let Ok(stages) = std::fs::read_dir(dir.join("stage")) {
            for st in stages.flatten() {
                let _ = ward_stage::deep::remove_all(&st.path().join("work"));
            }
        }
    } else {
        let _ = ward_stage::deep::remove_all(dir);
    }
}

/// A finished session whose staged changes wait for review.
#[derive(Debug, Clone)]
pub struct Staged {
    pub session: String,
    /// The session's directory (holding `stage.json` and `stage/`).
    pub dir: PathBuf,
    /// `stage.json`.
    pub info: StageFile,
    pub stages: Vec<ward_stage::Stage>,
}

/// The sessions with a stage, oldest first; running sessions are left out (their stage is
/// still changing).
pub fn staged() -> anyhow::Result<Vec<Staged>> {
    // Sessions that ended without cleaning up (killed, or cgroups still busy) are swept
    // first: their stages are then reviewable.
    let _ = running();
    let dir = sessions_dir(&LogPaths::default_paths()?);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.join("session.json").exists() {
            continue;
        }
        let file = path.join("stage.json");
        if !file.exists() {
            continue;
        }
        let info: StageFile = crate::state::read(&file)?;
        let stages = info.stages.clone();
        out.push(Staged {
            session: e.file_name().to_string_lossy().into_owned(),
            dir: path,
            info,
            stages,
        });
    }
    out.sort_by(|a, b| a.info.started.cmp(&b.info.started));
    Ok(out)
}

/// Discard a session's staged changes (recorded with how many there were).
pub fn discard(s: &Staged) -> anyhow::Result<usize> {
    // Not while a review applies; and an interrupted commit is finished first, so the real
    // folder is never left half-applied with its journal gone.
    let _lock = crate::review::lock(s)?;
    crate::review::resume_locked(s)?;
    let mut n = 0;
    for st in &s.stages {
        n += ward_stage::changes(st).map_or(0, |c| c.len());
    }
    let paths = LogPaths::default_paths()?;
    let log = AuditLog::open(
        &paths.log,
        &KeyStore::new(&paths.keys),
        WriterOptions::default(),
    )
    .context("cannot open the audit log")?;
    log.close_with(Event {
        session: Some(s.session.clone()),
        detail: Some(json!({
            "changes": n,
            "grants": s.stages.iter().map(|st| &st.grant).collect::<Vec<_>>(),
        })),
        ..Event::new(ward_core::EventKind::ReviewDiscard)
    })
    .context("cannot record the discard, so nothing was discarded")?;
    crate::review::authority()?.revoke_session(&s.session)?;
    ward_stage::deep::remove_all(&s.dir)
        .with_context(|| format!("cannot remove {}", s.dir.display()))?;
    Ok(n)
}

/// One session the kill switch ended (or tried to).
pub struct Killed {
    pub session: String,
    /// Whether the launcher (and with it the whole session) is gone.
    pub ended: bool,
    pub ms: f64,
}

/// End `targets` (from [`running`]): SIGKILL to each launcher; its PID 1 dies with it
/// (parent-death signal), and with PID 1 every process of the session's pid namespace. Each
/// kill is recorded.
pub fn kill(targets: &[SessionFile]) -> anyhow::Result<Vec<Killed>> {
    let paths = LogPaths::default_paths()?;
    let log = AuditLog::open(
        &paths.log,
        &KeyStore::new(&paths.keys),
        WriterOptions::default(),
    )
    .context("cannot open the audit log")?;
    let mut killed = Vec::new();
    for s in targets {
        let pid = s.pid as i32;
        let start = s.start_time;
        if !is_launcher(pid as u32, start) {
            continue;
        }
        let started = Instant::now();
        // SAFETY: kill with a pid we read from the session file and checked is a launcher.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        // Wait until the launcher is gone (it is reaped by `ward run`), at most 2 s.
        while is_launcher(pid as u32, start) && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let gone = !is_launcher(pid as u32, start);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        log.append(Event {
            session: Some(s.session.clone()),
            detail: Some(json!({"pid": pid, "ended": gone, "ms": ms})),
            ..Event::new(ward_core::EventKind::SessionKill)
        })
        .context("cannot record the kill")?;
        killed.push(Killed {
            session: s.session.clone(),
            ended: gone,
            ms,
        });
    }
    log.close()?;
    Ok(killed)
}

//! The session's disk ceilings, watched from outside while the agent runs: its private `/tmp`
//! and `/dev/shm` (tmpfs with a size: the agent gets ENOSPC, Ward records that the limit was
//! reached), the stage of its staged grants (bytes and entries on the host's disk: past its
//! limit the session is ended), and the host's free space on every disk the session writes
//! to (the disk never fills: below the reserve the session is ended). Each limit reached is a
//! `sandbox.limit` record, once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use ward_audit::{AuditLog, Event, EventDecision};
use ward_core::Effect;

/// How often the watcher looks.
const TICK: Duration = Duration::from_millis(100);
/// How often the stage is walked (it may be large).
const STAGE_EVERY: Duration = Duration::from_millis(500);
/// The most the reserve on a disk is: the session may not leave less free than this, or than
/// half of what was free when it started, whichever is less.
const RESERVE: u64 = 1 << 30;

pub struct Watch {
    pub launcher: u32,
    pub uppers: Vec<PathBuf>,
    pub stage_bytes: Option<u64>,
    pub stage_entries: Option<u64>,
    /// Folders on the disks the session writes to (writable grants, the stage).
    pub disks: Vec<PathBuf>,
}

fn free_bytes(p: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs into a zeroed struct with a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// PID 1 of the session's namespaces: the launcher's child.
fn pid1(launcher: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes (allocated) and entries under `dir`, not following links.
fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            entries += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, entries)
}

struct Reached<'a> {
    log: &'a AuditLog,
    session: &'a str,
    seen: Vec<&'static str>,
}

impl Reached<'_> {
    fn once(&mut self, what: &'static str, reason: String) -> bool {
        if self.seen.contains(&what) {
            return false;
        }
        self.seen.push(what);
        let r = self.log.submit(Event {
            session: Some(self.session.to_string()),
            resource: Some(what.to_string()),
            decision: Some(EventDecision {
                result: Effect::Deny,
                by: "sandbox.limits".into(),
                reason,
            }),
            ..Event::new("sandbox.limit")
        });
        if let Err(e) = r {
            eprintln!("ward: warning: cannot record a limit reached ({what}): {e}");
        }
        true
    }
}

/// Watch until `stop`; the limits reached.
pub fn run(w: &Watch, stop: &AtomicBool, log: &AuditLog, session: &str) -> Vec<&'static str> {
    let mut r = Reached {
        log,
        session,
        seen: Vec::new(),
    };
    let reserves: Vec<(PathBuf, u64)> = w
        .disks
        .iter()
        .filter_map(|d| Some((d.clone(), (free_bytes(d)? / 2).min(RESERVE))))
        .collect();
    let mut last_stage = Instant::now() - STAGE_EVERY;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        if let Some(p) = pid1(w.launcher) {
            for (what, dir) in [("tmp", "tmp"), ("shm", "dev/shm")] {
                let path = PathBuf::from(format!("/proc/{p}/root/{dir}"));
                if free_bytes(&path) == Some(0) {
                    r.once(
                        what,
                        format!(
                            "the session's /{dir} is full (its size is [limits] {what}): the agent got ENOSPC"
                        ),
                    );
                }
            }
        }
        for (d, reserve) in &reserves {
            if free_bytes(d).is_some_and(|f| f < *reserve)
                && r.once(
                    "disk",
                    format!(
                        "the disk holding {} fell below {} MiB free: Ward keeps that in reserve, \
                         and ended the session",
                        d.display(),
                        reserve >> 20
                    ),
                )
            {
                crate::run::end_session("the host's disk is nearly full");
            }
        }
        if last_stage.elapsed() >= STAGE_EVERY && !w.uppers.is_empty() {
            last_stage = Instant::now();
            let (bytes, entries) = w
                .uppers
                .iter()
                .map(|u| usage(u))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let over = match (w.stage_bytes, w.stage_entries) {
                (Some(l), _) if bytes > l => Some((
                    "stage",
                    format!("the stage holds {bytes} bytes, past [limits] stage ({l}): the session was ended"),
                )),
                (_, Some(l)) if entries > l => Some((
                    "stage_entries",
                    format!("the stage holds {entries} entries, past [limits] stage_entries ({l}): the session was ended"),
                )),
                _ => None,
            };
            if let Some((what, why)) = over {
                if r.once(what, why) {
                    crate::run::end_session("the stage reached its limit");
                }
            }
        }
    }
    r.seen
}

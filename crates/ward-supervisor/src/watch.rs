//! The session's disk ceilings, watched from outside while the agent runs: its private `/tmp`
//! and `/dev/shm` (tmpfs with a size: the agent gets ENOSPC, Ward records that the limit was
//! reached), the stage of its staged grants (bytes and entries on the host's disk: past its
//! limit the session is ended), and the host's free space on every disk the session writes
//! to (the disk never fills: below the reserve the session is ended). Each limit reached is a
//! `sandbox.limit` record, once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
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

/// Bytes (allocated) and entries under `dir`, not following links, however deep, folders
/// the agent closed to itself included (the stage is ours: each is opened while it is
/// counted, and its mode put back).
fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    enum Step {
        Visit(PathBuf),
        /// Put a folder's mode back once everything below it was counted.
        Close(PathBuf, u32),
    }
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut stack = vec![Step::Visit(dir.to_path_buf())];
    while let Some(step) = stack.pop() {
        let d = match step {
            Step::Close(d, mode) => {
                let _ = ward_stage::deep::set_mode(&d, mode);
                continue;
            }
            Step::Visit(d) => d,
        };
        let Ok(short) = ward_stage::deep::short(&d) else {
            continue;
        };
        let closed = std::fs::symlink_metadata(&short)
            .ok()
            .map(|m| m.permissions().mode())
            .filter(|mode| mode & 0o500 != 0o500);
        if let Some(mode) = closed {
            let _ = ward_stage::deep::set_mode(&d, mode | 0o700);
            stack.push(Step::Close(d.clone(), mode));
        }
        if let Ok(rd) = std::fs::read_dir(&short) {
            for e in rd.flatten() {
                let Ok(m) = e.metadata() else { continue };
                entries += 1;
                bytes += m.blocks() * 512;
                if m.is_dir() {
                    stack.push(Step::Visit(d.join(e.file_name())));
                }
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
                by: ward_core::By::sandbox("limits"),
                reason,
            }),
            ..Event::new(ward_core::EventKind::SandboxLimit)
        });
        if let Err(e) = r {
            eprintln!("ward: warning: cannot record a limit reached ({what}): {e}");
        }
        true
    }
}

/// Watch until `stop` (the caller unparks this thread after setting it, so the session's end
/// does not wait out a tick); the limits reached.
pub fn run(w: &Watch, stop: &AtomicBool, log: &AuditLog, session: &str) -> Vec<&'static str> {
    let r = std::sync::Mutex::new(Reached {
        log,
        session,
        seen: Vec::new(),
    });
    let once = |what: &'static str, why: String| {
        r.lock().unwrap_or_else(|e| e.into_inner()).once(what, why)
    };
    let reserves: Vec<(PathBuf, u64)> = w
        .disks
        .iter()
        .filter_map(|d| Some((d.clone(), (free_bytes(d)? / 2).min(RESERVE))))
        .collect();
    std::thread::scope(|s| {
        // The stage may take a while to walk: on a thread of its own, so that the disk's
        // reserve is looked at every tick whatever its size.
        let stage = (!w.uppers.is_empty()).then(|| {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    std::thread::park_timeout(STAGE_EVERY);
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
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
                        if once(what, why) {
                            crate::run::end_session("the stage reached its limit");
                        }
                    }
                }
            })
        });
        while !stop.load(Ordering::Acquire) {
            std::thread::park_timeout(TICK);
            if stop.load(Ordering::Acquire) {
                break;
            }
            if let Some(p) = pid1(w.launcher) {
                for (what, dir) in [("tmp", "tmp"), ("shm", "dev/shm")] {
                    let path = PathBuf::from(format!("/proc/{p}/root/{dir}"));
                    if free_bytes(&path) == Some(0) {
                        once(
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
                    && once(
                        "disk",
                        format!(
                            "the disk holding {} fell below {} MiB free: Ward keeps that in \
                             reserve, and ended the session",
                            d.display(),
                            reserve >> 20
                        ),
                    )
                {
                    crate::run::end_session("the host's disk is nearly full");
                }
            }
        }
        if let Some(t) = stage {
            t.thread().unpark();
        }
    });
    r.into_inner().unwrap_or_else(|e| e.into_inner()).seen
}

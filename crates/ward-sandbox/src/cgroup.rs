//! Resource limits with cgroups: a memory, pids and cpu ceiling for the whole session.
//!
//! Each controller is found where the kernel has it: a cgroup v1 hierarchy of its own (as on
//! this project's test machines, where v2 is mounted beside them without those controllers) or
//! the unified v2 hierarchy. Ward makes `ward-<session>` under the cgroup it is itself in,
//! writes the limit, and the launcher moves itself and PID 1 into it before the agent is
//! forked, so that every process of the session is counted (see [`Joiner`]). A controller
//! that cannot be used is an error naming it (`cgroup.memory`, `cgroup.pids`, `cgroup.cpu`):
//! `ward run` refuses, unless the manifest lists it in `allow_degraded`.
//!
//! | limit | v1 | v2 |
//! |---|---|---|
//! | memory | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` (swap counted too, when the kernel accounts it) | `memory.max`, `memory.swap.max = 0`, `memory.oom.group = 1` |
//! | pids | `pids.max` | `pids.max` |
//! | cpu (cores) | `cpu.cfs_period_us = 100000`, `cpu.cfs_quota_us` | `cpu.max = "quota 100000"` |

use crate::error::SandboxError;
use std::path::{Path, PathBuf};

/// The CFS period used for the cpu limit, in microseconds.
const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    /// The feature name `ward run` reports and `allow_degraded` takes.
    pub fn feature(self) -> &'static str {
        match self {
            Controller::Memory => "cgroup.memory",
            Controller::Pids => "cgroup.pids",
            Controller::Cpu => "cgroup.cpu",
        }
    }
}

/// One limit to apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Bytes.
    Memory(u64),
    Pids(u64),
    /// Cores (1.5 = one and a half cores' worth of time).
    Cpu(f64),
}

impl Limit {
    pub fn controller(self) -> Controller {
        match self {
            Limit::Memory(_) => Controller::Memory,
            Limit::Pids(_) => Controller::Pids,
            Limit::Cpu(_) => Controller::Cpu,
        }
    }
}

/// Where a controller lives on this machine.
#[derive(Debug, Clone, PartialEq)]
struct Hierarchy {
    /// The mount point.
    mount: PathBuf,
    v2: bool,
}

/// The cgroup mounts of this machine, from `/proc/self/mountinfo`.
fn hierarchies(mountinfo: &str) -> Vec<(Hierarchy, Vec<String>)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let mut r = right.split(' ');
        let (Some(fstype), Some(_src), Some(sopts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        let Some(mount) = fields.get(4) else { continue };
        let mount = PathBuf::from(unescape(mount));
        match fstype {
            "cgroup" => out.push((
                Hierarchy { mount, v2: false },
                sopts.split(',').map(str::to_string).collect(),
            )),
            "cgroup2" => {
                let ctrls = std::fs::read_to_string(mount.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                out.push((Hierarchy { mount, v2: true }, ctrls));
            }
            _ => {}
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup in the v1 hierarchy holding `ctrl`, or in v2 (`None`).
fn own_path(proc_cgroup: &str, ctrl: Option<&str>) -> Option<String> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match ctrl {
            Some(c) => list.split(',').any(|x| x == c),
            None => list.is_empty(),
        };
        if hit {
            return Some(path.to_string());
        }
    }
    None
}

/// The session's cgroups: one directory per hierarchy used.
#[derive(Debug)]
pub struct Cgroups {
    name: String,
    /// (controller, directory) for each limit applied.
    applied: Vec<(Controller, PathBuf, bool)>,
    /// Directories Ward created, to remove at the end (deepest last made, first removed).
    created: Vec<PathBuf>,
    /// On v2 a process is in one cgroup only: once a parent is chosen, every v2 limit goes
    /// into the same session cgroup under it.
    v2_parent: Option<PathBuf>,
}

fn unsupported(c: Controller, detail: String) -> SandboxError {
    SandboxError::Unsupported {
        feature: c.feature(),
        detail,
    }
}

impl Cgroups {
    /// An empty set for the session `name` (the directories are `ward-<name>`).
    pub fn new(name: &str) -> Cgroups {
        Cgroups {
            name: format!("ward-{name}"),
            applied: Vec::new(),
            created: Vec::new(),
            v2_parent: None,
        }
    }

    /// Apply one limit: find its controller, make the session's cgroup there and write the
    /// limit. An error names the controller's feature and says what would make it work.
    pub fn apply(&mut self, limit: Limit) -> Result<(), SandboxError> {
        let c = limit.controller();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| unsupported(c, format!("cannot read /proc/self/mountinfo: {e}")))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| unsupported(c, format!("cannot read /proc/self/cgroup: {e}")))?;
        let all = hierarchies(&mountinfo);
        let v1 = all
            .iter()
            .find(|(h, opts)| !h.v2 && opts.iter().any(|o| o == c.name()));
        let v2 = all
            .iter()
            .find(|(h, ctrls)| h.v2 && ctrls.iter().any(|o| o == c.name()));
        let (h, rel) = match (v1, v2) {
            (Some((h, _)), _) => (h, own_path(&own, Some(c.name()))),
            (None, Some((h, _))) => (h, own_path(&own, None)),
            (None, None) => {
                return Err(unsupported(
                    c,
                    format!(
                        "no cgroup hierarchy on this machine has the {} controller",
                        c.name()
                    ),
                ))
            }
        };
        let rel = rel.ok_or_else(|| {
            unsupported(
                c,
                "this process is in no cgroup of that hierarchy (/proc/self/cgroup)".into(),
            )
        })?;
        let mut parent = h.mount.join(rel.trim_start_matches('/'));
        if h.v2 {
            parent = match &self.v2_parent {
                Some(p) => {
                    enable_v2(p, c)?;
                    p.clone()
                }
                None => {
                    let p = v2_parent(&h.mount, parent, c)?;
                    self.v2_parent = Some(p.clone());
                    p
                }
            };
        }
        let dir = parent.join(&self.name);
        if !self.created.contains(&dir) {
            std::fs::create_dir(&dir).map_err(|e| {
                unsupported(
                    c,
                    format!(
                        "cannot create {}: {e}; run ward as root, or from a cgroup delegated to you",
                        dir.display(),
                    ),
                )
            })?;
            self.created.push(dir.clone());
        }
        let write = |file: &str, value: String| -> Result<(), SandboxError> {
            let p = dir.join(file);
            std::fs::write(&p, &value).map_err(|e| {
                unsupported(c, format!("cannot write {value} to {}: {e}", p.display()))
            })
        };
        match (limit, h.v2) {
            (Limit::Memory(b), false) => {
                write("memory.limit_in_bytes", b.to_string())?;
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    write("memory.memsw.limit_in_bytes", b.to_string())?;
                }
            }
            (Limit::Memory(b), true) => {
                write("memory.max", b.to_string())?;
                if dir.join("memory.swap.max").exists() {
                    write("memory.swap.max", "0".into())?;
                }
                write("memory.oom.group", "1".into())?;
            }
            (Limit::Pids(n), _) => write("pids.max", n.to_string())?,
            (Limit::Cpu(cores), v2) => {
                let quota = ((cores * PERIOD_US as f64).round() as u64).max(1000);
                if v2 {
                    write("cpu.max", format!("{quota} {PERIOD_US}"))?;
                } else {
                    write("cpu.cfs_period_us", PERIOD_US.to_string())?;
                    write("cpu.cfs_quota_us", quota.to_string())?;
                }
            }
        }
        self.applied.push((c, dir, h.v2));
        Ok(())
    }

    /// The directories the session's processes must be in (each `cgroup.procs`).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.created
    }

    /// What the limits stopped, for the session's end record: OOM kills and refused forks.
    pub fn events(&self) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let field = |text: &str, key: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok())?
            })
        };
        for (c, dir, v2) in &self.applied {
            match (c, v2) {
                (Controller::Memory, false) => {
                    if let Some(n) = field(&read(dir.join("memory.oom_control")), "oom_kill") {
                        out.push(("oom_kills", n));
                    }
                }
                (Controller::Memory, true) => {
                    if let Some(n) = field(&read(dir.join("memory.events")), "oom_kill") {
                        out.push(("oom_kills", n));
                    }
                }
                (Controller::Pids, _) => {
                    if let Some(n) = field(&read(dir.join("pids.events")), "max") {
                        out.push(("forks_refused", n));
                    }
                }
                (Controller::Cpu, false) => {
                    if let Some(n) = field(&read(dir.join("cpu.stat")), "nr_throttled") {
                        out.push(("cpu_throttled_periods", n));
                    }
                }
                (Controller::Cpu, true) => {
                    if let Some(n) = field(&read(dir.join("cpu.stat")), "nr_throttled") {
                        out.push(("cpu_throttled_periods", n));
                    }
                }
            }
        }
        out
    }

    /// Remove the session's cgroups once its processes are gone (they may take a moment to be
    /// reaped after the launcher ends). Returns the directories that could not be removed.
    pub fn remove(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for dir in self.created.drain(..).rev() {
            let mut ok = false;
            for i in 0..200 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        ok = true;
                        break;
                    }
                    Err(_) => {
                        if i == 0 {
                            kill_all(&dir);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                }
            }
            if !ok {
                left.push(dir);
            }
        }
        left
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// SIGKILL whatever is still in `dir` (a process that escaped the launcher's tree cannot
/// escape its cgroup).
fn kill_all(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: plain kill of a pid listed in the session's own cgroup.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// On v2 a controller reaches a child only when the parent enables it in `subtree_control`.
fn enable_v2(parent: &Path, c: Controller) -> Result<(), SandboxError> {
    let p = parent.join("cgroup.subtree_control");
    let on = std::fs::read_to_string(&p).unwrap_or_default();
    if on.split_whitespace().any(|x| x == c.name()) {
        return Ok(());
    }
    std::fs::write(&p, format!("+{}", c.name())).map_err(|e| {
        unsupported(
            c,
            format!(
                "cannot enable the {} controller in {}: {e}; cgroup v2 allows that only in a cgroup \
                 with no processes of its own that you may write: run ward as root (it then uses \
                 /sys/fs/cgroup/ward)",
                c.name(),
                p.display(),
            ),
        )
    })
}

/// The v2 cgroup to make the session's under: Ward's own cgroup when the controller can be
/// enabled there; else (it has processes of its own, which v2 forbids beside enabled
/// controllers) `ward/` under the root cgroup, where root may always enable it.
fn v2_parent(mount: &Path, own: PathBuf, c: Controller) -> Result<PathBuf, SandboxError> {
    let first = match enable_v2(&own, c) {
        Ok(()) => return Ok(own),
        Err(e) => e,
    };
    let base = mount.join("ward");
    let fallback = enable_v2(mount, c).and_then(|()| {
        match std::fs::create_dir(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(unsupported(c, format!("{}: {e}", base.display()))),
        }
        enable_v2(&base, c)
    });
    match fallback {
        Ok(()) => Ok(base),
        Err(_) => Err(first),
    }
}

/// The file a single-threaded process writes `0` to in order to move itself into the cgroup
/// `dir`: `tasks` on a v1 hierarchy, `cgroup.procs` on v2.
///
/// Moving a whole process (`cgroup.procs`, or any pid but the writer's own) takes the
/// kernel's global threadgroup lock for writing, and the first such move after a quiet spell
/// waits out an RCU grace period: 4-30 ms on an idle machine, more than the whole sandbox
/// takes to build. A thread moving only itself (`0` to a v1 `tasks` file) needs no such lock
/// (the kernel's `cgroup_procs_write_start`: "if we migrate a single thread ... we can skip
/// the global lock"), and for a single-threaded process that is the whole process. A v2
/// hierarchy moves single threads only inside a threaded subtree, so there it stays
/// `cgroup.procs`.
pub fn join_file(dir: &Path) -> PathBuf {
    let tasks = dir.join("tasks");
    if tasks.exists() {
        tasks
    } else {
        dir.join("cgroup.procs")
    }
}

/// The session's cgroups, opened while the opener still has the host's credentials and
/// cgroup namespace (see [`join_file`]). The launcher and PID 1 each move themselves into
/// them (both are single-threaded); PID 1 forks nothing (the agent) until it is in. Every
/// process of the session is counted: the two that existed before the move move themselves,
/// and every later one is forked inside.
#[derive(Default)]
pub struct Joiner {
    files: Vec<(PathBuf, std::fs::File)>,
}

impl Joiner {
    /// Open each directory's [`join_file`] for writing (permission is checked now, with the
    /// opener's credentials).
    pub fn open(dirs: &[PathBuf]) -> Result<Joiner, SandboxError> {
        let mut files = Vec::with_capacity(dirs.len());
        for d in dirs {
            let p = join_file(d);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|source| SandboxError::Path {
                    path: p.display().to_string(),
                    source,
                })?;
            files.push((p, f));
        }
        Ok(Joiner { files })
    }

    /// The files `ward run` opened and handed over (named by their place in the list, for
    /// messages).
    pub fn from_fds(fds: Vec<std::os::fd::OwnedFd>) -> Joiner {
        Joiner {
            files: fds
                .into_iter()
                .enumerate()
                .map(|(i, fd)| {
                    (
                        PathBuf::from(format!("the session's cgroup #{}", i + 1)),
                        std::fs::File::from(fd),
                    )
                })
                .collect(),
        }
    }

    /// Nothing to join.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The open files, to hand on to another process of the session.
    pub fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.files.iter().map(|(_, f)| f.as_fd()).collect()
    }

    /// Move the calling process into every cgroup. It must be single-threaded: on a v1
    /// hierarchy only the calling thread moves (see [`join_file`]).
    pub fn join_self(&self) -> Result<(), SandboxError> {
        use std::os::unix::fs::FileExt;
        for (p, f) in &self.files {
            f.write_at(b"0", 0).map_err(|source| SandboxError::Path {
                path: p.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_hierarchies_in_mountinfo() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
32 25 0:28 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,pids
33 25 0:29 / /proc rw - proc proc rw
";
        let h = hierarchies(mi);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].0.mount, Path::new("/sys/fs/cgroup/memory"));
        assert!(h[1].1.contains(&"cpu".to_string()));
        assert_eq!(h[2].0.mount, Path::new("/sys/fs/cgroup/with space"));
        assert!(!h[0].0.v2);
    }

    #[test]
    fn own_cgroup_per_controller() {
        let pc = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/user.slice\n";
        assert_eq!(
            own_path(pc, Some("memory")).as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(own_path(pc, Some("cpu")).as_deref(), Some("/x"));
        assert_eq!(own_path(pc, None).as_deref(), Some("/user.slice"));
        assert_eq!(own_path(pc, Some("pids")), None);
    }

    #[test]
    fn unescape_handles_short_and_bad_escapes() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\"), "a\\");
        assert_eq!(unescape("a\\999"), "a\\999");
    }
}

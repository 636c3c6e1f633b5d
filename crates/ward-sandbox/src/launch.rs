//! Entering the sandbox: new namespaces, a fresh root, then Landlock and seccomp, then the
//! agent. Called at the start of a fresh, single-threaded process (the `ward-launch` helper),
//! because `unshare(CLONE_NEWUSER)` refuses multi-threaded callers.
//!
//! Layout: the launcher unshares user, mount, pid, ipc and uts namespaces and maps only its
//! own uid and gid; it forks PID 1 of the new pid namespace, which builds the root (tmpfs;
//! read-only binds of system directories; private /dev, /proc, /tmp; the grants at their real
//! paths) and pivots into it. Meanwhile the launcher makes the network namespace (loopback up,
//! the proxy's socket) and moves itself into the session's cgroups, and hands both to PID 1.
//! PID 1 moves itself in, enters the namespace, takes a cgroup namespace of its own, forks the
//! agent as PID 2 and confines it; the agent execs at the supervisor's go. PID 1 forks nothing
//! before, and then reaps. The launcher forwards
//! signals to PID 1 and exits with the agent's status.

use crate::error::SandboxError;
use crate::landlock::Landlock;
use crate::seccomp::Filter;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the sandbox looks like.
#[derive(Debug, Clone)]
pub struct Config {
    /// Granted paths, mounted at their real path: `(path, writable)`.
    pub grants: Vec<(PathBuf, bool)>,
    /// Paths inside the grants that are always denied (keys, `.env`, git hooks): covered with
    /// an empty read-only file or directory, so the agent can neither read nor replace them.
    pub masks: Vec<PathBuf>,
    /// A folder on the host with an empty file per masked file, named by its index in
    /// `masks` (`0`, `1`, ...): each covers its own path instead of the shared `/dev/null`, so
    /// that the supervisor can see (inotify) which hidden file a program opened.
    pub mask_from: Option<PathBuf>,
    /// A file on the host with the certificates the agent trusts (the system's roots and the
    /// session's own authority, when the proxy inspects TLS): bound read-only over
    /// [`TRUST_BUNDLE`] inside.
    pub trust: Option<PathBuf>,
    /// Paths inside writable grants that stay read-only (a repository's `.git`: its config and
    /// hooks run code on the host the next time the user runs git). Being mount points, they
    /// cannot be renamed away either.
    pub read_only: Vec<PathBuf>,
    /// Staged grants: `(grant, upper, work)`. The grant is mounted as an overlay whose lower
    /// layer is the real folder and whose upper layer (in the session's state directory, on the
    /// same filesystem as `work`) receives every change, for review. Each must also be in
    /// `grants` as writable.
    pub stages: Vec<(PathBuf, PathBuf, PathBuf)>,
    /// The supervisor's pid: the launcher dies with it (and with the launcher, the session).
    pub parent: Option<i32>,
    /// An empty directory on the host where the new root is assembled (a session directory).
    pub staging: PathBuf,
    /// Working directory inside (re-entered after the pivot, never inherited).
    pub cwd: PathBuf,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// The environment the agent gets (already scrubbed).
    pub env: Vec<(String, String)>,
    /// A descriptor to read one byte from before the agent starts: the supervisor writes it
    /// once the session's start is on record, so the sandbox is built meanwhile and the agent
    /// still never runs unrecorded. End of file without the byte means: do not start.
    pub go_fd: Option<i32>,
    /// A unix socket to the supervisor: the agent sends its seccomp listener over it, and the
    /// supervisor answers and records each denied call. Without it denials are plain `EPERM`.
    pub notify_fd: Option<i32>,
    /// Cgroup directories the session's processes are in (limits set by the supervisor): the
    /// launcher and PID 1 are moved in before the agent is forked.
    pub cgroups: Vec<PathBuf>,
    /// A unix socket to the supervisor for the egress proxy: the launcher brings up loopback in
    /// the new network namespace, listens on `127.0.0.1:proxy_port` there and sends the
    /// listening socket over it; the supervisor accepts the agent's connections from outside.
    /// Without it the namespace has loopback only and no way out.
    pub proxy_fd: Option<i32>,
    pub proxy_port: u16,
    /// The loopback services the manifest names: the launcher listens at each address inside
    /// the new network namespace too and sends the listeners after the proxy's; the agent may
    /// connect to their ports.
    pub loopback: Vec<std::net::SocketAddr>,
    /// The names the manifest allows and their addresses inside (written into the sandbox's
    /// /etc/hosts; the resolver gives the same).
    pub hosts: Vec<(String, std::net::IpAddr)>,
    /// Variables set after scrubbing (the proxy's `HTTP_PROXY` and friends).
    pub set_env: Vec<(String, String)>,
    /// Landlock on (the default). Off only when the kernel lacks it and the manifest allows
    /// running degraded; the supervisor decides and records that.
    pub landlock: bool,
    /// The agent gets a terminal of its own: PID 1 makes a pty in the sandbox's devpts (so
    /// `tty` and `ttyname` name it inside), sends its master over this socket to the
    /// supervisor (which relays it to the person's terminal) and puts the slave in place of
    /// each standard descriptor that is a terminal; the agent makes it its controlling
    /// terminal, so that job control, `/dev/tty` and Ctrl-C work inside. The person's own
    /// terminal never reaches a process of the sandbox but PID 1, which replaces it first.
    pub pty_fd: Option<i32>,
    /// Every exec of the agent's processes goes to the supervisor to be decided (the
    /// manifest has exec rules).
    pub watch_exec: bool,
    /// Files the agent may not execute by any path (Landlock; see [`crate::landlock::Rules::no_execute`]).
    pub no_execute: Vec<PathBuf>,
    /// Device nodes the person allowed for this session (`[[devices]]`): bound into the
    /// sandbox at their own path, read-write.
    pub devices: Vec<PathBuf>,
    /// Sizes of the private `/tmp` and `/dev/shm` (tmpfs; full: ENOSPC). `None`: the
    /// kernel's default (half the memory).
    pub tmp_size: Option<u64>,
    pub shm_size: Option<u64>,
    /// The agent's own home: `(folder on the host, path inside)`, bound read-write at the path
    /// `HOME` names (grants below it are mounted on top), so that its logins, caches and
    /// settings work and persist without the person's real home.
    pub home: Option<(PathBuf, PathBuf)>,
    /// The configuration is completed later (`ward run` forks the launcher before it has
    /// worked everything out): see [`Late`].
    pub late: Option<Late>,
}

/// Where the rest of a configuration comes from, when the launcher starts before `ward run`
/// has it: the session's cgroups as descriptors of the files a process moves itself in by
/// ([`crate::cgroup::join_file`]; one message on
/// `cgroups`, for the launcher), and the fields [`crate::late`] lists (bytes to end of file
/// on `rest`, for PID 1, which builds the system part of the root meanwhile).
#[derive(Debug, Clone, Copy)]
pub struct Late {
    pub cgroups: i32,
    pub rest: i32,
}

/// System directories bound read-only (those that exist; symlinks are recreated as symlinks).
pub const SYSTEM_RO: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/opt",
];

/// Files of /etc a program needs to start and resolve users, bound one by one: /etc itself is
/// not shown (it holds shadow, keys, and machine secrets).
pub const ETC_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/mime.types",
    "/etc/bash.bashrc",
    "/etc/profile",
    "/etc/inputrc",
    "/etc/terminfo",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/gitconfig",
];

/// Where the system's trusted certificates are inside (Debian's bundle), and where the
/// session's own bundle is bound when the proxy inspects TLS.
pub const TRUST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Files of /etc that Ward writes inside (readable there): the sandbox's own resolver and
/// hosts.
pub const ETC_MADE: &[&str] = &["/etc/resolv.conf", "/etc/hosts"];

/// `/etc/resolv.conf` inside: the sandbox's resolver on its loopback, one quick try.
pub const RESOLV_CONF: &str =
    "# Ward: the sandbox's resolver answers for the names the manifest allows.\n\
nameserver 127.0.0.1\noptions attempts:1 timeout:2\n";

/// Device nodes bound from the host into the private /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn cstr(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Setup(format!("path with NUL: {}", p.display())))
}

/// The error for an I/O failure on `path`.
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Path {
        path: path.display().to_string(),
        source,
    }
}

fn os_err(what: String) -> SandboxError {
    SandboxError::Setup(format!("{what}: {}", std::io::Error::last_os_error()))
}

fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), SandboxError> {
    let src_c = src.map(cstr).transpose()?;
    let dst_c = cstr(dst)?;
    let fs_c = fstype.map(|f| CString::new(f).unwrap_or_default());
    let data_c = data.map(|d| CString::new(d).unwrap_or_default());
    // SAFETY: every pointer is a valid NUL-terminated string or null, alive for the call.
    let r = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            dst_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    if r != 0 {
        return Err(os_err(format!(
            "mount {} on {}",
            src.map_or("-".into(), |s| s.display().to_string()),
            dst.display()
        )));
    }
    Ok(())
}

/// Bind `src` at the same path under `root`, read-only unless `writable`.
fn bind(root: &Path, src: &Path, writable: bool) -> Result<(), SandboxError> {
    let Some(dst) = bind_only(root, src)? else {
        return Ok(());
    };
    mount(None, &dst, None, remount_flags(writable), None)
}

/// The flags a grant's bind is remounted with: nosuid, nodev, and read-only unless
/// `writable`.
fn remount_flags(writable: bool) -> libc::c_ulong {
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    if writable {
        flags
    } else {
        flags | libc::MS_RDONLY
    }
}

/// Bind `src` (and what is mounted below it) at the same path under `root`, with the flags it
/// has; a symbolic link is made again as a link instead. Returns where it was bound.
fn bind_only(root: &Path, src: &Path) -> Result<Option<PathBuf>, SandboxError> {
    let dst = root.join(src.strip_prefix("/").unwrap_or(src));
    let meta = std::fs::symlink_metadata(src).map_err(at(src))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(at(src))?;
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(at(parent))?;
        }
        std::os::unix::fs::symlink(target, &dst).map_err(at(&dst))?;
        return Ok(None);
    }
    mount_point(&dst, meta.is_dir())?;
    mount(Some(src), &dst, None, libc::MS_BIND | libc::MS_REC, None)?;
    Ok(Some(dst))
}

/// Bind `src` on a place in the agent's home ([`place_in_home`]), read-only unless
/// `writable`; the flags are set on the new mount, opened again the same way.
fn bind_in_home(
    src: &Path,
    placed: &Beneath,
    again: impl Fn() -> Result<Beneath, SandboxError>,
    writable: bool,
) -> Result<(), SandboxError> {
    mount(
        Some(src),
        &placed.proc_path(),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    let top = again()?;
    // The home's Landlock write rule covers what is mounted below it: a read-only grant
    // there is held by its mount flags alone, so every mount of it is made read-only.
    if !writable && read_only_tree(&top.proc_path())? {
        return Ok(());
    }
    mount(None, &top.proc_path(), None, remount_flags(writable), None)
}

/// The agent's home (its path inside) when `p` lies below it.
fn in_home<'a>(cfg: &'a Config, p: &Path) -> Option<&'a Path> {
    cfg.home
        .as_ref()
        .map(|(_, inside)| inside.as_path())
        .filter(|h| p.starts_with(h) && p != *h)
}

/// Make `rel` below `top` (the agent's home, mounted) a place to mount on, one component at a
/// time, never following a symbolic link: a link where a folder is expected is refused with
/// what to remove. Returns it opened (`O_PATH`), to mount on through `/proc/self/fd`.
fn place_in_home(top: &Path, rel: &Path, dir: bool) -> Result<Beneath, SandboxError> {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};
    let top_c = cstr(top)?;
    // SAFETY: open of a path we own the C string for; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            top_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(os_err(format!("open {}", top.display())));
    }
    // SAFETY: fd was just opened.
    let mut cur = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let parts: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let c = CString::new(name.as_bytes())
            .map_err(|_| SandboxError::Setup("path with NUL".into()))?;
        // SAFETY: mkdirat/openat under the directory descriptor we hold, with a C string we
        // own; O_EXCL makes a file without following a link (an existing one is left alone).
        unsafe {
            if last && !dir {
                let f = libc::openat(
                    cur.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if f >= 0 {
                    libc::close(f);
                }
            } else {
                libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755);
            }
        }
        let flags = if last && !dir {
            libc::O_PATH | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW
        };
        let next = ward_sys::openat2(
            cur.as_fd(),
            &c,
            flags,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| {
            let there: PathBuf = parts[..=i].iter().collect();
            SandboxError::Setup(format!(
                "the agent's home has {} where {} is to be mounted ({e}): Ward does not follow \
                 it; remove it from the agent's home",
                there.display(),
                rel.display()
            ))
        })?;
        cur = next;
    }
    let placed = Beneath::from_fd(cur)?;
    if placed.kind() == libc::S_IFLNK {
        return Err(SandboxError::Setup(format!(
            "the agent's home has a link where {} is to be mounted: Ward does not follow it; \
             remove it from the agent's home",
            rel.display()
        )));
    }
    Ok(placed)
}

/// Make `dst` a place to mount on: a directory, or an empty file. What is already there is
/// left as it is (never truncated: it may be a real file, seen through a grant mounted before).
fn mount_point(dst: &Path, dir: bool) -> Result<(), SandboxError> {
    if dir {
        return std::fs::create_dir_all(dst).map_err(at(dst));
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(at(parent))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(at(dst)(e)),
    }
}

/// Make the mount at `root` and every mount below it read-only, nosuid and nodev, at once
/// (`mount_setattr`, Linux 5.12+). `false` when that fails: the caller remounts each.
fn read_only_tree(root: &Path) -> Result<bool, SandboxError> {
    /// `struct mount_attr` of the kernel's uapi.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let root_c = cstr(root)?;
    // SAFETY: a valid path and a `mount_attr` of the size passed, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            root_c.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    // Any failure (an old kernel, or a seccomp profile around Ward that refuses the call)
    // leaves it to the caller's remounts, which are as strict for each mount they cover.
    Ok(r == 0)
}

fn write_file(path: &str, data: &str) -> Result<(), SandboxError> {
    std::fs::write(path, data).map_err(at(Path::new(path)))
}

impl Config {
    /// A sandbox with nothing granted, for `argv` in `cwd`, assembled in `staging`; the other
    /// fields are set by the caller.
    pub fn new(staging: PathBuf, cwd: PathBuf, argv: Vec<String>) -> Config {
        Config {
            grants: vec![],
            staging,
            cwd,
            argv,
            env: vec![],
            go_fd: None,
            masks: vec![],
            mask_from: None,
            trust: None,
            read_only: vec![],
            stages: vec![],
            parent: None,
            notify_fd: None,
            proxy_fd: None,
            proxy_port: 3128,
            loopback: vec![],
            hosts: vec![],
            set_env: vec![],
            cgroups: vec![],
            landlock: true,
            pty_fd: None,
            watch_exec: false,
            no_execute: vec![],
            devices: vec![],
            tmp_size: None,
            shm_size: None,
            home: None,
            late: None,
        }
    }

    /// The agent's environment: this process's, scrubbed (the built-in list plus
    /// `scrub_extra`, less `keep`), then `set_env` on top.
    pub fn scrub_env(&mut self, scrub_extra: &[String], keep: &[String]) {
        let (kept, _) = crate::env::Scrub::default()
            .with(scrub_extra, keep)
            .apply(std::env::vars_os());
        self.env = kept
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .filter(|(k, _)| !self.set_env.iter().any(|(s, _)| s == k))
            .collect();
        self.env.extend(self.set_env.iter().cloned());
    }
}

/// Run the sandbox of `cfg` and return the process exit status (125 when it cannot be set up,
/// with the reason on stderr). What `ward run`'s forked launcher calls.
pub fn main(cfg: &Config) -> i32 {
    match run(cfg) {
        Ok(code) => code,
        Err(SandboxError::Abandoned) => 125,
        Err(e) => {
            eprintln!("ward: cannot start the sandbox: {e}");
            125
        }
    }
}

/// The launcher's whole job from its command line (`--staging DIR [--ro P]... [--rw P]...
/// [--cwd DIR] -- CMD ARGS...`), for `ward __launch`: returns the process exit status (125
/// when the sandbox cannot be set up, with the reason on stderr).
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> i32 {
    let mut args = args.into_iter();
    let mut cfg = Config::new(PathBuf::new(), PathBuf::from("/"), vec![]);
    let (mut scrub_extra, mut scrub_keep) = (Vec::new(), Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ro" => cfg
                .grants
                .push((args.next().unwrap_or_default().into(), false)),
            "--rw" => cfg
                .grants
                .push((args.next().unwrap_or_default().into(), true)),
            "--mask" => cfg.masks.push(args.next().unwrap_or_default().into()),
            "--stage" => {
                let mut next = || PathBuf::from(args.next().unwrap_or_default());
                let (g, u, w) = (next(), next(), next());
                cfg.stages.push((g, u, w));
            }
            "--ro-inside" => cfg.read_only.push(args.next().unwrap_or_default().into()),
            "--parent" => cfg.parent = args.next().and_then(|v| v.parse().ok()),
            "--staging" => cfg.staging = args.next().unwrap_or_default().into(),
            "--cwd" => cfg.cwd = args.next().unwrap_or_default().into(),
            "--go-fd" | "--notify-fd" => match args.next().and_then(|v| v.parse().ok()) {
                Some(fd) if a == "--go-fd" => cfg.go_fd = Some(fd),
                Some(fd) => cfg.notify_fd = Some(fd),
                None => {
                    eprintln!("ward: launcher: {a} takes a descriptor number");
                    return 125;
                }
            },
            "--proxy-fd" => match args.next().and_then(|v| v.parse().ok()) {
                Some(fd) => cfg.proxy_fd = Some(fd),
                None => {
                    eprintln!("ward: launcher: --proxy-fd takes a descriptor number");
                    return 125;
                }
            },
            "--proxy-port" => match args.next().and_then(|v| v.parse().ok()) {
                Some(p) => cfg.proxy_port = p,
                None => {
                    eprintln!("ward: launcher: --proxy-port takes a port number");
                    return 125;
                }
            },
            "--set-env" => {
                let kv = args.next().unwrap_or_default();
                match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        cfg.set_env.push((k.to_string(), v.to_string()))
                    }
                    _ => {
                        eprintln!("ward: launcher: --set-env takes NAME=VALUE");
                        return 125;
                    }
                }
            }
            "--cgroup" => cfg.cgroups.push(args.next().unwrap_or_default().into()),
            "--no-landlock" => cfg.landlock = false,
            "--watch-exec" => cfg.watch_exec = true,
            "--no-exec" => cfg.no_execute.push(args.next().unwrap_or_default().into()),
            "--device" => cfg.devices.push(args.next().unwrap_or_default().into()),
            "--pty-fd" => match args.next().and_then(|v| v.parse().ok()) {
                Some(fd) => cfg.pty_fd = Some(fd),
                None => {
                    eprintln!("ward: launcher: --pty-fd takes a descriptor number");
                    return 125;
                }
            },
            "--tmp-size" | "--shm-size" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if a == "--tmp-size" => cfg.tmp_size = Some(n),
                Some(n) => cfg.shm_size = Some(n),
                None => {
                    eprintln!("ward: launcher: {a} takes a number of bytes");
                    return 125;
                }
            },
            "--scrub" => scrub_extra.push(args.next().unwrap_or_default()),
            "--keep-env" => scrub_keep.push(args.next().unwrap_or_default()),
            "--" => {
                cfg.argv = args.by_ref().collect();
                break;
            }
            other => {
                eprintln!("ward: launcher: unknown argument {other}");
                return 125;
            }
        }
    }
    if cfg.staging.as_os_str().is_empty() {
        eprintln!("ward: launcher: --staging DIR is required");
        return 125;
    }
    cfg.scrub_env(&scrub_extra, &scrub_keep);
    main(&cfg)
}

/// Enter the sandbox and run the agent; returns its exit status (128 + signal if killed).
/// Must be called from a single-threaded process.
pub fn run(cfg: &Config) -> Result<i32, SandboxError> {
    if cfg.argv.is_empty() && cfg.late.is_none() {
        return Err(SandboxError::Setup("no command to run".into()));
    }
    if let Some(parent) = cfg.parent {
        // If `ward run` dies, so does the launcher, and with it the whole session.
        // SAFETY: prctl with constant arguments; getppid has no preconditions.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                return Err(SandboxError::Setup("the supervisor is gone".into()));
            }
        }
    }
    // The session's cgroups, opened now (with the host's credentials), or received from
    // `ward run` once it has made them: PID 1 and this process are moved into them while PID 1
    // builds the root, and the agent is forked inside.
    let opened = match cfg.late {
        None => Some(crate::cgroup::Joiner::open(&cfg.cgroups)?),
        Some(_) => None,
    };
    // The host's /proc, held: PID 1's pivot re-roots every process of the mount namespace,
    // this one included, so the network namespace made after it is named through this.
    let proc = std::fs::File::open("/proc").map_err(|source| SandboxError::Path {
        path: "/proc".into(),
        source,
    })?;
    // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // The network namespace comes after PID 1 is forked (see below).
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare with constant flags; fails (and says so) if the caller is multi-threaded.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(SandboxError::Unsupported {
            feature: "user namespaces",
            detail: format!("unshare: {}", std::io::Error::last_os_error()),
        });
    }
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_file("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;

    let mut alive = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array; the read end is non-blocking so the child's
    // check never waits.
    if unsafe { libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_err("pipe".into()));
    }
    // SAFETY: fcntl on the descriptor just created.
    unsafe {
        libc::fcntl(alive[0], libc::F_SETFL, libc::O_NONBLOCK);
    }
    // From the launcher to PID 1, once the launcher is in the session's cgroups: the agent's
    // network namespace and the cgroups. End of file without them: something failed, and the
    // agent is not started.
    let mut link = [0i32; 2];
    // SAFETY: socketpair fills the two-element array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            link.as_mut_ptr(),
        )
    } != 0
    {
        return Err(os_err("socketpair".into()));
    }
    // SAFETY: fork in a single-threaded process; the child only continues this function.
    let pid1 = unsafe { libc::fork() };
    if pid1 < 0 {
        return Err(os_err("fork".into()));
    }
    if pid1 == 0 {
        // If the launcher dies (`ward kill` sends it SIGKILL), PID 1 dies with it, and with PID
        // 1 the kernel kills every process of the namespace: the whole tree ends at once.
        // SAFETY: prctl with constant arguments; getppid has no preconditions.
        // (getppid() cannot tell: the launcher is outside this pid namespace, so it reads 0.
        // The launcher holds the write end of `alive`; end of file means it is already gone.)
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            libc::close(alive[1]);
            libc::close(link[0]);
            // The host's /proc is the launcher's to use.
            libc::close(proc.as_raw_fd());
            if let Some(late) = cfg.late {
                libc::close(late.cgroups);
            }
            let mut b = 0u8;
            if libc::read(alive[0], &mut b as *mut u8 as *mut libc::c_void, 1) == 0 {
                libc::_exit(125);
            }
            libc::close(alive[0]);
        }
        let code = match init(cfg, link[1]) {
            Ok(code) => code,
            Err(SandboxError::Abandoned) => 125,
            Err(e) => {
                eprintln!("ward: cannot set up the sandbox: {e}");
                125
            }
        };
        // SAFETY: leave the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    // While PID 1 builds the root: the agent's network namespace (creating one takes half a
    // millisecond, done while `ward run` still makes the cgroups), then the launcher into the
    // session's cgroups; both go to PID 1, which moves itself in and enters the namespace
    // before it forks the agent.
    // SAFETY: closing PID 1's end of the link, and of the stream its configuration comes on.
    unsafe {
        libc::close(link[1]);
        if let Some(late) = cfg.late {
            libc::close(late.rest);
        }
    }
    let ready = network(cfg, &proc).and_then(|ns| {
        let cgroups = match (opened, cfg.late) {
            (Some(j), _) => Ok(j),
            (None, Some(late)) => receive_cgroups(late.cgroups),
            (None, None) => Ok(crate::cgroup::Joiner::default()),
        };
        match cgroups.and_then(|c| c.join_self().map(|()| c)) {
            Ok(c) => Ok((ns, c)),
            Err(e) => {
                // SAFETY: closing the namespace's descriptor, ours alone.
                unsafe { libc::close(ns) };
                Err(e)
            }
        }
    });
    // SAFETY: the namespace's descriptor to PID 1 on success; on failure PID 1 is killed before
    // it could start anything (it waits for this message), and the error is reported.
    unsafe {
        let sent = match &ready {
            Ok((ns, c)) => {
                let mut fds = vec![std::os::fd::BorrowedFd::borrow_raw(*ns)];
                fds.extend(c.fds());
                ward_sys::send_fds(std::os::fd::BorrowedFd::borrow_raw(link[0]), &fds).is_ok()
            }
            Err(_) => false,
        };
        // Both are PID 1's now: the namespace's descriptor and the cgroups' files are closed
        // here (nothing here writes to those again).
        let ready = ready.map(|(ns, c)| {
            libc::close(ns);
            drop(c);
        });
        libc::close(link[0]);
        if !sent {
            libc::kill(pid1, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(pid1, &mut status, 0);
            // PID 1 gone before it got the namespace has said why itself (or ward run has,
            // when it stopped before configuring the sandbox).
            return Err(ready.err().unwrap_or(SandboxError::Abandoned));
        }
    }
    // SAFETY: closing our copy of the read end; the write end stays open for our lifetime.
    // The notify socket is the agent's to use.
    unsafe {
        libc::close(alive[0]);
        if let Some(fd) = cfg.notify_fd {
            libc::close(fd);
        }
        // PID 1 sends the agent's terminal; without our copy the supervisor sees the socket
        // close if PID 1 ends first.
        if let Some(fd) = cfg.pty_fd {
            libc::close(fd);
        }
    }
    Ok(wait_forwarding(pid1))
}

/// The session's cgroups from `ward run`: the descriptors of their join files, opened by
/// it (permission was checked then, with its credentials and cgroup namespace).
fn receive_cgroups(sock: i32) -> Result<crate::cgroup::Joiner, SandboxError> {
    // SAFETY: `sock` is the launcher's end, handed over by `ward run`, owned here.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(sock) };
    match ward_sys::recv_fds(std::os::fd::AsFd::as_fd(&sock)) {
        Ok(Some(fds)) => Ok(crate::cgroup::Joiner::from_fds(fds)),
        Ok(None) => Err(SandboxError::Abandoned),
        Err(e) => Err(SandboxError::Setup(format!(
            "cannot receive the session's cgroups: {e}"
        ))),
    }
}

/// The agent's network namespace, made by the launcher (already in the session's user
/// namespace, which owns it): loopback up, and when the supervisor runs the egress proxy, a
/// listening socket on it handed over, the namespace's one way out. Returns a descriptor of
/// the namespace, for PID 1 to enter.
fn network(cfg: &Config, proc: &std::fs::File) -> Result<i32, SandboxError> {
    // SAFETY: unshare with a constant flag in this single-threaded process.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(SandboxError::Unsupported {
            feature: "network namespaces",
            detail: format!("unshare: {}", std::io::Error::last_os_error()),
        });
    }
    // The new namespace has a loopback device, down. Up, for the agent's local UDP and (where
    // Landlock does not cover TCP) TCP use.
    loopback_up()?;
    if let Some(sock) = cfg.proxy_fd {
        let l = listen_loopback(cfg.proxy_port)?;
        // Then one listener per loopback service the manifest names, at its own address and
        // port (the supervisor tells them apart by their addresses). An IPv6 one where this
        // kernel has no IPv6 is left out: nobody inside can reach ::1 then either.
        // The sandbox's resolver (see ward_net::dns): UDP 127.0.0.1:53, which /etc/resolv.conf
        // names inside.
        let dns = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 53)).map_err(|e| {
            SandboxError::Setup(format!(
                "cannot listen on 127.0.0.1:53 inside the sandbox for its resolver: {e}"
            ))
        })?;
        let mut services = Vec::new();
        for a in &cfg.loopback {
            match std::net::TcpListener::bind(a) {
                Ok(s) => services.push(s),
                Err(_) if a.is_ipv6() => {}
                Err(e) => {
                    // SAFETY: closing descriptors this process owns.
                    unsafe {
                        libc::close(l);
                        libc::close(sock);
                    }
                    return Err(SandboxError::Setup(format!(
                        "cannot listen on {a} inside the sandbox for the loopback service the \
                         manifest names: {e}"
                    )));
                }
            }
        }
        // SAFETY: the descriptors are open; ours to close after.
        unsafe {
            let mut r = crate::notify::send_fd(sock, l);
            libc::close(l);
            if r == 0 {
                r = crate::notify::send_fd(sock, dns.as_raw_fd());
            }
            drop(dns);
            for s in &services {
                if r == 0 {
                    r = crate::notify::send_fd(sock, s.as_raw_fd());
                }
            }
            drop(services);
            libc::close(sock);
            if r != 0 {
                return Err(os_err(
                    "cannot hand the proxy socket to the supervisor".into(),
                ));
            }
        }
    }
    // SAFETY: openat under the descriptor of the host's /proc, held by `proc`.
    let ns = unsafe {
        libc::openat(
            proc.as_raw_fd(),
            c"self/ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if ns < 0 {
        return Err(os_err(
            "the agent's network namespace (/proc/self/ns/net)".into(),
        ));
    }
    Ok(ns)
}

/// `ip link set lo up`, by ioctl.
fn loopback_up() -> Result<(), SandboxError> {
    // SAFETY: a socket for the ioctl; an ifreq-sized buffer with the name and flags at their
    // offsets (name: 16 bytes, then the flags short).
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(os_err("socket for loopback".into()));
        }
        let mut req = [0u8; 40];
        req[..2].copy_from_slice(b"lo");
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, req.as_mut_ptr());
        if r == 0 {
            let flags = i16::from_ne_bytes([req[16], req[17]]) | libc::IFF_UP as i16;
            req[16..18].copy_from_slice(&flags.to_ne_bytes());
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, req.as_mut_ptr());
        }
        let e = std::io::Error::last_os_error();
        libc::close(s);
        if r != 0 {
            return Err(SandboxError::Setup(format!(
                "cannot bring up loopback: {e}"
            )));
        }
    }
    Ok(())
}

/// A listening TCP socket on 127.0.0.1:`port` of the current network namespace.
fn listen_loopback(port: u16) -> Result<i32, SandboxError> {
    // SAFETY: plain socket calls on a descriptor created here; closed on every error.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(os_err("proxy socket".into()));
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            s,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
            || libc::listen(s, 1024) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(s);
            return Err(SandboxError::Setup(format!(
                "cannot listen on 127.0.0.1:{port} for the proxy: {e}"
            )));
        }
        Ok(s)
    }
}

/// The bytes of the rest of the configuration, to end of file (at most `late::MAX_LEN`).
fn read_late(fd: i32) -> Result<Vec<u8>, SandboxError> {
    use std::io::Read;
    // SAFETY: `fd` is PID 1's end of the stream, handed over by `ward run`, owned here.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut b = Vec::new();
    f.take(crate::late::MAX_LEN as u64 + 1)
        .read_to_end(&mut b)
        .map_err(|e| SandboxError::Setup(format!("cannot read the configuration: {e}")))?;
    if b.is_empty() {
        return Err(SandboxError::Abandoned);
    }
    Ok(b)
}

/// PID 1 of the new pid namespace: build the root, start the agent as PID 2, reap.
/// Overwrite this process's environment block: PID 1 was forked from `ward run` with its
/// whole environment (secrets the agent's was cleaned of, a credential's source variable),
/// and `/proc/1/environ` shows that block to whoever may read PID 1's memory. The agent's own
/// environment comes from the configuration, never from here.
fn forget_environment() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command's closing parenthesis start at field 3; env_start and
    // env_end are fields 50 and 51 (proc(5)).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) = (
        f.get(47).map(|v| v.parse::<usize>()),
        f.get(48).map(|v| v.parse::<usize>()),
    ) else {
        return;
    };
    if start == 0 || end <= start || end - start > 64 << 20 {
        return;
    }
    // SAFETY: [env_start, env_end) is this process's own environment block, mapped and
    // writable (the initial stack); nothing reads it after this (the agent's environment is
    // built from the configuration, and PID 1 asks for no variable).
    unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
}

fn init(cfg: &Config, link: i32) -> Result<i32, SandboxError> {
    forget_environment();
    // The proxy's socket is the launcher's to hand over.
    if let Some(fd) = cfg.proxy_fd {
        // SAFETY: closing PID 1's copy of a descriptor it has no use for.
        unsafe {
            libc::close(fd);
        }
    }
    // Exec checks need someone to answer: only with the notify socket.
    let filter = Filter::with_exec(cfg.watch_exec && cfg.notify_fd.is_some())?;
    let system = build_system(cfg)?;
    // Landlock's rules for the system's bind mounts, added while `ward run` still works out
    // the rest: each is named at its mount point in the new root, so the rule is on the very
    // files the agent sees. Not when some file may not be executed: the tree holding it gets
    // execution entry by entry, worked out after the pivot from the agent's view.
    let early_mounts = cfg.no_execute.is_empty();
    let building = if cfg.landlock {
        let ports: Vec<u16> = cfg
            .proxy_fd
            .map(|_| cfg.proxy_port)
            .into_iter()
            .chain(cfg.loopback.iter().map(|a| a.port()))
            .collect();
        let b = Landlock::begin(&ports)?;
        Some(if early_mounts {
            b.allow_read_mounts(&system)?
        } else {
            b
        })
    } else {
        None
    };
    // The rest of the configuration, when `ward run` sends it now (see `Late`).
    let completed;
    let cfg = match cfg.late {
        None => cfg,
        Some(late) => {
            let mut c = cfg.clone();
            c.late = None;
            crate::late::decode(&mut c, &read_late(late.rest)?)?;
            if c.argv.is_empty() {
                return Err(SandboxError::Setup("no command to run".into()));
            }
            completed = c;
            &completed
        }
    };
    build_rest(cfg, &system)?;
    // The rest of the rules, inside the new root: Ward's own /etc files, /proc, /tmp, /dev,
    // the devices, the agent's home and the grants.
    let mut landlock = match building {
        Some(b) => {
            let mut read: Vec<PathBuf> = vec!["/proc".into()];
            let mut write: Vec<PathBuf> = vec!["/tmp".into(), "/dev".into()];
            write.extend(cfg.devices.iter().cloned());
            write.extend(cfg.home.iter().map(|(_, inside)| inside.clone()));
            for (p, writable) in &cfg.grants {
                if *writable {
                    write.push(p.clone())
                } else {
                    read.push(p.clone())
                }
            }
            // The system's paths not mounted above (links, made as links inside; all of
            // them when some file may not be executed), as the agent sees them now.
            let mounted: Vec<PathBuf> = if early_mounts {
                system
                    .iter()
                    .filter_map(|d| d.strip_prefix(&cfg.staging).ok())
                    .map(|r| Path::new("/").join(r))
                    .collect()
            } else {
                Vec::new()
            };
            let rest = SYSTEM_RO
                .iter()
                .chain(ETC_FILES)
                .map(Path::new)
                .filter(|p| !mounted.iter().any(|m| m == p));
            Some(
                b.with_no_execute(&cfg.no_execute)
                    .allow_read_present(rest.chain(ETC_MADE.iter().map(Path::new)))?
                    .allow(&read, &write)?
                    .done(),
            )
        }
        None => None,
    };
    let argv: Vec<CString> = cfg
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let env: Vec<CString> = cfg
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap_or_default())
        .collect();
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let cwd = cstr(&cfg.cwd)?;
    let prog = resolve(&cfg.argv[0], &cfg.env)?;
    if let Some(sock) = cfg.pty_fd {
        agent_pty(sock)?;
    }
    // Nothing is forked before PID 1 is in the session's cgroups: the launcher sends them
    // beside the agent's network namespace, and PID 1 moves itself in and enters the
    // namespace (until then it is in the host's, and starts nothing). The agent is then forked and confined at once, and
    // waits for the supervisor's go (the session's start on record) only to exec: the go is
    // on the path to the agent's first output, its fork and confinement are not.
    // SAFETY: `link` is PID 1's end of the socket pair, owned here.
    let link = unsafe { std::os::fd::OwnedFd::from_raw_fd(link) };
    let mut fds = ward_sys::recv_fds(link.as_fd())
        .ok()
        .flatten()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            SandboxError::Setup(
                "the sandbox could not join the session's cgroups or make its network".into(),
            )
        })?;
    drop(link);
    let ns = fds.remove(0);
    crate::cgroup::Joiner::from_fds(fds).join_self()?;
    // SAFETY: setns on the descriptor just received, owned by `ns`.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("cannot enter the agent's network namespace".into()));
    }
    drop(ns);
    // The agent's cgroup namespace is rooted at the session's cgroup, now that PID 1 is in it
    // (`/proc/self/cgroup` reads `/` inside).
    // SAFETY: unshare with a constant flag in this single-threaded process.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
        return Err(SandboxError::Unsupported {
            feature: "cgroup namespaces",
            detail: format!("unshare: {}", std::io::Error::last_os_error()),
        });
    }

    // SAFETY: this process is single-threaded (PID 1 of the new namespace, forked from the
    // single-threaded launcher), so the child may allocate like any process before it execs.
    let agent = unsafe { libc::fork() };
    if agent < 0 {
        return Err(os_err("fork".into()));
    }
    if agent == 0 {
        // SAFETY: system calls on pointers prepared above; each failure ends the child with 125 (126/127
        // for exec errors, as shells do).
        unsafe {
            if libc::setsid() < 0 {
                die(b"ward: cannot start the agent in its own session (setsid)\n");
            }
            if cfg.pty_fd.is_some() {
                // The first standard descriptor that is a terminal: the agent's own pty (never
                // the person's terminal, which PID 1 replaced).
                if let Some(fd) = (0..3).find(|&fd| libc::isatty(fd) == 1) {
                    if libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
                        die(b"ward: cannot give the agent its terminal (TIOCSCTTY)\n");
                    }
                }
            }
            if libc::chdir(cwd.as_ptr()) != 0 {
                die(b"ward: cannot enter the working directory inside the sandbox\n");
            }
            // The supervisor ignores terminal signals so that it outlives the agent and records
            // its end; the agent gets the default dispositions back (Ctrl-C stops it).
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
                libc::signal(sig, libc::SIG_DFL);
            }
            if landlock.as_mut().is_some_and(|l| l.enforce().is_err()) {
                die(b"ward: kernel feature `landlock` refused the ruleset (landlock_restrict_self)\n");
            }
            match cfg.notify_fd {
                Some(sock) => {
                    let Ok(listener) = filter.enforce_notify() else {
                        die(b"ward: kernel feature `seccomp user notification` is not available (Linux 5.0+)\n");
                    };
                    if crate::notify::send_fd(sock, listener) != 0 {
                        die(b"ward: cannot hand the seccomp listener to the supervisor\n");
                    }
                    libc::close(listener);
                    libc::close(sock);
                }
                None => {
                    if filter.enforce().is_err() {
                        die(b"ward: kernel feature `seccomp` is not available\n");
                    }
                }
            }
            if drop_capabilities() != 0 {
                die(b"ward: cannot drop the agent's capabilities\n");
            }
            // Confined, the agent waits for the go: one byte once the session's start is on
            // record; end of file means the supervisor could not record it (and has said so).
            if let Some(fd) = cfg.go_fd {
                let mut b = 0u8;
                if libc::read(fd, &mut b as *mut u8 as *mut libc::c_void, 1) != 1 {
                    libc::_exit(125);
                }
            }
            // Nothing leaks in by inheritance: every descriptor but stdio is closed (after the
            // ruleset's own descriptor was consumed above, and the go read).
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                die(b"ward: cannot close the agent's inherited descriptors (close_range)\n");
            }
            libc::execve(prog.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            let e = *libc::__errno_location();
            libc::_exit(if e == libc::ENOENT { 127 } else { 126 });
        }
    }
    // PID 1 of a namespace ignores signals it has no handler for; pass them to the agent
    // (its own session and process group) instead.
    for fd in [cfg.notify_fd, cfg.go_fd].into_iter().flatten() {
        // SAFETY: PID 1 has no use for the notify socket or the go once the agent has them.
        unsafe {
            libc::close(fd);
        }
    }
    CHILD.store(-agent, std::sync::atomic::Ordering::Relaxed);
    install_forwarding();
    Ok(reap_until(agent))
}

/// The agent's own terminal, made in the sandbox's devpts: the master goes to the supervisor
/// over `sock`, the slave takes the place of each of PID 1's standard descriptors that is a
/// terminal (the person's, which no process of the sandbox keeps after this).
fn agent_pty(sock: i32) -> Result<(), SandboxError> {
    // SAFETY: open/ioctl/dup2/close on descriptors created here or owned by PID 1; the
    // ioctls take an int pointer (TIOCSPTLCK) or flags (TIOCGPTPEER).
    unsafe {
        let m = libc::open(
            c"/dev/pts/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m < 0 {
            return Err(os_err("the agent's terminal (/dev/pts/ptmx)".into()));
        }
        let unlock: libc::c_int = 0;
        // The slave through its master (TIOCGPTPEER): no path lookup that could name another.
        let s = if libc::ioctl(m, libc::TIOCSPTLCK, &unlock) == 0 {
            libc::ioctl(m, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY)
        } else {
            -1
        };
        if s < 0 {
            let e = os_err("the agent's terminal (TIOCGPTPEER)".into());
            libc::close(m);
            return Err(e);
        }
        let sent = crate::notify::send_fd(sock, m);
        libc::close(m);
        libc::close(sock);
        if sent != 0 {
            libc::close(s);
            return Err(os_err(
                "cannot hand the agent's terminal to the supervisor".into(),
            ));
        }
        for fd in 0..3 {
            if libc::isatty(fd) == 1 && libc::dup2(s, fd) < 0 {
                return Err(os_err("the agent's terminal (dup2)".into()));
            }
        }
        libc::close(s);
    }
    Ok(())
}

/// A path inside the new root, opened without following any symbolic link (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and the `/proc/self/fd` name to mount on it: a
/// folder swapped for a link between the scan and the mount cannot send the mount elsewhere.
struct Beneath {
    fd: std::os::fd::OwnedFd,
    meta: libc::stat,
}

impl Beneath {
    fn open(root: &Path, p: &Path, grants: &[(PathBuf, bool)]) -> Result<Beneath, SandboxError> {
        use std::os::fd::FromRawFd;
        if !grants.iter().any(|(g, _)| p.starts_with(g)) {
            return Err(SandboxError::Setup(format!(
                "{} is outside every grant",
                p.display()
            )));
        }
        let root_c = cstr(root)?;
        let rel = cstr(p.strip_prefix("/").unwrap_or(p))?;
        // SAFETY: open of a path we own the C string for; the descriptor is owned below.
        let dir = unsafe {
            libc::open(
                root_c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if dir < 0 {
            return Err(os_err(format!("open {}", root.display())));
        }
        // SAFETY: dir was just opened.
        let dir = unsafe { std::os::fd::OwnedFd::from_raw_fd(dir) };
        let fd = ward_sys::openat2(
            std::os::fd::AsFd::as_fd(&dir),
            &rel,
            libc::O_PATH | libc::O_NOFOLLOW,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        );
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                return Err(SandboxError::Setup(
                    if e.raw_os_error() == Some(libc::ELOOP) {
                        format!(
                    "{}: a folder on the way to it is a symbolic link (changed while the sandbox \
                     was being built?); Ward refuses rather than cover the wrong path",
                    p.display()
                )
                    } else {
                        format!("{}: {e}", p.display())
                    },
                ));
            }
        };
        // SAFETY: fstat fills the struct.
        let mut meta: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on the descriptor just opened, into the struct above.
        if unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut meta) } != 0 {
            return Err(os_err(format!("stat {}", p.display())));
        }
        Ok(Beneath { fd, meta })
    }

    fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Beneath, SandboxError> {
        // SAFETY: fstat fills the struct.
        let mut meta: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on the descriptor we own, into the struct above.
        if unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut meta) } != 0 {
            return Err(os_err("stat a mount point".into()));
        }
        Ok(Beneath { fd, meta })
    }

    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.fd)
        ))
    }

    fn kind(&self) -> libc::mode_t {
        self.meta.st_mode & libc::S_IFMT
    }
}

/// Cover an always-denied path inside a grant: an empty read-only tmpfs over a directory, a
/// read-only bind of the sandbox's /dev/null over anything else (a file, a socket).
fn mask(
    root: &Path,
    m: &Path,
    grants: &[(PathBuf, bool)],
    own: Option<&Path>,
) -> Result<(), SandboxError> {
    let target = Beneath::open(root, m, grants)?;
    if target.kind() == libc::S_IFLNK {
        // A mount cannot cover a symlink; refuse rather than leave it replaceable.
        return Err(SandboxError::Setup(format!(
            "{} is always denied but is a symbolic link; remove it or grant a narrower folder",
            m.display()
        )));
    }
    let dst = target.proc_path();
    let ro = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
    if target.kind() == libc::S_IFDIR {
        mount(
            Some(Path::new("tmpfs")),
            &dst,
            Some("tmpfs"),
            ro,
            Some("mode=0000,size=4k"),
        )
    } else {
        // A file: its own empty cover, or /dev/null.
        let null = root.join("dev/null");
        cover_file(root, m, grants, &target, own.unwrap_or(&null))
    }
}

/// Bind `with` over the file `path` (opened beneath `root` as `target`), read-only: the new
/// mount is reached through its pinned folder by name, never opened (an open of a watched
/// cover, even O_PATH, is an inotify event on older kernels, and would count as the agent's).
fn cover_file(
    root: &Path,
    path: &Path,
    grants: &[(PathBuf, bool)],
    target: &Beneath,
    with: &Path,
) -> Result<(), SandboxError> {
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SandboxError::Setup(format!(
            "{}: no folder",
            path.display()
        )));
    };
    let folder = Beneath::open(root, folder, grants)?;
    mount(Some(with), &target.proc_path(), None, libc::MS_BIND, None)?;
    // The new mount sits on top of the path: remount it read-only by name, below the pinned
    // folder (nothing of the agent's runs yet to swap it).
    mount(
        None,
        &folder.proc_path().join(name),
        None,
        libc::MS_BIND
            | libc::MS_REMOUNT
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_RDONLY,
        None,
    )
}

/// Say why the agent cannot start (async-signal-safe: one write) and end with 125.
fn die(msg: &[u8]) -> ! {
    // SAFETY: write of a static buffer to stderr, then _exit.
    unsafe {
        libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
        libc::_exit(125)
    }
}

/// Make `p`, inside a grant, read-only (bound over itself inside the new root).
fn protect(root: &Path, p: &Path, grants: &[(PathBuf, bool)]) -> Result<(), SandboxError> {
    let target = Beneath::open(root, p, grants)?;
    if target.kind() == libc::S_IFLNK {
        return Err(SandboxError::Setup(format!(
            "{} must stay read-only but is a symbolic link; replace it with the directory it \
             points to, or grant the folder read-only",
            p.display()
        )));
    }
    let dst = target.proc_path();
    mount(Some(&dst), &dst, None, libc::MS_BIND | libc::MS_REC, None)?;
    let top = Beneath::open(root, p, grants)?;
    mount(
        None,
        &top.proc_path(),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
}

/// An overlay option value: `\`, `,` and `:` are escaped with a backslash.
fn overlay_escape(p: &Path) -> Result<String, SandboxError> {
    let s = p.to_str().ok_or_else(|| {
        SandboxError::Setup(format!(
            "{} is not valid UTF-8, which an overlay mount option cannot carry",
            p.display()
        ))
    })?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// Mount a staged grant: an overlay at the grant's real path, the real folder below, the
/// session's stage above. `userxattr` keeps overlay's own bookkeeping (whiteouts, opaque
/// folders) in `user.overlay.*` attributes, which an unprivileged user namespace may write.
fn stage(
    root: &Path,
    grant: &Path,
    upper: &Path,
    work: &Path,
    placed: Option<&Path>,
) -> Result<(), SandboxError> {
    // A single file: its folder's overlay is mounted apart (beside the stage, outside the new
    // root), the file alone is bound from it, and the overlay is let go: nothing else of the
    // folder is reachable inside.
    // Decided on the path itself: a link put there since the manifest was read is refused.
    let kind = std::fs::symlink_metadata(grant).map_err(at(grant))?;
    if kind.file_type().is_symlink() {
        return Err(SandboxError::Setup(format!(
            "the staged grant {} became a link after the manifest was read; grant it again",
            grant.display()
        )));
    }
    let file = kind.is_file();
    let dst = match placed {
        Some(d) => d.to_path_buf(),
        None => {
            let dst = root.join(grant.strip_prefix("/").unwrap_or(grant));
            mount_point(&dst, !file)?;
            dst
        }
    };
    let (lower, at_dir) = match (file, grant.parent(), grant.file_name()) {
        (true, Some(parent), Some(_)) => (parent, upper.with_file_name("merged")),
        _ => (grant, dst.clone()),
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        overlay_escape(lower)?,
        overlay_escape(upper)?,
        overlay_escape(work)?
    );
    mount(
        Some(Path::new("overlay")),
        &at_dir,
        Some("overlay"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&data),
    )
    .and_then(|()| {
        let Some(name) = grant.file_name().filter(|_| file) else {
            return Ok(());
        };
        mount(Some(&at_dir.join(name)), &dst, None, libc::MS_BIND, None)?;
        let c = cstr(&at_dir)?;
        // SAFETY: a NUL-terminated path of a mount this process made.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(SandboxError::Setup(format!(
                "cannot let go of {}: {}",
                at_dir.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    })
    .map_err(|e| {
        SandboxError::Setup(format!(
            "{e}: the staged grant {} needs overlayfs in a user namespace (Linux 5.11+) and a \
             state directory on a filesystem with user extended attributes (ext4, xfs, btrfs, \
             tmpfs 6.6+); or grant it :direct or :ro",
            grant.display()
        ))
    })
}

/// Find the program on the agent's PATH (execve does not search).
fn resolve(prog: &str, env: &[(String, String)]) -> Result<CString, SandboxError> {
    if prog.contains('/') {
        return CString::new(prog).map_err(|_| SandboxError::Setup("program name with NUL".into()));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(prog);
        if cand.is_file() {
            return cstr(&cand);
        }
    }
    // Let execve fail with ENOENT, which becomes exit status 127.
    CString::new(prog).map_err(|_| SandboxError::Setup("program name with NUL".into()))
}

/// Drop every capability (effective, permitted, inheritable, ambient, bounding).
/// Async-signal-safe: system calls only. Returns 0 on success.
unsafe fn drop_capabilities() -> i32 {
    for cap in 0..64 {
        libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0,
    );
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let d = [
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) as i32
}

/// The part of the root that is the same for every session: a tmpfs at `root` with the
/// system directories and /etc files bound in. Returns where they were bound.
fn build_system(cfg: &Config) -> Result<Vec<PathBuf>, SandboxError> {
    let root = &cfg.staging;
    // Nothing mounted here leaks back to the host.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        Some(Path::new("tmpfs")),
        root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755"),
    )?;
    // The read-only part: the system directories and /etc files, and every mount point the
    // rest needs, made while the tmpfs is still writable; then all of it read-only at once
    // (one call instead of a remount per bind: a millisecond of start-up).
    let mut system = Vec::new();
    for p in SYSTEM_RO.iter().chain(ETC_FILES) {
        if std::fs::symlink_metadata(p).is_ok() {
            system.extend(bind_only(root, Path::new(p))?);
        }
    }
    // The sandbox's own resolver (the supervisor answers there for the names the manifest
    // allows, nothing else); read-only with the rest.
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).map_err(at(&etc))?;
    std::fs::write(etc.join("resolv.conf"), RESOLV_CONF).map_err(at(&etc.join("resolv.conf")))?;
    std::fs::write(etc.join("hosts"), hosts(&cfg.hosts)).map_err(at(&etc.join("hosts")))?;
    Ok(system)
}

/// `/etc/hosts` inside: the host's loopback names (`localhost`, this machine's name), and each
/// name the manifest allows at its address inside; a name the host's file sends elsewhere is
/// left to the resolver (whose answer is the way out through Ward).
fn hosts(names: &[(String, std::net::IpAddr)]) -> String {
    let mut out = String::from("# Ward: loopback names, and the names the manifest allows.\n");
    let host = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    for line in host.lines() {
        let fields: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let Some(ip) = fields
            .first()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        let keep: Vec<&str> = fields[1..]
            .iter()
            .copied()
            .filter(|n| !names.iter().any(|(x, _)| x.eq_ignore_ascii_case(n)))
            .collect();
        if ip.is_loopback() && !keep.is_empty() {
            out.push_str(&format!("{ip} {}\n", keep.join(" ")));
        }
    }
    if !out
        .lines()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == "localhost"))
    {
        out.push_str("127.0.0.1 localhost\n::1 localhost\n");
    }
    for (n, ip) in names {
        out.push_str(&format!("{ip} {n}\n"));
    }
    out
}

/// The rest of the root (on the part [`build_system`] made): the mount points of everything
/// else, all read-only at once, then /dev, /proc, /tmp, the grants, devices; and the pivot.
fn build_rest(cfg: &Config, system: &[PathBuf]) -> Result<(), SandboxError> {
    let root = &cfg.staging;
    let dev = root.join("dev");
    let proc_ = root.join("proc");
    let tmp = root.join("tmp");
    for d in [&dev, &proc_, &tmp] {
        mount_point(d, true)?;
    }
    // Below a system folder the binds are still writable here: nothing is made there (what
    // is missing on the host is missing inside, and its mount fails with the path).
    let made_here = |p: &Path| {
        !SYSTEM_RO
            .iter()
            .chain(ETC_FILES)
            .any(|s| p.starts_with(s) && p != Path::new(s))
    };
    for (p, _) in cfg.grants.iter().filter(|(p, _)| made_here(p)) {
        let dst = root.join(p.strip_prefix("/").unwrap_or(p));
        let dir = std::fs::metadata(p).map(|m| m.is_dir()).unwrap_or(true);
        mount_point(&dst, dir)?;
    }
    if let Some((_, inside)) = cfg.home.as_ref().filter(|(_, i)| made_here(i)) {
        mount_point(&root.join(inside.strip_prefix("/").unwrap_or(inside)), true)?;
    }
    for d in cfg
        .devices
        .iter()
        .filter(|d| !d.starts_with("/dev") && made_here(d))
    {
        mount_point(&root.join(d.strip_prefix("/").unwrap_or(d)), false)?;
    }
    // The working directory, when it is outside every grant.
    if made_here(&cfg.cwd) {
        let _ = std::fs::create_dir_all(root.join(cfg.cwd.strip_prefix("/").unwrap_or(&cfg.cwd)));
    }
    let whole = read_only_tree(root)?;
    if !whole {
        for dst in system {
            mount(
                None,
                dst,
                None,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                None,
            )?;
        }
    }
    // Private /dev with a few device nodes, a private devpts and shm.
    mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755"),
    )?;
    for d in DEVICES {
        let src = Path::new("/dev").join(d);
        if src.exists() {
            let dst = dev.join(d);
            std::fs::write(&dst, b"").map_err(at(&dst))?;
            mount(Some(&src), &dst, None, libc::MS_BIND, None)?;
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(name));
    }
    let pts = dev.join("pts");
    let _ = std::fs::create_dir(&pts);
    if mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .is_ok()
    {
        let _ = std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"));
    }
    let shm = dev.join("shm");
    let _ = std::fs::create_dir(&shm);
    let shm_opts = cfg.shm_size.map(|n| format!("mode=1777,size={n}"));
    mount(
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(shm_opts.as_deref().unwrap_or("mode=1777")),
    )?;
    // A fresh /proc of the new pid namespace, and a private /tmp.
    mount(
        Some(Path::new("proc")),
        &proc_,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    let tmp_opts = cfg.tmp_size.map(|n| format!("mode=1777,size={n}"));
    mount(
        Some(Path::new("tmpfs")),
        &tmp,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(tmp_opts.as_deref().unwrap_or("mode=1777")),
    )?;
    // The agent's own home, before the grants: those below it are mounted on top.
    if let Some((host, inside)) = &cfg.home {
        let dst = root.join(inside.strip_prefix("/").unwrap_or(inside));
        // Made above on the read-only part; again here when it lies in /tmp.
        mount_point(&dst, true)?;
        mount(Some(host), &dst, None, libc::MS_BIND, None)?;
        mount(
            None,
            &dst,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?;
    }
    // The grants at their real paths, with the always-denied paths inside them covered.
    for (p, writable) in &cfg.grants {
        // Below the agent's own home, the way to the mount point is the agent's to shape
        // (it could have left a link there in an earlier session): it is made and opened
        // without following any link, and mounted on through its descriptor.
        let place = |home: &Path| {
            place_in_home(
                &root.join(home.strip_prefix("/").unwrap_or(home)),
                p.strip_prefix(home).unwrap_or(p),
                std::fs::metadata(p).map(|m| m.is_dir()).unwrap_or(true),
            )
        };
        let placed = in_home(cfg, p).map(&place).transpose()?;
        let at = placed.as_ref().map(|b| b.proc_path());
        match (
            cfg.stages.iter().find(|(g, _, _)| g == p),
            &placed,
            in_home(cfg, p),
        ) {
            (Some((_, upper, work)), _, _) => stage(root, p, upper, work, at.as_deref())?,
            (None, Some(b), Some(home)) => bind_in_home(p, b, || place(home), *writable)?,
            _ => bind(root, p, *writable)?,
        }
    }
    for p in &cfg.read_only {
        protect(root, p, &cfg.grants)?;
    }
    for (i, m) in cfg.masks.iter().enumerate() {
        // Its own empty file when the supervisor made one (a plain file, never a link).
        let own = cfg
            .mask_from
            .as_ref()
            .map(|d| d.join(i.to_string()))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()));
        mask(root, m, &cfg.grants, own.as_deref())?;
    }
    // The certificates the agent trusts, when the proxy inspects TLS: over the system's
    // bundle as the agent will see it (found in the new root without following any link, so
    // never a host path a link leads to), read-only.
    if let Some(trust) = &cfg.trust {
        let bundle = Path::new(TRUST_BUNDLE);
        let whole = [(PathBuf::from("/"), false)];
        let target = Beneath::open(root, bundle, &whole).map_err(|e| {
            SandboxError::Setup(format!(
                "inspecting TLS binds the session's certificates over {TRUST_BUNDLE}, which \
                 cannot be used here ({e}); it must be a plain file on this machine, not a link \
                 (Debian: apt install ca-certificates)"
            ))
        })?;
        if target.kind() != libc::S_IFREG {
            return Err(SandboxError::Setup(format!(
                "inspecting TLS binds the session's certificates over {TRUST_BUNDLE}, which is \
                 not a plain file on this machine"
            )));
        }
        cover_file(root, bundle, &whole, &target, trust)?;
    }
    // Devices the person allowed, each at its own path (never inside a grant: the manifest
    // refuses that, so nothing here is created on the host).
    for d in &cfg.devices {
        let dst = root.join(d.strip_prefix("/").unwrap_or(d));
        mount_point(&dst, false)?;
        mount(Some(d), &dst, None, libc::MS_BIND, None)?;
    }
    // Make sure the working directory exists inside (it may be outside every grant); in the
    // agent's home without following a link the agent left there.
    match in_home(cfg, &cfg.cwd) {
        Some(home) => {
            let _ = place_in_home(
                &root.join(home.strip_prefix("/").unwrap_or(home)),
                cfg.cwd.strip_prefix(home).unwrap_or(&cfg.cwd),
                true,
            );
        }
        None => {
            let _ =
                std::fs::create_dir_all(root.join(cfg.cwd.strip_prefix("/").unwrap_or(&cfg.cwd)));
        }
    }
    // Pivot: the staging directory becomes /, the old root goes away entirely.
    let root_c = cstr(root)?;
    // SAFETY: valid C strings; pivot_root(".", ".") stacks the old root under the new one,
    // which the detach-unmount then removes.
    unsafe {
        if libc::chdir(root_c.as_ptr()) != 0 {
            return Err(os_err("chdir to the new root".into()));
        }
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
            return Err(os_err("pivot_root".into()));
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(os_err("unmount the old root".into()));
        }
        libc::chdir(c"/".as_ptr());
    }
    // The root itself read-only (done above when the kernel could do it at once): a write
    // outside /tmp and the grants fails (EROFS) instead of landing in a throwaway layer.
    if !whole {
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        )?;
    }
    let _ = OsStr::new("");
    Ok(())
}

/// Reap every child (we are PID 1); return when `main` exits, with its status.
fn reap_until(main: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return 125;
        }
        if pid == main {
            return decode(status);
        }
    }
}

fn decode(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}

static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    // Positive: a process; negative: a process group (PID 1 signals the agent's whole group).
    let pid = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if pid != 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Forward the signals a terminal or a supervisor sends to `CHILD` (a pid, or a process group
/// when negative).
fn install_forwarding() {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: installing a handler that only calls kill.
        unsafe {
            libc::signal(sig, forward as *const () as libc::sighandler_t);
        }
    }
}

/// Wait for PID 1, passing on the signals a terminal or a supervisor sends.
fn wait_forwarding(pid1: libc::pid_t) -> i32 {
    CHILD.store(pid1, std::sync::atomic::Ordering::Relaxed);
    install_forwarding();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our child.
        let r = unsafe { libc::waitpid(pid1, &mut status, 0) };
        if r == pid1 {
            return decode(status);
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 125;
        }
    }
}

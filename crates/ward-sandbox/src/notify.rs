//! Denied system calls, seen by the supervisor: the agent's seccomp filter sends each denial to
//! a listener descriptor (see [`crate::seccomp`]), which the agent passes to the supervisor over
//! a socket before it `exec`s. The supervisor answers `EPERM` and reports the attempt.
//!
//! The agent side ([`send_fd`]) runs between `fork` and `exec`: no allocation.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One denied call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `mount`, `clone(CLONE_NEWUSER)`, `ioctl(TIOCSTI)`, ... (a small fixed set of names).
    pub call: String,
    /// The first three arguments, in hex.
    pub args: String,
    /// The caller, as a pid of the supervisor's namespace.
    pub pid: u32,
}

/// Send `fd` over the unix socket `sock` (agent side; async-signal-safe: `ward_sys::send_fds`
/// allocates nothing for one descriptor). Returns 0 or -1.
///
/// # Safety
/// `sock` and `fd` must be open descriptors.
pub unsafe fn send_fd(sock: RawFd, fd: RawFd) -> i32 {
    match ward_sys::send_fds(BorrowedFd::borrow_raw(sock), &[BorrowedFd::borrow_raw(fd)]) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Wait for one descriptor on `sock` (supervisor side; close-on-exec). `Ok(None)` when the
/// other end closed without sending one (the agent never started).
pub fn recv_fd(sock: &OwnedFd) -> std::io::Result<Option<OwnedFd>> {
    match ward_sys::recv_fds(sock.as_fd())? {
        None => Ok(None),
        Some(fds) => fds.into_iter().next().map(Some).ok_or_else(|| {
            std::io::Error::other("the sandbox sent a message without a descriptor")
        }),
    }
}

/// Answer every notification on `listener` with `EPERM` and report it to `on_denial`, until no
/// process uses the filter any more, or `stop` is set and nothing is pending. An error means
/// the listener failed while the session may still run: the caller should end the session
/// (its denied calls fail with `ENOSYS` once the listener is closed, but go unrecorded).
pub fn serve(
    listener: &OwnedFd,
    stop: &AtomicBool,
    unix_denied: &dyn Fn(&std::path::Path) -> bool,
    exec: &mut dyn FnMut(ExecCall, Responder),
    mut on_denial: impl FnMut(Denial),
) -> std::io::Result<()> {
    let fd = listener.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            continue;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: every process under the filter is gone.
            return Ok(());
        }
        // SAFETY: the kernel requires a zeroed struct and fills it.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl writes one seccomp_notif.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            // ENOENT: the caller died before we read it; anything else: try again later.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: -libc::EPERM,
            flags: 0,
        };
        let mut denial = None;
        let nr = req.data.nr as i64;
        if nr == libc::SYS_execve || nr == libc::SYS_execveat {
            let r = Responder {
                listener: fd,
                id: req.id,
                sent: false,
            };
            match exec_call(fd, &req) {
                Ok(call) => exec(call, r),
                // Under exec rules nothing runs undecided: refused, and said why.
                Err(why) => {
                    r.send(false);
                    on_denial(Denial {
                        call: "execve (undecidable)".into(),
                        args: why,
                        pid: req.pid,
                    });
                }
            }
            continue;
        }
        if nr == libc::SYS_connect {
            match connect_target(fd, &req) {
                Target::Net(to) => {
                    resp.error = -libc::ENETUNREACH;
                    denial = Some(Denial {
                        call: "connect".into(),
                        args: to.to_string(),
                        pid: req.pid,
                    });
                }
                Target::Unix(paths) if paths.iter().any(|p| unix_denied(p)) => {
                    resp.error = -libc::EACCES;
                    denial = Some(Denial {
                        call: "connect(unix socket in a grant)".into(),
                        args: paths
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" -> "),
                        pid: req.pid,
                    });
                }
                Target::Unix(_) | Target::Continue => {
                    resp.error = 0;
                    resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
                }
            }
        }
        // SAFETY: the ioctl reads one seccomp_notif_resp. A failure means the caller is gone.
        unsafe {
            libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp);
        }
        if resp.flags != 0 {
            continue;
        }
        let d = denial.unwrap_or_else(|| {
            let (call, args) = crate::seccomp::describe(req.data.nr as i64, &req.data.args);
            Denial {
                call,
                args,
                pid: req.pid,
            }
        });
        on_denial(d);
    }
}

/// An exec held for the supervisor's decision.
#[derive(Debug, Clone)]
pub struct ExecCall {
    /// The caller, as a pid of the supervisor's namespace.
    pub pid: u32,
    /// The program as invoked, made absolute (working directory or `execveat`'s directory
    /// joined) and normalized lexically.
    pub path: std::path::PathBuf,
    /// Where it really is in the caller's view.
    pub real: Program,
    /// The arguments as bytes, bounded (8,192 of at most 128 KiB, 1 MiB in all).
    pub argv: Vec<Vec<u8>>,
    /// More arguments than that: the command line is incomplete.
    pub truncated: bool,
    /// The caller's working directory (to find the programs a shell string names).
    pub cwd: std::path::PathBuf,
}

impl ExecCall {
    /// The caller's `PATH` (read when a shell string names a program without a slash).
    pub fn path_env(&self) -> Option<String> {
        use std::io::Read;
        let mut env = Vec::new();
        std::fs::File::open(format!("/proc/{}/environ", self.pid))
            .ok()?
            .take(256 << 10)
            .read_to_end(&mut env)
            .ok()?;
        Some(env).and_then(|env| {
            env.split(|&b| b == 0)
                .find_map(|kv| kv.strip_prefix(b"PATH="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    }
}

/// The answer to one held exec; may be sent from another thread. Dropped unanswered, it
/// refuses the exec (`EACCES`).
pub struct Responder {
    listener: RawFd,
    id: u64,
    sent: bool,
}

impl Responder {
    /// Whether the exec is still waiting (its process may have been killed meanwhile).
    pub fn is_live(&self) -> bool {
        let mut id = self.id;
        // SAFETY: the ioctl reads one u64.
        unsafe { libc::ioctl(self.listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
    }

    /// Let the exec go on (`true`) or fail it with `EACCES`.
    pub fn send(mut self, allow: bool) {
        self.answer(allow);
    }

    fn answer(&mut self, allow: bool) {
        if std::mem::replace(&mut self.sent, true) {
            return;
        }
        let mut resp = libc::seccomp_notif_resp {
            id: self.id,
            val: 0,
            error: if allow { 0 } else { -libc::EACCES },
            flags: if allow {
                libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
            } else {
                0
            },
        };
        // SAFETY: the ioctl reads one seccomp_notif_resp; a failure means the caller is gone.
        unsafe {
            libc::ioctl(self.listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.answer(false);
    }
}

/// Bytes of `pid`'s memory at `addr`, up to `len` (fewer at the end of its mapping).
fn read_mem(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = ward_sys::read_process(pid, addr, &mut buf).ok()?;
    if n == 0 {
        return None;
    }
    buf.truncate(n);
    Some(buf)
}

/// A NUL-terminated string of `pid`'s memory at `addr`, read a page at a time (a string that
/// ends just before an unmapped page reads whole), at most `max` bytes.
fn read_cstr(pid: u32, addr: u64, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let to_page = 4096 - (at % 4096) as usize;
        let chunk = read_mem(pid, at, to_page.min(max - out.len()))?;
        if let Some(end) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Some(out);
        }
        at += chunk.len() as u64;
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

/// Arguments read per exec, and bytes per argument and in all (the kernel takes at most
/// 2 MiB for arguments and environment together); past these the command line is incomplete.
const MAX_ARGS: usize = 8192;
const MAX_ARG: usize = 128 * 1024;
const MAX_ARGV: usize = 1 << 20;

/// Where a held exec's program is, as far as Ward can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// It exists: where it really is in the caller's view, links followed inside its root.
    Found(std::path::PathBuf),
    /// Nothing there (ENOENT, ENOTDIR): the kernel fails the exec itself.
    Missing,
    /// Ward cannot name it (a memfd, a deleted file, a path it cannot resolve): under exec
    /// rules such an exec is refused, never let through undecided.
    Unnamed(String),
}

fn exec_call(listener: RawFd, req: &libc::seccomp_notif) -> Result<ExecCall, String> {
    use std::os::unix::ffi::OsStrExt;
    let pid = req.pid;
    let a = &req.data.args;
    let execveat = req.data.nr as i64 == libc::SYS_execveat;
    let (dirfd, path_ptr, argv_ptr) = if execveat {
        (a[0] as i32, a[1], a[2])
    } else {
        (libc::AT_FDCWD, a[0], a[1])
    };
    let unreadable = || "its program and arguments could not be read".to_string();
    let raw = read_cstr(pid, path_ptr, libc::PATH_MAX as usize).ok_or_else(unreadable)?;
    let mut argv = Vec::new();
    let mut total = 0;
    let mut truncated = false;
    if argv_ptr != 0 {
        for i in 0..=MAX_ARGS as u64 {
            let p = read_mem(pid, argv_ptr + i * 8, 8).ok_or_else(unreadable)?;
            let p = u64::from_ne_bytes(p.try_into().map_err(|_| unreadable())?);
            if p == 0 {
                break;
            }
            if i as usize == MAX_ARGS || total >= MAX_ARGV {
                truncated = true;
                break;
            }
            let s = read_cstr(pid, p, MAX_ARG).ok_or_else(unreadable)?;
            truncated |= s.len() >= MAX_ARG;
            total += s.len();
            argv.push(s);
        }
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map_err(|e| format!("its working directory could not be read ({e})"))?;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(&raw));
    // An absolute path ignores the directory descriptor (as the kernel does).
    let path = if p.is_absolute() {
        lexical(p)
    } else {
        let base = if dirfd == libc::AT_FDCWD {
            cwd.clone()
        } else {
            std::fs::read_link(format!("/proc/{pid}/fd/{dirfd}"))
                .map_err(|e| format!("its directory descriptor could not be read ({e})"))?
        };
        if raw.is_empty() {
            // fexecve / execveat(AT_EMPTY_PATH): the descriptor is the program.
            base
        } else {
            lexical(&base.join(p))
        }
    };
    let real = program(pid, &path);
    // The process may have died and its pid been reused: the notification must still be live.
    let mut id = req.id;
    // SAFETY: the ioctl reads one u64.
    if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) } != 0 {
        return Err("the caller is gone".into());
    }
    Ok(ExecCall {
        pid,
        path,
        real,
        argv,
        truncated,
        cwd,
    })
}

/// Where `path` (as process `pid` sees it) leads: a descriptor's path (`/proc/self/fd/N`,
/// `/dev/fd/N`, `/proc/PID/fd/N`) is followed through the caller's descriptor table first,
/// since the resolver refuses magic links.
fn program(pid: u32, path: &std::path::Path) -> Program {
    let s = path.to_string_lossy();
    let fd = s
        .strip_prefix("/proc/self/fd/")
        .or_else(|| s.strip_prefix("/dev/fd/"))
        .or_else(|| s.strip_prefix("/proc/thread-self/fd/"))
        .or_else(|| {
            s.strip_prefix("/proc/")
                .and_then(|r| r.split_once("/fd/"))
                .filter(|(p, _)| p.bytes().all(|b| b.is_ascii_digit()))
                .map(|(_, n)| n)
        })
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let target = match fd {
        Some(n) => match std::fs::read_link(format!("/proc/{pid}/fd/{n}")) {
            Ok(t) => t,
            Err(e) => return Program::Unnamed(format!("{s}: {e}")),
        },
        None => path.to_path_buf(),
    };
    if !target.is_absolute() {
        // `memfd:x (deleted)`, `anon_inode:...`: nothing a rule can name.
        return Program::Unnamed(target.to_string_lossy().into_owned());
    }
    match resolve_in_root_err(pid, &target) {
        Ok(p) => Program::Found(p),
        Err(libc::ENOENT | libc::ENOTDIR) => Program::Missing,
        Err(e) => Program::Unnamed(format!(
            "{}: {}",
            target.display(),
            std::io::Error::from_raw_os_error(e)
        )),
    }
}

/// Is `path` (absolute, as process `pid` sees it) something that exists there? Where it
/// really is, links followed inside the process's root.
pub fn real_path(pid: u32, path: &std::path::Path) -> Option<std::path::PathBuf> {
    resolve_in_root(pid, path)
}

/// What a held `connect` aims at.
enum Target {
    /// Off the machine's loopback (an IPv4 or IPv6 address that is not loopback), or a DNS
    /// query (port 53, loopback included).
    Net(std::net::SocketAddr),
    /// A unix socket by path, absolute as the caller sees it (its working directory joined),
    /// and, when it exists, where it really is (links on the way followed inside the
    /// caller's root, as the kernel will).
    Unix(Vec<std::path::PathBuf>),
    /// Let the call continue: netlink, loopback, an abstract unix address (Landlock scopes
    /// those), or a target Ward cannot read, which the kernel then judges: the namespace has
    /// no route out, so a racing agent that changes the address after this read still gets
    /// nowhere, only unrecorded.
    Continue,
}

/// Where `path` (absolute, as process `pid` sees it) really is: opened beneath that process's
/// root with links followed the way the kernel follows them for it (`RESOLVE_IN_ROOT`),
/// named by the descriptor's path as the supervisor sees it. `None` when it does not resolve.
fn resolve_in_root(pid: u32, path: &std::path::Path) -> Option<std::path::PathBuf> {
    resolve_in_root_err(pid, path).ok()
}

/// [`resolve_in_root`] with the errno of a failure.
fn resolve_in_root_err(pid: u32, path: &std::path::Path) -> Result<std::path::PathBuf, i32> {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let root = std::ffi::CString::new(format!("/proc/{pid}/root")).map_err(|_| libc::EINVAL)?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = std::ffi::CString::new(if rel.as_os_str().is_empty() {
        b".".to_vec()
    } else {
        rel.as_os_str().as_bytes().to_vec()
    })
    .map_err(|_| libc::EINVAL)?;
    // SAFETY: open of a valid C string; owned at once.
    let rfd = unsafe {
        libc::open(
            root.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if rfd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: just opened.
    let rfd = unsafe { OwnedFd::from_raw_fd(rfd) };
    let fd = ward_sys::openat2(
        rfd.as_fd(),
        &rel,
        libc::O_PATH,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    ward_sys::fd_path(fd.as_fd()).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// `path` with `.` and `..` resolved lexically (`..` at the root stays at the root).
fn lexical(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn connect_target(listener: RawFd, req: &libc::seccomp_notif) -> Target {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let len = (req.data.args[2] as usize).min(128);
    if len < 2 {
        return Target::Continue;
    }
    let mut buf = [0u8; 128];
    let n = ward_sys::read_process(req.pid, req.data.args[1], &mut buf[..len]).unwrap_or(0);
    if n < 2 {
        return Target::Continue;
    }
    let family = u16::from_ne_bytes([buf[0], buf[1]]) as i32;
    // A unix socket by path: resolved against the caller's working directory (read before the
    // notification is checked as live, so the pid is still the caller's).
    let unix = (family == libc::AF_UNIX && n > 2 && buf[2] != 0).then(|| {
        use std::os::unix::ffi::OsStrExt;
        let raw = &buf[2..n];
        let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(raw));
        let abs = if p.is_absolute() {
            lexical(p)
        } else {
            let cwd = std::fs::read_link(format!("/proc/{}/cwd", req.pid))
                .unwrap_or_else(|_| std::path::PathBuf::from("/"));
            lexical(&cwd.join(p))
        };
        let mut paths = vec![abs.clone()];
        paths.extend(resolve_in_root(req.pid, &abs));
        paths
    });
    // The process may have died and its pid been reused: the notification must still be live.
    let mut id = req.id;
    // SAFETY: the ioctl reads one u64.
    if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) } != 0 {
        return Target::Continue;
    }
    if let Some(p) = unix {
        return Target::Unix(p);
    }
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let ip = match family {
        libc::AF_INET if n >= 8 => IpAddr::V4(Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7])),
        libc::AF_INET6 if n >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&buf[8..24]);
            let v6 = Ipv6Addr::from(a);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return Target::Continue,
    };
    // DNS is refused and recorded even on loopback, but for the sandbox's own resolver at
    // 127.0.0.1:53 (which answers only for the names the manifest allows, and records the
    // rest): a query is how a name (or a secret spelled as one) would leave.
    let resolver = ip == IpAddr::V4(Ipv4Addr::LOCALHOST) && port == 53;
    if (ip.is_loopback() || ip.is_unspecified()) && (port != 53 || resolver) {
        return Target::Continue;
    }
    Target::Net(SocketAddr::new(ip, port))
}

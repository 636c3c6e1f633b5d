//! The raw system calls several of Ward's crates share, each wrapped once, with its SAFETY
//! note, behind a safe signature: `openat2` (beneath a folder, or in a process's root), pipes
//! and socket pairs with close-on-exec as asked, descriptors passed over a socket, reading
//! another process's memory, and the path a descriptor names. Start from [`openat2`].
//!
//! Not for: code that runs between `fork` and `exec` (these allocate); that code keeps its
//! own async-signal-safe calls.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// `openat2(dir, path, {flags | O_CLOEXEC, resolve})`: `resolve` takes `RESOLVE_*` flags
/// (`RESOLVE_BENEATH`, `RESOLVE_IN_ROOT`, `RESOLVE_NO_SYMLINKS`, ...).
pub fn openat2(dir: BorrowedFd<'_>, path: &CStr, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is its documented initial state.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: a valid directory descriptor, a NUL-terminated path and a pointer to `how` with
    // its size, as openat2(2) expects; the descriptor returned is owned at once.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned, owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A pipe `(read, write)`; `flags` as pipe2(2) takes them (`O_CLOEXEC`, `O_NONBLOCK`).
pub fn pipe(flags: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two descriptors the kernel just returned, owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

/// A connected pair of `AF_UNIX` `SOCK_SEQPACKET` sockets, both close-on-exec.
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_SEQPACKET)
}

/// A connected pair of `AF_UNIX` `SOCK_STREAM` sockets, both close-on-exec: for a message of
/// any length, read to end of file.
pub fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_STREAM)
}

fn unix_pair(kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    // SAFETY: socketpair fills the two-element array.
    let r =
        unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, p.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two descriptors the kernel just returned, owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

/// The most descriptors [`send_fds`] sends in one message.
pub const MAX_FDS: usize = 8;

/// Room for `MAX_FDS` descriptors in a control message, aligned for `cmsghdr`.
#[repr(C)]
union FdsCmsg {
    buf: [u8; 96],
    _align: libc::cmsghdr,
}

/// Send one byte carrying `fds` (at most [`MAX_FDS`]) over the unix socket `sock`.
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let mut byte = [b'f'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = FdsCmsg { buf: [0; 96] };
    let size = std::mem::size_of_val(fds) as u32;
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and
    // CMSG_FIRSTHDR/CMSG_DATA stay inside `cbuf`, which holds MAX_FDS descriptors.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = cbuf.buf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(io::Error::other("no room for the descriptors"));
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as usize;
            let data = libc::CMSG_DATA(cmsg) as *mut i32;
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receive the descriptors [`send_fds`] sent (close-on-exec). `None`: the other end closed
/// without sending.
pub fn recv_fds(sock: BorrowedFd<'_>) -> io::Result<Option<Vec<OwnedFd>>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = FdsCmsg { buf: [0; 96] };
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: the union's byte view covers the whole buffer.
    msg.msg_control = unsafe { cbuf.buf.as_mut_ptr() }.cast();
    msg.msg_controllen = 96;
    let n = loop {
        // SAFETY: see above; MSG_CMSG_CLOEXEC keeps the descriptors from leaking into children.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let mut out = Vec::new();
    // SAFETY: the kernel filled msg; CMSG_FIRSTHDR/CMSG_NXTHDR/CMSG_DATA walk inside
    // msg_control, and each SCM_RIGHTS entry holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors
    // now owned by this process (taken before any error, so none leaks).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(cmsg) as *const i32;
                for i in 0..n {
                    out.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptors were cut off in transit"));
    }
    Ok(Some(out))
}

/// Set or clear close-on-exec on `fd` (cleared: a child started by exec, or a forked launcher
/// that keeps it, gets it at the same number).
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_SETFD on a descriptor we borrow.
    let r = unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFD,
            if on { libc::FD_CLOEXEC } else { 0 },
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read `buf.len()` bytes of process `pid`'s memory at `addr` (fewer at the end of a
/// mapping); the process must be one we may trace (same user, not made undumpable).
pub fn read_process(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: writes at most `buf.len()` bytes into `buf`; the remote side is only read, and
    // a bad remote address is an error (EFAULT), not undefined behaviour here.
    let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The path `fd` names, as this process sees it (`/proc/self/fd/N`).
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_cross_a_socket() {
        let (a, b) = socket_pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let f = std::fs::File::open(dir.path().join("f")).unwrap();
        let g = std::fs::File::open(dir.path()).unwrap();
        send_fds(a.as_fd(), &[f.as_fd(), g.as_fd()]).unwrap();
        let got = recv_fds(b.as_fd()).unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(fd_path(got[0].as_fd()).unwrap(), dir.path().join("f"));
        assert_eq!(fd_path(got[1].as_fd()).unwrap(), dir.path());
        send_fds(a.as_fd(), &[]).unwrap();
        assert!(recv_fds(b.as_fd()).unwrap().unwrap().is_empty());
        drop(a);
        assert!(recv_fds(b.as_fd()).unwrap().is_none());
        let nine: Vec<_> = (0..9).map(|_| f.as_fd()).collect();
        assert!(send_fds(b.as_fd(), &nine).is_err());
        // A stream carries more than a socket buffer holds, to end of file.
        let (c, d) = stream_pair().unwrap();
        let w = std::thread::spawn(move || {
            let mut c = std::fs::File::from(c);
            std::io::Write::write_all(&mut c, &[7u8; 300_000]).unwrap();
        });
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(d), &mut got).unwrap();
        w.join().unwrap();
        assert_eq!(got.len(), 300_000);
        assert!(got.iter().all(|&b| b == 7));
    }

    #[test]
    fn openat2_stays_beneath_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("out")).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let f = openat2(d.as_fd(), c"f", libc::O_RDONLY, libc::RESOLVE_BENEATH).unwrap();
        assert_eq!(fd_path(f.as_fd()).unwrap(), dir.path().join("f"));
        let e = openat2(d.as_fd(), c"out", libc::O_RDONLY, libc::RESOLVE_BENEATH).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
        let e = openat2(d.as_fd(), c"../x", libc::O_RDONLY, libc::RESOLVE_BENEATH).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EXDEV));
    }

    #[test]
    fn pipes_pairs_and_process_memory() {
        let (r, w) = pipe(libc::O_CLOEXEC).unwrap();
        set_cloexec(r.as_fd(), false).unwrap();
        let flags = |fd: &OwnedFd| {
            // SAFETY: F_GETFD on our own descriptor.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) }
        };
        assert_eq!(flags(&r) & libc::FD_CLOEXEC, 0);
        drop(w);
        let (a, _b) = socket_pair().unwrap();
        assert_ne!(flags(&a) & libc::FD_CLOEXEC, 0);
        let secret = *b"ward memory";
        let mut buf = [0u8; 11];
        let n = read_process(std::process::id(), secret.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!((n, &buf), (11, &secret));
        assert!(read_process(std::process::id(), 8, &mut buf).is_err());
    }
}

//! The raw system calls several of Ward's crates share, each wrapped once, with its SAFETY
//! note, behind a safe signature: `openat2` (beneath a folder, or in a process's root), pipes
//! and socket pairs with close-on-exec as asked, reading another process's memory, and the
//! path a descriptor names. Start from [`openat2`].
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
    let mut p = [0i32; 2];
    // SAFETY: socketpair fills the two-element array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            p.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two descriptors the kernel just returned, owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
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

//! Moving tunnel bytes through the kernel (socket -> pipe -> socket with `splice`), the
//! upload gate checked as they pass.

use super::*;

impl SplicePipe {
    pub(super) fn new() -> std::io::Result<SplicePipe> {
        let mut p = [0i32; 2];
        // SAFETY: pipe2 fills the array.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The default size (64 KiB) to start: a bigger pipe counts against the user's pipe
        // quota (`pipe-user-pages-soft`), which the agent's and the user's own pipes share.
        // Only a tunnel that keeps filling it (a bulk transfer) grows it.
        Ok(SplicePipe(p[0], p[1], 64 << 10))
    }

    /// Grow to [`SPLICE_MAX`] (best effort: the quota may say no).
    pub(super) fn grow(&mut self) {
        // SAFETY: fcntl on our own pipe.
        let r = unsafe { libc::fcntl(self.1, libc::F_SETPIPE_SZ, SPLICE_MAX as i32) };
        if r > 0 {
            self.2 = r as usize;
        }
    }
}

impl Drop for SplicePipe {
    fn drop(&mut self) {
        // SAFETY: our own two descriptors.
        unsafe {
            libc::close(self.0);
            libc::close(self.1);
        }
    }
}

pub(super) fn splice(from: i32, to: i32, len: usize) -> std::io::Result<usize> {
    // SAFETY: splice between descriptors we hold; no user memory involved.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Move what `src` receives to `dst` through the kernel (socket -> pipe -> socket), asking
/// `gate` before each chunk leaves; `Ok(total)` at end of stream.
///
/// Both sides move at once: the pipe takes more from `src` while `dst` cannot take what it
/// holds yet, so neither the sender nor the receiver waits on the other's turn.
pub(super) async fn splice_one(
    src: &TcpStream,
    dst: &TcpStream,
    mut gate: impl FnMut(u64) -> bool,
    touch: &(dyn Fn() + Sync),
    moved: &AtomicU64,
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let mut pipe = SplicePipe::new()?;
    let mut full = 0u32;
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut total = 0u64;
    // Bytes in the pipe, and whether `src` has ended.
    let mut held = 0usize;
    let mut eof = false;
    // The pipe refused more (it counts pages, not bytes): wait for `dst` before reading again.
    let mut pipe_full = false;
    loop {
        let mut progress = false;
        if !eof && !pipe_full && held < pipe.2 {
            match src.try_io(Interest::READABLE, || {
                fill(sfd, pipe.1, pipe.2 - held, held)
            }) {
                Ok(Some(0)) => eof = true,
                Ok(Some(n)) => {
                    touch();
                    if !gate(n as u64) {
                        return Err(std::io::Error::other(GATE_CLOSED));
                    }
                    held += n;
                    progress = true;
                    if held == pipe.2 {
                        full = full.saturating_add(1);
                    }
                }
                Ok(None) => {
                    pipe_full = true;
                    full = full.saturating_add(1);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if held > 0 {
            // The pipe holds data, so a refusal here is `dst`'s (its buffer is full).
            match dst.try_io(Interest::WRITABLE, || splice(pipe.0, dfd, held)) {
                Ok(m) => {
                    held -= m;
                    total += m as u64;
                    moved.fetch_add(m as u64, Ordering::Relaxed);
                    pipe_full = false;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        // A tunnel that keeps filling its pipe is a bulk transfer: a bigger pipe, once.
        if full == 4 {
            full += 1;
            if pipe.2 < SPLICE_MAX {
                pipe.grow();
            }
        }
        if eof && held == 0 {
            // SAFETY: half-close the other side's socket, as a read of 0 means.
            unsafe {
                libc::shutdown(dfd, libc::SHUT_WR);
            }
            return Ok(total);
        }
        // Keep other tasks on this worker served during a long transfer (and never spin on
        // readiness that stays set).
        tokio::task::coop::consume_budget().await;
        if progress {
            continue;
        }
        let read = !eof && !pipe_full && held < pipe.2;
        match (read, held > 0) {
            (true, true) => {
                tokio::select! {
                    r = src.readable() => r?,
                    r = dst.writable() => r?,
                }
            }
            (true, false) => src.readable().await?,
            (false, _) => dst.writable().await?,
        }
    }
}

/// Move up to `room` bytes from the socket `sfd` into a pipe that holds `held` bytes:
/// `Ok(Some(n))` (0 at end of stream), `Ok(None)` when the pipe is full while the socket still
/// has data, `WouldBlock` only when the socket is empty.
///
/// A full pipe (it counts pages, not bytes) refuses with the same EAGAIN as an empty socket;
/// only an empty socket may clear the socket's readiness, or its next data would never wake
/// the tunnel.
pub(super) fn fill(
    sfd: i32,
    pipe_in: i32,
    room: usize,
    held: usize,
) -> std::io::Result<Option<usize>> {
    match splice(sfd, pipe_in, room) {
        // The pipe may be full: the socket says what it holds. An end of stream behind a full
        // pipe is an end of stream (the pipe still drains): reported as a WouldBlock it would
        // never clear (a closed socket stays readable) and the tunnel would spin.
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && held > 0 => match peek(sfd) {
            Ok(0) => Ok(Some(0)),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        },
        r => r.map(Some),
    }
}

/// Whether a socket has data (`Ok(1)`), has ended (`Ok(0)`), or neither (`WouldBlock`),
/// without taking anything.
pub(super) fn peek(fd: i32) -> std::io::Result<usize> {
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a live byte.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// [`pipe`] for two plain sockets, with `splice`.
pub(super) async fn splice_pipe(
    client: &TcpStream,
    up: &TcpStream,
    already_up: u64,
    gate: impl FnMut(u64) -> bool,
) -> Result<(u64, u64), PipeError> {
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(started.elapsed().as_secs(), Ordering::Relaxed);
    let sent = AtomicU64::new(already_up);
    let recv = AtomicU64::new(0);
    let upward = splice_one(client, up, gate, &touch, &sent);
    let downward = splice_one(up, client, |_| true, &touch, &recv);
    let watchdog = idle_watchdog(started, &last);
    let both = async { tokio::try_join!(upward, downward).map(|_| ()) };
    let r = tokio::select! {
        r = both => r,
        r = watchdog => r,
    };
    let (u, d) = (sent.load(Ordering::Relaxed), recv.load(Ordering::Relaxed));
    match r {
        Ok(()) => Ok((u, d)),
        Err(e) if e.to_string() == GATE_CLOSED => Err(PipeError::Limit(u, d)),
        Err(e) => Err(PipeError::Io(u, d, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// A connected loopback pair: (sender, receiver), the receiver non-blocking.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Bytes waiting in a socket's receive queue.
    fn unread(fd: i32) -> i32 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
        n
    }

    /// Fill a pipe to its last page with plain writes.
    fn stuff(pipe: &SplicePipe) {
        let chunk = [1u8; 4096];
        // SAFETY: writes to our own non-blocking pipe from a live buffer.
        while unsafe { libc::write(pipe.1, chunk.as_ptr().cast(), chunk.len()) } > 0 {}
    }

    fn drain(pipe: &SplicePipe) {
        let mut sink = vec![0u8; 1 << 20];
        // SAFETY: reads from our own non-blocking pipe into a live buffer.
        while unsafe { libc::read(pipe.0, sink.as_mut_ptr().cast(), sink.len()) } > 0 {}
    }

    fn wait_unread(fd: i32, n: i32) {
        for _ in 0..500 {
            if unread(fd) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the data never arrived");
    }

    #[test]
    fn a_full_pipe_is_told_apart_from_an_empty_socket() {
        let (mut tx, rx) = pair();
        let fd = rx.as_raw_fd();
        let pipe = SplicePipe::new().unwrap();
        // An empty socket: WouldBlock, whatever the pipe holds.
        let e = fill(fd, pipe.1, 4096, 0).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let e = fill(fd, pipe.1, 4096, 100).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        // Data arrives and moves into the pipe.
        tx.write_all(&[7u8; 1000]).unwrap();
        wait_unread(fd, 1000);
        assert_eq!(fill(fd, pipe.1, 64 << 10, 0).unwrap(), Some(1000));
        // Fill the pipe to the last page, then send more to the socket.
        stuff(&pipe);
        tx.write_all(&[8u8; 500]).unwrap();
        wait_unread(fd, 500);
        // The pipe is full, the socket is not empty: not WouldBlock (which would clear the
        // socket's readiness and strand its data).
        assert_eq!(fill(fd, pipe.1, 4096, 1000).unwrap(), None);
        // Drain the pipe: the data moves again.
        drain(&pipe);
        assert_eq!(fill(fd, pipe.1, 4096, 0).unwrap(), Some(500));
        // An end of stream behind a full pipe is an end of stream (a closed socket stays
        // readable: a WouldBlock here would make the tunnel spin).
        stuff(&pipe);
        drop(tx);
        for _ in 0..500 {
            if peek(fd).ok() == Some(0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(fill(fd, pipe.1, 4096, 1000).unwrap(), Some(0));
        // And with an empty pipe.
        drain(&pipe);
        assert_eq!(fill(fd, pipe.1, 4096, 0).unwrap(), Some(0));
    }
}

//! The agent's own terminal. On a terminal, `ward run` gives the agent a pseudo-terminal of its
//! own and relays it to the person's: keystrokes in, the agent's screen out through the
//! [`Filter`]. The agent never holds a descriptor of the person's terminal, so it cannot type
//! into it, silence it, or answer for the person; Ward's questions are drawn only while the
//! relay is paused ([`Relay::pause`]), and read from the person's terminal directly.
//!
//! One thread moves the bytes (poll over the terminal, the pty's master and a wake pipe). The
//! window size follows the person's (SIGWINCH). Keys go through untouched, so Ctrl-C, Ctrl-Z
//! and job control are the agent's terminal's, as with `script` or `ssh -t`: a shell inside
//! stops and resumes its jobs. The person's terminal settings and modes are put back when
//! the relay ends, whatever the agent did.

use crate::filter::{Dropped, Filter, Modes};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Give the agent's terminal (through its master) the window size and settings of the
/// person's terminal `like` (erase key, UTF-8 input, output processing), as it would have had
/// on the person's own. Termios and window-size requests on a pty master reach its slave.
pub fn adopt(master: RawFd, like: RawFd) {
    copy_size(like, master);
    // SAFETY: tcgetattr/tcsetattr with a termios on the stack.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(like, &mut t) == 0 {
            libc::tcsetattr(master, libc::TCSANOW, &t);
        }
    }
}

/// Copy the window size of terminal `from` to the pty master `to` (the kernel tells the
/// agent's foreground group with SIGWINCH when it changed).
fn copy_size(from: RawFd, to: RawFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The person's terminal: where input comes from and output goes, and its settings before
/// the relay made it raw.
struct Person {
    input: Option<RawFd>,
    output: RawFd,
    saved: Option<libc::termios>,
}

impl Drop for Person {
    fn drop(&mut self) {
        // However the relay ends (a thread that never started included), the person's
        // settings come back.
        self.restore();
    }
}

impl Person {
    fn raw(&self) {
        if let (Some(fd), Some(t)) = (self.input, self.saved) {
            let mut r = t;
            // SAFETY: cfmakeraw on a copy, tcsetattr on a terminal descriptor.
            unsafe {
                libc::cfmakeraw(&mut r);
                libc::tcsetattr(fd, libc::TCSADRAIN, &r);
            }
        }
    }

    fn restore(&self) {
        if let (Some(fd), Some(t)) = (self.input, self.saved) {
            // SAFETY: tcsetattr with the settings read at the start.
            unsafe {
                libc::tcsetattr(fd, libc::TCSADRAIN, &t);
            }
        }
    }
}

/// Write all of `buf` to `fd` (blocking, retrying on EINTR/EAGAIN).
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writing from a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = last_err();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    wait_fd(fd, libc::POLLOUT, 100);
                    continue;
                }
                _ => return Err(e),
            }
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

fn wait_fd(fd: RawFd, events: libc::c_short, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

#[derive(Default)]
struct Ctl {
    /// Questions waiting for the relay to stop moving bytes.
    pause_requests: usize,
    /// The relay thread has stopped and waits.
    paused: bool,
    /// The relay has ended (the agent's side closed).
    done: bool,
    /// The agent's modes when the relay paused.
    modes: Modes,
}

struct Shared {
    ctl: Mutex<Ctl>,
    cv: Condvar,
    wake: OwnedFd,
    /// Owned here so that it outlives every question that may still resize it.
    master: OwnedFd,
    person_in: Option<RawFd>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        // SAFETY: a one-byte write to our own pipe (non-blocking; a full pipe is awake).
        unsafe {
            libc::write(self.wake.as_raw_fd(), b"w".as_ptr().cast(), 1);
        }
    }
}

/// Counts for the session's end record.
#[derive(Debug, Default, Clone)]
pub struct RelayStats {
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub dropped: Vec<Dropped>,
}

/// A running relay.
pub struct Relay {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<RelayStats>>,
    stop: Arc<AtomicBool>,
}

/// A handle questions use to pause the relay; cheap to clone.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
}

/// The relay is paused while this lives: the person's terminal is Ward's.
pub struct Paused<'a> {
    shared: &'a Shared,
    pub modes: Modes,
    /// The relay had ended already (the agent is gone): nothing to pause or restore.
    pub ended: bool,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut c = self.shared.lock();
        c.pause_requests -= 1;
        self.shared.cv.notify_all();
    }
}

impl RelayHandle {
    /// Stop the relay at a boundary (nothing of the agent's half-written) and wait until it
    /// has; the relay goes on when the returned guard is dropped.
    pub fn pause(&self) -> Paused<'_> {
        let mut c = self.shared.lock();
        if c.done {
            return Paused {
                shared: &self.shared,
                modes: Modes::default(),
                ended: true,
            };
        }
        c.pause_requests += 1;
        self.shared.wake();
        while !c.paused && !c.done {
            c = self.shared.cv.wait(c).unwrap_or_else(|e| e.into_inner());
        }
        let ended = c.done && !c.paused;
        if ended {
            c.pause_requests -= 1;
        }
        Paused {
            shared: &self.shared,
            modes: c.modes.clone(),
            ended,
        }
    }

    /// The person's terminal (input side), when there is one.
    pub fn person_in(&self) -> Option<RawFd> {
        self.shared.person_in
    }

    /// Make a full-screen agent draw its screen again: its window is made one row shorter,
    /// then put back (each change is a SIGWINCH to its foreground group).
    pub fn repaint(&self) {
        let m = self.shared.master.as_raw_fd();
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ on the pty master with a valid winsize.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(m, libc::TIOCGWINSZ, &mut ws) != 0 || ws.ws_row < 2 {
                return;
            }
            let mut small = ws;
            small.ws_row -= 1;
            libc::ioctl(m, libc::TIOCSWINSZ, &small);
            std::thread::sleep(Duration::from_millis(30));
            libc::ioctl(m, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The wake pipe's write end for the SIGWINCH and SIGCONT handler (-1: none).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static RESIZED: AtomicBool = AtomicBool::new(false);
static CONTINUED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGCONT {
        CONTINUED.store(true, Ordering::Relaxed);
    } else {
        RESIZED.store(true, Ordering::Relaxed);
    }
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; errno is saved and restored.
        unsafe {
            let e = *libc::__errno_location();
            libc::write(fd, b"s".as_ptr().cast(), 1);
            *libc::__errno_location() = e;
        }
    }
}

/// Where the relay reads and writes the person's terminal: input from stdin when it is a
/// terminal, output to stdout or stderr, whichever is one (else `/dev/tty`).
pub struct Ends {
    pub input: Option<RawFd>,
    pub output: RawFd,
}

/// A callback for each kind of output dropped, the first time it is seen.
pub type OnDrop = Box<dyn FnMut(Dropped) + Send>;

impl Relay {
    /// Start relaying between the person's terminal (`ends`) and the pty's master. Call after
    /// the agent's side was handed the slave; installs the SIGWINCH and SIGCONT handlers.
    pub fn start(master: OwnedFd, ends: Ends, on_drop: OnDrop) -> std::io::Result<Relay> {
        let (wake_r, wake_w) = ward_sys::pipe(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
        let saved = ends.input.and_then(|fd| {
            // SAFETY: tcgetattr into a zeroed termios.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                (libc::tcgetattr(fd, &mut t) == 0).then_some(t)
            }
        });
        let person = Person {
            input: ends.input,
            output: ends.output,
            saved,
        };
        person.raw();
        // SAFETY: O_NONBLOCK on the master: the relay never blocks writing keystrokes to an
        // agent that does not read them.
        unsafe {
            let fl = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(master.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        WAKE_FD.store(wake_w.as_raw_fd(), Ordering::Relaxed);
        // SAFETY: the handler only stores atomics and writes a byte.
        unsafe {
            libc::signal(libc::SIGWINCH, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGCONT, on_signal as *const () as libc::sighandler_t);
        }
        let shared = Arc::new(Shared {
            ctl: Mutex::new(Ctl::default()),
            cv: Condvar::new(),
            wake: wake_w,
            master,
            person_in: ends.input,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("ward-relay".into())
            .spawn(move || {
                let mut r = Run {
                    shared: s2,
                    wake: wake_r,
                    person,
                    filter: Filter::new(),
                    on_drop,
                    stats: RelayStats::default(),
                    to_agent: Vec::new(),
                    stop: stop2,
                };
                r.run();
                r.finish()
            })?;
        Ok(Relay {
            shared,
            thread: Some(thread),
            stop,
        })
    }

    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            shared: self.shared.clone(),
        }
    }

    /// Wait for the agent's side to close (every process holding the slave is gone), at most
    /// `grace`; then stop, put the person's terminal back, and return the counts.
    pub fn finish(mut self, grace: Duration) -> RelayStats {
        let deadline = Instant::now() + grace;
        loop {
            let c = self.shared.lock();
            // A question still open keeps the terminal as it is until it ends (each has its
            // own deadline): tearing the screen down under it would hide it while it reads.
            if c.done || (c.pause_requests == 0 && Instant::now() >= deadline) {
                break;
            }
            drop(c);
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.shared.wake();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// The relay thread's state.
struct Run {
    shared: Arc<Shared>,
    wake: OwnedFd,
    person: Person,
    filter: Filter,
    on_drop: OnDrop,
    stats: RelayStats,
    /// Keystrokes not yet taken by the agent's terminal.
    to_agent: Vec<u8>,
    stop: Arc<AtomicBool>,
}

/// Keystrokes held for an agent that does not read them; past this, input waits.
const INPUT_HOLD: usize = 64 << 10;

impl Run {
    fn run(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        let mut out = Vec::with_capacity(64 << 10);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.maybe_pause();
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let m = self.shared.master.as_raw_fd();
            let mut fds = [
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: m,
                    events: libc::POLLIN
                        | if self.to_agent.is_empty() {
                            0
                        } else {
                            libc::POLLOUT
                        },
                    revents: 0,
                },
                libc::pollfd {
                    fd: match self.person.input {
                        Some(fd) if self.to_agent.len() < INPUT_HOLD => fd,
                        _ => -1,
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: a valid array of pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
            if r < 0 {
                if last_err().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            if fds[0].revents != 0 {
                let mut b = [0u8; 64];
                // SAFETY: draining the non-blocking wake pipe into a local buffer.
                while unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) }
                    > 0
                {}
                if RESIZED.swap(false, Ordering::Relaxed) {
                    copy_size(self.person.output, m);
                    if let Some(i) = self.person.input {
                        copy_size(i, m);
                    }
                }
                if CONTINUED.swap(false, Ordering::Relaxed) {
                    self.resumed();
                }
            }
            // The agent's screen first: it may be what the person is waiting to see.
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                // SAFETY: reading into a valid buffer.
                let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    out.clear();
                    self.filter.feed(&buf[..n as usize], &mut out);
                    for k in self.filter.take_new() {
                        (self.on_drop)(k);
                    }
                    self.stats.bytes_out += n as u64;
                    if write_all(self.person.output, &out).is_err() {
                        // The person's terminal is gone: keep draining so the agent is not
                        // stuck writing; nothing more is shown.
                    }
                } else if n == 0
                    || !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
                {
                    // EIO: every holder of the slave is gone.
                    return;
                }
            }
            if fds[1].revents & libc::POLLOUT != 0 && !self.to_agent.is_empty() {
                // SAFETY: writing from a valid slice to the non-blocking master.
                let n =
                    unsafe { libc::write(m, self.to_agent.as_ptr().cast(), self.to_agent.len()) };
                if n > 0 {
                    self.to_agent.drain(..n as usize);
                }
            }
            if fds[2].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                let fd = fds[2].fd;
                // SAFETY: reading into a valid buffer.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 4096) };
                if n > 0 {
                    let keys = &buf[..n as usize];
                    self.stats.bytes_in += n as u64;
                    self.to_agent.extend_from_slice(keys);
                    // Straight on when the agent's terminal takes it (the usual case).
                    // SAFETY: writing from a valid slice to the non-blocking master.
                    let w = unsafe {
                        libc::write(m, self.to_agent.as_ptr().cast(), self.to_agent.len())
                    };
                    if w > 0 {
                        self.to_agent.drain(..w as usize);
                    }
                } else if n == 0
                    || !matches!(last_err().raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
                {
                    // The person's terminal hung up: no more input.
                    self.person.input = None;
                }
            }
        }
    }

    /// Stop at a boundary while a question is open.
    fn maybe_pause(&mut self) {
        let mut c = self.shared.lock();
        if c.pause_requests == 0 {
            return;
        }
        c.modes = self.filter.modes.clone();
        c.paused = true;
        self.shared.cv.notify_all();
        while c.pause_requests > 0 {
            c = self
                .shared
                .cv
                .wait_timeout(c, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        c.paused = false;
    }

    /// Back in the foreground after Ward's job was stopped (by a signal from outside: the
    /// shell has made the terminal cooked meanwhile): raw again, the agent's screen back.
    fn resumed(&mut self) {
        self.person.raw();
        if self.filter.modes.alt_screen {
            let _ = write_all(self.person.output, b"\x1b[?1049h");
        }
        let _ = write_all(self.person.output, self.filter.modes.restore().as_bytes());
        RelayHandle {
            shared: self.shared.clone(),
        }
        .repaint();
    }

    fn finish(mut self) -> RelayStats {
        {
            let mut c = self.shared.lock();
            c.done = true;
            self.shared.cv.notify_all();
        }
        WAKE_FD.store(-1, Ordering::Relaxed);
        // What the agent left on is turned off, the person's settings come back.
        let _ = write_all(
            self.person.output,
            end_sequence(&self.filter.modes).as_bytes(),
        );
        self.person.restore();
        self.stats.dropped = self.filter.dropped().to_vec();
        std::mem::take(&mut self.stats)
    }
}

/// What to write before Ward draws a question over the agent's screen: any sequence in
/// progress aborted, drawing unfrozen, a screen of Ward's own (the alternate screen, whose
/// leaving gives the agent's main screen back exactly; over a full-screen agent, a cleared
/// one, and the agent repaints afterwards), attributes, margins, character sets and modes
/// reset so that nothing the agent set can hide or disguise the question, the cursor shown,
/// and no mouse, paste or focus reports mixed into the answer.
pub fn question_sequence(m: &Modes) -> String {
    let mut s = String::from("\x18\x1b[?2026l");
    s.push_str(if m.alt_screen {
        "\x1b[2J\x1b[H"
    } else {
        "\x1b[?1049h\x1b[2J\x1b[H"
    });
    s.push_str("\x1b[!p\x1b[?5l\x1b[?25h\x1b(B\x0f\x1b[0m");
    for n in &m.mouse {
        s.push_str(&format!("\x1b[?{n}l"));
    }
    s.push_str("\x1b[?2004l\x1b[?1004l");
    if m.keyboard {
        // Keys as plain bytes while Ward asks: a kitty keyboard level of 0 pushed (popped
        // after), modifyOtherKeys off.
        s.push_str("\x1b[>0u\x1b[>4;0m");
    }
    s
}

/// What to write after the question: the agent's screen back (the main screen restored by
/// the terminal, or cleared for a full-screen agent to repaint), and its modes.
pub fn after_question_sequence(filter_modes: &Modes) -> String {
    let mut s = String::from(if filter_modes.alt_screen {
        "\x1b[2J\x1b[H"
    } else {
        "\x1b[?1049l"
    });
    s.push_str(&filter_modes.restore());
    if filter_modes.keyboard {
        s.push_str("\x1b[<1u");
        if let Some(k) = &filter_modes.modify_other_keys {
            s.push_str(k);
        }
    }
    s
}

/// What to write when the agent's screen is left: every mode it turned on that would outlive
/// it is turned off, attributes reset.
pub fn end_sequence(m: &Modes) -> String {
    // Any sequence in progress aborted, then a soft reset: attributes, scroll margins,
    // character sets, insert, origin and wrap modes as a shell expects (a scroll region left
    // by the agent could hide what Ward prints next, a character set garble it).
    let mut s = String::from("\x18\x1b[!p\x1b[r\x1b(B\x0f\x1b[?5l\x1b[0m");
    if m.sync_output {
        s.push_str("\x1b[?2026l");
    }
    if m.alt_screen {
        s.push_str("\x1b[?1049l");
    }
    s.push_str(&m.reset());
    if m.keyboard {
        s.push_str("\x1b[<99u\x1b[>4;0m");
    }
    s
}

//! Asking a person: the [`Consent`] trait and its channels. [`Terminal`] talks on the
//! controlling terminal (`/dev/tty`), never on the agent's stdin/stdout; [`Headless`] has
//! nobody to ask and refuses, saying why. A question that is not answered in time is refused
//! too: silence is never consent.
//!
//! On a terminal the agent runs on a pty of its own ([`relay`]), whose output passes a
//! [`filter`] on its way to the person; questions pause the relay, are drawn on a screen of
//! Ward's with the session's word ([`session_word`]), and take only keys typed after they
//! appeared.

pub mod filter;
pub mod relay;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A question with one-letter answers, e.g. `[a]pply all, [k]eep for later`.
pub struct Question<'a> {
    pub text: &'a str,
    /// (key, meaning); the first is shown as the default.
    pub choices: &'a [(char, &'a str)],
    /// What an empty line means.
    pub default: char,
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Chose(char),
    /// Nobody answered in time.
    TimedOut,
    /// There is nobody to ask (no terminal, the terminal went away), with the reason.
    Unavailable(String),
}

/// A way to reach the person in front of the machine.
pub trait Consent {
    /// Show text (a list, a diff) without asking anything.
    fn show(&mut self, text: &str);
    fn ask(&mut self, q: &Question) -> Reply;
    /// Like [`Consent::ask`], but give up as soon as `withdrawn` is set (another channel
    /// answered first): the question is taken off the screen and `Unavailable` comes back.
    /// Channels that cannot withdraw a question simply answer it.
    fn ask_until(&mut self, q: &Question, withdrawn: &AtomicBool) -> Reply {
        let _ = withdrawn;
        self.ask(q)
    }
    /// Whether colours may be used.
    fn color(&self) -> bool {
        false
    }
    /// How answers given here are recorded (`terminal`, `headless`).
    fn channel(&self) -> &'static str;
}

/// The person's terminal (`/dev/tty`). While the agent runs on a pty of its own, questions
/// pause the relay ([`relay::RelayHandle`]) and are drawn on a screen of Ward's, so the agent
/// can neither paint over them nor imitate them: every genuine question repeats the session's
/// word, shown to the person before the agent started. Only what is typed after a question
/// appeared answers it: pending input is flushed and keys in the first moments are dropped.
pub struct Terminal {
    tty: std::fs::File,
    relay: Option<relay::RelayHandle>,
    word: Option<String>,
}

/// Why a question stopped waiting when another channel answered it first.
pub const WITHDRAWN: &str = "answered on another channel";

/// Keys arriving this soon after a question is drawn were typed before it was seen.
const GUARD: Duration = Duration::from_millis(250);

impl Terminal {
    /// Open `/dev/tty`; an error when this process has no controlling terminal.
    pub fn open() -> Result<Terminal, String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map(|tty| Terminal {
                tty,
                relay: None,
                word: None,
            })
            .map_err(|e| format!("no terminal to ask on ({e})"))
    }

    /// Questions pause this relay and are drawn over the agent's screen.
    pub fn with_relay(mut self, relay: relay::RelayHandle) -> Terminal {
        self.relay = Some(relay);
        self
    }

    /// Every question repeats this word (shown to the person at the session's start).
    pub fn with_word(mut self, word: String) -> Terminal {
        self.word = Some(word);
        self
    }

    /// Write to the terminal, each newline as CR LF: the terminal may be raw (the relay's, or
    /// a question's), where a bare LF would not return the cursor.
    fn write(&self, s: &str) {
        let _ = relay::write_all(self.tty.as_raw_fd(), s.replace('\n', "\r\n").as_bytes());
    }

    /// Read keys until Enter, the deadline, the question being withdrawn, or the terminal
    /// failing.
    fn read_answer(
        &mut self,
        deadline: Instant,
        withdrawn: &AtomicBool,
    ) -> Result<Option<String>, String> {
        let fd = self.tty.as_raw_fd();
        // Keys typed before the question was seen are not an answer to it.
        let guard_end = Instant::now() + GUARD;
        while let Some(left) = guard_end.checked_duration_since(Instant::now()) {
            if poll_in(fd, left)? {
                let mut b = [0u8; 256];
                if self
                    .tty
                    .read(&mut b)
                    .map_err(|e| format!("the terminal failed: {e}"))?
                    == 0
                {
                    return Err("the terminal closed".into());
                }
            }
        }
        // SAFETY: tcflush on our terminal descriptor.
        unsafe {
            libc::tcflush(fd, libc::TCIFLUSH);
        }
        let mut reader = LineReader::default();
        loop {
            if withdrawn.load(Ordering::Acquire) {
                return Err(WITHDRAWN.into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Look at `withdrawn` a few times a second.
            if !poll_in(fd, left.min(Duration::from_millis(200)))? {
                continue;
            }
            let mut b = [0u8; 256];
            let n = match self.tty.read(&mut b) {
                Ok(0) => return Err("the terminal closed".into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("the terminal failed: {e}")),
            };
            let mut echo = Vec::new();
            let done = reader.feed(&b[..n], &mut echo);
            let _ = relay::write_all(fd, &echo);
            if let Some(line) = done {
                return Ok(Some(line));
            }
        }
    }
}

/// Wait until `fd` is readable or `left` passed.
fn poll_in(fd: std::os::fd::RawFd, left: Duration) -> Result<bool, String> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(format!("the terminal failed: {e}"));
    }
    Ok(r > 0)
}

/// The terminal in raw mode (keys one by one, no signals: Ctrl-C is an answer, not a signal
/// to the agent's group); put back on drop.
struct RawMode {
    fd: std::os::fd::RawFd,
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enter(fd: std::os::fd::RawFd) -> RawMode {
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a terminal descriptor with local termios.
        let saved = unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                None
            } else {
                let mut r = t;
                libc::cfmakeraw(&mut r);
                libc::tcsetattr(fd, libc::TCSADRAIN, &r);
                Some(t)
            }
        };
        RawMode { fd, saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring the settings read in `enter`.
            unsafe {
                libc::tcsetattr(self.fd, libc::TCSADRAIN, &t);
            }
        }
    }
}

/// A line typed on a raw terminal: printable keys (echoed), Backspace, Ctrl-U, Enter. Escape
/// sequences (arrow keys, terminal reports arriving late, pasted text between bracketed-paste
/// marks) are never part of an answer; Ctrl-C and Ctrl-D answer with the default.
#[derive(Default)]
pub struct LineReader {
    line: String,
    esc: EscSkip,
    /// The CSI sequence being skipped (it may arrive in pieces).
    csi: Vec<u8>,
    pasting: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum EscSkip {
    #[default]
    None,
    Esc,
    Csi,
    Ss3,
    /// A string sequence (a terminal's late answer: DCS, OSC, ...) until BEL or ST.
    Str,
    StrEsc,
}

impl LineReader {
    /// Feed keys; returns the line when Enter was pressed (empty for Ctrl-C/Ctrl-D), and
    /// appends what to echo.
    pub fn feed(&mut self, keys: &[u8], echo: &mut Vec<u8>) -> Option<String> {
        for &b in keys {
            match self.esc {
                EscSkip::Esc => {
                    self.esc = match b {
                        b'[' => EscSkip::Csi,
                        b'O' => EscSkip::Ss3,
                        b'P' | b']' | b'_' | b'^' | b'X' => EscSkip::Str,
                        _ => EscSkip::None,
                    };
                    self.csi.clear();
                    continue;
                }
                EscSkip::Csi => {
                    self.csi.push(b);
                    if (0x40..=0x7e).contains(&b) {
                        self.esc = EscSkip::None;
                        if self.csi == b"200~" {
                            self.pasting = true;
                        } else if self.csi == b"201~" {
                            self.pasting = false;
                        }
                    } else if self.csi.len() > 64 {
                        self.esc = EscSkip::None;
                    }
                    continue;
                }
                EscSkip::Str => {
                    // Keys a person presses (Alt+P sends `ESC P`) must not swallow Enter:
                    // a string also ends at CR, LF, Ctrl-C or after 256 bytes.
                    self.csi.push(b);
                    self.esc = match b {
                        0x07 => EscSkip::None,
                        0x1b => EscSkip::StrEsc,
                        b'\r' | b'\n' | 0x03 => {
                            self.esc = EscSkip::None;
                            self.csi.clear();
                            // Taken as the key it is, below.
                            EscSkip::None
                        }
                        _ if self.csi.len() > 256 => EscSkip::None,
                        _ => EscSkip::Str,
                    };
                    if !matches!(b, b'\r' | b'\n' | 0x03) {
                        continue;
                    }
                }
                EscSkip::StrEsc => {
                    self.esc = if b == b'\\' {
                        EscSkip::None
                    } else {
                        EscSkip::Str
                    };
                    continue;
                }
                EscSkip::Ss3 => {
                    self.esc = EscSkip::None;
                    continue;
                }
                EscSkip::None => {}
            }
            if b == 0x1b {
                self.esc = EscSkip::Esc;
                continue;
            }
            if self.pasting {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    echo.extend_from_slice(b"\r\n");
                    return Some(std::mem::take(&mut self.line));
                }
                0x03 | 0x04 => {
                    echo.extend_from_slice(b"\r\n");
                    self.line.clear();
                    return Some(String::new());
                }
                0x7f | 0x08 if self.line.pop().is_some() => {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                0x15 => {
                    for _ in 0..self.line.len() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                    self.line.clear();
                }
                0x20..=0x7e if self.line.len() < 16 => {
                    self.line.push(b as char);
                    echo.push(b);
                }
                _ => {}
            }
        }
        None
    }
}

impl Consent for Terminal {
    fn show(&mut self, text: &str) {
        let paused = self.relay.as_ref().map(|r| r.pause());
        self.write(text);
        drop(paused);
    }

    fn ask(&mut self, q: &Question) -> Reply {
        self.ask_until(q, &AtomicBool::new(false))
    }

    fn ask_until(&mut self, q: &Question, withdrawn: &AtomicBool) -> Reply {
        let deadline = Instant::now() + q.timeout;
        let menu: Vec<String> = q
            .choices
            .iter()
            .map(|(k, m)| {
                if *k == q.default {
                    format!("[{}] {m} (default)", k.to_ascii_uppercase())
                } else {
                    format!("[{k}] {m}")
                }
            })
            .collect();
        let relay = self.relay.clone();
        let paused = relay.as_ref().map(|r| r.pause());
        let over_agent = paused.as_ref().filter(|p| !p.ended);
        if let Some(p) = over_agent {
            self.write(&relay::question_sequence(&p.modes));
        }
        // Over the agent the relay holds the terminal raw already; a question never changes
        // its settings then (the relay may end meanwhile and put the person's back: a
        // question's own restore would undo that).
        let relay_holds_it =
            over_agent.is_some() && relay.as_ref().is_some_and(|r| r.person_in().is_some());
        let raw = (!relay_holds_it).then(|| RawMode::enter(self.tty.as_raw_fd()));
        let head = match &self.word {
            Some(w) => format!("=== Ward asks (session word: {w}) ==="),
            None => "=== Ward asks ===".to_string(),
        };
        let reply = loop {
            self.write(&format!(
                "\n{head}\n{}\n  {}\n  (a letter, then Enter) > ",
                q.text,
                menu.join(", ")
            ));
            match self.read_answer(deadline, withdrawn) {
                Ok(None) => {
                    self.write("\n(no answer in time)\n");
                    break Reply::TimedOut;
                }
                Err(e) if e == WITHDRAWN => {
                    self.write("\n(answered elsewhere)\n");
                    break Reply::Unavailable(e);
                }
                Err(e) => break Reply::Unavailable(e),
                Ok(Some(l)) if l.is_empty() => break Reply::Chose(q.default),
                Ok(Some(l)) => {
                    let c = l.chars().next().unwrap_or(q.default).to_ascii_lowercase();
                    if q.choices.iter().any(|(k, _)| *k == c) && l.chars().count() == 1 {
                        break Reply::Chose(c);
                    }
                    self.write("  (one of the letters in brackets, please)\n");
                }
            }
        };
        drop(raw);
        if let (Some(p), Some(r)) = (over_agent, &relay) {
            self.write(&relay::after_question_sequence(&p.modes));
            if p.modes.alt_screen {
                r.repaint();
            }
        }
        drop(paused);
        reply
    }

    fn color(&self) -> bool {
        std::env::var_os("NO_COLOR").is_none()
    }

    fn channel(&self) -> &'static str {
        "terminal"
    }
}

/// How long a question waits: `default`, unless `WARD_ASK_TIMEOUT` (seconds, at least 1)
/// says otherwise (for scripts and tests; the agent cannot set Ward's environment).
pub fn ask_timeout(default: Duration) -> Duration {
    std::env::var("WARD_ASK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(default, |s| Duration::from_secs(s.max(1)))
}

/// A word for one session's questions (two words and a number, from the kernel's random
/// source; about 400,000 possibilities): shown to the person before the agent starts and
/// repeated by every genuine question, so that a question drawn by the agent, which never saw
/// it, is told apart.
pub fn session_word() -> String {
    const FIRST: [&str; 32] = [
        "amber", "brisk", "cedar", "dusky", "eager", "fleet", "gilded", "hazel", "ivory", "jolly",
        "keen", "lunar", "misty", "noble", "olive", "plucky", "quiet", "rusty", "sandy", "tidal",
        "umber", "vivid", "windy", "young", "zesty", "azure", "bold", "coral", "dewy", "frosty",
        "golden", "humble",
    ];
    const SECOND: [&str; 32] = [
        "falcon", "otter", "maple", "heron", "badger", "willow", "comet", "lantern", "pebble",
        "harbor", "meadow", "thistle", "beacon", "canyon", "ember", "fjord", "glacier", "hollow",
        "island", "juniper", "kestrel", "lagoon", "marble", "nectar", "orchard", "prairie",
        "quarry", "river", "summit", "tundra", "valley", "walnut",
    ];
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // SAFETY: getrandom into a local buffer.
        unsafe {
            libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0);
        }
    }
    let n = u16::from_le_bytes([b[2], b[3]]) % 400;
    format!(
        "{}-{}-{n}",
        FIRST[(b[0] & 31) as usize],
        SECOND[(b[1] & 31) as usize]
    )
}

/// Nobody to ask: every question is refused, with the reason.
pub struct Headless {
    pub reason: String,
}

impl Consent for Headless {
    fn show(&mut self, _text: &str) {}

    fn ask(&mut self, _q: &Question) -> Reply {
        Reply::Unavailable(self.reason.clone())
    }

    fn channel(&self) -> &'static str {
        "headless"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_refuses_with_its_reason() {
        let mut h = Headless {
            reason: "no terminal".into(),
        };
        let q = Question {
            text: "apply?",
            choices: &[('y', "yes"), ('n', "no")],
            default: 'n',
            timeout: Duration::from_secs(1),
        };
        assert_eq!(h.ask(&q), Reply::Unavailable("no terminal".into()));
        assert_eq!(h.channel(), "headless");
    }

    #[test]
    fn only_typed_keys_answer() {
        let mut r = LineReader::default();
        let mut echo = Vec::new();
        // A late cursor report, an arrow key and pasted text are not an answer.
        assert_eq!(r.feed(b"\x1b[12;40R\x1b[A\x1bOP", &mut echo), None);
        assert_eq!(r.feed(b"\x1b[200~y\r\x1b[201~", &mut echo), None);
        // A terminal's late string answer (XTVERSION, DCS) carries no answer either, even in
        // pieces.
        assert_eq!(r.feed(b"\x1bP>|y", &mut echo), None);
        assert_eq!(r.feed(b"term(1)\x1b\\\x1b[12;", &mut echo), None);
        assert_eq!(r.feed(b"1R", &mut echo), None);
        // Alt+P then Enter: the Enter still ends the line.
        assert_eq!(r.feed(b"\x1bPy\r", &mut echo).as_deref(), Some(""));
        assert_eq!(r.feed(b"x\x7fy", &mut echo), None);
        assert_eq!(r.feed(b"\r", &mut echo).as_deref(), Some("y"));
        assert_eq!(r.feed(b"n\x03", &mut echo).as_deref(), Some(""));
    }
}

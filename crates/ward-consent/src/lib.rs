//! Asking a person: the [`Consent`] trait and its channels. [`Terminal`] talks on the
//! controlling terminal (`/dev/tty`), never on the agent's stdin/stdout, which the agent may
//! write to or read from; [`Headless`] has nobody to ask and refuses, saying why. A question
//! that is not answered in time is refused too: silence is never consent.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
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
    /// Whether colours may be used.
    fn color(&self) -> bool {
        false
    }
    /// How answers given here are recorded (`terminal`, `headless`).
    fn channel(&self) -> &'static str;
}

/// The controlling terminal.
pub struct Terminal {
    tty: std::fs::File,
}

impl Terminal {
    /// Open `/dev/tty`; an error when this process has no controlling terminal.
    pub fn open() -> Result<Terminal, String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map(|tty| Terminal { tty })
            .map_err(|e| format!("no terminal to ask on ({e})"))
    }

    fn read_line(&mut self, deadline: Instant) -> Result<Option<String>, String> {
        let mut line = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.tty.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("the terminal failed: {e}"));
            }
            if r == 0 {
                return Ok(None);
            }
            let mut b = [0u8; 1];
            match self.tty.read(&mut b) {
                Ok(0) => return Err("the terminal closed".into()),
                Ok(_) if b[0] == b'\n' => {
                    return Ok(Some(String::from_utf8_lossy(&line).trim().to_string()))
                }
                Ok(_) => line.push(b[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("the terminal failed: {e}")),
            }
        }
    }
}

impl Consent for Terminal {
    fn show(&mut self, text: &str) {
        let _ = self.tty.write_all(text.as_bytes());
        let _ = self.tty.flush();
    }

    fn ask(&mut self, q: &Question) -> Reply {
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
        loop {
            self.show(&format!("{}\n  {}\n> ", q.text, menu.join(", ")));
            match self.read_line(deadline) {
                Ok(None) => {
                    self.show("\n(no answer in time)\n");
                    return Reply::TimedOut;
                }
                Err(e) => return Reply::Unavailable(e),
                Ok(Some(l)) if l.is_empty() => return Reply::Chose(q.default),
                Ok(Some(l)) => {
                    let c = l.chars().next().unwrap_or(q.default).to_ascii_lowercase();
                    if q.choices.iter().any(|(k, _)| *k == c) && l.chars().count() == 1 {
                        return Reply::Chose(c);
                    }
                    self.show("  (one of the letters in brackets, please)\n");
                }
            }
        }
    }

    fn color(&self) -> bool {
        std::env::var_os("NO_COLOR").is_none()
    }

    fn channel(&self) -> &'static str {
        "terminal"
    }
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
}

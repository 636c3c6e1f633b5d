//! The person's terminal during `ward run`: the agent gets a pty of its own in place of every
//! standard descriptor that is a terminal (made by the sandbox's PID 1 in the sandbox's own
//! devpts, so `tty` names it inside; its master comes back here), and the relay ([`ward_consent::relay`]) carries its
//! screen and the person's keys across, dropping what reaches beyond the screen (recorded as
//! `terminal.filtered`, once per kind). Ward's questions pause the relay, carry the session's
//! word (shown before the agent starts), and take only keys typed after they appeared.

use serde_json::json;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use ward_audit::{AuditLog, Event, EventDecision};
use ward_consent::relay::{self, Ends, Relay, RelayHandle};
use ward_core::Effect;

fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(fd) == 1 }
}

/// The agent's own terminal, before the agent starts.
pub struct AgentTerminal {
    /// Ours: the master arrives here. Theirs: the launcher's end (PID 1 sends on it).
    ours: OwnedFd,
    theirs: Option<OwnedFd>,
    /// The person's terminal the agent's takes its size and settings from.
    like: RawFd,
    ends: Ends,
    /// `/dev/tty` when neither stdout nor stderr is the terminal (kept open for the relay).
    _tty: Option<std::fs::File>,
    pub word: String,
}

impl AgentTerminal {
    /// A pty for the agent when any of Ward's standard descriptors is a terminal (else
    /// `None`: the agent keeps its pipes and files and never had a terminal).
    pub fn prepare() -> anyhow::Result<Option<AgentTerminal>> {
        let replaced = [isatty(0), isatty(1), isatty(2)];
        if !replaced.iter().any(|&t| t) {
            return Ok(None);
        }
        let (output, tty) = if replaced[1] {
            (1, None)
        } else if replaced[2] {
            (2, None)
        } else {
            let t = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/tty")
                .map_err(|e| anyhow::anyhow!("cannot open the terminal (/dev/tty): {e}"))?;
            (t.as_raw_fd(), Some(t))
        };
        let input = replaced[0].then_some(0);
        let like = (0..3).find(|&fd| replaced[fd as usize]).unwrap_or(0);
        // Only our end closes on exec: the launcher gets the other at the same number, as it
        // gets the start pipe.
        let (ours, theirs) = ward_sys::socket_pair()
            .and_then(|(o, t)| ward_sys::set_cloexec(t.as_fd(), false).map(|_| (o, t)))
            .map_err(|e| anyhow::anyhow!("cannot create the terminal socket: {e}"))?;
        Ok(Some(AgentTerminal {
            ours,
            theirs: Some(theirs),
            like,
            ends: Ends { input, output },
            _tty: tty,
            word: ward_consent::session_word(),
        }))
    }

    /// The launcher's end of the socket the agent's terminal comes back over (`--pty-fd`).
    pub fn theirs(&self) -> Option<RawFd> {
        self.theirs.as_ref().map(|t| t.as_raw_fd())
    }

    /// The launcher has its end: ours alone stays (the socket closes if the sandbox ends
    /// before sending the terminal).
    pub fn launched(&mut self) {
        self.theirs = None;
    }

    /// Say, before the agent can draw anything, how Ward's own questions look.
    pub fn announce(&self, session: &str) {
        let _ = relay::write_all(
            self.ends.output,
            format!(
                "ward: session {session}: the agent runs on a terminal of its own. Ward's own \
                 questions show the word \u{ab}{}\u{bb}; anything else asking is the agent.\r\n",
                self.word
            )
            .as_bytes(),
        );
    }

    /// Take the agent's terminal from the sandbox (it is made there, before the agent may
    /// start) and start relaying. Kinds of output dropped are recorded.
    pub fn start(self, log: Arc<AuditLog>, session: String) -> anyhow::Result<Running> {
        let AgentTerminal {
            ours,
            theirs,
            like,
            ends,
            _tty,
            word,
        } = self;
        drop(theirs);
        let master = match ward_sandbox::notify::recv_fd(&ours) {
            Ok(Some(m)) => m,
            Ok(None) => anyhow::bail!(
                "the sandbox ended before the agent's terminal was made (its reason is above)"
            ),
            Err(e) => anyhow::bail!("cannot take the agent's terminal from the sandbox: {e}"),
        };
        relay::adopt(master.as_raw_fd(), like);
        let on_drop = Box::new(move |k: ward_consent::filter::Dropped| {
            let r = log.submit(Event {
                session: Some(session.clone()),
                resource: Some(k.as_str().to_string()),
                decision: Some(EventDecision {
                    result: Effect::Deny,
                    by: ward_core::By::terminal("relay"),
                    reason: "the agent's output reached beyond its own screen; dropped (recorded \
                             once per kind)"
                        .into(),
                }),
                ..Event::new(ward_core::EventKind::TerminalFiltered)
            });
            if let Err(e) = r {
                eprintln!("ward: warning: cannot record filtered terminal output: {e}");
            }
        });
        let relay = Relay::start(master, ends, on_drop)
            .map_err(|e| anyhow::anyhow!("cannot relay the agent's terminal: {e}"))?;
        Ok(Running { relay, _tty, word })
    }
}

/// The relay while the agent runs.
pub struct Running {
    relay: Relay,
    _tty: Option<std::fs::File>,
    pub word: String,
}

impl Running {
    pub fn handle(&self) -> RelayHandle {
        self.relay.handle()
    }

    /// The agent has ended: let the relay drain what it wrote last, put the person's
    /// terminal back, and say what it did for the session's end record.
    pub fn finish(self) -> serde_json::Value {
        let stats = self.relay.finish(std::time::Duration::from_secs(2));
        json!({
            "relayed": true,
            "bytes_out": stats.bytes_out,
            "bytes_in": stats.bytes_in,
            "filtered": stats.dropped.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        })
    }
}

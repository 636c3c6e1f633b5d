//! The broker: the one path every action an agent attempts takes, wherever Ward sits (the
//! egress proxy, exec, the review, the sandbox's denied calls). It asks the decision point
//! ([`ward_policy::Pdp`]), asks the person through every open consent channel when the answer
//! is `ask` (the first answer wins; the others withdraw the question), remembers answers for
//! the session, and writes the record. Callers never decide, ask or record by hand.
//!
//! Start from [`Broker::new`], then [`Broker::resolve`] (decide and ask) and
//! [`Broker::record`] / [`Broker::note`] (durable / queued records).
//!
//! Not for: enforcing. The caller acts on the [`Outcome`] (refuses the connection, fails the
//! exec with `EACCES`, holds the file back).

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use ward_audit::{AuditError, AuditLog, Event};
use ward_consent::{Consent, Question, Reply};
use ward_core::{Action, Consented, Decision, Effect};
use ward_policy::Pdp;

/// Questions waiting for a person at once, across the session; more are refused at once.
pub const MAX_PENDING_QUESTIONS: usize = 16;

/// A consent channel shared by the broker's questions.
pub type Channel = Arc<Mutex<Box<dyn Consent + Send>>>;

/// What the broker needs.
pub struct Config {
    pub pdp: Pdp,
    pub log: Arc<AuditLog>,
    /// The session records belong to (`ward run`), if any.
    pub session: Option<String>,
    pub agent: Option<String>,
    /// Who answers `ask`: every open channel (the trusted terminal, later the console). None:
    /// nobody, so every `ask` is refused.
    pub channels: Vec<Box<dyn Consent + Send>>,
    pub ask_timeout: Duration,
    /// Where "always" answers are written; `None`: only "for this session" is offered.
    pub always: Option<Always>,
}

/// The user's manifest, where an "always" answer adds a rule (see [`crate::always`]).
#[derive(Debug, Clone)]
pub struct Always {
    pub manifest: std::path::PathBuf,
    /// The managed files the manifest is loaded with (to validate the new text).
    pub managed: Vec<std::path::PathBuf>,
    /// Who answers (the user's login name).
    pub who: String,
}

/// What a refusal of the sandbox's was about (see [`Broker::refused`]).
pub enum Refused {
    /// A call or path.
    Resource(String),
    /// A destination (`address:port`).
    Dest(String),
}

/// The rule an "always" answer writes: kind and resource pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remember {
    pub kind: ward_core::ActionKind,
    pub resource: String,
}

/// The decision that stands, and what asking came to when a person was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub consent: Option<Consented>,
    /// The channel whose answer settled the question (`terminal`, later `console`).
    pub channel: Option<&'static str>,
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.decision.effect == Effect::Allow
    }
}

/// The broker of one session (or one command). Cheap to clone; share it across threads.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    pdp: Mutex<Pdp>,
    log: Arc<AuditLog>,
    session: Option<String>,
    agent: Option<String>,
    channels: Vec<Channel>,
    ask_timeout: Duration,
    always: Option<Always>,
    /// Answers given this session, by the caller's key (a destination, a program).
    remembered: Mutex<HashMap<String, bool>>,
    /// One question per key at a time: a second caller waits for the first's answer.
    asking_keys: Mutex<HashMap<String, Arc<Pending>>>,
    asking: AtomicUsize,
    /// One "always" written at a time (each reads, extends and replaces the manifest).
    writing: Mutex<()>,
}

/// A question being asked: the first channel to answer settles it.
struct Pending {
    answer: Mutex<Option<(bool, Consented, &'static str)>>,
    settled: Condvar,
    withdrawn: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A thread that panicked while holding a lock leaves consistent data here (maps of
    // answers): carry on rather than take the session down.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    pub fn new(cfg: Config) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                pdp: Mutex::new(cfg.pdp),
                log: cfg.log,
                session: cfg.session,
                agent: cfg.agent,
                channels: cfg
                    .channels
                    .into_iter()
                    .map(|c| Arc::new(Mutex::new(c)))
                    .collect(),
                ask_timeout: cfg.ask_timeout,
                always: cfg.always,
                remembered: Mutex::new(HashMap::new()),
                asking_keys: Mutex::new(HashMap::new()),
                asking: AtomicUsize::new(0),
                writing: Mutex::new(()),
            }),
        }
    }

    /// The session's audit log (for records that are not decisions: session start and end).
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.inner.log
    }

    pub fn session(&self) -> Option<&str> {
        self.inner.session.as_deref()
    }

    pub fn agent(&self) -> Option<&str> {
        self.inner.agent.as_deref()
    }

    /// What the decision point says about `a` (manifest rules, managed ceilings, policies).
    /// No person is asked and nothing is recorded: for callers that must decide in a hurry
    /// and only ask (via [`Broker::ask`]) when the answer is `ask`.
    pub fn decide(&self, a: &Action) -> Decision {
        lock(&self.inner.pdp).decide(a)
    }

    /// Decide on `a` and, when the answer is `ask`, ask the person (blocking until an answer,
    /// the timeout, or no channel). `key` names what the answer is remembered under for the
    /// session; `text` is the question (the caller makes agent-chosen parts inert).
    pub fn resolve(
        &self,
        a: &Action,
        key: &str,
        text: impl FnOnce(&Decision) -> String,
    ) -> Outcome {
        let d = self.decide(a);
        if d.effect != Effect::Ask {
            return Outcome {
                decision: d,
                consent: None,
                channel: None,
            };
        }
        let q = text(&d);
        self.ask(d, key, &q, None)
    }

    /// Ask the person about a decision of `ask`: allow or deny, with what asking came to.
    /// Blocking; call it off an async runtime's threads. With `remember`, the person may also
    /// answer "always" when the `ask` came from the manifest's default for what it does not
    /// name (`[network] unknown`, `[exec] unknown`): the rule is then added to their manifest.
    /// A rule the person wrote themselves is never overridden this way.
    pub fn ask(&self, d: Decision, key: &str, text: &str, remember: Option<Remember>) -> Outcome {
        let remember = remember.filter(|r| self.may_remember(&d, r));
        let (yes, how, channel) = self.ask_person(key, text, remember.is_some());
        if how == Consented::Always {
            if let Some(r) = &remember {
                self.write_always(r, channel.unwrap_or("terminal"));
            }
        }
        let decision = if yes {
            Decision {
                effect: Effect::Allow,
                ..d
            }
        } else {
            Decision::new(
                Effect::Deny,
                d.by.clone(),
                format!("{} (asked: {how})", d.reason),
            )
        };
        Outcome {
            decision,
            consent: Some(how),
            channel,
        }
    }

    /// Whether an "always" may be offered for `d`: the user's own manifest's default said ask
    /// (not a rule, not a managed file).
    fn may_remember(&self, d: &Decision, r: &Remember) -> bool {
        let Some(a) = &self.inner.always else {
            return false;
        };
        // The rule is written as a pattern: nothing an agent chose may widen it (a file named
        // `*`), and nothing it can make lasts (a program in /tmp or in a writable grant).
        if r.resource.contains(['*', '?', '[', ']', '{', '}', '\\']) || r.resource.is_empty() {
            return false;
        }
        let pdp = lock(&self.inner.pdp);
        let m = pdp.manifest();
        if r.kind == ward_core::ActionKind::Exec {
            let p = std::path::Path::new(&r.resource);
            let writable = m
                .files
                .iter()
                .filter(|g| g.access == ward_core::Access::ReadWrite)
                .any(|g| p.starts_with(&g.path));
            if !p.is_absolute()
                || writable
                || ["/tmp", "/dev", "/var/tmp", "/run"]
                    .iter()
                    .any(|t| p.starts_with(t))
            {
                return false;
            }
        }
        let origin = match r.kind {
            ward_core::ActionKind::NetConnect => &m.unknown_network.1,
            ward_core::ActionKind::Exec => &m.unknown_exec.1,
            _ => return false,
        };
        matches!(origin, ward_core::Origin::File { path, managed: false, .. } if *path == a.manifest)
            && d.by == ward_core::By::manifest(origin)
    }

    fn write_always(&self, r: &Remember, channel: &str) {
        let Some(a) = &self.inner.always else { return };
        let session = self.inner.session.as_deref().unwrap_or("-");
        let written = {
            let _one = lock(&self.inner.writing);
            always::append_rule(a, r, session, channel)
        };
        let ev = match written {
            Ok(rule) => Event {
                session: self.inner.session.clone(),
                resource: Some(a.manifest.display().to_string()),
                detail: Some(serde_json::json!({
                    "rule": rule, "kind": r.kind.as_str(), "resource": r.resource,
                    "by": a.who, "channel": channel,
                })),
                ..Event::new(ward_core::EventKind::ManifestRuleAdded)
            },
            Err(e) => {
                eprintln!(
                    "ward: warning: cannot add the rule to {}: {e} (allowed for this session only)",
                    ward_core::inert::path(&a.manifest)
                );
                Event {
                    session: self.inner.session.clone(),
                    resource: Some(a.manifest.display().to_string()),
                    detail: Some(serde_json::json!({
                        "error": e, "kind": r.kind.as_str(), "resource": r.resource,
                    })),
                    ..Event::new(ward_core::EventKind::ManifestRuleRefused)
                }
            }
        };
        self.note(ev);
    }

    fn ask_person(
        &self,
        key: &str,
        text: &str,
        always: bool,
    ) -> (bool, Consented, Option<&'static str>) {
        let inner = &self.inner;
        if let Some(&yes) = lock(&inner.remembered).get(key) {
            return (yes, Consented::Remembered, None);
        }
        if inner.channels.is_empty() {
            return (false, Consented::NobodyToAsk, None);
        }
        // One question per key: later askers wait for the first one's answer.
        let (pending, first) = {
            let mut keys = lock(&inner.asking_keys);
            // An answer may have come while we took the lock (the first asker remembers it
            // before it lets go of the key).
            if let Some(&yes) = lock(&inner.remembered).get(key) {
                return (yes, Consented::Remembered, None);
            }
            match keys.get(key) {
                Some(p) => (p.clone(), false),
                None => {
                    if inner.asking.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_QUESTIONS {
                        inner.asking.fetch_sub(1, Ordering::SeqCst);
                        return (false, Consented::TooMany, None);
                    }
                    let p = Arc::new(Pending {
                        answer: Mutex::new(None),
                        settled: Condvar::new(),
                        withdrawn: AtomicBool::new(false),
                    });
                    keys.insert(key.to_string(), p.clone());
                    (p, true)
                }
            }
        };
        if first {
            self.put_to_channels(&pending, text, always);
        }
        let mut answer = lock(&pending.answer);
        while answer.is_none() {
            answer = pending
                .settled
                .wait(answer)
                .unwrap_or_else(|e| e.into_inner());
        }
        let (yes, how, channel) = answer.unwrap_or((false, Consented::Unavailable, ""));
        drop(answer);
        let channel = (!channel.is_empty()).then_some(channel);
        if first {
            if !matches!(how, Consented::Unavailable | Consented::NobodyToAsk) {
                lock(&inner.remembered).insert(key.to_string(), yes);
            }
            lock(&inner.asking_keys).remove(key);
            inner.asking.fetch_sub(1, Ordering::SeqCst);
            (yes, how, channel)
        } else {
            (yes, Consented::Remembered, None)
        }
    }

    /// Ask on every channel at once, each on its own thread; the first real answer settles
    /// the question and withdraws it from the others. When every channel fails (timeout, no
    /// terminal), the question settles as refused with the last reason.
    fn put_to_channels(&self, pending: &Arc<Pending>, text: &str, always: bool) {
        let choices: &'static [(char, &'static str)] = if always {
            &[
                ('y', "allow for this session"),
                ('a', "always allow (adds a rule to your manifest)"),
                ('n', "deny"),
            ]
        } else {
            &[('y', "allow for this session"), ('n', "deny")]
        };
        let n = self.inner.channels.len();
        let failed = Arc::new(AtomicUsize::new(0));
        for ch in &self.inner.channels {
            let (ch, p, f) = (ch.clone(), pending.clone(), failed.clone());
            let (text, timeout) = (text.to_string(), self.inner.ask_timeout);
            let spawned = std::thread::Builder::new()
                .name("ward-ask".into())
                .spawn(move || {
                    let reply = lock(&ch).ask_until(
                        &Question {
                            text: &text,
                            choices,
                            default: 'n',
                            timeout,
                        },
                        &p.withdrawn,
                    );
                    let channel = lock(&ch).channel();
                    let settled = match reply {
                        Reply::Chose('y') => Some((true, Consented::Granted)),
                        Reply::Chose('a') => Some((true, Consented::Always)),
                        Reply::Chose(_) => Some((false, Consented::Refused)),
                        Reply::TimedOut | Reply::Unavailable(_) => {
                            let how = if reply == Reply::TimedOut {
                                Consented::TimedOut
                            } else {
                                Consented::Unavailable
                            };
                            (f.fetch_add(1, Ordering::SeqCst) + 1 == n).then_some((false, how))
                        }
                    };
                    if let Some((yes, how)) = settled {
                        p.settle(yes, how, channel);
                    }
                });
            if spawned.is_err() && failed.fetch_add(1, Ordering::SeqCst) + 1 == n {
                pending.settle(false, Consented::Unavailable, "");
            }
        }
    }

    /// The record of `a` decided as `o`, with the session's names and `detail`.
    pub fn event(&self, a: &Action, o: &Outcome, mut detail: Value) -> Event {
        let mut agent = a.agent.clone();
        if agent.is_none() {
            agent = self.inner.agent.clone();
        }
        if let (Some(ch), Some(obj)) = (o.channel, detail.as_object_mut()) {
            obj.insert("answered_on".into(), Value::from(ch));
        }
        Event {
            session: self.inner.session.clone(),
            agent,
            consent: o.consent.map(|c| c.as_str().to_string()),
            detail: (!detail.is_null()).then_some(detail),
            ..Event::action(a, &o.decision)
        }
    }

    /// The record of something the sandbox refused on its own (a denied system call, a
    /// direct connection): no decision point or person was involved, `by` says which wall.
    /// `durable`: wait for the disk.
    pub fn refused(
        &self,
        kind: ward_core::EventKind,
        on: Refused,
        by: ward_core::By,
        reason: String,
        detail: Value,
        durable: bool,
    ) -> Result<(), AuditError> {
        let (resource, dest) = match on {
            Refused::Resource(r) => (Some(r), None),
            Refused::Dest(d) => (None, Some(d)),
        };
        let ev = Event {
            session: self.inner.session.clone(),
            agent: self.inner.agent.clone(),
            resource,
            dest,
            decision: Some(ward_audit::EventDecision {
                result: Effect::Deny,
                by,
                reason,
            }),
            detail: (!detail.is_null()).then_some(detail),
            ..Event::new(kind)
        };
        if durable {
            self.record(ev)
        } else {
            self.inner.log.submit(ev)
        }
    }

    /// Write `ev` and wait until it is on disk. An allowed action whose record cannot be
    /// written must not happen: the caller refuses it on error.
    pub fn record(&self, ev: Event) -> Result<(), AuditError> {
        self.inner.log.append(ev)
    }

    /// Queue `ev` without waiting (refusals and things that already happened).
    pub fn note(&self, ev: Event) {
        if let Err(e) = self.inner.log.submit(ev) {
            eprintln!("ward: warning: cannot record an event: {e}");
        }
    }
}

impl Pending {
    fn settle(&self, yes: bool, how: Consented, channel: &'static str) {
        let mut a = lock(&self.answer);
        if a.is_none() {
            *a = Some((yes, how, channel));
            self.withdrawn.store(true, Ordering::Release);
            self.settled.notify_all();
        }
    }
}

pub mod always;
#[cfg(test)]
mod tests;

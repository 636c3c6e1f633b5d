//! Devices granted explicitly (`[[devices]]`: GPU render nodes, cameras): each is decided by
//! the manifest's rules (a `device.*` deny holds, a managed file's included) and then asked for
//! at the start of the session, before the agent exists; only what the person allows is bound
//! into the sandbox. Each outcome is recorded with the session's start.

use serde_json::json;
use ward_audit::Event;
use ward_consent::{Consent, Question, Reply};
use ward_core::{Action, ActionKind, Consented, Decision, Effect, Manifest, Source};
use ward_policy::Pdp;

/// One device and what became of it.
pub struct Outcome {
    pub action: Action,
    pub decision: Decision,
    pub consent: Option<Consented>,
}

impl Outcome {
    pub fn granted(&self) -> bool {
        self.decision.effect == Effect::Allow
    }

    /// Its record, for the session's start.
    pub fn event(&self, session: &str) -> Event {
        Event {
            session: Some(session.to_string()),
            consent: self.consent.map(|c| c.as_str().to_string()),
            detail: Some(
                json!({"granted": self.granted(), "asked": "at the start of the session"}),
            ),
            ..Event::action(&self.action, &self.decision)
        }
    }
}

/// Decide and ask for each device of `m`. `word`: the session's word, which the question
/// shows (the agent has not started yet, but the person learns to look for it).
pub fn decide(m: &Manifest, pdp: &Pdp, word: Option<&str>) -> Vec<Outcome> {
    if m.devices.is_empty() {
        return Vec::new();
    }
    let mut pdp = pdp.clone();
    let mut terminal: Option<Box<dyn Consent>> = None;
    let mut out = Vec::new();
    for d in &m.devices {
        let action = Action::new(
            ActionKind::Device(d.class.to_string()),
            d.path.to_string_lossy().into_owned(),
        );
        let ruled = pdp.decide(&action);
        // A rule or a managed file that refuses it holds; otherwise the `[[devices]]` entry is
        // the grant, and the person decides.
        if ruled.effect == Effect::Deny && ruled.by.source != Source::Default {
            out.push(Outcome {
                action,
                decision: ruled,
                consent: None,
            });
            continue;
        }
        let by = ward_core::By::manifest(&d.origin);
        let channel = terminal.get_or_insert_with(|| match ward_consent::Terminal::open() {
            Ok(t) => match word {
                Some(w) => Box::new(t.with_word(w.to_string())),
                None => Box::new(t),
            },
            Err(reason) => Box::new(ward_consent::Headless { reason }),
        });
        let text = format!(
            "The manifest grants the agent the {} {}{} ({}). Allow it for this session?",
            d.class,
            ward_core::inert::path(&d.path),
            d.reason
                .as_deref()
                .map(|r| format!(": {}", ward_core::inert::line(r)))
                .unwrap_or_default(),
            d.origin
        );
        let reply = channel.ask(&Question {
            text: &text,
            choices: &[('y', "allow for this session"), ('n', "deny")],
            default: 'n',
            timeout: ward_consent::ask_timeout(std::time::Duration::from_secs(60)),
        });
        let (effect, consent) = match reply {
            Reply::Chose('y') => (Effect::Allow, Consented::Granted),
            Reply::Chose(_) => (Effect::Deny, Consented::Refused),
            Reply::TimedOut => (Effect::Deny, Consented::TimedOut),
            Reply::Unavailable(_) => (Effect::Deny, Consented::NobodyToAsk),
        };
        if effect == Effect::Deny {
            eprintln!(
                "ward: the {} {} is not given to the agent ({})",
                d.class,
                ward_core::inert::path(&d.path),
                consent
            );
        }
        out.push(Outcome {
            action,
            decision: Decision::new(
                effect,
                by,
                format!("granted by [[devices]], asked at the start: {consent}"),
            ),
            consent: Some(consent),
        });
    }
    out
}

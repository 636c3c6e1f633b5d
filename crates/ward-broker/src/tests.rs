use super::*;
use std::time::Instant;
use ward_audit::{KeyStore, WriterOptions};
use ward_core::manifest::LoadOptions;
use ward_core::{ActionKind, Manifest};

/// A channel that answers `answer` after `after` (or never, withdrawing when told).
struct Scripted {
    answer: Option<char>,
    after: Duration,
    asked: Arc<AtomicUsize>,
    name: &'static str,
}

impl Consent for Scripted {
    fn show(&mut self, _: &str) {}
    fn ask(&mut self, q: &Question) -> Reply {
        self.ask_until(q, &AtomicBool::new(false))
    }
    fn ask_until(&mut self, q: &Question, withdrawn: &AtomicBool) -> Reply {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        loop {
            if withdrawn.load(Ordering::Acquire) {
                return Reply::Unavailable(ward_consent::WITHDRAWN.into());
            }
            if start.elapsed() >= q.timeout {
                return Reply::TimedOut;
            }
            if let Some(c) = self.answer.filter(|_| start.elapsed() >= self.after) {
                return Reply::Chose(c);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn channel(&self) -> &'static str {
        self.name
    }
}

fn scripted(
    answer: Option<char>,
    after_ms: u64,
    name: &'static str,
) -> (Box<dyn Consent + Send>, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    (
        Box::new(Scripted {
            answer,
            after: Duration::from_millis(after_ms),
            asked: asked.clone(),
            name,
        }),
        asked,
    )
}

fn broker(dir: &std::path::Path, channels: Vec<Box<dyn Consent + Send>>) -> Broker {
    std::fs::write(
        dir.join("ward.toml"),
        "name = \"t\"\n[network]\nallow = [\"https://ok.example\"]\nask = [\"https://ask.example\"]\n",
    )
    .unwrap();
    let m = Manifest::load(
        &dir.join("ward.toml"),
        &LoadOptions {
            managed: vec![],
            home: Some(dir.join("home")),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let log = AuditLog::open(
        &dir.join("log/audit.jsonl"),
        &KeyStore::new(dir.join("keys")),
        WriterOptions::default(),
    )
    .unwrap();
    Broker::new(Config {
        pdp: Pdp::new(m).unwrap(),
        log: Arc::new(log),
        session: Some("s1".into()),
        agent: Some("agent".into()),
        channels,
        ask_timeout: Duration::from_secs(5),
        always: None,
    })
}

fn connect(host: &str) -> Action {
    Action {
        dest: Some(host.into()),
        port: Some(443),
        scheme: Some("https".into()),
        ..Action::new(ActionKind::NetConnect, format!("https://{host}:443"))
    }
}

#[test]
fn allowed_and_denied_need_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path(), vec![]);
    let o = b.resolve(&connect("ok.example"), "k", |_| unreachable!());
    assert!(o.allowed() && o.consent.is_none(), "{o:?}");
    let o = b.resolve(&connect("other.example"), "k", |_| unreachable!());
    assert_eq!(o.decision.effect, Effect::Deny);
    assert_eq!(o.decision.by, "manifest:default");
}

#[test]
fn ask_with_nobody_to_ask_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path(), vec![]);
    let o = b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone());
    assert_eq!(o.decision.effect, Effect::Deny);
    assert_eq!(o.consent, Some(Consented::NobodyToAsk));
    assert!(o.decision.reason.contains("asked: nobody to ask"), "{o:?}");
}

#[test]
fn the_first_channel_to_answer_wins_and_the_other_withdraws() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, slow_asked) = scripted(None, 0, "slow");
    let (fast, fast_asked) = scripted(Some('y'), 50, "fast");
    let b = broker(dir.path(), vec![slow, fast]);
    let t = Instant::now();
    let o = b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone());
    assert!(o.allowed(), "{o:?}");
    assert_eq!(o.consent, Some(Consented::Granted));
    assert_eq!(o.channel, Some("fast"));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "waited for the slow channel"
    );
    assert_eq!(slow_asked.load(Ordering::SeqCst), 1);
    assert_eq!(fast_asked.load(Ordering::SeqCst), 1);
    // Remembered for the session: nobody is asked again.
    let o = b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone());
    assert!(o.allowed());
    assert_eq!(o.consent, Some(Consented::Remembered));
    assert_eq!(fast_asked.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refusal_is_remembered_and_a_timeout_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (no, asked) = scripted(Some('n'), 0, "terminal");
    let b = broker(dir.path(), vec![no]);
    let o = b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone());
    assert_eq!(
        (o.decision.effect, o.consent),
        (Effect::Deny, Some(Consented::Refused))
    );
    let o = b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone());
    assert_eq!(
        (o.decision.effect, o.consent),
        (Effect::Deny, Some(Consented::Remembered))
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    let dir = tempfile::tempdir().unwrap();
    let (silent, _) = scripted(None, 0, "terminal");
    let mut b = broker(dir.path(), vec![silent]);
    Arc::get_mut(&mut b.inner).unwrap().ask_timeout = Duration::from_millis(100);
    let o = b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone());
    assert_eq!(
        (o.decision.effect, o.consent),
        (Effect::Deny, Some(Consented::TimedOut))
    );
}

#[test]
fn concurrent_asks_for_one_key_ask_once() {
    let dir = tempfile::tempdir().unwrap();
    let (yes, asked) = scripted(Some('y'), 100, "terminal");
    let b = broker(dir.path(), vec![yes]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                b.resolve(&connect("ask.example"), "ask.example", |d| d.reason.clone())
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap().allowed());
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[test]
fn records_carry_the_session_the_rule_and_the_consent() {
    let dir = tempfile::tempdir().unwrap();
    let (yes, _) = scripted(Some('y'), 0, "terminal");
    let b = broker(dir.path(), vec![yes]);
    let a = connect("ask.example");
    let o = b.resolve(&a, "ask.example", |d| d.reason.clone());
    b.record(b.event(&a, &o, serde_json::json!({"via": "test"})))
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("log/audit.jsonl")).unwrap();
    let rec: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["kind"] == "net.connect")
        .unwrap();
    assert_eq!(rec["session"], "s1");
    assert_eq!(rec["agent"], "agent");
    assert_eq!(rec["consent"], "granted");
    assert_eq!(rec["decision"]["result"], "allow");
    assert!(
        rec["decision"]["by"]
            .as_str()
            .unwrap()
            .starts_with("manifest:"),
        "{rec}"
    );
    assert_eq!(rec["detail"]["answered_on"], "terminal");
}

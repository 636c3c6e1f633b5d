#![allow(dead_code)]
use std::path::PathBuf;
use ward_audit::keys::Anchor;
use ward_audit::{AuditLog, Event, KeyStore, WriterOptions};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub keys: KeyStore,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("state/audit/audit.jsonl");
        let keys = KeyStore::new(dir.path().join("config/keys"));
        Fixture { dir, log, keys }
    }

    pub fn open(&self, every: u64) -> AuditLog {
        AuditLog::open(
            &self.log,
            &self.keys,
            WriterOptions {
                checkpoint_every: every,
            },
        )
        .unwrap()
    }

    pub fn vk(&self) -> ed25519_dalek::VerifyingKey {
        self.keys.verifying_key().unwrap().unwrap()
    }

    pub fn anchor(&self) -> Anchor {
        let id = ward_audit::log_id_of(&std::fs::read(&self.log).unwrap()).unwrap();
        self.keys.read_anchor(&id).unwrap().unwrap()
    }
}

pub fn event(i: usize) -> Event {
    Event {
        session: Some("s-1".into()),
        resource: Some(format!("/home/alice/project/file-{i}.txt")),
        size: Some(i as u64 * 100),
        ..Event::new("file.read")
    }
}

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
        kind: ward_core::ActionKind::FileRead.as_str(),
        ..Event::default()
    }
}

/// Append `n` records with a valid chain but no signature, as someone without the key could.
pub fn forge_append(log: &std::path::Path, n: usize) {
    use sha2::{Digest, Sha256};
    let text = std::fs::read_to_string(log).unwrap();
    let last = text.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    let (mut seq, mut prev) = (
        v["seq"].as_u64().unwrap(),
        v["hash"].as_str().unwrap().to_string(),
    );
    let mut out = String::new();
    for _ in 0..n {
        seq += 1;
        let body = format!(
            "{{\"seq\":{seq},\"ts\":\"2026-11-25T00:00:00.000000Z\",\"kind\":\"file.read\",\"resource\":\"/forged\",\"prev\":\"{prev}\""
        );
        let hash: String = Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push_str(&format!("{body},\"hash\":\"{hash}\"}}\n"));
        prev = hash;
    }
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .unwrap()
        .write_all(out.as_bytes())
        .unwrap();
}

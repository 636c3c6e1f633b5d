//! The checkpoint signing key and the per-log anchors, kept in a directory of their own
//! (mode 0700, key 0600) that must not lie inside the log's directory: whoever can rewrite the
//! log must not thereby be able to re-sign it. (OS keychains are a later step.)

use crate::error::AuditError;
use crate::hex;
use crate::merkle::{Frontier, Hash};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const KEY_FILE: &str = "audit-signing.key";
const PUB_FILE: &str = "audit-signing.pub";

/// The key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    pub dir: PathBuf,
}

/// A loaded signing key and its short id (the first 8 bytes of SHA-256 of the public key).
pub struct SigningIdentity {
    key: SigningKey,
    pub key_id: String,
}

impl SigningIdentity {
    pub fn sign(&self, msg: &[u8]) -> String {
        hex::encode(&self.key.sign(msg).to_bytes())
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

pub fn key_id(vk: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(vk.as_bytes())[..8])
}

/// Check an Ed25519 signature given as hex.
pub fn verify_sig(vk: &VerifyingKey, msg: &[u8], sig_hex: &str) -> bool {
    let mut sig = [0u8; 64];
    if !hex::decode_into(sig_hex.as_bytes(), &mut sig) {
        return false;
    }
    vk.verify(msg, &Signature::from_bytes(&sig)).is_ok()
}

/// The signed head of a log as its writer last left it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Anchor {
    pub log_id: String,
    /// Where the log was (canonical path), so a replaced file is recognised.
    pub log_path: String,
    /// Records in the log (the seq of the last one).
    pub seq: u64,
    /// Length of the log in bytes after that record.
    pub offset: u64,
    /// Hash of the last record.
    pub head: String,
    /// Merkle frontier after the last record, so a writer can resume without rereading.
    pub frontier: Vec<String>,
    pub key: String,
    pub sig: String,
}

impl Anchor {
    pub fn message(
        log_id: &str,
        log_path: &str,
        seq: u64,
        offset: u64,
        head: &str,
        root: &Hash,
    ) -> Vec<u8> {
        format!(
            "ward-audit-anchor/v1\n{log_id}\n{log_path}\n{seq}\n{offset}\n{head}\n{}\n",
            hex::encode(root)
        )
        .into_bytes()
    }

    pub fn frontier(&self) -> Option<Frontier> {
        let stack = self
            .frontier
            .iter()
            .map(|h| hex::decode32(h.as_bytes()))
            .collect::<Option<Vec<_>>>()?;
        Frontier::from_parts(self.seq, stack)
    }

    /// Does the signature hold for these fields?
    pub fn verify(&self, vk: &VerifyingKey) -> bool {
        let Some(f) = self.frontier() else {
            return false;
        };
        let msg = Anchor::message(
            &self.log_id,
            &self.log_path,
            self.seq,
            self.offset,
            &self.head,
            &f.root(),
        );
        verify_sig(vk, &msg, &self.sig)
    }
}

/// A log id is 32 lower-case hex digits; anything else never becomes part of a file name.
pub fn valid_log_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyStore { dir: dir.into() }
    }

    /// Refuse a key directory inside the directory that holds `log`.
    pub fn check_outside(&self, log: &Path) -> Result<(), AuditError> {
        let log_dir = log.parent().unwrap_or(Path::new("."));
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if canon(&self.dir).starts_with(canon(log_dir)) {
            return Err(AuditError::Config(format!(
                "the key directory {} is inside the log directory {}: keep the signing key elsewhere \
                 (set WARD_KEY_DIR)",
                self.dir.display(),
                log_dir.display()
            )));
        }
        Ok(())
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), AuditError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AuditError::io(dir, e))
    }

    /// Load the signing key, creating it (0600, in a 0700 directory) on first use.
    pub fn signing_identity(&self) -> Result<SigningIdentity, AuditError> {
        self.ensure_dir(&self.dir)?;
        let path = self.dir.join(KEY_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mode = fs::metadata(&path)
                    .map_err(|e| AuditError::io(&path, e))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(AuditError::Key {
                        path,
                        message: format!(
                            "the signing key is readable by others (mode {:o}); run: chmod 600 on it",
                            mode & 0o777
                        ),
                    });
                }
                let seed =
                    hex::decode32(text.trim().as_bytes()).ok_or_else(|| AuditError::Key {
                        path: path.clone(),
                        message: "not a signing key (expected 64 hex digits)".into(),
                    })?;
                let key = SigningKey::from_bytes(&seed);
                Ok(SigningIdentity {
                    key_id: key_id(&key.verifying_key()),
                    key,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.create_key(&path),
            Err(e) => Err(AuditError::io(&path, e)),
        }
    }

    fn create_key(&self, path: &Path) -> Result<SigningIdentity, AuditError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| AuditError::Key {
            path: path.to_path_buf(),
            message: format!("no randomness for a new key: {e}"),
        })?;
        let key = SigningKey::from_bytes(&seed);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::io(path, e))?;
        f.write_all(hex::encode(&seed).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| AuditError::io(path, e))?;
        let pub_path = self.dir.join(PUB_FILE);
        fs::write(&pub_path, hex::encode(key.verifying_key().as_bytes()))
            .map_err(|e| AuditError::io(&pub_path, e))?;
        Ok(SigningIdentity {
            key_id: key_id(&key.verifying_key()),
            key,
        })
    }

    /// The public key for verification (`audit-signing.pub`).
    pub fn verifying_key(&self) -> Result<Option<VerifyingKey>, AuditError> {
        let path = self.dir.join(PUB_FILE);
        match fs::read_to_string(&path) {
            Ok(t) => load_pub(&path, &t).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AuditError::io(&path, e)),
        }
    }

    fn anchor_dir(&self) -> PathBuf {
        self.dir.join("anchors")
    }

    /// The newest readable anchor of `log_id`: the active one (two slots, written in turn so
    /// that a crash mid-write leaves the other intact), else one retired when a new log took
    /// its path. Signatures are the caller's to check.
    pub fn read_anchor(&self, log_id: &str) -> Result<Option<Anchor>, AuditError> {
        if !valid_log_id(log_id) {
            return Ok(None);
        }
        let dir = self.anchor_dir();
        let mut best: Option<Anchor> = None;
        for sub in [dir.clone(), dir.join("retired")] {
            for slot in ["a", "b"] {
                let path = sub.join(format!("{log_id}.{slot}.json"));
                match fs::read(&path) {
                    Ok(b) => {
                        if let Ok(a) = serde_json::from_slice::<Anchor>(&b) {
                            if a.log_id == log_id && best.as_ref().is_none_or(|x| a.seq > x.seq) {
                                best = Some(a);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(AuditError::io(&path, e)),
                }
            }
            if best.is_some() {
                break;
            }
        }
        Ok(best)
    }

    /// Replace the anchor in `slot` (0 or 1) atomically: a temporary file renamed over it.
    /// Not fsynced (that would double the fsyncs per commit): the anchor is written after the
    /// log's own `fdatasync`, so it never runs ahead of durable records; after a power loss it
    /// may lag behind them (the next writer adopts the rest, with a record saying so) or be
    /// empty (the writer then verifies the whole log before extending it). Two slots written in
    /// turn keep one whole anchor through a crash in the middle of writing the other.
    pub fn write_anchor(&self, a: &Anchor, slot: usize) -> Result<(), AuditError> {
        if !valid_log_id(&a.log_id) {
            return Err(AuditError::Config(format!("invalid log id `{}`", a.log_id)));
        }
        let dir = self.anchor_dir();
        self.ensure_dir(&dir)?;
        let path = dir.join(format!(
            "{}.{}.json",
            a.log_id,
            if slot == 0 { "a" } else { "b" }
        ));
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(a).map_err(|e| AuditError::Config(e.to_string()))?;
        fs::write(&tmp, &body).map_err(|e| AuditError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| AuditError::io(&path, e))
    }

    /// The active anchors of logs that were written at `log_path` (canonical), newest per log.
    pub fn anchors_for_path(&self, log_path: &str) -> Result<Vec<Anchor>, AuditError> {
        let dir = self.anchor_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(AuditError::io(&dir, e)),
        };
        let mut ids: Vec<String> = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.split('.').next().filter(|id| valid_log_id(id)) {
                if !ids.iter().any(|x| x == id) {
                    ids.push(id.to_string());
                }
            }
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(a) = self.read_active(&id)? {
                if a.log_path == log_path {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    fn read_active(&self, log_id: &str) -> Result<Option<Anchor>, AuditError> {
        let mut best: Option<Anchor> = None;
        for slot in ["a", "b"] {
            let path = self.anchor_dir().join(format!("{log_id}.{slot}.json"));
            if let Ok(b) = fs::read(&path) {
                if let Ok(a) = serde_json::from_slice::<Anchor>(&b) {
                    if best.as_ref().is_none_or(|x| a.seq > x.seq) {
                        best = Some(a);
                    }
                }
            }
        }
        Ok(best)
    }

    /// Move a log's anchors aside (into `anchors/retired/`) when a new log takes its path; the
    /// new log's first record names it, and a moved copy of the old log still verifies.
    pub fn retire(&self, log_id: &str) -> Result<(), AuditError> {
        if !valid_log_id(log_id) {
            return Ok(());
        }
        let dir = self.anchor_dir();
        let retired = dir.join("retired");
        self.ensure_dir(&retired)?;
        for slot in ["a", "b"] {
            let name = format!("{log_id}.{slot}.json");
            match fs::rename(dir.join(&name), retired.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AuditError::io(&dir.join(&name), e)),
            }
        }
        Ok(())
    }
}

/// Parse a public key file's text (64 hex digits).
pub fn load_pub(path: &Path, text: &str) -> Result<VerifyingKey, AuditError> {
    hex::decode32(text.trim().as_bytes())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| AuditError::Key {
            path: path.to_path_buf(),
            message: "not an Ed25519 public key (expected 64 hex digits)".into(),
        })
}

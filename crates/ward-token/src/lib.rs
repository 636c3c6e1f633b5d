//! Capability tokens for grants (biscuit-auth): a staged grant is held as a token naming the
//! folder, the rights, the session, a generation and an expiry, signed by a root key kept
//! beside the audit key. Applying reviewed changes verifies the token first (signature,
//! revocation, expiry, right to write that path) and then *rotates* it: the next generation is
//! issued and the old one revoked, so a copy of an older token is worth nothing.
//!
//! Datalog of a token's first (authority) block:
//!
//! ```text
//! folder("/home/u/proj/");            // always with a trailing slash
//! right("read"); right("write");
//! session("3f9a..."); generation(2);
//! check if time($t), $t <= 2026-12-02T10:00:00Z;
//! ```
//!
//! A holder can narrow a token offline ([`attenuate`]): read-only, a sub-folder, an earlier
//! expiry; never widen it. Revocation is Ward's own state (`revoked` beside the root key:
//! revocation ids and sessions), checked before the Datalog runs. Parsed tokens are cached by
//! their text: verifying a signature costs ~90 µs, authorizing a parsed token ~10 µs.

use biscuit_auth::builder::{BlockBuilder, Term};
use biscuit_auth::{AuthorizerBuilder, Biscuit, KeyPair, PrivateKey, PublicKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a token does not allow what was asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token was revoked ({0})")]
    Revoked(String),
    #[error("the token does not allow this: {0}")]
    Denied(String),
    #[error("{0}")]
    Store(String),
}

/// A right a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Read,
    Write,
}

impl Right {
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
        }
    }
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub folder: PathBuf,
    pub rights: Vec<Right>,
    pub session: String,
    pub generation: u64,
    pub expires: SystemTime,
}

/// A verified token: who it is (its first revocation id, hex) and what it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub id: String,
    pub session: String,
    pub generation: u64,
    pub folder: PathBuf,
}

/// What `ward token inspect` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub id: String,
    pub blocks: Vec<String>,
    pub revocation_ids: Vec<String>,
    pub revoked: bool,
    pub valid_signature: bool,
}

fn folder_text(p: &Path) -> String {
    let s = p.to_string_lossy().into_owned();
    if s.ends_with('/') {
        s
    } else {
        s + "/"
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn invalid(e: impl std::fmt::Display) -> TokenError {
    TokenError::Invalid(e.to_string())
}

/// The root key and the revocation set, in a directory of their own (0700).
pub struct Authority {
    key: KeyPair,
    dir: PathBuf,
    cache: Mutex<HashMap<String, Biscuit>>,
}

const KEY_FILE: &str = "token-root.key";

/// Bounds on a token's Datalog. Facts and iterations bound the work; biscuit's default time
/// bound (1 ms) made valid tokens fail on a busy machine (a commit refused with "Reached
/// Datalog execution limits" while the test suite ran on two cores): the clock is only a
/// backstop here. Past any bound the token is refused.
const LIMITS: biscuit_auth::AuthorizerLimits = biscuit_auth::AuthorizerLimits {
    max_facts: 1000,
    max_iterations: 100,
    max_time: Duration::from_millis(250),
};
const REVOKED_FILE: &str = "revoked";

impl Authority {
    /// Open the root key in `dir`, making one (0600, in a 0700 directory) the first time.
    pub fn open(dir: &Path) -> Result<Authority, TokenError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let store =
            |e: std::io::Error, what: &Path| TokenError::Store(format!("{}: {e}", what.display()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| store(e, dir))?;
        let path = dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(hex) => {
                let pk = PrivateKey::from_bytes_hex(hex.trim(), biscuit_auth::Algorithm::Ed25519)
                    .map_err(|e| TokenError::Store(format!("{}: {e}", path.display())))?;
                KeyPair::from(&pk)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kp = KeyPair::new();
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| store(e, &tmp))?;
                std::io::Write::write_all(&mut f, kp.private().to_bytes_hex().as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| store(e, &tmp))?;
                std::fs::rename(&tmp, &path).map_err(|e| store(e, &path))?;
                kp
            }
            Err(e) => return Err(store(e, &path)),
        };
        let mode = std::fs::metadata(&path)
            .map_err(|e| store(e, &path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TokenError::Store(format!(
                "{} is readable by others (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            )));
        }
        Ok(Authority {
            key,
            dir: dir.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// Mint a token for `g`.
    pub fn issue(&self, g: &Grant) -> Result<String, TokenError> {
        let mut code = String::from("folder({folder});\nsession({session});\ngeneration({gen});\n");
        for r in &g.rights {
            code.push_str(&format!("right(\"{}\");\n", r.as_str()));
        }
        code.push_str("check if time($t), $t <= {exp};\n");
        let params = HashMap::from([
            ("folder".to_string(), Term::Str(folder_text(&g.folder))),
            ("session".to_string(), Term::Str(g.session.clone())),
            ("gen".to_string(), Term::Integer(g.generation as i64)),
            ("exp".to_string(), Term::Date(secs(g.expires))),
        ]);
        Biscuit::builder()
            .code_with_params(code, params, HashMap::new())
            .and_then(|b| b.build(&self.key))
            .and_then(|t| t.to_base64())
            .map_err(invalid)
    }

    fn parse(&self, token: &str) -> Result<Biscuit, TokenError> {
        let token = token.trim();
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            return Ok(b.clone());
        }
        let b = Biscuit::from_base64(token, self.key.public()).map_err(invalid)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(token.to_string(), b.clone());
        Ok(b)
    }

    fn revoked_set(&self) -> Result<Vec<String>, TokenError> {
        match std::fs::read_to_string(self.dir.join(REVOKED_FILE)) {
            Ok(t) => Ok(t.lines().map(|l| l.trim().to_string()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(TokenError::Store(format!(
                "{}: {e} (Ward cannot tell revoked tokens, so it trusts none)",
                self.dir.join(REVOKED_FILE).display()
            ))),
        }
    }

    fn facts(b: &Biscuit) -> Result<(String, u64, PathBuf), TokenError> {
        let mut auth = AuthorizerBuilder::new()
            .code("allow if true;")
            .map(|a| a.set_limits(LIMITS))
            .and_then(|a| a.build(b))
            .map_err(invalid)?;
        let s: Vec<(String,)> = auth.query("data($s) <- session($s)").map_err(invalid)?;
        let g: Vec<(i64,)> = auth.query("data($g) <- generation($g)").map_err(invalid)?;
        let f: Vec<(String,)> = auth.query("data($f) <- folder($f)").map_err(invalid)?;
        match (s.first(), g.first(), f.first()) {
            (Some(s), Some(g), Some(f)) => Ok((s.0.clone(), g.0 as u64, PathBuf::from(&f.0))),
            _ => Err(TokenError::Invalid("not a Ward grant token".into())),
        }
    }

    /// Check that `token` allows `right` on `path` now: signature, revocation, expiry, folder,
    /// right, and every check its holder added.
    pub fn verify(&self, token: &str, right: Right, path: &Path) -> Result<Verified, TokenError> {
        let b = self.parse(token)?;
        let ids: Vec<String> = b.revocation_identifiers().iter().map(hex::encode).collect();
        let revoked = self.revoked_set()?;
        if let Some(id) = ids.iter().find(|i| revoked.contains(i)) {
            return Err(TokenError::Revoked(format!("revocation id {}…", &id[..16])));
        }
        let (session, generation, folder) = Self::facts(&b)?;
        if revoked.contains(&format!("session:{session}")) {
            return Err(TokenError::Revoked(format!("session {session}")));
        }
        let resource = if path.is_dir() {
            folder_text(path)
        } else {
            path.to_string_lossy().into_owned()
        };
        let mut auth = AuthorizerBuilder::new()
            .code_with_params(
                "operation({op});\nresource({res});\n\
                 allow if folder($f), resource($r), $r.starts_with($f), operation($op), right($op);",
                HashMap::from([
                    ("op".to_string(), Term::Str(right.as_str().into())),
                    ("res".to_string(), Term::Str(resource)),
                ]),
                HashMap::new(),
            )
            .map(|a| a.time().set_limits(LIMITS))
            .and_then(|a| a.build(&b))
            .map_err(invalid)?;
        auth.authorize().map_err(|e| {
            TokenError::Denied(match e {
                biscuit_auth::error::Token::FailedLogic(l) => {
                    let text = format!("{l:?}");
                    if text.contains("time") {
                        "it has expired (or a holder narrowed its time)".into()
                    } else {
                        format!(
                            "{} on {} is outside what it grants",
                            right.as_str(),
                            path.display()
                        )
                    }
                }
                other => other.to_string(),
            })
        })?;
        Ok(Verified {
            id: ids.first().cloned().unwrap_or_default(),
            session,
            generation,
            folder,
        })
    }

    /// Revoke a token (every block's revocation id).
    pub fn revoke(&self, token: &str) -> Result<Vec<String>, TokenError> {
        let b = self.parse(token)?;
        let ids: Vec<String> = b.revocation_identifiers().iter().map(hex::encode).collect();
        self.add_revoked(&ids)?;
        Ok(ids)
    }

    /// Revoke every token of a session.
    pub fn revoke_session(&self, session: &str) -> Result<(), TokenError> {
        self.add_revoked(&[format!("session:{session}")])
    }

    fn add_revoked(&self, lines: &[String]) -> Result<(), TokenError> {
        use std::io::Write;
        let p = self.dir.join(REVOKED_FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&p)
            .map_err(|e| TokenError::Store(format!("{}: {e}", p.display())))?;
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| TokenError::Store(format!("{}: {e}", p.display())))
    }

    /// After a commit: verify `token` for writing `folder` and issue the next generation.
    /// The caller stores it, then revokes the old one ([`Authority::rotate`] does both).
    pub fn next_generation(
        &self,
        token: &str,
        folder: &Path,
        ttl: Duration,
    ) -> Result<(String, Verified), TokenError> {
        let v = self.verify(token, Right::Write, folder)?;
        let next = self.issue(&Grant {
            folder: v.folder.clone(),
            rights: vec![Right::Read, Right::Write],
            session: v.session.clone(),
            generation: v.generation + 1,
            expires: SystemTime::now() + ttl,
        })?;
        Ok((next, v))
    }

    /// [`Authority::next_generation`], then revoke the old token.
    pub fn rotate(
        &self,
        token: &str,
        folder: &Path,
        ttl: Duration,
    ) -> Result<(String, Verified), TokenError> {
        let (next, v) = self.next_generation(token, folder, ttl)?;
        self.revoke(token)?;
        Ok((next, v))
    }

    /// Everything a token says, and whether Ward still honours it.
    pub fn inspect(&self, token: &str) -> Result<Inspection, TokenError> {
        let b = self.parse(token)?;
        let ids: Vec<String> = b.revocation_identifiers().iter().map(hex::encode).collect();
        let revoked = self.revoked_set()?;
        let session_revoked = Self::facts(&b)
            .map(|(s, _, _)| revoked.contains(&format!("session:{s}")))
            .unwrap_or(false);
        Ok(Inspection {
            id: ids.first().cloned().unwrap_or_default(),
            blocks: (0..b.block_count())
                .map(|i| b.print_block_source(i).unwrap_or_default())
                .collect(),
            revoked: session_revoked || ids.iter().any(|i| revoked.contains(i)),
            revocation_ids: ids,
            valid_signature: true,
        })
    }
}

/// How to narrow a token.
#[derive(Debug, Clone, Default)]
pub struct Attenuation {
    pub read_only: bool,
    /// Only this folder (inside the token's).
    pub folder: Option<PathBuf>,
    pub expires: Option<SystemTime>,
}

/// Narrow `token` offline (anyone holding it can; only `root` — the public key — is needed to
/// check the signature chain). The result allows at most what both allow.
pub fn attenuate(token: &str, root: PublicKey, a: &Attenuation) -> Result<String, TokenError> {
    let b = Biscuit::from_base64(token.trim(), root).map_err(invalid)?;
    let mut code = String::new();
    let mut params = HashMap::new();
    if a.read_only {
        code.push_str("check if operation(\"read\");\n");
    }
    if let Some(f) = &a.folder {
        code.push_str("check if resource($r), $r.starts_with({sub});\n");
        params.insert("sub".to_string(), Term::Str(folder_text(f)));
    }
    if let Some(t) = a.expires {
        code.push_str("check if time($t), $t <= {exp};\n");
        params.insert("exp".to_string(), Term::Date(secs(t)));
    }
    if code.is_empty() {
        return Err(TokenError::Invalid(
            "nothing to narrow: say --read-only, --folder or --expires".into(),
        ));
    }
    let block = BlockBuilder::new()
        .code_with_params(code, params, HashMap::new())
        .map_err(invalid)?;
    b.append(block).and_then(|t| t.to_base64()).map_err(invalid)
}

#[cfg(test)]
mod tests;

//! Where credentials' secrets come from, and Ward's own store for them.
//!
//! - `env:NAME`: a variable of the environment `ward run` starts in (removed from the
//!   agent's).
//! - `store:NAME`: Ward's store, `$XDG_CONFIG_HOME/ward/secrets/` (`ward secret set NAME`):
//!   each secret sealed with ChaCha20-Poly1305 under a key kept beside it (mode 0600), its
//!   name bound in as associated data. That protects a copy of the store file alone (a
//!   backup, a synced folder), not against whoever can read the key; on a desktop the
//!   keychain is the better home.
//! - `keychain:NAME`: the desktop's keychain through the Secret Service API, by the `secret-tool`
//!   client (libsecret), with the attributes `service=ward name=NAME`.
//!
//! A secret is never written to a record, a message or the agent's environment.

use anyhow::{bail, Context};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use ward_core::{Manifest, SecretSource};
use ward_net::credentials::Credential;

/// The store's folder: beside the audit log's signing keys.
pub fn store_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("WARD_SECRET_DIR") {
        return Ok(PathBuf::from(d));
    }
    let paths = ward_audit::LogPaths::default_paths()?;
    Ok(paths
        .keys
        .parent()
        .map_or_else(|| paths.keys.join("secrets"), |p| p.join("secrets")))
}

/// One sealed secret as stored.
#[derive(Serialize, Deserialize, Clone)]
struct Sealed {
    nonce: String,
    sealed: String,
    /// When it was set (seconds since the epoch).
    set: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct File {
    version: u32,
    secrets: BTreeMap<String, Sealed>,
}

/// Ward's secret store in a folder.
pub struct Store {
    dir: PathBuf,
}

/// A stored secret's name and when it was set.
pub struct Listed {
    pub name: String,
    pub set: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A name in the store: what a manifest's `store:NAME` may say.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        bail!(
            "`{}` is not a secret's name: 1-128 characters of letters, digits, `_`, `-` and `.`",
            ward_core::inert::line(name)
        );
    }
    Ok(())
}

impl Store {
    pub fn open(dir: PathBuf) -> Store {
        Store { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("store.json")
    }

    /// The key, made on first use (0600, in a 0700 folder).
    fn key(&self, create: bool) -> anyhow::Result<LessSafeKey> {
        let path = self.dir.join("key");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                // A store with entries and no key: they could never be opened again.
                if !self.load()?.secrets.is_empty() {
                    bail!(
                        "{} is missing while {} holds secrets: restore the key (or remove the \
                         store to start again)",
                        path.display(),
                        self.file().display()
                    );
                }
                std::fs::create_dir_all(&self.dir)
                    .with_context(|| format!("cannot create {}", self.dir.display()))?;
                let _ = std::fs::set_permissions(
                    &self.dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                );
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k).context("no randomness for the store's key")?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .and_then(|mut f| f.write_all(&k).and_then(|()| f.sync_all()))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                k.to_vec()
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| anyhow::anyhow!("{} is not a store key (32 bytes)", path.display()))?;
        Ok(LessSafeKey::new(key))
    }

    fn load(&self) -> anyhow::Result<File> {
        match ward_core::bounded::read_regular(&self.file(), 16 << 20) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not a secret store", self.file().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File {
                version: 1,
                ..File::default()
            }),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.file().display())),
        }
    }

    fn save(&self, f: &File) -> anyhow::Result<()> {
        let tmp = self.dir.join(".store.json.new");
        let _ = std::fs::remove_file(&tmp);
        let text = serde_json::to_vec_pretty(f)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut h| h.write_all(&text).and_then(|()| h.sync_all()))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, self.file())
            .with_context(|| format!("cannot replace {}", self.file().display()))?;
        Ok(())
    }

    /// One change at a time (an exclusive lock on the store's folder), the folder kept 0700.
    fn lock(&self) -> anyhow::Result<std::fs::File> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", self.dir.display()))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(&self.dir)
            .with_context(|| format!("cannot open {}", self.dir.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
            bail!("cannot lock {}", self.dir.display());
        }
        Ok(f)
    }

    pub fn set(&self, name: &str, secret: &str) -> anyhow::Result<()> {
        check_name(name)?;
        if secret.len() > 8192 {
            bail!("the secret is longer than 8 KiB");
        }
        let _one = self.lock()?;
        let key = self.key(true)?;
        let mut f = self.load()?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).context("no randomness")?;
        let mut data = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut data,
        )
        .map_err(|_| anyhow::anyhow!("cannot seal the secret"))?;
        let set = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        f.secrets.insert(
            name.to_string(),
            Sealed {
                nonce: hex(&nonce),
                sealed: hex(&data),
                set,
            },
        );
        self.save(&f)
    }

    pub fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        let f = self.load()?;
        let Some(s) = f.secrets.get(name) else {
            return Ok(None);
        };
        let key = self.key(false)?;
        let (Some(nonce), Some(mut data)) = (unhex(&s.nonce), unhex(&s.sealed)) else {
            bail!("the store's entry for `{name}` is damaged");
        };
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| anyhow::anyhow!("the store's entry for `{name}` is damaged"))?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "the store's entry for `{name}` does not open with the store's key (changed \
                     or moved from another store); set it again with `ward secret set {name}`"
                )
            })?;
        Ok(Some(
            String::from_utf8(plain.to_vec()).context("the secret is not UTF-8")?,
        ))
    }

    pub fn list(&self) -> anyhow::Result<Vec<Listed>> {
        Ok(self
            .load()?
            .secrets
            .into_iter()
            .map(|(name, s)| Listed { name, set: s.set })
            .collect())
    }

    /// Whether it was there.
    pub fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let _one = self.lock()?;
        let mut f = self.load()?;
        let had = f.secrets.remove(name).is_some();
        if had {
            self.save(&f)?;
        }
        Ok(had)
    }
}

/// The keychain's client (`secret-tool`, from libsecret), or why there is none.
fn secret_tool() -> anyhow::Result<&'static str> {
    const PATHS: [&str; 2] = ["/usr/bin/secret-tool", "/bin/secret-tool"];
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        bail!(
            "the keychain needs a desktop session (no D-Bus session bus here); use \
             `store:NAME` (`ward secret set NAME`) instead"
        );
    }
    PATHS
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the keychain is reached through `secret-tool` (Debian: apt install \
                 libsecret-tools)"
            )
        })
}

/// The secret stored in the keychain under `name`.
pub fn keychain_get(name: &str) -> anyhow::Result<Option<String>> {
    let tool = secret_tool()?;
    let out = std::process::Command::new(tool)
        .args(["lookup", "service", "ward", "name", name])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8(out.stdout).context("the secret is not UTF-8")?,
    ))
}

/// Store `secret` in the keychain under `name`.
pub fn keychain_set(name: &str, secret: &str) -> anyhow::Result<()> {
    let tool = secret_tool()?;
    let mut child = std::process::Command::new(tool)
        .args([
            "store",
            "--label",
            &format!("Ward: {name}"),
            "service",
            "ward",
            "name",
            name,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {tool}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(secret.as_bytes())?;
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("the keychain refused to store `{name}` ({st})");
    }
    Ok(())
}

/// The session's credentials: each manifest entry's secret from its source, with a fresh
/// placeholder. A secret that cannot be had stops the session, saying where it was looked for.
pub fn resolve(m: &Manifest) -> anyhow::Result<Vec<Credential>> {
    let mut out = Vec::new();
    let store = Store::open(store_dir()?);
    for c in &m.credentials {
        if let Some(v) = c.unless_env.iter().find(|v| std::env::var_os(v).is_some()) {
            eprintln!(
                "ward: credential `{}` ({}) is not used: {v} is set (the agent's requests go \
                 elsewhere, and the agent holds that place's key itself)",
                c.name, c.origin
            );
            continue;
        }
        let secret = match &c.source {
            SecretSource::Env(v) => std::env::var(v).ok(),
            SecretSource::Store(n) => store.get(n)?,
            SecretSource::Keychain(n) => keychain_get(n)
                .with_context(|| format!("credential `{}` ({})", c.name, c.origin))?,
        };
        let secret = secret.filter(|s| !s.trim().is_empty());
        if secret.is_none() && c.optional {
            continue;
        }
        let Some(secret) = secret else {
            let how = match &c.source {
                SecretSource::Env(v) => {
                    format!("the variable {v} is not set in the environment `ward run` starts in")
                }
                SecretSource::Store(n) => {
                    format!("Ward's store has no `{n}`: `ward secret set {n}` adds it")
                }
                SecretSource::Keychain(n) => format!(
                    "the keychain has no secret with service=ward name={n}: `ward secret set \
                     --keychain {n}` adds it"
                ),
            };
            bail!("credential `{}` ({}): {how}", c.name, c.origin);
        };
        match Credential::new(c.clone(), secret) {
            Ok(cred) => out.push(cred),
            // A profile's key of a shape Ward cannot stand in for: the agent keeps it as it
            // would without the profile's entry, and the person is told.
            Err(e) if c.optional => {
                eprintln!(
                    "ward: warning: credential `{}` ({}): {e}; the agent holds that key itself",
                    c.name, c.origin
                );
                continue;
            }
            Err(e) => bail!("credential `{}` ({}): {e}", c.name, c.origin),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_seals_lists_opens_and_removes() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path().join("secrets"));
        assert!(s.get("a").unwrap().is_none());
        s.set("a", "sk-live-0123456789").unwrap();
        s.set("b.c", "other").unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some("sk-live-0123456789"));
        let raw = std::fs::read_to_string(d.path().join("secrets/store.json")).unwrap();
        assert!(!raw.contains("sk-live"), "{raw}");
        let names: Vec<String> = s.list().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["a", "b.c"]);
        // An entry moved to another name does not open (the name is bound in).
        let mut f = s.load().unwrap();
        let a = f.secrets["a"].clone();
        f.secrets.insert("b.c".into(), a);
        s.save(&f).unwrap();
        assert!(s.get("b.c").is_err());
        assert!(s.remove("a").unwrap());
        assert!(!s.remove("a").unwrap());
        assert!(s.set("bad name", "x").is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("secrets/key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

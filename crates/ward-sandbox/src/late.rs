//! The part of the launcher's configuration that `ward run` works out while the sandbox is
//! already being built: the grants and what is masked or held read-only in them, the staged
//! layers, the agent's command, working directory and environment, the devices, sizes, the
//! agent's own home, the folder of the masks' own empty files and the certificates the agent
//! trusts. `ward run` forks the
//! launcher first (its namespaces, PID 1, the system part of the root and its Landlock rules
//! do not depend on any of this: whether Landlock is on and what may not be executed come from
//! the manifest alone, in the first configuration) and sends these bytes to PID 1 when they
//! are ready; PID 1 reads them to end of file before it mounts anything of the agent's.
//!
//! The format is Ward's own and versioned: `WARDLATE3`, then each field in a fixed order.
//! A list is a 32-bit little-endian count and its items; a path or text is a 32-bit length
//! and its bytes (texts UTF-8); a flag is one byte 0 or 1; an optional size is a flag and a
//! 64-bit little-endian number. Anything else (a short read, a count longer than what is
//! left, bytes after the end) is refused with the place it failed; the decoder never panics
//! (fuzzed: `fuzz/fuzz_targets/launch_late.rs`).

use crate::error::SandboxError;
use crate::launch::Config;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

const MAGIC: &[u8] = b"WARDLATE3";

/// The most bytes PID 1 reads (a larger configuration is refused, not cut).
pub const MAX_LEN: usize = 64 << 20;

/// The late fields of `cfg`, as bytes.
pub fn encode(cfg: &Config) -> Vec<u8> {
    let mut e = Enc(MAGIC.to_vec());
    e.count(cfg.grants.len());
    for (p, w) in &cfg.grants {
        e.path(p);
        e.flag(*w);
    }
    e.paths(&cfg.masks);
    e.paths(&cfg.read_only);
    e.count(cfg.stages.len());
    for (g, u, w) in &cfg.stages {
        e.path(g);
        e.path(u);
        e.path(w);
    }
    e.path(&cfg.cwd);
    e.count(cfg.argv.len());
    for a in &cfg.argv {
        e.bytes(a.as_bytes());
    }
    e.count(cfg.env.len());
    for (k, v) in &cfg.env {
        e.bytes(k.as_bytes());
        e.bytes(v.as_bytes());
    }
    e.paths(&cfg.devices);
    e.size(cfg.tmp_size);
    e.size(cfg.shm_size);
    e.flag(cfg.home.is_some());
    if let Some((host, inside)) = &cfg.home {
        e.path(host);
        e.path(inside);
    }
    e.flag(cfg.mask_from.is_some());
    if let Some(d) = &cfg.mask_from {
        e.path(d);
    }
    e.flag(cfg.trust.is_some());
    if let Some(t) = &cfg.trust {
        e.path(t);
    }
    e.0
}

/// Set the late fields of `cfg` from `b`.
pub fn decode(cfg: &mut Config, b: &[u8]) -> Result<(), SandboxError> {
    if b.len() > MAX_LEN {
        return Err(bad("longer than the limit"));
    }
    let mut d = Dec { b, at: 0 };
    if d.take(MAGIC.len())? != MAGIC {
        return Err(bad("not a Ward launcher configuration (version 3)"));
    }
    let grants = d.list(5, |d| Ok((d.path()?, d.flag()?)))?;
    let masks = d.paths()?;
    let read_only = d.paths()?;
    let stages = d.list(12, |d| Ok((d.path()?, d.path()?, d.path()?)))?;
    let cwd = d.path()?;
    let argv = d.list(4, |d| d.text())?;
    let env = d.list(8, |d| Ok((d.text()?, d.text()?)))?;
    let devices = d.paths()?;
    let tmp_size = d.size()?;
    let shm_size = d.size()?;
    let home = if d.flag()? {
        Some((d.path()?, d.path()?))
    } else {
        None
    };
    let mask_from = if d.flag()? { Some(d.path()?) } else { None };
    let trust = if d.flag()? { Some(d.path()?) } else { None };
    if d.at != b.len() {
        return Err(bad(&format!("{} bytes after the end", b.len() - d.at)));
    }
    cfg.grants = grants;
    cfg.masks = masks;
    cfg.read_only = read_only;
    cfg.stages = stages;
    cfg.cwd = cwd;
    cfg.argv = argv;
    cfg.env = env;
    cfg.devices = devices;
    cfg.tmp_size = tmp_size;
    cfg.shm_size = shm_size;
    cfg.home = home;
    cfg.mask_from = mask_from;
    cfg.trust = trust;
    Ok(())
}

fn bad(what: &str) -> SandboxError {
    SandboxError::Setup(format!("the launcher's configuration is damaged: {what}"))
}

struct Enc(Vec<u8>);

impl Enc {
    fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.extend_from_slice(b);
    }
    fn path(&mut self, p: &std::path::Path) {
        self.bytes(p.as_os_str().as_bytes());
    }
    fn paths(&mut self, ps: &[PathBuf]) {
        self.count(ps.len());
        for p in ps {
            self.path(p);
        }
    }
    fn flag(&mut self, f: bool) {
        self.0.push(u8::from(f));
    }
    fn size(&mut self, s: Option<u64>) {
        self.flag(s.is_some());
        if let Some(n) = s {
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }
}

struct Dec<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SandboxError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| bad(&format!("cut short at byte {}", self.at)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<usize, SandboxError> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(w) as usize)
    }
    /// A count of items each at least `min` bytes long: more than what is left cannot be.
    fn count(&mut self, min: usize) -> Result<usize, SandboxError> {
        let at = self.at;
        let n = self.u32()?;
        if n.saturating_mul(min) > self.b.len() - self.at {
            return Err(bad(&format!(
                "a count at byte {at} says more than what follows"
            )));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'a [u8], SandboxError> {
        let n = self.u32()?;
        self.take(n)
    }
    fn path(&mut self) -> Result<PathBuf, SandboxError> {
        Ok(PathBuf::from(OsStr::from_bytes(self.bytes()?)))
    }
    /// A count, then that many items, each at least `min` bytes (the count is checked
    /// against what follows before anything is allocated).
    fn list<T>(
        &mut self,
        min: usize,
        mut one: impl FnMut(&mut Self) -> Result<T, SandboxError>,
    ) -> Result<Vec<T>, SandboxError> {
        let n = self.count(min)?;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            out.push(one(self)?);
        }
        Ok(out)
    }
    fn paths(&mut self) -> Result<Vec<PathBuf>, SandboxError> {
        self.list(4, |d| d.path())
    }
    fn text(&mut self) -> Result<String, SandboxError> {
        let at = self.at;
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| bad(&format!("text at byte {at} is not UTF-8")))
    }
    fn flag(&mut self) -> Result<bool, SandboxError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(bad(&format!("a flag of {x} at byte {}", self.at - 1))),
        }
    }
    fn size(&mut self) -> Result<Option<u64>, SandboxError> {
        if !self.flag()? {
            return Ok(None);
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(Some(u64::from_le_bytes(w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn full() -> Config {
        let mut c = Config::new(
            "/s/root".into(),
            "/home/u/p".into(),
            vec!["sh".into(), "-c".into(), "échο".into()],
        );
        c.grants = vec![("/home/u/p".into(), true), ("/data".into(), false)];
        c.masks = vec!["/home/u/p/.env".into()];
        c.read_only = vec!["/home/u/p/.git".into()];
        c.stages = vec![("/home/u/p".into(), "/s/up".into(), "/s/work".into())];
        c.env = vec![
            ("PATH".into(), "/usr/bin".into()),
            ("X".into(), String::new()),
        ];
        c.devices = vec!["/dev/dri/renderD128".into()];
        c.tmp_size = Some(1 << 30);
        c.shm_size = None;
        c.home = Some(("/s/homes/default".into(), "/home/u".into()));
        c.mask_from = Some("/s/masks".into());
        c.trust = Some("/s/trust.pem".into());
        // A path that is not UTF-8 travels as it is.
        c.masks.push(PathBuf::from(std::ffi::OsString::from_vec(
            b"/home/u/p/\xff.key".to_vec(),
        )));
        c
    }

    #[test]
    fn what_is_encoded_is_decoded() {
        let c = full();
        let b = encode(&c);
        let mut d = Config::new("/s/root".into(), PathBuf::new(), vec![]);
        decode(&mut d, &b).unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn damaged_bytes_are_refused_with_the_place() {
        let b = encode(&full());
        let mut d = Config::new("/s/root".into(), PathBuf::new(), vec![]);
        for cut in [0, 5, MAGIC.len(), b.len() / 2, b.len() - 1] {
            let e = decode(&mut d, &b[..cut]).unwrap_err().to_string();
            assert!(e.contains("damaged"), "{cut}: {e}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&mut d, &longer)
            .unwrap_err()
            .to_string()
            .contains("after the end"));
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&mut d, &huge)
            .unwrap_err()
            .to_string()
            .contains("says more"));
        // Nothing was set from a refused message.
        assert!(d.grants.is_empty() && d.argv.is_empty());
    }
}

//! Session state on disk, typed and versioned: `session.json` while a session runs (the kill
//! switch and `ward status` read it) and `stage.json` while its staged changes wait for review
//! (the review, and later the console, read it). Files without a `version` are version 1 (the
//! first Ward wrote none); a file from a newer Ward is refused with a clear error rather than
//! half-read.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The version this Ward writes and reads.
pub const VERSION: u32 = 1;

fn v1() -> u32 {
    1
}

/// `session.json`: a running session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionFile {
    #[serde(default = "v1")]
    pub version: u32,
    pub session: String,
    /// The launcher's pid and its start time (clock ticks since boot), which tell it from a
    /// recycled pid.
    pub pid: u32,
    pub start_time: Option<u64>,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    /// RFC 3339.
    pub started: String,
    /// `ward run`'s own pid and start time: a session whose launcher is gone is still
    /// finishing (its record, its limits' counts) while these live.
    #[serde(default)]
    pub supervisor: Option<u32>,
    #[serde(default)]
    pub supervisor_start: Option<u64>,
    /// The session's cgroup folders, removed by whoever finds the session dead (a `ward run`
    /// killed outright cannot remove them itself).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// `stage.json`: a session's staged grants, waiting for review.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageFile {
    #[serde(default = "v1")]
    pub version: u32,
    pub session: String,
    /// RFC 3339, and nanoseconds since the epoch (what is older than this in the real folder
    /// was not changed by the user during the session).
    pub started: String,
    pub started_ns: u64,
    pub command: Vec<String>,
    pub cwd: PathBuf,
    pub stages: Vec<ward_stage::Stage>,
    /// One capability token per stage (the right to write its grant at review).
    pub tokens: Vec<String>,
    /// The manifest whose file rules judge the changes at review (`None`: command-line grants).
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    #[serde(default)]
    pub managed: Vec<PathBuf>,
    /// Per stage, when it began (nanoseconds), where that differs from `started_ns`: the
    /// agent's settings held at the end of the session begin when they were put back.
    #[serde(default)]
    pub stage_started_ns: Vec<Option<u64>>,
}

impl StageFile {
    /// When stage `i` began: what is older than this in its real folder was not changed.
    pub fn started_of(&self, i: usize) -> u64 {
        self.stage_started_ns
            .get(i)
            .copied()
            .flatten()
            .unwrap_or(self.started_ns)
    }
}

/// Read one of these files; a damaged file or one from a newer Ward is an error naming it.
pub fn read<T: for<'de> Deserialize<'de> + Versioned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path)?;
    let v: T = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
    if v.version() > VERSION {
        anyhow::bail!(
            "{} was written by a newer Ward (state version {}, this one reads {VERSION}); use \
             that Ward, or update this one",
            path.display(),
            v.version()
        );
    }
    Ok(v)
}

/// Write `v` to `path` atomically (a temporary file, synced, renamed over it).
pub fn write<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The new name is on disk too.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Write `v` to `path` atomically (a temporary file renamed over it) without waiting for the
/// disk: see [`sync`].
pub fn write_in_place<T: Serialize>(path: &Path, v: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Make a file written by [`write_in_place`] durable, with its name (best effort).
pub fn sync(path: &Path) {
    let _ = std::fs::File::open(path).and_then(|f| f.sync_all());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
}

/// The version a state file says it is.
pub trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for SessionFile {
    fn version(&self) -> u32 {
        self.version
    }
}

impl Versioned for StageFile {
    fn version(&self) -> u32 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_version_is_version_1_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("session.json");
        std::fs::write(
            &p,
            r#"{"session":"s","pid":1,"start_time":5,"command":["a"],"cwd":"/","started":"t"}"#,
        )
        .unwrap();
        let s: SessionFile = read(&p).unwrap();
        assert_eq!((s.version, s.pid, s.start_time), (1, 1, Some(5)));
        std::fs::write(
            &p,
            r#"{"version":2,"session":"s","pid":1,"start_time":5,"command":["a"],"cwd":"/","started":"t"}"#,
        )
        .unwrap();
        let e = read::<SessionFile>(&p).unwrap_err().to_string();
        assert!(e.contains("newer Ward"), "{e}");
        std::fs::write(&p, "{").unwrap();
        assert!(read::<SessionFile>(&p)
            .unwrap_err()
            .to_string()
            .contains("damaged"));
    }
}

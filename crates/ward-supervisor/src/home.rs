//! The agent's own home: a folder under Ward's state (`homes/NAME`, kept between sessions),
//! bound read-write inside the sandbox at the path `HOME` names, so that an agent's login,
//! caches and settings work and persist, while the person's real home stays out of reach
//! (only what the manifest grants from it is mounted, on top).
//!
//! One session at a time uses a kept home (a lock beside it): a second agent writing the same
//! folder while another session mounts grants below it could swap the folders on the way. A
//! second session gets a fresh home in its session folder, removed at its end, and is told.

use anyhow::Context;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use ward_core::Manifest;

/// Places a home may not be at, below or above: what the sandbox makes of its own or shows
/// from the system (with the system folders and /etc files).
const NOT_HOME: &[&str] = &["/dev", "/proc", "/sys", "/etc"];

/// Places a home may be below but not at or above: the sandbox's /tmp is private (a home
/// there is the agent's folder in it), and nothing of /run is shown.
const NOT_HOME_ITSELF: &[&str] = &["/tmp", "/run"];

/// The agent's home for this session.
pub struct Home {
    /// The folder on the host.
    pub host: PathBuf,
    /// The path inside (what `HOME` says).
    pub inside: PathBuf,
    /// Kept between sessions (`homes/NAME`), or this session's own.
    pub kept: bool,
    /// Held for the session: the kept home is this session's alone.
    _lock: Option<std::fs::File>,
}

/// The agent's home, when it gets one: not when `HOME` is unset, not a plain absolute path,
/// `/`, at or around a place the sandbox makes or shows from the system, or at or inside a
/// grant (then the grant is the home, as the person chose); not without a state folder.
pub fn own(
    m: &Manifest,
    state: Option<&Path>,
    session_dir: &Path,
    name: &str,
) -> anyhow::Result<Option<Home>> {
    let (Some(home), Some(state)) = (std::env::var_os("HOME").map(PathBuf::from), state) else {
        return Ok(None);
    };
    let plain = home.is_absolute()
        && home
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let system = NOT_HOME
        .iter()
        .chain(ward_sandbox::launch::SYSTEM_RO)
        .chain(ward_sandbox::launch::ETC_FILES)
        .map(Path::new)
        .any(|s| home.starts_with(s) || s.starts_with(&home))
        || NOT_HOME_ITSELF
            .iter()
            .map(Path::new)
            .any(|s| s.starts_with(&home));
    if !plain || home == Path::new("/") || system {
        return Ok(None);
    }
    if m.files.iter().any(|g| home.starts_with(&g.path)) {
        return Ok(None);
    }
    let homes = state.join("homes");
    std::fs::create_dir_all(&homes)
        .with_context(|| format!("cannot create {}", homes.display()))?;
    let lock = open_lock(&homes.join(name))
        .with_context(|| format!("cannot lock the agent's home in {}", homes.display()))?;
    let free = try_lock(&lock);
    let (host, kept, lock) = if free {
        (homes.join(name), true, Some(lock))
    } else {
        eprintln!(
            "ward: another session is using the agent's home {}; this one gets a fresh home \
             that is not kept",
            ward_core::inert::path(&homes.join(name))
        );
        (session_dir.join("home"), false, None)
    };
    // The home folder and the grants must not hold each other: a home the agent could reach
    // through a grant could be swapped for a link between two sessions.
    if m.files
        .iter()
        .any(|g| host.starts_with(&g.path) || g.path.starts_with(&host))
    {
        anyhow::bail!(
            "the agent's home {} overlaps a grant; grant another folder, or set XDG_STATE_HOME \
             outside the grants",
            host.display()
        );
    }
    // A home the last session left settings in that Ward could not put back is closed until
    // a person has looked at them (see `guard`).
    let mark = unsettled_mark(&host);
    if kept && mark.exists() {
        let what = std::fs::read_to_string(&mark).unwrap_or_default();
        anyhow::bail!(
            "the agent's home {} holds settings that run code and that Ward could not put back \
             at the end of an earlier session ({}); check them, then remove {} to use this home \
             again",
            ward_core::inert::path(&host),
            ward_core::inert::line(what.trim()),
            ward_core::inert::path(&mark)
        );
    }
    match std::fs::create_dir(&host) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create the agent's home {}", host.display()))
        }
    }
    // Opened without following a link, and checked: a folder of this user's.
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(&host)
        .with_context(|| format!("the agent's home {} is not a folder", host.display()))?;
    let meta = dir.metadata()?;
    // SAFETY: getuid has no preconditions.
    if meta.uid() != unsafe { libc::getuid() } {
        anyhow::bail!(
            "the agent's home {} belongs to another user; remove it",
            host.display()
        );
    }
    // The agent's logins live here: its owner's alone.
    // SAFETY: fchmod on the descriptor we hold.
    if unsafe { libc::fchmod(dir.as_raw_fd(), 0o700) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot protect the agent's home {}", host.display()));
    }
    // The profile's first files (its nested sandbox off), only where the home lacks them: the
    // agent may have changed or removed them since, and its home is its own.
    if let Some(p) = &m.profile {
        for (rel, contents, _) in &p.seed {
            if let Err(e) = seed(&dir, rel, contents) {
                eprintln!(
                    "ward: warning: cannot write ~/{rel} in the agent's home {}: {e}",
                    ward_core::inert::path(&host)
                );
            }
        }
    }
    Ok(Some(Home {
        host,
        inside: home,
        kept,
        _lock: lock,
    }))
}

/// The mark of a home closed for settings Ward could not put back (beside it).
pub fn unsettled_mark(home: &Path) -> PathBuf {
    let mut m = home.as_os_str().to_owned();
    m.push(".unsettled");
    PathBuf::from(m)
}

/// Settings files tools read from the home, and whether a grant may bring one in (those that
/// can hold credentials are always hidden: only their settings can be passed, another way).
const TOOL_SETTINGS: &[(&str, bool)] = &[
    (".gitconfig", true),
    (".config/git/config", true),
    (".config/pip/pip.conf", true),
    (".pip/pip.conf", true),
    (".cargo/config.toml", true),
    (".condarc", true),
    (".yarnrc.yml", false),
    (".npmrc", false),
    (".pypirc", false),
    (".netrc", false),
];

/// Tools' settings files in the person's home (the path `HOME` names, on the host) that the
/// agent's own home does not have and no grant brings in: `(~/path, can be granted)`. Tools
/// inside run without them (npm with its default registry, git without a name).
pub fn settings_left_out(h: &Home, m: &Manifest) -> Vec<(String, bool)> {
    TOOL_SETTINGS
        .iter()
        .filter(|(rel, _)| {
            let real = h.inside.join(rel);
            // The person's own files may be links (stow, chezmoi): followed.
            std::fs::metadata(&real).is_ok_and(|t| t.is_file())
                && std::fs::symlink_metadata(h.host.join(rel)).is_err()
                && !m.files.iter().any(|g| real.starts_with(&g.path))
        })
        .map(|(rel, grantable)| (format!("~/{rel}"), *grantable))
        .collect()
}

/// The lock file of a kept home (beside it: `homes/NAME.lock`), opened, not taken.
fn open_lock(home: &Path) -> std::io::Result<std::fs::File> {
    let mut p = home.as_os_str().to_owned();
    p.push(".lock");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(PathBuf::from(p))
}

/// Take `lock` when no one holds it (a session holds its home's for its whole run).
fn try_lock(lock: &std::fs::File) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The lock of a kept home, taken when no session holds it; Err when one does.
pub fn lock_idle(home: &Path) -> anyhow::Result<std::fs::File> {
    let lock = open_lock(home)?;
    if !try_lock(&lock) {
        anyhow::bail!("its lock is held");
    }
    Ok(lock)
}

/// Where Ward keeps what it last accepted of a home's guarded settings (beside it, out of the
/// agent's reach): see `guard`.
pub fn guard_store(home: &Path) -> PathBuf {
    let mut m = home.as_os_str().to_owned();
    m.push(".guard");
    PathBuf::from(m)
}

/// Write `contents` at `rel` below the home `dir` unless something is there: every folder on
/// the way opened without following a link (the agent made them), the file created anew.
fn seed(dir: &std::fs::File, rel: &str, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsFd;
    let (parent, name) = crate::guard::parent_made(&dir.as_fd().try_clone_to_owned()?, rel)?;
    match crate::guard::create_new_at(&parent, &name) {
        Ok(f) => std::fs::File::from(f).write_all(contents.as_bytes()),
        // Something there already (a link included): the agent's, left as it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

use std::os::unix::fs::OpenOptionsExt;

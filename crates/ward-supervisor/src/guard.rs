//! The agent's own settings that run code later, held for review: its hooks, MCP servers,
//! permission allow-lists and shell start-up files in its home. The agent may change them
//! during the session (it sees its change, as in a staged grant); when it ends, what changed is
//! put back as it was and the agent's version waits in a stage of the session for `ward
//! review`, flagged as settings that run commands. So a prompt-injected agent cannot widen its
//! own permissions or plant a hook for its next session without a person seeing it.
//!
//! The home is the agent's to shape: every file is read and written below the home's
//! descriptor without following a link (`openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Files in every agent's home that run code in its later sessions, besides the shell start-up
/// files ([`ward_stage::classify::SHELL_RC`], the review's own list): git's and ssh's settings.
const ALSO: &[&str] = &[".gitconfig", ".ssh/config"];

/// Every agent's guarded files, as paths below its home.
pub fn always() -> impl Iterator<Item = String> {
    ward_stage::classify::SHELL_RC
        .iter()
        .map(|n| match *n {
            "config.fish" => ".config/fish/config.fish".to_string(),
            n => n.to_string(),
        })
        .chain(ALSO.iter().map(|s| s.to_string()))
}

/// A guarded file larger than this is not copied: it is held whole if it changed.
const LIMIT: u64 = 1 << 20;

/// What a guarded file was at the start.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Was {
    Missing,
    File(Vec<u8>),
    /// A file too large to copy, by its SHA-256.
    Large(String),
    /// A link, by its target.
    Link(Vec<u8>),
    /// A folder, a link on the way, something unreadable: never equal to anything, so a
    /// change cannot hide behind it.
    Other,
}

impl Was {
    fn same(&self, other: &Was) -> bool {
        *self != Was::Other && self == other
    }
}

/// The guarded files of a home at the start of a session.
pub struct Snapshot {
    home: PathBuf,
    files: Vec<(String, Was)>,
}

fn beneath(home: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(home.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated absolute path; the descriptor is owned at once.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor just returned, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read(dir: &OwnedFd, rel: &str) -> Was {
    let Ok(c) = CString::new(rel) else {
        return Was::Other;
    };
    // A link as the last part: its target (the folders on the way follow no link).
    let (parent, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    if let (Ok(p), Ok(n)) = (CString::new(parent), CString::new(name)) {
        if let Ok(pfd) = ward_sys::openat2(
            dir.as_fd(),
            &p,
            libc::O_PATH | libc::O_DIRECTORY,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        ) {
            let mut target = vec![0u8; 4096];
            // SAFETY: readlinkat into a buffer of the length passed.
            let r = unsafe {
                libc::readlinkat(
                    pfd.as_raw_fd(),
                    n.as_ptr(),
                    target.as_mut_ptr() as *mut libc::c_char,
                    target.len(),
                )
            };
            if r >= 0 {
                target.truncate(r as usize);
                return Was::Link(target);
            }
        }
    }
    match ward_sys::openat2(
        dir.as_fd(),
        &c,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    ) {
        Ok(fd) => {
            let f = std::fs::File::from(fd);
            match f.metadata() {
                Ok(m) if m.is_file() && m.len() <= LIMIT => {
                    let mut v = Vec::new();
                    match f.take(LIMIT + 1).read_to_end(&mut v) {
                        Ok(_) => Was::File(v),
                        Err(_) => Was::Other,
                    }
                }
                Ok(m) if m.is_file() => {
                    use sha2::{Digest, Sha256};
                    let mut h = Sha256::new();
                    let mut f = f;
                    match std::io::copy(&mut f, &mut h) {
                        Ok(_) => Was::Large(format!("{:x}", h.finalize())),
                        Err(_) => Was::Other,
                    }
                }
                _ => Was::Other,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Was::Missing,
        Err(_) => Was::Other,
    }
}

/// The guarded files of `home` now: `profile`'s and [`always`], less those `granted` (a
/// grant mounted there is the person's file, not the agent's).
pub fn snapshot(
    home: &Path,
    profile: &[String],
    granted: impl Fn(&str) -> bool,
) -> Option<Snapshot> {
    let dir = beneath(home).ok()?;
    let files = always()
        .chain(profile.iter().cloned())
        .filter(|rel| !granted(rel))
        .map(|rel| {
            let was = read(&dir, &rel);
            (rel, was)
        })
        .collect();
    Some(Snapshot {
        home: home.to_path_buf(),
        files,
    })
}

/// One guarded file the agent changed, held.
pub struct Held {
    pub rel: String,
    /// What Ward did with the agent's version.
    pub what: &'static str,
    /// Put back as it was (else the agent's version is still in the home).
    pub restored: bool,
}

/// The folder of `rel` below `dir` (made when missing, never through a link) and its name.
fn parent_of(dir: &OwnedFd, rel: &str) -> std::io::Result<(OwnedFd, CString)> {
    let parts: Vec<&str> = rel.split('/').collect();
    let Some((name, folders)) = parts.split_last() else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let mut cur = dir.try_clone()?;
    for f in folders {
        let c = CString::new(*f)?;
        let open = |at: &OwnedFd| {
            ward_sys::openat2(
                at.as_fd(),
                &c,
                libc::O_DIRECTORY | libc::O_RDONLY,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
            )
        };
        cur = match open(&cur) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // SAFETY: a directory descriptor we hold and a NUL-terminated name.
                if unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                open(&cur)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok((cur, CString::new(*name)?))
}

/// Put `rel` back to `was` (a new file renamed over whatever is there; removed when it was
/// missing).
fn restore(dir: &OwnedFd, rel: &str, was: &Was) -> std::io::Result<()> {
    let (parent, name) = parent_of(dir, rel)?;
    match was {
        Was::Missing => {
            // SAFETY: unlinkat below a directory descriptor we hold.
            let r = unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) };
            let e = std::io::Error::last_os_error();
            if r != 0 && e.kind() != std::io::ErrorKind::NotFound {
                // A folder the agent made there: removed as a folder when empty, else left.
                // SAFETY: as above.
                if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) }
                    != 0
                {
                    return Err(e);
                }
            }
            Ok(())
        }
        Was::File(bytes) => {
            let tmp = CString::new(format!(".ward-restore-{}", std::process::id()))?;
            // SAFETY: a directory descriptor we hold and a plain name; O_EXCL with O_NOFOLLOW
            // makes a new file or fails.
            let fd = unsafe {
                libc::unlinkat(parent.as_raw_fd(), tmp.as_ptr(), 0);
                libc::openat(
                    parent.as_raw_fd(),
                    tmp.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o600,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the descriptor just returned, ours alone.
            let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            f.write_all(bytes)?;
            f.sync_all()?;
            // SAFETY: renameat within one directory we hold.
            if unsafe {
                libc::renameat(
                    parent.as_raw_fd(),
                    tmp.as_ptr(),
                    parent.as_raw_fd(),
                    name.as_ptr(),
                )
            } != 0
            {
                let e = std::io::Error::last_os_error();
                // A folder there: it stays, and so does the temporary's removal.
                // SAFETY: as above.
                unsafe { libc::unlinkat(parent.as_raw_fd(), tmp.as_ptr(), 0) };
                return Err(e);
            }
            Ok(())
        }
        Was::Link(t) => {
            let t = CString::new(t.clone())?;
            let tmp = CString::new(format!(".ward-restore-{}", std::process::id()))?;
            // SAFETY: symlinkat/renameat within one directory we hold.
            unsafe {
                libc::unlinkat(parent.as_raw_fd(), tmp.as_ptr(), 0);
                if libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), tmp.as_ptr()) != 0
                    || libc::renameat(
                        parent.as_raw_fd(),
                        tmp.as_ptr(),
                        parent.as_raw_fd(),
                        name.as_ptr(),
                    ) != 0
                {
                    let e = std::io::Error::last_os_error();
                    libc::unlinkat(parent.as_raw_fd(), tmp.as_ptr(), 0);
                    return Err(e);
                }
            }
            Ok(())
        }
        // Not restorable to what it was: left as it is (the caller fails closed).
        Was::Large(_) | Was::Other => Err(std::io::ErrorKind::Unsupported.into()),
    }
}

/// At the end of the session: every guarded file the agent changed is put back and its new
/// version copied to `upper` (a stage of the home, for review). Returns what was held.
pub fn hold(s: &Snapshot, upper: &Path) -> Vec<Held> {
    let Ok(dir) = beneath(&s.home) else {
        // The agent made its home unreadable to Ward: nothing can be checked or put back.
        return vec![Held {
            rel: ".".into(),
            what: "the home itself could not be opened (its permissions changed?)",
            restored: false,
        }];
    };
    let mut out = Vec::new();
    for (rel, was) in &s.files {
        let now = read(&dir, rel);
        if now.same(was) {
            continue;
        }
        // The agent's version, for review (a file; anything else is only reported).
        let copied = match &now {
            Was::File(bytes) => {
                let dst = upper.join(rel);
                dst.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&dst, bytes))
                    .is_ok()
            }
            _ => false,
        };
        let restored = restore(&dir, rel, was).is_ok();
        let what = match (restored, copied) {
            (true, true) => "put back as it was; the agent's version is held for review",
            (true, false) => "put back as it was (the agent's version was not a file)",
            (false, true) => {
                "left as the agent made it (it could not be put back); a copy is held for review"
            }
            (false, false) => "left as the agent made it (it could not be put back)",
        };
        out.push(Held {
            rel: rel.clone(),
            what,
            restored,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_held_and_put_back_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(home.join(".claude/settings.json"), "{}").unwrap();
        std::fs::write(outside.join("victim"), "victim").unwrap();
        let rels = vec![
            ".claude/settings.json".to_string(),
            ".gemini/settings.json".to_string(),
        ];
        let snap = snapshot(&home, &rels, |_| false).unwrap();
        // The agent: a hook in its settings, a new settings file, a .bashrc made a link out.
        std::fs::write(home.join(".claude/settings.json"), "{\"hooks\":1}").unwrap();
        std::fs::create_dir_all(home.join(".gemini")).unwrap();
        std::fs::write(home.join(".gemini/settings.json"), "{\"mcpServers\":1}").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), home.join(".bashrc")).unwrap();
        let upper = d.path().join("upper");
        let held = hold(&snap, &upper);
        let names: Vec<&str> = held.iter().map(|h| h.rel.as_str()).collect();
        assert_eq!(
            names,
            [".bashrc", ".claude/settings.json", ".gemini/settings.json"]
        );
        assert!(held.iter().all(|h| h.restored));
        assert_eq!(
            std::fs::read_to_string(home.join(".claude/settings.json")).unwrap(),
            "{}"
        );
        assert!(!home.join(".gemini/settings.json").exists());
        assert!(
            home.join(".bashrc").symlink_metadata().is_err(),
            "the link is gone"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "victim"
        );
        assert_eq!(
            std::fs::read_to_string(upper.join(".claude/settings.json")).unwrap(),
            "{\"hooks\":1}"
        );
        assert!(
            !upper.join(".bashrc").exists(),
            "a link's target is never copied"
        );
        // Nothing changed: nothing held.
        let snap = snapshot(&home, &rels, |_| false).unwrap();
        assert!(hold(&snap, &d.path().join("upper2")).is_empty());
    }
}

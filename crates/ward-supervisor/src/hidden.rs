//! Which hidden files the agent's programs opened. Each file the sandbox hides (keys,
//! credentials, `.npmrc`, the manifest's denies) is covered with an empty file of its own, made
//! here in the session folder and watched with inotify (`IN_OPEN`, once per file); at the end
//! the events say which were looked for, so the person learns that a tool ran without its
//! settings instead of wondering why npm used another registry.
//!
//! Folders the sandbox hides are covered with an unreadable empty folder: a program that looks
//! inside one is refused before anything can be seen, so those are not known.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// At most this many hidden files get their own watched cover (the rest share `/dev/null`).
const MAX: usize = 256;

/// The watched covers of a session.
pub struct Watch {
    fd: OwnedFd,
    /// Watch descriptor, hidden path.
    wds: Vec<(i32, PathBuf)>,
}

/// Make an empty cover in `dir` (named by its index in `masks`) for each hidden path that is a
/// file, and watch each. None when nothing is to be watched or inotify is not there (the
/// masks then share `/dev/null`, as before).
pub fn watch(dir: &Path, masks: &[PathBuf]) -> Option<Watch> {
    let files: Vec<(usize, &PathBuf)> = masks
        .iter()
        .enumerate()
        .filter(|(_, m)| std::fs::symlink_metadata(m).is_ok_and(|t| t.file_type().is_file()))
        .take(MAX)
        .collect();
    if files.is_empty() {
        return None;
    }
    // SAFETY: inotify_init1 with flags; the descriptor is owned at once.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor just returned, ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::create_dir(dir).ok()?;
    let mut wds = Vec::new();
    for (i, m) in files {
        let cover = dir.join(i.to_string());
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&cover)
            .and_then(|f| f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o444)));
        let Ok(c) = made.and_then(|()| Ok(CString::new(cover.as_os_str().as_bytes())?)) else {
            // Not made as it must be: no cover of its own (it shares /dev/null).
            let _ = std::fs::remove_file(&cover);
            continue;
        };
        // SAFETY: a descriptor we hold and a NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN | libc::IN_ONESHOT)
        };
        if wd < 0 {
            // Not watched: no cover of its own either (it shares /dev/null).
            let _ = std::fs::remove_file(&cover);
            continue;
        }
        wds.push((wd, m.clone()));
    }
    Some(Watch { fd, wds })
}

impl Watch {
    /// The hidden paths a program opened during the session.
    pub fn opened(self) -> Vec<PathBuf> {
        let mut fired = std::collections::BTreeSet::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // SAFETY: read into a buffer of the length passed.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut at = 0usize;
            let head = std::mem::size_of::<libc::inotify_event>();
            while at + head <= n as usize {
                // SAFETY: at least one event header lies at `at` (the kernel writes whole
                // events); read unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
                if ev.mask & libc::IN_OPEN != 0 {
                    fired.insert(ev.wd);
                }
                at += head + ev.len as usize;
            }
        }
        self.wds
            .into_iter()
            .filter(|(wd, _)| fired.contains(wd))
            .map(|(_, p)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_covers_that_were_opened_are_named() {
        let d = tempfile::tempdir().unwrap();
        let grant = d.path().join("p");
        std::fs::create_dir_all(grant.join(".aws")).unwrap();
        for f in [".npmrc", ".env", "id_rsa"] {
            std::fs::write(grant.join(f), "secret").unwrap();
        }
        let masks: Vec<PathBuf> = [".aws", ".npmrc", ".env", "id_rsa"]
            .iter()
            .map(|f| grant.join(f))
            .collect();
        let covers = d.path().join("masks");
        let w = watch(&covers, &masks).unwrap();
        // Folders get no cover; files one each, empty and read-only.
        assert!(!covers.join("0").exists());
        assert_eq!(std::fs::read(covers.join("1")).unwrap(), b"");
        assert!(
            std::fs::OpenOptions::new()
                .write(true)
                .open(covers.join("1"))
                .is_err()
                || nix_is_root()
        );
        // A program opens two of them (twice each).
        for _ in 0..2 {
            std::fs::read(covers.join("1")).unwrap();
            std::fs::read(covers.join("3")).unwrap();
        }
        assert_eq!(w.opened(), [grant.join(".npmrc"), grant.join("id_rsa")]);
        assert!(watch(&d.path().join("m2"), &[grant.join(".aws")]).is_none());
    }

    fn nix_is_root() -> bool {
        // SAFETY: getuid has no failure mode.
        unsafe { libc::getuid() == 0 }
    }
}

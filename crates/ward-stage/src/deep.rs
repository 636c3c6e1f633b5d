//! Paths longer than the kernel takes in one call (PATH_MAX, 4096 bytes): an agent can nest
//! folders as deep as it likes in its stage, and review, apply and discard must still reach
//! every entry. [`short`] opens the folders on the way one by one (never following a link)
//! and names the entry through `/proc/self/fd/N/NAME`, which any call takes.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Paths shorter than this are used as they are.
pub const DIRECT: usize = 3000;

/// A path any system call takes, with the folder descriptor it names kept open.
pub struct Short {
    _dir: Option<OwnedFd>,
    pub path: PathBuf,
}

impl AsRef<Path> for Short {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

fn open_dir(at: i32, name: &std::ffi::OsStr) -> std::io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes()).map_err(|_| std::io::Error::other("NUL in a path"))?;
    // SAFETY: openat with a valid C string; the result is owned at once.
    let fd = unsafe {
        libc::openat(
            at,
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `p` itself when short enough; else its folder opened a piece at a time and the entry named
/// through that descriptor. The first piece (shorter than [`DIRECT`]: the state folder or
/// the grant, which callers walk from) is opened as any path is; below it no link is followed.
pub fn short(p: &Path) -> std::io::Result<Short> {
    if p.as_os_str().len() < DIRECT {
        return Ok(Short {
            _dir: None,
            path: p.to_path_buf(),
        });
    }
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(std::io::Error::other("a long path without a name"));
    };
    let mut dir: Option<OwnedFd> = None;
    let mut first = PathBuf::new();
    let mut rest = parent.components().peekable();
    while let Some(c) = rest.peek() {
        if first.as_os_str().len() + c.as_os_str().len() + 1 >= DIRECT {
            break;
        }
        first.push(c);
        rest.next();
    }
    if !first.as_os_str().is_empty() {
        let c = CString::new(first.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("NUL in a path"))?;
        // SAFETY: open with a valid C string; the result is owned at once.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just opened.
        dir = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    for c in rest {
        let at = dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        dir = Some(match c {
            Component::Normal(n) => open_dir(at, n)?,
            Component::CurDir => continue,
            _ => return Err(std::io::Error::other("`..` in a long path")),
        });
    }
    let dir = match dir {
        Some(d) => d,
        None => open_dir(libc::AT_FDCWD, std::ffi::OsStr::new("."))?,
    };
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name);
    Ok(Short {
        _dir: Some(dir),
        path,
    })
}

/// Remove `p` and everything below it, however deep, whatever modes the agent left on the
/// folders (a folder without permissions is given them back first: it is ours).
pub fn remove_all(p: &Path) -> std::io::Result<()> {
    // std removes below a folder through descriptors: only the top path must be short.
    match std::fs::remove_dir_all(short(p)?) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(p);
    std::fs::remove_dir_all(short(p)?)
}

/// Give every folder below `p` (not following links) its owner's full permissions.
fn open_up(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(s) = short(&d) else { continue };
        match std::fs::symlink_metadata(&s) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::set_permissions(
                    &s,
                    std::fs::Permissions::from_mode(m.permissions().mode() | 0o700),
                );
            }
            _ => continue,
        }
        if let Ok(rd) = std::fs::read_dir(&s) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(d.join(e.file_name()));
                }
            }
        }
    }
}

/// Set the permission bits of `p` (not following a link).
pub fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(short(p)?, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// Run `f` on `p`; if it was refused for want of permission (an entry the agent made
/// unreadable in its stage, which is ours), give `p` its owner's read (and, for a folder,
/// search) permission for the call and put the mode back after.
pub fn readable<T>(p: &Path, f: impl Fn(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    use std::os::unix::fs::PermissionsExt;
    let s = short(p)?;
    match f(&s.path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let m = std::fs::symlink_metadata(&s)?;
            if m.file_type().is_symlink() {
                return Err(e);
            }
            let mode = m.permissions().mode();
            let add = if m.is_dir() { 0o500 } else { 0o400 };
            std::fs::set_permissions(&s, std::fs::Permissions::from_mode(mode | add))?;
            let r = f(&s.path);
            let _ = std::fs::set_permissions(&s, std::fs::Permissions::from_mode(mode));
            r
        }
        r => r,
    }
}

/// A relative path cut into pieces each shorter than [`DIRECT`], at component boundaries.
pub fn pieces(rel: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut last = PathBuf::new();
    for c in rel.components() {
        if !last.as_os_str().is_empty()
            && last.as_os_str().len() + c.as_os_str().len() + 1 >= DIRECT
        {
            out.push(std::mem::take(&mut last));
        }
        last.push(c);
    }
    out.push(last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_paths_are_reached_and_links_on_the_way_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let mut p = t.path().to_path_buf();
        for _ in 0..40 {
            p.push("d".repeat(200));
        }
        // Made step by step, as an agent would (create_dir_all takes whole paths).
        let mut cur = t.path().to_path_buf();
        let base = short(&cur).unwrap();
        drop(base);
        for c in p.strip_prefix(t.path()).unwrap().components() {
            cur.push(c);
            std::fs::create_dir(short(&cur).unwrap()).unwrap();
        }
        let f = p.join("f");
        assert!(f.as_os_str().len() > 8000);
        std::fs::write(short(&f).unwrap(), "deep\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(short(&f).unwrap()).unwrap(),
            "deep\n"
        );
        assert!(std::fs::read_dir(short(&p).unwrap()).unwrap().count() == 1);
        // A link among the deep folders on the way is refused.
        let mut at = t.path().to_path_buf();
        for _ in 0..20 {
            at.push("d".repeat(200));
        }
        std::os::unix::fs::symlink(t.path(), short(&at.join("l")).unwrap()).unwrap();
        let mut linked = at.join("l");
        for _ in 0..20 {
            linked.push("d".repeat(200));
        }
        assert!(short(&linked.join("f")).is_err());
        // Whatever modes were left, everything goes.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(short(&at).unwrap(), std::fs::Permissions::from_mode(0o0))
            .unwrap();
        remove_all(&t.path().join("d".repeat(200))).unwrap();
        assert!(!t.path().join("d".repeat(200)).exists());
        let parts = pieces(p.strip_prefix(t.path()).unwrap());
        assert!(parts.len() >= 3 && parts.iter().all(|x| x.as_os_str().len() < DIRECT));
        assert_eq!(
            parts.iter().collect::<PathBuf>(),
            p.strip_prefix(t.path()).unwrap()
        );
    }
}

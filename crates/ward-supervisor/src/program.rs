//! The agent's own program, looked for before the session starts the way the sandbox will
//! look for it: on the agent's `PATH`, among what is inside (the system folders, the grants,
//! the agent's own home). A program that is only on the host (`cargo` in `~/.cargo/bin`) is
//! explained at once, with the grant that would bring it in, instead of a bare exit 127.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use ward_sandbox::launch::SYSTEM_RO;

/// The agent's program cannot run inside: why, and what would bring it in (exit 127).
#[derive(Debug)]
pub struct NotInside(pub String);

impl std::fmt::Display for NotInside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotInside {}

/// What the sandbox will see of the host.
pub struct Inside<'a> {
    pub grants: &'a [PathBuf],
    /// The agent's own home: (folder on the host, path inside).
    pub home: Option<&'a (PathBuf, PathBuf)>,
    pub cwd: &'a Path,
}

impl Inside<'_> {
    /// Where `p` (a path inside) is on the host, when the sandbox shows it: below a grant or
    /// a system folder (followed to where it really is, which must be inside too), or in the
    /// agent's own home.
    fn host(&self, p: &Path) -> Option<PathBuf> {
        let shown = |q: &Path| {
            self.grants.iter().any(|g| q.starts_with(g))
                || SYSTEM_RO.iter().any(|s| q.starts_with(s))
        };
        if let Some((host, inside)) = self.home {
            if p.starts_with(inside) && !self.grants.iter().any(|g| p.starts_with(g)) {
                let h = host.join(p.strip_prefix(inside).ok()?);
                return h.is_file().then_some(h);
            }
        }
        if !shown(p) {
            return None;
        }
        let real = p.canonicalize().ok()?;
        (real.is_file() && shown(&real)).then_some(real)
    }
}

/// Check that `prog` will be found inside; `path` is the agent's `PATH`, `host_path` this
/// process's (where to look for the program to explain).
pub fn check(
    prog: &str,
    path: Option<&str>,
    host_path: Option<&str>,
    inside: &Inside,
) -> Result<(), NotInside> {
    let name = ward_core::inert::line(prog);
    if prog.contains('/') {
        let p = inside.cwd.join(prog);
        if inside.host(&p).is_some() {
            return Ok(());
        }
        return Err(NotInside(if p.is_file() {
            format!(
                "`{name}` is on this machine but not inside the sandbox: {}",
                advice(&p)
            )
        } else {
            format!("`{name}` does not exist")
        }));
    }
    let dirs = |p: Option<&str>| -> Vec<PathBuf> {
        p.unwrap_or("/usr/local/bin:/usr/bin:/bin")
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect()
    };
    if dirs(path)
        .iter()
        .any(|d| d.is_absolute() && inside.host(&d.join(prog)).is_some())
    {
        return Ok(());
    }
    let on_host = dirs(host_path.or(path))
        .into_iter()
        .map(|d| d.join(prog))
        .find(|c| c.is_file());
    Err(NotInside(match on_host {
        Some(p) => format!(
            "`{name}` is not inside the sandbox: on this machine it is {}, which no grant \
             brings in. {}",
            ward_core::inert::path(&p),
            advice(&p)
        ),
        None => format!("`{name}` is not found, inside the sandbox or on this machine's PATH"),
    }))
}

/// The folder to grant for a program at `p`: its folder, or the folder above a `bin` (not
/// above `~/.local/bin`: `~/.local` holds Ward's own state and more than programs).
fn grant_for(p: &Path) -> PathBuf {
    let real = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let dir = real.parent().unwrap_or(Path::new("/"));
    let local = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local"));
    match dir.parent() {
        Some(up) if dir.file_name().is_some_and(|n| n == "bin") && Some(up) != local.as_deref() => {
            up.to_path_buf()
        }
        _ => dir.to_path_buf(),
    }
}

/// The grant to suggest for a program at `p`, in words.
fn advice(p: &Path) -> String {
    let shown = ward_core::inert::path(&grant_for(p));
    format!(
        "Grant its folder read-only: `ward run --grant {shown}:ro -- ...`, or in ward.toml: \
         [[files]] path = \"{shown}\" access = \"read\""
    )
}

/// Programs on the host's `PATH` that the sandbox does not show, by the folder they are in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outside {
    /// The folder on the host.
    pub dir: PathBuf,
    /// The folder to grant to bring them in.
    pub grant: PathBuf,
    pub names: Vec<String>,
}

/// At most this many programs are named to a shell inside (the rest get the shell's plain
/// "command not found").
const MAX_NAMED: usize = 400;

/// A name a shell's `case` can hold in single quotes, and a program name people type.
fn plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// A host folder that can be quoted in single quotes and printed as it is.
fn plain_path(p: &Path) -> bool {
    p.to_str().is_some_and(|s| {
        s.len() <= 512
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"'\\`$\"%".contains(&b))
    })
}

fn dirs_of(p: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in p
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from)
    {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// What the answer of [`outside`] depends on: the two `PATH`s, what is shown, and each folder
/// looked at (by its change time: a program added or removed changes its folder's).
fn inputs(path: &str, host_path: &str, inside: &Inside) -> (String, Vec<PathBuf>) {
    let mut key = format!("{}\0{path}\0{host_path}\0", env!("CARGO_PKG_VERSION"));
    for g in inside.grants {
        key.push_str(&format!("{}\0", g.display()));
    }
    if let Some((h, i)) = inside.home {
        key.push_str(&format!("{}\0{}\0", h.display(), i.display()));
    }
    let mut folders = dirs_of(path);
    for d in dirs_of(host_path) {
        if !folders.contains(&d) {
            folders.push(d);
        }
    }
    // The agent's own folders in its home, on the host.
    if let Some((h, i)) = inside.home {
        for d in dirs_of(path) {
            if let Ok(rel) = d.strip_prefix(i) {
                folders.push(h.join(rel));
            }
        }
    }
    (key, folders)
}

fn stamps(folders: &[PathBuf]) -> Vec<(i64, i64, u64)> {
    folders
        .iter()
        .map(|d| {
            // A link is stamped as a link (not followed): the agent's own folders may be.
            std::fs::symlink_metadata(d)
                .and_then(|m| {
                    if m.is_symlink() {
                        Ok(m)
                    } else {
                        std::fs::metadata(d)
                    }
                })
                .map_or((0, 0, 0), |m| {
                    use std::os::unix::fs::MetadataExt;
                    (m.ctime(), m.ctime_nsec(), m.ino())
                })
        })
        .collect()
}

/// How many set-ups' answers are remembered.
const CACHED: usize = 8;

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    key: String,
    stamps: Vec<(i64, i64, u64)>,
    outside: Vec<Outside>,
}

/// [`outside`], remembered in `state` (`path-outside.json`) until a `PATH`, what is shown or a
/// folder looked at changes: listing the system's program folders takes milliseconds, on every
/// start.
pub fn outside_cached(
    state: Option<&Path>,
    path: Option<&str>,
    host_path: Option<&str>,
    inside: &Inside,
) -> Vec<Outside> {
    let path = path.unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let host_path = host_path.unwrap_or(path);
    let (key, folders) = inputs(path, host_path, inside);
    let now = stamps(&folders);
    let file = state.map(|s| s.join("path-outside.json"));
    // Only a cache that is this user's own plain file, and only names and folders that pass
    // the same checks as when they were found: they go into a shell function.
    let mine = |f: &std::fs::File| {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no failure mode.
        let me = unsafe { libc::geteuid() };
        f.metadata().is_ok_and(|m| m.is_file() && m.uid() == me)
    };
    let mut kept: Vec<Cached> = file
        .as_ref()
        .and_then(|f| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(f)
                .ok()
        })
        .filter(mine)
        .and_then(|f| serde_json::from_reader(std::io::BufReader::new(f)).ok())
        .unwrap_or_default();
    if let Some(c) = kept.iter().find(|c| {
        c.key == key
            && c.stamps == now
            && c.outside.iter().all(|o| {
                plain_path(&o.dir) && plain_path(&o.grant) && o.names.iter().all(|n| plain_name(n))
            })
    }) {
        return c.outside.clone();
    }
    let out = outside(path, host_path, inside);
    if let Some(f) = file {
        // One entry per set-up (each profile's home, each set of grants), the latest first.
        kept.retain(|c| c.key != key);
        kept.insert(
            0,
            Cached {
                key,
                stamps: now,
                outside: out.clone(),
            },
        );
        kept.truncate(CACHED);
        if let Ok(b) = serde_json::to_vec(&kept) {
            let tmp = f.with_extension(format!("tmp{}", std::process::id()));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .and_then(|mut t| std::io::Write::write_all(&mut t, &b));
            if written.is_err() || std::fs::rename(&tmp, &f).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
    out
}

/// The programs on the host's `PATH` that the agent's `PATH` will not find inside: what a
/// shell inside explains when one is not found.
pub fn outside(path: &str, host_path: &str, inside: &Inside) -> Vec<Outside> {
    let home = inside.home.map(|(h, i)| (h.as_path(), i.as_path()));
    let granted = |d: &Path| inside.grants.iter().any(|g| d.starts_with(g));
    let in_home = |d: &Path| home.is_some_and(|(_, i)| d.starts_with(i)) && !granted(d);
    let shown =
        |d: &Path| granted(d) || (SYSTEM_RO.iter().any(|s| d.starts_with(s)) && !in_home(d));
    // Every name the agent's PATH finds inside (its folders listed once each; those in the
    // agent's own home without following a link it left there).
    let mut found = std::collections::HashSet::new();
    for d in dirs_of(path) {
        let listed = match home {
            Some((h, i)) if in_home(&d) => d.strip_prefix(i).ok().and_then(|r| list_beneath(h, r)),
            _ if shown(&d) => std::fs::read_dir(&d).ok().map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            }),
            _ => None,
        };
        found.extend(listed.unwrap_or_default());
    }
    let mut out: Vec<Outside> = Vec::new();
    let mut named = 0;
    for d in dirs_of(host_path) {
        if shown(&d) || !plain_path(&d) || named >= MAX_NAMED {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| plain_name(n) && !found.contains(n))
            .filter(|n| !out.iter().any(|o| o.names.contains(n)))
            .filter(|n| {
                std::fs::metadata(d.join(n)).is_ok_and(|m| {
                    m.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
            })
            .collect();
        names.sort();
        names.truncate(MAX_NAMED - named);
        named += names.len();
        // Each program's own grant (pipx's links in one folder lead to many).
        for n in names {
            let grant = grant_for(&d.join(&n));
            if !plain_path(&grant) {
                continue;
            }
            match out.iter_mut().find(|o| o.dir == d && o.grant == grant) {
                Some(o) => o.names.push(n),
                None => out.push(Outside {
                    dir: d.clone(),
                    grant,
                    names: vec![n],
                }),
            }
        }
    }
    out
}

/// The names in the folder `rel` below `top` (the agent's home), reached without following a
/// link; None when it is not there.
fn list_beneath(top: &Path, rel: &Path) -> Option<Vec<String>> {
    use std::os::fd::AsRawFd;
    let top = std::fs::File::open(top).ok()?;
    let rel = std::ffi::CString::new(rel.as_os_str().as_encoded_bytes()).ok()?;
    let fd = ward_sys::openat2(
        std::os::fd::AsFd::as_fd(&top),
        &rel,
        libc::O_RDONLY | libc::O_DIRECTORY,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
    .ok()?;
    let rd = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    Some(
        rd.flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
    )
}

/// Where a shell inside notes the commands it did not find (below the agent's own home), for
/// the end-of-session report.
pub const NOT_FOUND_FILE: &str = ".ward-not-found";

/// bash's `command_not_found_handle`, exported to every bash inside (as
/// `BASH_FUNC_command_not_found_handle%%`): a program only on the host is explained at once,
/// with the folder that would bring it in, and noted for the report when the agent has a home
/// of Ward's (`record`); any other is bash's own "command not found". Exit status 127 either
/// way.
pub fn handler(outside: &[Outside], record: bool) -> String {
    let mut f = String::from("() { case \"$1\" in\n");
    for o in outside {
        // The environment has room for it (the kernel's limit is 128 KiB a string).
        if f.len() > 48 << 10 {
            break;
        }
        let dir = o.dir.display();
        let grant = o.grant.display();
        f.push_str(&format!(
            "  '{}') printf 'bash: %s: command not found\\nward: `%s` is not inside the \
             sandbox: on this machine it is in {dir}, which no grant brings in; the person \
             running Ward can grant it read-only (ward run --grant {grant}:ro)\\n' \"$1\" \"$1\" \
             >&2;;\n",
            o.names.join("'|'")
        ));
    }
    f.push_str("  *) printf 'bash: %s: command not found\\n' \"$1\" >&2; return 127;;\nesac\n");
    if record {
        f.push_str(&format!(
            "printf '%s\\n' \"$1\" 2>/dev/null >> \"$HOME/{NOT_FOUND_FILE}\"\n"
        ));
    }
    f.push_str("return 127; }");
    f
}

/// The commands a shell inside noted as not found (read from the agent's home without
/// following a link, then removed) that are among `outside`: `(name, folder to grant)`.
pub fn noted(home: &Path, outside: &[Outside]) -> Vec<(String, PathBuf)> {
    use std::io::Read;
    let Ok(dir) = std::fs::File::open(home) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(NOT_FOUND_FILE) else {
        return Vec::new();
    };
    let mut text = Vec::new();
    if let Ok(fd) = ward_sys::openat2(
        std::os::fd::AsFd::as_fd(&dir),
        &name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    ) {
        let _ = std::fs::File::from(fd)
            .take(64 << 10)
            .read_to_end(&mut text);
    }
    // SAFETY: unlinkat below a directory we hold, a NUL-terminated name.
    unsafe { libc::unlinkat(std::os::fd::AsRawFd::as_raw_fd(&dir), name.as_ptr(), 0) };
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for n in String::from_utf8_lossy(&text).lines() {
        if let Some(o) = outside.iter().find(|o| o.names.iter().any(|x| x == n)) {
            if !out.iter().any(|(x, _)| x == n) {
                out.push((n.to_string(), o.grant.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_where_the_sandbox_looks_and_explained_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        let tools = d.join("tools/bin");
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::write(tools.join("mytool"), "#!/bin/sh\n").unwrap();
        let home_host = d.join("state/homes/default");
        std::fs::create_dir_all(home_host.join(".local/bin")).unwrap();
        std::fs::write(home_host.join(".local/bin/own"), "").unwrap();
        let home = (home_host, d.join("home"));
        let path = format!(
            "{}:{}/.local/bin:/usr/bin:/bin",
            tools.display(),
            d.join("home").display()
        );
        let none: Vec<PathBuf> = vec![];
        let inside = Inside {
            grants: &none,
            home: Some(&home),
            cwd: &d,
        };
        // System programs and the agent's own are found.
        assert!(check("sh", Some(&path), None, &inside).is_ok());
        assert!(check("own", Some(&path), None, &inside).is_ok());
        assert!(check("/bin/sh", Some(&path), None, &inside).is_ok());
        // A program only on the host is explained, with the folder to grant.
        let e = check("mytool", Some(&path), None, &inside).unwrap_err().0;
        assert!(e.contains("not inside the sandbox"), "{e}");
        assert!(
            e.contains(&format!("--grant {}:ro", d.join("tools").display())),
            "{e}"
        );
        let e = check("no-such-program-x", Some(&path), None, &inside)
            .unwrap_err()
            .0;
        assert!(e.contains("not found"), "{e}");
        // Granted: found.
        let grants = vec![d.join("tools")];
        let inside = Inside {
            grants: &grants,
            home: Some(&home),
            cwd: &d,
        };
        assert!(check("mytool", Some(&path), None, &inside).is_ok());
    }

    #[test]
    fn programs_only_on_the_host_are_listed_for_shells_inside_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        let exe = |p: PathBuf| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        exe(d.join("tools/bin/mytool"));
        std::fs::write(d.join("tools/bin/notes.txt"), "").unwrap();
        exe(d.join("tools/bin/sh"));
        // The person's home on the host, and the agent's own home (Ward's).
        exe(d.join("home/.local/bin/hostonly"));
        exe(d.join("home/.local/bin/own"));
        exe(d.join("state/homes/default/.local/bin/own"));
        let home = (d.join("state/homes/default"), d.join("home"));
        let path = format!(
            "{}:{}/.local/bin:/usr/bin:/bin",
            d.join("tools/bin").display(),
            d.join("home").display()
        );
        let none: Vec<PathBuf> = vec![];
        let inside = Inside {
            grants: &none,
            home: Some(&home),
            cwd: &d,
        };
        let want = vec![
            Outside {
                dir: d.join("tools/bin"),
                grant: d.join("tools"),
                names: vec!["mytool".into()],
            },
            Outside {
                dir: d.join("home/.local/bin"),
                grant: d.join("home/.local"),
                names: vec!["hostonly".into()],
            },
        ];
        let state = d.join("state");
        assert_eq!(
            outside_cached(Some(&state), Some(&path), None, &inside),
            want
        );
        assert!(state.join("path-outside.json").exists());
        assert_eq!(
            outside_cached(Some(&state), Some(&path), None, &inside),
            want
        );
        // A program added: the folder changed, the list with it.
        exe(d.join("tools/bin/another"));
        let now = outside_cached(Some(&state), Some(&path), None, &inside);
        assert_eq!(now[0].names, ["another", "mytool"]);
        // Granted: nothing of it is outside.
        let grants = vec![d.join("tools")];
        let inside = Inside {
            grants: &grants,
            home: Some(&home),
            cwd: &d,
        };
        assert_eq!(
            outside_cached(Some(&state), Some(&path), None, &inside),
            want[1..]
        );
        // Both set-ups are remembered, each by its own key.
        let kept: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(state.join("path-outside.json")).unwrap())
                .unwrap();
        assert_eq!(kept.len(), 2);
        // The handler names them in single quotes and records what it was asked.
        let f = handler(&want, true);
        assert!(f.starts_with("() { case \"$1\" in"), "{f}");
        assert!(f.contains("'mytool')") && f.contains("'hostonly')"), "{f}");
        assert!(
            f.contains(NOT_FOUND_FILE) && f.ends_with("return 127; }"),
            "{f}"
        );
        assert!(!handler(&want, false).contains(NOT_FOUND_FILE));
        // Noted names are reported when they are among the programs outside, once each.
        let agent_home = d.join("state/homes/default");
        std::fs::write(
            agent_home.join(NOT_FOUND_FILE),
            "mytool\nnope\nmytool\nhostonly\n",
        )
        .unwrap();
        assert_eq!(
            noted(&agent_home, &want),
            [
                ("mytool".to_string(), d.join("tools")),
                ("hostonly".to_string(), d.join("home/.local"))
            ]
        );
        assert!(!agent_home.join(NOT_FOUND_FILE).exists());
    }
}

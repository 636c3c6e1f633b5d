//! The agent's own program, looked for before the session starts the way the sandbox will
//! look for it: on the agent's `PATH`, among what is inside (the system folders, the grants,
//! the agent's own home). A program that is only on the host (`cargo` in `~/.cargo/bin`) is
//! explained at once, with the grant that would bring it in, instead of a bare exit 127.

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

/// The grant to suggest for a program at `p`: its folder, or the folder above a `bin`.
fn advice(p: &Path) -> String {
    let real = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let dir = real.parent().unwrap_or(Path::new("/"));
    let dir = if dir.file_name().is_some_and(|n| n == "bin") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let shown = ward_core::inert::path(dir);
    format!(
        "Grant its folder read-only: `ward run --grant {shown}:ro -- ...`, or in ward.toml: \
         [[files]] path = \"{shown}\" access = \"read\""
    )
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
}

//! Which staged changes would run code on the host without the person deciding to run it:
//! repositories (git runs their config and hooks on `git status`), direnv and editor task
//! files (run when a folder is entered or opened), shell start-up files, Python start-up
//! hooks, login autostart entries, new executables, world-writable files. Review shows these
//! first, with the reason, and never applies them in bulk.
//!
//! Only names, modes and small config files are read: nothing here follows a link of the
//! real folder or reads more than [`CONFIG_LIMIT`] bytes of anything.

use crate::{Change, EntryType, Stage};
use serde::Serialize;
use std::path::{Component, Path, PathBuf};

/// Why a change is held out of "apply all".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// A short name for scripts (`git`, `ward-manifest`, `direnv`, `editor`, `shell-rc`, `autostart`,
    /// `python-startup`, `hooks-path`, `executable`, `world-writable`).
    pub code: &'static str,
    /// What a person reads.
    pub reason: String,
}

/// Config files larger than this are not read (a repository's config is a few hundred bytes).
pub const CONFIG_LIMIT: u64 = 64 << 10;

/// Shell start-up files, by name (fish's at any depth: `config.fish`).
pub const SHELL_RC: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".cshrc",
    ".tcshrc",
    ".kshrc",
    ".mkshrc",
    ".xprofile",
    ".xinitrc",
    ".xsession",
    ".xsessionrc",
    "config.fish",
];

const EDITOR_DIRS: &[&str] = &[".vscode", ".idea", ".devcontainer", ".zed", ".fleet"];

fn flag(code: &'static str, reason: impl Into<String>) -> Flag {
    Flag {
        code,
        reason: reason.into(),
    }
}

fn names(p: &Path) -> Vec<&str> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect()
}

/// The flags of one change by its path and modes alone.
fn by_name(c: &Change) -> Vec<Flag> {
    let mut out = Vec::new();
    let parts = names(&c.path);
    let last = parts.last().copied().unwrap_or("");
    let paths = [Some(&c.path), c.from.as_ref()];
    if paths.iter().flatten().any(|p| names(p).contains(&".git")) {
        out.push(flag(
            "git",
            "a git repository (its config and hooks run commands the next time you use git here)",
        ));
    }
    let hook_managers = [
        ".pre-commit-config.yaml",
        "lefthook.yml",
        "lefthook.yaml",
        ".lefthook.yml",
    ];
    if parts.contains(&".husky") || hook_managers.contains(&last) {
        out.push(flag(
            "git",
            "git hooks a hook manager installs (they run at the next commit or push)",
        ));
    }
    let agent_config = [".devcontainer.json", ".mcp.json"];
    if agent_config.contains(&last)
        || last.ends_with(".code-workspace")
        || parts
            .iter()
            .any(|p| matches!(*p, ".claude" | ".cursor" | ".gemini" | ".codex"))
    {
        out.push(flag(
            "editor",
            "editor or agent settings that can run commands (hooks, MCP servers, tasks)",
        ));
    }
    let toolchain = [
        ".yarnrc.yml",
        ".yarnrc",
        ".npmrc",
        ".pnpmfile.cjs",
        "bunfig.toml",
        "rust-toolchain.toml",
        "rust-toolchain",
    ];
    if toolchain.contains(&last)
        || parts
            .windows(2)
            .any(|w| w[0] == ".cargo" && w[1].starts_with("config"))
        || parts.windows(2).any(|w| w == [".mvn", "extensions.xml"])
    {
        out.push(flag(
            "toolchain",
            "configures a build tool to run a program of its choosing on ordinary commands",
        ));
    }
    let home_rc = [
        ".gitconfig",
        ".bash_aliases",
        ".vimrc",
        ".exrc",
        ".tmux.conf",
        ".Rprofile",
        ".irbrc",
        ".pythonrc",
        ".pythonrc.py",
    ];
    if home_rc.contains(&last)
        || parts.windows(2).any(|w| {
            matches!(
                w,
                [".config", "git" | "nvim" | "environment.d"]
                    | [".ssh", "config"]
                    | [".ipython", _]
            )
        })
        || parts.windows(3).any(|w| {
            matches!(
                w,
                [".local", "share", "applications" | "dbus-1" | "systemd"]
                    | [".config", "fish", "functions"]
            )
        })
    {
        out.push(flag(
            "shell-rc",
            "read at start-up by a shell, editor, git, ssh or the desktop (it can run commands)",
        ));
    }
    if last == "ward.toml" {
        out.push(flag(
            "ward-manifest",
            "a Ward manifest (the next `ward run` here obeys it)",
        ));
    }
    let mise = (last.starts_with("mise.") || last.starts_with(".mise.")) && last.ends_with(".toml");
    if last == ".envrc"
        || mise
        || parts.contains(&".direnv")
        || parts.contains(&".mise")
        || parts.windows(2).any(|w| w == [".config", "mise"])
    {
        out.push(flag(
            "direnv",
            "runs when a shell enters this folder (direnv, mise)",
        ));
    }
    if let Some(d) = parts.iter().find(|p| EDITOR_DIRS.contains(p)) {
        out.push(flag(
            "editor",
            format!("editor settings and tasks ({d}) can run commands when the folder is opened"),
        ));
    }
    if SHELL_RC.contains(&last) || parts.windows(2).any(|w| w == ["fish", "conf.d"]) {
        out.push(flag(
            "shell-rc",
            "a shell start-up file (runs in every new shell that reads it)",
        ));
    }
    if parts.windows(2).any(|w| w == [".config", "autostart"])
        || parts
            .windows(3)
            .any(|w| w == [".config", "systemd", "user"])
    {
        out.push(flag(
            "autostart",
            "starts at login (autostart entry or systemd user unit)",
        ));
    }
    if (last.ends_with(".pth") && parts.contains(&"site-packages"))
        || matches!(last, "sitecustomize.py" | "usercustomize.py")
    {
        out.push(flag(
            "python-startup",
            "Python runs it at start-up (.pth files and site customisation)",
        ));
    }
    if let Some(a) = c.after.as_ref().filter(|a| a.kind == EntryType::File) {
        let was_x = c
            .before
            .as_ref()
            .is_some_and(|b| b.kind == EntryType::File && b.mode & 0o111 != 0);
        if a.mode & 0o111 != 0 && !was_x {
            out.push(flag(
                "executable",
                format!("made executable (mode {:o})", a.mode & 0o7777),
            ));
        }
    }
    if let Some(a) = &c.after {
        if a.mode & 0o002 != 0 && a.kind != EntryType::Symlink {
            out.push(flag(
                "world-writable",
                "world-writable (any user could change it; the bit is never applied)",
            ));
        }
    }
    out
}

/// Bare repositories among the stage's folders: `HEAD`, `objects/` and `refs/` side by side
/// (git runs a bare repository's hooks when someone pushes to it or runs git in it).
fn bare_repositories(stage: &Stage, changes: &[Change]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for c in changes {
        if c.path.file_name().is_none_or(|n| n != "HEAD") || c.after.is_none() {
            continue;
        }
        let dir = c.path.parent().unwrap_or(Path::new("")).to_path_buf();
        let is_dir = |name: &str| {
            let p = dir.join(name);
            changes
                .iter()
                .any(|x| x.path == p && x.after.as_ref().is_some_and(|a| a.kind == EntryType::Dir))
                || std::fs::symlink_metadata(stage.upper.join(&p)).is_ok_and(|m| m.is_dir())
        };
        if is_dir("objects") && is_dir("refs") && !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// `core.hooksPath` and `core.fsmonitor` of a repository's config text (the last wins, as
/// in git), each relative to the work tree unless absolute.
fn code_paths(config: &str) -> Vec<(&'static str, String)> {
    let mut section = String::new();
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for line in config.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l
                .trim_start_matches('[')
                .split([']', ' ', '"'])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            continue;
        }
        if section != "core" {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let key = match k.trim().to_ascii_lowercase().as_str() {
            "hookspath" => "hooksPath",
            "fsmonitor" => "fsmonitor",
            _ => continue,
        };
        let v = v.trim().trim_matches('"').to_string();
        out.retain(|(k, _)| *k != key);
        out.push((key, v));
    }
    out
}

/// Read a small file of the real folder or the stage without following a link.
fn read_small(p: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(p).ok()?;
    if !m.is_file() || m.len() > CONFIG_LIMIT {
        return None;
    }
    std::fs::read_to_string(p).ok()
}

/// Changes that land where a repository of the grant (real or staged) runs code from:
/// its `core.hooksPath` folder or its `core.fsmonitor` program.
fn hooks_targets(stage: &Stage, changes: &[Change]) -> Vec<(PathBuf, String)> {
    let mut repos: Vec<PathBuf> = vec![PathBuf::new()];
    for c in changes {
        let mut p = c.path.as_path();
        while let Some(parent) = p.parent() {
            if !repos.iter().any(|r| r == parent) {
                repos.push(parent.to_path_buf());
            }
            p = parent;
        }
    }
    // The person's own git config applies to every repository too (a team's global
    // `core.hooksPath = .githooks`).
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let global: Vec<(&'static str, String)> = [
        home.map(|h| h.join(".gitconfig")),
        xdg.map(|x| x.join("git/config")),
        Some(PathBuf::from("/etc/gitconfig")),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| read_small(&p))
    .flat_map(|t| code_paths(&t))
    .collect();
    let mut out = Vec::new();
    for r in repos {
        let cfg = r.join(".git").join("config");
        let is_repo = [&stage.upper, &stage.grant]
            .iter()
            .any(|b| std::fs::symlink_metadata(b.join(r.join(".git"))).is_ok());
        let mut values: Vec<(&'static str, String)> = if is_repo { global.clone() } else { vec![] };
        for base in [&stage.upper, &stage.grant] {
            if let Some(text) = read_small(&base.join(&cfg)) {
                values.extend(code_paths(&text));
                break;
            }
        }
        {
            for (key, v) in values {
                let target = if Path::new(&v).is_absolute() {
                    match Path::new(&v).strip_prefix(&stage.grant) {
                        Ok(rel) => rel.to_path_buf(),
                        Err(_) => continue,
                    }
                } else {
                    r.join(&v)
                };
                out.push((
                    target,
                    format!(
                        "the {key} of the repository in {} (git runs it)",
                        if r.as_os_str().is_empty() {
                            ".".to_string()
                        } else {
                            crate::shown(&r)
                        }
                    ),
                ));
            }
        }
    }
    out
}

/// Flags for each change, in order (empty: nothing runs code).
pub fn classify(stage: &Stage, changes: &[Change]) -> Vec<Vec<Flag>> {
    let bare = bare_repositories(stage, changes);
    let hooks = hooks_targets(stage, changes);
    changes
        .iter()
        .map(|c| {
            let mut f = by_name(c);
            if bare.iter().any(|b| c.path.starts_with(b)) && !f.iter().any(|x| x.code == "git") {
                f.push(flag(
                    "git",
                    "a bare git repository (pushing to it or running git in it runs its hooks)",
                ));
            }
            for (target, why) in &hooks {
                if c.path.starts_with(target) {
                    f.push(flag("hooks-path", why.clone()));
                }
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Kind};

    fn change(path: &str, kind: Kind, before: Option<u32>, after: Option<u32>) -> Change {
        let e = |mode| Entry {
            kind: EntryType::File,
            size: 1,
            mode,
            sha256: Some("00".into()),
            target: None,
        };
        Change {
            path: path.into(),
            kind,
            from: None,
            before: before.map(e),
            after: after.map(e),
        }
    }

    fn codes(c: &Change) -> Vec<&'static str> {
        by_name(c).iter().map(|f| f.code).collect()
    }

    #[test]
    fn what_runs_code_is_named() {
        let cases = [
            ("sub/.git/config", "git"),
            ("sub/.git", "git"),
            (".git/hooks/pre-commit", "git"),
            (".envrc", "direnv"),
            ("app/.vscode/tasks.json", "editor"),
            (".idea/workspace.xml", "editor"),
            (".devcontainer/devcontainer.json", "editor"),
            ("home/.bashrc", "shell-rc"),
            (".zshenv", "shell-rc"),
            (".config/fish/conf.d/x.fish", "shell-rc"),
            (".config/autostart/x.desktop", "autostart"),
            (".config/systemd/user/x.service", "autostart"),
            (
                "venv/lib/python3.11/site-packages/evil.pth",
                "python-startup",
            ),
            ("sitecustomize.py", "python-startup"),
            ("ward.toml", "ward-manifest"),
            (".husky/pre-commit", "git"),
            (".pre-commit-config.yaml", "git"),
            (".devcontainer.json", "editor"),
            ("a.code-workspace", "editor"),
            (".claude/settings.json", "editor"),
            (".mcp.json", "editor"),
            (".yarnrc.yml", "toolchain"),
            (".cargo/config.toml", "toolchain"),
            ("mise.local.toml", "direnv"),
            (".gitconfig", "shell-rc"),
            (".ssh/config", "shell-rc"),
            (".bash_aliases", "shell-rc"),
            (".local/share/applications/x.desktop", "shell-rc"),
        ];
        for (p, code) in cases {
            assert_eq!(
                codes(&change(p, Kind::Added, None, Some(0o644))),
                [code],
                "{p}"
            );
        }
        for p in [
            "src/main.rs",
            "README.md",
            "git/notes.txt",
            "docs/.gitignore",
        ] {
            assert!(
                codes(&change(p, Kind::Added, None, Some(0o644))).is_empty(),
                "{p}"
            );
        }
    }

    #[test]
    fn new_executables_and_world_writable_files_are_named() {
        assert_eq!(
            codes(&change("run.sh", Kind::Added, None, Some(0o755))),
            ["executable"]
        );
        assert_eq!(
            codes(&change("run.sh", Kind::Mode, Some(0o644), Some(0o744))),
            ["executable"]
        );
        // Already executable: an edit is not a new executable.
        assert!(codes(&change("run.sh", Kind::Modified, Some(0o755), Some(0o755))).is_empty());
        assert_eq!(
            codes(&change("f", Kind::Added, None, Some(0o666))),
            ["world-writable"]
        );
    }

    #[test]
    fn hooks_path_and_fsmonitor_are_read_from_config() {
        let cfg = "[core]\n\trepositoryformatversion = 0\n\tHooksPath = tools/hooks\n[remote \"o\"]\n\thooksPath = nope\n[core]\n\tfsmonitor = \"bin/watch\"\n";
        assert_eq!(
            code_paths(cfg),
            [
                ("hooksPath", "tools/hooks".to_string()),
                ("fsmonitor", "bin/watch".to_string())
            ]
        );
    }
}

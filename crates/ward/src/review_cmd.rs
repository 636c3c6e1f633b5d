//! `ward review`: what an agent changed in its staged grants, with diffs.

use crate::{print_json, Outcome};
use clap::Args;
use serde_json::json;
use std::io::IsTerminal;
use ward_supervisor::sessions::{discard, staged, Staged};

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward review                      # the latest session with staged changes (on a terminal:
                                   # list, then ask: apply all, each, discard, keep)
  ward review --diff               # ... with unified diffs
  ward review 3f9a1c0d2b4e5f60 --json
  ward review --apply src/main.rs  # apply one change (a folder: everything below it)
  ward review --apply-all          # apply every change that runs no code (see !)
  ward review --apply .envrc --acknowledge   # one that does, named, knowingly
  ward review --discard-all        # throw the changes away (recorded)

A staged grant keeps the agent's edits in the session's stage; the real folder is untouched
until a person applies them. Changes: added, modified, deleted, renamed (same content moved),
mode (permissions only), type (a file became a folder or link); added entries show their mode.
Binary and large files are shown with their type (by content), size and the text they carry.
Changes that would run code on this machine without you running them are marked ! and listed
first, with the reason: repositories (.git anywhere, bare ones, hooks and hook managers, a
core.hooksPath or core.fsmonitor target), a ward.toml, .envrc and mise files, editor and agent
settings (.vscode, .idea, .devcontainer, .claude, .mcp.json, ...), build-tool settings that run
programs (.npmrc, .yarnrc.yml, .cargo/config.toml, ...), shell, git and ssh start-up files,
login autostart entries, Python .pth and sitecustomize files, new executables, world-writable
files (that bit is never applied). --apply-all, a folder given to
--apply, and 'apply all' at the prompt leave them staged (recorded as review.flagged); apply
one by naming it with --acknowledge, or in 'review each' at the prompt.
Applying is atomic per file (written beside the target, synced, renamed over it) and journaled
per batch: if it is interrupted, the next `ward review` finishes it. A file that changed in
the real folder after the session started is a conflict: shown, never overwritten. Links
pointing out of the granted folder and special files are never applied, and no link in the
real folder is ever followed. Every approval is recorded (path, SHA-256 before and after, who)
before the folder changes.
Exit codes: 0 shown/done; 1 no session with staged changes, or some changes were held
(conflicts, refused, runs code); 2 usage error.")]
pub struct ReviewArgs {
    /// The session (see the end of `ward run`'s output); default: the latest with changes.
    session: Option<String>,
    /// List the changes (the default).
    #[arg(long)]
    list: bool,
    /// Show a unified diff of each change.
    #[arg(long)]
    diff: bool,
    /// Apply these changes (paths relative to the granted folder, or absolute).
    #[arg(long, num_args = 1.., value_name = "PATH", conflicts_with_all = ["list", "diff"])]
    apply: Vec<std::path::PathBuf>,
    /// Apply every change, except those that would run code on this machine or that a
    /// `file.write`/`file.delete` rule asks about (marked !), and those a rule denies (never
    /// applied).
    #[arg(long, conflicts_with_all = ["list", "diff", "apply"])]
    apply_all: bool,
    /// With --apply: the changes named exactly may be applied although they would run code
    /// on this machine (a repository, hooks, .envrc, editor tasks, shell start-up files, new
    /// executables), or that a file rule asks about. Folders named never take such changes;
    /// what a rule denies is never applied.
    #[arg(long, requires = "apply")]
    acknowledge: bool,
    /// Discard every staged change of the session.
    #[arg(long, conflicts_with_all = ["list", "diff", "apply", "apply_all"])]
    discard_all: bool,
    #[arg(long)]
    json: bool,
}

fn pick(session: Option<&str>) -> anyhow::Result<Option<Staged>> {
    let all = staged()?;
    Ok(match session {
        Some(id) => all.into_iter().find(|s| s.session == id),
        None => all.into_iter().last(),
    })
}

pub fn run(a: ReviewArgs) -> Outcome {
    // A commit a crash interrupted is finished first, whichever session is asked about.
    for s in staged()? {
        for r in ward_supervisor::review::resume(&s)? {
            eprintln!(
                "ward: finished the interrupted commit to {}: {} applied, {} already done, {} conflict(s)",
                ward_core::inert::path(&r.grant),
                r.applied,
                r.already,
                r.conflicts.len()
            );
        }
    }
    let Some(s) = pick(a.session.as_deref())? else {
        match &a.session {
            Some(id) => eprintln!(
                "no finished session {id} with staged changes (see `ward status` for running ones)"
            ),
            None => eprintln!("no session with staged changes"),
        }
        return Ok(1);
    };
    if a.apply_all || !a.apply.is_empty() {
        let sel = if a.apply_all {
            ward_supervisor::review::Selection::All
        } else {
            ward_supervisor::review::Selection::Paths(&a.apply, a.acknowledge)
        };
        let done = ward_supervisor::review::apply_changes(&s, sel, "command line")?;
        let held: usize = done
            .iter()
            .map(|d| d.conflicts.len() + d.refused.len() + d.flagged.len())
            .sum();
        if a.json {
            print_json(&json!({"session": s.session, "grants": done}));
        } else {
            if done.is_empty() {
                println!("no staged change matches");
            }
            for d in &done {
                println!(
                    "applied {} change step(s) to {}{}",
                    d.applied,
                    ward_core::inert::path(&d.grant),
                    if d.already > 0 {
                        format!(" ({} already done)", d.already)
                    } else {
                        String::new()
                    }
                );
                for h in &d.conflicts {
                    println!(
                        "  conflict  {}: {}",
                        ward_stage::shown(&h.path),
                        ward_core::inert::line(&h.reason)
                    );
                }
                for h in &d.refused {
                    println!(
                        "  refused   {}: {}",
                        ward_stage::shown(&h.path),
                        ward_core::inert::line(&h.reason)
                    );
                }
                for h in &d.flagged {
                    println!(
                        "  held      {}: RUNS CODE: {}\n            to apply it knowingly, name it with --apply and --acknowledge",
                        ward_stage::shown(&h.path),
                        ward_core::inert::line(&h.reason),
                    );
                }
            }
        }
        return Ok(if held > 0 { 1 } else { 0 });
    }
    let plain = !a.list && !a.diff && !a.json;
    if plain && crate::run_cmd::on_terminal() {
        if let Ok(mut t) = ward_consent::Terminal::open() {
            ward_supervisor::review::interactive(&s, &mut t)?;
            return Ok(0);
        }
    }
    if a.discard_all {
        let n = discard(&s)?;
        if a.json {
            print_json(&json!({"session": s.session, "discarded": n}));
        } else {
            println!("discarded {n} change(s) of session {}", s.session);
        }
        return Ok(0);
    }
    // The listing is always shown; `--list` says so explicitly.
    let _ = a.list;
    let color = !a.json && std::io::stdout().is_terminal();
    let mut out = Vec::new();
    let mut rules = ward_supervisor::review::FileRules::of(&s)?;
    for st in &s.stages {
        let changes = ward_supervisor::review::classified(st, &mut rules)?;
        let mut list = Vec::new();
        if !a.json {
            println!(
                "session {}  {}  ({} change(s))",
                s.session,
                ward_core::inert::path(&st.grant),
                changes.len()
            );
        }
        for (c, flags) in &changes {
            let d = if a.diff {
                Some(ward_stage::diff(st, c, color)?)
            } else {
                None
            };
            if a.json {
                let mut v = serde_json::to_value(c)?;
                v["runs_code"] = serde_json::to_value(flags)?;
                if let Some(d) = d {
                    v["diff"] = json!(d);
                }
                list.push(v);
            } else {
                println!("{}", ward_supervisor::review::line(c, flags));
                if let Some(d) = d {
                    print!("{d}");
                }
            }
        }
        out.push(json!({"grant": st.grant, "changes": list}));
    }
    if a.json {
        print_json(&json!({
            "session": s.session,
            "started": s.info.started,
            "command": s.info.command,
            "stages": out,
        }));
    }
    Ok(0)
}

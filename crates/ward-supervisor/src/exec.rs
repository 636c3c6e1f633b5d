//! Exec rules during `ward run`: every `execve`/`execveat` of the session's processes is held
//! by the kernel (seccomp user notification, when the manifest has exec rules) and decided
//! here through the broker: the program as invoked and where it really is (links followed
//! inside the agent's root), the command line, the commands a wrapper or shell string runs
//! (`sh -c`, `env`, `nohup`, `timeout`, `xargs`, ...) and a script's `#!` interpreter. Deny:
//! the exec fails with `EACCES` and a record; ask: a question showing the command (on its own
//! thread, so other calls are not held meanwhile); allow: a record, and the exec goes on.
//!
//! The limit of a notification-based check: the kernel reads the path again after Ward let
//! the call go on, so a second thread (or a process sharing the caller's memory) that
//! rewrites the path in between, or a link swapped in the file system between the check and
//! the exec, runs another program than the one decided. Where the kernel allows, Ward closes
//! it: every file a deny rule names ([`kernel_denied`]) is also refused by Landlock at exec
//! time, whatever path or race reaches it (`escape_via_racing_the_exec_check`). What stays
//! open: `ask` rules, allow-lists (`[exec] unknown = "deny"`) and denies with `**` or
//! wildcards above the file name rest on the notification alone, so an agent that races its
//! own checks can get past those; and a copy of a denied program is another file (an
//! allow-list stops copies, a deny-list does not).

use serde_json::json;
use std::path::{Path, PathBuf};
use ward_broker::{Broker, Outcome};
use ward_core::command::{arg_text, base, inner_commands};
use ward_core::{Action, ActionKind, Decision, Effect};
use ward_sandbox::notify::{ExecCall, Program, Responder};

/// The files the manifest's exec denies name (an absolute path, a bare name found in the
/// system's program folders, or either with wildcards in its last part only, matched against
/// what is there at the start), where they really are: the kernel refuses to execute these
/// whatever path reaches them (Landlock), which closes the race of the notification check for
/// them. Deeper wildcards (`**`), `ask` rules and allow-lists rest on the notification alone.
pub fn kernel_denied(m: &ward_core::Manifest) -> Vec<PathBuf> {
    const BIN: &[&str] = &[
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    let wild = |s: &str| s.contains(['*', '?', '[', '{']);
    let mut out = Vec::new();
    for r in &m.rules {
        if r.effect != Effect::Deny || !r.actions.iter().any(|k| k.matches(&ActionKind::Exec)) {
            continue;
        }
        let Some(p) = r.resource.as_deref() else {
            continue;
        };
        // (folder, pattern for the file name)
        let places: Vec<(PathBuf, &str)> = match p.rsplit_once('/') {
            None => BIN.iter().map(|d| (PathBuf::from(d), p)).collect(),
            Some((dir, name)) if p.starts_with('/') && !wild(dir) => {
                vec![(PathBuf::from(if dir.is_empty() { "/" } else { dir }), name)]
            }
            _ => continue,
        };
        for (dir, name) in places {
            let names: Vec<String> = if wild(name) {
                std::fs::read_dir(&dir)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| ward_core::glob::matches(name, n))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                vec![name.to_string()]
            };
            for n in names {
                if let Ok(real) = std::fs::canonicalize(dir.join(n)) {
                    if real.is_file() && !out.contains(&real) {
                        out.push(real);
                    }
                }
            }
        }
    }
    out
}

/// Where a program name without a slash is looked for when the caller has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A held exec that needs a person: decided on another thread.
pub struct Held {
    /// The command that made it an `ask` (a shell string's curl, not the shell): the question
    /// shows it, and the answer is remembered for its program, so its own exec later is not
    /// asked again.
    pub decided_on: Action,
    pub action: Action,
    pub decision: Decision,
    pub detail: serde_json::Value,
    pub responder: Responder,
}

/// Decide `call`; answer it at once, or hand it to `ask` when a person must decide. Returns
/// the program when the exec was refused here.
pub fn check(
    broker: &Broker,
    call: ExecCall,
    responder: Responder,
    ask: &dyn Fn(Held),
) -> Option<String> {
    let refuse = |by: &str, reason: String| {
        let action = Action {
            argv: call.argv.iter().take(64).map(|a| arg_text(a)).collect(),
            agent: broker.agent().map(str::to_string),
            ..Action::new(ActionKind::Exec, call.path.to_string_lossy().into_owned())
        };
        responder_refused(
            broker,
            &action,
            ward_core::By::builtin(by),
            reason,
            call.pid,
        )
    };
    let real = match &call.real {
        // Nothing there (a shell trying each `PATH` entry): the kernel fails it (ENOENT).
        Program::Missing => {
            responder.send(true);
            return None;
        }
        Program::Unnamed(why) => {
            responder.send(false);
            refuse(
                "exec-unnamed",
                format!(
                    "Ward cannot name the program ({why}); under exec rules what cannot be \
                     decided does not run"
                ),
            );
            return Some(call.path.to_string_lossy().into_owned());
        }
        Program::Found(p) => p.clone(),
    };
    if call.truncated {
        responder.send(false);
        refuse(
            "exec-argv",
            "more arguments than Ward reads (8,192, 1 MiB): refused rather than decided on part \
             of the command line"
                .into(),
        );
        return Some(real.to_string_lossy().into_owned());
    }
    let (action, decision, detail, decided_on) = decide(broker, &call, &real);
    match decision.effect {
        Effect::Ask => {
            ask(Held {
                decided_on,
                action,
                decision,
                detail,
                responder,
            });
            None
        }
        effect => {
            responder.send(effect == Effect::Allow);
            let refused = (effect == Effect::Deny).then(|| decided_on.resource.clone());
            broker.note(broker.event(
                &action,
                &Outcome {
                    decision,
                    consent: None,
                    channel: None,
                },
                detail,
            ));
            refused
        }
    }
}

/// Ask the person about a held exec, answer it, record the outcome durably.
pub fn ask(broker: &Broker, held: Held) {
    let Held {
        decided_on,
        action,
        decision,
        detail,
        responder,
    } = held;
    // Its process may have ended while earlier questions were open: nothing to ask.
    if !responder.is_live() {
        return;
    }
    let mut text = format!(
        "The agent wants to run {}\n  ({}): {}",
        ward_core::inert::Inert(&decided_on.argv.join(" ")),
        ward_core::inert::Inert(&decided_on.resource),
        ward_core::inert::Inert(&decision.reason)
    );
    if decided_on.resource != action.resource {
        let outer = action.argv.join(" ");
        let outer: String = outer.chars().take(200).collect();
        text.push_str(&format!("\n  run by: {}", ward_core::inert::Inert(&outer)));
    }
    let remember = ward_broker::Remember {
        kind: ActionKind::Exec,
        resource: decided_on.resource.clone(),
    };
    let o = broker.ask(
        decision,
        &format!("exec:{}", decided_on.resource),
        &text,
        Some(remember),
    );
    let ev = broker.event(&action, &o, detail);
    // The exec goes on only once its record is on disk.
    let recorded = broker.record(ev);
    responder.send(o.allowed() && recorded.is_ok());
}

/// The action for `call` and the strictest decision over it and what it runs on its behalf.
fn decide(
    broker: &Broker,
    call: &ExecCall,
    real: &Path,
) -> (Action, Decision, serde_json::Value, Action) {
    let argv: Vec<String> = call.argv.iter().map(|a| arg_text(a)).collect();
    let shown = |p: &Path| p.to_string_lossy().into_owned();
    let outer = program_action(broker, &call.path, Some(real), argv.clone());
    let mut best = broker.decide(&outer);
    let mut decided_on = outer.clone();
    let mut inner_shown = Vec::new();
    let mut inner = inner_commands(&argv);
    // A script's interpreter runs it: `#!/usr/bin/python3 -u` is `python3 -u SCRIPT`; an
    // interpreter that is itself a script has its own (the kernel follows up to 4 levels).
    let mut script = real.to_path_buf();
    // What the interpreter gets after its own words: the script as invoked, then the rest.
    let mut run: Vec<String> = std::iter::once(shown(&call.path))
        .chain(argv.iter().skip(1).cloned())
        .collect();
    let mut at = 0;
    for _ in 0..4 {
        let Some(mut v) = shebang(call.pid, &script) else {
            break;
        };
        // A relative interpreter is found from the working directory, not `PATH`.
        if !v[0].contains('/') {
            v[0] = format!("./{}", v[0]);
        }
        v.extend(run.iter().cloned());
        // `#!/usr/bin/env python3` runs python3.
        let through = inner_commands(&v);
        let n = 1 + through.len();
        inner.splice(at..at, std::iter::once(v.clone()).chain(through));
        at += n;
        match find_program(call, &v[0]) {
            Some((_, Some(r))) => script = r,
            _ => break,
        }
        run = v;
    }
    for words in inner {
        let Some(first) = words.first() else { continue };
        let Some((path, real)) = find_program(call, first) else {
            continue;
        };
        let a = program_action(broker, &path, real.as_deref(), words.clone());
        let d = broker.decide(&a);
        inner_shown.push(words.join(" "));
        if d.effect > best.effect {
            best = Decision {
                reason: format!("{} (run by {})", d.reason, base(&outer.resource)),
                ..d
            };
            decided_on = a;
        }
    }
    // The record keeps the first 4 KiB of the command line (the decision saw all of it).
    let mut room = 4096usize;
    let kept: Vec<String> = argv
        .iter()
        .map_while(|a| {
            let n = a.len().min(room);
            room -= n;
            (n > 0 || a.is_empty()).then(|| a.chars().take(n).collect())
        })
        .collect();
    let detail = json!({
        "pid": call.pid,
        "argv": kept,
        "argc": argv.len(),
        "path": shown(&call.path),
        "cwd": shown(&call.cwd),
        "runs": inner_shown,
        "decided_on": (decided_on.resource != outer.resource).then_some(&decided_on.resource),
    });
    // The record names the program as exec'd; the decision says which command decided.
    (outer, best, detail, decided_on)
}

fn program_action(broker: &Broker, path: &Path, real: Option<&Path>, argv: Vec<String>) -> Action {
    let as_invoked = path.to_string_lossy().into_owned();
    let resource = real.map_or(as_invoked.clone(), |r| r.to_string_lossy().into_owned());
    Action {
        names: (resource != as_invoked)
            .then_some(as_invoked)
            .into_iter()
            .collect(),
        argv,
        agent: broker.agent().map(str::to_string),
        ..Action::new(ActionKind::Exec, resource)
    }
}

/// The program a command word names, as the caller's shell would find it: a path (joined to
/// the caller's working directory), or the first `PATH` entry that has it.
fn find_program(call: &ExecCall, word: &str) -> Option<(PathBuf, Option<PathBuf>)> {
    if word.contains('/') {
        let p = if word.starts_with('/') {
            PathBuf::from(word)
        } else {
            call.cwd.join(word)
        };
        let real = ward_sandbox::notify::real_path(call.pid, &p);
        return Some((p, real));
    }
    // Shell builtins and functions run no program.
    if matches!(
        word,
        "cd" | "echo"
            | "printf"
            | "export"
            | "set"
            | "unset"
            | "true"
            | "false"
            | ":"
            | "."
            | "source"
            | "read"
            | "test"
            | "["
            | "exit"
            | "return"
            | "local"
            | "shift"
            | "wait"
            | "trap"
            | "eval"
    ) {
        return None;
    }
    let path = call.path_env();
    let mut seen = std::collections::HashSet::new();
    // At most 64 folders, each once: the agent sets PATH, not the supervisor's time.
    for dir in path.as_deref().unwrap_or(DEFAULT_PATH).split(':').take(64) {
        if !dir.starts_with('/') || !seen.insert(dir) {
            continue;
        }
        let p = Path::new(dir).join(word);
        if let Some(real) = ward_sandbox::notify::real_path(call.pid, &p) {
            return Some((p, Some(real)));
        }
    }
    None
}

/// The interpreter and its argument of a `#!` script, read through the caller's root.
fn shebang(pid: u32, real: &Path) -> Option<Vec<String>> {
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    // Opened inside the caller's root, never blocking (a FIFO) and never becoming Ward's
    // terminal (a tty), and read only when it is a regular file.
    let root = std::fs::File::open(format!("/proc/{pid}/root")).ok()?;
    let rel = real.strip_prefix("/").unwrap_or(real);
    let rel = std::ffi::CString::new(rel.as_os_str().as_bytes()).ok()?;
    let fd = ward_sys::openat2(
        root.as_fd(),
        &rel,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let mut f = std::fs::File::from(fd);
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 256];
    let n = f.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let text = arg_text(line);
    let mut words = text.split_whitespace();
    let interp = words.next()?.to_string();
    let mut v = vec![interp];
    // Linux passes the rest of the line as one argument.
    let rest: Vec<&str> = words.collect();
    if !rest.is_empty() {
        v.push(rest.join(" "));
    }
    Some(v)
}

/// Record an exec refused before any rule was asked (it could not be decided).
fn responder_refused(
    broker: &Broker,
    action: &Action,
    by: ward_core::By,
    reason: String,
    pid: u32,
) {
    broker.note(broker.event(
        action,
        &Outcome {
            decision: Decision::new(Effect::Deny, by, reason),
            consent: None,
            channel: None,
        },
        json!({"pid": pid}),
    ));
}

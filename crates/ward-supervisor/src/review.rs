//! Applying a session's reviewed changes, on record: each approval is in the audit log (path,
//! SHA-256 before and after, size, who approved) before the real folder changes, and the
//! outcome after. An interrupted batch is finished by the next review.

use crate::sessions::Staged;
use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};
use ward_audit::{AuditLog, Event, EventDecision, KeyStore, LogPaths, WriterOptions};
use ward_consent::Consent;
use ward_core::Effect;
use ward_stage::apply::{self, Held, Plan, Report};
use ward_stage::Change;

/// Which changes to apply. Changes that would run code on the host (see
/// [`ward_stage::classify`]) are never taken by `All` or by a folder: only when named exactly
/// with their reason acknowledged.
pub enum Selection<'a> {
    All,
    /// Paths relative to the grant, or absolute paths inside it; a folder takes everything
    /// below it (what `ward review --apply DIR` means). `acknowledge`: the person knows that
    /// the changes named exactly may run code (`--acknowledge`).
    Paths(&'a [PathBuf], bool),
    /// Exactly these changes, nothing below them (what a person approved one by one, each
    /// flagged one with its reason shown and acknowledged).
    Exact(&'a [PathBuf]),
    /// Everything below these folders (absolute), approved folder by folder with their counts
    /// and reasons shown: recorded as one approval per folder. `acknowledge`: the changes
    /// below that run code go too (never what a file rule asks about: those go one by one).
    Folders(&'a [PathBuf], bool),
}

/// What applying did, per staged grant.
#[derive(Debug, Default, serde::Serialize)]
pub struct Applied {
    pub grant: PathBuf,
    pub applied: usize,
    pub already: usize,
    pub conflicts: Vec<Held>,
    pub refused: Vec<Held>,
    /// Changes that would run code on the host, held until named with their reason
    /// acknowledged.
    pub flagged: Vec<Held>,
}

/// How long a staged grant's token lives: changes can wait a week for review.
pub const TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The token authority: its root key and revocation set under Ward's key directory.
pub fn authority() -> anyhow::Result<ward_token::Authority> {
    let paths = LogPaths::default_paths()?;
    ward_token::Authority::open(&paths.keys.join("tokens"))
        .context("cannot open the capability token keys")
}

/// The token of stage `i` of `s` (from its `stage.json`, read again: a review before this one
/// may have rotated it).
fn token_of(s: &Staged, i: usize) -> Option<String> {
    crate::state::read::<crate::state::StageFile>(&s.dir.join("stage.json"))
        .ok()
        .and_then(|f| f.tokens.get(i).cloned())
}

/// Store a rotated token in the session's `stage.json` (written atomically).
fn store_token(s: &Staged, i: usize, token: &str) -> anyhow::Result<()> {
    let path = s.dir.join("stage.json");
    let mut info: crate::state::StageFile = crate::state::read(&path)?;
    match info.tokens.get_mut(i) {
        Some(t) => *t = token.to_string(),
        None => anyhow::bail!("{} has no token for stage {i}", path.display()),
    }
    crate::state::write(&path, &info)
}

fn journal_of(stage: &ward_stage::Stage) -> PathBuf {
    stage.upper.with_file_name("journal")
}

fn open_log() -> anyhow::Result<AuditLog> {
    let paths = LogPaths::default_paths()?;
    AuditLog::open(
        &paths.log,
        &KeyStore::new(&paths.keys),
        WriterOptions::default(),
    )
    .context("cannot open the audit log, and Ward applies nothing unrecorded")
}

/// The user approving: their login name, else their uid.
pub fn who() -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// One review at a time per session: an exclusive lock on its `stage.json`, held while the
/// returned file is open.
pub(crate) fn lock(s: &Staged) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let p = s.dir.join("stage.json");
    let f = std::fs::File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
    // SAFETY: flock on an open descriptor; blocks while another review holds it.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", p.display()));
    }
    Ok(f)
}

/// Finish any batch of `s` a crash interrupted (recorded). Returns what was finished.
pub fn resume(s: &Staged) -> anyhow::Result<Vec<Applied>> {
    let _lock = lock(s)?;
    resume_locked(s)
}

pub(crate) fn resume_locked(s: &Staged) -> anyhow::Result<Vec<Applied>> {
    let mut out = Vec::new();
    for st in &s.stages {
        let journal = journal_of(st);
        if !journal.exists() {
            continue;
        }
        let log = open_log()?;
        let Some(r) = apply::resume(&journal, st).with_context(|| {
            format!(
                "cannot finish the interrupted commit to {}",
                st.grant.display()
            )
        })?
        else {
            continue; // finished by another review meanwhile
        };
        log.close_with(outcome_event(s, &st.grant, &r, true))?;
        out.push(Applied {
            grant: st.grant.clone(),
            applied: r.applied,
            already: r.already,
            conflicts: r.conflicts,
            ..Applied::default()
        });
    }
    Ok(out)
}

fn outcome_event(s: &Staged, grant: &Path, r: &Report, resumed: bool) -> Event {
    Event {
        session: Some(s.session.clone()),
        resource: Some(grant.display().to_string()),
        detail: Some(json!({
            "applied": r.applied,
            "already_done": r.already,
            "conflicts": r.conflicts,
            "resumed": resumed,
        })),
        ..Event::new(ward_core::EventKind::ReviewApplied)
    }
}

fn selected(changes: &[Change], grant: &Path, sel: &Selection) -> Vec<Change> {
    match sel {
        Selection::All => changes.to_vec(),
        // A folder approved in the folder-by-folder review: what it showed under that folder
        // (its path), and a rename only when both of its ends are in approved folders.
        Selection::Folders(ps, _) => {
            let under = |p: &Path| {
                ps.iter()
                    .any(|f| p.starts_with(f.strip_prefix(grant).unwrap_or(f)))
            };
            changes
                .iter()
                .filter(|c| under(&c.path) && c.from.as_ref().is_none_or(|f| under(f)))
                .cloned()
                .collect()
        }
        Selection::Paths(ps, _) => changes
            .iter()
            .filter(|c| {
                ps.iter().any(|p| {
                    let rel = p.strip_prefix(grant).unwrap_or(p);
                    // A folder selects what is below it too.
                    c.path.starts_with(rel) || c.from.as_ref().is_some_and(|f| f.starts_with(rel))
                })
            })
            .cloned()
            .collect(),
        Selection::Exact(ps) => changes
            .iter()
            .filter(|c| {
                ps.iter()
                    .any(|p| p.strip_prefix(grant).unwrap_or(p) == c.path.as_path())
            })
            .cloned()
            .collect(),
    }
}

/// Apply the selected changes of `s`: resume first, plan, record the approvals, commit,
/// record the outcome; remove the session's stage once nothing is left in it.
pub fn apply_changes(s: &Staged, sel: Selection, channel: &str) -> anyhow::Result<Vec<Applied>> {
    let _lock = lock(s)?;
    resume_locked(s)?;

    let by = who();
    let authority = authority()?;
    let mut rules = FileRules::of(s)?;
    let mut out = Vec::new();
    for (i, st) in s.stages.iter().enumerate() {
        // The grant's token must still allow writing the folder: not revoked, not expired.
        let token = token_of(s, i).with_context(|| {
            format!(
                "the session has no capability token for {}, so Ward applies nothing to it; \
                 discard the changes or copy what you need by hand",
                st.grant.display()
            )
        })?;
        let verified = match authority
            .verify(&token, ward_token::Right::Write, &st.grant)
            .and_then(|v| {
                if v.session == s.session {
                    Ok(v)
                } else {
                    Err(ward_token::TokenError::Denied(format!(
                        "it belongs to session {}, not {}",
                        v.session, s.session
                    )))
                }
            }) {
            Ok(v) => v,
            Err(e) => {
                let log = open_log()?;
                log.close_with(Event {
                    session: Some(s.session.clone()),
                    resource: Some(st.grant.display().to_string()),
                    decision: Some(EventDecision {
                        result: Effect::Deny,
                        by: ward_core::By::builtin("token"),
                        reason: e.to_string(),
                    }),
                    ..Event::new(ward_core::EventKind::ReviewRefused)
                })?;
                anyhow::bail!(
                    "nothing applied to {}: {e}; the changes stay staged (`ward review --discard-all` drops them)",
                    st.grant.display()
                );
            }
        };
        let changes = ward_stage::changes(st)
            .with_context(|| format!("cannot read the stage of {}", st.grant.display()))?;
        let flags = flagged_by_all(st, &changes, &mut rules);
        let flags_of = |c: &Change| -> &[ward_stage::classify::Flag] {
            changes
                .iter()
                .position(|x| x == c)
                .map_or(&[], |i| flags[i].as_slice())
        };
        let mut chosen = selected(&changes, &st.grant, &sel);
        // What a file rule denies never goes, however it is named.
        let mut denied = Vec::new();
        chosen.retain(|c| {
            if !flags_of(c).iter().any(|f| f.code == RULE_DENY) {
                return true;
            }
            if let Some(d) = rules.decision(&st.grant, c) {
                denied.push((
                    Held {
                        path: c.path.clone(),
                        reason: d.reason.clone(),
                    },
                    d,
                ));
            }
            false
        });
        // What runs code, or what a rule asks about, goes only when named exactly, its reason
        // acknowledged.
        let mut flagged = Vec::new();
        chosen.retain(|c| {
            let f = flags_of(c);
            if f.is_empty() || acknowledged(c, &st.grant, &sel, f) {
                return true;
            }
            flagged.push(Held {
                path: c.path.clone(),
                reason: reasons(f),
            });
            false
        });
        if chosen.is_empty() && flagged.is_empty() && denied.is_empty() {
            continue;
        }
        // The stage of an agent's kept home: applied only while no session uses that home
        // (its end check would take the change back), and what is applied is then accepted.
        let home_store = Some(crate::home::guard_store(&st.grant)).filter(|p| p.exists());
        let _home_lock = match &home_store {
            Some(_) => Some(crate::home::lock_idle(&st.grant).with_context(|| {
                format!(
                    "nothing applied to {}: a session is using this agent's home; apply its \
                     changes after that session ends",
                    st.grant.display()
                )
            })?),
            None => None,
        };
        let plan: Plan = apply::plan(st, &chosen, i128::from(s.info.started_of(i)));
        let log = open_log()?;
        // Approved by folder: one record per folder for what runs no code (its count, size
        // and a digest of every path and content), one per change for the rest.
        let folders: &[PathBuf] = match &sel {
            Selection::Folders(ps, _) => ps,
            _ => &[],
        };
        let folder_of = |c: &Change| {
            folders
                .iter()
                .find(|f| st.grant.join(&c.path).starts_with(f))
                .filter(|_| flags_of(c).is_empty())
        };
        let mut records: Vec<Event> = folders
            .iter()
            .filter_map(|f| {
                let these: Vec<&Change> = plan
                    .changes
                    .iter()
                    .filter(|c| folder_of(c) == Some(f))
                    .collect();
                (!these.is_empty())
                    .then(|| folder_approval(s, st, f, &these, &by, channel, &verified.id))
            })
            .collect();
        records.extend(
            plan.changes
                .iter()
                .filter(|c| folder_of(c).is_none())
                .map(|c| Event {
                    session: Some(s.session.clone()),
                    resource: Some(st.grant.join(&c.path).display().to_string()),
                    size: c.after.as_ref().map(|a| a.size),
                    decision: Some(EventDecision {
                        result: Effect::Allow,
                        by: ward_core::By::person(&by),
                        reason: format!("approved in review ({channel})"),
                    }),
                    consent: Some("granted".into()),
                    token: Some(verified.id.clone()),
                    detail: Some(json!({
                        "change": c.kind.as_str(),
                        "from": c.from.as_ref().map(|f| st.grant.join(f)),
                        "before_sha256": c.before.as_ref().and_then(|b| b.sha256.clone()),
                        "after_sha256": c.after.as_ref().and_then(|a| a.sha256.clone()),
                        "approved_by": by,
                        "flags": flags_of(c),
                        "acknowledged": !flags_of(c).is_empty(),
                    })),
                    ..Event::new(ward_core::EventKind::ReviewApprove)
                }),
        );
        for (h, d) in &denied {
            records.push(Event {
                session: Some(s.session.clone()),
                resource: Some(st.grant.join(&h.path).display().to_string()),
                decision: Some(EventDecision {
                    result: Effect::Deny,
                    by: d.by.clone(),
                    reason: format!(
                        "{}; a file rule denies it, so it is never applied",
                        d.reason
                    ),
                }),
                ..Event::new(ward_core::EventKind::ReviewHeld)
            });
        }
        for h in &flagged {
            // A rule's ask is recorded under the rule; what runs code under Ward's check.
            let rule = changes
                .iter()
                .find(|c| c.path == h.path)
                .and_then(|c| rules.decision(&st.grant, c));
            records.push(Event {
                session: Some(s.session.clone()),
                resource: Some(st.grant.join(&h.path).display().to_string()),
                decision: Some(EventDecision {
                    result: Effect::Deny,
                    by: rule.map_or(ward_core::By::builtin("review.runs-code"), |d| d.by),
                    reason: format!(
                        "{}; held until it is named on its own with the reason acknowledged",
                        h.reason
                    ),
                }),
                ..Event::new(ward_core::EventKind::ReviewFlagged)
            });
        }
        for (h, what) in plan
            .conflicts
            .iter()
            .map(|h| (h, "conflict"))
            .chain(plan.refused.iter().map(|h| (h, "refused")))
        {
            records.push(Event {
                session: Some(s.session.clone()),
                resource: Some(st.grant.join(&h.path).display().to_string()),
                decision: Some(EventDecision {
                    result: Effect::Deny,
                    by: ward_core::By::builtin(&format!("review.{what}")),
                    reason: h.reason.clone(),
                }),
                ..Event::new(ward_core::EventKind::ReviewHeld)
            });
        }
        // The approvals are on disk before the real folder changes.
        log.append_all(records)
            .context("cannot record the approvals, so nothing was applied")?;
        let denied: Vec<Held> = denied.into_iter().map(|(h, _)| h).collect();
        if chosen.is_empty() {
            log.close()?;
            out.push(Applied {
                grant: st.grant.clone(),
                flagged,
                refused: denied,
                ..Applied::default()
            });
            continue;
        }
        let r = apply::execute(st, &plan, &journal_of(st))
            .with_context(|| format!("the commit to {} stopped", st.grant.display()))?;
        log.append(outcome_event(s, &st.grant, &r, false))?;
        // The stage of an agent's home: what the person applied there is what Ward accepts
        // of its guarded settings from now on.
        if let Some(store) = &home_store {
            let approved: Vec<(String, Option<String>)> = plan
                .changes
                .iter()
                .flat_map(|c| {
                    let after = c.after.as_ref().and_then(|a| a.sha256.clone());
                    let from = c
                        .from
                        .as_ref()
                        .map(|f| (f.to_string_lossy().into_owned(), None));
                    std::iter::once((c.path.to_string_lossy().into_owned(), after)).chain(from)
                })
                .collect();
            if let Err(e) = crate::guard::accept(&st.grant, store, &approved) {
                eprintln!(
                    "ward: warning: applied, but Ward could not note it as accepted ({e}); the \
                     next session will hold these settings again"
                );
            }
        }
        // Rotate: the next generation replaces the token, the old one is revoked.
        let (next, old) = authority
            .next_generation(&token, &st.grant, TOKEN_TTL)
            .context("cannot rotate the grant's token")?;
        // The new one is stored before the old one is revoked: a failure in between leaves a
        // usable token, never none.
        store_token(s, i, &next)?;
        authority.revoke(&token)?;
        log.close_with(Event {
            session: Some(s.session.clone()),
            resource: Some(st.grant.display().to_string()),
            token: Some(old.id.clone()),
            detail: Some(json!({
                "revoked": old.id,
                "new": authority.inspect(&next).map(|i| i.id).unwrap_or_default(),
                "generation": old.generation + 1,
            })),
            ..Event::new(ward_core::EventKind::TokenRotate)
        })?;
        let mut conflicts = plan.conflicts.clone();
        conflicts.extend(r.conflicts.iter().cloned());
        let mut refused = plan.refused.clone();
        refused.extend(denied);
        out.push(Applied {
            grant: st.grant.clone(),
            applied: r.applied,
            already: r.already,
            conflicts,
            refused,
            flagged,
        });
    }
    close_if_done(s, &authority)?;
    Ok(out)
}

/// Whether a flagged change may go with this selection: named on its own, one by one in the
/// interactive review (where its reason was shown) or exactly with `--acknowledge`.
fn acknowledged(
    c: &Change,
    grant: &Path,
    sel: &Selection,
    flags: &[ward_stage::classify::Flag],
) -> bool {
    let named = |ps: &[PathBuf]| {
        ps.iter()
            .any(|p| p.strip_prefix(grant).unwrap_or(p) == c.path.as_path())
    };
    match sel {
        Selection::All => false,
        Selection::Paths(ps, ack) => *ack && named(ps),
        Selection::Exact(ps) => named(ps),
        Selection::Folders(_, ack) => *ack && flags.iter().all(|x| x.code != RULE_ASK),
    }
}

/// One approval record for the changes below `folder` that a person approved together:
/// how many, of which kinds, their size, and a SHA-256 over every path and content (sorted),
/// so that what went can be checked against a copy of the stage.
fn folder_approval(
    s: &Staged,
    st: &ward_stage::Stage,
    folder: &Path,
    these: &[&Change],
    by: &str,
    channel: &str,
    token: &str,
) -> Event {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = these
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c.kind.as_str(),
                // The name's bytes, escaped: two names never give one line.
                c.path.as_os_str().as_encoded_bytes().escape_ascii(),
                c.after
                    .as_ref()
                    .and_then(|a| a
                        .sha256
                        .clone()
                        .or(a.target.as_ref().map(|t| t.display().to_string())))
                    .unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    let mut kinds = serde_json::Map::new();
    for c in these {
        let n = kinds.entry(c.kind.as_str()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    let bytes: u64 = these
        .iter()
        .filter_map(|c| c.after.as_ref())
        .map(|a| a.size)
        .sum();
    Event {
        session: Some(s.session.clone()),
        resource: Some(folder.display().to_string()),
        size: Some(bytes),
        decision: Some(EventDecision {
            result: Effect::Allow,
            by: ward_core::By::person(by),
            reason: format!("approved as a folder in review ({channel})"),
        }),
        consent: Some("granted".into()),
        token: Some(token.to_string()),
        detail: Some(json!({
            "folder": folder,
            "grant": st.grant,
            "changes": these.len(),
            "kinds": kinds,
            "bytes": bytes,
            "digest": format!("{:x}", h.finalize()),
            "approved_by": by,
        })),
        ..Event::new(ward_core::EventKind::ReviewApprove)
    }
}

/// The reasons of a flagged change, in one line.
pub fn reasons(f: &[ward_stage::classify::Flag]) -> String {
    f.iter()
        .map(|x| x.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The changes of a stage with what each would run and what the session's file rules say of
/// it (see [`FileRules`]), those flagged first.
pub fn classified(
    st: &ward_stage::Stage,
    rules: &mut FileRules,
) -> anyhow::Result<Vec<(Change, Vec<ward_stage::classify::Flag>)>> {
    let changes = ward_stage::changes(st)
        .with_context(|| format!("cannot read the stage of {}", st.grant.display()))?;
    let flags = flagged_by_all(st, &changes, rules);
    let mut all: Vec<_> = changes.into_iter().zip(flags).collect();
    all.sort_by_key(|(_, f)| f.is_empty());
    Ok(all)
}

/// What runs code (ward-stage's classifier) and what the file rules ask for or deny, per
/// change.
fn flagged_by_all(
    st: &ward_stage::Stage,
    changes: &[Change],
    rules: &mut FileRules,
) -> Vec<Vec<ward_stage::classify::Flag>> {
    let mut flags = ward_stage::classify::classify(st, changes);
    for (c, f) in changes.iter().zip(flags.iter_mut()) {
        f.extend(rules.judge(&st.grant, c));
    }
    flags
}

/// The flag of a change a file rule denies: never applied, whatever the selection.
pub const RULE_DENY: &str = "manifest-deny";
/// The flag of a change a file rule asks about: applied only when named on its own.
pub const RULE_ASK: &str = "manifest-ask";

/// The session's `file.write` and `file.delete` rules and the policies bound to them, judged
/// on every staged change at review (a change is a write of its path, a deletion, or both for
/// a move). Grants and mandatory denies were the sandbox's business during the session; here
/// only what the rules and policies say counts. Loaded again from the session's manifest, so
/// the rules in the file now are the ones that hold.
pub struct FileRules {
    pdp: Option<ward_policy::Pdp>,
}

impl FileRules {
    /// No rules: nothing to judge.
    pub fn none() -> FileRules {
        FileRules { pdp: None }
    }

    /// The file rules of session `s` (from the manifest named in its `stage.json`). An error
    /// when that manifest no longer loads: Ward does not apply what it cannot judge.
    pub fn of(s: &Staged) -> anyhow::Result<FileRules> {
        let Some(src) = &s.info.manifest else {
            return Ok(FileRules::none());
        };
        let opts = ward_core::LoadOptions {
            managed: s.info.managed.clone(),
            ..ward_core::LoadOptions::default()
        };
        let mut m = ward_core::Manifest::load(src, &opts).with_context(|| {
            format!(
                "cannot load {}, the manifest of session {}, to judge the changes by its file \
                 rules; fix it and review again (nothing was applied)",
                src.display(),
                s.session
            )
        })?;
        FileRules::from_manifest(&mut m, s)
    }

    /// The file rules of `m` for the stages of `s`.
    pub fn from_manifest(m: &mut ward_core::Manifest, s: &Staged) -> anyhow::Result<FileRules> {
        if !m.has_file_rules() {
            return Ok(FileRules::none());
        }
        // The session's grants allow; rules, policies and managed ceilings decide.
        m.deny_paths.clear();
        for g in &mut m.files {
            g.deny.clear();
        }
        for st in &s.stages {
            if !m.files.iter().any(|g| g.path == st.grant) {
                m.files.push(ward_core::FileGrant {
                    path: st.grant.clone(),
                    access: ward_core::Access::ReadWrite,
                    mode: ward_core::Mode::Staged,
                    deny: vec![],
                    origin: ward_core::Origin::Default,
                });
            }
        }
        let pdp = ward_policy::Pdp::new(m.clone())
            .context("cannot load the policies bound to file writes")?;
        Ok(FileRules { pdp: Some(pdp) })
    }

    /// What the rules say of change `c` in `grant`, as a flag: nothing when they allow it.
    fn judge(&mut self, grant: &Path, c: &Change) -> Option<ward_stage::classify::Flag> {
        let d = self.decision(grant, c)?;
        Some(match d.effect {
            Effect::Deny => ward_stage::classify::Flag {
                code: RULE_DENY,
                reason: format!("denied by {}: {}", d.by, d.reason),
            },
            _ => ward_stage::classify::Flag {
                code: RULE_ASK,
                reason: format!(
                    "the manifest asks before this change: {} ({})",
                    d.reason, d.by
                ),
            },
        })
    }

    /// The rules' decision on change `c` in `grant` when it is not an allow.
    pub fn decision(&mut self, grant: &Path, c: &Change) -> Option<ward_core::Decision> {
        use ward_core::ActionKind::{FileDelete, FileWrite};
        let pdp = self.pdp.as_mut()?;
        let on = |kind, p: &Path| {
            ward_core::Action::new(kind, grant.join(p).to_string_lossy().into_owned())
        };
        let mut actions = vec![];
        match c.kind {
            ward_stage::Kind::Deleted => actions.push(on(FileDelete, &c.path)),
            ward_stage::Kind::Renamed => {
                actions.push(on(FileWrite, &c.path));
                if let Some(f) = &c.from {
                    actions.push(on(FileDelete, f));
                }
            }
            _ => actions.push(on(FileWrite, &c.path)),
        }
        actions
            .iter()
            .map(|a| pdp.decide(a))
            .max_by_key(|d| d.effect)
            .filter(|d| d.effect != Effect::Allow)
    }
}

/// One change as a line a person reads: kind, name (through Ward's printer), where it came
/// from, the mode of what is added, and what it would run.
pub fn line(c: &Change, f: &[ward_stage::classify::Flag]) -> String {
    let mut l = format!(
        "{} {:<9} {}",
        if f.is_empty() { " " } else { "!" },
        c.kind.as_str(),
        ward_stage::shown(&c.path)
    );
    if let Some(from) = &c.from {
        l.push_str(&format!(" (from {})", ward_stage::shown(from)));
    }
    if let (None, Some(a)) = (&c.before, &c.after) {
        if a.kind != ward_stage::EntryType::Symlink {
            l.push_str(&format!("  (mode {:o})", a.mode & 0o7777));
        }
    }
    if let Some(t) = c.after.as_ref().and_then(|a| a.target.as_ref()) {
        l.push_str(&format!(" -> {}", ward_stage::shown(t)));
        if ward_stage::apply::system_target(t) {
            l.push_str("  (a system file)");
        }
    }
    for (label, of_rules) in [("RUNS CODE", false), ("RULE", true)] {
        let these: Vec<_> = f
            .iter()
            .filter(|x| (x.code == RULE_DENY || x.code == RULE_ASK) == of_rules)
            .cloned()
            .collect();
        if !these.is_empty() {
            l.push_str(&format!("\n      {label}: {}", reasons(&these)));
        }
    }
    l
}

/// Once nothing is left to review, the session's stage goes, and its grant tokens with it.
fn close_if_done(s: &Staged, authority: &ward_token::Authority) -> anyhow::Result<()> {
    let left: usize = s
        .stages
        .iter()
        .map(|st| ward_stage::changes(st).map_or(1, |c| c.len()))
        .sum();
    if left == 0 {
        authority.revoke_session(&s.session)?;
        let _ = ward_stage::deep::remove_all(&s.dir);
    }
    Ok(())
}

/// Discard some changes of `s` (recorded, one record each).
pub fn discard_changes(s: &Staged, paths: &[PathBuf], channel: &str) -> anyhow::Result<usize> {
    let _lock = lock(s)?;
    let by = who();
    let log = open_log()?;
    let mut n = 0;
    for st in &s.stages {
        let changes = ward_stage::changes(st)?;
        let chosen = selected(&changes, &st.grant, &Selection::Paths(paths, false));
        let mut records = Vec::new();
        for c in &chosen {
            records.push(Event {
                session: Some(s.session.clone()),
                resource: Some(st.grant.join(&c.path).display().to_string()),
                decision: Some(EventDecision {
                    result: Effect::Deny,
                    by: ward_core::By::person(&by),
                    reason: format!("discarded in review ({channel})"),
                }),
                consent: Some("refused".into()),
                detail: Some(json!({"change": c.kind.as_str()})),
                ..Event::new(ward_core::EventKind::ReviewDiscard)
            });
        }
        // On record before the stage loses them.
        log.append_all(records)
            .context("cannot record the discards, so nothing was discarded")?;
        for c in &chosen {
            if ward_stage::discard(st, c)? {
                n += 1;
            }
        }
    }
    log.close()?;
    close_if_done(s, &authority()?)?;
    Ok(n)
}

/// A folder with more changes than this is listed as one line (and asked about as one).
const GROUP_LISTED: usize = 20;
/// Below a folder's line, at most this many of its changes that run code are listed.
const FLAGGED_LISTED: usize = 10;

/// The changes of one stage under one top-level entry of the grant (a folder, or a file).
pub struct Group {
    pub top: PathBuf,
    /// Indexes into the stage's changes.
    pub idx: Vec<usize>,
}

/// The changes grouped by their first path component, in the order first seen.
pub fn groups(changes: &[(Change, Vec<ward_stage::classify::Flag>)]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (i, (c, _)) in changes.iter().enumerate() {
        let top: PathBuf = c.path.components().take(1).collect();
        match out.iter_mut().find(|g| g.top == top) {
            Some(g) => g.idx.push(i),
            None => out.push(Group { top, idx: vec![i] }),
        }
    }
    out
}

impl Group {
    /// How many of its changes run code or are asked about by a rule.
    pub fn runs_code(&self, changes: &[(Change, Vec<ward_stage::classify::Flag>)]) -> usize {
        self.idx
            .iter()
            .filter(|&&i| !changes[i].1.is_empty())
            .count()
    }

    /// `venv/  1,683 change(s) (1,680 added, 3 modified), 32.0 MiB; 4 run code: ...`.
    pub fn summary(&self, changes: &[(Change, Vec<ward_stage::classify::Flag>)]) -> String {
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        let mut bytes = 0u64;
        let mut reasons: Vec<&str> = Vec::new();
        for &i in &self.idx {
            let (c, f) = &changes[i];
            match kinds.iter_mut().find(|(k, _)| *k == c.kind.as_str()) {
                Some((_, n)) => *n += 1,
                None => kinds.push((c.kind.as_str(), 1)),
            }
            bytes += c.after.as_ref().map_or(0, |a| a.size);
            for x in f {
                let short = x
                    .reason
                    .split(['(', ':'])
                    .next()
                    .unwrap_or(&x.reason)
                    .trim();
                if !reasons.contains(&short) {
                    reasons.push(short);
                }
            }
        }
        let runs = self.runs_code(changes);
        format!(
            "{}/  {} change(s) ({}), {}{}",
            ward_stage::shown(&self.top),
            self.idx.len(),
            kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            ward_core::size::format_size(bytes),
            if runs > 0 {
                format!(
                    "; {runs} marked ! ({})",
                    reasons
                        .iter()
                        .take(3)
                        .copied()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            } else {
                String::new()
            }
        )
    }
}

/// How long a review question waits for an answer; silence keeps the changes (nothing is
/// applied without a person).
pub const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Review `s` with a person: list the changes and ask what to do (apply all, one by one,
/// discard all, keep for later). Every answer is recorded; no answer keeps everything.
pub fn interactive(s: &Staged, consent: &mut dyn Consent) -> anyhow::Result<()> {
    use ward_consent::{Question, Reply};
    let channel = consent.channel();
    let color = consent.color();
    let mut all = Vec::new();
    let mut folder_groups = Vec::new();
    let mut listing = String::new();
    let mut rules = FileRules::of(s)?;
    for st in &s.stages {
        let changes = classified(st, &mut rules)?;
        listing.push_str(&format!(
            "\nStaged by session {} in {} ({} change(s)):\n",
            s.session,
            ward_core::inert::path(&st.grant),
            changes.len()
        ));
        let runs = changes.iter().filter(|(_, f)| !f.is_empty()).count();
        if runs > 0 {
            listing.push_str(&format!(
                "  {runs} change(s) marked ! would run code on this machine without you running \
                 them, or a file rule asks about or denies them; \"apply all\" leaves them \
                 staged: review each to apply one knowingly.\n"
            ));
        }
        // A folder with many changes (an environment, node_modules) is one line, with what in
        // it runs code listed below it.
        for g in groups(&changes) {
            if g.idx.len() <= GROUP_LISTED {
                for &i in &g.idx {
                    listing.push_str(&format!("  {}\n", line(&changes[i].0, &changes[i].1)));
                }
                continue;
            }
            listing.push_str(&format!("  {}\n", g.summary(&changes)));
            let flagged: Vec<usize> = g
                .idx
                .iter()
                .copied()
                .filter(|&i| !changes[i].1.is_empty())
                .collect();
            for &i in flagged.iter().take(FLAGGED_LISTED) {
                listing.push_str(&format!("    {}\n", line(&changes[i].0, &changes[i].1)));
            }
            if flagged.len() > FLAGGED_LISTED {
                listing.push_str(&format!(
                    "    ... and {} more marked ! (`ward review {} --list` shows every one)\n",
                    flagged.len() - FLAGGED_LISTED,
                    s.session
                ));
            }
        }
        folder_groups.push((st.clone(), groups(&changes), changes.clone()));
        all.extend(changes.into_iter().map(|(c, f)| (st.clone(), c, f)));
    }
    if all.is_empty() {
        return Ok(());
    }
    consent.show(&listing);
    let keep_note = |why: &str| -> anyhow::Result<()> {
        let log = open_log()?;
        log.close_with(Event {
            session: Some(s.session.clone()),
            detail: Some(json!({"kept": all.len(), "why": why})),
            ..Event::new(ward_core::EventKind::ReviewKeep)
        })?;
        Ok(())
    };
    let first = consent.ask(&Question {
        text: "What should happen to these changes?",
        choices: &[
            ('k', "keep them for later (`ward review`)"),
            ('a', "apply all"),
            ('f', "choose folder by folder"),
            ('r', "review each"),
            ('d', "discard all"),
        ],
        default: 'k',
        timeout: ward_consent::ask_timeout(ASK_TIMEOUT),
    });
    match first {
        Reply::Chose('a') => {
            report(consent, &apply_changes(s, Selection::All, channel)?);
        }
        Reply::Chose('d') => {
            crate::sessions::discard(s)?;
            consent.show("Discarded.\n");
        }
        Reply::Chose('f') => {
            let (mut plain, mut knowing, mut drop) = (Vec::new(), Vec::new(), Vec::new());
            'folders: for (st, gs, changes) in &folder_groups {
                for g in gs {
                    let runs = g.runs_code(changes);
                    if runs > FLAGGED_LISTED {
                        // "All of it, knowingly" is asked only about what was shown: each one.
                        let mut each = format!("\nIn {}/, marked !:\n", ward_stage::shown(&g.top));
                        for &i in g.idx.iter().filter(|&&i| !changes[i].1.is_empty()) {
                            each.push_str(&format!("  {}\n", line(&changes[i].0, &changes[i].1)));
                        }
                        consent.show(&each);
                    }
                    let text = format!("{}?", g.summary(changes));
                    let mut choices: Vec<(char, &str)> = vec![(
                        'y',
                        if runs > 0 {
                            "apply what in it runs no code"
                        } else {
                            "apply it"
                        },
                    )];
                    if runs > 0 {
                        choices.push(('!', "apply all of it, knowing what runs code"));
                    }
                    choices.extend([
                        ('s', "skip (keep it staged)"),
                        ('n', "discard it"),
                        ('q', "stop here (keep the rest)"),
                    ]);
                    let r = consent.ask(&Question {
                        text: &text,
                        choices: &choices,
                        default: 's',
                        timeout: ward_consent::ask_timeout(ASK_TIMEOUT),
                    });
                    let at = st.grant.join(&g.top);
                    match r {
                        Reply::Chose('y') => plain.push(at),
                        Reply::Chose('!') => knowing.push(at),
                        Reply::Chose('n') => drop.push(at),
                        Reply::Chose('s') => {}
                        _ => break 'folders,
                    }
                }
            }
            for (folders, ack) in [(&plain, false), (&knowing, true)] {
                if !folders.is_empty() {
                    report(
                        consent,
                        &apply_changes(s, Selection::Folders(folders, ack), channel)?,
                    );
                }
            }
            if !drop.is_empty() {
                let n = discard_changes(s, &drop, channel)?;
                consent.show(&format!("Discarded {n} change(s).\n"));
            }
            if plain.is_empty() && knowing.is_empty() && drop.is_empty() {
                keep_note("nothing chosen")?;
            }
        }
        Reply::Chose('r') => {
            let mut apply = Vec::new();
            let mut drop = Vec::new();
            for (st, c, f) in &all {
                consent.show(&format!("\n{}", ward_stage::diff(st, c, color)?));
                let denied = f.iter().find(|x| x.code == RULE_DENY);
                let (text, choices): (String, &[(char, &str)]) = if let Some(d) = denied {
                    (
                        format!(
                            "{} {}: {} It is not applied.",
                            c.kind.as_str(),
                            ward_stage::shown(&c.path),
                            ward_core::inert::line(&d.reason)
                        ),
                        &[
                            ('s', "skip (keep it staged)"),
                            ('n', "discard"),
                            ('q', "stop here (keep the rest)"),
                        ],
                    )
                } else if f.is_empty() {
                    (
                        format!("{} {}?", c.kind.as_str(), ward_stage::shown(&c.path)),
                        &[
                            ('s', "skip (keep it staged)"),
                            ('y', "apply"),
                            ('n', "discard"),
                            ('q', "stop here (keep the rest)"),
                        ],
                    )
                } else {
                    (
                        format!(
                            "{} {}? {}: {}",
                            c.kind.as_str(),
                            ward_stage::shown(&c.path),
                            if f.iter().all(|x| x.code == RULE_ASK) {
                                "The manifest asks before this change"
                            } else {
                                "This RUNS CODE on this machine"
                            },
                            reasons(f)
                        ),
                        &[
                            ('s', "skip (keep it staged)"),
                            ('!', "apply it, knowing why it is flagged"),
                            ('n', "discard"),
                            ('q', "stop here (keep the rest)"),
                        ],
                    )
                };
                let r = consent.ask(&Question {
                    text: &text,
                    choices,
                    default: 's',
                    timeout: ward_consent::ask_timeout(ASK_TIMEOUT),
                });
                match r {
                    Reply::Chose('y' | '!') => apply.push(st.grant.join(&c.path)),
                    Reply::Chose('n') => drop.push(st.grant.join(&c.path)),
                    Reply::Chose('s') => {}
                    _ => break,
                }
            }
            if !apply.is_empty() {
                report(
                    consent,
                    &apply_changes(s, Selection::Exact(&apply), channel)?,
                );
            }
            if !drop.is_empty() {
                let n = discard_changes(s, &drop, channel)?;
                consent.show(&format!("Discarded {n} change(s).\n"));
            }
            if apply.is_empty() && drop.is_empty() {
                keep_note("nothing chosen")?;
            }
        }
        Reply::Chose(_) => {
            keep_note("kept for later")?;
            consent.show(&format!(
                "Kept: `ward review {}` when you are ready.\n",
                s.session
            ));
        }
        Reply::TimedOut => keep_note("no answer in time")?,
        Reply::Unavailable(why) => keep_note(&why)?,
    }
    Ok(())
}

fn report(consent: &mut dyn Consent, done: &[Applied]) {
    for d in done {
        consent.show(&format!(
            "Applied {} step(s) to {}.\n",
            d.applied,
            ward_core::inert::path(&d.grant)
        ));
        for h in d.conflicts.iter().chain(&d.refused) {
            consent.show(&format!(
                "  held: {}: {}\n",
                ward_stage::shown(&h.path),
                ward_core::inert::line(&h.reason)
            ));
        }
        for h in &d.flagged {
            let what = if h.reason.starts_with("the manifest asks") {
                "a rule asks"
            } else {
                "runs code"
            };
            consent.show(&format!(
                "  held, {what}: {}: {} (review each to apply it knowingly)\n",
                ward_stage::shown(&h.path),
                ward_core::inert::line(&h.reason)
            ));
        }
    }
}

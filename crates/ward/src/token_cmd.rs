//! `ward token`: the capability tokens that hold staged grants.

use crate::{print_json, Outcome};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use ward_audit::Event;
use ward_token::{attenuate, Attenuation, Grant, Right};

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Mint a token for a folder (`ward run` does this for each staged grant).
    #[command(
        after_help = "Examples:\n  ward token issue --folder ~/proj --ttl 1h\n  ward token issue --folder ~/proj --read-only --json"
    )]
    Issue {
        #[arg(long)]
        folder: PathBuf,
        /// Read only (default: read and write).
        #[arg(long)]
        read_only: bool,
        /// How long it lives: 90s, 30m, 12h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The session it belongs to (default: a new id).
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show what a token grants, its checks, its revocation ids, and whether Ward honours it.
    #[command(
        after_help = "Examples:\n  ward token inspect \"$TOKEN\"\n  echo \"$TOKEN\" | ward token inspect - --json"
    )]
    Inspect {
        /// The token, or - to read it from stdin (keeps it out of `ps`).
        token: String,
        #[arg(long)]
        json: bool,
    },
    /// Narrow a token offline: read-only, a sub-folder, an earlier expiry. Never widens.
    #[command(
        after_help = "Examples:\n  ward token attenuate \"$TOKEN\" --read-only\n  ward token attenuate - --folder ~/proj/docs --ttl 10m < token.txt"
    )]
    Attenuate(AttenuateArgs),
    /// Revoke a token (and every token derived from it), or every token of a session.
    #[command(
        after_help = "Examples:\n  ward token revoke \"$TOKEN\"\n  ward token revoke --session 3f9a1c0d2b4e5f60\n\nA revoked token makes `ward review` refuse to apply, with the reason."
    )]
    Revoke {
        /// The token, or - for stdin.
        #[arg(required_unless_present = "session", conflicts_with = "session")]
        token: Option<String>,
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AttenuateArgs {
    /// The token, or - for stdin.
    token: String,
    #[arg(long)]
    read_only: bool,
    #[arg(long)]
    folder: Option<PathBuf>,
    /// Expire this long from now: 90s, 30m, 12h, 7d.
    #[arg(long)]
    ttl: Option<String>,
}

/// `90s`, `30m`, `12h`, `7d`.
fn duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a duration: write 90s, 30m, 12h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("`{s}` is not a duration: write 90s, 30m, 12h or 7d"),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
}

fn read_token(t: &str) -> anyhow::Result<String> {
    if t == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s.trim().to_string())
    } else {
        Ok(t.trim().to_string())
    }
}

pub fn run(c: TokenCmd) -> Outcome {
    let authority = ward_supervisor::review::authority()?;
    match c {
        TokenCmd::Issue {
            folder,
            read_only,
            ttl,
            session,
            json,
        } => {
            let folder = folder
                .canonicalize()
                .with_context(|| format!("cannot use the folder {}", folder.display()))?;
            let session = session.unwrap_or_else(|| {
                let mut b = [0u8; 8];
                let _ = std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
                b.iter().map(|x| format!("{x:02x}")).collect()
            });
            let mut rights = vec![Right::Read];
            if !read_only {
                rights.push(Right::Write);
            }
            let token = authority.issue(&Grant {
                folder: folder.clone(),
                rights,
                session: session.clone(),
                generation: 1,
                expires: SystemTime::now() + duration(&ttl)?,
            })?;
            let id = authority.inspect(&token)?.id;
            crate::record(Event {
                session: Some(session.clone()),
                resource: Some(folder.display().to_string()),
                token: Some(id.clone()),
                detail: Some(json!({"read_only": read_only, "ttl": ttl})),
                ..Event::new(ward_core::EventKind::TokenIssue)
            })?;
            if json {
                print_json(&json!({"token": token, "id": id, "session": session}));
            } else {
                println!("{token}");
            }
            Ok(0)
        }
        TokenCmd::Inspect { token, json } => {
            let i = authority.inspect(&read_token(&token)?)?;
            if json {
                print_json(&serde_json::to_value(&i)?);
            } else {
                println!("id       {}", i.id);
                println!(
                    "status   {}",
                    if i.revoked {
                        "REVOKED"
                    } else {
                        "honoured (if not expired)"
                    }
                );
                for (n, b) in i.blocks.iter().enumerate() {
                    println!("block {n}:");
                    for l in b.lines() {
                        println!("  {l}");
                    }
                }
            }
            Ok(if i.revoked { 1 } else { 0 })
        }
        TokenCmd::Attenuate(a) => {
            let t = attenuate(
                &read_token(&a.token)?,
                authority.public_key(),
                &Attenuation {
                    read_only: a.read_only,
                    folder: a.folder.map(|f| f.canonicalize().unwrap_or(f)),
                    expires: a
                        .ttl
                        .as_deref()
                        .map(duration)
                        .transpose()?
                        .map(|d| SystemTime::now() + d),
                },
            )?;
            println!("{t}");
            Ok(0)
        }
        TokenCmd::Revoke {
            token,
            session,
            json,
        } => {
            let (what, ids) = match (token, session) {
                (Some(t), _) => ("token", authority.revoke(&read_token(&t)?)?),
                (None, Some(s)) => {
                    authority.revoke_session(&s)?;
                    ("session", vec![format!("session:{s}")])
                }
                (None, None) => bail!("name a token or --session"),
            };
            crate::record(Event {
                detail: Some(json!({"revoked": ids})),
                ..Event::new(ward_core::EventKind::TokenRevoke)
            })?;
            if json {
                print_json(&json!({"revoked": ids}));
            } else {
                println!("revoked {what}: {} id(s)", ids.len());
            }
            Ok(0)
        }
    }
}

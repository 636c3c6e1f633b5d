//! `ward secret`: the secrets credentials come from, kept where the agent never reads them.

use crate::{print_json, record, Outcome};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;
use std::io::{IsTerminal, Read, Write};
use ward_audit::Event;
use ward_core::EventKind;
use ward_supervisor::secrets::{self, Store};

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Store a secret, read from the terminal (not echoed) or from stdin; never from the
    /// command line, where other processes could read it.
    #[command(
        after_help = "Examples:\n  ward secret set anthropic\n  printf %s \"$KEY\" | ward secret set anthropic\n  ward secret set --keychain github\n\nA manifest then names it:\n  [[credentials]]\n  name = \"anthropic\"\n  secret = \"store:anthropic\"        # or keychain:NAME, env:VARIABLE\n  env = \"ANTHROPIC_API_KEY\"         # the agent gets a placeholder here\n  to = \"https://api.anthropic.com/v1/\"\n  header = \"x-api-key\"              # or query = \"key\", basic = true"
    )]
    Set {
        name: String,
        /// In the desktop's keychain (Secret Service) instead of Ward's store.
        #[arg(long)]
        keychain: bool,
        #[arg(long)]
        json: bool,
    },
    /// The secrets in Ward's store: names and when they were set (never the secrets).
    #[command(after_help = "Examples:\n  ward secret list\n  ward secret list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    #[command(
        after_help = "Examples:\n  ward secret rm anthropic\n  ward secret rm --keychain github"
    )]
    Rm {
        name: String,
        #[arg(long)]
        keychain: bool,
        #[arg(long)]
        json: bool,
    },
}

/// The secret: typed at the terminal without echo, or all of stdin (one trailing newline
/// dropped).
fn read_secret(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let text = if stdin.is_terminal() {
        eprint!("secret for {name} (not shown): ");
        let _ = std::io::stderr().flush();
        let fd = libc::STDIN_FILENO;
        // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
        let mut old: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is a terminal (checked above); `old` is a valid termios.
        let have = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
        if have {
            let mut quiet = old;
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: the terminal's own settings with echo off.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
        }
        let mut line = String::new();
        let got = stdin.read_line(&mut line);
        if have {
            // SAFETY: the settings read above, restored.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
        }
        eprintln!();
        got.context("cannot read the secret")?;
        line
    } else {
        let mut s = String::new();
        stdin
            .lock()
            .take(8 * 1024 + 3)
            .read_to_string(&mut s)
            .context("cannot read the secret from stdin (UTF-8 text)")?;
        s
    };
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret).to_string();
    if secret.trim().is_empty() {
        bail!("no secret given (type it, or pipe it in)");
    }
    Ok(secret)
}

pub fn run(c: SecretCmd) -> Outcome {
    match c {
        SecretCmd::Set {
            name,
            keychain,
            json,
        } => {
            secrets::check_name(&name)?;
            let secret = read_secret(&name)?;
            let place = if keychain {
                secrets::keychain_set(&name, &secret)?;
                "keychain".to_string()
            } else {
                let dir = secrets::store_dir()?;
                Store::open(dir.clone()).set(&name, &secret)?;
                dir.display().to_string()
            };
            record(Event {
                resource: Some(name.clone()),
                detail: Some(json!({"where": if keychain { "keychain" } else { "store" }})),
                ..Event::new(EventKind::SecretSet)
            })?;
            if json {
                print_json(&json!({"name": name, "where": place}));
            } else {
                println!(
                    "stored `{name}` ({}); a manifest names it as secret = \"{}:{name}\"",
                    ward_core::inert::line(&place),
                    if keychain { "keychain" } else { "store" }
                );
            }
            Ok(0)
        }
        SecretCmd::List { json } => {
            let list = Store::open(secrets::store_dir()?).list()?;
            if json {
                print_json(
                    &json!({"secrets": list.iter().map(|l| json!({"name": l.name, "set": l.set})).collect::<Vec<_>>()}),
                );
            } else if list.is_empty() {
                println!("no secrets in Ward's store (`ward secret set NAME` adds one)");
            } else {
                for l in &list {
                    let when = ward_audit::time::format_micros(l.set as i64 * 1_000_000);
                    println!("{}    set {}", l.name, &when[..16.min(when.len())]);
                }
            }
            Ok(0)
        }
        SecretCmd::Rm {
            name,
            keychain,
            json,
        } => {
            secrets::check_name(&name)?;
            let had = if keychain {
                bail!("removing from the keychain: use your desktop's keychain manager (or `secret-tool clear service ward name {name}`)");
            } else {
                Store::open(secrets::store_dir()?).remove(&name)?
            };
            if had {
                record(Event {
                    resource: Some(name.clone()),
                    ..Event::new(EventKind::SecretRemove)
                })?;
            }
            if json {
                print_json(&json!({"name": name, "removed": had}));
            } else if had {
                println!("removed `{name}`");
            } else {
                eprintln!("ward: no secret `{name}` in Ward's store");
            }
            Ok(if had { 0 } else { 1 })
        }
    }
}

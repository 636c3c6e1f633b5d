use crate::{print_json, Outcome};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use ward_core::{LoadOptions, Manifest};

#[derive(Subcommand)]
pub enum ManifestCmd {
    /// Validate a manifest (TOML, or the seed's JSON form) and the policies it names.
    #[command(after_help = "\
Examples:
  ward manifest check ward.toml
  ward manifest check --portable examples/seed-manifest.json   # written for another machine
  ward manifest check --json ward.toml

Exit codes: 0 valid; 1 invalid (the message names file:line:column); 2 usage error.")]
    Check {
        file: PathBuf,
        /// Do not require granted paths to exist on this machine.
        #[arg(long)]
        portable: bool,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        json: bool,
    },
    /// Print the effective permissions and where each one came from.
    #[command(after_help = "\
Examples:
  ward manifest explain -m ward.toml
  ward manifest explain                 # ./ward.toml, else the built-in default for this folder
  ward manifest explain -m ward.toml --json
  ward manifest explain --profile claude   # what `ward run -- claude` adds, with origins

The managed file (/etc/ward/managed.toml) is merged in and can only narrow what you allow.")]
    Explain {
        #[arg(short, long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct LoadArgs {
    /// Accept grants of /, your home directory, /etc and credential folders.
    #[arg(long)]
    force: bool,
    /// A further managed file to merge after /etc/ward/managed.toml (which always applies):
    /// it can only narrow, never lift, what the system file sets.
    #[arg(long, value_name = "FILE", env = "WARD_MANAGED")]
    managed: Option<PathBuf>,
    /// The agent profile to merge in: claude, codex, gemini, or none. `ward run` chooses one by
    /// the agent's program name unless the manifest's `profile` key or this says otherwise.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
}

impl LoadArgs {
    pub fn options(&self) -> LoadOptions {
        let mut o = LoadOptions {
            force: self.force,
            ..LoadOptions::default()
        };
        // Ward's own state is never grantable: the audit log's folder, the keys, the sessions.
        if let Ok(p) = ward_audit::LogPaths::default_paths() {
            if let Some(state) = p.state_dir() {
                o.protected.push(state.to_path_buf());
            }
            o.protected.push(p.keys);
        }
        // And the secrets credentials come from.
        if let Ok(d) = ward_supervisor::secrets::store_dir() {
            o.protected.push(d);
        }
        if let Some(m) = &self.managed {
            o.managed.push(m.clone());
        }
        o.profile = match self.profile.as_deref() {
            None => ward_core::manifest::profile::Choice::Auto,
            Some("none") => ward_core::manifest::profile::Choice::Off,
            Some(n) => ward_core::manifest::profile::Choice::Named(n.to_string()),
        };
        o
    }
}

/// `-m FILE`, else `./ward.toml`, else the built-in default for the current directory.
pub fn load(manifest: Option<&Path>, opts: &LoadOptions) -> anyhow::Result<Manifest> {
    match manifest {
        Some(p) => Ok(Manifest::load(p, opts)?),
        None if Path::new("ward.toml").exists() => {
            Ok(Manifest::load(Path::new("ward.toml"), opts)?)
        }
        None => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            Ok(Manifest::builtin_default(&cwd, opts)?)
        }
    }
}

pub fn run(cmd: ManifestCmd) -> Outcome {
    match cmd {
        ManifestCmd::Check {
            file,
            portable,
            load,
            json,
        } => {
            let mut opts = load.options();
            opts.check_paths = !portable;
            let checked = Manifest::load(&file, &opts)
                .map_err(|e| e.to_string())
                .and_then(|m| ward_policy::Pdp::new(m).map_err(|e| e.to_string()))
                .and_then(|mut pdp| match pdp.denied_file_grants().first() {
                    Some((p, d)) => Err(ward_policy::file_grant_refusal(p, d)),
                    None => Ok(pdp),
                });
            match checked {
                Ok(pdp) => {
                    let m = pdp.manifest();
                    if json {
                        print_json(&json!({"ok": true, "file": file, "name": m.name,
                            "grants": m.files.len(), "destinations": m.network.len(),
                            "rules": m.rules.len(), "policies": m.policies.len()}));
                    } else {
                        println!(
                            "ok: {} ({}): {} grant(s), {} destination(s), {} rule(s), {} polic{}",
                            file.display(),
                            m.name,
                            m.files.len(),
                            m.network.len(),
                            m.rules.len(),
                            m.policies.len(),
                            if m.policies.len() == 1 { "y" } else { "ies" }
                        );
                    }
                    Ok(0)
                }
                Err(msg) => {
                    if json {
                        print_json(&json!({"ok": false, "file": file, "error": msg}));
                    } else {
                        eprintln!("ward: {msg}");
                    }
                    Ok(1)
                }
            }
        }
        ManifestCmd::Explain {
            manifest,
            load: l,
            json,
        } => {
            let m = load(manifest.as_deref(), &l.options())?;
            if json {
                print_json(&m.explain().to_json());
            } else {
                print!("{}", m.explain());
            }
            Ok(0)
        }
    }
}

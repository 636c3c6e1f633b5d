//! `ward allow DEST`: add a destination to the manifest's `[network] allow`, validated (the
//! manifest with it must load, managed file included, and allow it), written atomically with a
//! comment saying who and when, and recorded.

use crate::{print_json, Outcome};
use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use ward_core::{Destination, Effect, LoadOptions, Manifest};

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward allow https://api.example.com          # add it to ./ward.toml's [network] allow
  ward allow http://localhost:11434           # a model server on this machine
  ward allow ssh://github.com                 # git over SSH
  ward allow -m team.toml https://pypi.org --json

Without ./ward.toml (the built-in default: this folder, staged), one is made with that default
and the destination. A destination is scheme://host[:port] (http, https, or ssh for git over
SSH; `*.` for subdomains). The decision point still decides: a destination that your own deny,
a rule or the managed file keeps out is refused, and nothing changes. Ward's report at the end
of `ward run` names the refused destinations.
Exit codes: 0 added (or already allowed); 1 refused (still not allowed with it, a JSON
manifest); 2 a destination or manifest Ward cannot read.")]
pub struct AllowArgs {
    /// The destination, e.g. https://api.example.com.
    dest: String,
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// A further managed file to merge after /etc/ward/managed.toml (it can only narrow).
    #[arg(long, value_name = "FILE", env = "WARD_MANAGED")]
    managed: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: AllowArgs) -> Outcome {
    let dest = Destination::parse(&a.dest).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is not a destination: {e}",
            ward_core::inert::line(&a.dest)
        )
    })?;
    let mut opts = LoadOptions::default();
    if let Some(m) = &a.managed {
        opts.managed.push(m.clone());
    }
    let path = a
        .manifest
        .clone()
        .unwrap_or_else(|| PathBuf::from("ward.toml"));
    if path.extension().is_some_and(|e| e == "json") {
        return refuse(&a, &path, "the manifest is JSON (the seed's form): add the destination to its `permissions.network` by hand");
    }
    let (text, made) = match std::fs::read_to_string(&path) {
        Ok(t) => (t, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && a.manifest.is_none() => {
            // The built-in default, written out: this folder, staged.
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let name = cwd
                .file_name()
                .map_or("default".into(), |n| n.to_string_lossy().into_owned());
            let text = format!(
                "# Made by `ward allow`: the built-in default (this folder, staged for review).\n\
                 name = {}\n\n[[files]]\npath = {}\n",
                toml_str(&name),
                toml_str(&cwd.to_string_lossy())
            );
            (text, true)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the manifest {}", path.display()))
        }
    };
    let current = Manifest::from_text(&text, &path, &opts)?;
    if let Some(by) = allows(&current, &dest)? {
        if a.json {
            print_json(
                &json!({"added": false, "already": true, "destination": dest.to_string(), "origin": by}),
            );
        } else {
            println!("{dest} is already allowed ({by})");
        }
        return Ok(0);
    }
    let who = ward_supervisor::review::who();
    let comment = format!(
        "Added by `ward allow` on {} ({who})",
        ward_audit::time::now_rfc3339()
    );
    let written = dest_as_written(&dest);
    let new = ward_broker::always::add_destination(&text, &written, &comment)
        .map_err(|e| anyhow::anyhow!("cannot add the destination to {}: {e}", path.display()))?;
    // With it, the manifest must load and the destination be allowed: the managed file can
    // narrow it away.
    let after = Manifest::from_text(&new, &path, &opts)
        .map_err(|e| anyhow::anyhow!("the manifest with {dest} does not load: {e}"))?;
    if allows(&after, &dest)?.is_none() {
        // Say what still decides against it: a deny or ask of the manifest's, a rule, a
        // policy, or the managed file.
        let kept = after
            .network
            .iter()
            .any(|e| e.effect == Effect::Allow && e.dest == dest);
        let why = match decision(&after, &dest)? {
            Some(d) if kept => format!("{} ({})", d.reason, d.by),
            _ => format!(
                "the managed file ({}) does not allow it",
                after
                    .managed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return refuse(
            &a,
            &path,
            &format!("with it, {dest} would still not be allowed: {why}; nothing changed"),
        );
    }
    ward_broker::always::replace_validated(&path, &new, &opts.managed)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
    crate::record(ward_audit::Event {
        resource: Some(abs.display().to_string()),
        detail: Some(json!({
            "destination": dest.to_string(), "written": written, "by": who,
            "channel": "command line (ward allow)", "made": made,
        })),
        ..ward_audit::Event::new(ward_core::EventKind::ManifestRuleAdded)
    })?;
    if a.json {
        print_json(
            &json!({"added": true, "destination": dest.to_string(), "manifest": abs, "made": made}),
        );
    } else {
        println!(
            "{} {}: [network] allow += \"{written}\"",
            if made { "made" } else { "updated" },
            ward_core::inert::path(&abs)
        );
    }
    Ok(0)
}

/// What the decision point says of reaching `d` (not for a wildcard destination).
fn decision(m: &Manifest, d: &Destination) -> anyhow::Result<Option<ward_core::Decision>> {
    if matches!(d.host, ward_core::HostPattern::Wildcard(_)) {
        return Ok(None);
    }
    let host = d.host.to_string();
    let a = ward_core::Action {
        dest: Some(host.clone()),
        port: Some(d.port),
        scheme: Some(d.scheme.clone()),
        ..ward_core::Action::new(
            ward_core::ActionKind::NetConnect,
            format!("{}://{host}:{}", d.scheme, d.port),
        )
    };
    Ok(Some(ward_policy::Pdp::new(m.clone())?.decide(&a)))
}

/// Whether `m` allows reaching `d`, and by what: the decision point for a name or address
/// (rules, policies and the managed file included), an entry naming it for a wildcard.
fn allows(m: &Manifest, d: &Destination) -> anyhow::Result<Option<String>> {
    Ok(match decision(m, d)? {
        Some(dec) => (dec.effect == Effect::Allow).then(|| dec.by.to_string()),
        None => m
            .network
            .iter()
            .find(|e| e.effect == Effect::Allow && e.dest == *d)
            .map(|e| e.origin.to_string()),
    })
}

/// The manifest's way of writing `d` (the default port left out).
fn dest_as_written(d: &Destination) -> String {
    let default = match d.scheme.as_str() {
        "https" => 443,
        "http" => 80,
        "ssh" => 22,
        _ => 0,
    };
    let host = d.host.to_string();
    if d.port == default {
        format!("{}://{host}", d.scheme)
    } else {
        format!("{}://{host}:{}", d.scheme, d.port)
    }
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn refuse(a: &AllowArgs, path: &std::path::Path, why: &str) -> Outcome {
    if a.json {
        print_json(&json!({"added": false, "manifest": path, "error": why}));
    } else {
        eprintln!("ward: {why}");
    }
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_written_as_a_person_would() {
        for (given, written) in [
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com:443", "https://api.example.com"),
            ("http://localhost:11434", "http://localhost:11434"),
            ("https://*.example.com", "https://*.example.com"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            let d = Destination::parse(given).unwrap();
            assert_eq!(dest_as_written(&d), written);
            assert_eq!(Destination::parse(&dest_as_written(&d)).unwrap(), d);
        }
    }
}

//! The manifest and the policy files it loads, watched between runs. Inside every grant they
//! are read-only (the agent cannot rewrite the rules of its next session); outside, someone
//! or something else may have changed them. Each run compares them with the copy kept from
//! the last run and says what changed (hash, then the lines) before the agent starts.

use anyhow::Context;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use ward_core::Manifest;

/// The manifest's files, absolute and with links resolved: the manifest itself, then each
/// policy it loads.
pub fn files(m: &Manifest) -> Vec<PathBuf> {
    m.source
        .iter()
        .chain(m.policies.iter().map(|p| &p.path))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How many lines of a manifest's changes are shown.
const SHOWN_LINES: usize = 40;

/// Compare each file with its copy from the last run (kept under `state/manifests`), print
/// what changed, keep the new copy. Returns what the session's start record says about it.
pub fn check(m: &Manifest, state: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let dir = state.join("manifests");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = Vec::new();
    for f in files(m) {
        let Ok(now) = std::fs::read(&f) else {
            continue;
        };
        let key = hex(&Sha256::digest(f.as_os_str().as_encoded_bytes()))[..32].to_string();
        let kept = dir.join(&key);
        let before = std::fs::read(&kept).ok();
        let sha = hex(&Sha256::digest(&now));
        let shown = ward_core::inert::path(&f);
        let status = match &before {
            Some(b) if *b == now => "unchanged",
            Some(b) => {
                let was = hex(&Sha256::digest(b));
                eprintln!(
                    "ward: {shown} changed since its last run (sha256 {} -> {}):",
                    &was[..16],
                    &sha[..16]
                );
                let d = ward_stage::unified(
                    "last run",
                    "now",
                    &String::from_utf8_lossy(b),
                    &String::from_utf8_lossy(&now),
                    None,
                    false,
                );
                let lines: Vec<&str> = d.lines().skip(2).collect();
                for l in lines.iter().take(SHOWN_LINES) {
                    eprintln!("  {l}");
                }
                if lines.len() > SHOWN_LINES {
                    eprintln!("  ... ({} more lines)", lines.len() - SHOWN_LINES);
                }
                "changed"
            }
            None => {
                eprintln!(
                    "ward: {shown}: first run with this file (sha256 {}); later changes to it \
                     will be shown here",
                    &sha[..16]
                );
                "new"
            }
        };
        if status != "unchanged" {
            let tmp = dir.join(format!("{key}.tmp"));
            std::fs::write(&tmp, &now)
                .and_then(|()| std::fs::rename(&tmp, &kept))
                .with_context(|| format!("cannot keep a copy of {}", f.display()))?;
        }
        out.push(json!({
            "file": f,
            "sha256": sha,
            "since_last_run": status,
            "previous_sha256": before.map(|b| hex(&Sha256::digest(&b))),
        }));
    }
    Ok(out)
}

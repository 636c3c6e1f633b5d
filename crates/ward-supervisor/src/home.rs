//! The agent's own home: a folder under Ward's state (`homes/NAME`, kept between sessions),
//! bound read-write inside the sandbox at the path `HOME` names, so that an agent's login,
//! caches and settings work and persist, while the person's real home stays out of reach
//! (only what the manifest grants from it is mounted, on top).

use anyhow::Context;
use std::path::{Component, Path, PathBuf};
use ward_core::Manifest;

/// Where the agent's home is: `(folder on the host, path inside)`. `None` when there is no
/// home to give: `HOME` unset, not absolute, `/`, or at or inside a grant (then the grant is
/// the home, as the person chose).
pub fn own(m: &Manifest, state: &Path, name: &str) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return Ok(None);
    };
    let plain = home.is_absolute()
        && home
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain || home == Path::new("/") {
        return Ok(None);
    }
    if m.files.iter().any(|g| home.starts_with(&g.path)) {
        return Ok(None);
    }
    let host = state.join("homes").join(name);
    std::fs::create_dir_all(&host)
        .with_context(|| format!("cannot create the agent's home {}", host.display()))?;
    // The agent's logins live here: its owner's alone.
    std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot protect the agent's home {}", host.display()))?;
    Ok(Some((host, home)))
}

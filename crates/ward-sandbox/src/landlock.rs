//! Landlock: the second wall behind the mount namespace. The agent may read (and execute) below
//! the read-only paths, do anything below the writable ones, and nothing else on the
//! filesystem; with every access right the running kernel's ABI knows, TCP bind and connect
//! denied outright (the way out is the egress proxy, over an inherited socket), and, from ABI 6,
//! abstract unix sockets and signals scoped to the sandbox.
//!
//! [`Landlock::prepare`] builds the ruleset in the parent; [`Landlock::enforce`] applies it in
//! the child after `fork` (two syscalls, nothing allocated).

use crate::error::SandboxError;
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope, ABI,
};
use std::path::PathBuf;

/// Paths the agent may use, and how.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Read and execute below these.
    pub read: Vec<PathBuf>,
    /// Every filesystem right below these.
    pub write: Vec<PathBuf>,
    /// TCP ports the agent may connect to (the egress proxy's; the network namespace has
    /// loopback only, so the port names the proxy alone).
    pub connect_ports: Vec<u16>,
    /// Files that may not be executed whatever path reaches them (the manifest's exec denies
    /// that name a file): the kernel refuses them at exec time, which closes the race a
    /// notification-based check leaves open. Landlock only adds rights, so the tree above
    /// each is granted execution entry by entry, around it.
    pub no_execute: Vec<PathBuf>,
}

/// A ruleset built and ready to be enforced in a child.
pub struct Landlock {
    created: Option<RulesetCreated>,
    /// The kernel's Landlock ABI version.
    pub abi: i32,
}

/// The running kernel's Landlock ABI version (0 or less: no Landlock).
pub fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented way to ask for the ABI version: no attribute pointer, size 0, the
    // VERSION flag; it returns a number and creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    v as i32
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SandboxError + '_ {
    move |e| SandboxError::Setup(format!("landlock: {what}: {e}"))
}

/// Grant `access` beneath `p` (directory-only rights dropped for a file).
fn add(
    created: RulesetCreated,
    p: &std::path::Path,
    access: landlock::BitFlags<AccessFs>,
    abi: ABI,
) -> Result<RulesetCreated, SandboxError> {
    let fd = PathFd::new(p).map_err(|e| SandboxError::Path {
        path: p.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let access = if p.is_dir() {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    created
        .add_rule(PathBeneath::new(fd, access))
        .map_err(setup("rule"))
}

/// Grant execution beneath every entry of `dir` but the `denied` files (and, for a folder
/// holding one, beneath its entries in turn). Links get no rule: the kernel judges the file
/// they lead to by where that file is.
fn around(
    mut created: RulesetCreated,
    dir: &std::path::Path,
    denied: &[&PathBuf],
    abi: ABI,
) -> Result<RulesetCreated, SandboxError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SandboxError::Path {
        path: dir.display().to_string(),
        source: e,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() || denied.iter().any(|d| **d == p) {
            continue;
        }
        if ft.is_dir() && denied.iter().any(|d| d.starts_with(&p)) {
            created = around(created, &p, denied, abi)?;
        } else {
            created = add(created, &p, AccessFs::Execute.into(), abi)?;
        }
    }
    Ok(created)
}

impl Landlock {
    /// Build the ruleset for `rules` with every right the running ABI supports (required, not
    /// best-effort: a right the kernel claims and cannot enforce is an error).
    pub fn prepare(rules: &Rules) -> Result<Landlock, SandboxError> {
        let v = kernel_abi();
        if v < 1 {
            return Err(SandboxError::Unsupported {
                feature: "landlock",
                detail: "this kernel has no Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK \
                         and `landlock` in the lsm= boot list)"
                    .into(),
            });
        }
        let abi = ABI::from(v);
        let mut rs = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .map_err(setup("filesystem rights"))?;
        if v >= 4 {
            // Handled, with rules only for the proxy's port: every other TCP bind and connect
            // is denied.
            rs = rs
                .handle_access(AccessNet::from_all(abi))
                .map_err(setup("network rights"))?;
        }
        if v >= 6 {
            rs = rs.scope(Scope::from_all(abi)).map_err(setup("scopes"))?;
        }
        let mut created = rs.create().map_err(setup("create"))?;
        let no_exec: Vec<PathBuf> = rules
            .no_execute
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        for (paths, access) in [
            (&rules.read, AccessFs::from_read(abi)),
            (&rules.write, AccessFs::from_all(abi)),
        ] {
            for p in paths {
                let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                let under: Vec<&PathBuf> =
                    no_exec.iter().filter(|d| d.starts_with(&canon)).collect();
                let access = if under.is_empty() {
                    access
                } else {
                    access & !AccessFs::Execute
                };
                created = add(created, p, access, abi)?;
                if !under.is_empty() {
                    created = around(created, &canon, &under, abi)?;
                }
            }
        }
        if v >= 4 {
            for port in &rules.connect_ports {
                created = created
                    .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                    .map_err(setup("port rule"))?;
            }
        }
        Ok(Landlock {
            created: Some(created),
            abi: v,
        })
    }

    /// Restrict the calling process (call it in the child, before `exec`). Also sets
    /// `no_new_privs`, which Landlock requires.
    pub fn enforce(&mut self) -> std::io::Result<()> {
        let created = self
            .created
            .take()
            .ok_or_else(|| std::io::Error::other("landlock ruleset already used"))?;
        created
            .restrict_self()
            .map(|_| ())
            .map_err(|_| std::io::Error::last_os_error())
    }
}

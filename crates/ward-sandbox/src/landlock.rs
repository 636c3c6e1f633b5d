//! Landlock: the second wall behind the mount namespace. The agent may read (and execute) below
//! the read-only paths, do anything below the writable ones, and nothing else on the
//! filesystem; with every access right the running kernel's ABI knows, TCP bind and connect
//! denied outright (the way out is the egress proxy, over an inherited socket), and, from ABI 6,
//! abstract unix sockets and signals scoped to the sandbox.
//!
//! [`Landlock::prepare`] (or [`Landlock::begin`] and [`Building`], in parts) builds the ruleset
//! before the fork; [`Landlock::enforce`] applies it in
//! the child after `fork` (two syscalls, nothing allocated).

use crate::error::SandboxError;
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope, ABI,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// `p`, opened to name it in a rule: following links (the kernel judges the file a link
/// leads to by where that file is), or, with `nofollow`, the entry itself (a link is then
/// given no rule by [`add`]).
fn open_path(p: &Path, nofollow: bool) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let flags = libc::O_PATH | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: a valid C string; the descriptor returned is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn path_error(p: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Path {
        path: p.display().to_string(),
        source,
    }
}

/// Grant `access` beneath the file `fd` names (directory-only rights dropped for a file; a
/// link, opened as itself, gets nothing).
fn add(
    created: RulesetCreated,
    fd: OwnedFd,
    access: landlock::BitFlags<AccessFs>,
    abi: ABI,
) -> Result<RulesetCreated, SandboxError> {
    // SAFETY: fstat on the descriptor owned by `fd`, into a zeroed stat buffer.
    let mode = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(SandboxError::Setup(format!(
                "landlock: cannot stat a path of a rule: {}",
                std::io::Error::last_os_error()
            )));
        }
        st.st_mode & libc::S_IFMT
    };
    if mode == libc::S_IFLNK {
        return Ok(created);
    }
    let access = if mode == libc::S_IFDIR {
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
/// they lead to by where that file is (an entry is opened as itself, so one swapped for a
/// link meanwhile gets nothing either).
fn around(
    mut created: RulesetCreated,
    dir: &Path,
    denied: &[&PathBuf],
    abi: ABI,
) -> Result<RulesetCreated, SandboxError> {
    let entries = std::fs::read_dir(dir).map_err(path_error(dir))?;
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() || denied.iter().any(|d| **d == p) {
            continue;
        }
        if ft.is_dir() && denied.iter().any(|d| d.starts_with(&p)) {
            created = around(created, &p, denied, abi)?;
        } else if let Ok(fd) = open_path(&p, true) {
            created = add(created, fd, AccessFs::Execute.into(), abi)?;
        }
    }
    Ok(created)
}

/// A ruleset being built: rules are added in parts (PID 1 adds the system's bind mounts
/// while `ward run` still works out the grants), and [`Building::done`] gives it to enforce.
pub struct Building {
    created: RulesetCreated,
    abi: ABI,
    v: i32,
    /// The files that may not be executed, by their real paths (see
    /// [`Building::with_no_execute`]).
    no_exec: Vec<PathBuf>,
}

impl Landlock {
    /// Build the ruleset for `rules` with every right the running ABI supports (required, not
    /// best-effort: a right the kernel claims and cannot enforce is an error).
    pub fn prepare(rules: &Rules) -> Result<Landlock, SandboxError> {
        Ok(Landlock::begin(&rules.connect_ports)?
            .with_no_execute(&rules.no_execute)
            .allow(&rules.read, &rules.write)?
            .done())
    }

    /// A ruleset that handles every right the running ABI supports, with its port rules and
    /// no path rule yet (see [`Rules`] for `connect_ports`).
    pub fn begin(connect_ports: &[u16]) -> Result<Building, SandboxError> {
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
        if v >= 4 {
            for port in connect_ports {
                created = created
                    .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                    .map_err(setup("port rule"))?;
            }
        }
        Ok(Building {
            created,
            abi,
            v,
            no_exec: Vec::new(),
        })
    }
}

impl Building {
    /// Read (and execute) beneath each of `mounts`, bind mounts made for the agent and
    /// named where they are mounted (not through any link): the very files the agent will
    /// see, whatever the paths lead to on the host. Only before any file that may not be
    /// executed is known (a tree holding one gets execution entry by entry, worked out from
    /// the agent's view).
    pub fn allow_read_mounts(mut self, mounts: &[PathBuf]) -> Result<Building, SandboxError> {
        if !self.no_exec.is_empty() {
            return Err(SandboxError::Setup(
                "landlock: mounts are named before the files that may not be executed".into(),
            ));
        }
        let abi = self.abi;
        for m in mounts {
            let fd = open_path(m, true).map_err(path_error(m))?;
            self.created = add(self.created, fd, AccessFs::from_read(abi), abi)?;
        }
        Ok(self)
    }

    /// The files that may not be executed, looked up from where the next rules are added.
    pub fn with_no_execute(mut self, no_execute: &[PathBuf]) -> Building {
        self.no_exec = no_execute
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        self
    }

    /// Read (and execute) beneath each of `read`, every right beneath each of `write`; a path
    /// that is not there is an error.
    pub fn allow(self, read: &[PathBuf], write: &[PathBuf]) -> Result<Building, SandboxError> {
        let read = read.iter().map(|p| (p.as_path(), false));
        let write = write.iter().map(|p| (p.as_path(), true));
        self.add_all(read.chain(write), false)
    }

    /// Read (and execute) beneath each of `paths` that can be opened (the system's folders
    /// and files, which differ between machines).
    pub fn allow_read_present<'a>(
        self,
        paths: impl IntoIterator<Item = &'a Path>,
    ) -> Result<Building, SandboxError> {
        self.add_all(paths.into_iter().map(|p| (p, false)), true)
    }

    fn add_all<'a>(
        mut self,
        paths: impl Iterator<Item = (&'a Path, bool)>,
        present_only: bool,
    ) -> Result<Building, SandboxError> {
        let abi = self.abi;
        for (p, writable) in paths {
            let fd = match open_path(p, false) {
                Ok(fd) => fd,
                Err(_) if present_only => continue,
                Err(e) => return Err(path_error(p)(e)),
            };
            let access = if writable {
                AccessFs::from_all(abi)
            } else {
                AccessFs::from_read(abi)
            };
            // Only a tree holding a file that may not be executed is looked at more closely.
            let canon = if self.no_exec.is_empty() {
                None
            } else {
                Some(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
            };
            let under: Vec<&PathBuf> = canon
                .as_ref()
                .map(|c| self.no_exec.iter().filter(|d| d.starts_with(c)).collect())
                .unwrap_or_default();
            if under.is_empty() {
                self.created = add(self.created, fd, access, abi)?;
            } else {
                self.created = add(self.created, fd, access & !AccessFs::Execute, abi)?;
                if let Some(c) = &canon {
                    self.created = around(self.created, c, &under, abi)?;
                }
            }
        }
        Ok(self)
    }

    /// The ruleset, ready to be enforced.
    pub fn done(self) -> Landlock {
        Landlock {
            created: Some(self.created),
            abi: self.v,
        }
    }
}

impl Landlock {
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

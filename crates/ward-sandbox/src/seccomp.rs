//! The seccomp filter: system calls an agent never needs and that reach past the sandbox or
//! into the kernel's attack surface fail with `EPERM`. Everything else is allowed: the filter is
//! a deny list behind the namespaces and Landlock, not the wall itself.
//!
//! In `ward run` the denials are *user notifications*: the kernel holds the call and tells the
//! supervisor, which answers `EPERM` at once and records the attempt in the audit log
//! ([`crate::notify`]). If the supervisor is gone, the kernel fails the call (`ENOSYS`): a
//! denial never turns into an allow. `clone3`'s `ENOSYS` and the x32 refusal stay plain
//! errors: libc probes `clone3` on every thread start, and neither is an attempt worth a record.
//!
//! | denied | why |
//! |---|---|
//! | `ptrace`, `process_vm_readv/writev` | reading or steering other processes |
//! | `mount`, `umount2`, `pivot_root`, `move_mount`, `open_tree`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr`, `chroot` | reshaping the filesystem view Ward built |
//! | `unshare`, `setns`, `clone` with any `CLONE_NEW*` flag | new namespaces after setup (a fresh user namespace regains capabilities) |
//! | `seccomp(SET_MODE_FILTER, NEW_LISTENER)` | a listener of the agent's own could answer (allow) its own denied calls |
//! | `clone3` (`ENOSYS`) | its flags sit in memory seccomp cannot read; libc falls back to `clone` |
//! | `bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*` | large kernel attack surface, frequent in exploits |
//! | `keyctl`, `add_key`, `request_key` | the kernel keyring is not namespaced |
//! | `ioctl(TIOCSTI)`, `ioctl(TIOCLINUX)` | typing into the user's terminal |
//! | `ioctl(TIOCSETD)` | a terminal's line discipline: silencing it (`N_NULL`), or loading a kernel line discipline (n_gsm, n_hdlc: a record of exploits) |
//! | `open_by_handle_at`, `name_to_handle_at` | opening files by handle, around path checks |
//! | `kexec_*`, `*init_module`, `delete_module`, `reboot`, `swapon/off`, `syslog`, `acct`, clock setters, `quotactl`, `iopl`, `ioperm`, `vhangup`, `uselib` | machine administration |
//! | `socket()` of any family but `AF_UNIX`, `AF_INET`, `AF_INET6`, `AF_NETLINK` | `AF_VSOCK` reaches the host or hypervisor and ignores network namespaces; `AF_PACKET`, `AF_BLUETOOTH`, `AF_ALG`, `AF_TIPC`, `AF_RDS`, `AF_XDP`, ... are raw traffic or a frequent exploit surface |
//! | `socket(AF_INET*, SOCK_RAW or SOCK_PACKET)` | raw traffic, around the proxy |
//! | every x32 system call (number with bit 30 set, x86_64) | the x32 ABI reaches the same kernel entry points under other numbers, which the rules above would not see |

use crate::error::SandboxError;
use seccompiler::{
    apply_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// System calls denied outright, by name (for the documentation and the tests).
pub const DENIED: &[(&str, i64)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("chroot", libc::SYS_chroot),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("syslog", libc::SYS_syslog),
    ("acct", libc::SYS_acct),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("quotactl", libc::SYS_quotactl),
    ("vhangup", libc::SYS_vhangup),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
];

/// Namespace flags `clone` may not carry.
const CLONE_NEW: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// The obsolete packet-socket type (libc marks its constant deprecated).
const SOCK_PACKET: u64 = 10;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// The compiled filters, ready to be installed in a child.
pub struct Filter {
    deny: BpfProgram,
    /// `deny` with every `EPERM` return turned into a user notification.
    deny_notify: BpfProgram,
    nosys: BpfProgram,
    /// Refuses the x32 ABI outright (seccompiler checks the architecture, not the x32 bit).
    #[cfg(target_arch = "x86_64")]
    x32: BpfProgram,
}

/// `if (nr & __X32_SYSCALL_BIT) return ERRNO(EPERM); else return ALLOW;`
#[cfg(target_arch = "x86_64")]
fn x32_filter() -> BpfProgram {
    use seccompiler::sock_filter;
    const X32_BIT: u32 = 0x4000_0000;
    let ins = |code: u16, jt: u8, jf: u8, k: u32| sock_filter { code, jt, jf, k };
    vec![
        // A = seccomp_data.nr
        ins((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0, 0, 0),
        // if (A & X32_BIT) goto deny; else goto allow
        ins(
            (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
            0,
            1,
            X32_BIT,
        ),
        ins(
            (libc::BPF_RET | libc::BPF_K) as u16,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        ins(
            (libc::BPF_RET | libc::BPF_K) as u16,
            0,
            0,
            libc::SECCOMP_RET_ALLOW,
        ),
    ]
}

fn cond(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(arg, len, op, value)
        .map_err(|e| SandboxError::Setup(format!("seccomp: {e}")))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| SandboxError::Setup(format!("seccomp: {e}")))
}

impl Filter {
    pub fn new() -> Result<Filter, SandboxError> {
        Filter::with_exec(false)
    }

    /// Like [`Filter::new`]; with `watch_exec`, every `execve` and `execveat` also goes to the
    /// supervisor (user notification), which decides it by the manifest's exec rules.
    pub fn with_exec(watch_exec: bool) -> Result<Filter, SandboxError> {
        use SeccompCmpArgLen::{Dword, Qword};
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (_, nr) in DENIED {
            rules.insert(*nr, vec![]);
        }
        let clone_rules = CLONE_NEW
            .iter()
            .map(|&flag| rule(vec![cond(0, Qword, SeccompCmpOp::MaskedEq(flag), flag)?]))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_clone, clone_rules);
        // A filter of the agent's own with a listener could answer its own calls (and, were
        // Ward's listener gone, take precedence); filters without one are harmless.
        rules.insert(
            libc::SYS_seccomp,
            vec![rule(vec![
                cond(
                    0,
                    Dword,
                    SeccompCmpOp::Eq,
                    libc::SECCOMP_SET_MODE_FILTER as u64,
                )?,
                cond(
                    1,
                    Dword,
                    SeccompCmpOp::MaskedEq(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER),
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                )?,
            ])?],
        );
        rules.insert(
            libc::SYS_ioctl,
            vec![
                rule(vec![cond(1, Dword, SeccompCmpOp::Eq, libc::TIOCSTI)?])?,
                rule(vec![cond(1, Dword, SeccompCmpOp::Eq, libc::TIOCLINUX)?])?,
                rule(vec![cond(1, Dword, SeccompCmpOp::Eq, libc::TIOCSETD)?])?,
            ],
        );
        let raw = libc::SOCK_RAW as u64;
        // Families outside the allowed four: 0, 3..=9, 11..=15, 17 and up (AF_UNIX 1, AF_INET 2,
        // AF_INET6 10, AF_NETLINK 16 pass).
        rules.insert(
            libc::SYS_socket,
            vec![
                rule(vec![cond(0, Dword, SeccompCmpOp::Eq, 0)?])?,
                rule(vec![
                    cond(0, Dword, SeccompCmpOp::Ge, 3)?,
                    cond(0, Dword, SeccompCmpOp::Le, 9)?,
                ])?,
                rule(vec![
                    cond(0, Dword, SeccompCmpOp::Ge, 11)?,
                    cond(0, Dword, SeccompCmpOp::Le, 15)?,
                ])?,
                rule(vec![cond(0, Dword, SeccompCmpOp::Ge, 17)?])?,
                rule(vec![
                    cond(0, Dword, SeccompCmpOp::Eq, libc::AF_INET as u64)?,
                    cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), raw)?,
                ])?,
                rule(vec![
                    cond(0, Dword, SeccompCmpOp::Eq, libc::AF_INET6 as u64)?,
                    cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), raw)?,
                ])?,
                // SOCK_PACKET (10) on AF_INET is the old spelling of a packet socket.
                rule(vec![
                    cond(0, Dword, SeccompCmpOp::Eq, libc::AF_INET as u64)?,
                    cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), SOCK_PACKET)?,
                ])?,
            ],
        );
        let compile = |rules, action| -> Result<BpfProgram, SandboxError> {
            SeccompFilter::new(rules, SeccompAction::Allow, action, ARCH)
                .and_then(|f| f.try_into())
                .map_err(|e: seccompiler::BackendError| {
                    SandboxError::Setup(format!("seccomp: {e}"))
                })
        };
        // In `ward run`, `connect` goes to the supervisor too, which lets loopback and unix
        // connections through and records (and refuses) every other one: the network
        // namespace has no route out anyway, so this is for the record, not the wall.
        let mut watched = rules.clone();
        watched.insert(libc::SYS_connect, vec![]);
        if watch_exec {
            watched.insert(libc::SYS_execve, vec![]);
            watched.insert(libc::SYS_execveat, vec![]);
        }
        let deny = compile(rules, SeccompAction::Errno(libc::EPERM as u32))?;
        let watched = compile(watched, SeccompAction::Errno(libc::EPERM as u32))?;
        let nosys = compile(
            BTreeMap::from([(libc::SYS_clone3, vec![])]),
            SeccompAction::Errno(libc::ENOSYS as u32),
        )?;
        let deny_notify = watched
            .iter()
            .map(|i| {
                let ret = (libc::BPF_RET | libc::BPF_K) as u16;
                let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
                let k = if i.code == ret && i.k == eperm {
                    libc::SECCOMP_RET_USER_NOTIF
                } else {
                    i.k
                };
                seccompiler::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k,
                }
            })
            .collect();
        Ok(Filter {
            deny,
            deny_notify,
            nosys,
            #[cfg(target_arch = "x86_64")]
            x32: x32_filter(),
        })
    }

    /// Install the filters on the calling thread (in the child, before `exec`). Requires
    /// `no_new_privs` or CAP_SYS_ADMIN; Landlock's enforcement sets the former.
    pub fn enforce(&self) -> std::io::Result<()> {
        // SAFETY: plain prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        #[cfg(target_arch = "x86_64")]
        apply_filter(&self.x32).map_err(|_| std::io::Error::last_os_error())?;
        apply_filter(&self.nosys).map_err(|_| std::io::Error::last_os_error())?;
        apply_filter(&self.deny).map_err(|_| std::io::Error::last_os_error())
    }

    /// Like [`Filter::enforce`], but denials are sent to the returned listener descriptor for
    /// the supervisor to answer and record. Async-signal-safe (no allocation). The caller must
    /// hand the descriptor on and close it before `exec`: an agent holding its own listener
    /// could answer its own denied calls.
    pub fn enforce_notify(&self) -> std::io::Result<i32> {
        // SAFETY: plain prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        #[cfg(target_arch = "x86_64")]
        apply_filter(&self.x32).map_err(|_| std::io::Error::last_os_error())?;
        apply_filter(&self.nosys).map_err(|_| std::io::Error::last_os_error())?;
        let prog = libc::sock_fprog {
            len: self.deny_notify.len() as u16,
            filter: self.deny_notify.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the program outlives the call; the kernel copies it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog as *const libc::sock_fprog,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd as i32)
    }
}

/// Name a denied call from its number and arguments, for the audit record: `mount`,
/// `clone(CLONE_NEWUSER)`, `ioctl(TIOCSTI)`, `socket(AF_PACKET)`, ... The names form a small
/// fixed set (an agent cannot mint new ones to flood the supervisor's counts), and the
/// arguments are returned beside them.
pub fn describe(nr: i64, args: &[u64; 6]) -> (String, String) {
    let detail = format!(
        "{:#x} {:#x} {:#x}",
        args[0] & 0xffff_ffff_ffff,
        args[1] & 0xffff_ffff_ffff,
        args[2] & 0xffff_ffff_ffff
    );
    (name(nr, args), detail)
}

fn name(nr: i64, args: &[u64; 6]) -> String {
    if let Some((name, _)) = DENIED.iter().find(|(_, n)| *n == nr) {
        return (*name).to_string();
    }
    match nr {
        libc::SYS_seccomp => "seccomp(NEW_LISTENER)".into(),
        libc::SYS_clone => {
            const NAMES: &[(u64, &str)] = &[
                (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
                (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
                (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
                (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
                (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
                (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
                (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
                (0x80, "CLONE_NEWTIME"),
            ];
            // The first namespace flag names it (the others are in the arguments).
            let flag = NAMES
                .iter()
                .find(|(f, _)| args[0] & f != 0)
                .map_or("CLONE_NEW?", |(_, n)| *n);
            format!("clone({flag})")
        }
        libc::SYS_ioctl => match args[1] & 0xffff_ffff {
            c if c == libc::TIOCSTI => "ioctl(TIOCSTI)".into(),
            c if c == libc::TIOCLINUX => "ioctl(TIOCLINUX)".into(),
            c if c == libc::TIOCSETD => "ioctl(TIOCSETD)".into(),
            _ => "ioctl(other)".into(),
        },
        libc::SYS_socket => {
            let family = match (args[0] & 0xffff_ffff) as i32 {
                libc::AF_PACKET => "AF_PACKET".to_string(),
                libc::AF_INET => "AF_INET".to_string(),
                libc::AF_INET6 => "AF_INET6".to_string(),
                libc::AF_VSOCK => "AF_VSOCK".to_string(),
                libc::AF_BLUETOOTH => "AF_BLUETOOTH".to_string(),
                libc::AF_ALG => "AF_ALG".to_string(),
                libc::AF_KEY => "AF_KEY".to_string(),
                libc::AF_TIPC => "AF_TIPC".to_string(),
                libc::AF_RDS => "AF_RDS".to_string(),
                libc::AF_XDP => "AF_XDP".to_string(),
                _ => "other family".to_string(),
            };
            let ty = match args[1] & 0xf {
                t if t == libc::SOCK_RAW as u64 => ", SOCK_RAW",
                SOCK_PACKET => ", SOCK_PACKET",
                _ => "",
            };
            format!("socket({family}{ty})")
        }
        _ => "other".into(),
    }
}

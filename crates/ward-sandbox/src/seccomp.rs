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

/// `AUDIT_ARCH_*` of the architecture Ward is built for (the kernel's `seccomp_data.arch`).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// `__X32_SYSCALL_BIT`: x32 system calls are x86_64's with this bit set in their number.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

/// The compiled filter, ready to be installed in a child: one classic BPF program per way of
/// answering a denial (the kernel prepares, JIT-compiles and caches each installed program
/// for every system call number, so one short program costs a fraction of several long ones;
/// see [`Program`]).
pub struct Filter {
    /// Denials answered `EPERM` by the kernel.
    deny: Vec<libc::sock_filter>,
    /// Denials, `connect` and (with exec rules) `execve`/`execveat` held for the supervisor.
    notify: Vec<libc::sock_filter>,
}

/// What the program returns for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    Allow,
    Eperm,
    Enosys,
    Notify,
    Kill,
}

impl Ret {
    const ALL: [Ret; 4] = [Ret::Allow, Ret::Eperm, Ret::Enosys, Ret::Notify];

    fn k(self) -> u32 {
        match self {
            Ret::Allow => libc::SECCOMP_RET_ALLOW,
            Ret::Eperm => libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            Ret::Enosys => libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            Ret::Notify => libc::SECCOMP_RET_USER_NOTIF,
            Ret::Kill => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// A comparison of the low 32 bits of one argument (every rule here is about values that fit
/// in them: flags, request numbers, address families and socket types).
#[derive(Clone, Copy, Debug)]
enum Cmp {
    Eq(u32),
    /// `(arg & mask) == value`
    Masked(u32, u32),
    Ge(u32),
    Le(u32),
}

/// What a system call gets: always the same answer, or `then` when any rule (all of its
/// comparisons `(argument, comparison)`) holds, and allowed otherwise.
#[derive(Clone, Debug)]
enum Entry {
    Always(Ret),
    When(Vec<Vec<(u8, Cmp)>>, Ret),
}

/// The rules, by system call number, with denials answered `deny`.
fn entries(deny: Ret, watched: &[i64]) -> std::collections::BTreeMap<u32, Entry> {
    use Cmp::{Eq, Ge, Le, Masked};
    let mut m = std::collections::BTreeMap::new();
    let nr = |n: i64| n as u32;
    for (_, n) in DENIED {
        m.insert(nr(*n), Entry::Always(deny));
    }
    m.insert(
        nr(libc::SYS_clone),
        Entry::When(
            CLONE_NEW
                .iter()
                .map(|&f| vec![(0, Masked(f as u32, f as u32))])
                .collect(),
            deny,
        ),
    );
    // A filter of the agent's own with a listener could answer its own calls (and, were
    // Ward's listener gone, take precedence); filters without one are harmless.
    let listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
    m.insert(
        nr(libc::SYS_seccomp),
        Entry::When(
            vec![vec![
                (0, Eq(libc::SECCOMP_SET_MODE_FILTER)),
                (1, Masked(listener, listener)),
            ]],
            deny,
        ),
    );
    m.insert(
        nr(libc::SYS_ioctl),
        Entry::When(
            [libc::TIOCSTI, libc::TIOCLINUX, libc::TIOCSETD]
                .iter()
                .map(|&c| vec![(1, Eq(c as u32))])
                .collect(),
            deny,
        ),
    );
    let raw = libc::SOCK_RAW as u32;
    let (inet, inet6) = (libc::AF_INET as u32, libc::AF_INET6 as u32);
    // Families outside the allowed four: 0, 3..=9, 11..=15, 17 and up (AF_UNIX 1, AF_INET 2,
    // AF_INET6 10, AF_NETLINK 16 pass); raw and packet sockets of the IP families.
    m.insert(
        nr(libc::SYS_socket),
        Entry::When(
            vec![
                vec![(0, Eq(0))],
                vec![(0, Ge(3)), (0, Le(9))],
                vec![(0, Ge(11)), (0, Le(15))],
                vec![(0, Ge(17))],
                vec![(0, Eq(inet)), (1, Masked(0xf, raw))],
                vec![(0, Eq(inet6)), (1, Masked(0xf, raw))],
                // SOCK_PACKET (10) on AF_INET is the old spelling of a packet socket.
                vec![(0, Eq(inet)), (1, Masked(0xf, SOCK_PACKET as u32))],
            ],
            deny,
        ),
    );
    for w in watched {
        m.insert(nr(*w), Entry::Always(Ret::Notify));
    }
    // Its flags sit in memory seccomp cannot read; libc falls back to `clone`.
    m.insert(nr(libc::SYS_clone3), Entry::Always(Ret::Enosys));
    m
}

/// A classic BPF program under construction: instructions whose jumps name labels, resolved
/// to relative offsets at the end (every jump goes forward).
///
/// The layout: the architecture check, the x32 bit (x86_64), a binary search over the
/// system call numbers that have rules (depth log2(n), where a list of comparisons costs one
/// per entry: the kernel runs the program once per call number when it is installed, to
/// find the calls it always allows), one return per answer, then each rule's comparisons.
struct Program {
    items: Vec<Item>,
    labels: usize,
}

enum Item {
    Stmt(u16, u32),
    /// A conditional jump: `code` with constant `k`, to `t` when true and `f` when false.
    Jump(u16, u32, usize, usize),
    /// An unconditional jump.
    Goto(usize),
    Label(usize),
}

impl Program {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }

    fn ld(&mut self, offset: u32) {
        self.items.push(Item::Stmt(
            (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            offset,
        ));
    }

    fn jump(&mut self, op: u32, k: u32, t: usize, f: usize) {
        self.items.push(Item::Jump(
            (libc::BPF_JMP | op | libc::BPF_K) as u16,
            k,
            t,
            f,
        ));
    }

    fn build(deny: Ret, watched: &[i64]) -> Result<Vec<libc::sock_filter>, SandboxError> {
        let entries: Vec<(u32, Entry)> = entries(deny, watched).into_iter().collect();
        let mut p = Program {
            items: Vec::new(),
            labels: 0,
        };
        let rets: Vec<(Ret, usize)> = Ret::ALL.iter().map(|r| (*r, p.label())).collect();
        let ret = |r: Ret| rets.iter().find(|(x, _)| *x == r).map_or(0, |(_, l)| *l);
        // struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
        // Another architecture's numbering: killed at once (a return right here keeps every
        // later jump short).
        p.ld(4);
        let (nr, kill) = (p.label(), p.label());
        p.jump(libc::BPF_JEQ, AUDIT_ARCH, nr, kill);
        p.items.push(Item::Label(kill));
        p.items.push(Item::Stmt(
            (libc::BPF_RET | libc::BPF_K) as u16,
            Ret::Kill.k(),
        ));
        p.items.push(Item::Label(nr));
        p.ld(0);
        #[cfg(target_arch = "x86_64")]
        {
            let search = p.label();
            p.jump(libc::BPF_JSET, X32_BIT, ret(Ret::Eperm), search);
            p.items.push(Item::Label(search));
        }
        let bodies: Vec<usize> = entries.iter().map(|_| p.label()).collect();
        p.search(&entries, &bodies, 0, entries.len(), &ret);
        // The answers right after the search, the rules' comparisons after them (each rule
        // returns its own answer): every conditional jump stays short, and the rules are
        // reached with unconditional jumps.
        for (r, l) in &rets {
            p.items.push(Item::Label(*l));
            p.items
                .push(Item::Stmt((libc::BPF_RET | libc::BPF_K) as u16, r.k()));
        }
        for ((_, e), body) in entries.iter().zip(&bodies) {
            let Entry::When(rules, then) = e else {
                continue;
            };
            p.items.push(Item::Label(*body));
            for rule in rules {
                let next = p.label();
                for (arg, cmp) in rule {
                    // The low half of args[arg] (both architectures are little-endian).
                    p.ld(16 + 8 * u32::from(*arg));
                    let ok = p.label();
                    match *cmp {
                        Cmp::Eq(v) => p.jump(libc::BPF_JEQ, v, ok, next),
                        Cmp::Masked(mask, v) => {
                            p.items.push(Item::Stmt(
                                (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16,
                                mask,
                            ));
                            p.jump(libc::BPF_JEQ, v, ok, next);
                        }
                        Cmp::Ge(v) => p.jump(libc::BPF_JGE, v, ok, next),
                        Cmp::Le(v) => p.jump(libc::BPF_JGT, v, next, ok),
                    }
                    p.items.push(Item::Label(ok));
                }
                p.items
                    .push(Item::Stmt((libc::BPF_RET | libc::BPF_K) as u16, then.k()));
                p.items.push(Item::Label(next));
            }
            p.items.push(Item::Stmt(
                (libc::BPF_RET | libc::BPF_K) as u16,
                Ret::Allow.k(),
            ));
        }
        p.resolve()
    }

    /// Entries `lo..hi` (sorted by number; the number is in A): a leaf compares for equality,
    /// a node splits at the middle entry's number.
    fn search(
        &mut self,
        entries: &[(u32, Entry)],
        bodies: &[usize],
        lo: usize,
        hi: usize,
        ret: &dyn Fn(Ret) -> usize,
    ) {
        if hi - lo == 1 {
            let nr = entries[lo].0;
            match &entries[lo].1 {
                Entry::Always(r) => self.jump(libc::BPF_JEQ, nr, ret(*r), ret(Ret::Allow)),
                Entry::When(..) => {
                    let rules = self.label();
                    self.jump(libc::BPF_JEQ, nr, rules, ret(Ret::Allow));
                    self.items.push(Item::Label(rules));
                    self.items.push(Item::Goto(bodies[lo]));
                }
            }
            return;
        }
        let mid = lo + (hi - lo) / 2;
        let (left, right) = (self.label(), self.label());
        self.jump(libc::BPF_JGE, entries[mid].0, right, left);
        self.items.push(Item::Label(left));
        self.search(entries, bodies, lo, mid, ret);
        self.items.push(Item::Label(right));
        self.search(entries, bodies, mid, hi, ret);
    }

    fn resolve(self) -> Result<Vec<libc::sock_filter>, SandboxError> {
        let mut at = vec![usize::MAX; self.labels];
        let mut n = 0;
        for i in &self.items {
            match i {
                Item::Label(l) => at[*l] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        let too_far = || SandboxError::Setup("seccomp: a jump in the filter is too long".into());
        for i in &self.items {
            let here = out.len() + 1;
            let off = |l: usize| at[l].checked_sub(here).ok_or_else(too_far);
            let ins = match *i {
                Item::Label(_) => continue,
                Item::Stmt(code, k) => libc::sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Item::Jump(code, k, t, f) => libc::sock_filter {
                    code,
                    jt: u8::try_from(off(t)?).map_err(|_| too_far())?,
                    jf: u8::try_from(off(f)?).map_err(|_| too_far())?,
                    k,
                },
                Item::Goto(l) => libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JA) as u16,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(off(l)?).map_err(|_| too_far())?,
                },
            };
            out.push(ins);
        }
        if out.len() > usize::from(u16::MAX) {
            return Err(too_far());
        }
        Ok(out)
    }
}

/// Install `prog` on the calling thread with the filter `flags`; the kernel's answer (the
/// listener's descriptor with `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
fn install(prog: &[libc::sock_filter], flags: libc::c_ulong) -> std::io::Result<i32> {
    // SAFETY: plain prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as i32)
}

impl Filter {
    pub fn new() -> Result<Filter, SandboxError> {
        Filter::with_exec(false)
    }

    /// Like [`Filter::new`]; with `watch_exec`, every `execve` and `execveat` also goes to the
    /// supervisor (user notification), which decides it by the manifest's exec rules.
    pub fn with_exec(watch_exec: bool) -> Result<Filter, SandboxError> {
        // In `ward run`, `connect` goes to the supervisor too, which lets loopback and unix
        // connections through and records (and refuses) every other one: the network
        // namespace has no route out anyway, so this is for the record, not the wall.
        let mut watched = vec![libc::SYS_connect];
        if watch_exec {
            watched.extend([libc::SYS_execve, libc::SYS_execveat]);
        }
        Ok(Filter {
            deny: Program::build(Ret::Eperm, &[])?,
            notify: Program::build(Ret::Notify, &watched)?,
        })
    }

    /// Install the filter on the calling thread (in the child, before `exec`). Sets
    /// `no_new_privs` (which Landlock's enforcement also needs).
    pub fn enforce(&self) -> std::io::Result<()> {
        install(&self.deny, 0).map(|_| ())
    }

    /// Like [`Filter::enforce`], but denials are sent to the returned listener descriptor for
    /// the supervisor to answer and record. Async-signal-safe (no allocation). The caller must
    /// hand the descriptor on and close it before `exec`: an agent holding its own listener
    /// could answer its own denied calls.
    pub fn enforce_notify(&self) -> std::io::Result<i32> {
        install(
            &self.notify,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as libc::c_ulong,
        )
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

#[cfg(test)]
mod tests {
    //! The filter is checked against an independent compilation of the same rules by
    //! seccompiler (the program Ward installed before it built its own), run through a small
    //! classic-BPF interpreter: for every system call number, both architectures' numbering,
    //! the x32 bit and the arguments the rules look at, both give the same answer.
    use super::*;
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;

    #[cfg(target_arch = "x86_64")]
    const ARCH: TargetArch = TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    const ARCH: TargetArch = TargetArch::aarch64;

    fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompCondition {
        SeccompCondition::new(arg, len, op, value).unwrap()
    }

    /// The earlier filters, in the order they were installed: x32, clone3, the rules.
    fn reference(watch_exec: bool) -> (Vec<BpfProgram>, Vec<BpfProgram>) {
        use SeccompCmpArgLen::{Dword, Qword};
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (_, nr) in DENIED {
            rules.insert(*nr, vec![]);
        }
        let r = |c: Vec<SeccompCondition>| SeccompRule::new(c).unwrap();
        rules.insert(
            libc::SYS_clone,
            CLONE_NEW
                .iter()
                .map(|&flag| r(vec![cond(0, Qword, SeccompCmpOp::MaskedEq(flag), flag)]))
                .collect(),
        );
        rules.insert(
            libc::SYS_seccomp,
            vec![r(vec![
                cond(
                    0,
                    Dword,
                    SeccompCmpOp::Eq,
                    libc::SECCOMP_SET_MODE_FILTER as u64,
                ),
                cond(
                    1,
                    Dword,
                    SeccompCmpOp::MaskedEq(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER),
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                ),
            ])],
        );
        rules.insert(
            libc::SYS_ioctl,
            [libc::TIOCSTI, libc::TIOCLINUX, libc::TIOCSETD]
                .iter()
                .map(|&c| r(vec![cond(1, Dword, SeccompCmpOp::Eq, c)]))
                .collect(),
        );
        let raw = libc::SOCK_RAW as u64;
        rules.insert(
            libc::SYS_socket,
            vec![
                r(vec![cond(0, Dword, SeccompCmpOp::Eq, 0)]),
                r(vec![
                    cond(0, Dword, SeccompCmpOp::Ge, 3),
                    cond(0, Dword, SeccompCmpOp::Le, 9),
                ]),
                r(vec![
                    cond(0, Dword, SeccompCmpOp::Ge, 11),
                    cond(0, Dword, SeccompCmpOp::Le, 15),
                ]),
                r(vec![cond(0, Dword, SeccompCmpOp::Ge, 17)]),
                r(vec![
                    cond(0, Dword, SeccompCmpOp::Eq, libc::AF_INET as u64),
                    cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), raw),
                ]),
                r(vec![
                    cond(0, Dword, SeccompCmpOp::Eq, libc::AF_INET6 as u64),
                    cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), raw),
                ]),
                r(vec![
                    cond(0, Dword, SeccompCmpOp::Eq, libc::AF_INET as u64),
                    cond(1, Dword, SeccompCmpOp::MaskedEq(0xf), SOCK_PACKET),
                ]),
            ],
        );
        let compile = |rules, action| -> BpfProgram {
            SeccompFilter::new(rules, SeccompAction::Allow, action, ARCH)
                .unwrap()
                .try_into()
                .unwrap()
        };
        let mut watched = rules.clone();
        watched.insert(libc::SYS_connect, vec![]);
        if watch_exec {
            watched.insert(libc::SYS_execve, vec![]);
            watched.insert(libc::SYS_execveat, vec![]);
        }
        let deny = compile(rules, SeccompAction::Errno(libc::EPERM as u32));
        let watched = compile(watched, SeccompAction::Errno(libc::EPERM as u32));
        let nosys = compile(
            BTreeMap::from([(libc::SYS_clone3, vec![])]),
            SeccompAction::Errno(libc::ENOSYS as u32),
        );
        let notify: BpfProgram = watched
            .iter()
            .map(|i| {
                let ret = (libc::BPF_RET | libc::BPF_K) as u16;
                let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
                let k = if i.code == ret && i.k == eperm {
                    libc::SECCOMP_RET_USER_NOTIF
                } else {
                    i.k
                };
                seccompiler::sock_filter { k, ..*i }
            })
            .collect();
        let ins = |code: u32, jt: u8, jf: u8, k: u32| seccompiler::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let mut first = vec![];
        #[cfg(target_arch = "x86_64")]
        first.push(vec![
            ins(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
            ins(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 0, 1, X32_BIT),
            ins(libc::BPF_RET | libc::BPF_K, 0, 0, Ret::Eperm.k()),
            ins(libc::BPF_RET | libc::BPF_K, 0, 0, Ret::Allow.k()),
        ]);
        first.push(nosys);
        let mut plain = first.clone();
        plain.push(deny);
        first.push(notify);
        (plain, first)
    }

    /// Run a classic BPF program over `seccomp_data` (the instructions seccomp accepts).
    fn run(prog: &[(u16, u8, u8, u32)], data: &[u8; 64]) -> u32 {
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        loop {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            let code = u32::from(code);
            let src = if code & libc::BPF_X != 0 { x } else { k };
            match code & 0x07 {
                libc::BPF_LD | libc::BPF_LDX => {
                    let v = match code & 0xe0 {
                        libc::BPF_ABS => {
                            let k = k as usize;
                            u32::from_le_bytes(data[k..k + 4].try_into().unwrap())
                        }
                        libc::BPF_IMM => k,
                        libc::BPF_MEM => mem[k as usize],
                        libc::BPF_LEN => 64,
                        m => panic!("load mode {m:#x}"),
                    };
                    if code & 0x07 == libc::BPF_LD {
                        a = v
                    } else {
                        x = v
                    }
                }
                libc::BPF_ST => mem[k as usize] = a,
                libc::BPF_STX => mem[k as usize] = x,
                libc::BPF_ALU => {
                    a = match code & 0xf0 {
                        libc::BPF_ADD => a.wrapping_add(src),
                        libc::BPF_SUB => a.wrapping_sub(src),
                        libc::BPF_MUL => a.wrapping_mul(src),
                        libc::BPF_DIV => a / src,
                        libc::BPF_AND => a & src,
                        libc::BPF_OR => a | src,
                        libc::BPF_XOR => a ^ src,
                        libc::BPF_LSH => a << src,
                        libc::BPF_RSH => a >> src,
                        libc::BPF_NEG => a.wrapping_neg(),
                        op => panic!("alu op {op:#x}"),
                    }
                }
                libc::BPF_JMP => {
                    let taken = match code & 0xf0 {
                        libc::BPF_JA => {
                            pc += k as usize;
                            continue;
                        }
                        libc::BPF_JEQ => a == src,
                        libc::BPF_JGT => a > src,
                        libc::BPF_JGE => a >= src,
                        libc::BPF_JSET => a & src != 0,
                        op => panic!("jump op {op:#x}"),
                    };
                    pc += usize::from(if taken { jt } else { jf });
                }
                libc::BPF_RET => return if code & 0x18 == libc::BPF_A { a } else { k },
                libc::BPF_MISC => {
                    if code & 0xf8 == libc::BPF_TAX {
                        x = a
                    } else {
                        a = x
                    }
                }
                c => panic!("class {c:#x}"),
            }
        }
    }

    /// What the kernel answers with several filters installed: each runs (the last installed
    /// first) and the most restrictive action wins, the first seen on a tie.
    fn answer(progs: &[Vec<(u16, u8, u8, u32)>], data: &[u8; 64]) -> u32 {
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        let mut out = libc::SECCOMP_RET_ALLOW;
        for p in progs.iter().rev() {
            let r = run(p, data);
            if action(r) < action(out) {
                out = r;
            }
        }
        out
    }

    fn data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_le_bytes());
        d[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        d
    }

    fn ours(p: &[libc::sock_filter]) -> Vec<(u16, u8, u8, u32)> {
        p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
    }

    fn theirs(p: &BpfProgram) -> Vec<(u16, u8, u8, u32)> {
        p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
    }

    /// Every system call number (and a few beyond), with the arguments the rules look at.
    fn cases() -> Vec<[u8; 64]> {
        let mut flags: Vec<u64> = vec![0, 0x11, 1 << 32, 0xffff_ffff, u64::MAX];
        flags.extend(CLONE_NEW.iter().flat_map(|f| [*f, f | 0x11, f | 1 << 40]));
        flags.extend(0..=20);
        flags.extend([44, libc::SECCOMP_SET_MODE_STRICT as u64]);
        let second: Vec<u64> = vec![
            0,
            1,
            libc::SOCK_STREAM as u64,
            libc::SOCK_DGRAM as u64,
            libc::SOCK_RAW as u64,
            (libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64,
            SOCK_PACKET,
            SOCK_PACKET | 1 << 32,
            libc::TIOCSTI,
            libc::TIOCSTI | 1 << 32,
            libc::TIOCLINUX,
            libc::TIOCSETD,
            libc::TIOCGWINSZ,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_TSYNC,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
        ];
        let ruled = [
            libc::SYS_clone,
            libc::SYS_socket,
            libc::SYS_ioctl,
            libc::SYS_seccomp,
        ];
        let mut out = Vec::new();
        for arch in [AUDIT_ARCH, 0x4000_0003, 0] {
            for nr in (0u32..1100).chain([0x4000_0000, 0x4000_0038, 0x4000_0200, u32::MAX]) {
                if arch == AUDIT_ARCH && ruled.contains(&i64::from(nr)) {
                    for a in &flags {
                        for b in &second {
                            out.push(data(arch, nr, [*a, *b, 0, 0, 0, 0]));
                        }
                    }
                } else {
                    out.push(data(arch, nr, [0; 6]));
                    out.push(data(arch, nr, [u64::MAX; 6]));
                }
            }
        }
        out
    }

    #[test]
    fn the_filter_answers_as_the_earlier_filters_did_for_every_call() {
        for watch_exec in [false, true] {
            let f = Filter::with_exec(watch_exec).unwrap();
            let (plain, notify) = reference(watch_exec);
            let plain: Vec<_> = plain.iter().map(theirs).collect();
            let notify: Vec<_> = notify.iter().map(theirs).collect();
            let (deny, held) = (ours(&f.deny), ours(&f.notify));
            for d in cases() {
                let p = [deny.clone()];
                assert_eq!(answer(&p, &d), answer(&plain, &d), "plain, {:?}", &d[..24]);
                let n = [held.clone()];
                assert_eq!(
                    answer(&n, &d),
                    answer(&notify, &d),
                    "notify, {:?}",
                    &d[..24]
                );
            }
        }
    }

    #[test]
    fn denied_calls_x32_and_clone3_get_their_answers() {
        let f = Filter::with_exec(true).unwrap();
        let (deny, held) = (ours(&f.deny), ours(&f.notify));
        let at = |p: &Vec<_>, nr: i64, args: [u64; 6]| run(p, &data(AUDIT_ARCH, nr as u32, args));
        for (name, nr) in DENIED {
            assert_eq!(at(&deny, *nr, [0; 6]), Ret::Eperm.k(), "{name}");
            assert_eq!(at(&held, *nr, [0; 6]), Ret::Notify.k(), "{name}");
        }
        for nr in [libc::SYS_connect, libc::SYS_execve, libc::SYS_execveat] {
            assert_eq!(at(&held, nr, [0; 6]), Ret::Notify.k());
            assert_eq!(at(&deny, nr, [0; 6]), Ret::Allow.k());
        }
        assert_eq!(at(&deny, libc::SYS_clone3, [0; 6]), Ret::Enosys.k());
        assert_eq!(at(&held, libc::SYS_read, [0; 6]), Ret::Allow.k());
        let newuser = libc::CLONE_NEWUSER as u64 | 0x11;
        assert_eq!(
            at(&held, libc::SYS_clone, [newuser, 0, 0, 0, 0, 0]),
            Ret::Notify.k()
        );
        assert_eq!(
            at(&held, libc::SYS_clone, [0x11, 0, 0, 0, 0, 0]),
            Ret::Allow.k()
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            run(
                &held,
                &data(AUDIT_ARCH, X32_BIT | libc::SYS_read as u32, [0; 6])
            ),
            Ret::Eperm.k()
        );
        assert_eq!(run(&held, &data(0x4000_0003, 3, [0; 6])), Ret::Kill.k());
    }

    #[test]
    fn the_filter_is_a_fraction_of_the_earlier_ones() {
        let f = Filter::with_exec(true).unwrap();
        let (_, notify) = reference(true);
        let before: usize = notify.iter().map(|p| p.len()).sum();
        assert!(
            f.notify.len() * 2 < before,
            "{} instructions against {before}",
            f.notify.len()
        );
        // Conditional jumps reach 255 instructions ahead at most: room is left for more rules.
        let longest = f.notify.iter().map(|i| i.jt.max(i.jf)).max().unwrap_or(0);
        assert!(longest < 160, "the longest jump is {longest}");
    }
}

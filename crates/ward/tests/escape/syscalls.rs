//! System calls past the sandbox: namespaces, mounts, kernel interfaces, other processes, the
//! terminal. Each denial has its own `sandbox.denied` record.

use crate::*;
use std::process::Command;

#[test]
fn escape_via_signals_and_ptrace_to_a_host_process() {
    let e = Env::new();
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id();
    let o = e.run(
        "/bin/sh",
        &format!("kill -9 {pid} && echo KILLED; cat /proc/{pid}/environ && echo READ; ls /proc | head -20"),
    );
    assert!(
        !text(&o).contains("KILLED") && !text(&o).contains("READ"),
        "{}",
        text(&o)
    );
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    e.assert_recorded();
}

#[test]
fn escape_via_chroot_and_mount_tricks() {
    let e = Env::new();
    let o = e.run(
        "/bin/sh",
        "mkdir -p x && chroot x /bin/true && echo CHROOTED; mount -t tmpfs none x && echo MOUNTED; \
         mount --bind / x && echo BOUND; unshare -m true && echo UNSHARED; true",
    );
    for w in ["CHROOTED", "MOUNTED", "BOUND", "UNSHARED"] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    e.assert_denied(&["chroot", "mount", "unshare"], &o);
}

#[test]
fn escape_via_namespace_and_kernel_interface_syscalls() {
    let e = Env::new();
    // x86_64 numbers; libc wrappers where glibc has them.
    let calls = [
        ("unshare", "libc.unshare(0x10000000)"),
        (
            "setns",
            "libc.setns(os.open('/proc/self/ns/mnt', os.O_RDONLY), 0)",
        ),
        ("mount", "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"),
        ("umount2", "libc.umount2(b'/proc', 2)"),
        ("pivot_root", "sc(155, b'/tmp', b'/tmp')"),
        ("open_tree", "sc(428, -100, b'/', 1)"),
        ("fsopen", "sc(430, b'tmpfs', 0)"),
        ("bpf", "sc(321, 0, None, 0)"),
        ("perf_event_open", "sc(298, None, 0, -1, -1, 0)"),
        ("keyctl", "sc(250, 0, 0, 0, 0, 0)"),
        ("add_key", "sc(248, b'user', b'x', b'y', 1, -3)"),
        (
            "io_uring_setup",
            "sc(425, 8, ctypes.create_string_buffer(120))",
        ),
        ("userfaultfd", "sc(323, 0)"),
        ("open_by_handle_at", "sc(304, -100, None, 0)"),
        (
            "clone(CLONE_NEWUSER)",
            "sc(56, 0x10000000 | 17, None, None, None, None)",
        ),
        ("move_mount", "sc(429, -1, b'', -100, b'/tmp', 0)"),
        ("fsconfig", "sc(431, -1, 0, None, None, 0)"),
        ("fsmount", "sc(432, -1, 0, 0)"),
        ("fspick", "sc(433, -100, b'/', 0)"),
        ("mount_setattr", "sc(442, -100, b'/', 0, None, 0)"),
        // A listener of the agent's own could answer its own denied calls.
        ("seccomp(NEW_LISTENER)", "sc(317, 1, 8, None)"),
    ];
    let o = e.run(PY, &syscalls_py(&calls));
    for (name, _) in &calls {
        assert!(
            text(&o).contains(&format!("{name} Operation not permitted")),
            "{name} was not refused with EPERM: {}",
            text(&o)
        );
    }
    assert!(!text(&o).contains("ALLOWED"), "{}", text(&o));
    e.assert_denied(&calls.iter().map(|c| c.0).collect::<Vec<_>>(), &o);
    // clone3 carries its flags in memory the filter cannot read: it is refused with ENOSYS so
    // that libc falls back to clone, whose flags the filter sees.
    let o = e.run(PY, &syscalls_py(&[("clone3", "sc(435, None, 0)")]));
    assert!(
        text(&o).contains("clone3 Function not implemented"),
        "{}",
        text(&o)
    );
}

#[test]
fn escape_via_ptrace_and_process_vm_of_a_host_process() {
    let e = Env::new();
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = victim.id();
    let calls = [
        ("ptrace", format!("libc.ptrace(16, {pid}, None, None)")),
        (
            "process_vm_readv",
            format!("sc(310, {pid}, None, 0, None, 0, 0)"),
        ),
    ];
    let calls: Vec<(&str, &str)> = calls.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let o = e.run(PY, &syscalls_py(&calls));
    assert!(!text(&o).contains("ALLOWED"), "{}", text(&o));
    assert!(victim.try_wait().unwrap().is_none());
    victim.kill().unwrap();
    victim.wait().unwrap();
    e.assert_denied(&["ptrace", "process_vm_readv"], &o);
}

#[test]
fn escape_via_terminal_injection_with_tiocsti_and_tioclinux() {
    // The filter refuses the request whatever the descriptor, so no terminal is needed to show
    // it; and the agent has no controlling terminal to type into anyway (own session).
    let e = Env::new();
    let calls = [
        ("ioctl(TIOCSTI)", "libc.ioctl(0, 0x5412, b'x')"),
        ("ioctl(TIOCLINUX)", "libc.ioctl(0, 0x541C, b'\\x06')"),
        // The kernel reads the request as 32 bits: high bits must not slip past the filter
        // (flatpak CVE-2019-10063).
        (
            "ioctl(TIOCSTI) with high bits",
            "sc(16, 0, ctypes.c_ulong(0x100005412), b'x')",
        ),
    ];
    let o = e.run(PY, &syscalls_py(&calls));
    assert!(!text(&o).contains("ALLOWED"), "{}", text(&o));
    assert_eq!(
        text(&o).matches("Operation not permitted").count(),
        3,
        "{}",
        text(&o)
    );
    e.assert_denied(&["ioctl(TIOCSTI)", "ioctl(TIOCLINUX)"], &o);
}

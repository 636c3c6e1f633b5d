//! The escape catalog (issue 3, growing): each test makes a real attempt inside `ward run`,
//! asserts that it failed, that nothing changed on the host, and that the session is on record.
//! Kernel-side denials are not yet audited one by one (Landlock's audit logging is the plan).

use std::os::linux::net::SocketAddrExt;
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
        Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["run", "--grant", ".:direct", "--", prog, "-c", script])
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
        assert!(recs.iter().any(|(_, r)| r["kind"] == "session.exit"));
    }
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
            "ln {} hl && cat hl && echo LINKED",
            e.p("outside/secret").display()
        ),
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
    e.assert_recorded();
}

//! Sockets: host services by path, abstract name, TCP/UDP, raw and packet sockets, vsock.

use crate::*;
use std::os::linux::net::SocketAddrExt;

#[test]
fn escape_via_unix_socket_stand_ins() {
    // Stand-ins for the D-Bus session bus, Docker, ssh-agent and X11 sockets, outside the grant.
    let e = Env::new();
    let mut listeners = Vec::new();
    for name in ["bus", "docker.sock", "agent.sock", "X0"] {
        listeners
            .push(std::os::unix::net::UnixListener::bind(e.p(&format!("outside/{name}"))).unwrap());
    }
    let script = format!(
        "import socket\nfor n in ['bus','docker.sock','agent.sock','X0']:\n  s=socket.socket(socket.AF_UNIX)\n  try:\n    s.connect('{}/'+n); print('CONNECTED', n)\n  except OSError as x: print('blocked', n, x)\n",
        e.p("outside").display()
    );
    let o = e.run(PY, &script);
    assert!(!text(&o).contains("CONNECTED"), "{}", text(&o));
    assert_eq!(text(&o).matches("blocked").count(), 4, "{}", text(&o));
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

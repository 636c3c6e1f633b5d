//! Package managers inside Ward against real registries on this machine's loopback, started by
//! the tests (scripts/registries.sh installs them outside the clone): pip into a virtual
//! environment in a staged grant from pypiserver, reviewed folder by folder at the end of the
//! session and still working after it is applied; npm install from verdaccio, with its cache in
//! the agent's own home.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{text, Env, Person};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The folder scripts/registries.sh installs into, or `None` (and a loud line) where it has
/// not run; under CI it must have.
fn registries() -> Option<PathBuf> {
    let dir = std::env::var_os("WARD_REGISTRIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ward-registries")
        });
    if dir.join("pypi-venv/bin/pypi-server").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "REGISTRIES MISSING in {} (scripts/registries.sh installs them; scripts/setup.sh calls it)",
        dir.display()
    );
    eprintln!("NOT TESTED HERE: no local registries (bash scripts/registries.sh installs them)");
    None
}

/// A server process ended with the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cmd` started as a server of the test's, once it answers on 127.0.0.1:`port`.
fn start(mut cmd: Command, port: u16, what: &str) -> Server {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let begun = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// The project staged, and the registry on this machine's loopback allowed.
fn allow_registry(e: &Env, port: u16) {
    std::fs::write(
        e.p("proj/ward.toml"),
        format!(
            "[[files]]\npath = \"{}\"\n[network]\nallow = [\"http://localhost:{port}\"]\n",
            e.p("proj").display()
        ),
    )
    .unwrap();
}

/// A free port on 127.0.0.1 (bound and let go: the server takes it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// pypiserver on 127.0.0.1:`port`, serving the pinned wheels, once it answers.
fn pypi(dir: &std::path::Path, port: u16) -> Server {
    let mut c = Command::new(dir.join("pypi-venv/bin/pypi-server"));
    c.args(["run", "-i", "127.0.0.1", "-p", &port.to_string()])
        .arg(dir.join("pypi-packages"));
    start(c, port, "pypiserver")
}

#[test]
fn pip_installs_into_a_venv_from_a_loopback_registry_and_the_venv_works_after_review() {
    let Some(dir) = registries() else {
        return;
    };
    let port = free_port();
    let _server = pypi(&dir, port);
    let e = Env::new();
    allow_registry(&e, port);
    std::fs::write(e.p("proj/README"), "hello\n").unwrap();
    let script = format!(
        "/usr/bin/python3 -m venv venv && venv/bin/pip install -q --disable-pip-version-check \
         --index-url http://localhost:{port}/simple/ six && venv/bin/python -c 'import six; \
         print(\"INSIDE\", six.__version__)' && echo edited >> README"
    );
    let mut c = e.command(&["run", "--", "/bin/sh", "-c", &script]);
    c.env("NO_COLOR", "1");
    let mut p = Person::spawn(c);
    // Folder by folder: all of venv (knowing what in it runs code), skip README.
    let asked = p.answer(1, b"f\r");
    let venv_q = p
        .wait_for("venv/  ", asked, 60)
        .expect("the venv's folder is asked about");
    p.answer(2, b"!\r");
    p.answer(3, b"s\r");
    let (code, screen) = p.finish(120);
    let out = String::from_utf8_lossy(&screen).into_owned();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("INSIDE 1.16.0"), "{out}");
    // The venv is one line of the listing (not one per file), with its links' targets.
    assert!(
        out[..venv_q].contains("change(s) (") && out.contains("marked !"),
        "{out}"
    );
    // Applied, the venv works outside Ward: its interpreter links to the system's.
    let py = e.p("proj/venv/bin/python");
    let target = std::fs::read_link(e.p("proj/venv/bin/python3")).unwrap();
    assert!(target.starts_with("/usr/bin"), "{target:?}");
    let o = Command::new(&py)
        .args(["-c", "import six; print(six.__version__)"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "1.16.0",
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(e.p("proj/README")).unwrap(),
        "hello\n"
    );
    // One approval for the folder, one for each change in it that runs code.
    let recs = e.records();
    let folder: Vec<_> = recs
        .iter()
        .filter(|r| r["kind"] == "review.approve" && r["detail"]["folder"].is_string())
        .collect();
    assert_eq!(folder.len(), 1, "{folder:?}");
    assert!(folder[0]["detail"]["changes"].as_u64().unwrap() > 100);
    assert_eq!(folder[0]["detail"]["digest"].as_str().unwrap().len(), 64);
    let each = recs
        .iter()
        .filter(|r| r["kind"] == "review.approve" && r["detail"]["folder"].is_null())
        .count();
    assert!((1..50).contains(&each), "{each} approvals one by one");
    // The registry was reached through Ward's decisions.
    assert!(recs.iter().any(|r| r["kind"] == "net.connect"
        && r["detail"]["via"] == "loopback"
        && r["decision"]["result"] == "allow"));
    // README stays staged.
    let o = e.ward(&["review", "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("README"),
        "{}",
        text(&o)
    );
}

/// verdaccio on 127.0.0.1:`port` with a storage of its own under `root`, once it answers.
fn verdaccio(dir: &std::path::Path, root: &std::path::Path, port: u16) -> Server {
    let config = root.join("verdaccio.yaml");
    std::fs::write(
        &config,
        format!(
            "storage: {}\nauth:\n  htpasswd:\n    file: {}\n    max_users: 10\nuplinks: {{}}\n\
             packages:\n  '**':\n    access: $all\n    publish: $authenticated\n\
             log: {{ type: stdout, format: pretty, level: error }}\n",
            root.join("storage").display(),
            root.join("htpasswd").display()
        ),
    )
    .unwrap();
    let mut c = Command::new(dir.join("verdaccio/node_modules/.bin/verdaccio"));
    c.arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    start(c, port, "verdaccio")
}

/// Publish a package `name` whose module says `says`, as a user made for it.
fn publish(root: &std::path::Path, port: u16, name: &str, says: &str) {
    let user = Command::new("curl")
        .args([
            "-s",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(format!(
            "{{\"name\":\"ward-{port}\",\"password\":\"ward-test-pass\"}}"
        ))
        .arg(format!(
            "http://127.0.0.1:{port}/-/user/org.couchdb.user:ward-{port}"
        ))
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&user.stdout).unwrap_or_else(|_| panic!("no user: {}", text(&user)));
    let token = v["token"].as_str().expect("a token");
    let rc = root.join("npmrc");
    std::fs::write(&rc, format!("//127.0.0.1:{port}/:_authToken={token}\n")).unwrap();
    let pkg = root.join("pkg").join(name);
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        format!("{{\"name\":\"{name}\",\"version\":\"1.0.0\",\"main\":\"index.js\"}}"),
    )
    .unwrap();
    std::fs::write(
        pkg.join("index.js"),
        format!("module.exports = {says:?};\n"),
    )
    .unwrap();
    let o = Command::new("npm")
        .args([
            "publish",
            "--registry",
            &format!("http://127.0.0.1:{port}/"),
            "--userconfig",
        ])
        .arg(&rc)
        .current_dir(&pkg)
        .output()
        .unwrap();
    assert!(o.status.success(), "npm publish: {}", text(&o));
}

#[test]
fn npm_installs_from_a_loopback_registry_with_its_cache_in_the_agents_home() {
    let Some(dir) = registries() else {
        return;
    };
    if !dir.join("verdaccio/node_modules/.bin/verdaccio").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "verdaccio missing: scripts/registries.sh"
        );
        eprintln!("NOT TESTED HERE: no verdaccio (bash scripts/registries.sh installs it)");
        return;
    }
    let e = Env::new();
    let port = free_port();
    let _server = verdaccio(&dir, e.dir.path(), port);
    publish(e.dir.path(), port, "ward-demo-dep", "dep ok");
    std::fs::write(
        e.p("proj/package.json"),
        "{\"name\":\"p\",\"version\":\"1.0.0\"}\n",
    )
    .unwrap();
    allow_registry(&e, port);
    let script = format!(
        "npm install --no-audit --no-fund --registry http://localhost:{port}/ ward-demo-dep && \
         node -e 'console.log(\"INSIDE\", require(\"ward-demo-dep\"))'"
    );
    let o = e.ward(&["run", "--review", "apply", "--", "/bin/sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("INSIDE dep ok"), "{}", text(&o));
    // Applied: the project works outside Ward.
    let n = Command::new("node")
        .args(["-e", "console.log(require('ward-demo-dep'))"])
        .current_dir(e.p("proj"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&n.stdout).trim(),
        "dep ok",
        "{}",
        text(&n)
    );
    // npm's cache is in the agent's home under Ward's state, not the person's.
    assert!(e.p("state/ward/homes/default/.npm").is_dir());
    assert!(!e.p("home/.npm").exists());
    assert!(e.records().iter().any(|r| r["kind"] == "net.connect"
        && r["detail"]["via"] == "loopback"
        && r["resource"] == format!("http://localhost:{port}").as_str()));
}

/// The real cargo binary (rustup's proxy resolved to its toolchain's), and the folder to grant
/// for it when it is not in a system folder.
fn cargo() -> Option<(PathBuf, Option<PathBuf>)> {
    let found = Command::new("rustup")
        .args(["which", "cargo"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .or_else(|| {
            let o = Command::new("sh")
                .args(["-c", "command -v cargo"])
                .output()
                .ok()?;
            Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })?
        .canonicalize()
        .ok()?;
    let dir = found.parent()?.to_path_buf();
    let system = ["/usr/", "/bin/"].iter().any(|s| found.starts_with(s));
    Some((found, (!system).then_some(dir)))
}

#[test]
fn cargo_fetches_from_a_sparse_registry_on_loopback_into_the_agents_home() {
    let Some(dir) = registries() else {
        return;
    };
    let krate = dir.join("crates/itoa-1.0.11.crate");
    if !krate.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the pinned crate is missing: scripts/registries.sh"
        );
        eprintln!("NOT TESTED HERE: no pinned crate (bash scripts/registries.sh fetches it)");
        return;
    }
    let (cargo, grant) = cargo().expect("cargo, which builds these tests");
    let e = Env::new();
    let port = free_port();
    // A sparse registry as static files (config.json, the index line, the .crate), served by
    // a real HTTP server.
    let reg = e.p("registry");
    std::fs::create_dir_all(reg.join("it/oa")).unwrap();
    std::fs::create_dir_all(reg.join("crates")).unwrap();
    std::fs::copy(&krate, reg.join("crates/itoa-1.0.11.crate")).unwrap();
    let sum = ward_stage::sha256_file(&krate).unwrap();
    std::fs::write(
        reg.join("config.json"),
        format!("{{\"dl\":\"http://localhost:{port}/crates/{{crate}}-{{version}}.crate\"}}"),
    )
    .unwrap();
    std::fs::write(
        reg.join("it/oa/itoa"),
        format!(
            "{{\"name\":\"itoa\",\"vers\":\"1.0.11\",\"deps\":[],\"cksum\":\"{sum}\",\"features\":{{}},\"yanked\":false}}\n"
        ),
    )
    .unwrap();
    let mut http = Command::new("python3");
    http.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(&reg);
    let _server = start(http, port, "the registry");
    std::fs::create_dir_all(e.p("proj/src")).unwrap();
    std::fs::create_dir_all(e.p("proj/.cargo")).unwrap();
    std::fs::write(
        e.p("proj/Cargo.toml"),
        "[package]\nname = \"p\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nitoa = \"=1.0.11\"\n",
    )
    .unwrap();
    std::fs::write(e.p("proj/src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        e.p("proj/.cargo/config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"local\"\n\n[source.local]\nregistry = \"sparse+http://localhost:{port}/\"\n"
        ),
    )
    .unwrap();
    let mut toml = format!(
        "[[files]]\npath = \"{}\"\n[network]\nallow = [\"http://localhost:{port}\"]\n",
        e.p("proj").display()
    );
    // A toolchain outside the system folders: its bin (cargo, rustc) and lib (rustc's
    // libraries), read-only.
    if let Some(g) = &grant {
        for d in [g.clone(), g.with_file_name("lib")] {
            toml.push_str(&format!(
                "\n[[files]]\npath = \"{}\"\naccess = \"read\"\n",
                d.display()
            ));
        }
    }
    std::fs::write(e.p("proj/ward.toml"), toml).unwrap();
    // (The test runner's own CARGO_HOME points outside this test's home.)
    let o = e
        .command(&[
            "run",
            "--review",
            "keep",
            "--",
            cargo.to_str().unwrap(),
            "fetch",
        ])
        .env_remove("CARGO_HOME")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("RUSTC", cargo.with_file_name("rustc"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // In the agent's home (its CARGO_HOME), not the person's.
    let cached = std::fs::read_dir(e.p("state/ward/homes/default/.cargo/registry/cache"))
        .unwrap()
        .flatten()
        .any(|d| d.path().join("itoa-1.0.11.crate").exists());
    assert!(cached, "{}", text(&o));
    assert!(!e.p("home/.cargo").exists());
    assert!(e.records().iter().any(|r| r["kind"] == "net.connect"
        && r["detail"]["via"] == "loopback"
        && r["decision"]["result"] == "allow"));
}

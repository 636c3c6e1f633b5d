// A benchmark stops at the first failure: unwrap and expect are its way to say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ward's benchmarks for the foundation: decisions, audit appends, audit verification.
//! Each runs Ward and a peer side by side in one run and prints the ratio.
//!
//!   cargo run --release -p ward-bench -- [decisions|audit|verify|all]
//!
//! Timing loops measure batches of operations (a clock read costs ~25 ns, more than a manifest
//! decision) and report the median of the per-operation averages.

mod agents;
mod exec;
mod inspect;
mod proxy;
mod scan;
mod terminal;
mod world;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use ward_audit::{AuditLog, Event, KeyStore, WriterOptions};
use ward_core::{Action, ActionKind, LoadOptions, Manifest};
use ward_policy::Pdp;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let all = what == "all";
    if all || what == "decisions" {
        decisions();
    }
    if all || what == "audit" {
        audit_appends();
    }
    if all || what == "verify" {
        verify();
    }
    if all || what == "startup" {
        startup();
    }
    if all || what == "kill" {
        kill();
    }
    if all || what == "review" {
        review();
    }
    if all || what == "proxy" {
        proxy::run();
    }
    if all || what == "inspect" {
        inspect::run();
    }
    if all || what == "scan" {
        scan::run();
    }
    if all || what == "terminal" {
        terminal::run();
    }
    if all || what == "exec" {
        exec::run();
    }
    if all || what == "agents" {
        agents::run();
    }
    if what == "relay" {
        // relay LISTEN TARGET: the proxy bench's floor (a byte relay, see proxy.rs).
        let arg = |i| std::env::args().nth(i).unwrap().parse().unwrap();
        proxy::relay(arg(2), arg(3));
    }
    if what == "verify-file" {
        // verify-file LOG KEYDIR: verify an existing log 5 times (for profiling).
        let log = std::path::PathBuf::from(std::env::args().nth(2).unwrap());
        let keys = KeyStore::new(std::env::args().nth(3).unwrap());
        let data = std::fs::read(&log).unwrap();
        let vk = keys.verifying_key().unwrap().unwrap();
        for _ in 0..5 {
            let t = Instant::now();
            let r = ward_audit::verify_bytes(&data, &vk, None);
            println!("{} records in {:?}", r.records, t.elapsed());
        }
    }
    if what == "lines" {
        let data = std::fs::read(std::env::args().nth(2).unwrap()).unwrap();
        let t = Instant::now();
        let n = memchr_count(&data);
        println!("newlines {n} in {:?}", t.elapsed());
    }
    if what == "sha" {
        use sha2::Digest;
        let buf = vec![7u8; 480];
        let t = Instant::now();
        let n = 2_000_000;
        for _ in 0..n {
            std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&buf)));
        }
        let e = t.elapsed().as_secs_f64();
        println!(
            "sha256 480 B: {:.0} ns each, {:.0} MB/s",
            e * 1e9 / n as f64,
            480.0 * n as f64 / e / 1e6
        );
    }
}

/// Median nanoseconds per call of `f`, over `samples` batches of `batch` calls.
fn p50_ns(samples: usize, batch: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch * 10 {
        f();
    }
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn decisions() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::copy(
        root().join("examples/policy.rego"),
        dir.path().join("policy.rego"),
    )
    .unwrap();
    let manifest = format!(
        r#"[[files]]
path = "{}"
[network]
allow = ["https://api.acme.com", "https://uploads.acme.com", "https://storage.corp.local"]
[[rules]]
action = "exec"
effect = "ask"
resource = "/usr/bin/*"
[[policies]]
path = "policy.rego"
rule = "data.agent.security.allow_upload"
actions = ["net.upload"]
"#,
        proj.display()
    );
    std::fs::write(dir.path().join("ward.toml"), manifest).unwrap();
    let opts = LoadOptions {
        managed: vec![],
        ..LoadOptions::default()
    };
    let m = Manifest::load(&dir.path().join("ward.toml"), &opts).unwrap();
    let mut pdp = Pdp::new(m).unwrap();

    let read = Action::new(
        ActionKind::FileRead,
        proj.join("src/lib.rs").display().to_string(),
    );
    let dotenv = Action::new(
        ActionKind::FileRead,
        proj.join("sub/.env").display().to_string(),
    );
    let connect = Action::new(ActionKind::NetConnect, "https://api.acme.com/v1/items");
    let upload = Action::upload("uploads.acme.com", 5 << 20);

    let t_read = p50_ns(2000, 200, || {
        std::hint::black_box(pdp.decide(std::hint::black_box(&read)));
    });
    let t_deny = p50_ns(2000, 200, || {
        std::hint::black_box(pdp.decide(std::hint::black_box(&dotenv)));
    });
    let t_connect = p50_ns(2000, 200, || {
        std::hint::black_box(pdp.decide(std::hint::black_box(&connect)));
    });
    let t_upload = p50_ns(2000, 50, || {
        std::hint::black_box(pdp.decide(std::hint::black_box(&upload)));
    });

    // Peer: regorus alone on the seed policy, as the research measured it (set_input + eval_rule
    // with a JSON input), with no manifest, no decision building.
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(
            "policy.rego".into(),
            std::fs::read_to_string(root().join("examples/policy.rego")).unwrap(),
        )
        .unwrap();
    let input = regorus::Value::from_json_str(
        r#"{"kind":"net.upload","dest":"uploads.acme.com","size":5242880}"#,
    )
    .unwrap();
    let t_regorus = p50_ns(2000, 50, || {
        engine.set_input(input.clone());
        std::hint::black_box(
            engine
                .eval_rule("data.agent.security.allow_upload".into())
                .unwrap(),
        );
    });

    println!("== decisions (p50 per decision, single thread) ==");
    println!(
        "manifest rule, file.read in grant      {:>8.0} ns   {:>10.0}/s   (target < 1000 ns)",
        t_read,
        1e9 / t_read
    );
    println!(
        "manifest rule, mandatory deny (.env)   {:>8.0} ns   {:>10.0}/s",
        t_deny,
        1e9 / t_deny
    );
    println!(
        "manifest rule, net.connect allowlist   {:>8.0} ns   {:>10.0}/s",
        t_connect,
        1e9 / t_connect
    );
    println!(
        "seed Rego policy via Ward (net.upload) {:>8.0} ns   {:>10.0}/s   (target < 5000 ns)",
        t_upload,
        1e9 / t_upload
    );
    println!(
        "peer: bare regorus eval_rule, same pol {:>8.0} ns   {:>10.0}/s",
        t_regorus,
        1e9 / t_regorus
    );
    println!(
        "ratio Ward Rego decision / bare regorus: {:.2}x",
        t_upload / t_regorus
    );
}

fn event(i: usize) -> Event {
    Event {
        session: Some("bench-session".into()),
        agent: Some("claude-code".into()),
        resource: Some(format!("/home/alice/Documents/ProjectX/src/module_{i}.rs")),
        size: Some(4096),
        decision: Some(ward_audit::EventDecision {
            result: ward_core::Effect::Allow,
            by: ward_core::By::manifest("/home/alice/ward.toml:4:8"),
            reason: "inside the grant /home/alice/Documents/ProjectX (read-write staged)".into(),
        }),
        ..Event {
            kind: "file.read".into(),
            ..Event::default()
        }
    }
}

/// Durable appends per second through Ward with `threads` callers, each handing `per_call`
/// events at a time to `append_all` and waiting until they are on disk.
fn ward_rate(dir: &Path, threads: usize, per_call: usize, total: usize) -> (f64, u64) {
    let keys = KeyStore::new(dir.join("keys"));
    let path = dir.join(format!("log-{threads}-{per_call}/audit.jsonl"));
    let log = AuditLog::open(&path, &keys, WriterOptions::default()).unwrap();
    let per_thread = total / threads;
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let log = &log;
            s.spawn(move || {
                let mut i = 0;
                while i < per_thread {
                    let n = per_call.min(per_thread - i);
                    log.append_all((i..i + n).map(|k| event(th * per_thread + k)).collect())
                        .unwrap();
                    i += n;
                }
            });
        }
    });
    let el = t.elapsed();
    log.close().unwrap();
    (
        (threads * per_thread) as f64 / el.as_secs_f64(),
        std::fs::metadata(&path).unwrap().len(),
    )
}

fn audit_appends() {
    let dir = tempfile::tempdir_in(std::env::var("WARD_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let total = 256_000;
    println!(
        "== audit appends, each durable (fdatasync) before its caller continues, {total} events =="
    );
    let (a, _) = ward_rate(dir.path(), 64, 1, total);
    println!("ward, 64 threads x append()                      {a:>9.0} appends/s");
    let (b, _) = ward_rate(dir.path(), 256, 1, total);
    println!("ward, 256 threads x append()                     {b:>9.0} appends/s");
    let (c, bytes) = ward_rate(dir.path(), 16, 16, total);
    let plain = plain_group_commit(&dir.path().join("plain.jsonl"), 16, 16, total);
    println!(
        "ward, 16 threads x append_all(16) (256 in flight) {c:>9.0} appends/s  ({:.0} B/record)   (target >= 100000/s)",
        bytes as f64 / total as f64
    );
    println!("peer: plain JSONL, same group commit, same load   {plain:>9.0} appends/s   (no chain, Merkle, signatures, anchor)");
    println!("ratio ward / plain: {:.2}x throughput", c / plain);
}

/// The peer: the same events as plain JSON lines with a group commit like Ward's (one write and
/// one fdatasync per batch, callers waiting for durability) and no integrity work at all.
fn plain_group_commit(path: &Path, threads: usize, per_call: usize, total: usize) -> f64 {
    use std::io::Write;
    struct Q {
        pending: Vec<Vec<u8>>,
        submitted: u64,
        done: u64,
        stop: bool,
    }
    let shared = Arc::new((
        Mutex::new(Q {
            pending: vec![],
            submitted: 0,
            done: 0,
            stop: false,
        }),
        Condvar::new(),
        Condvar::new(),
    ));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let sh = Arc::clone(&shared);
    let writer = std::thread::spawn(move || {
        let (m, work, done) = &*sh;
        let mut buf = Vec::new();
        loop {
            let (batch, upto) = {
                let mut q = m.lock().unwrap();
                while q.pending.is_empty() && !q.stop {
                    q = work.wait(q).unwrap();
                }
                if q.pending.is_empty() {
                    return;
                }
                (std::mem::take(&mut q.pending), q.submitted)
            };
            buf.clear();
            for b in batch {
                buf.extend_from_slice(&b);
            }
            file.write_all(&buf).unwrap();
            file.sync_data().unwrap();
            let mut q = m.lock().unwrap();
            q.done = upto;
            done.notify_all();
        }
    });
    let per_thread = total / threads;
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let shared = &shared;
            s.spawn(move || {
                let (m, work, done) = &**shared;
                let mut i = 0;
                while i < per_thread {
                    let n = per_call.min(per_thread - i);
                    let lines: Vec<Vec<u8>> = (i..i + n)
                        .map(|k| {
                            let mut line = serde_json::to_vec(&event(th * per_thread + k)).unwrap();
                            line.push(b'\n');
                            line
                        })
                        .collect();
                    let mut q = m.lock().unwrap();
                    q.pending.extend(lines);
                    q.submitted += n as u64;
                    let mine = q.submitted;
                    work.notify_one();
                    while q.done < mine {
                        q = done.wait(q).unwrap();
                    }
                    i += n;
                }
            });
        }
    });
    let el = t.elapsed();
    {
        let (m, work, _) = &*shared;
        m.lock().unwrap().stop = true;
        work.notify_all();
    }
    writer.join().unwrap();
    (threads * per_thread) as f64 / el.as_secs_f64()
}

fn verify() {
    verify_with("full records", event);
    verify_with("compact records", compact_event);
}

/// A smaller record, about the 300 bytes of the research's measurements.
fn compact_event(i: usize) -> Event {
    Event {
        resource: Some(format!("/p/src/f{i}.rs")),
        decision: Some(ward_audit::EventDecision {
            result: ward_core::Effect::Allow,
            by: ward_core::By::manifest("ward.toml:4:8"),
            reason: "in grant".into(),
        }),
        ..Event {
            kind: "file.read".into(),
            ..Event::default()
        }
    }
}

fn verify_with(label: &str, make: fn(usize) -> Event) {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir_in(std::env::var("WARD_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let keys = KeyStore::new(dir.path().join("keys"));
    let path = dir.path().join("log/audit.jsonl");
    let log = AuditLog::open(&path, &keys, WriterOptions::default()).unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
        log.append_all(chunk.iter().map(|&i| make(i)).collect())
            .unwrap();
    }
    log.close().unwrap();
    if let Some(keep) = std::env::var_os("WARD_BENCH_KEEP") {
        let keep = std::path::PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&path, keep.join("audit.jsonl")).unwrap();
        std::fs::copy(
            keys.dir.join("audit-signing.pub"),
            keep.join("audit-signing.pub"),
        )
        .unwrap();
    }
    let data = std::fs::read(&path).unwrap();
    let vk = keys.verifying_key().unwrap().unwrap();
    let anchor = keys
        .read_anchor(&ward_audit::log_id_of(&data).unwrap())
        .unwrap();
    let mut best = Duration::MAX;
    let mut records = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = ward_audit::verify_bytes(&data, &vk, anchor.as_ref());
        best = best.min(t.elapsed());
        assert!(r.ok(), "{r:?}");
        records = r.records;
    }
    // Peer: sha256sum over the same bytes (one hash of the file, no per-record work).
    let mut peer = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let st = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()
            .unwrap();
        assert!(st.status.success());
        peer = peer.min(t.elapsed());
    }
    let mb = data.len() as f64 / 1e6;
    println!(
        "== audit verify, {label} ({records} records of {:.0} B, {mb:.0} MB, in memory, best of 5) ==",
        data.len() as f64 / records as f64
    );
    println!("ward verify (chain, Merkle, signatures, anchor) {:>10.0} records/s  {:>6.0} MB/s   (target >= 2000000 records/s)", records as f64 / best.as_secs_f64(), mb / best.as_secs_f64());
    println!(
        "peer: sha256sum of the file                     {:>10.0} records/s  {:>6.0} MB/s",
        records as f64 / peer.as_secs_f64(),
        mb / peer.as_secs_f64()
    );
    println!(
        "ratio ward / sha256sum: {:.2}x time",
        best.as_secs_f64() / peer.as_secs_f64()
    );
}

fn memchr_count(d: &[u8]) -> usize {
    d.iter().filter(|&&b| b == b'\n').count()
}

/// Median wall time of `n` runs of `cmd` (after 3 warm-up runs).
fn median_run(n: usize, mut make: impl FnMut() -> std::process::Command) -> Duration {
    let run = |c: &mut std::process::Command| {
        let t = Instant::now();
        let st = c.status().expect("spawn");
        assert!(st.success(), "{c:?} failed: {st}");
        t.elapsed()
    };
    for _ in 0..3 {
        run(&mut make());
    }
    let mut v: Vec<Duration> = (0..n).map(|_| run(&mut make())).collect();
    v.sort();
    v[n / 2]
}

/// Medians of `n` rounds, each round running every command once (interleaved, so a slow
/// spell of the machine hits all of them alike). With `first_output`, the time until the
/// command's first byte of output (the agent has started), not until it has ended.
fn medians_interleaved(
    n: usize,
    makers: &mut [&mut dyn FnMut() -> std::process::Command],
    first_output: bool,
) -> Vec<Duration> {
    medians_paced(n, makers, first_output, Duration::ZERO)
}

/// [`medians_interleaved`], idle for `pause` before each run (a machine at rest, as when a
/// person starts one agent, rather than one in a tight loop).
fn medians_paced(
    n: usize,
    makers: &mut [&mut dyn FnMut() -> std::process::Command],
    first_output: bool,
    pause: Duration,
) -> Vec<Duration> {
    use std::io::Read;
    let run = |c: &mut std::process::Command| {
        let t = Instant::now();
        if first_output {
            let mut child = c
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut b = [0u8; 1];
            let got = child.stdout.as_mut().unwrap().read(&mut b).unwrap_or(0);
            let d = t.elapsed();
            let st = child.wait().unwrap();
            assert!(got == 1 && st.success(), "{c:?} failed: {st}");
            d
        } else {
            let st = c.status().expect("spawn");
            assert!(st.success(), "{c:?} failed: {st}");
            t.elapsed()
        }
    };
    for m in makers.iter_mut() {
        run(&mut m());
    }
    // Each round starts one maker further on: whatever one run leaves behind (a cgroup being
    // freed, a cold cache) falls on every maker in turn, not always on the one that follows it.
    let k = makers.len();
    let mut all: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); k];
    for r in 0..n {
        for j in 0..k {
            let i = (r + j) % k;
            let mut c = makers[i]();
            std::thread::sleep(pause);
            all[i].push(run(&mut c));
        }
    }
    all.into_iter()
        .map(|mut v| {
            v.sort();
            v[n / 2]
        })
        .collect()
}

/// `ward run -- /bin/true` against bwrap with an equivalent set-up and a bare `/bin/true`; then
/// `git status` on a 10,000-file tree inside and outside the sandbox.
/// bwrap with a set-up like the sandbox's: every namespace, the system folders read-only,
/// private /proc, /dev and /tmp, `proj` bound read-write and the working directory; the
/// command to run goes after.
fn bwrap_command(proj: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("bwrap");
    c.args(["--unshare-all", "--die-with-parent", "--new-session"]);
    for d in ["/usr", "/bin", "/sbin", "/lib", "/lib64"] {
        if std::path::Path::new(d).exists() {
            c.args(["--ro-bind", d, d]);
        }
    }
    for f in [
        "/etc/ld.so.cache",
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
    ] {
        c.args(["--ro-bind", f, f]);
    }
    c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    c.arg("--bind").arg(proj).arg(proj).arg("--chdir").arg(proj);
    c
}

fn startup() {
    let world = world::World::new();
    let proj = world.proj.clone();
    let dir = &world.home;
    let ward_cmd = |args: &[&str]| {
        let mut c = world.ward(args);
        c.stdout(std::process::Stdio::null());
        c
    };
    let bwrap = |cmd: &[&str]| {
        let mut c = bwrap_command(&proj);
        c.args(cmd).stdout(std::process::Stdio::null());
        c
    };
    let staging = dir.join("stage");
    std::fs::create_dir_all(&staging).unwrap();
    let n = 101;
    let bare = median_run(n, || std::process::Command::new("/bin/true"));
    let bw = median_run(n, || bwrap(&["/bin/true"]));
    let launch = median_run(n, || {
        let mut c = ward_cmd(&["__launch", "--staging"]);
        c.arg(&staging)
            .arg("--rw")
            .arg(&proj)
            .arg("--cwd")
            .arg(&proj)
            .args(["--", "/bin/true"]);
        c
    });
    let run = median_run(n, || {
        ward_cmd(&["run", "--grant", ".:direct", "--", "/bin/true"])
    });
    let over = |d: Duration| d.saturating_sub(bare).as_secs_f64() * 1e3;
    println!("== start-up, median of {n} runs of /bin/true ==");
    println!(
        "bare /bin/true                                   {:>7.2} ms",
        bare.as_secs_f64() * 1e3
    );
    println!(
        "bwrap (namespaces, ro binds, proc, dev, tmpfs)   {:>7.2} ms   overhead {:>6.2} ms",
        bw.as_secs_f64() * 1e3,
        over(bw)
    );
    println!(
        "ward sandbox only (same + Landlock + seccomp)    {:>7.2} ms   overhead {:>6.2} ms",
        launch.as_secs_f64() * 1e3,
        over(launch)
    );
    println!("ward run (+ manifest, 2 durable audit records)   {:>7.2} ms   overhead {:>6.2} ms   (target: overhead <= 1.2x bwrap's)", run.as_secs_f64() * 1e3, over(run));
    println!(
        "ratio of overheads: sandbox/bwrap {:.2}x, ward run/bwrap {:.2}x",
        over(launch) / over(bw),
        over(run) / over(bw)
    );

    // Start-up proper: until the agent's first output (`/bin/echo`), leaving out the end of
    // the session (namespace teardown; for ward run, the durable end record).
    let mut m_bare = || {
        let mut c = std::process::Command::new("/bin/echo");
        c.arg("x");
        c
    };
    let mut m_bw = || bwrap(&["/bin/echo", "x"]);
    // The comparable set-up: bwrap in a fresh cgroup with the same memory and pids ceilings as
    // `ward run`'s default (made before the clock starts, joined between fork and exec, as a
    // `systemd-run --scope` or `cgexec` would). On cgroup v1 the first move into a cgroup
    // after a quiet spell waits out an RCU grace period in the kernel.
    let groups = std::cell::RefCell::new(Vec::new());
    let mut m_bwcg = || {
        let n = groups.borrow().len();
        let mut cg =
            ward_sandbox::cgroup::Cgroups::new(&format!("bench-{}-{n}", std::process::id()));
        let d = ward_core::manifest::DEFAULT_LIMITS;
        cg.apply(ward_sandbox::cgroup::Limit::Memory(d.memory))
            .and_then(|()| cg.apply(ward_sandbox::cgroup::Limit::Pids(d.pids)))
            .expect("cgroups for the comparable bwrap set-up");
        let procs: Vec<std::ffi::CString> = cg
            .dirs()
            .iter()
            .map(|d| {
                std::ffi::CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
                    .unwrap()
            })
            .collect();
        groups.borrow_mut().push(cg);
        let mut c = bwrap(&["/bin/echo", "x"]);
        // SAFETY: between fork and exec only open, write and close (async-signal-safe), on
        // paths prepared before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        c
    };
    let mut m_run = || ward_cmd(&["run", "--grant", ".:direct", "--", "/bin/echo", "x"]);
    // WARD_BENCH_BEFORE=PATH: another build of ward (the one before a change), measured in the
    // same interleaved rounds.
    let before = std::env::var_os("WARD_BENCH_BEFORE").map(std::path::PathBuf::from);
    let mut m_before = || {
        let mut c = world.ward_at(
            before.as_deref().unwrap_or(std::path::Path::new("ward")),
            &["run", "--grant", ".:direct", "--", "/bin/echo", "x"],
        );
        c.stdout(std::process::Stdio::null());
        c
    };
    for (label, rounds, pause) in [
        ("back to back", n, Duration::ZERO),
        ("each after 100 ms idle", 41, Duration::from_millis(100)),
    ] {
        let mut makers: Vec<&mut dyn FnMut() -> std::process::Command> =
            vec![&mut m_bare, &mut m_bw, &mut m_bwcg, &mut m_run];
        if before.is_some() {
            makers.push(&mut m_before);
        }
        let v = medians_paced(rounds, &mut makers, true, pause);
        let (fb_bare, fb_bw, fb_bwcg, fb_run) = (v[0], v[1], v[2], v[3]);
        let over = |d: Duration| d.saturating_sub(fb_bare).as_secs_f64() * 1e3;
        println!(
            "== time to the agent's first output, /bin/echo, median of {rounds} interleaved rounds, {label} =="
        );
        println!(
            "bare /bin/echo                                   {:>7.2} ms",
            fb_bare.as_secs_f64() * 1e3
        );
        for (name, d) in [
            ("bwrap", fb_bw),
            ("bwrap in a fresh memory+pids cgroup", fb_bwcg),
            ("ward run", fb_run),
        ] {
            println!(
                "{name:<48} {:>7.2} ms   overhead {:>6.2} ms",
                d.as_secs_f64() * 1e3,
                over(d)
            );
        }
        println!(
            "ratio of start-up overheads: ward run/bwrap {:.2}x (target <= 1.2x), ward run/bwrap with the same cgroups {:.2}x",
            over(fb_run) / over(fb_bw),
            over(fb_run) / over(fb_bwcg)
        );
        if let (Some(b), Some(d)) = (&before, v.get(4)) {
            println!(
                "{:<48} {:>7.2} ms   overhead {:>6.2} ms   ({:.2}x bwrap)",
                format!("ward run, WARD_BENCH_BEFORE ({})", b.display()),
                d.as_secs_f64() * 1e3,
                over(*d),
                over(*d) / over(fb_bw)
            );
        }
        groups.borrow_mut().clear();
    }

    // A file-heavy workload: git status on 10,000 files, inside vs outside.
    let repo = proj.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for i in 0..100 {
        let d = repo.join(format!("d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..100 {
            std::fs::write(d.join(format!("f{j}.txt")), format!("{i} {j}\n")).unwrap();
        }
    }
    let git = |args: &[&str]| {
        let mut c = std::process::Command::new("git");
        c.args(args)
            .current_dir(&repo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    git(&["init", "-q"]).status().unwrap();
    git(&["add", "."]).status().unwrap();
    git(&[
        "-c",
        "user.email=b@x",
        "-c",
        "user.name=b",
        "commit",
        "-qm",
        "x",
    ])
    .status()
    .unwrap();
    let m = 21;
    let launch_in = |cmd: &[&str]| {
        let mut c = ward_cmd(&["__launch", "--staging"]);
        c.arg(&staging)
            .arg("--rw")
            .arg(&proj)
            .arg("--cwd")
            .arg(&repo)
            .arg("--")
            .args(cmd);
        c
    };
    let mut m_out = || git(&["status", "--porcelain"]);
    let mut m_in = || launch_in(&["git", "status", "--porcelain"]);
    let mut m_true = || launch_in(&["/bin/true"]);
    let mut m_bare = || std::process::Command::new("/bin/true");
    let v = medians_interleaved(
        m,
        &mut [&mut m_out, &mut m_in, &mut m_true, &mut m_bare],
        false,
    );
    let (outside, inside, launch, bare) = (v[0], v[1], v[2], v[3]);
    let inside_net = inside.saturating_sub(launch.saturating_sub(bare));
    println!("== git status on 10,000 files, median of {m} interleaved rounds ==");
    println!(
        "outside                                          {:>7.2} ms",
        outside.as_secs_f64() * 1e3
    );
    println!(
        "inside the ward sandbox (incl. start-up)         {:>7.2} ms",
        inside.as_secs_f64() * 1e3
    );
    println!("inside, start-up overhead removed                {:>7.2} ms   ratio {:.3}x (target <= 1.05x)", inside_net.as_secs_f64() * 1e3, inside_net.as_secs_f64() / outside.as_secs_f64());
}

/// Processes whose command line is exactly `sleep <n>`.
fn sleepers(n: u64) -> usize {
    let wanted = format!("sleep\0{n}\0");
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes())
                })
                .count()
        })
        .unwrap_or(0)
}

/// `ward kill SESSION` against SIGKILL of `bwrap --die-with-parent`'s parent: the time from
/// the kill request until no process of the session (a shell with two background sleeps) is
/// left. Target: within 100 ms.
fn kill() {
    let exe = std::env::current_exe().unwrap();
    let ward = exe.with_file_name("ward");
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let env = |c: &mut std::process::Command| {
        c.current_dir(&proj)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("HOME", dir.path())
            .env("WARD_MANAGED", dir.path().join("none.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    };
    let wait_for = |n: u64, count: usize| {
        let t = Instant::now();
        while sleepers(n) != count {
            assert!(
                t.elapsed().as_secs() < 20,
                "sleepers({n}) never reached {count}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        t.elapsed()
    };
    let rounds = 21;
    let mut ward_t = Vec::new();
    let mut bw_t = Vec::new();
    for i in 0..rounds {
        let n = 700_000 + u64::from(std::process::id()) * 100 + i;
        let script = format!("sleep {n} & sleep {n} & exec sleep {n}");
        // Ward: the session is found by `ward status`, then killed by id.
        let mut c = std::process::Command::new(&ward);
        c.args(["run", "--grant", ".:direct", "--", "/bin/sh", "-c", &script]);
        env(&mut c);
        let mut run = c.spawn().unwrap();
        wait_for(n, 3);
        let mut st = std::process::Command::new(&ward);
        st.args(["status", "--json"]);
        env(&mut st);
        let listed: serde_json::Value = serde_json::from_slice(
            &st.stdout(std::process::Stdio::piped())
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let session = listed[0]["session"].as_str().unwrap().to_string();
        let t = Instant::now();
        let mut k = std::process::Command::new(&ward);
        k.args(["kill", &session]);
        env(&mut k);
        assert!(k.status().unwrap().success());
        wait_for(n, 0);
        ward_t.push(t.elapsed());
        run.wait().unwrap();

        // bwrap: its parent is killed; --die-with-parent takes the sandbox down.
        let n = n + 50;
        let script = format!("sleep {n} & sleep {n} & exec sleep {n}");
        let mut parent = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "bwrap --unshare-all --die-with-parent --new-session --ro-bind / / --dev /dev --proc /proc /bin/sh -c '{script}'"
            ))
            .spawn()
            .unwrap();
        wait_for(n, 3);
        let t = Instant::now();
        parent.kill().unwrap();
        // The shell's child bwrap gets PDEATHSIG only if it is the direct child: sh -c execs
        // its last command, so bwrap is the process killed here.
        wait_for(n, 0);
        bw_t.push(t.elapsed());
        let _ = parent.wait();
    }
    ward_t.sort();
    bw_t.sort();
    let med = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1e3;
    println!("== kill: request until no process of the session is left, median of {rounds} ==");
    println!(
        "bwrap --die-with-parent, parent SIGKILLed        {:>7.2} ms",
        med(&bw_t)
    );
    println!(
        "ward kill SESSION (incl. its own start-up)       {:>7.2} ms   (max {:.2} ms; target < 100 ms)",
        med(&ward_t),
        ward_t.last().unwrap().as_secs_f64() * 1e3
    );
    println!("ratio ward/bwrap {:.2}x", med(&ward_t) / med(&bw_t));
}

/// Staged edits: listing and diffing 10,000 changed files (target: under 1 s), and applying
/// them (atomic per file, journaled, synced) beside `cp -a` of the same files.
fn review() {
    let exe = std::env::current_exe().unwrap();
    let ward = exe.with_file_name("ward");
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("proj");
    let n = 10_000usize;
    for d in 0..100 {
        let sub = proj.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..(n / 100) {
            std::fs::write(
                sub.join(format!("f{f}.txt")),
                format!("line one of {d}/{f}\nline two\nline three\n"),
            )
            .unwrap();
        }
    }
    let env = |c: &mut std::process::Command| {
        c.current_dir(&proj)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("HOME", dir.path())
            .env("WARD_MANAGED", dir.path().join("none.toml"));
    };
    let started_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    // The agent edits every file (one line each), staged.
    let mut c = std::process::Command::new(&ward);
    c.args(["run", "--", "python3", "-c"]).arg(
        "import os\nfor root, _, files in os.walk('.'):\n  for f in files:\n    p = os.path.join(root, f)\n    s = open(p).read().replace('line two', 'line 2')\n    open(p, 'w').write(s)\n",
    );
    env(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let session = std::fs::read_dir(dir.path().join("state/ward/sessions"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let stage = ward_stage::Stage {
        grant: proj.clone(),
        upper: session.join("stage/0/upper"),
    };
    let mut list_t = Vec::new();
    let mut diff_t = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let cs = ward_stage::changes(&stage).unwrap();
        list_t.push(t.elapsed());
        let t = Instant::now();
        let mut bytes = 0;
        for c in &cs {
            bytes += ward_stage::diff(&stage, c, false).unwrap().len();
        }
        diff_t.push(t.elapsed());
        assert!(bytes > 0);
        count = cs.len();
    }
    list_t.sort();
    diff_t.sort();
    assert_eq!(count, n);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("== review: {n} changed files (one line each), median of 5 ==");
    println!(
        "list (hash both sides of every file)            {:>8.1} ms",
        ms(list_t[2])
    );
    println!(
        "unified diffs of all                            {:>8.1} ms",
        ms(diff_t[2])
    );
    println!(
        "list + diff                                     {:>8.1} ms   (target < 1000 ms)",
        ms(list_t[2] + diff_t[2])
    );

    // Commit: plan + journaled atomic apply (library), against cp -a of the staged files.
    let copy_to = dir.path().join("copy");
    let t = Instant::now();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&stage.upper)
        .arg(&copy_to)
        .status()
        .unwrap();
    assert!(st.success());
    let st = std::process::Command::new("sync")
        .arg("-f")
        .arg(&copy_to)
        .status()
        .unwrap();
    assert!(st.success());
    let cp_t = t.elapsed();
    let t = Instant::now();
    let cs = ward_stage::changes(&stage).unwrap();
    let plan = ward_stage::apply::plan(&stage, &cs, started_ns);
    assert!(plan.conflicts.is_empty() && plan.refused.is_empty());
    let r = ward_stage::apply::execute(&stage, &plan, &session.join("stage/0/journal")).unwrap();
    let apply_t = t.elapsed();
    assert_eq!(r.applied, n);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("== commit of {n} files ==");
    println!(
        "cp -a + sync -f (no atomicity, no journal)       {:>8.1} ms   {:>9.0} files/s",
        ms(cp_t),
        rate(cp_t)
    );
    println!(
        "ward: list + plan + journal + atomic apply      {:>8.1} ms   {:>9.0} files/s",
        ms(apply_t),
        rate(apply_t)
    );
    println!(
        "ratio ward/cp -a (files/s) {:.2}x",
        rate(apply_t) / rate(cp_t)
    );
}

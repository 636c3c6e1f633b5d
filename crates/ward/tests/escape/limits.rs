//! Resources and lifetime: fork and memory bombs against the cgroup limits, and a session that
//! would outlive its supervisor.

use crate::*;

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
fn escape_via_outliving_a_killed_supervisor() {
    // SIGKILL of `ward run` (no chance to clean up) must not leave the agent's processes
    // running unsupervised (bubblewrap needs --die-with-parent for this).
    let e = Env::new();
    let n = 500_000 + u64::from(std::process::id());
    let mut run = e
        .command(&["run", "--grant", ".:direct", "--", "/bin/sh", "-c"])
        .arg(format!("sleep {n} & sleep {n} & sleep {n}"))
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

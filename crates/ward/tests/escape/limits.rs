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
            && r["decision"]["by"] == "sandbox:cgroup"),
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
    // What the next ward finds to clean: the session's cgroups.
    let sessions = e.p("state/ward/sessions");
    let info = std::fs::read_dir(&sessions)
        .unwrap()
        .flatten()
        .map(|d| d.path().join("session.json"))
        .find(|f| f.exists())
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&info).unwrap()).unwrap();
    let cgroups: Vec<std::path::PathBuf> = info["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert!(!cgroups.is_empty(), "{info}");
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
    // `ward run` could not remove its cgroups; the next `ward status` does.
    assert!(cgroups.iter().all(|c| c.exists()));
    let t = std::time::Instant::now();
    loop {
        let o = e.command(&["status"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        if cgroups.iter().all(|c| !c.exists()) {
            break;
        }
        assert!(t.elapsed().as_secs() < 10, "left behind: {cgroups:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The processes below `pid`, depth first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    for t in tasks {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
            out.push(k);
            out.extend(descendants(k));
        }
    }
    out
}

/// The lines of `/proc/PID/cgroup` that name a session's cgroup (`.../ward-ID`).
fn session_cgroups(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/ward-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_process_of_the_session_is_in_its_cgroups() {
    // The launcher moves PID 1 and itself into the session's cgroups while PID 1 builds the
    // root, and PID 1 forks the agent only after: no process of the session, Ward's own
    // included, runs outside its ceilings; `ward run` itself stays out.
    let e = Env::new();
    let n = 600_000 + u64::from(std::process::id());
    let mut run = e
        .command(&["run", "--grant", ".:direct", "--", "/bin/sh", "-c"])
        .arg(format!("sleep {n}; true"))
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while sleepers(n) < 1 {
        assert!(t.elapsed().as_secs() < 20, "the agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let tree = descendants(run.id());
    let groups: Vec<Vec<String>> = tree.iter().map(|&p| session_cgroups(p)).collect();
    let outside = session_cgroups(run.id());
    run.kill().unwrap();
    run.wait().unwrap();
    // The launcher, PID 1, the shell and its sleep.
    assert!(tree.len() >= 4, "{tree:?}");
    assert!(
        !groups[0].is_empty(),
        "the launcher is in no session cgroup: {groups:?}"
    );
    for (p, g) in tree.iter().zip(&groups) {
        assert_eq!(
            g, &groups[0],
            "process {p} is not in the session's cgroups: {groups:?}"
        );
    }
    assert!(outside.is_empty(), "ward run itself is in {outside:?}");
}

#[test]
fn every_run_is_bounded_by_default() {
    // No manifest, no [limits]: the session still has ceilings, stated by explain and on record.
    let e = Env::new();
    let x = e
        .command(&["manifest", "explain", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&x.stdout).unwrap();
    for (k, unit) in [
        ("pids", "max"),
        ("memory", "bytes"),
        ("tmp", "bytes"),
        ("shm", "bytes"),
        ("stage", "bytes"),
        ("stage_entries", "max"),
    ] {
        assert!(v["limits"][k][unit].as_u64().unwrap() > 0, "{k}: {v}");
        assert_eq!(v["limits"][k]["origin"], "default", "{k}");
    }
    let o = e.run("/bin/sh", "df -k /tmp | tail -1");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let size_kib: u64 = text(&o).split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(size_kib, 2 << 20, "/tmp is 2 GiB: {}", text(&o));
    let start = e
        .records()
        .into_iter()
        .find(|r| r["kind"] == "session.start")
        .unwrap();
    assert_eq!(start["detail"]["limits"]["pids"], 4096, "{start}");
    assert_eq!(start["detail"]["limits"]["tmp"], 2u64 << 30, "{start}");
}

#[test]
fn escape_via_filling_tmp() {
    let e = Env::new();
    let o = e.run_manifest(
        "files = [{ path = \"PROJ\", mode = \"direct\" }]\n[limits]\ntmp = \"8MiB\"\n",
        PY,
        "import time\nn = 0\ntry:\n  with open('/tmp/fill', 'wb') as f:\n    while True:\n      f.write(b'x' * 65536); f.flush(); n += 1\nexcept OSError as x:\n  print('STOPPED at', n * 64, 'KiB:', x, flush=True)\ntime.sleep(1)\n",
    );
    let out = text(&o);
    assert!(out.contains("No space left on device"), "{out}");
    let kib: u64 = out
        .split("STOPPED at ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib <= 8 << 10, "{kib} KiB written into an 8 MiB /tmp");
    e.assert_recorded();
    let recs = e.records();
    assert!(
        recs.iter().any(|r| r["kind"] == "sandbox.limit"
            && r["resource"] == "tmp"
            && r["decision"]["result"] == "deny"),
        "no sandbox.limit record for /tmp: {out}"
    );
}

#[test]
fn escape_via_filling_the_stage() {
    // A staged grant's edits live on the host's disk until review: past [limits] stage the
    // session ends, so the host's disk does not fill through it.
    let e = Env::new();
    let o = e.run_manifest(
        "files = [{ path = \"PROJ\" }]\n[limits]\nstage = \"4MiB\"\n",
        PY,
        "import os, time\nwith open('big', 'wb') as f:\n  for i in range(400):\n    f.write(os.urandom(1 << 20)); f.flush(); os.fsync(f.fileno()); time.sleep(0.02)\nprint('WROTE ALL', flush=True)\n",
    );
    let out = text(&o);
    assert!(!out.contains("WROTE ALL"), "{out}");
    assert_eq!(o.status.code(), Some(137), "the session was ended: {out}");
    assert!(out.contains("the stage reached its limit"), "{out}");
    let recs = e.records();
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "sandbox.limit" && r["resource"] == "stage"),
        "no sandbox.limit record for the stage: {out}"
    );
    // What stays staged is far from the 400 MiB the agent meant to write.
    let mut total = 0u64;
    let mut stack = vec![e.p("state/ward/sessions")];
    while let Some(d) = stack.pop() {
        for f in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = f.metadata().unwrap();
            if m.is_dir() {
                stack.push(f.path());
            } else {
                total += m.len();
            }
        }
    }
    assert!(
        total < 100 << 20,
        "{total} bytes staged under a 4 MiB limit"
    );
}

//! The agent's terminal relay (`ward run` on a terminal) beside util-linux `script`, a plain
//! pty relay, each run on a pseudo-terminal of the bench's that stands for the person's:
//! - output: an agent writes 100 MB of coloured text lines; the rate at which they reach the
//!   person's terminal (first byte to last, so start-up is not in it);
//! - keystrokes: a key typed on the person's terminal, echoed back by an agent in raw mode
//!   (`stty raw -echo; cat`); the round trip, p50 and p99, against the same with no relay.
//!
//! `WARD_BENCH_TERM_MB` sets the output size (default 100), `WARD_BENCH_ROUNDS` the rounds.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// `cmd` on a new pty of ours (its controlling terminal); the master.
fn on_pty(mut cmd: Command) -> (std::fs::File, std::process::Child) {
    let (mut m, mut s) = (0, 0);
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills both descriptors, owned right after.
    unsafe {
        assert_eq!(
            libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws),
            0
        );
    }
    // SAFETY: just opened, owned here alone.
    let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    // The person's terminal as a shell leaves it to a command: cooked.
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid + TIOCSCTTY between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(cmd);
    (master, child)
}

/// The bench's world, and how each side is started in it.
struct Setup(crate::world::World);

impl std::ops::Deref for Setup {
    type Target = crate::world::World;
    fn deref(&self) -> &crate::world::World {
        &self.0
    }
}

impl Setup {
    fn new() -> Setup {
        Setup(crate::world::World::new())
    }

    /// `sh -c SCRIPT` under `ward run` (the project folder granted direct: nothing to review).
    fn ward(&self, script: &str) -> Command {
        self.0.ward(&[
            "run", "--review", "keep", "--grant", ".:direct", "--", "/bin/sh", "-c", script,
        ])
    }

    /// `sh -c SCRIPT` under `script` (a plain pty relay).
    fn script(&self, script: &str) -> Command {
        let mut c = Command::new("script");
        c.args(["-q", "-e", "-c", script, "/dev/null"])
            .current_dir(&self.proj);
        c
    }
}

/// Read the master until `end` has been seen; bytes from the first `start` marker to `end`,
/// and the seconds between.
fn stream(master: &mut std::fs::File, start: &[u8], end: &[u8]) -> (u64, f64) {
    let mut buf = vec![0u8; 1 << 16];
    let mut seen_start: Option<Instant> = None;
    let mut bytes = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let piece = &buf[..n];
        if seen_start.is_none() {
            tail.extend_from_slice(piece);
            if let Some(i) = tail.windows(start.len()).position(|w| w == start) {
                seen_start = Some(Instant::now());
                bytes += (tail.len() - i) as u64;
                tail = tail[i..].to_vec();
            } else {
                let keep = tail.len().saturating_sub(start.len());
                tail.drain(..keep);
            }
        } else {
            bytes += n as u64;
            tail.extend_from_slice(piece);
        }
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
        if seen_start.is_some() && tail.windows(end.len()).any(|w| w == end) {
            break;
        }
    }
    let secs = seen_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
    (bytes, secs)
}

fn output_rate(s: &Setup, file: &std::path::Path, ward: bool) -> f64 {
    let cmd = format!(
        "printf 'START\\n'; cat {}; printf 'END-OF-STREAM\\n'",
        file.display()
    );
    let (mut master, mut child) = on_pty(if ward { s.ward(&cmd) } else { s.script(&cmd) });
    let (bytes, secs) = stream(&mut master, b"START", b"END-OF-STREAM");
    let _ = child.wait();
    bytes as f64 / secs.max(1e-9) / 1e6
}

/// Round trips of single keys through an agent echoing in raw mode; sorted, in microseconds.
fn keystrokes(mut cmd: Command, n: usize) -> Vec<f64> {
    cmd.stdin(Stdio::null());
    let (mut master, mut child) = on_pty(cmd);
    // Wait for the agent to be ready.
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let ready = Instant::now();
    while !seen.windows(5).any(|w| w == b"READY") && ready.elapsed() < Duration::from_secs(20) {
        let k = master.read(&mut buf).unwrap_or(0);
        if k == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..k]);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = b'a' + (i % 26) as u8;
        let t = Instant::now();
        master.write_all(&[key]).unwrap();
        loop {
            let k = master.read(&mut buf).unwrap_or(0);
            if k == 0 || buf[..k].contains(&key) {
                break;
            }
        }
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    master.write_all(b"\x04").ok();
    let _ = child.kill();
    let _ = child.wait();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn run() {
    if Command::new("script").arg("--version").output().is_err() {
        println!("terminal: util-linux `script` is missing (apt install bsdutils): not measured");
        return;
    }
    let s = Setup::new();
    let mb = env_num("WARD_BENCH_TERM_MB", 100);
    let rounds = env_num("WARD_BENCH_ROUNDS", 3);
    // Coloured log-like lines, as an agent's output is.
    let file = s.proj.join("out.txt");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut written = 0usize;
        let mut i = 0u64;
        while written < mb * 1_000_000 {
            let line = format!(
                "\x1b[32m{i:>8}\x1b[0m compiling crate-{} v0.{}.{} \x1b[1m(src/lib.rs)\x1b[0m ... ok\n",
                i % 997,
                i % 13,
                i % 7
            );
            f.write_all(line.as_bytes()).unwrap();
            written += line.len();
            i += 1;
        }
    }
    println!("terminal relay: {mb} MB of coloured lines written by the agent, on a pty (best of {rounds})");
    let mut best = (0.0f64, 0.0f64);
    for _ in 0..rounds {
        let sc = output_rate(&s, &file, false);
        let wd = output_rate(&s, &file, true);
        println!(
            "  round: script {sc:.0} MB/s, ward {wd:.0} MB/s, ward/script {:.2}x",
            wd / sc
        );
        best.0 = best.0.max(sc);
        best.1 = best.1.max(wd);
    }
    println!(
        "  output: script {:.0} MB/s  ward {:.0} MB/s  ward/script {:.2}x (target >= 0.90x)",
        best.0,
        best.1,
        best.1 / best.0
    );
    let n = env_num("WARD_BENCH_KEYS", 2000);
    let echo = "stty raw -echo; printf READY; exec cat";
    let direct = keystrokes(
        {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", echo]);
            c
        },
        n,
    );
    let sc = keystrokes(s.script(echo), n);
    let wd = keystrokes(s.ward(echo), n);
    println!("  keystroke round trip ({n} keys), microseconds:");
    for (name, v) in [("direct", &direct), ("script", &sc), ("ward", &wd)] {
        println!(
            "    {name:<7} p50 {:>7.1}  p99 {:>7.1}",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    println!(
        "  added by ward's relay: p50 {:.1} us, p99 {:.1} us (target <= 1000 us p99); script adds p99 {:.1} us",
        pct(&wd, 0.5) - pct(&direct, 0.5),
        pct(&wd, 0.99) - pct(&direct, 0.99),
        pct(&sc, 0.99) - pct(&direct, 0.99)
    );
}

//! The real agents under their profiles (issue 17's figures), each side by side with the same
//! command outside Ward in one run:
//! - `claude --version` (and codex, gemini), wall time: outside, and under `ward run` with the
//!   profile its name chooses (target <= 1.1x);
//! - start-up with a profile: `ward run --profile claude -- /bin/echo` to the first output,
//!   against bwrap's and a bare run's (target: overhead <= 1.3x bwrap's).
//!
//! The agents come from scripts/agents.sh ($WARD_AGENTS, else ~/.cache/ward-agents); one not
//! installed is skipped with a line saying so.

use crate::world::World;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn agents_dir() -> PathBuf {
    std::env::var_os("WARD_AGENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ward-agents")
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn run() {
    let world = World::new();
    let dir = agents_dir();
    let grant = format!("{}:ro", dir.display());
    let n = 15;
    println!("== agents: `AGENT --version`, wall time, median of {n} interleaved rounds ==");
    for name in ["claude", "codex", "gemini"] {
        let bin = dir.join(name).join("node_modules/.bin").join(name);
        if !bin.exists() {
            println!("{name:<7} not installed (bash scripts/agents.sh installs it): skipped");
            continue;
        }
        let mut outside = || {
            let mut c = Command::new(&bin);
            c.arg("--version").stdout(Stdio::null());
            c
        };
        let mut inside = || {
            let mut c = world.ward(&["run", "--grant", &grant, "--"]);
            c.arg(&bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        let m = crate::medians_interleaved(n, &mut [&mut outside, &mut inside], false);
        println!(
            "{name:<7} outside {:>8.1} ms   ward run (profile {name}) {:>8.1} ms   ratio {:.2}x   (target <= 1.1x)",
            ms(m[0]),
            ms(m[1]),
            m[1].as_secs_f64() / m[0].as_secs_f64()
        );
    }

    let n = 61;
    let proj = world.proj.clone();
    let mut bare = || {
        let mut c = Command::new("/bin/echo");
        c.arg("x");
        c
    };
    let mut bwrap = || {
        let mut c = crate::bwrap_command(&proj);
        c.args(["/bin/echo", "x"]);
        c
    };
    let mut plain = || {
        let mut c = world.ward(&["run", "--profile", "none", "--grant", ".:direct", "--"]);
        c.args(["/bin/echo", "x"]).stderr(Stdio::null());
        c
    };
    let mut profiled = || {
        let mut c = world.ward(&["run", "--profile", "claude", "--grant", ".:direct", "--"]);
        c.args(["/bin/echo", "x"]).stderr(Stdio::null());
        c
    };
    let m = crate::medians_interleaved(
        n,
        &mut [&mut bare, &mut bwrap, &mut plain, &mut profiled],
        true,
    );
    let over = |d: Duration| ms(d.saturating_sub(m[0]));
    println!(
        "== start-up with a profile, to the first output, median of {n} interleaved rounds =="
    );
    println!("bare /bin/echo                 {:>7.2} ms", ms(m[0]));
    println!(
        "bwrap                          {:>7.2} ms   overhead {:>6.2} ms",
        ms(m[1]),
        over(m[1])
    );
    println!(
        "ward run, no profile           {:>7.2} ms   overhead {:>6.2} ms",
        ms(m[2]),
        over(m[2])
    );
    println!(
        "ward run --profile claude      {:>7.2} ms   overhead {:>6.2} ms   {:.2}x bwrap's (target <= 1.3x)",
        ms(m[3]),
        over(m[3]),
        over(m[3]) / over(m[1])
    );
}

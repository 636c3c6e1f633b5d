//! `ward-launch`: enter the sandbox and run a command (what `ward run` will exec; also how the
//! tests drive the real thing). A single-threaded process by construction.
//!
//!   ward-launch --staging DIR [--ro PATH]... [--rw PATH]... [--cwd DIR] -- CMD [ARGS...]

use std::path::PathBuf;
use ward_sandbox::env::Scrub;
use ward_sandbox::launch::{run, Config};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut cfg = Config {
        grants: vec![],
        staging: PathBuf::new(),
        cwd: PathBuf::from("/"),
        argv: vec![],
        env: vec![],
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ro" => cfg
                .grants
                .push((args.next().unwrap_or_default().into(), false)),
            "--rw" => cfg
                .grants
                .push((args.next().unwrap_or_default().into(), true)),
            "--staging" => cfg.staging = args.next().unwrap_or_default().into(),
            "--cwd" => cfg.cwd = args.next().unwrap_or_default().into(),
            "--" => {
                cfg.argv = args.by_ref().collect();
                break;
            }
            other => {
                eprintln!("ward-launch: unknown argument {other}");
                std::process::exit(125);
            }
        }
    }
    let (kept, _) = Scrub::default().apply(std::env::vars_os());
    cfg.env = kept
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    match run(&cfg) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ward: {e}");
            std::process::exit(125);
        }
    }
}

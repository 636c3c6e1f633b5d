use crate::manifest_cmd::LoadArgs;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use ward_core::Manifest;

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward run --grant .:direct -- claude           # the agent may change this folder, nothing else
  ward run --grant ~/notes:ro -- python3 agent.py
  ward run -m ward.toml -- codex

Agents: `claude`, `codex` and `gemini` run under Ward's profile for them, chosen by the
program's name (or --profile NAME, or `profile = \"NAME\"` in ward.toml; `none` for none):
their API destinations allowed, their own key kept in the environment, their own sandbox
off (Ward is it), and a home of their own under Ward's state (homes/NAME), kept between
sessions, where they sign in once. `ward manifest explain --profile NAME` shows it all.
Any other agent gets a home of its own too (homes/default).
Grants: PATH (read-write, staged for review), PATH:ro, PATH:rw (staged), PATH:direct (writes
go straight to the folder). A grant is a folder or a single file (a staged file's change is
reviewed in its folder; nothing else of that folder is shown; a program that replaces a file
by renaming another onto it cannot: write it in place). Without -m or --grant: ./ward.toml,
else the current directory, staged. The agent sees its staged edits; the real folder changes only through `ward review`.
Inside a grant, keys, .env files, .git/hooks and the manifest's denies are covered, unix
sockets too; in a direct grant a repository's .git is read-only (its config and hooks would
run code on your machine the next time you use git there): commit from outside.
The agent runs in new user, mount, pid, ipc, uts, net and cgroup namespaces, on a read-only
root with only system directories and its grants, under Landlock and a seccomp filter, with
credentials scrubbed from its environment, and its own session, within the
manifest's [limits] (memory, pids, cpu; cgroups). A feature this machine lacks stops the run
(exit 125, naming it) unless the manifest lists it in allow_degraded.
Network: the sandbox has loopback only. Its one way out is Ward's egress proxy (HTTP_PROXY,
HTTPS_PROXY, ALL_PROXY are set to it): the manifest's [network] destinations, decided per
request, never loopback/private/metadata addresses unless named, uploads within [limits]
upload and the policies; `ask` destinations are asked about on the terminal. Programs that
ignore the proxy variables (Node 20's fetch, Go) resolve the names the manifest allows through
the sandbox's own resolver and /etc/hosts to addresses inside, where Ward carries them to the
real name with the same decisions; every other name is NXDOMAIN and recorded, and a direct
connection anywhere else has no route and is recorded.
A service on this machine's loopback that the manifest allows (`http://localhost:11434`, a
model server; `http://127.0.0.1:5432`, a database: any protocol) is reachable inside at the
same name, address and port, each connection decided and recorded; no other loopback port is.
At the end Ward says what it refused (with the manifest line that would allow it), what it
removed from the environment and what it hid (`ward audit tail --session ID --denied`).
The audit log records the session's start and end, every system call the filter denied, every
limit reached, and every connection, request and refusal.
Exit codes: the agent's own; 125 Ward could not set up the sandbox (the reason is printed);
126 the command is not executable; 127 not found.")]
pub struct RunArgs {
    #[arg(short, long)]
    manifest: Option<PathBuf>,
    /// PATH[:ro|:rw|:direct]; repeatable.
    #[arg(long = "grant", value_name = "PATH[:MODE]")]
    grants: Vec<String>,
    /// What becomes of staged changes when the agent ends: ask (on the terminal), keep them
    /// for `ward review`, apply them all, or discard them. auto: ask when run from a
    /// terminal, else keep (nothing is applied without a person).
    #[arg(long, value_enum, default_value = "auto")]
    review: ReviewArg,
    #[command(flatten)]
    load: LoadArgs,
    /// The agent's command line.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// What `ward run` is, in `ward --help` and `ward run --help`.
pub const ABOUT: &str = "Run an agent confined to its grants (kernel namespaces, Landlock, \
                         seccomp; network only through Ward's egress proxy)";

/// `ward run`'s arguments (`args[0]` is `run`), parsed with its own command alone: usage
/// errors and `--help` exit here as clap prints them.
pub fn parse(args: &[std::ffi::OsString]) -> RunArgs {
    use clap::FromArgMatches;
    let cmd = RunArgs::augment_args(clap::Command::new("run").bin_name("ward run").about(ABOUT));
    let m = cmd.get_matches_from(args);
    RunArgs::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

/// `ward run`: returns the agent's exit status, or 125 with the reason on stderr.
pub fn run(a: RunArgs) -> u8 {
    match run_inner(a) {
        Ok(code) => code,
        // Already said by the launcher.
        Err(e) if e.downcast_ref::<ward_supervisor::run::Reported>().is_some() => 125,
        // The agent's program is not inside: 127, as a shell says "not found".
        Err(e)
            if e.downcast_ref::<ward_supervisor::program::NotInside>()
                .is_some() =>
        {
            crate::report(&e);
            127
        }
        Err(e) => {
            crate::report(&e);
            125
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReviewArg {
    Auto,
    Ask,
    Keep,
    Apply,
    Discard,
}

/// Whether a person is at a terminal: stdin is one and `/dev/tty` opens.
pub fn on_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

fn run_inner(a: RunArgs) -> anyhow::Result<u8> {
    let mut opts = a.load.options();
    if opts.profile == ward_core::manifest::profile::Choice::Auto {
        if let Some(prog) = a.cmd.first() {
            opts.profile = ward_core::manifest::profile::Choice::Program(prog.clone());
        }
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut m = match (&a.manifest, a.grants.is_empty()) {
        (Some(p), _) => Manifest::load(p, &opts)?,
        (None, _) if Path::new("ward.toml").exists() => {
            Manifest::load(Path::new("ward.toml"), &opts)?
        }
        (None, false) => Manifest::empty(&opts)?,
        (None, true) => Manifest::builtin_default(&cwd, &opts)?,
    };
    for g in &a.grants {
        m.add_cli_grant(g, &cwd, &opts)?;
    }
    ward_supervisor::run::run(ward_supervisor::run::Request {
        manifest: m,
        cmd: a.cmd,
        cwd,
        review: match a.review {
            ReviewArg::Auto if on_terminal() => ward_supervisor::run::Review::Ask,
            ReviewArg::Auto | ReviewArg::Keep => ward_supervisor::run::Review::Keep,
            ReviewArg::Ask => ward_supervisor::run::Review::Ask,
            ReviewArg::Apply => ward_supervisor::run::Review::Apply,
            ReviewArg::Discard => ward_supervisor::run::Review::Discard,
        },
    })
}

//! `ward`: the command line. Parses arguments, calls the libraries, prints, and maps results
//! to exit codes (0 success, 1 "found something / check failed / denied", 2 usage or input
//! error). Everything testable lives in the `ward-*` crates.

mod allow_cmd;
mod audit_cmd;
mod manifest_cmd;
mod mapped;
mod policy_cmd;
mod proxy_cmd;
mod review_cmd;
mod run_cmd;
mod sanitize_cmd;
mod scan_cmd;
mod secret_cmd;
mod session_cmd;
mod token_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "A hardened runtime for desktop AI agents: scoped grants, policy as code, a tamper-evident audit log.",
    after_help = "\
Examples:
  ward run --grant .:direct -- claude      run an agent confined to this folder
  ward manifest check ward.toml            validate a manifest (errors name file:line:column)
  ward manifest explain -m ward.toml       what the agent may do, and where each grant came from
  ward policy eval -m examples/acme.toml --input @action.json
  ward policy test examples/policy-tests   run Rego test_ rules, like `opa test`
  ward audit verify                        check the audit log's hash chain, signatures and anchor
  ward audit tail -f                       follow the audit log
  ward scan .                              secrets and personal data in these files
  ward sanitize --report README.md         what in this file is hidden from a person

Exit codes: 0 success; 1 a check failed, a policy denied, or something was found; 2 usage or input error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an agent confined to its grants (kernel namespaces, Landlock, seccomp; network only
    /// through Ward's egress proxy).
    #[command(about = run_cmd::ABOUT)]
    Run(run_cmd::RunArgs),
    /// Allow a destination in the manifest's [network] (validated, with who and when, recorded)
    Allow(allow_cmd::AllowArgs),
    /// Run the egress proxy on its own: the manifest's destinations, nothing else, all on record.
    Proxy(proxy_cmd::ProxyArgs),
    /// Look for secrets and personal data in files (exit 1 when something is found).
    Scan(scan_cmd::ScanArgs),
    /// Remove (or reveal) what a person does not see but a model reads: invisible Unicode,
    /// escapes, comments, hidden HTML, image metadata.
    Sanitize(sanitize_cmd::SanitizeArgs),
    /// Check and explain permission manifests.
    #[command(subcommand)]
    Manifest(manifest_cmd::ManifestCmd),
    /// Check, evaluate and test Rego policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Verify, read and export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Show what an agent changed in its staged grants (list, diffs), or discard it.
    Review(review_cmd::ReviewArgs),
    /// Capability tokens: issue, inspect, attenuate, revoke.
    #[command(subcommand)]
    Token(token_cmd::TokenCmd),
    /// Secrets for [[credentials]]: the agent gets placeholders, the proxy puts them in.
    #[command(subcommand)]
    Secret(secret_cmd::SecretCmd),
    /// List the running sessions.
    #[command(after_help = "Examples:\n  ward status\n  ward status --json")]
    Status {
        #[arg(long)]
        json: bool,
    },
    /// End a session's whole process tree at once (the kill switch), recorded in the audit log.
    #[command(
        after_help = "Examples:\n  ward kill 3f9a1c0d2b4e5f60\n  ward kill --all\n\nExit codes: 0 killed (or --all with nothing running); 1 no such session."
    )]
    Kill {
        session: Option<String>,
        #[arg(long, conflicts_with = "session")]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Internal: the sandbox launcher `ward run` starts (a fresh single-threaded process).
    #[command(name = "__launch", hide = true)]
    Launch {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What a command reports back: the exit code it wants.
pub type Outcome = anyhow::Result<u8>;

/// Append one record to the audit log (opened, written durably, closed).
pub fn record(ev: ward_audit::Event) -> anyhow::Result<()> {
    use anyhow::Context;
    let paths = ward_audit::LogPaths::default_paths()?;
    let log = ward_audit::AuditLog::open(
        &paths.log,
        &ward_audit::KeyStore::new(&paths.keys),
        ward_audit::WriterOptions::default(),
    )
    .context("cannot open the audit log")?;
    log.close_with(ev)?;
    Ok(())
}

fn main() -> ExitCode {
    restore_sigpipe();
    // The launcher must stay single-threaded: it is dispatched before anything else runs.
    let mut raw = std::env::args();
    if raw.nth(1).as_deref() == Some("__launch") {
        let code = ward_sandbox::launch::main_with_args(raw);
        return ExitCode::from(u8::try_from(code).unwrap_or(125));
    }
    // `ward run` is on the path to the agent's start: its arguments are parsed with its own
    // command alone (the whole tree costs ~0.4 ms to build), with the same help and errors.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "run") {
        return ExitCode::from(run_cmd::run(run_cmd::parse(&args[1..])));
    }
    let cli = Cli::parse_from(args);
    let result = match cli.cmd {
        Cmd::Run(a) => return ExitCode::from(run_cmd::run(a)),
        Cmd::Launch { .. } => unreachable_launch(),
        Cmd::Review(a) => review_cmd::run(a),
        Cmd::Allow(a) => allow_cmd::run(a),
        Cmd::Proxy(a) => proxy_cmd::run(a),
        Cmd::Token(c) => token_cmd::run(c),
        Cmd::Secret(c) => secret_cmd::run(c),
        Cmd::Scan(a) => scan_cmd::run(a),
        Cmd::Sanitize(a) => sanitize_cmd::run(a),
        Cmd::Status { json } => session_cmd::status(json),
        Cmd::Kill { session, all, json } => session_cmd::kill(session, all, json),
        Cmd::Manifest(c) => manifest_cmd::run(c),
        Cmd::Policy(c) => policy_cmd::run(c),
        Cmd::Audit(c) => audit_cmd::run(c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::from(2)
        }
    }
}

/// Die quietly on a closed pipe (`ward audit tail | head`) like other Unix tools, instead of
/// panicking on the failed write.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn unreachable_launch() -> anyhow::Result<u8> {
    anyhow::bail!("__launch is handled before argument parsing")
}

/// Print an error as one line a person can act on: the context chain, outermost first.
/// Print an error as one line a person can act on. Errors quote paths, hosts and reasons an
/// agent may have chosen: the whole line goes through Ward's printer.
pub fn report(e: &anyhow::Error) {
    let msg = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    eprintln!("ward: {}", ward_core::inert::line(&msg));
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

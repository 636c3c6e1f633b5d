use crate::manifest_cmd::{load, LoadArgs};
use crate::{print_json, Outcome};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use ward_core::{Action, Effect};
use ward_policy::fix::fix_file_text;
use ward_policy::testing::run_tests;
use ward_policy::{check_source, Pdp, PolicyError};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Check that Rego files are valid Rego v1; `--fix` rewrites Rego v0 files to v1.
    #[command(after_help = "\
Examples:
  ward policy check examples/policy.rego
  ward policy check --fix old-policy.rego   # rewrites in place, keeps old-policy.rego.v0.bak

Ward runs Rego v1 only. A v0 file (rules without `if`, `in` without `import future.keywords`)
is refused with an explanation; --fix inserts `if`/`contains` and checks the result.")]
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        fix: bool,
        #[arg(long)]
        json: bool,
    },
    /// Decide on one action with a manifest's rules and policies, and say who decided.
    #[command(after_help = "\
Examples:
  ward policy eval -m examples/acme.toml --input '{\"kind\":\"net.upload\",\"dest\":\"uploads.acme.com\",\"size\":5242880}'
  ward policy eval -m ward.toml --input '{\"kind\":\"file.read\",\"resource\":\"/home/alice/.ssh/id_ed25519\"}'
  ward policy eval -m ward.toml --input @action.json --json

The input is an action: kind (file.read, file.write, file.delete, exec, net.connect,
net.upload, device.<class>, clipboard.read, screen.capture), resource, and for network
actions dest, port, scheme, size. `@FILE` reads it from a file, `-` from stdin.
Exit codes: 0 allow; 1 deny or ask; 2 bad input.")]
    Eval {
        #[arg(short, long)]
        manifest: Option<PathBuf>,
        #[arg(long, value_name = "JSON")]
        input: String,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        json: bool,
    },
    /// Run the `test_` rules of the Rego files under DIR, like `opa test`.
    #[command(after_help = "\
Examples:
  ward policy test examples/policy-tests
  ward policy test policies/ --run upload --json

Exit codes: 0 all passed; 1 a test failed or errored (or none were found).")]
    Test {
        dir: PathBuf,
        /// Only tests whose name contains this text.
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PolicyCmd) -> Outcome {
    match cmd {
        PolicyCmd::Check { files, fix, json } => check(files, fix, json),
        PolicyCmd::Eval {
            manifest,
            input,
            load: l,
            json,
        } => {
            let text = read_input(&input)?;
            let action: Action =
                serde_json::from_str(&text).context("the input is not an action")?;
            let m = load(manifest.as_deref(), &l.options())?;
            let mut pdp = Pdp::new(m)?;
            let d = pdp.decide(&action);
            if json {
                print_json(
                    &json!({"effect": d.effect, "by": d.by, "reason": d.reason, "action": action}),
                );
            } else {
                let what = if action.resource.is_empty() {
                    action.dest.clone().unwrap_or_default()
                } else {
                    action.resource.clone()
                };
                let size = action
                    .size
                    .map(|s| format!(" ({s} bytes)"))
                    .unwrap_or_default();
                println!("{:<5} {} {what}{size}", d.effect.as_str(), action.kind);
                println!("  by:     {}", d.by);
                println!("  reason: {}", d.reason);
            }
            Ok(if d.effect == Effect::Allow { 0 } else { 1 })
        }
        PolicyCmd::Test { dir, run, json } => {
            let report = run_tests(&dir, run.as_deref())?;
            if json {
                print_json(&serde_json::to_value(&report)?);
            } else {
                print!("{report}");
            }
            Ok(if report.passed() { 0 } else { 1 })
        }
    }
}

fn read_input(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
    } else {
        Ok(arg.to_string())
    }
}

fn check(files: Vec<PathBuf>, fix: bool, json: bool) -> Outcome {
    let mut results = Vec::new();
    let mut failed = false;
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let (status, message) = match check_source(&f, &text) {
            Ok(pkg) => ("ok", format!("Rego v1, package {pkg}")),
            Err(PolicyError::RegoV0 { .. }) if fix => match fix_file_text(&f, &text) {
                Ok(fixed) => {
                    let backup = f.with_extension("rego.v0.bak");
                    std::fs::write(&backup, &text)
                        .with_context(|| format!("cannot write {}", backup.display()))?;
                    write_atomic(&f, &fixed)?;
                    (
                        "fixed",
                        format!(
                            "rewritten to Rego v1 (the original is kept as {})",
                            backup.display()
                        ),
                    )
                }
                Err(e) => {
                    failed = true;
                    ("error", e.to_string())
                }
            },
            Err(e) => {
                failed = true;
                (
                    if matches!(e, PolicyError::RegoV0 { .. }) {
                        "v0"
                    } else {
                        "error"
                    },
                    e.to_string(),
                )
            }
        };
        if !json {
            match status {
                "ok" | "fixed" => println!("{status}: {}: {message}", f.display()),
                _ => eprintln!("ward: {message}"),
            }
        }
        results.push(json!({"file": f, "status": status, "message": message}));
    }
    if json {
        print_json(&json!(results));
    }
    Ok(if failed { 1 } else { 0 })
}

fn write_atomic(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("rego.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    let f = std::fs::File::open(&tmp)?;
    f.sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if path.as_os_str().is_empty() {
        bail!("empty path");
    }
    Ok(())
}

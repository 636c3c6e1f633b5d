use crate::{print_json, Outcome};
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ward_audit::{export, keys, read_records, verify_log, KeyStore, LogPaths};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every record's hash chain, every checkpoint signature, and the signed head.
    #[command(after_help = "\
Examples:
  ward audit verify                         # the default log, with the local key and anchor
  ward audit verify copy.jsonl --pubkey audit-signing.pub --json

Reports the first bad record (modified, inserted, deleted, reordered or truncated) with its
line and byte offset. Exit codes: 0 verified; 1 tampering found; 2 cannot read the log or key.
Default paths: $XDG_STATE_HOME/ward/audit/audit.jsonl and $XDG_CONFIG_HOME/ward/keys
(override with WARD_AUDIT_LOG and WARD_KEY_DIR).")]
    Verify {
        log: Option<PathBuf>,
        /// The Ed25519 public key file [default: audit-signing.pub in the key directory].
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the latest records; `-f` keeps printing new ones as they are written.
    #[command(after_help = "\
Examples:
  ward audit tail                 # the last 20 records
  ward audit tail -n 100 --json   # raw JSON lines, for jq
  ward audit tail -f              # follow, like tail -f
  ward audit tail --session 3f9a1c0d --denied   # what Ward refused in one session
  ward audit tail --kind net -n 50              # network records only

Filters apply before -n: the last N records that match. A destination that was allowed but
could not be reached (its name did not resolve) is a `net.failed` record, not a refusal.")]
    Tail {
        log: Option<PathBuf>,
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        json: bool,
        /// Only this session's records (its id, or the start of it).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Only refusals (records whose decision is deny).
        #[arg(long)]
        denied: bool,
        /// Only records of this kind or family (`net`, `net.connect`, `sandbox.denied`).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
    },
    /// Export the log for a SIEM: OCSF events (one JSON object per line) or the raw JSON lines.
    #[command(after_help = "\
Examples:
  ward audit export --format ocsf > ward-ocsf.jsonl
  ward audit export --format ocsf -o /var/log/ward-ocsf.jsonl
  ward audit export --format jsonl

OCSF events carry the hash chain in the record_integrity profile's `attestation` object
(fingerprint, prev_event, chain_uid, and on checkpoints the Ed25519 signature).")]
    Export {
        log: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: Format,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Ocsf,
    Jsonl,
}

fn paths(log: Option<PathBuf>) -> anyhow::Result<(PathBuf, KeyStore)> {
    let d = LogPaths::default_paths();
    let keys = match std::env::var_os("WARD_KEY_DIR") {
        Some(k) => KeyStore::new(k),
        None => KeyStore::new(d.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?.keys.clone()),
    };
    let log = match log {
        Some(l) => l,
        None => d?.log,
    };
    Ok((log, keys))
}

pub fn run(cmd: AuditCmd) -> Outcome {
    match cmd {
        AuditCmd::Verify { log, pubkey, json } => {
            let (log, keys) = paths(log)?;
            let vk = match pubkey {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    Some(keys::load_pub(&p, &text)?)
                }
                None => None,
            };
            if !log.exists() {
                anyhow::bail!(
                    "cannot read the audit log {}: it does not exist",
                    log.display()
                );
            }
            let r = verify_log(&log, &keys, vk)?;
            if json {
                print_json(&json!({"log": log, "ok": r.ok(), "report": r}));
            } else {
                for w in &r.warnings {
                    eprintln!("warning: {w}");
                }
                match &r.problem {
                    None => println!(
                        "ok: {}: {} records, {} checkpoints, signed through record {}{}",
                        log.display(),
                        r.records,
                        r.checkpoints,
                        r.signed,
                        if r.anchored { ", head anchored" } else { "" }
                    ),
                    Some(p) => println!(
                        "FAILED: {}: at line {} (byte {}): {}\n{} records before it verify.",
                        log.display(),
                        p.line,
                        p.offset,
                        p.message,
                        r.records.min(p.line.saturating_sub(1))
                    ),
                }
            }
            Ok(if r.ok() { 0 } else { 1 })
        }
        AuditCmd::Tail {
            log,
            lines,
            follow,
            json,
            session,
            denied,
            kind,
        } => {
            let (log, _) = paths(log)?;
            let filter = Filter {
                session,
                denied,
                kind,
            };
            tail(&log, lines, follow, json, &filter)
        }
        AuditCmd::Export {
            log,
            format,
            output,
        } => {
            let (log, _) = paths(log)?;
            let records = read_records(&log)?;
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            match format {
                Format::Ocsf => {
                    for ev in export::export_ocsf(&records) {
                        serde_json::to_writer(&mut out, &ev)?;
                        out.write_all(b"\n")?;
                    }
                }
                Format::Jsonl => {
                    for (_, r) in &records {
                        serde_json::to_writer(&mut out, r)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
            out.flush()?;
            Ok(0)
        }
    }
}

/// One record for a person: every field an agent could have chosen goes through Ward's
/// printer (a file name, a host, a request line, a reason quoting them).
fn human(r: &Value) -> String {
    use ward_core::inert::Inert;
    let seq = r["seq"].as_u64().unwrap_or(0);
    let ts = r["ts"].as_str().unwrap_or("");
    let ts = ts.get(..19).unwrap_or(ts);
    let kind = r["kind"].as_str().unwrap_or("?");
    let effect = r["decision"]["result"].as_str().unwrap_or("-");
    let what = r["resource"].as_str().or(r["dest"].as_str()).unwrap_or("");
    let (ts, effect, kind) = (Inert(ts), Inert(effect), Inert(kind));
    let mut line = format!("{seq:>7} {ts} {effect:<5} {kind:<16} {}", Inert(what));
    if let Some(reason) = r["decision"]["reason"].as_str() {
        line.push_str(&format!("  ({})", Inert(reason)));
    }
    if let Some(s) = r["session"].as_str() {
        line.push_str(&format!("  [session {}]", Inert(s)));
    }
    line
}

fn print_line(raw: &[u8], json: bool) -> anyhow::Result<()> {
    if json {
        let mut o = std::io::stdout().lock();
        o.write_all(raw)?;
        o.write_all(b"\n")?;
    } else {
        match serde_json::from_slice::<Value>(raw) {
            Ok(v) => println!("{}", human(&v)),
            Err(_) => println!("(unreadable record: {})", ward_core::inert::bytes(raw)),
        }
    }
    Ok(())
}

/// Which records `ward audit tail` prints.
struct Filter {
    session: Option<String>,
    denied: bool,
    kind: Option<String>,
}

impl Filter {
    fn keeps(&self, line: &[u8]) -> bool {
        if self.session.is_none() && !self.denied && self.kind.is_none() {
            return true;
        }
        let Ok(r) = serde_json::from_slice::<serde_json::Value>(line) else {
            // A line that is not a record is shown as it is only when nothing filters.
            return false;
        };
        let session = self.session.as_deref().is_none_or(|s| {
            r["session"]
                .as_str()
                .is_some_and(|id| !s.is_empty() && id.starts_with(s))
        });
        let kind = self.kind.as_deref().is_none_or(|k| {
            r["kind"]
                .as_str()
                .is_some_and(|rk| rk == k || rk.strip_prefix(k).is_some_and(|t| t.starts_with('.')))
        });
        let denied = !self.denied || r["decision"]["result"] == "deny";
        session && kind && denied
    }
}

fn tail(log: &Path, n: usize, follow: bool, json: bool, filter: &Filter) -> Outcome {
    let mut f = std::fs::File::open(log)
        .with_context(|| format!("cannot read the audit log {}", log.display()))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines: Vec<&[u8]> = data[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && filter.keeps(l))
        .collect();
    for l in &lines[lines.len().saturating_sub(n)..] {
        print_line(l, json)?;
    }
    if !follow {
        return Ok(0);
    }
    let mut pos = complete as u64;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(log)?.len();
        if len < pos {
            bail!("the audit log shrank while following it (truncated or replaced)");
        }
        if len == pos {
            continue;
        }
        f.seek(SeekFrom::Start(pos))?;
        let mut buf = Vec::new();
        (&mut f).take(len - pos).read_to_end(&mut buf)?;
        pos += buf.len() as u64;
        pending.extend_from_slice(&buf);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if filter.keeps(&line[..line.len() - 1]) {
                print_line(&line[..line.len() - 1], json)?;
            }
        }
    }
}

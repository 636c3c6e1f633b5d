//! `ward scan`: look for secrets and personal data in files.

use anyhow::{bail, Context};
use clap::Args;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use ward_scan::{Confidence, Finding, GrowingScan, RuleSet, Scanner, StreamScanner};

#[derive(Args)]
#[command(after_help = "\
Examples:
  ward scan .                           every file under this folder
  ward scan --json build/ > found.json  for scripts
  ward scan --min-confidence high src/  only findings a checksum or context confirms
  ward scan --rules my-rules.toml .     add your own rules (format: rules/README.md)

Ward's rules (over 300: cloud and SaaS credentials, AI provider keys, private keys, tokens,
connection strings, card numbers, IBANs, national identifiers) run where one of their keywords
occurs; each finding has the rule, file, line, a masked excerpt and a confidence (high: a
checksum held or a telling prefix; medium; low: shape only). Excerpts never show the secret.
Symbolic links are not followed. Nothing is sent anywhere.

Exit codes: 0 nothing found; 1 something found; 2 a file could not be read or bad arguments
(a file that could not be read was not scanned: the result is not \"clean\").")]
pub struct ScanArgs {
    /// Files or directories (recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// One JSON document: findings, files, bytes, rules, errors.
    #[arg(long)]
    json: bool,
    /// More rules (TOML, repeatable), added to Ward's own.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Use only the --rules files, not Ward's own.
    #[arg(long, requires = "rules")]
    no_builtin: bool,
    /// Report only findings at least this sure.
    #[arg(long, value_enum, default_value = "low")]
    min_confidence: Level,
    /// Threads (default: all cores).
    #[arg(short = 'j', long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Level {
    Low,
    Medium,
    High,
}

#[derive(serde::Serialize)]
struct Located {
    path: String,
    #[serde(flatten)]
    finding: Finding,
}

pub fn run(a: ScanArgs) -> crate::Outcome {
    let mut set = if a.no_builtin {
        RuleSet::default()
    } else {
        RuleSet::builtin()
    };
    for f in &a.rules {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read rules file {}", f.display()))?;
        set.add_toml(&f.display().to_string(), &text)?;
    }
    let scanner = Scanner::new(&set)?;
    let min = match a.min_confidence {
        Level::Low => Confidence::Low,
        Level::Medium => Confidence::Medium,
        Level::High => Confidence::High,
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in &a.paths {
        collect(p, &mut files, &mut errors);
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 256);
    if a.threads == Some(0) {
        bail!("-j must be at least 1");
    }
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Vec<Finding>)>> = Mutex::new(Vec::new());
    let read_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    quiet_panics_while_mapped();
    std::thread::scope(|s| {
        for _ in 0..threads.min(files.len().max(1)) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    match scan_file(&scanner, path, &mut buf) {
                        Ok((n, found)) => {
                            bytes.fetch_add(n, Ordering::Relaxed);
                            let found: Vec<Finding> =
                                found.into_iter().filter(|f| f.confidence >= min).collect();
                            if !found.is_empty() {
                                results
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push((i, found));
                            }
                        }
                        Err(e) => read_errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{}: {e}", path.display())),
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    errors.extend(read_errors.into_inner().unwrap_or_else(|e| e.into_inner()));
    let found: Vec<Located> = results
        .into_iter()
        .flat_map(|(i, fs)| {
            let path = files[i].display().to_string();
            fs.into_iter().map(move |finding| Located {
                path: path.clone(),
                finding,
            })
        })
        .collect();
    let bytes = bytes.into_inner();
    if a.json {
        let doc = serde_json::json!({
            "findings": found,
            "files": files.len(),
            "bytes": bytes,
            "rules": scanner.rule_count(),
            "errors": errors,
        });
        println!("{doc}");
    } else {
        for l in &found {
            let f = &l.finding;
            println!(
                "{}:{}: {} ({}, {}): {}",
                ward_core::inert::line(&l.path),
                f.line,
                f.rule,
                serde_json::to_value(f.confidence)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                f.description,
                f.excerpt
            );
        }
        for e in &errors {
            eprintln!("ward: cannot scan {}", ward_core::inert::line(e));
        }
        eprintln!(
            "ward: {} finding{} in {} file{} ({} bytes, {} rules){}",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            bytes,
            scanner.rule_count(),
            if errors.is_empty() {
                String::new()
            } else {
                format!("; {} not scanned", errors.len())
            }
        );
    }
    Ok(if !found.is_empty() {
        1
    } else if !errors.is_empty() {
        2
    } else {
        0
    })
}

/// Regular files under `p` (not following symbolic links below the named paths).
fn collect(p: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            errors.push(format!("{}: {e}", p.display()));
            return;
        }
    };
    if meta.is_file() {
        out.push(p.to_path_buf());
        return;
    }
    if !meta.is_dir() {
        return;
    }
    let mut stack = vec![p.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        let mut names: Vec<_> = entries.filter_map(Result::ok).collect();
        names.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in names {
            match e.file_type() {
                Ok(t) if t.is_file() => out.push(e.path()),
                Ok(t) if t.is_dir() => subdirs.push(e.path()),
                _ => {}
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
}

/// Files up to this size are read whole (into a buffer each thread reuses) and scanned at
/// once; bigger ones are streamed in 1 MiB reads.
const WHOLE: u64 = 64 << 20;

thread_local! {
    /// Set while a mapped file is scanned: a panic then is caught and the file read again, so
    /// the panic hook stays silent.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The panic hook, quiet for panics caught while a mapped file is scanned.
fn quiet_panics_while_mapped() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
}

/// Files from this size up are mapped rather than read (below it, mapping and unmapping
/// cost more than the copy they save).
const MAP_FROM: u64 = 256 << 10;

/// Whole files are read in pieces of this size, each searched for keywords right after its
/// read, while it is still in the CPU's cache (and the kernel copies into cached memory:
/// 1 MiB reads cost twice the system time of 128 KiB ones here).
const PIECE: usize = 128 << 10;

fn scan_file(
    scanner: &Scanner,
    path: &Path,
    buf: &mut Vec<u8>,
) -> std::io::Result<(usize, Vec<Finding>)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    // Big enough files are searched where the page cache holds them (no copy). A file that
    // changed size meanwhile (a lost page reads as zeros) is read again below, as it is now.
    if (MAP_FROM..=WHOLE).contains(&len) {
        if let Some(m) = crate::mapped::Mapped::map(&f, len as usize) {
            // A writer changing the file under the scan can make the regex engine panic (its
            // passes disagree): caught, quietly, and the file is read instead.
            QUIET.with(|q| q.set(true));
            let found =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scanner.scan(m.bytes())));
            QUIET.with(|q| q.set(false));
            let intact = !m.damaged();
            drop(m);
            if let Ok(found) = found {
                if intact && f.metadata()?.len() == len {
                    return Ok((len as usize, found));
                }
            }
        }
    }
    // `buf` keeps its length (and contents) between files: only its first `filled` bytes
    // are this file's; it is never zeroed again, only lengthened.
    let mut filled = 0;
    if len <= WHOLE {
        let want = len as usize + 1;
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let mut scan = GrowingScan::new(scanner);
        loop {
            if filled == buf.len() {
                buf.resize(filled + PIECE, 0);
            }
            let end = (filled + PIECE).min(buf.len());
            let n = match f.read(&mut buf[filled..end]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok((filled, scan.finish(&buf[..filled])));
            }
            filled += n;
            if filled as u64 > WHOLE {
                break;
            }
            scan.grew(&buf[..filled]);
        }
        // It grew while we read: what we have goes through the stream like the rest.
    }
    let mut stream = StreamScanner::new(scanner);
    let mut found = stream.push(&buf[..filled]);
    let mut piece = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        found.extend(stream.push(&piece[..n]));
    }
    let n = stream.offset();
    found.extend(stream.finish());
    Ok((n, found))
}

//! The scanner: `ward scan` vs ripgrep (and betterleaks, when installed) on a generated corpus,
//! 1 and 2 threads, in one run.
//!
//! The corpus (default 200 files of 1 MiB; `WARD_BENCH_SCAN_MB`) mixes code-like lines, some
//! of whose identifiers say token/key/secret/password (45%), prose (20%), JSON logs with UUIDs (15%),
//! SHA-256 lines (7%), `sha384-` integrity lines (7%) and config lines (6%), the mix the research
//! notes measured gitleaks' successor on; every rule's examples are planted once and the
//! counter-examples once, so the run also reports recall on the planted secrets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
    fn chars(&mut self, set: &[u8], n: usize) -> String {
        (0..n).map(|_| set[self.below(set.len())] as char).collect()
    }
}

const IDENTS: &[&str] = &[
    "keyboard",
    "monkey",
    "keychain",
    "api_version",
    "user_id",
    "request",
    "response",
    "buffer",
    "session",
    "config",
    "handler",
    "key_len",
    "retry",
    "cache_key",
    "context",
    "offset",
    "path",
    "reader",
    "writer",
    "status",
    "items",
    "limit",
    "parser",
    "index",
    "result",
];
/// Words the secret rules key on, kept to the density of the research corpus (~0.75 keyword
/// hits per KiB with the gitleaks rule set): one code line in 20, one prose line in 30.
const SECRETISH: &[&str] = &[
    "access_token",
    "api_key_name",
    "secret_store",
    "auth_header",
    "password_field",
    "tokenizer",
    "token_count",
    "secret_manager",
    "password_policy",
    "max_tokens",
];
const WORDS: &[&str] = &[
    "the",
    "agent",
    "reads",
    "files",
    "and",
    "writes",
    "a",
    "report",
    "about",
    "each",
    "change",
    "that",
    "was",
    "made",
    "to",
    "repository",
    "while",
    "tests",
    "run",
    "in",
    "parallel",
    "on",
    "machine",
    "with",
    "two",
    "cores",
    "review",
    "before",
    "merge",
    "policy",
    "network",
    "request",
    "user",
    "data",
    "model",
    "output",
    "service",
];
const SECRET_WORDS: &[&str] = &["key", "token", "secret", "password"];
const HEX: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn line(r: &mut Rng, out: &mut String) {
    let k = r.below(100);
    if k < 45 {
        let (mut a, b, c) = (r.pick(IDENTS), r.pick(IDENTS), r.pick(IDENTS));
        if r.below(20) == 0 {
            a = r.pick(SECRETISH);
        }
        match r.below(4) {
            0 => out.push_str(&format!("    let {a} = {b}.get(\"{c}\")?;\n")),
            1 => out.push_str(&format!(
                "    if {a}.len() > {} {{ return Err({b}); }}\n",
                r.below(999)
            )),
            2 => out.push_str(&format!("    self.{a} = {b}({c}, {});\n", r.below(99))),
            _ => out.push_str(&format!("    // {a}: see {b} for how {c} is handled\n")),
        }
    } else if k < 65 {
        let n = 8 + r.below(14);
        let mut s: Vec<&str> = (0..n).map(|_| r.pick(WORDS)).collect();
        if r.below(30) == 0 {
            let at = r.below(n);
            s[at] = r.pick(SECRET_WORDS);
        }
        out.push_str(&s.join(" "));
        out.push_str(".\n");
    } else if k < 80 {
        let u = format!(
            "{}-{}-{}-{}-{}",
            r.chars(HEX, 8),
            r.chars(HEX, 4),
            r.chars(HEX, 4),
            r.chars(HEX, 4),
            r.chars(HEX, 12)
        );
        out.push_str(&format!(
            "{{\"ts\":\"2026-11-25T10:{:02}:{:02}Z\",\"level\":\"info\",\"request_id\":\"{u}\",\"msg\":\"{} {}\"}}\n",
            r.below(60),
            r.below(60),
            r.pick(WORDS),
            r.pick(WORDS)
        ));
    } else if k < 87 {
        out.push_str(&format!(
            "{}  src/{}.rs\n",
            r.chars(HEX, 64),
            r.pick(IDENTS)
        ));
    } else if k < 94 {
        out.push_str(&format!(
            "      \"integrity\": \"sha384-{}\",\n",
            r.chars(B64, 64)
        ));
    } else {
        out.push_str(&format!(
            "{} = \"{}-{}\"\n",
            r.pick(IDENTS),
            r.pick(WORDS),
            r.below(9999)
        ));
    }
}

/// Writes the corpus; returns the planted (file index, rule) pairs.
fn corpus(dir: &Path, files: usize) -> Vec<(usize, String)> {
    let set = ward_scan::RuleSet::builtin();
    let mut plants: Vec<(String, String)> = Vec::new();
    for rule in set.rules() {
        for e in &rule.examples {
            plants.push((rule.id.clone(), e.clone()));
        }
        for e in &rule.counter_examples {
            plants.push((String::new(), e.clone()));
        }
    }
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut truth = Vec::new();
    let per = plants.len().div_ceil(files);
    let mut plants = plants.into_iter();
    for i in 0..files {
        let mut s = String::with_capacity(1 << 20);
        let mine: Vec<_> = plants.by_ref().take(per).collect();
        let mut at: Vec<usize> = mine.iter().map(|_| r.below(1 << 20)).collect();
        at.sort();
        let mut mine = mine.into_iter().zip(at).peekable();
        while s.len() < 1 << 20 {
            while let Some(((rule, text), _)) = mine.next_if(|(_, a)| *a <= s.len()) {
                s.push_str(&text);
                s.push('\n');
                if !rule.is_empty() {
                    truth.push((i, rule));
                }
            }
            line(&mut r, &mut s);
        }
        std::fs::write(dir.join(format!("f{i:04}.txt")), s).unwrap();
    }
    truth
}

fn timed(cmd: &mut Command) -> (f64, Vec<u8>) {
    let t = Instant::now();
    let out = cmd.stderr(Stdio::null()).output().unwrap();
    (t.elapsed().as_secs_f64(), out.stdout)
}

pub fn run() {
    let mb: usize = std::env::var("WARD_BENCH_SCAN_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ward = std::env::current_exe().unwrap().with_file_name("ward");
    assert!(
        ward.exists(),
        "build the ward binary first: cargo build --release -p ward -p ward-bench"
    );
    let tmp = tempfile::tempdir().unwrap();
    // WARD_BENCH_CORPUS=DIR keeps the corpus there (to look at or profile with).
    let dir = std::env::var_os("WARD_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("corpus"));
    std::fs::create_dir_all(&dir).unwrap();
    let truth = corpus(&dir, mb);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // The same patterns for ripgrep: every rule's regex, one per line.
    let set = ward_scan::RuleSet::builtin();
    let pats = tmp.path().join("patterns.txt");
    let mut f = std::fs::File::create(&pats).unwrap();
    for rule in set.rules() {
        writeln!(f, "{}", rule.regex).unwrap();
    }
    drop(f);
    // Warm the page cache.
    for e in std::fs::read_dir(&dir).unwrap() {
        let _ = std::fs::read(e.unwrap().path());
    }
    println!(
        "scan: corpus {} files, {:.0} MB, {} planted secrets, {} rules; best of 3 runs",
        mb,
        bytes as f64 / 1e6,
        truth.len(),
        set.len()
    );
    let rg = which("rg");
    let bl = std::env::var("BETTERLEAKS")
        .ok()
        .map(PathBuf::from)
        .or_else(|| which("betterleaks"));
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let mut ward_json = Vec::new();
    let best = |mk: &dyn Fn() -> Command| -> (f64, Vec<u8>) {
        let mut best = (f64::MAX, Vec::new());
        for _ in 0..3 {
            let (t, out) = timed(&mut mk());
            if t < best.0 {
                best = (t, out);
            }
        }
        best
    };
    let mbs = |t: f64| bytes as f64 / t / 1e6;
    {
        let mut per = Vec::new();
        for j in ["1", "2"] {
            let (t, out) = best(&|| {
                let mut c = Command::new(&ward);
                c.args(["scan", "--json", "-j", j]).arg(&dir);
                c
            });
            per.push(mbs(t));
            ward_json = out;
        }
        rows.push((format!("ward scan ({} rules)", set.len()), per[0], per[1]));
    }
    // ripgrep on the same regexes needs multiline mode (several rules match across line
    // ends, as the scanner does), which makes it slow: one run on the first 10 files. And
    // ripgrep searching for the rules' keywords only (fixed strings, case-insensitive): the
    // cost of a prefilter alone in ripgrep.
    if let Some(rg) = &rg {
        let kw = tmp.path().join("keywords.txt");
        let mut f = std::fs::File::create(&kw).unwrap();
        let mut seen = std::collections::HashSet::new();
        for rule in set.rules() {
            for k in &rule.keywords {
                if seen.insert(k.to_ascii_lowercase()) {
                    writeln!(f, "{k}").unwrap();
                }
            }
        }
        drop(f);
        let some: Vec<PathBuf> = (0..mb.min(10))
            .map(|i| dir.join(format!("f{i:04}.txt")))
            .collect();
        let some_bytes: u64 = some.iter().map(|p| p.metadata().unwrap().len()).sum();
        let mut per = Vec::new();
        for j in ["1", "2"] {
            let t = Instant::now();
            let out = Command::new(rg)
                .args(["-U", "--no-unicode", "-c", "-j", j, "-f"])
                .arg(&pats)
                .args(&some)
                .output()
                .unwrap();
            if out.status.code().is_none_or(|c| c > 1) {
                println!(
                    "scan: ripgrep rejects the rule set: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                per.clear();
                break;
            }
            per.push(some_bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
        if per.len() == 2 {
            rows.push((
                format!(
                    "ripgrep -U, the same {} regexes (first 10 files, 1 run)",
                    set.len()
                ),
                per[0],
                per[1],
            ));
        }
        let mut per = Vec::new();
        for j in ["1", "2"] {
            let (t, _) = best(&|| {
                let mut c = Command::new(rg);
                c.args(["-F", "-i", "-c", "-j", j, "-f"]).arg(&kw).arg(&dir);
                c
            });
            per.push(mbs(t));
        }
        rows.push((
            format!("ripgrep -F -i, the {} keywords only", seen.len()),
            per[0],
            per[1],
        ));
    } else {
        println!("scan: ripgrep not installed (apt-get install ripgrep): its rows are empty");
    }
    if let Some(bl) = &bl {
        let mut per = Vec::new();
        for j in ["1", "2"] {
            let (t, _) = best(&|| {
                let mut c = Command::new(bl);
                c.arg("fs")
                    .arg(&dir)
                    .args(["--no-banner", "--exit-code=0", "-l", "error", "-j", j, "-o"])
                    .arg(tmp.path().join("betterleaks.json"))
                    .env("GOMAXPROCS", j);
                c
            });
            per.push(mbs(t));
        }
        rows.push(("betterleaks (its own rules)".into(), per[0], per[1]));
    } else {
        println!("scan: betterleaks not found (set BETTERLEAKS=path): its row is empty");
    }
    // The engine alone: files in memory, no reads, no process start.
    {
        let scanner = ward_scan::Scanner::builtin();
        let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        // Threads live across the timed passes (as a proxy's do): the regexes' lazy DFA
        // caches are per thread and warm after the first pass, which is not timed.
        let pass = |threads: usize| -> f64 {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let barrier = std::sync::Barrier::new(threads + 1);
            let mut best = f64::MAX;
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..4 {
                            barrier.wait();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(f) = files.get(i) else { break };
                                std::hint::black_box(scanner.scan(f));
                            }
                            barrier.wait();
                        }
                    });
                }
                for round in 0..4 {
                    next.store(0, std::sync::atomic::Ordering::Relaxed);
                    let t = Instant::now();
                    barrier.wait();
                    barrier.wait();
                    if round > 0 {
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                }
            });
            best
        };
        let best = |j: usize| pass(j);
        rows.push((
            "ward-scan engine, files in memory".into(),
            mbs(best(1)),
            mbs(best(2)),
        ));
    }
    println!("| scanner | 1 thread MB/s | 2 threads MB/s | ward/this (1 thread) |");
    println!("|---|---|---|---|");
    let w1 = rows[0].1;
    let f = |v: f64| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.0}")
        }
    };
    for (name, a, b) in &rows {
        println!("| {name} | {} | {} | {:.1}x |", f(*a), f(*b), w1 / a);
    }
    sanitizer(&dir, bytes);
    // Recall on the planted secrets.
    let doc: serde_json::Value = serde_json::from_slice(&ward_json).unwrap();
    let found: std::collections::HashSet<(String, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let name = Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, f["rule"].as_str().unwrap().to_string())
        })
        .collect();
    let missed: Vec<_> = truth
        .iter()
        .filter(|(i, rule)| !found.contains(&(format!("f{i:04}.txt"), rule.clone())))
        .collect();
    println!(
        "recall on the planted secrets: {}/{} ({} findings in all); missed: {:?}",
        truth.len() - missed.len(),
        truth.len(),
        doc["findings"].as_array().unwrap().len(),
        missed.iter().take(10).collect::<Vec<_>>()
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The sanitizer on the same corpus as plain text (files in memory), next to a Perl one-liner
/// that strips the usual invisible ranges (what a careful user might do instead).
fn sanitizer(dir: &Path, bytes: u64) {
    use ward_scan::sanitize::{sanitize, Format};
    let files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    // Seconds for the fastest of 3 passes over `files`.
    let best_of_3 = |files: &[Vec<u8>]| {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            for f in files {
                std::hint::black_box(sanitize(f, Format::Text).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    };
    let ward = bytes as f64 / best_of_3(&files) / 1e6;
    // The same text with invisible characters sprinkled in (one per ~2 KiB): the slow path.
    let mixed: Vec<Vec<u8>> = files
        .iter()
        .map(|f| {
            let mut v = Vec::with_capacity(f.len() + f.len() / 512);
            for (i, c) in f.chunks(2048).enumerate() {
                v.extend_from_slice(c);
                v.extend_from_slice(if i % 2 == 0 {
                    "\u{200B}".as_bytes()
                } else {
                    "\u{E0041}".as_bytes()
                });
            }
            v
        })
        .collect();
    let mixed_bytes: usize = mixed.iter().map(|f| f.len()).sum();
    let best_mixed = best_of_3(&mixed);
    let perl = which("perl").map(|perl| {
        let paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let ok = Command::new(&perl)
                .args([
                    "-CSD",
                    "-pe",
                    r"s/[\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{2069}\x{FEFF}\x{E0000}-\x{E007F}\x{FE00}-\x{FE0F}]//g",
                ])
                .args(&paths)
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok);
            best = best.min(t.elapsed().as_secs_f64());
        }
        bytes as f64 / best / 1e6
    });
    println!("\n| sanitizer, plain text | MB/s (1 thread) | ward/this |");
    println!("|---|---|---|");
    println!("| ward sanitize engine, files in memory | {ward:.0} | 1.0x |");
    println!(
        "| ward, the same with an invisible character every 2 KiB | {:.0} | {:.2}x |",
        mixed_bytes as f64 / best_mixed / 1e6,
        ward / (mixed_bytes as f64 / best_mixed / 1e6)
    );
    match perl {
        Some(p) => println!(
            "| perl -CSD -pe 's/[invisible ranges]//g' | {p:.0} | {:.1}x |",
            ward / p
        ),
        None => println!("| perl (not installed) | - | - |"),
    }
}

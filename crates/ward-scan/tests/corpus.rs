//! The generated corpus in tests/data/secrets (scripts/gen-scan-corpus.py): every planted
//! secret found on its line (recall 100%), and the false-positive rate on the benign
//! look-alikes reported and under 2%.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::path::Path;
use ward_scan::Scanner;

fn data() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/secrets"
    ))
}

#[test]
fn recall_on_the_planted_corpus_is_total() {
    let scanner = Scanner::builtin();
    let expected = std::fs::read_to_string(data().join("planted/expected.tsv")).unwrap();
    let mut files = std::collections::HashMap::new();
    let (mut total, mut missed) = (0, Vec::new());
    for line in expected.lines().filter(|l| !l.starts_with('#')) {
        let mut f = line.split('\t');
        let file = f.next().unwrap();
        let first: usize = f.next().unwrap().parse().unwrap();
        let last: usize = f.next().unwrap().parse().unwrap();
        let rule = f.next().unwrap();
        let found = files.entry(file.to_string()).or_insert_with(|| {
            scanner.scan(&std::fs::read(data().join("planted").join(file)).unwrap())
        });
        total += 1;
        if !found
            .iter()
            .any(|x| x.rule == rule && (first..=last).contains(&x.line))
        {
            missed.push(format!("{file}:{first} {rule}"));
        }
    }
    println!("recall: {}/{total}", total - missed.len());
    assert!(total >= 342, "every rule planted: {total}");
    assert!(
        missed.is_empty(),
        "missed {}:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn false_positives_on_the_benign_look_alikes_stay_under_two_percent() {
    let scanner = Scanner::builtin();
    let (mut lines, mut flagged, mut report) = (0, 0, Vec::new());
    let mut names: Vec<_> = std::fs::read_dir(data().join("benign"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read(&path).unwrap();
        lines += text.iter().filter(|&&b| b == b'\n').count();
        let found = scanner.scan(&text);
        let mut at: Vec<usize> = found.iter().map(|f| f.line).collect();
        at.dedup();
        flagged += at.len();
        for f in found {
            report.push(format!(
                "{}:{} {} {}",
                path.display(),
                f.line,
                f.rule,
                f.excerpt
            ));
        }
    }
    let rate = flagged as f64 / lines as f64;
    println!(
        "false positives: {flagged} of {lines} benign lines ({:.2}%)\n{}",
        rate * 100.0,
        report.join("\n")
    );
    assert!(lines >= 1000);
    assert!(rate < 0.02, "{:.2}%:\n{}", rate * 100.0, report.join("\n"));
}

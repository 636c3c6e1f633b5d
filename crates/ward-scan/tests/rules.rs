//! Every rule finds its examples and none of its counter-examples (the rule files carry both).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use ward_scan::{RuleSet, Scanner};

#[test]
fn every_rule_finds_its_examples_and_not_its_look_alikes() {
    let set = RuleSet::builtin();
    let scanner = Scanner::new(&set).unwrap();
    scanner.compile_all().unwrap();
    let mut failures = Vec::new();
    for rule in set.rules() {
        if rule.examples.is_empty() || rule.counter_examples.is_empty() {
            failures.push(format!(
                "{}: needs an example and a counter-example",
                rule.id
            ));
        }
        // Each example alone, and as a line among others (the end of a line must not hide it).
        let framed: Vec<String> = rule
            .examples
            .iter()
            .flat_map(|e| [e.clone(), format!("first line\n{e}\nlast line\n")])
            .collect();
        for ex in &framed {
            let found = scanner.scan(ex.as_bytes());
            if !found.iter().any(|f| f.rule == rule.id) {
                failures.push(format!(
                    "{}: missed its example {ex:?} (found: {:?})",
                    rule.id,
                    found.iter().map(|f| &f.rule).collect::<Vec<_>>()
                ));
            }
        }
        for ex in &rule.counter_examples {
            if scanner
                .scan(ex.as_bytes())
                .iter()
                .any(|f| f.rule == rule.id)
            {
                failures.push(format!("{}: reported its counter-example {ex:?}", rule.id));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(set.len() >= 200, "only {} rules", set.len());
}

#[test]
fn escape_via_a_rejected_decoy_in_front_of_the_real_secret() {
    // The zero UUID fails the entropy check; the search must not resume past the space
    // that is the real key's leading delimiter.
    let scanner = Scanner::builtin();
    let text = b"heroku_api_key: 00000000-0000-0000-0000-000000000000 ca3d9afe-b67a-af5f-eca6-b04ae1f9797f\n";
    let found = scanner.scan(text);
    assert!(
        found.iter().any(|f| f.rule == "heroku-api-key"
            && &text[f.start..f.end] == b"ca3d9afe-b67a-af5f-eca6-b04ae1f9797f"),
        "{found:?}"
    );
}

#[test]
fn excerpts_never_show_a_secret_or_a_long_piece_of_one() {
    let scanner = Scanner::builtin();
    let text = b"creds AKIAQWERTYUIOPASDFGH:wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY end\n";
    for f in scanner.scan(text) {
        for piece in ["K7MDENG", "wJalrXUt", "QWERTYUIOP"] {
            assert!(!f.excerpt.contains(piece), "{}: {}", f.rule, f.excerpt);
        }
    }
}

//! `ward policy test DIR`: run Rego `test_` rules the way `opa test` does.

use crate::error::PolicyError;
use crate::rego::check_source;
use regorus::{Engine, Value};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Fail,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// `data.pkg.test_name`
    pub name: String,
    pub file: PathBuf,
    pub outcome: Outcome,
    #[serde(serialize_with = "ser_ns", rename = "duration_ns")]
    pub duration: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn ser_ns<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_nanos() as u64)
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub results: Vec<TestResult>,
}

impl Report {
    pub fn count(&self, o: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == o).count()
    }
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.count(Outcome::Pass) == self.results.len()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let word = match r.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Error => "ERROR",
            };
            writeln!(f, "{}: {word} ({:?})", r.name, r.duration)?;
            if let Some(d) = &r.detail {
                writeln!(f, "  {d}")?;
            }
        }
        writeln!(f, "{}", "-".repeat(80))?;
        let n = self.results.len();
        if n == 0 {
            return writeln!(f, "no tests found (rules named test_* in *.rego files)");
        }
        for (o, word) in [
            (Outcome::Pass, "PASS"),
            (Outcome::Fail, "FAIL"),
            (Outcome::Error, "ERROR"),
        ] {
            let c = self.count(o);
            if c > 0 || o == Outcome::Pass {
                writeln!(f, "{word}: {c}/{n}")?;
            }
        }
        Ok(())
    }
}

/// Every `.rego` file under `dir`, sorted, so runs are repeatable.
pub fn rego_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| PolicyError::Read {
            path: d.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| PolicyError::Read {
                path: d.clone(),
                source,
            })?;
            let p = e.path();
            let ft = e.file_type().map_err(|source| PolicyError::Read {
                path: p.clone(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "rego") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Load every policy under `dir` (v1 only) and evaluate each `test_` rule; `filter` keeps the
/// tests whose full name contains it.
pub fn run_tests(dir: &Path, filter: Option<&str>) -> Result<Report, PolicyError> {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    let mut tests: Vec<(String, PathBuf)> = Vec::new();
    let files = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        rego_files(dir)?
    };
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| PolicyError::Read {
            path: f.clone(),
            source,
        })?;
        check_source(&f, &text)?;
        let pkg = engine
            .add_policy(f.display().to_string(), text.clone())
            .map_err(|e| PolicyError::Parse {
                path: f.clone(),
                message: e.to_string(),
            })?;
        for name in test_rule_names(&text) {
            let full = format!("{pkg}.{name}");
            if !tests.iter().any(|(n, _)| *n == full) && filter.is_none_or(|s| full.contains(s)) {
                tests.push((full, f.clone()));
            }
        }
    }
    let mut results = Vec::new();
    for (name, file) in tests {
        let start = Instant::now();
        let v = engine.eval_rule(name.clone());
        let duration = start.elapsed();
        let (outcome, detail) = match v {
            Ok(Value::Bool(true)) => (Outcome::Pass, None),
            Ok(Value::Undefined) => (
                Outcome::Fail,
                Some("undefined (a condition in the test was false)".into()),
            ),
            Ok(other) => (
                Outcome::Fail,
                Some(format!(
                    "evaluated to {}",
                    other.to_json_str().unwrap_or_default()
                )),
            ),
            Err(e) => (
                Outcome::Error,
                Some(e.to_string().lines().next().unwrap_or("").to_string()),
            ),
        };
        results.push(TestResult {
            name,
            file,
            outcome,
            duration,
            detail,
        });
    }
    Ok(Report { results })
}

/// Names of rules that start with `test_` at the beginning of a line (where rule heads are).
fn test_rule_names(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if !l.starts_with("test_") {
            continue;
        }
        let name: String = l
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

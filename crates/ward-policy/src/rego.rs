//! Rego policies through regorus, in Rego v1 only, with v0 files recognised and explained.

use crate::error::PolicyError;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::RegoVM;
use regorus::{Engine, Value};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ward_core::{Action, By, Decision, Effect};

/// The longest a policy may run for one action before the action is denied.
pub const EVAL_TIME_LIMIT: Duration = Duration::from_millis(250);

/// A loaded policy file and the rule that answers for it.
pub struct RegoPolicy {
    engine: Engine,
    /// The rule compiled to regorus's bytecode VM (about 10x faster than the interpreter);
    /// `None` when the compiler does not support something in the policy.
    vm: Option<(Arc<Program>, RegoVM)>,
    pub path: PathBuf,
    pub rule: String,
    /// `policy:<path>#<rule>`, formatted once.
    by: By,
}

impl Clone for RegoPolicy {
    fn clone(&self) -> Self {
        RegoPolicy {
            engine: self.engine.clone(),
            vm: self.vm.as_ref().map(|(p, _)| (Arc::clone(p), new_vm(p))),
            path: self.path.clone(),
            rule: self.rule.clone(),
            by: self.by.clone(),
        }
    }
}

fn new_engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    engine.set_execution_timer_config(timer());
    engine
}

/// Parse `text` as Rego v1. A file that only parses as v0 gets [`PolicyError::RegoV0`].
/// Returns the package path (`data.agent.security`).
pub fn check_source(path: &Path, text: &str) -> Result<String, PolicyError> {
    let mut engine = new_engine();
    add_v1(&mut engine, path, text)
}

fn add_v1(engine: &mut Engine, path: &Path, text: &str) -> Result<String, PolicyError> {
    let name = path.display().to_string();
    match engine.add_policy(name.clone(), text.to_string()) {
        Ok(pkg) => Ok(pkg),
        Err(v1_err) => {
            let detail = v1_err.to_string();
            if parses_as_v0(&name, text) {
                Err(PolicyError::RegoV0 {
                    path: path.to_path_buf(),
                    detail: first_lines(&detail),
                })
            } else {
                Err(PolicyError::Parse {
                    path: path.to_path_buf(),
                    message: first_lines(&detail),
                })
            }
        }
    }
}

/// Does the text parse as v0, with the future keywords that v0 files commonly forget to import?
/// (The seed's policy uses `in` without the import, so it is valid in neither mode as written.)
pub fn parses_as_v0(name: &str, text: &str) -> bool {
    let mut engine = Engine::new();
    engine.set_rego_v0(true);
    engine
        .add_policy(name.to_string(), with_future_keywords(text))
        .is_ok()
}

/// `text` with `import future.keywords` added after its `package` line.
fn with_future_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if !done && line.trim_start().starts_with("package ") {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("import future.keywords\n");
            done = true;
        }
    }
    out
}

fn first_lines(s: &str) -> String {
    s.lines().take(6).collect::<Vec<_>>().join("\n")
}

impl RegoPolicy {
    /// Load the file and check that `rule` (e.g. `data.agent.security.allow_upload`) belongs to it.
    pub fn load(path: &Path, rule: &str) -> Result<RegoPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_source(path, &text, rule)
    }

    pub fn from_source(path: &Path, text: &str, rule: &str) -> Result<RegoPolicy, PolicyError> {
        let mut engine = new_engine();
        let pkg = add_v1(&mut engine, path, text)?;
        let defined = rule
            .strip_prefix(pkg.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|name| {
                let root = name.split('.').next().unwrap_or(name);
                engine
                    .has_declared_rule_rooted_at(&path.display().to_string(), root)
                    .unwrap_or(false)
            });
        if !defined {
            return Err(PolicyError::MissingRule {
                path: path.to_path_buf(),
                rule: rule.to_string(),
                packages: pkg,
            });
        }
        let vm = compile_vm(&mut engine, rule).map(|p| {
            let vm = new_vm(&p);
            (p, vm)
        });
        Ok(RegoPolicy {
            engine,
            vm,
            by: By::policy(path.display(), rule),
            path: path.to_path_buf(),
            rule: rule.to_string(),
        })
    }

    /// Evaluate the rule for `action`. Never fails: an error or an unexpected result is a deny
    /// that says why.
    pub fn decide(&mut self, action: &Action) -> Decision {
        let input = action_value(action);
        let by = self.by.clone();
        let result = match &mut self.vm {
            Some((_, vm)) => {
                vm.set_input(input);
                vm.execute().map_err(|e| e.to_string())
            }
            None => {
                self.engine.set_input(input);
                self.engine
                    .eval_rule(self.rule.clone())
                    .map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(v) => interpret(&v, &self.rule, by),
            Err(e) => Decision::new(
                Effect::Deny,
                by,
                format!("policy {} failed, so the action is denied: {e}", self.rule),
            ),
        }
    }

    /// Whether decisions run on the bytecode VM (else on the interpreter).
    pub fn compiled(&self) -> bool {
        self.vm.is_some()
    }

    /// Evaluate with the interpreter even when a VM program exists (to cross-check the two).
    pub fn decide_interpreted(&mut self, action: &Action) -> Decision {
        self.engine.set_input(action_value(action));
        match self.engine.eval_rule(self.rule.clone()) {
            Ok(v) => interpret(&v, &self.rule, self.by.clone()),
            Err(e) => Decision::new(
                Effect::Deny,
                self.by.clone(),
                format!("policy {} failed: {e}", self.rule),
            ),
        }
    }

    /// Evaluate the rule on a raw JSON input (for `ward policy eval`).
    pub fn eval_json(&mut self, input: &serde_json::Value) -> Decision {
        self.engine.set_input(Value::from(input.clone()));
        let by = self.by.clone();
        match self.engine.eval_rule(self.rule.clone()) {
            Ok(v) => interpret(&v, &self.rule, by),
            Err(e) => Decision::new(
                Effect::Deny,
                by,
                format!("policy {} failed: {e}", self.rule),
            ),
        }
    }
}

fn compile_vm(engine: &mut Engine, rule: &str) -> Option<Arc<Program>> {
    let entry: regorus::Rc<str> = rule.into();
    let policy = engine.compile_with_entrypoint(&entry).ok()?;
    Compiler::compile_from_policy(&policy, &[rule]).ok()
}

/// A VM for `program` with the same bounds as the interpreter: a time limit and an
/// instruction budget, past which the decision is a deny.
fn new_vm(program: &Arc<Program>) -> RegoVM {
    let mut vm = RegoVM::new();
    vm.load_program(Arc::clone(program));
    vm.set_max_instructions(MAX_INSTRUCTIONS);
    vm.set_execution_timer_config(Some(timer()));
    vm
}

/// Instructions one decision may execute on the VM.
pub const MAX_INSTRUCTIONS: usize = 50_000_000;

fn timer() -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit: EVAL_TIME_LIMIT,
        check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    }
}

/// How a rule's value becomes a decision: `true` allows and `false` denies; a string or an
/// object `{"effect": "allow|ask|deny", "reason": "..."}` says it outright; anything else,
/// including an undefined rule, denies.
fn interpret(v: &Value, rule: &str, by: By) -> Decision {
    match v {
        Value::Bool(true) => Decision::new(Effect::Allow, by, format!("{rule} is true")),
        Value::Bool(false) => Decision::new(Effect::Deny, by, format!("{rule} is false")),
        Value::Undefined => Decision::new(
            Effect::Deny,
            by,
            format!("{rule} is undefined for this input (give it a default)"),
        ),
        Value::String(s) => match s.parse::<Effect>() {
            Ok(effect) => Decision::new(effect, by, format!("{rule} is \"{s}\"")),
            Err(e) => Decision::new(Effect::Deny, by, format!("{rule} returned {e}")),
        },
        Value::Object(o) => {
            let field = |k: &str| o.get(&Value::from(k)).cloned();
            let effect = field("effect").or_else(|| field("decision"));
            let reason = field("reason")
                .and_then(|r| r.as_string().ok().map(|s| s.to_string()))
                .unwrap_or_else(|| format!("{rule} decided"));
            match effect
                .as_ref()
                .and_then(|e| e.as_string().ok())
                .map(|s| s.parse::<Effect>())
            {
                Some(Ok(effect)) => Decision::new(effect, by, reason),
                _ => Decision::new(
                    Effect::Deny,
                    by,
                    format!("{rule} returned an object without a valid `effect`"),
                ),
            }
        }
        other => Decision::new(
            Effect::Deny,
            by,
            format!(
                "{rule} returned {}, which is not a decision",
                other.to_json_str().unwrap_or_else(|_| "a value".into())
            ),
        ),
    }
}

/// The Rego input document for an action, built directly (no JSON text round trip).
pub fn action_value(a: &Action) -> Value {
    let mut m = BTreeMap::new();
    m.insert(Value::from("kind"), Value::from(a.kind.as_str()));
    if !a.resource.is_empty() {
        m.insert(Value::from("resource"), Value::from(a.resource.as_str()));
    }
    if let Some(d) = &a.dest {
        m.insert(Value::from("dest"), Value::from(d.as_str()));
    }
    if let Some(p) = a.port {
        m.insert(Value::from("port"), Value::from(u64::from(p)));
    }
    if let Some(s) = &a.scheme {
        m.insert(Value::from("scheme"), Value::from(s.as_str()));
    }
    if let Some(s) = a.size {
        m.insert(Value::from("size"), Value::from(s));
    }
    if let Some(ag) = &a.agent {
        m.insert(Value::from("agent"), Value::from(ag.as_str()));
    }
    Value::from(m)
}

#[cfg(test)]
mod tests;

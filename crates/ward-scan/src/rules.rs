//! The rule format: TOML files of `[[rule]]` tables (see `rules/README.md`).

use serde::Deserialize;

use crate::engine::Confidence;
use crate::validate::Validator;

/// What a rule finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A credential: whoever holds it can act as someone.
    Secret,
    /// Personal data: identifies or concerns a person.
    Pii,
}

/// One rule, as written in a rules file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique, lower-case, `[a-z0-9-]`.
    pub id: String,
    pub description: String,
    #[serde(default = "secret")]
    pub kind: Kind,
    /// At least one of these (ASCII case-insensitive) must occur for the rule to run; where
    /// one occurs, the regex runs in a window around it.
    pub keywords: Vec<String>,
    /// An RE2-style regex, compiled in ASCII mode (`\w`, `\d`, `\s`, `\b` are ASCII).
    pub regex: String,
    /// The capture group that is the secret; default 1 when the regex has a group, else 0.
    pub group: Option<usize>,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub entropy: Option<f64>,
    pub validator: Option<Validator>,
    #[serde(default)]
    pub confidence: Confidence,
    /// Regexes (ASCII mode) on the secret: a secret matching one is not a finding.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Substrings (ASCII case-insensitive) that make a secret a placeholder, not a finding.
    #[serde(default)]
    pub stopwords: Vec<String>,
    /// Words that, near the match (same window), raise confidence by one step.
    #[serde(default)]
    pub context: Vec<String>,
    /// Without a context word nearby the match is not a finding.
    #[serde(default)]
    pub context_required: bool,
    /// Keywords are context, not part of the match (a service's name near a value with no
    /// telling shape): the regex runs this many bytes around the keyword, on the keyword's
    /// line (see `multiline`). A keyword inside a longer word (`ibm` in `Qibmf`) does not count.
    pub window: Option<usize>,
    /// With `window`: the value may be on another line than the keyword.
    #[serde(default)]
    pub multiline: bool,
    /// Keywords are part of the match (no `window`): how many bytes of a match may come before
    /// the keyword. `0`: every match starts where a keyword starts, so the regex runs anchored
    /// there and stops as soon as it cannot match (the fast path). Default: the regex's
    /// longest match.
    pub before: Option<usize>,
    /// A catch-all rule: dropped where a specific rule found the same bytes.
    #[serde(default)]
    pub generic: bool,
    /// Where this credential is meant to go (`api.github.com`, `*.github.com`): sent to one
    /// of these hosts it is the credential in use, not a leak. Empty: nowhere in particular.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Texts the rule must find something in (checked by the test suite).
    #[serde(default)]
    pub examples: Vec<String>,
    /// Look-alikes the rule must not report (checked by the test suite).
    #[serde(default)]
    pub counter_examples: Vec<String>,
}

fn secret() -> Kind {
    Kind::Secret
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// What is wrong with a rules file or rule.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("rule {id}: {message}")]
    Invalid { id: String, message: String },
    #[error("rule {id}: defined twice ({first} and {second})")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
}

/// Rules, with the file each came from.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<(Rule, String)>,
    /// How many of the first rules are Ward's own (compiled on first use; the test suite
    /// compiles them all).
    pub(crate) builtin: usize,
}

/// The rule files built into Ward (repository `rules/`).
const BUILTIN: &[(&str, &str)] = &[
    (
        "rules/secrets.toml",
        include_str!("../../../rules/secrets.toml"),
    ),
    (
        "rules/cloud.toml",
        include_str!("../../../rules/cloud.toml"),
    ),
    (
        "rules/services.toml",
        include_str!("../../../rules/services.toml"),
    ),
    ("rules/pii.toml", include_str!("../../../rules/pii.toml")),
];

/// Longest keyword list, regex and window a rule may have (untrusted rule files).
const MAX_KEYWORDS: usize = 64;
const MAX_REGEX: usize = 4096;
pub(crate) const MAX_WINDOW: usize = 64 << 10;

impl RuleSet {
    /// Ward's own rules.
    pub fn builtin() -> RuleSet {
        let mut set = RuleSet::default();
        for (name, text) in BUILTIN {
            // The built-in files are checked by the test suite; a failure here is a build bug.
            #[allow(clippy::expect_used)] // Ward's own rules; see above
            set.add_toml(name, text).expect("built-in rules parse");
        }
        set.builtin = set.rules.len();
        set
    }

    /// Add the rules of one TOML file; `name` says where it came from in errors.
    pub fn add_toml(&mut self, name: &str, text: &str) -> Result<(), RuleError> {
        let file: File = toml::from_str(text).map_err(|e| RuleError::Syntax {
            source_name: name.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        for rule in file.rule {
            check(&rule)?;
            if let Some((_, first)) = self.rules.iter().find(|(r, _)| r.id == rule.id) {
                return Err(RuleError::Duplicate {
                    id: rule.id,
                    first: first.clone(),
                    second: name.to_string(),
                });
            }
            self.rules.push((rule, name.to_string()));
        }
        Ok(())
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|(r, _)| r)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn check(r: &Rule) -> Result<(), RuleError> {
    let bad = |message: String| RuleError::Invalid {
        id: r.id.clone(),
        message,
    };
    if r.id.is_empty()
        || r.id.len() > 80
        || !r
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("id must be 1-80 characters of a-z, 0-9 and -".into()));
    }
    if r.keywords.is_empty() {
        return Err(bad(
            "needs at least one keyword (the scanner only runs a rule where one occurs)".into(),
        ));
    }
    if r.keywords.len() > MAX_KEYWORDS {
        return Err(bad(format!("more than {MAX_KEYWORDS} keywords")));
    }
    for k in &r.keywords {
        if k.is_empty() || k.len() > 64 || !k.is_ascii() {
            return Err(bad(format!("keyword {k:?} must be 1-64 ASCII characters")));
        }
    }
    if r.regex.len() > MAX_REGEX {
        return Err(bad(format!("regex longer than {MAX_REGEX} bytes")));
    }
    if let Some(w) = r.window {
        if w == 0 || w > MAX_WINDOW {
            return Err(bad(format!("window must be 1-{MAX_WINDOW} bytes")));
        }
    }
    if let Some(e) = r.entropy {
        if !(0.0..=8.0).contains(&e) {
            return Err(bad("entropy must be between 0 and 8 bits per byte".into()));
        }
    }
    if r.window.is_some() && r.before.is_some() {
        return Err(bad(
            "before is for keywords inside the match, window for keywords beside it: not both"
                .into(),
        ));
    }
    if r.multiline && r.window.is_none() {
        return Err(bad("multiline needs window".into()));
    }
    if r.before.is_some_and(|b| b > MAX_WINDOW) {
        return Err(bad(format!("before must be at most {MAX_WINDOW} bytes")));
    }
    for h in &r.hosts {
        let name = h.strip_prefix("*.").unwrap_or(h);
        let ok = !name.is_empty()
            && h.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !ok {
            return Err(bad(format!(
                "host {h:?} must be a lower-case DNS name, optionally starting with `*.`"
            )));
        }
    }
    if r.context_required && r.context.is_empty() {
        return Err(bad("context_required without context words".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_load() {
        let set = RuleSet::builtin();
        assert!(set.len() >= 200, "{} rules", set.len());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let mut s = RuleSet::default();
        let e = s.add_toml("x.toml", "[[rule]]\nid = 3").unwrap_err();
        assert!(e.to_string().starts_with("x.toml: "), "{e}");
        let e = s
            .add_toml(
                "x.toml",
                "[[rule]]\nid = \"a\"\ndescription = \"d\"\nkeywords = []\nregex = \"a\"",
            )
            .unwrap_err();
        assert!(e.to_string().contains("at least one keyword"), "{e}");
        let e = s
            .add_toml(
                "x.toml",
                "[[rule]]\nid = \"a\"\ndescription = \"d\"\nkeywords = [\"ab\"]\nregex = \"a\"\nsurprise = 1",
            )
            .unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");
        let one = "[[rule]]\nid = \"a\"\ndescription = \"d\"\nkeywords = [\"ab\"]\nregex = \"a\"";
        s.add_toml("x.toml", one).unwrap();
        let e = s.add_toml("y.toml", one).unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
    }
}

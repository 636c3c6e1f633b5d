//! [`Pdp`]: the manifest rules and the bound Rego policies behind one `decide` call.

use crate::error::PolicyError;
use crate::rego::RegoPolicy;
use crate::rules::{normalized, CompiledManifest, Strictest};
use ward_core::action::KindPattern;
use ward_core::{Action, By, Decision, Effect, Manifest};

/// The policy decision point for one manifest. Load once (Rego compiles here), decide per
/// action. Clone it to decide on several threads.
#[derive(Clone)]
pub struct Pdp {
    manifest: Manifest,
    compiled: std::sync::Arc<CompiledManifest>,
    policies: Vec<(Vec<KindPattern>, RegoPolicy)>,
}

impl Pdp {
    pub fn new(manifest: Manifest) -> Result<Pdp, PolicyError> {
        let policies = manifest
            .policies
            .iter()
            .map(|p| Ok((p.actions.clone(), RegoPolicy::load(&p.path, &p.rule)?)))
            .collect::<Result<_, PolicyError>>()?;
        Ok(Pdp {
            compiled: std::sync::Arc::new(CompiledManifest::new(&manifest)),
            manifest,
            policies,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The grants of single files that a mandatory deny or a rule covers (a `.env` granted
    /// by name): refused by `ward manifest check` and `ward run` alike, with the decision.
    pub fn denied_file_grants(&mut self) -> Vec<(std::path::PathBuf, Decision)> {
        let files: Vec<std::path::PathBuf> = self
            .manifest
            .files
            .iter()
            .filter(|g| g.path.is_file())
            .map(|g| g.path.clone())
            .collect();
        files
            .into_iter()
            .filter_map(|p| {
                let d = self.decide(&Action::new(
                    ward_core::ActionKind::FileRead,
                    p.to_string_lossy(),
                ));
                (d.effect == Effect::Deny).then_some((p, d))
            })
            .collect()
    }

    /// Decide on `action`: the strictest of what the manifest and every policy bound to its
    /// kind say; deny when none of them speaks.
    pub fn decide(&mut self, action: &Action) -> Decision {
        let action = &*normalized(action);
        let mut best = Strictest::default();
        if let Some(d) = self.compiled.decide(action) {
            best.offer(d);
        }
        // A manifest deny is final: no need to run Rego.
        if best.0.as_ref().is_some_and(|d| d.effect == Effect::Deny) {
            return best.0.unwrap_or_else(default_deny_for(action));
        }
        for (kinds, policy) in &mut self.policies {
            if kinds.iter().any(|k| k.matches(&action.kind)) {
                best.offer(policy.decide(action));
            }
        }
        best.0.unwrap_or_else(default_deny_for(action))
    }
}

/// Why a grant of a single file is refused: a deny covers the file itself. `ward manifest
/// check` and `ward run` say the same.
pub fn file_grant_refusal(p: &std::path::Path, d: &Decision) -> String {
    format!(
        "the grant {} is a file that is always denied ({}; {}): leave it out",
        ward_core::inert::path(p),
        d.reason,
        d.by
    )
}

fn default_deny_for(a: &Action) -> impl FnOnce() -> Decision + '_ {
    move || {
        Decision::new(
            Effect::Deny,
            By::default_rule(),
            format!(
                "nothing in the manifest grants {} {}",
                a.kind,
                if a.resource.is_empty() {
                    a.dest.as_deref().unwrap_or("")
                } else {
                    &a.resource
                }
            ),
        )
    }
}

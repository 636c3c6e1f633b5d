//! Finds secrets (API keys, tokens, private keys, connection strings) and personal data (card
//! numbers, IBANs, national identifiers, e-mail addresses) in bytes about to leave the machine.
//!
//! Rules are data ([`RuleSet`], TOML in the repository's `rules/`); the built-in set is
//! [`RuleSet::builtin`]. A [`Scanner`] compiles them once: a search for every
//! rule's keywords (a bucketed shift-or, [`prefilter`]) finds candidate places, and only there, in a window as wide as the rule's
//! longest match, does the rule's ASCII-mode regex run; entropy, allowlists, stop words, context
//! words and validators (checksums, Luhn, IBAN) then decide. [`StreamScanner`] does the same on
//! data that arrives in pieces (a request body), holding back just enough to see across piece
//! boundaries.
//!
//! [`sanitize`] is the other half: content a person does not see but a model reads (invisible
//! Unicode, terminal escapes, comments, CSS-hidden HTML, SVG and image metadata), removed or
//! revealed before a file reaches the model, with an advisory injection score.
//!
//! Not here: deciding what to do with a finding (that is policy).

pub mod decode;
mod engine;
mod prefilter;
mod rules;
pub mod sanitize;
mod stream;
mod validate;

pub use engine::{Confidence, Finding, GrowingScan, Scanner};
pub use rules::{Kind, Rule, RuleError, RuleSet};
pub use stream::StreamScanner;
pub use validate::{base62_checksum, entropy, Validator};

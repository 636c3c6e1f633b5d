//! Finds secrets (API keys, tokens, private keys, connection strings) and personal data (card
//! numbers, IBANs, national identifiers, e-mail addresses) in bytes about to leave the machine.
//!
//! Rules are data ([`RuleSet`], TOML in the repository's `rules/`); the built-in set is
//! [`RuleSet::builtin`]. A [`Scanner`] compiles them once: an Aho-Corasick automaton over every
//! rule's keywords finds candidate places, and only there, in a window as wide as the rule's
//! longest match, does the rule's ASCII-mode regex run; entropy, allowlists, stop words, context
//! words and validators (checksums, Luhn, IBAN) then decide. [`StreamScanner`] does the same on
//! data that arrives in pieces (a request body), holding back just enough to see across piece
//! boundaries.
//!
//! Not here: deciding what to do with a finding (that is policy), or cleaning text for the
//! model (the sanitizer).

mod engine;
mod rules;
mod stream;
mod validate;

pub use engine::{Confidence, Finding, Scanner};
pub use rules::{Kind, Rule, RuleError, RuleSet};
pub use stream::StreamScanner;
pub use validate::{base62_checksum, entropy, Validator};

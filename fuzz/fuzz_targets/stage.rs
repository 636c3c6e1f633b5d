//! What `ward review` reads that others could have written: a commit journal (resumed after a
//! crash) and the agent's text (diffed). No panics; a journal is accepted only with relative,
//! `..`-free paths.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((stage, ops)) = ward_stage::apply::parse_journal(text) {
        assert!(stage.grant.is_absolute());
        for op in &ops {
            let p = op.path();
            assert!(!p.is_absolute());
            assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
        }
    }
    let mid = text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap_or(0);
    let (old, new) = text.split_at(mid);
    let d = ward_stage::unified("a/x", "b/x", old, new, Some((0o644, 0o755)), false);
    assert!(d.starts_with("--- a/x\n+++ b/x\n"));
});

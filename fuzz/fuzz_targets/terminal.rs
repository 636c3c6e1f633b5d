//! What an agent writes to its terminal, through the relay's filter, and names and text an
//! agent chose, through Ward's printer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_consent::filter::Filter;

fuzz_target!(|data: &[u8]| {
    // Whole, and cut at every byte: the same output (nothing depends on how reads fall).
    let mut whole = Vec::new();
    Filter::new().feed(data, &mut whole);
    let mut f = Filter::new();
    let mut pieces = Vec::new();
    for b in data {
        f.feed(std::slice::from_ref(b), &mut pieces);
    }
    assert_eq!(whole, pieces);
    // No string sequence, answer-back request or C1 control ever passes.
    for w in whole.windows(2) {
        assert!(
            !(w[0] == 0x1b && matches!(w[1], b']' | b'P' | b'_' | b'^' | b'X')),
            "{whole:?}"
        );
        assert!(!(w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1])), "{whole:?}");
        // No DEL or upper-half byte right after ESC, and no encoding switch.
        assert!(!(w[0] == 0x1b && (w[1] == 0x7f || w[1] >= 0x80 || w[1] == b'%')), "{whole:?}");
    }
    assert!(!whole.contains(&0x05));
    // The printer leaves nothing live, whatever the input.
    let shown = ward_core::inert::bytes(data);
    assert!(ward_core::inert::is_inert(&shown, false), "{shown:?}");
    if let Ok(t) = std::str::from_utf8(data) {
        assert!(ward_core::inert::is_inert(&ward_core::inert::text(t), true));
    }
});

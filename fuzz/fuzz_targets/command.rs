//! Command lines an agent asked to run, through the canonicaliser exec rules see: shell strings
//! and wrappers never panic, stay bounded, and every argument is made text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ward_core::command::{arg_text, inner_commands, shell_commands};

fuzz_target!(|data: &[u8]| {
    let text = arg_text(data);
    if std::str::from_utf8(data).is_ok() {
        assert_eq!(text.as_bytes(), data);
    }
    let cmds = shell_commands(&text);
    assert!(cmds.len() <= 64);
    assert!(cmds.iter().all(|c| !c.is_empty()));
    // The same bytes as an argument vector (split at NUL), with `sh -c` in front.
    let mut argv: Vec<String> = data.split(|&b| b == 0).map(arg_text).collect();
    assert!(inner_commands(&argv).len() <= 64);
    argv.splice(0..0, ["sh".to_string(), "-c".to_string()]);
    assert!(inner_commands(&argv).len() <= 64);
});

//! Commands as Ward judges them: one canonical form for a command line an agent asked to run,
//! and the commands that wrappers and shells run on its behalf (`sh -c`, `env`, `nohup`,
//! `timeout`, `xargs`, ...), so that rules and questions see `curl` in `sh -c 'cd x && curl …'`.
//! Pure functions; the sandbox reads the arguments, the broker decides on them.

/// An argument as bytes, made text: valid UTF-8 stays as it is; every byte that is not is
/// written `\xNN` (so two different byte strings never look the same).
pub fn arg_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Programs that run the rest of their command line as a command, and how many of their own
/// arguments come first (options are skipped by their leading `-`).
fn wrapper(name: &str) -> Option<(Wrapper, &'static [&'static str])> {
    // The dynamic loader runs the program it is given (`ld-linux-x86-64.so.2 /usr/bin/curl`).
    if name.starts_with("ld-linux") || name.starts_with("ld-musl") || name == "ld.so" {
        return Some((
            Wrapper::Skip(0),
            &[
                "--library-path",
                "--preload",
                "--argv0",
                "--audit",
                "--glibc-hwcaps-prepend",
                "--glibc-hwcaps-mask",
            ],
        ));
    }
    Some(match name {
        "env" => (
            Wrapper::Env,
            &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"],
        ),
        "nohup" | "setsid" | "time" | "command" | "exec" | "builtin" | "unbuffer" => {
            (Wrapper::Skip(0), &[])
        }
        "nice" => (Wrapper::Skip(0), &["-n", "--adjustment"]),
        "ionice" => (
            Wrapper::Skip(0),
            &["-c", "-n", "-p", "--class", "--classdata"],
        ),
        "stdbuf" => (Wrapper::Skip(0), &["-i", "-o", "-e"]),
        "sudo" => (
            Wrapper::Env,
            &[
                "-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "--user", "--group",
            ],
        ),
        "doas" => (Wrapper::Skip(0), &["-u", "-C"]),
        "timeout" => (Wrapper::Skip(1), &["-s", "-k", "--signal", "--kill-after"]),
        "chrt" | "taskset" | "chroot" | "flock" => (Wrapper::Skip(1), &["-p", "-w", "-E"]),
        "xargs" => (
            Wrapper::Skip(0),
            &[
                "-I",
                "-d",
                "-n",
                "-P",
                "-L",
                "-s",
                "-E",
                "-a",
                "--arg-file",
                "--delimiter",
            ],
        ),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "busybox" => {
            (Wrapper::Shell, &[])
        }
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Wrapper {
    /// Options, `n` operands (a duration, a mask, a directory), then the command.
    Skip(usize),
    /// Options and `NAME=value` pairs, then the command.
    Env,
    /// `-c STRING`: the commands of the string.
    Shell,
}

/// The file name of a program path (`/usr/bin/curl` -> `curl`).
pub fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The commands `argv` runs on its behalf, outermost first, each as its own argument list
/// (`sh -c 'a; b | c'` gives `a`, `b` and `c`; `env X=1 nohup curl u` gives `nohup curl u` and
/// `curl u`). Empty for a program that is not a wrapper. Bounded: at most 64 commands, eight
/// wrappers deep.
pub fn inner_commands(argv: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    collect(argv, 0, &mut out);
    out
}

fn collect(argv: &[String], depth: usize, out: &mut Vec<Vec<String>>) {
    if depth >= 8 || out.len() >= 64 {
        return;
    }
    let Some(first) = argv.first() else { return };
    let Some((w, valued)) = wrapper(base(first)) else {
        return;
    };
    let rest = &argv[1..];
    let inner: Vec<Vec<String>> = match w {
        Wrapper::Shell => {
            // The string after `-c` (options may be bundled: `-ec`, `-lc`).
            let at = rest
                .iter()
                .position(|a| a.starts_with('-') && !a.starts_with("--") && a[1..].contains('c'));
            let Some(script) = at.and_then(|i| rest.get(i + 1)) else {
                return;
            };
            shell_commands(script)
        }
        Wrapper::Skip(_) | Wrapper::Env => {
            let mut i = 0;
            let mut operands = if let Wrapper::Skip(n) = w { n } else { 0 };
            let mut split = Vec::new();
            while let Some(a) = rest.get(i) {
                if a == "--" {
                    i += 1;
                    break;
                }
                if a.starts_with('-') && a.len() > 1 {
                    // `env -S 'curl u'` runs the split string.
                    if matches!(a.as_str(), "-S" | "--split-string") {
                        if let Some(v) = rest.get(i + 1) {
                            split = shell_commands(v);
                        }
                    }
                    i += if valued.contains(&a.as_str()) { 2 } else { 1 };
                    continue;
                }
                if matches!(w, Wrapper::Env) && a.contains('=') {
                    i += 1;
                    continue;
                }
                if operands > 0 {
                    operands -= 1;
                    i += 1;
                    continue;
                }
                break;
            }
            if !split.is_empty() {
                split
            } else if i >= rest.len() {
                return;
            } else {
                vec![rest[i..].to_vec()]
            }
        }
    };
    for cmd in inner {
        if cmd.is_empty() || out.len() >= 64 {
            continue;
        }
        out.push(cmd.clone());
        collect(&cmd, depth + 1, out);
    }
}

/// The simple commands of a shell string, each as its words: split at `;`, `&`, `|`, `&&`,
/// `||`, newlines, `(`, `)`, `{`, `}`, `` ` `` and `$(`; quotes and backslashes as the shell
/// reads them; leading `NAME=value` assignments and redirections dropped. Expansions are left
/// as written (`$X` stays `$X`): what they become is decided when that program is exec'd.
pub fn shell_commands(s: &str) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    // The next word is a redirection's target, not part of the command.
    let mut target = false;
    let mut chars = s.chars().peekable();
    let end_word =
        |word: &mut String, in_word: &mut bool, words: &mut Vec<String>, target: &mut bool| {
            if *in_word {
                let w = std::mem::take(word);
                if !std::mem::take(target) {
                    words.push(w);
                }
                *in_word = false;
            }
        };
    let end_cmd = |words: &mut Vec<String>, cmds: &mut Vec<Vec<String>>| {
        let mut w = std::mem::take(words);
        // Assignments before the command name are not the command.
        let skip = w.iter().position(|x| !is_assignment(x)).unwrap_or(w.len());
        w.drain(..skip);
        if !w.is_empty() && cmds.len() < 64 {
            cmds.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    word.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(&e) = chars.peek() {
                                if matches!(e, '"' | '\\' | '$' | '`') {
                                    word.push(e);
                                    chars.next();
                                    continue;
                                }
                            }
                            word.push('\\');
                        }
                        _ => word.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(d) => word.push(d),
                }
            }
            ' ' | '\t' => end_word(&mut word, &mut in_word, &mut words, &mut target),
            '>' | '<' => {
                // `2>`, `>>`, `&>`, `<&0`: a descriptor number before it is not a word; what
                // follows (after `&` or `>`) is the target.
                if in_word && word.bytes().all(|b| b.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                end_word(&mut word, &mut in_word, &mut words, &mut target);
                while chars
                    .peek()
                    .is_some_and(|&d| matches!(d, '>' | '<' | '&' | '|'))
                {
                    chars.next();
                }
                target = true;
            }
            ';' | '&' | '|' | '\n' | '(' | ')' | '`' => {
                end_word(&mut word, &mut in_word, &mut words, &mut target);
                end_cmd(&mut words, &mut cmds);
            }
            '{' | '}' if !in_word => {
                end_cmd(&mut words, &mut cmds);
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                end_word(&mut word, &mut in_word, &mut words, &mut target);
                end_cmd(&mut words, &mut cmds);
            }
            '#' if !in_word => {
                // A comment to the end of the line.
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                end_cmd(&mut words, &mut cmds);
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut words, &mut target);
    end_cmd(&mut words, &mut cmds);
    // Shell keywords introduce the command after them.
    for c in &mut cmds {
        while c.first().is_some_and(|w| {
            matches!(
                w.as_str(),
                "if" | "then" | "else" | "elif" | "do" | "while" | "until" | "!" | "time"
            )
        }) {
            c.remove(0);
        }
    }
    cmds.retain(|c| {
        !c.is_empty() && !matches!(c[0].as_str(), "fi" | "done" | "esac" | "for" | "case")
    });
    cmds
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wrappers_are_seen_through() {
        let cases: &[(&[&str], &[&[&str]])] = &[
            (
                &["sh", "-c", "curl -d @x https://e"],
                &[&["curl", "-d", "@x", "https://e"]],
            ),
            (
                &[
                    "/bin/bash",
                    "-lc",
                    "cd /w && X=1 curl u | tee f; echo $(id)",
                ],
                &[
                    &["cd", "/w"],
                    &["curl", "u"],
                    &["tee", "f"],
                    &["echo"],
                    &["id"],
                ],
            ),
            (&["env", "-i", "A=b", "curl", "u"], &[&["curl", "u"]]),
            (
                &["nohup", "timeout", "-s", "KILL", "5", "wget", "u"],
                &[&["timeout", "-s", "KILL", "5", "wget", "u"], &["wget", "u"]],
            ),
            (&["xargs", "-0", "rm"], &[&["rm"]]),
            (
                &[
                    "/lib64/ld-linux-x86-64.so.2",
                    "--library-path",
                    "/x",
                    "/usr/bin/curl",
                    "u",
                ],
                &[&["/usr/bin/curl", "u"]],
            ),
            (
                &["sh", "-c", "env sh -c 'nc h 1'"],
                &[
                    &["env", "sh", "-c", "nc h 1"],
                    &["sh", "-c", "nc h 1"],
                    &["nc", "h", "1"],
                ],
            ),
            (&["curl", "u"], &[]),
            (&["sh", "script.sh"], &[]),
        ];
        for (argv, want) in cases {
            let want: Vec<Vec<String>> = want.iter().map(|w| v(w)).collect();
            assert_eq!(inner_commands(&v(argv)), want, "{argv:?}");
        }
    }

    #[test]
    fn shell_quoting_and_keywords() {
        assert_eq!(
            shell_commands(r#"if true; then "cu"'rl' a\ b; fi # curl"#),
            vec![v(&["true"]), v(&["curl", "a b"])]
        );
        assert_eq!(
            shell_commands("a\nb && c || d &"),
            vec![v(&["a"]), v(&["b"]), v(&["c"]), v(&["d"])]
        );
        assert_eq!(shell_commands("> f 2>&1"), Vec::<Vec<String>>::new());
    }

    #[test]
    fn arguments_that_are_not_text_stay_distinct() {
        assert_eq!(arg_text(b"a\xffb"), "a\\xffb");
        assert_eq!(arg_text("é".as_bytes()), "é");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// A plain word: no shell syntax, not a keyword, not an assignment.
        fn plain() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9_./,:+-]{1,12}".prop_filter("keyword", |w| {
                !matches!(
                    w.as_str(),
                    "if" | "then"
                        | "else"
                        | "elif"
                        | "do"
                        | "while"
                        | "until"
                        | "time"
                        | "fi"
                        | "done"
                        | "esac"
                        | "for"
                        | "case"
                )
            })
        }

        proptest! {
            #[test]
            fn plain_words_are_one_command(words in prop::collection::vec(plain(), 1..8)) {
                prop_assert_eq!(shell_commands(&words.join(" ")), vec![words]);
            }

            #[test]
            fn single_quotes_keep_any_word_whole(
                first in plain(),
                rest in prop::collection::vec("[^'\\x00]{0,12}", 0..6),
            ) {
                let line = std::iter::once(first.clone())
                    .chain(rest.iter().map(|w| format!("'{w}'")))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut want = vec![first];
                want.extend(rest);
                prop_assert_eq!(shell_commands(&line), vec![want]);
            }

            #[test]
            fn every_command_between_separators_is_seen(
                cmds in prop::collection::vec(prop::collection::vec(plain(), 1..4), 1..6),
                seps in prop::collection::vec(prop::sample::select(vec![";", "&&", "||", "|", "\n", "&", " ; "]), 6),
            ) {
                let mut line = String::new();
                for (i, c) in cmds.iter().enumerate() {
                    if i > 0 {
                        line.push_str(seps[i % seps.len()]);
                    }
                    line.push_str(&c.join(" "));
                }
                prop_assert_eq!(shell_commands(&line), cmds);
            }

            #[test]
            fn a_wrapper_never_hides_its_command(
                wrapper in prop::sample::select(vec!["nohup", "env", "setsid", "nice", "stdbuf"]),
                cmd in prop::collection::vec(plain().prop_filter("no options", |w| !w.starts_with('-') && !w.contains('=')), 1..4),
            ) {
                let mut argv = vec![wrapper.to_string()];
                argv.extend(cmd.clone());
                let inner = inner_commands(&argv);
                prop_assert!(inner.contains(&cmd), "{:?} -> {:?}", argv, inner);
            }

            #[test]
            fn anything_is_bounded_and_never_panics(
                line in "\\PC{0,200}",
                argv in prop::collection::vec("\\PC{0,20}", 0..12),
            ) {
                prop_assert!(shell_commands(&line).len() <= 64);
                prop_assert!(inner_commands(&argv).len() <= 64);
            }

            #[test]
            fn text_arguments_stay_as_they_are(s in "\\PC{0,40}", bytes in prop::collection::vec(any::<u8>(), 0..40)) {
                prop_assert_eq!(arg_text(s.as_bytes()), s);
                // Not text: each byte that is not is written out, none is dropped.
                let t = arg_text(&bytes);
                match std::str::from_utf8(&bytes) {
                    Ok(v) => prop_assert_eq!(t, v),
                    Err(_) => prop_assert!(t.contains("\\x"), "{:?} -> {:?}", bytes, t),
                }
            }
        }
    }

    #[test]
    fn bounded_on_hostile_input() {
        let deep: Vec<String> = std::iter::repeat_n("env".to_string(), 10_000)
            .chain(["x".into()])
            .collect();
        assert!(inner_commands(&deep).len() <= 64);
        let many = "a;".repeat(100_000);
        assert!(shell_commands(&many).len() <= 64);
    }
}

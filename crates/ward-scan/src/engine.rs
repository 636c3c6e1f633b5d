//! The scanner: keyword prefilter, windowed ASCII regexes, then filters and validators.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use crate::prefilter::Keywords;
use crate::rules::{Kind, RuleError, RuleSet, MAX_WINDOW};
use crate::validate::{entropy, Validator, Verdict};

/// How sure a finding is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    #[default]
    Medium,
    High,
}

impl Confidence {
    fn up(self) -> Confidence {
        match self {
            Confidence::Low => Confidence::Medium,
            _ => Confidence::High,
        }
    }
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's id.
    pub rule: String,
    pub kind: Kind,
    pub description: String,
    /// Byte range of the secret itself in the scanned input.
    pub start: usize,
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// The secret's surroundings on its line, with the secret (and any long word nearby)
    /// masked: safe to print and to log.
    pub excerpt: String,
    pub confidence: Confidence,
}

struct Compiled {
    id: String,
    description: String,
    kind: Kind,
    /// The regex source, its group and allowlist as written.
    pattern: String,
    group: Option<usize>,
    allow_src: Vec<String>,
    /// Compiled on first use (built-in rules: most never meet their keyword in a given
    /// input, and compiling all 342 costs ~35 ms) or up front ([`Scanner::new`]).
    built: OnceLock<Built>,
    entropy: Option<f64>,
    validator: Option<Validator>,
    confidence: Confidence,
    stopwords: Vec<Vec<u8>>,
    context: Vec<Vec<u8>>,
    context_required: bool,
    how: Window,
    generic: bool,
    hosts: Vec<String>,
}

struct Built {
    regex: Regex,
    group: usize,
    allow: Vec<Regex>,
}

impl Compiled {
    fn build(&self) -> Result<Built, RuleError> {
        let regex = ascii_regex(&self.id, &self.pattern)?;
        let groups = regex
            .group_info()
            .group_len(regex_automata::PatternID::ZERO);
        let group = self.group.unwrap_or(if groups > 1 { 1 } else { 0 });
        if group >= groups {
            return Err(RuleError::Invalid {
                id: self.id.clone(),
                message: format!("group {group} but the regex has {} groups", groups - 1),
            });
        }
        let allow = self
            .allow_src
            .iter()
            .map(|a| ascii_regex(&self.id, a))
            .collect::<Result<_, _>>()?;
        Ok(Built {
            regex,
            group,
            allow,
        })
    }

    fn built(&self) -> &Built {
        self.built.get_or_init(|| {
            // Only rule sets made with `Scanner::lazy` get here uncompiled: the built-in
            // rules, every one of which the test suite compiles.
            #[allow(clippy::expect_used)] // Ward's own rules; see above
            self.build().expect("built-in rule compiles")
        })
    }
}

/// Where a rule's regex runs around a keyword found at `s..e`.
#[derive(Clone, Copy)]
enum Window {
    /// Matches start at the keyword: one anchored search at `s`, up to `len` bytes.
    Anchored { len: usize },
    /// The keyword is inside the match: `[s - back, s + ahead]`, unanchored.
    Around { back: usize, ahead: usize },
    /// The keyword is context: `[s - reach, e + reach]`, on the keyword's line unless
    /// `multiline`, and only where the keyword is not inside a longer word.
    Beside { reach: usize, multiline: bool },
}

/// Compiled rules, ready to scan. Cheap to share between threads (`&Scanner` is `Sync`).
pub struct Scanner {
    rules: Vec<Compiled>,
    keywords: Keywords,
    /// Keyword pattern id -> the rules that keyword triggers.
    by_keyword: Vec<Vec<u32>>,
    /// The widest window of any rule: what a streaming scan must keep of earlier data.
    widest: usize,
}

fn ascii_regex(id: &str, pattern: &str) -> Result<Regex, RuleError> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(cfg())
        .build(pattern)
        .map_err(|e| RuleError::Invalid {
            id: id.to_string(),
            message: format!("regex: {}", e.to_string().replace('\n', " ")),
        })
}

/// Regexes here run in windows of a few hundred bytes around a keyword, most of them once or
/// a few times per input, so building them is a large part of their cost (`ward scan` on a
/// corpus where every rule meets its keyword compiles all 342). Without the one-pass DFA
/// (captures of the rare matches come from the backtracker instead) and without a literal
/// prefilter (useless in a window that starts at the literal), building all the built-in
/// rules takes 35 ms instead of 57 ms here, and searches run as fast.
fn cfg() -> regex_automata::meta::Config {
    Regex::config()
        .utf8_empty(false)
        .onepass(false)
        .auto_prefilter(false)
}

/// The longest match `pattern` can have, when bounded.
fn max_len(pattern: &str) -> Option<usize> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?
        .properties()
        .maximum_len()
}

impl Scanner {
    /// Compile a rule set. Errors name the rule. Rules added with [`RuleSet::add_toml`] are
    /// compiled now; Ward's own are compiled on first use (see [`Scanner::compile_all`]).
    pub fn new(set: &RuleSet) -> Result<Scanner, RuleError> {
        let scanner = Scanner::lazy(set)?;
        for c in &scanner.rules[set.builtin..] {
            let built = c.build()?;
            let _ = c.built.set(built);
        }
        Ok(scanner)
    }

    /// Compile every rule now (what the test suite does for Ward's own).
    pub fn compile_all(&self) -> Result<(), RuleError> {
        for c in &self.rules {
            if c.built.get().is_none() {
                let built = c.build()?;
                let _ = c.built.set(built);
            }
        }
        Ok(())
    }

    fn lazy(set: &RuleSet) -> Result<Scanner, RuleError> {
        let mut rules = Vec::with_capacity(set.len());
        let mut keywords: Vec<Vec<u8>> = Vec::new();
        let mut by_keyword: Vec<Vec<u32>> = Vec::new();
        let mut widest = 0;
        for (i, r) in set.rules().enumerate() {
            let longest = max_len(&r.regex).unwrap_or(MAX_WINDOW).min(MAX_WINDOW);
            let how = match (r.window, r.before) {
                (Some(reach), _) => Window::Beside {
                    reach,
                    multiline: r.multiline,
                },
                (None, Some(0)) => Window::Anchored { len: longest },
                (None, before) => Window::Around {
                    back: before.unwrap_or(longest),
                    ahead: longest,
                },
            };
            widest = widest.max(match how {
                Window::Anchored { len } => len,
                Window::Around { back, ahead } => back + ahead,
                Window::Beside { reach, .. } => 2 * reach + 64,
            });
            for k in &r.keywords {
                let k = k.to_ascii_lowercase().into_bytes();
                match keywords.iter().position(|x| *x == k) {
                    Some(p) => by_keyword[p].push(i as u32),
                    None => {
                        keywords.push(k);
                        by_keyword.push(vec![i as u32]);
                    }
                }
            }
            let lower = |v: &Vec<String>| {
                v.iter()
                    .map(|s| s.to_ascii_lowercase().into_bytes())
                    .collect::<Vec<_>>()
            };
            rules.push(Compiled {
                id: r.id.clone(),
                description: r.description.clone(),
                kind: r.kind,
                pattern: r.regex.clone(),
                group: r.group,
                allow_src: r.allow.clone(),
                built: OnceLock::new(),
                entropy: r.entropy,
                validator: r.validator,
                confidence: r.confidence,
                stopwords: lower(&r.stopwords),
                context: lower(&r.context),
                context_required: r.context_required,
                how,
                generic: r.generic,
                hosts: r.hosts.clone(),
            });
        }
        for v in &mut by_keyword {
            v.dedup();
        }
        let keywords = Keywords::new(&keywords);
        Ok(Scanner {
            rules,
            keywords,
            by_keyword,
            widest,
        })
    }

    /// The built-in rules, compiled.
    pub fn builtin() -> Scanner {
        // The built-in rules compile in the test suite; failing here is a build bug.
        #[allow(clippy::expect_used)] // Ward's own rules; see above
        Scanner::lazy(&RuleSet::builtin()).expect("built-in rules compile")
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Where the credential a rule finds is meant to go (its `hosts`); empty for an unknown
    /// rule or one that names none.
    pub fn hosts(&self, rule: &str) -> &[String] {
        self.rules
            .iter()
            .find(|c| c.id == rule)
            .map_or(&[], |c| c.hosts.as_slice())
    }

    /// Whether `rule` is a catch-all (gives way to specific rules).
    pub fn is_generic(&self, rule: &str) -> bool {
        self.rules.iter().any(|c| c.id == rule && c.generic)
    }

    /// The most bytes one rule looks at around a keyword.
    pub(crate) fn widest(&self) -> usize {
        self.widest
    }

    /// Every finding in `hay`, in order of position.
    pub fn scan(&self, hay: &[u8]) -> Vec<Finding> {
        if hay.len() > HUGE {
            let mut s = crate::StreamScanner::new(self);
            let mut found = s.push(hay);
            found.extend(s.finish());
            return found;
        }
        let mut found = Vec::new();
        self.scan_raw(hay, &mut found);
        self.finish(hay, found, 0, 1, |_, _| true)
    }

    /// Candidates as (rule, secret start, secret end, confidence), unordered, undeduplicated.
    pub(crate) fn scan_raw(&self, hay: &[u8], out: &mut Vec<Raw>) {
        let mut pass = Pass::new(self);
        self.advance(&mut pass, hay, true, out);
    }

    /// Scan what `hay` has gained since the last call with this `pass` (`hay` grows; what was
    /// there stays the same), as far as it can be judged without the bytes still to come;
    /// with `complete`, all of it.
    fn advance(&self, pass: &mut Pass, hay: &[u8], complete: bool, out: &mut Vec<Raw>) {
        assert!(hay.len() >= pass.seen, "a growing scan's buffer shrank");
        pass.seen = hay.len();
        debug_assert!(
            hay.len() <= HUGE,
            "callers scan pieces (StreamScanner does)"
        );
        // Keywords are searched where they cannot reach past the bytes there are; a hit is
        // taken further once every byte its rules may look at is there.
        let safe = if complete {
            hay.len()
        } else {
            hay.len().saturating_sub(self.keywords.longest())
        };
        // A hit's rules look at most `widest` bytes from it, its context checks 64 bytes past
        // a match, and an assertion at a window's end at the byte after it: all must be there.
        let ready = |s: u32| complete || s as usize + self.widest + 64 < hay.len();
        loop {
            // Block by block: the hits of one block at a time (a file of '@' has one per
            // byte).
            let taken = pass.hits.iter().take_while(|h| ready(h.1)).count();
            for i in 0..taken {
                let (id, s, e) = pass.hits[i];
                self.hit(pass, hay, id, s as usize, e as usize, out);
            }
            pass.hits.drain(..taken);
            if pass.searched >= safe {
                break;
            }
            let to = (pass.searched + BLOCK).min(safe);
            self.keywords.find(hay, pass.searched, to, &mut pass.hits);
            pass.searched = to;
        }
        if !complete {
            return;
        }
        for (r, ws, we) in pass.windows.drain(..) {
            let c = &self.rules[r as usize];
            let b = c.built();
            let mut caps = b.regex.create_captures();
            // By hand rather than `captures_iter`: the next search starts where the secret
            // ended, not where the match did, so a rejected look-alike cannot swallow the
            // delimiter in front of the real one.
            let mut at = ws;
            while at < we {
                b.regex
                    .search_captures(&Input::new(hay).span(at..we), &mut caps);
                let Some(m) = caps.get_match() else { break };
                let next = caps
                    .get_group(b.group)
                    .map_or(m.end(), |g| g.end)
                    .max(m.start() + 1);
                self.take(c, r, hay, &caps, out);
                at = next;
            }
        }
    }

    /// One keyword hit at `s..e`: anchored rules run now; the others get (or widen) a window.
    fn hit(&self, pass: &mut Pass, hay: &[u8], id: u32, s: usize, e: usize, out: &mut Vec<Raw>) {
        for &r in &self.by_keyword[id as usize] {
            let c = &self.rules[r as usize];
            let (ws, we) = match c.how {
                Window::Anchored { len } => {
                    let input = Input::new(hay)
                        .span(s..(s + len).min(hay.len()))
                        .anchored(Anchored::Yes);
                    // Most hits are not secrets ("tokenizer", "path"): the lazy DFA says
                    // so within a few bytes; only a match pays for captures.
                    let b = c.built();
                    if b.regex.search_half(&input).is_some() {
                        let mut caps = b.regex.create_captures();
                        b.regex.search_captures(&input, &mut caps);
                        self.take(c, r, hay, &caps, out);
                    }
                    continue;
                }
                Window::Around { back, ahead } => {
                    (s.saturating_sub(back), (s + ahead).min(hay.len()))
                }
                Window::Beside { reach, multiline } => {
                    let word = |b: u8| b.is_ascii_alphanumeric();
                    if s > 0 && e < hay.len() && word(hay[s - 1]) && word(hay[e]) {
                        continue;
                    }
                    let (mut ws, mut we) = (s.saturating_sub(reach), (e + reach).min(hay.len()));
                    if !multiline {
                        // The newlines themselves stay in: rules end with "not a token
                        // character", which a line's end is.
                        if let Some(p) = hay[ws..s].iter().rposition(|&b| b == b'\n') {
                            ws += p;
                        }
                        if let Some(p) = hay[e..we].iter().position(|&b| b == b'\n') {
                            we = e + p + 1;
                        }
                    }
                    (ws, we)
                }
            };
            let li = pass.last[r as usize];
            if li != u32::MAX {
                let w = &mut pass.windows[li as usize];
                if ws <= w.2 {
                    w.1 = w.1.min(ws);
                    w.2 = w.2.max(we);
                    continue;
                }
            }
            pass.last[r as usize] = pass.windows.len() as u32;
            pass.windows.push((r, ws, we));
        }
    }

    fn take(
        &self,
        c: &Compiled,
        r: u32,
        hay: &[u8],
        caps: &regex_automata::util::captures::Captures,
        out: &mut Vec<Raw>,
    ) {
        let Some(g) = caps.get_group(c.built().group) else {
            return;
        };
        let m = caps.get_match().map(|m| m.range()).unwrap_or(g.range());
        if let Some(conf) = self.judge(c, hay, g.range(), m) {
            out.push((r, g.start, g.end, conf));
        }
    }

    /// The filters: entropy, stop words, allowlist, context, validator.
    fn judge(
        &self,
        c: &Compiled,
        hay: &[u8],
        secret: std::ops::Range<usize>,
        whole: std::ops::Range<usize>,
    ) -> Option<Confidence> {
        let s = &hay[secret.clone()];
        if s.is_empty() {
            return None;
        }
        if let Some(min) = c.entropy {
            if entropy(s) < min {
                return None;
            }
        }
        if c.stopwords.iter().any(|w| contains_ci(s, w)) {
            return None;
        }
        if c.built().allow.iter().any(|a| a.is_match(s)) {
            return None;
        }
        let mut conf = c.confidence;
        if !c.context.is_empty() {
            let reach = match c.how {
                Window::Beside { reach, .. } => reach,
                _ => 64,
            };
            let lo = whole.start.saturating_sub(reach);
            let hi = (whole.end + reach).min(hay.len());
            let seen = c.context.iter().any(|w| contains_ci(&hay[lo..hi], w));
            if seen {
                conf = conf.up();
            } else if c.context_required {
                return None;
            }
        }
        if let Some(v) = c.validator {
            match v.check(s) {
                Verdict::Reject => return None,
                Verdict::Confirmed => conf = Confidence::High,
                Verdict::Doubtful => conf = Confidence::Low,
                Verdict::Pass => {}
            }
        }
        Some(conf)
    }

    /// Sort, drop duplicates and generic findings that a specific rule covers, number lines
    /// (`line0` is the line `hay` starts on, `base` its offset) and mask.
    pub(crate) fn finish(
        &self,
        hay: &[u8],
        mut raw: Vec<(u32, usize, usize, Confidence)>,
        base: usize,
        line0: usize,
        keep: impl Fn(usize, usize) -> bool,
    ) -> Vec<Finding> {
        raw.sort_unstable_by_key(|&(r, s, e, _)| (s, e, r));
        raw.dedup_by_key(|&mut (r, s, e, _)| (r, s, e));
        // A catch-all rule gives way to a specific rule of the same kind on the same bytes (a
        // card number inside a URL does not hide the URL's password).
        // Specific findings per kind, by start, with the furthest end so far: whether one
        // overlaps [s, e) is a binary search (a file of a million lines with both kinds of
        // finding must not take a million squared steps).
        let mut specific: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
        for &(r, s, e, _) in &raw {
            let c = &self.rules[r as usize];
            if !c.generic {
                specific[c.kind as usize].push((s, e));
            }
        }
        for v in &mut specific {
            let mut far = 0;
            for x in v.iter_mut() {
                far = far.max(x.1);
                x.1 = far;
            }
        }
        let overlaps = |kind: Kind, s: usize, e: usize| {
            let v = &specific[kind as usize];
            let n = v.partition_point(|&(a, _)| a < e);
            n > 0 && v[n - 1].1 > s
        };
        let mut line = line0;
        let mut counted = 0;
        let mut out = Vec::with_capacity(raw.len());
        for (r, s, e, conf) in raw {
            let c = &self.rules[r as usize];
            if c.generic && overlaps(c.kind, s, e) {
                continue;
            }
            if !keep(s, e) {
                continue;
            }
            line += count_newlines(&hay[counted..s]);
            counted = s;
            out.push(Finding {
                rule: c.id.clone(),
                kind: c.kind,
                description: c.description.clone(),
                start: base + s,
                end: base + e,
                line,
                excerpt: excerpt(hay, s, e),
                confidence: conf,
            });
        }
        out
    }
}

/// Whether `hay` contains `lower` (lower-case), ASCII case-insensitively, without allocating.
fn contains_ci(hay: &[u8], lower: &[u8]) -> bool {
    !lower.is_empty()
        && hay
            .windows(lower.len())
            .any(|x| x.eq_ignore_ascii_case(lower))
}

/// Newlines in `b`, counted 255 bytes at a time in byte lanes (the compiler vectorizes it;
/// several times faster than a plain filter-count, which matters on every byte scanned).
pub(crate) fn count_newlines(b: &[u8]) -> usize {
    b.chunks(255)
        .map(|c| c.iter().fold(0u8, |a, &x| a + (x == b'\n') as u8) as usize)
        .sum()
}

/// Keyword hits are gathered and handled this many bytes at a time.
const BLOCK: usize = 64 << 10;

/// A candidate: (rule, secret start, secret end, confidence).
pub(crate) type Raw = (u32, usize, usize, Confidence);

/// Where a scan of a buffer stands.
struct Pass {
    /// Windows per rule, merged on the fly while hits keep overlapping.
    windows: Vec<(u32, usize, usize)>,
    /// Rule -> its last window in `windows` (`u32::MAX`: none yet).
    last: Vec<u32>,
    /// Keyword hits not taken further yet (their rules need bytes still to come).
    hits: Vec<(u32, u32, u32)>,
    /// Keywords have been searched for up to here.
    searched: usize,
    /// The buffer's length at the last call.
    seen: usize,
}

impl Pass {
    fn new(scanner: &Scanner) -> Pass {
        Pass {
            windows: Vec::new(),
            last: vec![u32::MAX; scanner.rules.len()],
            hits: Vec::new(),
            searched: 0,
            seen: 0,
        }
    }
}

/// A scan of a buffer that is still being filled, such as a file read piece by piece: after
/// each piece, [`grew`](Self::grew) searches the new bytes while they are still in the CPU's
/// cache (reading a whole file first and then scanning it goes through memory twice); at the
/// end [`finish`](Self::finish) reports exactly what [`Scanner::scan`] reports for the whole
/// buffer. Unlike [`StreamScanner`](crate::StreamScanner), the whole buffer is kept.
pub struct GrowingScan<'s> {
    scanner: &'s Scanner,
    pass: Pass,
    raw: Vec<Raw>,
}

impl<'s> GrowingScan<'s> {
    pub fn new(scanner: &'s Scanner) -> GrowingScan<'s> {
        GrowingScan {
            scanner,
            pass: Pass::new(scanner),
            raw: Vec::new(),
        }
    }

    /// `hay` is the buffer so far: what an earlier call saw, unchanged, and more.
    ///
    /// # Panics
    /// If `hay` is shorter than at the previous call.
    pub fn grew(&mut self, hay: &[u8]) {
        if hay.len() > HUGE {
            return; // `finish` scans it in pieces
        }
        self.scanner
            .advance(&mut self.pass, hay, false, &mut self.raw);
    }

    /// The whole buffer: every finding in it, in order of position.
    ///
    /// # Panics
    /// If `hay` is shorter than at the previous call.
    pub fn finish(mut self, hay: &[u8]) -> Vec<Finding> {
        if hay.len() > HUGE {
            // As `Scanner::scan` does.
            return self.scanner.scan(hay);
        }
        self.scanner
            .advance(&mut self.pass, hay, true, &mut self.raw);
        self.scanner.finish(hay, self.raw, 0, 1, |_, _| true)
    }
}

/// Inputs longer than this are scanned as a stream (offsets inside a scan are 32-bit).
const HUGE: usize = 1 << 30;

/// Up to this many bytes of the line on each side of a secret go into an excerpt.
const CONTEXT: usize = 24;

/// `key = "ghp_************…"`: the secret shows a few leading bytes (a token's prefix says
/// what it is) and words of 8+ alphanumerics around it are masked too (they may be secrets
/// no rule knows).
fn excerpt(hay: &[u8], s: usize, e: usize) -> String {
    let line_start = hay[..s]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let line_end = hay[e..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(hay.len(), |p| e + p);
    let b0 = s.saturating_sub(CONTEXT).max(line_start);
    let a1 = (e + CONTEXT).min(line_end);
    let before = &hay[b0..s];
    let after = &hay[e..a1];
    // A word cut by the excerpt's edge is shown as stars whatever its length.
    let cut_left =
        b0 > 0 && token_char(hay[b0 - 1]) && before.first().is_some_and(|&c| token_char(c));
    let cut_right =
        a1 < hay.len() && token_char(hay[a1]) && after.last().is_some_and(|&c| token_char(c));
    let secret = &hay[s..e];
    let show = (secret.len() / 5).min(4);
    let mut out = mask_words(before, cut_left, false);
    out.push_str(&printable(&secret[..show]));
    let hidden = secret.len() - show;
    out.push_str(&"*".repeat(hidden.min(12)));
    if hidden > 12 {
        out.push('…');
    }
    out.push_str(&mask_words(after, false, cut_right));
    out
}

fn printable(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if (0x20..0x7f).contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-' | b'.' | b'~')
}

/// Runs of token characters that look random (8+ long with a digit, mixed case or a '+':
/// they may be secrets no rule knows) keep their first two characters; names
/// like `aws_secret_access_key` stay readable. Runs cut by the excerpt's edges are masked.
fn mask_words(b: &[u8], cut_left: bool, cut_right: bool) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if !token_char(b[i]) {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let j = b[i..]
            .iter()
            .position(|&c| !token_char(c))
            .map_or(b.len(), |p| i + p);
        let run = &b[i..j];
        let cut = (i == 0 && cut_left) || (j == b.len() && cut_right);
        let randomish = run.len() >= 8
            && (run.iter().any(u8::is_ascii_digit)
                || (run.iter().any(u8::is_ascii_uppercase)
                    && run.iter().any(u8::is_ascii_lowercase))
                || run.contains(&b'+'));
        if cut {
            out.extend(std::iter::repeat_n(b'*', run.len()));
        } else if randomish {
            out.extend_from_slice(&run[..2]);
            out.extend(std::iter::repeat_n(b'*', run.len() - 2));
        } else {
            out.extend_from_slice(run);
        }
        i = j;
    }
    printable(&out)
}

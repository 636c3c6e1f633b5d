//! What the agent writes to its terminal, on its way to the person's: everything that draws on
//! the agent's own screen passes; what reaches beyond it is dropped and named once per kind.
//!
//! Dropped: every string sequence (OSC, DCS, APC, PM, SOS: clipboard writes and reads (OSC
//! 52), window and icon titles (OSC 0/1/2), notifications, hyperlinks, file transfers,
//! colour queries, DECRQSS/XTGETTCAP requests, tmux pass-through), window operations (`CSI …
//! t`: move, resize, iconify, report the title), ENQ (the terminal types its answer-back
//! string), C1 controls however they are written (8-bit, or encoded in UTF-8, which xterm
//! obeys), and sequences longer than any real one. Passed: text, C0 controls, `ESC x`
//! sequences, and every other CSI sequence, including the cursor and device reports whose
//! answers carry only digits (programs wait for them).
//!
//! The filter also remembers the modes the agent set that outlive its screen (the alternate
//! screen, mouse reporting, bracketed paste, hidden cursor, keyboard protocols…), so that a
//! question can be drawn over them and the terminal put back at the end.
//!
//! It never holds more than one incomplete sequence (at most [`MAX_SEQ`] bytes) or an
//! incomplete UTF-8 character; what it passes always leaves the terminal's parser in its
//! ground state, so Ward's own text drawn between two pieces is read as text.

/// The longest escape sequence passed; longer ones are dropped.
pub const MAX_SEQ: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Esc,
    /// `ESC` followed by intermediates (0x20..0x2f), waiting for the final byte.
    EscInter,
    /// After `ESC [` (or C1 CSI).
    Csi,
    /// Inside a string sequence (OSC, DCS, APC, PM, SOS), dropping.
    Str,
    /// ESC inside a string: `\` ends it, anything else ends it and starts a new sequence.
    StrEsc,
    /// Dropping the rest of an overlong CSI up to its final byte.
    CsiDrop,
    /// Dropping an `ESC` sequence with intermediates up to its final byte (`ESC %`: the
    /// terminal's character encoding).
    EscDrop,
}

/// Kinds of what was dropped, each named once in the session's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dropped {
    Clipboard,
    Title,
    Osc,
    Dcs,
    Apc,
    Pm,
    Sos,
    WindowOp,
    Answerback,
    C1,
    Overlong,
    Malformed,
    ScreenRead,
    Encoding,
    Identity,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Clipboard => "clipboard (OSC 52)",
            Dropped::Title => "window or icon title (OSC 0/1/2)",
            Dropped::Osc => "other OSC (notifications, links, colours, file transfer)",
            Dropped::Dcs => "DCS (terminal queries, pass-through)",
            Dropped::Apc => "APC",
            Dropped::Pm => "PM",
            Dropped::Sos => "SOS",
            Dropped::WindowOp => "window operation (CSI t)",
            Dropped::Answerback => "answer-back request (ENQ)",
            Dropped::C1 => "C1 control",
            Dropped::Overlong => "overlong escape sequence",
            Dropped::Malformed => "malformed escape sequence (DEL or a non-ASCII byte inside)",
            Dropped::ScreenRead => "screen read-back (DECRQCRA)",
            Dropped::Encoding => "character encoding switch (ESC %)",
            Dropped::Identity => "terminal identity query (XTVERSION, DA3 unit id)",
        }
    }
}

/// Terminal modes the agent turned on that outlive its screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modes {
    pub alt_screen: bool,
    pub cursor_hidden: bool,
    pub app_cursor: bool,
    pub app_keypad: bool,
    pub bracketed_paste: bool,
    pub focus_events: bool,
    /// Mouse tracking modes on (9, 1000-1003, 1005-1007, 1015, 1016).
    pub mouse: Vec<u16>,
    pub sync_output: bool,
    /// `CSI > … u` pushed (kitty keyboard protocol) or `CSI > 4;n m` (modifyOtherKeys).
    pub keyboard: bool,
    /// The last `CSI > 4 ; n m` (modifyOtherKeys level), to set again after a question.
    pub modify_other_keys: Option<String>,
}

impl Modes {
    /// The modes that are on, each as (sequence turning it on, sequence turning it off).
    fn switches(&self) -> Vec<(String, String)> {
        let fixed = [
            (self.cursor_hidden, "\x1b[?25l", "\x1b[?25h"),
            (self.app_cursor, "\x1b[?1h", "\x1b[?1l"),
            (self.app_keypad, "\x1b=", "\x1b>"),
            (self.bracketed_paste, "\x1b[?2004h", "\x1b[?2004l"),
            (self.focus_events, "\x1b[?1004h", "\x1b[?1004l"),
        ];
        let mut v: Vec<(String, String)> = fixed
            .iter()
            .filter(|f| f.0)
            .map(|f| (f.1.to_string(), f.2.to_string()))
            .collect();
        v.extend(
            self.mouse
                .iter()
                .map(|n| (format!("\x1b[?{n}h"), format!("\x1b[?{n}l"))),
        );
        v
    }

    /// Sequences that turn back on, after a question drawn over the agent's screen, the modes
    /// the question turned off (cursor, keys, keypad, mouse, paste, focus).
    pub fn restore(&self) -> String {
        self.switches().into_iter().map(|(on, _)| on).collect()
    }

    /// Sequences that turn off every mode the agent left on (cursor, keys, keypad, mouse,
    /// paste, focus; the alternate screen and keyboard protocols are the caller's).
    pub fn reset(&self) -> String {
        self.switches().into_iter().map(|(_, off)| off).collect()
    }
}

/// The output filter: feed it what the agent wrote, write what it returns.
#[derive(Debug)]
pub struct Filter {
    state: State,
    /// The sequence being collected (ESC … or CSI …), or the first bytes of a string.
    seq: Vec<u8>,
    /// Which string sequence is being dropped (`]`, `P`, `_`, `^`, `X`), and its first bytes.
    str_kind: u8,
    /// Continuation bytes still expected for the current UTF-8 character.
    utf8_left: u8,
    /// An incomplete UTF-8 character held back at the end of a piece.
    utf8_hold: Vec<u8>,
    /// A 0xC2 lead byte held: the next byte says whether it is a C1 control.
    c2: bool,
    pub modes: Modes,
    /// Every kind dropped so far, in the order first seen.
    dropped: Vec<Dropped>,
    /// Kinds dropped since [`Filter::take_new`] was last called.
    new: Vec<Dropped>,
}

impl Default for Filter {
    fn default() -> Self {
        Self::new()
    }
}

impl Filter {
    pub fn new() -> Filter {
        Filter {
            state: State::Ground,
            seq: Vec::with_capacity(64),
            str_kind: 0,
            utf8_left: 0,
            utf8_hold: Vec::with_capacity(4),
            c2: false,
            modes: Modes::default(),
            dropped: Vec::new(),
            new: Vec::new(),
        }
    }

    /// Kinds dropped for the first time since the last call.
    pub fn take_new(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.new)
    }

    /// Every kind dropped in the session.
    pub fn dropped(&self) -> &[Dropped] {
        &self.dropped
    }

    fn drop_kind(&mut self, k: Dropped) {
        if !self.dropped.contains(&k) {
            self.dropped.push(k);
            self.new.push(k);
        }
    }

    /// Filter `input`, appending what may reach the person's terminal to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        // A character held from the last piece goes first, if this piece completes it.
        let mut i = 0;
        if !self.utf8_hold.is_empty() {
            while self.utf8_left > 0 && i < input.len() && (input[i] & 0xc0) == 0x80 {
                self.utf8_hold.push(input[i]);
                self.utf8_left -= 1;
                i += 1;
            }
            if self.utf8_left > 0 && i == input.len() {
                return;
            }
            out.extend_from_slice(&self.utf8_hold);
            self.utf8_hold.clear();
            self.utf8_left = 0;
        }
        let input = &input[i..];
        let mut i = 0;
        let n = input.len();
        while i < n {
            if self.state == State::Ground && !self.c2 && self.utf8_left == 0 {
                // Fast path: a run of plain ASCII (no ESC, no ENQ).
                let start = i;
                while i < n {
                    let b = input[i];
                    if b >= 0x80 || b == 0x1b || b == 0x05 {
                        break;
                    }
                    i += 1;
                }
                out.extend_from_slice(&input[start..i]);
                if i == n {
                    break;
                }
                // A whole CSI sequence in this piece (colours, cursor moves: most of what
                // escapes in an agent's output) is judged at once.
                if input[i] == 0x1b {
                    if let Some(len) = self.csi_whole(&input[i..], out) {
                        i += len;
                        continue;
                    }
                }
            }
            let b = input[i];
            i += 1;
            self.byte(b, out);
        }
        // An incomplete UTF-8 character at the end is held back (the terminal's decoder would
        // otherwise swallow the first byte of whatever Ward draws next).
        if self.state == State::Ground && self.utf8_left > 0 && !self.c2 {
            let have = {
                // The lead byte and the continuations already seen are the last bytes of out.
                let mut k = 1usize;
                while k <= 3 && k <= out.len() && (out[out.len() - k] & 0xc0) == 0x80 {
                    k += 1;
                }
                k.min(out.len())
            };
            let at = out.len() - have;
            self.utf8_hold.extend_from_slice(&out[at..]);
            out.truncate(at);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        // C1 controls, 8-bit or UTF-8 encoded (C2 80..C2 9F), are dropped wherever they are.
        if self.c2 {
            self.c2 = false;
            if (0x80..=0x9f).contains(&b) {
                self.c1(b, out);
                return;
            }
            if self.state == State::Ground {
                out.push(0xc2);
                self.utf8_left = 0;
                if (b & 0xc0) == 0x80 {
                    out.push(b);
                    return;
                }
            }
        }
        match self.state {
            State::Ground => self.ground(b, out),
            State::Esc => self.esc(b, out),
            State::EscInter | State::EscDrop => {
                if self.control_in_seq(b, out) || self.odd_in_seq(b, out) {
                    return;
                }
                if self.state == State::EscDrop {
                    if (0x30..=0x7e).contains(&b) {
                        self.state = State::Ground;
                    }
                    return;
                }
                self.push_seq(b);
                if (0x30..=0x7e).contains(&b) {
                    self.emit_esc(out);
                }
            }
            State::Csi | State::CsiDrop => {
                if self.control_in_seq(b, out) || self.odd_in_seq(b, out) {
                    return;
                }
                if self.state == State::CsiDrop {
                    if (0x40..=0x7e).contains(&b) {
                        self.state = State::Ground;
                    }
                    return;
                }
                if self.seq.len() >= MAX_SEQ {
                    self.drop_kind(Dropped::Overlong);
                    self.seq.clear();
                    self.state = if (0x40..=0x7e).contains(&b) {
                        State::Ground
                    } else {
                        State::CsiDrop
                    };
                    return;
                }
                self.seq.push(b);
                if (0x40..=0x7e).contains(&b) {
                    self.emit_csi(out);
                }
            }
            State::Str => match b {
                0x07 if self.str_kind == b']' => self.end_str(),
                0x1b => self.state = State::StrEsc,
                0x18 | 0x1a => self.end_str(),
                0xc2 => self.c2 = true,
                0x9c => self.end_str(),
                _ => {
                    if self.seq.len() < 8 {
                        self.seq.push(b);
                    }
                }
            },
            State::StrEsc => {
                self.end_str();
                if b != b'\\' {
                    self.state = State::Esc;
                    self.esc(b, out);
                }
            }
        }
    }

    /// C0 controls inside ESC/CSI sequences: terminals execute them in place; CAN and SUB
    /// abort the sequence, ESC restarts it. Returns whether `b` was handled.
    fn control_in_seq(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match b {
            0x18 | 0x1a => {
                self.seq.clear();
                self.state = State::Ground;
                out.push(b);
                true
            }
            0x1b => {
                self.seq.clear();
                self.state = State::Esc;
                true
            }
            0x05 => {
                self.drop_kind(Dropped::Answerback);
                true
            }
            0x00..=0x1f => {
                out.push(b);
                true
            }
            0x80..=0x9f => {
                self.c1(b, out);
                true
            }
            0xc2 => {
                self.c2 = true;
                true
            }
            _ => false,
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.utf8_left > 0 {
            if (b & 0xc0) == 0x80 {
                self.utf8_left -= 1;
                out.push(b);
                return;
            }
            // An invalid sequence: the terminal shows a replacement; go on with this byte.
            self.utf8_left = 0;
        }
        match b {
            0x1b => {
                self.state = State::Esc;
                self.seq.clear();
            }
            0x05 => self.drop_kind(Dropped::Answerback),
            0xc2 => {
                self.c2 = true;
                self.utf8_left = 1;
            }
            0x80..=0x9f => self.c1(b, out),
            0xc3..=0xdf => {
                self.utf8_left = 1;
                out.push(b);
            }
            0xe0..=0xef => {
                self.utf8_left = 2;
                out.push(b);
            }
            0xf0..=0xf4 => {
                self.utf8_left = 3;
                out.push(b);
            }
            _ => out.push(b),
        }
    }

    /// A C1 control: dropped; the ones that open a sequence open it (and what it opens is
    /// filtered like its 7-bit form, without the C1 byte ever reaching the terminal).
    fn c1(&mut self, b: u8, out: &mut Vec<u8>) {
        self.drop_kind(Dropped::C1);
        self.utf8_left = 0;
        let _ = out;
        match b {
            0x9b => {
                // CSI: its parameters would be shown as text; swallow them too.
                self.seq.clear();
                self.state = State::CsiDrop;
            }
            0x9d | 0x90 | 0x9f | 0x9e | 0x98 => {
                self.str_kind = match b {
                    0x9d => b']',
                    0x90 => b'P',
                    0x9f => b'_',
                    0x9e => b'^',
                    _ => b'X',
                };
                self.seq.clear();
                self.state = State::Str;
                self.str_start_kind();
            }
            0x9c if self.state == State::Str => self.end_str(),
            _ => {}
        }
    }

    /// DEL and non-ASCII bytes inside an escape sequence. Terminals ignore DEL there (the
    /// sequence goes on), so it is dropped and the sequence goes on here too. A byte of 0x80
    /// and above is read by some terminals as its ASCII twin (xterm maps the upper half of
    /// its parse tables onto the lower): the whole sequence is dropped and the byte taken as
    /// text. Returns whether `b` was handled.
    fn odd_in_seq(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match b {
            0x7f => true,
            0x80.. => {
                self.drop_kind(Dropped::Malformed);
                self.seq.clear();
                self.state = State::Ground;
                self.ground(b, out);
                true
            }
            _ => false,
        }
    }

    fn esc(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.control_in_seq(b, out) || self.odd_in_seq(b, out) {
            return;
        }
        self.seq.clear();
        self.seq.push(0x1b);
        match b {
            b'[' => {
                self.seq.push(b);
                self.state = State::Csi;
            }
            b']' | b'P' | b'_' | b'^' | b'X' => {
                self.str_kind = b;
                self.seq.clear();
                self.state = State::Str;
                self.str_start_kind();
            }
            b'%' => {
                self.drop_kind(Dropped::Encoding);
                self.seq.clear();
                self.state = State::EscDrop;
            }
            0x20..=0x2f => {
                self.seq.push(b);
                self.state = State::EscInter;
            }
            _ => {
                self.seq.push(b);
                self.emit_esc(out);
            }
        }
    }

    /// The kind of a string sequence just opened (the OSC number is read at its end).
    fn str_start_kind(&mut self) {
        let k = match self.str_kind {
            b'P' => Dropped::Dcs,
            b'_' => Dropped::Apc,
            b'^' => Dropped::Pm,
            b'X' => Dropped::Sos,
            _ => return,
        };
        self.drop_kind(k);
    }

    fn end_str(&mut self) {
        if self.str_kind == b']' {
            let num: Vec<u8> = self
                .seq
                .iter()
                .copied()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let k = match &num[..] {
                b"52" => Dropped::Clipboard,
                b"0" | b"1" | b"2" => Dropped::Title,
                _ => Dropped::Osc,
            };
            self.drop_kind(k);
        }
        self.seq.clear();
        self.state = State::Ground;
    }

    fn push_seq(&mut self, b: u8) {
        if self.seq.len() < MAX_SEQ {
            self.seq.push(b);
        }
    }

    fn emit_esc(&mut self, out: &mut Vec<u8>) {
        match self.seq.get(1) {
            Some(b'=') => self.modes.app_keypad = true,
            Some(b'>') => self.modes.app_keypad = false,
            Some(b'c') => self.modes = Modes::default(),
            _ => {}
        }
        out.extend_from_slice(&self.seq);
        self.seq.clear();
        self.state = State::Ground;
    }

    /// `ESC [ params intermediates final` complete at the start of `s`, with nothing unusual
    /// inside (the byte-by-byte path handles everything else): judged and emitted (or
    /// dropped) as [`Filter::emit_csi`] would. Returns how many bytes it took.
    fn csi_whole(&mut self, s: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        if s.len() < 3 || s[1] != b'[' {
            return None;
        }
        let mut j = 2;
        while j < s.len() && j < MAX_SEQ && (0x30..=0x3f).contains(&s[j]) {
            j += 1;
        }
        while j < s.len() && j < MAX_SEQ && (0x20..=0x2f).contains(&s[j]) {
            j += 1;
        }
        if j >= s.len() || j >= MAX_SEQ || !(0x40..=0x7e).contains(&s[j]) {
            return None;
        }
        let seq = &s[..=j];
        if self.judge_csi(seq) {
            out.extend_from_slice(seq);
        }
        Some(j + 1)
    }

    /// Whether a complete CSI sequence (`ESC [ … final`) may pass; the modes it sets are
    /// remembered, what it drops is named.
    fn judge_csi(&mut self, seq: &[u8]) -> bool {
        let fin = seq[seq.len() - 1];
        if fin == b't' {
            self.drop_kind(Dropped::WindowOp);
            false
        } else if fin == b'y' && seq.contains(&b'*') {
            // DECRQCRA: the terminal answers with a checksum of screen cells, which can read
            // back what Ward printed (the session word).
            self.drop_kind(Dropped::ScreenRead);
            false
        } else if matches!(
            (fin, &seq[2..seq.len() - 1]),
            (b'q', b">" | b">0") | (b'c', b"=" | b"=0")
        ) {
            // XTVERSION and DA3: the terminal answers with its name and version or a unit id
            // that tells one terminal from another, a fingerprint to aim an exploit of that
            // terminal's parser at. The answers to state queries the agent's screen needs
            // (cursor position, status, DA1/DA2, mode reports) carry none of the agent's bytes
            // and reach only the agent's own terminal; they pass.
            self.drop_kind(Dropped::Identity);
            false
        } else {
            self.track(fin, &seq[2..seq.len() - 1]);
            true
        }
    }

    fn emit_csi(&mut self, out: &mut Vec<u8>) {
        self.state = State::Ground;
        // The sequence is `ESC [ params final` (the C1 CSI form never gets here).
        let seq = std::mem::take(&mut self.seq);
        if self.judge_csi(&seq) {
            out.extend_from_slice(&seq);
        }
        self.seq = seq;
        self.seq.clear();
    }

    /// Remember the modes that outlive the agent's screen.
    fn track(&mut self, fin: u8, params: &[u8]) {
        match (fin, params.first()) {
            (b'h' | b'l', Some(b'?')) => {
                let on = fin == b'h';
                for p in params[1..].split(|&c| c == b';') {
                    let Some(n) = std::str::from_utf8(p)
                        .ok()
                        .and_then(|s| s.parse::<u16>().ok())
                    else {
                        continue;
                    };
                    let m = &mut self.modes;
                    match n {
                        47 | 1047 | 1049 => m.alt_screen = on,
                        25 => m.cursor_hidden = !on,
                        1 => m.app_cursor = on,
                        2004 => m.bracketed_paste = on,
                        1004 => m.focus_events = on,
                        2026 => m.sync_output = on,
                        9 | 1000 | 1001 | 1002 | 1003 | 1005 | 1006 | 1007 | 1015 | 1016 => {
                            m.mouse.retain(|&x| x != n);
                            if on {
                                m.mouse.push(n);
                            }
                        }
                        _ => {}
                    }
                }
            }
            (b'u', Some(b'>')) => self.modes.keyboard = true,
            (b'm', Some(b'>')) => {
                self.modes.keyboard = true;
                if params.starts_with(b">4") {
                    let mut seq = String::from("\x1b[");
                    seq.push_str(&String::from_utf8_lossy(params));
                    seq.push('m');
                    self.modes.modify_other_keys = Some(seq);
                }
            }
            (b'p', Some(b'!')) => {
                // DECSTR resets the cursor, keys and keypad.
                self.modes.cursor_hidden = false;
                self.modes.app_cursor = false;
                self.modes.app_keypad = false;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Vec<Dropped>) {
        let mut f = Filter::new();
        let mut out = Vec::new();
        f.feed(input, &mut out);
        (out, f.dropped().to_vec())
    }

    /// The same input fed one byte at a time gives the same output.
    fn bytewise(input: &[u8]) -> Vec<u8> {
        let mut f = Filter::new();
        let mut out = Vec::new();
        for b in input {
            f.feed(std::slice::from_ref(b), &mut out);
        }
        out
    }

    #[test]
    fn text_and_screen_sequences_pass_unchanged() {
        let s = "plain text\r\n\x1b[1;31mred\x1b[0m \x1b[2J\x1b[H\x1b(0q\x1b(B héllo ✓ 日本 🦀\x1b[?1049h\x1b[6n\x1b[c\x1b7\x1b8".as_bytes();
        let (out, dropped) = run(s);
        assert_eq!(out, s);
        assert!(dropped.is_empty());
        assert_eq!(bytewise(s), s);
    }

    #[test]
    fn what_reaches_beyond_the_screen_is_dropped_and_named() {
        let cases: &[(&[u8], Dropped)] = &[
            (b"a\x1b]52;c;ZXZpbA==\x07b", Dropped::Clipboard),
            (b"a\x1b]52;c;?\x1b\\b", Dropped::Clipboard),
            (b"a\x1b]0;owned\x07b", Dropped::Title),
            (b"a\x1b]2;owned\x1b\\b", Dropped::Title),
            (b"a\x1b]8;;http://evil/\x07b", Dropped::Osc),
            (b"a\x1b]11;?\x07b", Dropped::Osc),
            (b"a\x1bP$qm\x1b\\b", Dropped::Dcs),
            (b"a\x1b_Gf=100;AAAA\x1b\\b", Dropped::Apc),
            (b"a\x1b[21tb", Dropped::WindowOp),
            (b"a\x1b[3;1;1tb", Dropped::WindowOp),
            (b"a\x05b", Dropped::Answerback),
            // DEL inside a sequence: terminals ignore it and go on (xterm, VTE, tmux).
            (b"a\x1b\x7f]52;c;eA==\x07b", Dropped::Clipboard),
            (b"a\x1b\x7fP$qm\x1b\\b", Dropped::Dcs),
            (b"a\x1b[2\x7f1tb", Dropped::WindowOp),
            (b"a\x1b%@b", Dropped::Encoding),
            (b"a\x1b[1;1;2;2*yb", Dropped::ScreenRead),
            (b"a\x1b[>qb", Dropped::Identity),
            (b"a\x1b[>0qb", Dropped::Identity),
            (b"a\x1b[=cb", Dropped::Identity),
            (b"a\x9b2Jb", Dropped::C1),
            (b"a\xc2\x9d52;c;eA==\x07b", Dropped::C1),
        ];
        for (input, kind) in cases {
            let (out, dropped) = run(input);
            assert_eq!(
                out,
                b"ab",
                "{input:?} -> {:?}",
                String::from_utf8_lossy(&out)
            );
            assert!(dropped.contains(kind), "{input:?}: {dropped:?}");
            assert_eq!(bytewise(input), b"ab", "{input:?} byte by byte");
        }
    }

    #[test]
    fn upper_half_bytes_end_a_sequence_as_text() {
        // xterm reads `\xc3\xb4` (ô) in a CSI as `t`: the sequence is dropped, ô is text.
        let input = "a\x1b[21ôb".as_bytes();
        let (out, dropped) = run(input);
        assert_eq!(out, "aôb".as_bytes());
        assert!(dropped.contains(&Dropped::Malformed));
        assert_eq!(bytewise(input), out);
        let (out, _) = run("a\x1bèb".as_bytes());
        assert_eq!(out, "aèb".as_bytes());
    }

    #[test]
    fn tmux_pass_through_cannot_smuggle_a_clipboard_write() {
        // In a DCS, ESC not followed by `\` ends it (as in a terminal): the OSC that follows
        // is filtered on its own; what is left is a lone, harmless ST.
        let input = b"a\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\b";
        let (out, dropped) = run(input);
        assert_eq!(out, b"a\x1b\\b");
        assert!(dropped.contains(&Dropped::Dcs) && dropped.contains(&Dropped::Clipboard));
        assert_eq!(bytewise(input), out);
    }

    #[test]
    fn a_dropped_kind_is_named_once() {
        let mut f = Filter::new();
        let mut out = Vec::new();
        f.feed(b"\x1b]0;a\x07\x1b]0;b\x07", &mut out);
        assert_eq!(f.take_new(), [Dropped::Title]);
        f.feed(b"\x1b]2;c\x07", &mut out);
        assert!(f.take_new().is_empty());
    }

    #[test]
    fn nothing_incomplete_is_passed() {
        let mut f = Filter::new();
        let mut out = Vec::new();
        // Half a CSI, half a UTF-8 character: held back until completed.
        f.feed(b"x\x1b[3", &mut out);
        assert_eq!(out, b"x");
        f.feed(b"1mA\xe2\x9c", &mut out);
        assert_eq!(out, b"x\x1b[31mA");
        f.feed(b"\x93", &mut out);
        assert_eq!(out, "x\x1b[31mA✓".as_bytes());
    }

    #[test]
    fn overlong_sequences_are_dropped() {
        let mut s = b"a\x1b[".to_vec();
        s.extend(std::iter::repeat_n(b'1', 10_000));
        s.extend(b"mb");
        let (out, dropped) = run(&s);
        assert_eq!(out, b"ab");
        assert!(dropped.contains(&Dropped::Overlong));
    }

    #[test]
    fn modes_are_tracked() {
        let mut f = Filter::new();
        let mut out = Vec::new();
        f.feed(
            b"\x1b[?1049h\x1b[?25l\x1b[?1000;1006h\x1b[?2004h\x1b=",
            &mut out,
        );
        assert!(f.modes.alt_screen && f.modes.cursor_hidden && f.modes.bracketed_paste);
        assert_eq!(f.modes.mouse, [1000, 1006]);
        assert!(f.modes.app_keypad);
        assert_eq!(
            f.modes.restore(),
            "\x1b[?25l\x1b=\x1b[?2004h\x1b[?1000h\x1b[?1006h"
        );
        f.feed(b"\x1b[?1049l\x1b[?1000l", &mut out);
        assert!(!f.modes.alt_screen);
        assert_eq!(f.modes.mouse, [1006]);
    }

    #[test]
    fn never_panics_and_never_passes_a_live_string_sequence() {
        // A cheap exhaustive-ish check: every pair of interesting bytes around an OSC 52.
        let interesting = [
            0x1b, 0x07, 0x18, 0x9c, 0xc2, 0x9d, b']', b'\\', b'P', b'[', b'5', b'2',
        ];
        for &a in &interesting {
            for &b in &interesting {
                let input = [
                    a, b, 0x1b, b']', b'5', b'2', b';', b'c', b';', b'x', 0x07, a, b,
                ];
                let (out, _) = run(&input);
                assert!(!out.windows(3).any(|w| w == b"]52"), "{input:?} -> {out:?}");
            }
        }
    }
}

//! Finding every rule keyword in a buffer, fast: a bucketed shift-or over pairs of bytes (the
//! idea of Hyperscan's FDR), then an exact check of the candidates.
//!
//! Why not an Aho-Corasick DFA: with ~460 keywords its hot states outgrow the L1 cache and it
//! runs at ~300 MB/s here, below what the scanner must do overall. Shift-or keeps one 64-bit
//! state in a register: per byte, one lookup in a 32 KiB table (by the classes of this byte and
//! the one before), a shift and an or. Eight buckets of keywords share the state, eight bits
//! each (one per position of a keyword's first eight bytes); a bucket whose top bit is clear
//! at a byte may have a keyword ending there, and only then are its keywords compared.
//!
//! Every occurrence of every keyword is reported (overlapping ones too), ASCII
//! case-insensitively, like an overlapping Aho-Corasick search.

/// Bytes of a keyword the shift-or looks at (the rest is compared on a candidate).
const WIDTH: usize = 8;
const BUCKETS: usize = 8;
/// Classes: 0 = any byte no keyword uses; letters case-folded; each other keyword byte its own
/// (up to 63; beyond that they share, which only costs more candidates).
const CLASSES: usize = 64;
/// The last row: a zero bit there is a bucket with a possible keyword ending here.
const TOP: u64 = 0xFF << 56;

pub(crate) struct Keywords {
    class: [u8; 256],
    /// Index `prev_class << 6 | class`: for each (row, bucket) bit, 0 = some keyword of the
    /// bucket allows this pair at this row.
    table: Vec<u64>,
    /// The keywords, lower-case.
    words: Vec<Vec<u8>>,
    /// Index `bucket << 12 | class(second-last window byte) << 6 | class(last window byte)`
    /// (second-last = [`ANY`] for one-byte windows): a range of `ids`.
    slots: Vec<(u32, u32)>,
    ids: Vec<u32>,
}

const ANY: usize = CLASSES - 1;

impl Keywords {
    pub(crate) fn new(words: &[Vec<u8>]) -> Keywords {
        let words: Vec<Vec<u8>> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        let mut class = [0u8; 256];
        let mut next = 1usize;
        for w in &words {
            for &b in w {
                if class[b as usize] == 0 {
                    // Class ANY is reserved for "no second-last byte"; past it, share.
                    let c = if next < ANY {
                        next
                    } else {
                        1 + next % (ANY - 1)
                    };
                    next += 1;
                    class[b as usize] = c as u8;
                    if b.is_ascii_lowercase() {
                        class[b.to_ascii_uppercase() as usize] = c as u8;
                    }
                }
            }
        }
        // Buckets: keywords sorted by window length, cut into equal runs (short windows
        // leave rows unconstrained; keeping them together spares the other buckets).
        let mut order: Vec<usize> = (0..words.len()).collect();
        order.sort_by_key(|&i| (words[i].len().min(WIDTH), words[i].clone()));
        // Buckets by window length: a short keyword leaves the rows before it unconstrained
        // for its whole bucket, so short ones must not share with long ones. Shares of the 8
        // buckets: windows of 1-2 bytes: 1; 3: 2; 4: 2; 5 and more: 3 (a group with no
        // keywords gives its share to the longest group that has some). Measured on the bench
        // corpus: 167,510 candidates for 68,265 keyword occurrences.
        let groups: [(usize, usize, usize); 4] = [(1, 2, 1), (3, 3, 2), (4, 4, 2), (5, WIDTH, 3)];
        let mut bucket = vec![0usize; words.len()];
        let mut first = 0;
        let members: Vec<Vec<usize>> = groups
            .iter()
            .map(|&(lo, hi, _)| {
                order
                    .iter()
                    .copied()
                    .filter(|&i| (lo..=hi).contains(&words[i].len().min(WIDTH)))
                    .collect()
            })
            .collect();
        let spare: usize = groups
            .iter()
            .zip(&members)
            .filter(|(_, m)| m.is_empty())
            .map(|(g, _)| g.2)
            .sum();
        let last_used = members.iter().rposition(|m| !m.is_empty()).unwrap_or(0);
        for (g, (&(_, _, share), m)) in groups.iter().zip(&members).enumerate() {
            if m.is_empty() {
                continue;
            }
            let n = if g == last_used { share + spare } else { share };
            let per = m.len().div_ceil(n).max(1);
            for (j, &i) in m.iter().enumerate() {
                bucket[i] = first + j / per;
            }
            first += n;
        }
        let mut table = vec![!0u64; CLASSES * CLASSES];
        let mut keyed: Vec<(usize, u32)> = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let k = bucket[i];
            let win = &w[..w.len().min(WIDTH)];
            let m = win.len();
            let off = WIDTH - m;
            let bit = |row: usize| !(1u64 << (row * BUCKETS + k));
            for row in 0..off {
                for e in table.iter_mut() {
                    *e &= bit(row);
                }
            }
            for (j, &b) in win.iter().enumerate() {
                let c = class[b as usize] as usize;
                if j == 0 {
                    for prev in 0..CLASSES {
                        table[prev << 6 | c] &= bit(off);
                    }
                } else {
                    let p = class[win[j - 1] as usize] as usize;
                    table[p << 6 | c] &= bit(off + j);
                }
            }
            let last = class[win[m - 1] as usize] as usize;
            let second = if m >= 2 {
                class[win[m - 2] as usize] as usize
            } else {
                ANY
            };
            keyed.push((k << 12 | second << 6 | last, i as u32));
        }
        keyed.sort();
        let mut slots = vec![(0u32, 0u32); BUCKETS << 12];
        let mut ids = Vec::with_capacity(keyed.len());
        let mut at = 0;
        while at < keyed.len() {
            let key = keyed[at].0;
            let start = ids.len() as u32;
            while at < keyed.len() && keyed[at].0 == key {
                ids.push(keyed[at].1);
                at += 1;
            }
            slots[key] = (start, ids.len() as u32);
        }
        Keywords {
            class,
            table,
            words,
            slots,
            ids,
        }
    }

    /// Every occurrence whose first [`WIDTH`] bytes end in `from..to`, as (keyword, start,
    /// end), appended to `out`. Keywords may extend past `to` (they are checked against all of
    /// `hay`); calling it for consecutive ranges finds each occurrence once, with memory
    /// bounded by the range.
    pub(crate) fn find(&self, hay: &[u8], from: usize, to: usize, out: &mut Vec<(u32, u32, u32)>) {
        let table: &[u64; CLASSES * CLASSES] = self.table[..].try_into().expect("table size");
        let step = |d: u64, prev: &mut usize, b: u8| {
            let c = self.class[b as usize] as usize;
            let d = (d << BUCKETS) | table[(*prev << 6 | c) & (CLASSES * CLASSES - 1)];
            *prev = c;
            d
        };
        // Start WIDTH bytes early to fill the rows; note only from `from` on.
        let base = from.saturating_sub(WIDTH);
        let seg = &hay[base..to];
        // Candidates are noted in the loop and checked after it: the loop keeps its state in
        // registers. Two halves run interleaved (two independent shift chains, which the CPU
        // overlaps); the second starts WIDTH bytes early to fill its rows and notes only from
        // the middle on. Both start "all rows satisfied" (d = 0): a keyword at the very start
        // has no bytes before it to fill its unconstrained rows (the check sorts out the rest).
        let n = seg.len();
        let mid = if n >= 4096 { n / 2 } else { n };
        let b0 = mid.saturating_sub(WIDTH);
        let mut ca: Vec<(u32, u8)> = Vec::new();
        let mut cb: Vec<(u32, u8)> = Vec::new();
        let (mut da, mut db) = (0u64, 0u64);
        let (mut pa, mut pb) = (0usize, 0usize);
        let both = mid.min(n - b0);
        let (left, right) = (&seg[..both], &seg[b0..b0 + both]);
        for (i, (&x, &y)) in left.iter().zip(right).enumerate() {
            da = step(da, &mut pa, x);
            db = step(db, &mut pb, y);
            // A zero in either top row is a zero in their AND: one test for both.
            if (da & db) & TOP != TOP {
                if da & TOP != TOP {
                    ca.push((i as u32, (!da >> 56) as u8));
                }
                if db & TOP != TOP && b0 + i >= mid {
                    cb.push(((b0 + i) as u32, (!db >> 56) as u8));
                }
            }
        }
        // The rest of the first half (when the second was shorter) and of the second.
        for (i, &x) in seg.iter().enumerate().take(mid).skip(both) {
            da = step(da, &mut pa, x);
            if da & TOP != TOP {
                ca.push((i as u32, (!da >> 56) as u8));
            }
        }
        if mid < n {
            for (i, &y) in seg.iter().enumerate().skip(b0 + both) {
                db = step(db, &mut pb, y);
                if db & TOP != TOP && i >= mid {
                    cb.push((i as u32, (!db >> 56) as u8));
                }
            }
        }
        for (i, buckets) in ca.into_iter().chain(cb) {
            let at = base + i as usize;
            if at >= from {
                self.check(hay, at, buckets, out);
            }
        }
    }

    #[cfg(test)]
    fn each(&self, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        // In uneven pieces, as the scanner calls it.
        let mut v = Vec::new();
        let mut from = 0usize;
        for size in [5usize, 1, 4100, 70, usize::MAX].iter().cycle() {
            let to = from.saturating_add(*size).min(hay.len());
            self.find(hay, from, to, &mut v);
            from = to;
            if from >= hay.len() {
                break;
            }
        }
        for (id, s, e) in v {
            f(id as usize, s as usize, e as usize);
        }
    }

    #[cold]
    #[inline(never)]
    fn check(&self, hay: &[u8], i: usize, buckets: u8, out: &mut Vec<(u32, u32, u32)>) {
        let last = self.class[hay[i] as usize] as usize;
        let second = if i > 0 {
            self.class[hay[i - 1] as usize] as usize
        } else {
            ANY
        };
        for k in 0..BUCKETS {
            if buckets & (1 << k) == 0 {
                continue;
            }
            for key in [k << 12 | second << 6 | last, k << 12 | ANY << 6 | last] {
                let (a, b) = self.slots[key];
                for &id in &self.ids[a as usize..b as usize] {
                    let w = &self.words[id as usize];
                    let m = w.len().min(WIDTH);
                    let Some(start) = (i + 1).checked_sub(m) else {
                        continue;
                    };
                    let end = start + w.len();
                    if end <= hay.len() && hay[start..end].eq_ignore_ascii_case(w) {
                        out.push((id, start as u32, end as u32));
                    }
                }
                if second == ANY {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(words: &[Vec<u8>], hay: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        for (id, w) in words.iter().enumerate() {
            for s in 0..hay.len() {
                if s + w.len() <= hay.len() && hay[s..s + w.len()].eq_ignore_ascii_case(w) {
                    v.push((id, s, s + w.len()));
                }
            }
        }
        v.sort();
        v
    }

    #[test]
    fn finds_exactly_what_a_naive_search_finds() {
        let words: Vec<Vec<u8>> = [
            "@",
            "q~",
            "pat",
            "token",
            "secret",
            "api_key",
            "ghp_",
            "sk-ant-api",
            "xoxb-",
            "hooks.slack.com/services/",
            "-----begin rsa private key",
            "eyj",
            "aa",
            "aaa",
            "a3-",
            "://",
            "ss#",
            "tok",
            "oke",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let k = Keywords::new(&words);
        let hays: Vec<&[u8]> = vec![
            b"my TOKEN is ghp_abc, Secret: x; api_KEY=1 pat path",
            b"aaaa@b.c q~ https://hooks.slack.com/services/T1 -----BEGIN RSA PRIVATE KEY",
            b"sk-ant-api03 xoxb-1 eyJ a3-x ss# tokenoken",
            b"",
            b"a",
            b"@",
        ];
        for hay in hays {
            let mut got = Vec::new();
            k.each(hay, |id, s, e| got.push((id, s, e)));
            got.sort();
            assert_eq!(got, naive(&words, hay), "{}", String::from_utf8_lossy(hay));
        }
    }

    #[test]
    fn random_keywords_and_texts_agree_with_a_naive_search() {
        // A small alphabet makes overlaps, shared prefixes and near misses common.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let alphabet = b"abAB_-.0@";
        for _ in 0..300 {
            let words: Vec<Vec<u8>> = (0..1 + next(40))
                .map(|_| {
                    (0..1 + next(12))
                        .map(|_| {
                            alphabet[next(alphabet.len() as u64) as usize].to_ascii_lowercase()
                        })
                        .collect()
                })
                .collect();
            // Long ones (>= 4096) take the two-halves path.
            let len = if next(4) == 0 {
                4000 + next(3000)
            } else {
                next(300)
            };
            let hay: Vec<u8> = (0..len)
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect();
            let k = Keywords::new(&words);
            let mut got = Vec::new();
            k.each(&hay, |id, s, e| got.push((id, s, e)));
            got.sort();
            // Duplicate keywords: the naive search reports each copy; so does `each`.
            assert_eq!(
                got,
                naive(&words, &hay),
                "{words:?} in {:?}",
                String::from_utf8_lossy(&hay)
            );
        }
    }

    #[test]
    fn more_distinct_bytes_than_classes_still_finds_everything() {
        let words: Vec<Vec<u8>> = (0u8..100)
            .map(|i| vec![b'!' + (i % 90), b'x', 200 - i])
            .collect();
        let k = Keywords::new(&words);
        let hay: Vec<u8> = words
            .iter()
            .flat_map(|w| w.iter().copied().chain([b' ']))
            .collect();
        let mut got = Vec::new();
        k.each(&hay, |id, s, e| got.push((id, s, e)));
        got.sort();
        assert_eq!(got, naive(&words, &hay));
    }
}

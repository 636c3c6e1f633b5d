//! Finding every rule keyword in a buffer, fast: a bucketed shift-or over pairs of bytes (the
//! idea of Hyperscan's FDR), then an exact check of the candidates.
//!
//! Why not an Aho-Corasick DFA: with ~460 keywords its hot states outgrow the L1 cache and it
//! runs at ~300 MB/s here, below what the scanner must do overall. Shift-or: per byte, one
//! 64-bit entry of a table indexed by this byte and the one before (512 KiB; the pairs that
//! text uses stay in the cache). Eight buckets of keywords share an entry, eight bits each
//! (one per position of a keyword's first eight bytes); a bucket whose top bit is clear at a
//! byte, once the entries of the seven bytes before are shifted in, may have a keyword ending
//! there, and only then are its keywords compared. The entries of eight bytes are combined at
//! once in a 128-bit register (see [`Keywords::find`]): ~3 GB/s here, against ~1.5 GB/s for
//! the byte-by-byte shift chain and ~0.9 GB/s when the table was indexed by byte classes.
//!
//! Every occurrence of every keyword is reported (overlapping ones too), ASCII
//! case-insensitively, like an overlapping Aho-Corasick search.

/// Bytes of a keyword the shift-or looks at (the rest is compared on a candidate).
const WIDTH: usize = 8;
const BUCKETS: usize = 8;
/// Classes (for the exact check's slots): 0 = any byte no keyword uses; letters case-folded;
/// each other keyword byte its own (up to 63; beyond that they share, which only costs more
/// comparisons).
const CLASSES: usize = 64;

pub(crate) struct Keywords {
    class: [u8; 256],
    /// Index `byte << 8 | previous byte`: for each (row, bucket) bit, 0 = some keyword of the
    /// bucket allows this pair at this row (letters in both cases).
    table: Vec<u64>,
    /// The keywords, lower-case.
    words: Vec<Vec<u8>>,
    /// The longest keyword's length.
    longest: usize,
    /// Index `bucket << 12 | class(second-last window byte) << 6 | class(last window byte)`
    /// (second-last = [`ANY`] for one-byte windows): a range of `ids`.
    slots: Vec<(u32, u32)>,
    ids: Vec<u32>,
}

const ANY: usize = CLASSES - 1;
/// Entries of the table: every pair of bytes.
const PAIRS: usize = 1 << 16;

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
        // The table is indexed by the raw pair of bytes (this << 8 | previous): no class lookup
        // in the loop. Letters are entered in both cases.
        let cases = |b: u8| -> [u8; 2] { [b.to_ascii_lowercase(), b.to_ascii_uppercase()] };
        let mut table = vec![!0u64; PAIRS];
        // Rows before a short keyword's window are unconstrained for its bucket.
        let mut free = !0u64;
        let mut keyed: Vec<(usize, u32)> = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let k = bucket[i];
            let win = &w[..w.len().min(WIDTH)];
            let m = win.len();
            let off = WIDTH - m;
            let bit = |row: usize| !(1u64 << (row * BUCKETS + k));
            for row in 0..off {
                free &= bit(row);
            }
            for (j, &b) in win.iter().enumerate() {
                for c in cases(b) {
                    if j == 0 {
                        for prev in 0..256usize {
                            table[(c as usize) << 8 | prev] &= bit(off);
                        }
                    } else {
                        for p in cases(win[j - 1]) {
                            table[(c as usize) << 8 | p as usize] &= bit(off + j);
                        }
                    }
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
        if free != !0 {
            for e in table.iter_mut() {
                *e &= free;
            }
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
            longest: words.iter().map(Vec::len).max().unwrap_or(0),
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
        #[allow(clippy::expect_used)] // the table is made with PAIRS entries
        let table: &[u64; PAIRS] = self.table[..].try_into().expect("table size");
        // Start WIDTH bytes early to fill the rows; note only from `from` on.
        let base = from.saturating_sub(WIDTH);
        let seg = &hay[base..to];
        let n = seg.len();
        // Eight places at a time, with no chain from one byte to the next (Hyperscan's FDR
        // does the same): the table entry of the place j of a block is shifted left by
        // 7 - j bytes into a 128-bit sum, so that each row of it lands in the byte of the
        // place where a keyword using that row would end. Bytes 7..14 of the sum are then
        // the top rows of the block's eight places (the place j at byte 14 - j), bytes 0..6
        // the partial rows of the next block's places, carried over (shifted up 8 bytes).
        // Everything starts "all rows satisfied" (zero): a keyword at the very start has no
        // bytes before it to fill its unconstrained rows (the check sorts out the rest).
        //
        // Candidates are noted here and checked after the loop: the loop keeps its state in
        // registers.
        let mut cand: Vec<(u32, u8)> = Vec::new();
        // `tops`: byte 7 - j is the top row of place p + j.
        let note = |p: usize, tops: u64, valid: usize, cand: &mut Vec<(u32, u8)>| {
            if tops != !0 {
                for j in 0..valid {
                    let buckets = !(tops >> (8 * (7 - j))) as u8;
                    if buckets != 0 {
                        cand.push(((p + j) as u32, buckets));
                    }
                }
            }
        };
        // Entry of a place (the byte before the first place taken as 0; none past the end).
        let entry = |at: usize| -> u64 {
            if at >= n {
                return !0;
            }
            let prev = if at == 0 { 0 } else { seg[at - 1] as usize };
            table[(seg[at] as usize) << 8 | prev]
        };
        // A block by place: the first (no byte before it) and the last (may be short).
        let slow = |p: usize, carry: u64| -> (u64, u64) {
            let mut sum = (carry as u128) << 64;
            for j in 0..WIDTH {
                sum |= (entry(p + j) as u128) << (8 * (7 - j));
            }
            ((sum >> 56) as u64, sum as u64)
        };
        let mut p = 0;
        let mut carry = 0u64;
        if n > 0 {
            let (tops, c) = slow(0, carry);
            note(0, tops, WIDTH.min(n), &mut cand);
            carry = c;
            p = WIDTH;
        }
        // Blocks in batches, their top rows noted after each batch.
        let mut tops = [0u64; 256];
        while p + WIDTH <= n {
            let blocks = ((n - p) / WIDTH).min(tops.len());
            carry = blocks8(table, &seg[p - 1..p + blocks * WIDTH], carry, &mut tops);
            for (k, &t) in tops[..blocks].iter().enumerate() {
                note(p + k * WIDTH, t, WIDTH, &mut cand);
            }
            p += blocks * WIDTH;
        }
        if p < n {
            let (tops, _) = slow(p, carry);
            note(p, tops, n - p, &mut cand);
        }
        for (i, buckets) in cand {
            let at = base + i as usize;
            if at >= from {
                self.check(hay, at, buckets, out);
            }
        }
    }

    /// The longest keyword's length.
    pub(crate) fn longest(&self) -> usize {
        self.longest
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

/// The eight-place blocks of `bytes[1..]` (`bytes[0]` is the byte before the first place;
/// `bytes.len() - 1` is a multiple of eight): the top rows of block `k` in `tops[k]`
/// (byte 7 - j for its place j); returns the carry. Nothing is called in the loop, so the
/// state stays in registers.
#[cfg(target_arch = "x86_64")]
fn blocks8(table: &[u64; PAIRS], bytes: &[u8], carry: u64, tops: &mut [u64]) -> u64 {
    use std::arch::x86_64::*;
    let blocks = (bytes.len() - 1) / WIDTH;
    assert!(tops.len() >= blocks && bytes.len() == blocks * WIDTH + 1);
    let ptr = bytes.as_ptr();
    let e = |at: usize| -> __m128i {
        // SAFETY: `at + 1 < bytes.len()` (asserted above for every block); u16 reads are
        // unaligned reads of two bytes. SSE2 is part of x86_64; the load reads the 8 bytes of
        // one table entry (a u16 index is always inside the table).
        unsafe {
            let i = u16::from_le(std::ptr::read_unaligned(ptr.add(at) as *const u16)) as usize;
            _mm_loadl_epi64(table.as_ptr().add(i) as *const __m128i)
        }
    };
    // SAFETY: SSE2 is part of x86_64 (register operations only).
    unsafe {
        let mut carry = _mm_slli_si128::<8>(_mm_cvtsi64_si128(carry as i64));
        for (k, top) in tops.iter_mut().take(blocks).enumerate() {
            let at = k * WIDTH;
            let a = _mm_or_si128(_mm_slli_si128::<7>(e(at)), _mm_slli_si128::<6>(e(at + 1)));
            let b = _mm_or_si128(
                _mm_slli_si128::<5>(e(at + 2)),
                _mm_slli_si128::<4>(e(at + 3)),
            );
            let c = _mm_or_si128(
                _mm_slli_si128::<3>(e(at + 4)),
                _mm_slli_si128::<2>(e(at + 5)),
            );
            let d = _mm_or_si128(_mm_slli_si128::<1>(e(at + 6)), e(at + 7));
            let sum = _mm_or_si128(_mm_or_si128(carry, _mm_or_si128(a, b)), _mm_or_si128(c, d));
            *top = _mm_cvtsi128_si64(_mm_srli_si128::<7>(sum)) as u64;
            carry = _mm_slli_si128::<8>(sum);
        }
        _mm_cvtsi128_si64(_mm_srli_si128::<8>(carry)) as u64
    }
}

/// The same, portably: the two halves of the sum computed apart.
#[cfg(not(target_arch = "x86_64"))]
use blocks8_portable as blocks8;

#[cfg(any(test, not(target_arch = "x86_64")))]
fn blocks8_portable(table: &[u64; PAIRS], bytes: &[u8], mut carry: u64, tops: &mut [u64]) -> u64 {
    let blocks = (bytes.len() - 1) / WIDTH;
    for (k, top) in tops.iter_mut().take(blocks).enumerate() {
        let w = &bytes[k * WIDTH..k * WIDTH + WIDTH + 1];
        let mut t = carry << 8;
        let mut lo = 0;
        for j in 0..WIDTH {
            let x = table[u16::from_le_bytes([w[j], w[j + 1]]) as usize];
            t |= x >> (8 * j);
            lo |= x << (8 * (7 - j));
        }
        *top = t;
        carry = lo;
    }
    carry
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
    fn the_simd_blocks_agree_with_the_portable_ones() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Entries with mostly ones (as real tables have), and some zero bytes.
        let table: Vec<u64> = (0..PAIRS).map(|_| next() | next() | next()).collect();
        let table: &[u64; PAIRS] = table[..].try_into().unwrap();
        for blocks in [1usize, 2, 7, 64] {
            let bytes: Vec<u8> = (0..blocks * WIDTH + 1).map(|_| next() as u8).collect();
            let carry = next() | next();
            let (mut a, mut b) = (vec![0u64; blocks], vec![0u64; blocks]);
            let ca = blocks8(table, &bytes, carry, &mut a);
            let cb = blocks8_portable(table, &bytes, carry, &mut b);
            assert_eq!((ca, &a), (cb, &b), "{blocks} blocks");
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

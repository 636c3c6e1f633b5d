//! Offline checks on a candidate secret: checksums and structure that random look-alikes fail.

use serde::Deserialize;

/// A check a rule can name (`validator = "..."`).
///
/// Two sorts: a token **checksum** (`github`, `npm`) raises a finding's confidence to high when
/// it holds and lowers it to low when it does not, but never drops the finding (a format change
/// by the issuer must not make Ward blind); a **structure** check (`luhn`, `iban`, `jwt`,
/// `us-ssn`) drops candidates that fail, because the regexes for them match plenty of
/// innocent digits and text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validator {
    /// `gh?_` + 30 base62 + 6 base62 digits of the CRC-32 of those 30 (GitHub's 2021 format).
    Github,
    /// `npm_` + the same scheme.
    Npm,
    /// The Luhn mod-10 check (payment cards, Canadian SIN).
    Luhn,
    /// ISO 13616 mod-97 with the country's length.
    Iban,
    /// Three base64url parts whose first decodes to a JSON object with `"alg"`.
    Jwt,
    /// US social security number: no area 000, 666 or 9xx, no group 00, no serial 0000.
    UsSsn,
    /// US bank routing (ABA) number: weights 3, 7, 1 sum to a multiple of 10.
    Aba,
}

/// What a validator says about a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Drop the candidate.
    Reject,
    /// Keep it; a checksum held.
    Confirmed,
    /// Keep it; a checksum did not hold.
    Doubtful,
    /// Keep it as found.
    Pass,
}

impl Validator {
    pub(crate) fn check(self, secret: &[u8]) -> Verdict {
        let keep = |ok: bool| if ok { Verdict::Pass } else { Verdict::Reject };
        let sum = |ok: bool| {
            if ok {
                Verdict::Confirmed
            } else {
                Verdict::Doubtful
            }
        };
        match self {
            Validator::Github | Validator::Npm => sum(base62_crc32(secret)),
            Validator::Luhn => keep(luhn(secret)),
            Validator::Iban => keep(iban(secret)),
            Validator::Jwt => keep(jwt(secret)),
            Validator::UsSsn => keep(us_ssn(secret)),
            Validator::Aba => keep(aba(secret)),
        }
    }
}

/// Shannon entropy of `s` in bits per byte.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 (IEEE, as zlib's `crc32`).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// `xxx_` + payload + 6 base62 digits (big-endian) of the payload's CRC-32.
fn base62_crc32(token: &[u8]) -> bool {
    let Some(us) = token.iter().position(|&b| b == b'_') else {
        return false;
    };
    let body = &token[us + 1..];
    if body.len() <= 6 {
        return false;
    }
    let (payload, check) = body.split_at(body.len() - 6);
    let mut n: u64 = 0;
    for &c in check {
        let Some(d) = BASE62.iter().position(|&x| x == c) else {
            return false;
        };
        n = n * 62 + d as u64;
    }
    n == crc32(payload) as u64
}

/// The 6-digit base62 checksum for `payload` (used to make test tokens).
pub fn base62_checksum(payload: &[u8]) -> String {
    let mut n = crc32(payload) as u64;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn digits(s: &[u8]) -> Vec<u8> {
    s.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

fn luhn(s: &[u8]) -> bool {
    let d = digits(s);
    if d.len() < 8 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let total: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = x as u32;
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    total.is_multiple_of(10)
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LEN: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

fn iban(s: &[u8]) -> bool {
    let c: Vec<u8> = s
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if c.len() < 15 || !c.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let Some(&(_, len)) = IBAN_LEN.iter().find(|(cc, _)| cc[..] == c[..2]) else {
        return false;
    };
    if c.len() != len {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in c[4..].iter().chain(&c[..4]) {
        let v = if b.is_ascii_digit() {
            (b - b'0') as u32
        } else {
            (b - b'A') as u32 + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn b64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn jwt(s: &[u8]) -> bool {
    let mut parts = s.split(|&b| b == b'.');
    let (Some(h), Some(p), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let is_obj = |part: &[u8]| {
        b64url_decode(part).is_some_and(|d| {
            let t = d.trim_ascii();
            t.first() == Some(&b'{') && t.last() == Some(&b'}')
        })
    };
    is_obj(h)
        && is_obj(p)
        && b64url_decode(h).is_some_and(|d| d.windows(5).any(|w| w == b"\"alg\""))
}

fn aba(s: &[u8]) -> bool {
    let d = digits(s);
    d.len() == 9
        && d[0] <= 3
        && d.iter()
            .zip([3u32, 7, 1].iter().cycle())
            .map(|(&x, &w)| x as u32 * w)
            .sum::<u32>()
            % 10
            == 0
}

fn us_ssn(s: &[u8]) -> bool {
    let d = digits(s);
    if d.len() != 9 {
        return false;
    }
    let area = d[0] as u32 * 100 + d[1] as u32 * 10 + d[2] as u32;
    let group = d[3] as u32 * 10 + d[4] as u32;
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + x as u32);
    // Famous and advertising numbers are not anyone's.
    if matches!(
        &d[..],
        [0, 7, 8, 0, 5, 1, 1, 2, 0] | [2, 1, 9, 0, 9, 9, 9, 9, 9]
    ) {
        return false;
    }
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn github_checksum() {
        let payload = "abcdefghijklmnopqrstuvwxyz0123";
        let tok = format!("ghp_{payload}{}", base62_checksum(payload.as_bytes()));
        assert_eq!(Validator::Github.check(tok.as_bytes()), Verdict::Confirmed);
        let mut bad = tok.clone().into_bytes();
        bad[5] = b'Z';
        assert_eq!(Validator::Github.check(&bad), Verdict::Doubtful);
    }

    #[test]
    fn luhn_and_iban() {
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(!luhn(b"4111 1111 1111 1112"));
        assert!(!luhn(b"0000000000000000"));
        assert!(iban(b"GB82 WEST 1234 5698 7654 32"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(!iban(b"DE89370400440532013001"));
        assert!(!iban(b"DE8937040044053201300"));
    }

    #[test]
    fn jwt_and_ssn() {
        // {"alg":"HS256","typ":"JWT"} . {"sub":"1"} . sig
        assert!(jwt(
            b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln"
        ));
        assert!(!jwt(b"eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxIn0.c2ln"));
        assert!(aba(b"021000021"));
        assert!(!aba(b"021000022"));
        assert!(us_ssn(b"123-45-6789"));
        assert!(!us_ssn(b"666-45-6789"));
        assert!(!us_ssn(b"078-05-1120"));
        assert!(!us_ssn(b"123-00-6789"));
    }

    #[test]
    fn entropy_of_uniform_and_constant() {
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}

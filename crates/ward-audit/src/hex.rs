//! Lower-case hex, the only encoding in the log.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn encode(bytes: &[u8]) -> String {
    let mut s = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize]);
        s.push(DIGITS[(b & 15) as usize]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(s).unwrap_or_default()
}

pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
}

pub fn decode32(s: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    decode_into(s, &mut out).then_some(out)
}

/// Lower-case hex digits only (what the log writes); verification decodes two per record, so
/// this is a branch-free table lookup.
pub fn decode_into(s: &[u8], out: &mut [u8]) -> bool {
    if s.len() != out.len() * 2 {
        return false;
    }
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (h, l) = (VAL[pair[0] as usize], VAL[pair[1] as usize]);
        bad |= h | l;
        *o = (h << 4) | (l & 0x0f);
    }
    bad & 0xf0 == 0
}

/// Value of each byte as a lower-case hex digit, or 0xff.
static VAL: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_lower_case_only() {
        let h = super::encode(&[0x00, 0x9f, 0xa0, 0xff]);
        assert_eq!(h, "009fa0ff");
        let mut out = [0u8; 4];
        assert!(super::decode_into(h.as_bytes(), &mut out));
        assert_eq!(out, [0x00, 0x9f, 0xa0, 0xff]);
        assert!(!super::decode_into(b"009FA0FF", &mut out));
        assert!(!super::decode_into(b"009fa0fg", &mut out));
        assert!(!super::decode_into(b"009fa0f", &mut out));
    }
}

//! Reading a TLS ClientHello without terminating TLS: enough to learn the server name (SNI)
//! the client is about to verify, and whether it hides the real one (Encrypted Client Hello).
//! The tunnel opens to the upstream only once that name matches what the CONNECT asked for.

/// What the first flight told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The `host_name` of the server_name extension, as sent.
    pub sni: Option<String>,
    /// An `encrypted_client_hello` extension is present. Chromium sends a GREASE one by
    /// default; a real one's outer name is the provider's public name, so an outer name equal
    /// to the CONNECT host is the same trust as any shared front (see the crate docs).
    pub ech: bool,
    /// The draft `encrypted_server_name` extension (0xffce): the real name is hidden.
    pub esni: bool,
}

/// Why the bytes are not a ClientHello Ward can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not TLS (the first bytes are not a TLS handshake record)")]
    NotTls,
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
}

/// The most a ClientHello may take (post-quantum key shares make them ~2 KiB; 64 KiB is far).
pub const MAX_HELLO: usize = 64 * 1024;

/// Real clients send the hello in one or two records.
const MAX_RECORDS: usize = 16;

/// How many bytes must have arrived before [`parse`] can say more: the end of the first
/// incomplete record, or one more record header. Cheap (record headers and the handshake
/// header's four bytes), so a client sending its hello a byte at a time costs a parse per
/// record, not per byte.
pub fn need(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut payload = 0usize;
    let mut message: Option<usize> = None;
    // The handshake header (type, 24-bit length), which may itself span records, as
    // [`parse`] reassembles it.
    let mut header = [0u8; 4];
    let mut got = 0;
    for _ in 0..=MAX_RECORDS {
        // The handshake message is complete in the records so far (anything after it is the
        // client's next bytes, not more hello).
        if message.is_some_and(|m| payload >= 4 + m) || at == buf.len() {
            return at;
        }
        let Some(h) = buf.get(at..at + 5) else {
            return at + 5;
        };
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        let end = at + 5 + len;
        if end > buf.len() {
            return end;
        }
        for &b in buf[at + 5..end].iter().take(4 - got) {
            header[got] = b;
            got += 1;
        }
        if message.is_none() && got == 4 {
            message = Some(
                ((header[1] as usize) << 16) | ((header[2] as usize) << 8) | header[3] as usize,
            );
        }
        payload += len;
        at = end;
    }
    // Past the most records a hello may take: parse now, which refuses it.
    buf.len()
}

/// `Ok(None)`: need more bytes. The hello may span several handshake records.
pub fn parse(buf: &[u8]) -> Result<Option<Hello>, HelloError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != 0x16 {
        return Err(HelloError::NotTls);
    }
    // Reassemble the handshake layer from consecutive records.
    let mut hs = Vec::new();
    let mut at = 0;
    let mut records = 0;
    loop {
        records += 1;
        if records > MAX_RECORDS {
            return Err(HelloError::Malformed(
                "ClientHello split over too many records",
            ));
        }
        let Some(head) = buf.get(at..at + 5) else {
            return more(buf);
        };
        if head[0] != 0x16 {
            return Err(HelloError::Malformed(
                "a non-handshake record inside the hello",
            ));
        }
        if head[1] != 3 {
            return Err(HelloError::NotTls);
        }
        let len = u16::from_be_bytes([head[3], head[4]]) as usize;
        if len == 0 || len > 16384 {
            return Err(HelloError::Malformed("record length"));
        }
        let Some(body) = buf.get(at + 5..at + 5 + len) else {
            return more(buf);
        };
        hs.extend_from_slice(body);
        at += 5 + len;
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return Err(HelloError::Malformed(
                    "the first handshake message is not a ClientHello",
                ));
            }
            let mlen = ((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize;
            if mlen > MAX_HELLO {
                return Err(HelloError::Malformed("ClientHello too large"));
            }
            if hs.len() >= 4 + mlen {
                return hello(&hs[4..4 + mlen]).map(Some);
            }
        }
    }
}

fn more(buf: &[u8]) -> Result<Option<Hello>, HelloError> {
    if buf.len() >= MAX_HELLO + 5 * 8 {
        Err(HelloError::Malformed("ClientHello too large"))
    } else {
        Ok(None)
    }
}

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn hello(body: &[u8]) -> Result<Hello, HelloError> {
    let mut r = Rd(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut out = Hello {
        sni: None,
        ech: false,
        esni: false,
    };
    if r.0.is_empty() {
        return Ok(out); // no extensions at all (TLS 1.0-style): no SNI
    }
    let mut exts = Rd(r.vec16()?);
    let mut seen = std::collections::HashSet::new();
    while !exts.0.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        if !seen.insert(ty) {
            return Err(HelloError::Malformed("an extension appears twice"));
        }
        match ty {
            0x0000 => {
                let mut list = Rd(data);
                let mut names = Rd(list.vec16()?);
                while !names.0.is_empty() {
                    let kind = names.u8()?;
                    let name = names.vec16()?;
                    if kind == 0 {
                        if out.sni.is_some() {
                            return Err(HelloError::Malformed("two host names in server_name"));
                        }
                        let s = std::str::from_utf8(name)
                            .map_err(|_| HelloError::Malformed("server name is not text"))?;
                        out.sni = Some(s.to_string());
                    }
                }
            }
            0xfe0d => out.ech = true,
            0xffce => out.esni = true,
            _ => {}
        }
    }
    Ok(out)
}

/// A minimal ClientHello (one record, TLS 1.3 suite), naming `sni` and carrying an
/// `encrypted_client_hello` extension when `ech`: what the proxy reads, for tests and
/// benchmarks that need a tunnel to open without a TLS stack.
pub fn client_hello(sni: Option<&str>, ech: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(n) = sni {
        let mut e = Vec::new();
        e.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        e.push(0);
        e.extend_from_slice(&(n.len() as u16).to_be_bytes());
        e.extend_from_slice(n.as_bytes());
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&(e.len() as u16).to_be_bytes());
        ext.extend_from_slice(&e);
    }
    if ech {
        ext.extend_from_slice(&[0xfe, 0x0d, 0, 1, 0]);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sni_and_ech() {
        let h = client_hello(Some("api.example.com"), false);
        assert_eq!(
            parse(&h).unwrap(),
            Some(Hello {
                sni: Some("api.example.com".into()),
                ech: false,
                esni: false,
            })
        );
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(&client_hello(None, true)).unwrap().unwrap().ech);
        assert!(parse(b"SSH-2.0-OpenSSH_9.2\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
    }

    #[test]
    fn need_stops_at_the_end_of_the_hello() {
        let h = client_hello(Some("a.test"), false);
        let mut more = h.clone();
        more.extend_from_slice(b"zzzzzzzzzz"); // the client's next bytes, right behind
        assert_eq!(need(&more), h.len());
        assert_eq!(need(&h[..3]), 5);
        assert_eq!(need(&h[..10]), h.len());
    }

    #[test]
    fn a_handshake_header_split_over_records_is_read_like_parse_reads_it() {
        // Found by the fuzzer: the hello's header in one-byte records, which `parse`
        // reassembles; `need` must read it the same way, and not ask for bytes past the hello.
        let mut b = Vec::new();
        for byte in [1u8, 0, 0, 1, 0] {
            b.extend_from_slice(&[0x16, 3, 1, 0, 1, byte]);
        }
        b.extend_from_slice(&[0x16, 3, 1, 0x40, 0]); // the start of the client's next record
        let parsed = parse(&b);
        if let Ok(Some(_)) = parsed {
            assert!(need(&b) <= b.len());
        }
        assert_eq!(need(&b), 30, "the hello ends after the fifth record");
        // The fuzzer's own input: a whole hello, then the start of another record.
        let f = include_bytes!("../../../fuzz/seeds/net/split-header");
        assert!(matches!(parse(f), Ok(Some(_))), "{:?}", parse(f));
        assert!(need(f) <= f.len());
    }

    #[test]
    fn many_empty_records_then_data_are_refused_not_buffered() {
        let mut b = Vec::new();
        for _ in 0..17 {
            b.extend_from_slice(&[0x16, 3, 1, 0, 0]);
        }
        b.extend_from_slice(&[0x41; 100]);
        assert!(need(&b) <= b.len(), "need() asks for more forever");
        assert!(parse(&b).is_err());
    }

    #[test]
    fn hello_split_over_two_records() {
        let h = client_hello(Some("a.test"), false);
        let hs = &h[5..];
        let (a, b) = hs.split_at(10);
        let mut two = vec![0x16, 3, 1];
        two.extend_from_slice(&(a.len() as u16).to_be_bytes());
        two.extend_from_slice(a);
        two.extend_from_slice(&[0x16, 3, 1]);
        two.extend_from_slice(&(b.len() as u16).to_be_bytes());
        two.extend_from_slice(b);
        assert_eq!(parse(&two).unwrap().unwrap().sni.as_deref(), Some("a.test"));
    }
}

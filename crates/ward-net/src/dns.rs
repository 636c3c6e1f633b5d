//! The sandbox's resolver: a DNS server inside the session's network namespace (127.0.0.1:53,
//! what `/etc/resolv.conf` names there) that answers only for the names the manifest allows,
//! each with an address of its own on the sandbox's loopback where Ward listens and carries
//! connections to the real name through the proxy's decisions. So programs that ignore the
//! proxy variables (Node 20's `fetch`, Go programs) reach allowed destinations by name; any
//! other name is NXDOMAIN, on record (DNS exfiltration included).
//!
//! Only what a stub resolver sends is read: one question, its name as plain labels (no
//! compression), its type and class. Anything else gets FORMERR or is dropped; nothing here
//! panics on any input (fuzz target `dns`).

use std::net::Ipv4Addr;

/// The first address given to a name (then .2, .3, ...): a range of the sandbox's loopback
/// that nothing else uses.
pub const FIRST: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 1);

/// The `n`-th name's address (`n` from 0), while the range lasts (65,535 names).
pub fn address(n: usize) -> Option<Ipv4Addr> {
    let base = u32::from(FIRST);
    let a = base.checked_add(u32::try_from(n).ok()?)?;
    (a < u32::from(Ipv4Addr::new(127, 78, 0, 0))).then(|| Ipv4Addr::from(a))
}

/// A question as read from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub id: u16,
    /// Lower-cased, without the final dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
const FORMERR: u8 = 1;
const NXDOMAIN: u8 = 3;
const NOTIMP: u8 = 4;

/// Read the one question of `q`; where it ends.
fn question(q: &[u8]) -> Result<(Question, usize), u8> {
    if q.len() < 12 {
        return Err(FORMERR);
    }
    let id = u16::from_be_bytes([q[0], q[1]]);
    if q[2] & 0x80 != 0 || (q[2] >> 3) & 0x0f != 0 {
        // A response, or an opcode other than QUERY.
        return Err(NOTIMP);
    }
    if u16::from_be_bytes([q[4], q[5]]) != 1 {
        return Err(FORMERR);
    }
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = *q.get(i).ok_or(FORMERR)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // Compression (and the reserved label types) has no place in a question.
        if len & 0xc0 != 0 || name.len() + len > 253 {
            return Err(FORMERR);
        }
        let label = q.get(i..i + len).ok_or(FORMERR)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            name.push(char::from(b.to_ascii_lowercase()));
        }
        i += len;
    }
    let fixed = q.get(i..i + 4).ok_or(FORMERR)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    Ok((
        Question {
            id,
            name,
            qtype,
            qclass,
        },
        i + 4,
    ))
}

/// A name the manifest allows (or asks about), reachable inside at its own address: the
/// connections to `at` are carried to `name:port` over `scheme`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub at: std::net::SocketAddr,
    pub scheme: String,
}

/// The names of `m`'s `https` and `ssh` `allow` and `ask` destinations (not wildcards, not
/// `localhost`, not addresses), each with its address inside, one per name, in the manifest's
/// order; one listener per name and port. An `https` connection there is a tunnel whose TLS
/// server name must be the name, as through the proxy; an `ssh` one carries SSH, whose client
/// checks the server's host key. A plain `http` name is reached through the proxy only, where
/// every request's Host and upload are decided.
pub fn names(m: &ward_core::Manifest) -> Vec<Named> {
    use ward_core::{Effect, HostPattern};
    let mut ips: Vec<(String, Ipv4Addr)> = Vec::new();
    let mut out: Vec<Named> = Vec::new();
    for e in m
        .network
        .iter()
        .filter(|e| e.effect != Effect::Deny && matches!(e.dest.scheme.as_str(), "https" | "ssh"))
    {
        let HostPattern::Name(n) = &e.dest.host else {
            continue;
        };
        // `localhost` is the loopback; a name a deny entry covers is not given an address.
        let denied = m
            .network
            .iter()
            .any(|d| d.effect == Effect::Deny && d.dest.host.matches(n));
        if n == "localhost" || denied {
            continue;
        }
        let ip = match ips.iter().find(|(x, _)| x == n) {
            Some((_, ip)) => *ip,
            None => {
                let Some(ip) = address(ips.len()) else {
                    break;
                };
                ips.push((n.clone(), ip));
                ip
            }
        };
        let at = std::net::SocketAddr::new(ip.into(), e.dest.port);
        if !out.iter().any(|x| x.at == at) {
            out.push(Named {
                name: n.clone(),
                at,
                scheme: e.dest.scheme.clone(),
            });
        }
    }
    out
}

/// What was asked and what was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub question: Question,
    /// The name's address inside, when the manifest allows it (`None`: NXDOMAIN).
    pub address: Option<Ipv4Addr>,
}

/// The response to the query `q`, with `lookup` giving the address of an allowed name; `None`
/// for what deserves no answer (too short to carry an id). A/IN questions for an allowed name
/// get its address; other types for it get no records (NOERROR: AAAA clients fall back to A);
/// any other name is NXDOMAIN.
pub fn respond(
    q: &[u8],
    lookup: impl Fn(&str) -> Option<Ipv4Addr>,
) -> Option<(Vec<u8>, Option<Answered>)> {
    let (id, flags) = match q {
        // A response is never answered (two resolvers must not talk each other into a loop).
        [_, _, f, ..] if f & 0x80 != 0 => return None,
        [a, b, f, ..] => (u16::from_be_bytes([*a, *b]), *f),
        _ => return None,
    };
    let rd = flags & 0x01;
    let header = |rcode: u8, qd: u16, an: u16| {
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&id.to_be_bytes());
        // QR, opcode QUERY, AA, RD as asked; RA; the rcode.
        h.push(0x80 | 0x04 | rd);
        h.push(0x80 | rcode);
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&an.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    };
    let (question, end) = match question(q) {
        Ok(x) => x,
        Err(rcode) => return Some((header(rcode, 0, 0), None)),
    };
    let address = lookup(&question.name);
    let found = address.is_some() && question.qclass == CLASS_IN;
    let a = found && question.qtype == TYPE_A;
    let mut out = header(if found { 0 } else { NXDOMAIN }, 1, u16::from(a));
    out.extend_from_slice(&q[12..end]);
    if let (true, Some(ip)) = (a, address) {
        // The name by a pointer to the question's, A, IN, a minute, four bytes.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some((
        out,
        Some(Answered {
            question,
            address: address.filter(|_| found),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    fn lookup(n: &str) -> Option<Ipv4Addr> {
        (n == "api.example.com").then_some(FIRST)
    }

    #[test]
    fn allowed_names_get_their_address_and_others_nxdomain() {
        let (r, a) = respond(&query(7, "API.Example.com", 1), lookup).unwrap();
        assert_eq!(&r[..2], &[0, 7]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 77, 0, 1]);
        assert_eq!(a.unwrap().question.name, "api.example.com");
        // AAAA: the name exists, no records.
        let (r, _) = respond(&query(8, "api.example.com", 28), lookup).unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (0, 0));
        // Anything else: NXDOMAIN, the question echoed.
        let q = query(9, "secret-data.evil.example", 1);
        let (r, a) = respond(&q, lookup).unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (3, 0));
        assert_eq!(&r[12..], &q[12..]);
        assert_eq!(a.unwrap().address, None);
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        assert!(respond(&[1], lookup).is_none());
        let (r, a) = respond(&[0, 1, 1, 0, 0, 1], lookup).unwrap();
        assert_eq!((r[3] & 0x0f, a), (1, None));
        let mut q = query(1, "a.b", 1);
        q[12] = 0xc0; // a pointer in the question
        assert_eq!(respond(&q, lookup).unwrap().0[3] & 0x0f, 1);
        let mut r = query(1, "a.b", 1);
        r[2] |= 0x80; // a response: no answer
        assert!(respond(&r, lookup).is_none());
        let mut u = query(1, "a.b", 1);
        u[2] |= 0x28; // an UPDATE
        assert_eq!(respond(&u, lookup).unwrap().0[3] & 0x0f, 4);
        assert_eq!(address(65_535), None);
        assert_eq!(address(65_534), Some(Ipv4Addr::new(127, 77, 255, 255)));
        assert_eq!(address(1), Some(Ipv4Addr::new(127, 77, 0, 2)));
    }
}

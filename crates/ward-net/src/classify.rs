//! Which addresses are public. Everything else — this machine, the local network, the cloud's
//! metadata service, carrier NAT, multicast, reserved space, and IPv6 forms that carry one of
//! those IPv4 addresses inside — is refused unless the manifest names the address itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of a non-public address (`None`: public).
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => v6(a),
    }
}

fn in4(a: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let m = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(a) & m) == (u32::from(Ipv4Addr::from(net)) & m)
}

fn v4(a: Ipv4Addr) -> Option<&'static str> {
    const TABLE: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "this-network (0.0.0.0/8)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([10, 0, 0, 0], 8, "private (10/8)"),
        ([172, 16, 0, 0], 12, "private (172.16/12)"),
        ([192, 168, 0, 0], 16, "private (192.168/16)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64/10)"),
        (
            [169, 254, 0, 0],
            16,
            "link-local / cloud metadata (169.254/16)",
        ),
        ([192, 0, 0, 0], 24, "IETF protocol assignments (192.0.0/24)"),
        ([192, 0, 2, 0], 24, "documentation (192.0.2/24)"),
        ([198, 51, 100, 0], 24, "documentation (198.51.100/24)"),
        ([203, 0, 113, 0], 24, "documentation (203.0.113/24)"),
        ([198, 18, 0, 0], 15, "benchmarking (198.18/15)"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99/24)"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved (240/4) or broadcast"),
    ];
    TABLE
        .iter()
        .find(|(net, bits, _)| in4(a, *net, *bits))
        .map(|(_, _, c)| *c)
}

fn v6(a: Ipv6Addr) -> Option<&'static str> {
    if let Some(m) = a.to_ipv4_mapped() {
        return v4(m);
    }
    let s = a.segments();
    if a.is_unspecified() {
        return Some("unspecified (::)");
    }
    if a.is_loopback() {
        return Some("loopback");
    }
    // IPv4-compatible (deprecated) ::a.b.c.d
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible IPv6 (::/96)");
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64 (64:ff9b::/96 well-known, 64:ff9b:1::/48 local) reaches whatever IPv4 address
        // is inside; a desktop agent has no business with it.
        return Some("NAT64 (64:ff9b::/32)");
    }
    if s[0] == 0x2002 {
        return Some("6to4 (2002::/16)");
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some("Teredo (2001::/32)");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation (2001:db8::/32)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("unique local (fc00::/7)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("link-local (fe80::/10)");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("site-local (fec0::/10)");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("multicast");
    }
    if s[0] == 0x0100 && s[1..4] == [0; 3] {
        return Some("discard-only (100::/64)");
    }
    // Only global unicast (2000::/3) is public.
    if s[0] & 0xe000 != 0x2000 {
        return Some("reserved IPv6");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(s: &str) -> bool {
        non_public(s.parse().unwrap()).is_some()
    }

    #[test]
    fn table() {
        for s in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "100.100.100.200",
            "169.254.169.254",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "224.0.0.1",
            "ff02::2",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::127.0.0.1",
        ] {
            assert!(np(s), "{s} counted as public");
        }
        for s in [
            "100.63.255.254",
            "100.128.0.1",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "93.184.215.14",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!np(s), "{s} counted as non-public");
        }
    }
}

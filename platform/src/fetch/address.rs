//! Which IP addresses are public: the only ones a fetch of a URL CutX does not control may reach.
//!
//! An IPv6 address that carries an IPv4 address (mapped, compatible, NAT64, 6to4) is judged by the
//! IPv4 address it carries, because that is where a packet to it ends up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public address, one that a URL CutX does not control may make it connect to.
pub fn is_public(ip: IpAddr) -> bool {
    refused_range(ip).is_none()
}

/// The name of the non-public range `ip` falls in, or `None` for a public address.
pub(super) fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

/// (network, prefix length, name); the first match names the range.
const V4_REFUSED: &[(u32, u32, &str)] = &[
    (0x0000_0000, 8, "unspecified"), // 0.0.0.0/8: "this network"
    (0x0a00_0000, 8, "private"),     // 10/8
    (0x6440_0000, 10, "shared (cgnat)"),
    (0x7f00_0000, 8, "loopback"),
    (0xa9fe_0000, 16, "link-local"), // 169.254/16, cloud metadata at 169.254.169.254
    (0xac10_0000, 12, "private"),    // 172.16/12
    // IETF protocol assignments (DS-Lite, NAT64 discovery): carrier-internal, never a web server.
    (0xc000_0000, 24, "reserved"),
    (0xc000_0200, 24, "documentation"), // 192.0.2/24
    (0xc0a8_0000, 16, "private"),       // 192.168/16
    (0xc612_0000, 15, "benchmarking"),  // 198.18/15
    (0xc633_6400, 24, "documentation"), // 198.51.100/24
    (0xcb00_7100, 24, "documentation"), // 203.0.113/24
    (0xe000_0000, 4, "multicast"),
    (0xffff_ffff, 32, "broadcast"), // before 240/4, which holds it
    (0xf000_0000, 4, "reserved"),
];

/// (network, prefix length, name), for addresses that carry no IPv4 address.
const V6_REFUSED: &[(u128, u32, &str)] = &[
    (0x0100_0000_0000_0000 << 64, 64, "discard-only"), // 100::/64
    // Local-use NAT64 (RFC 8215): translates to whatever IPv4 network the operator chose.
    (0x0064_ff9b_0001 << 80, 48, "local nat64"),
    // Teredo: tunnels to an IPv4 address we would have to unscramble to judge.
    (0x2001_0000 << 96, 32, "teredo"),
    (0x2001_0002_0000 << 80, 48, "benchmarking"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x3fff << 112, 20, "documentation"),
    (0xfc00 << 112, 7, "unique local"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"), // deprecated, still routed inside some networks
    (0xff00 << 112, 8, "multicast"),
];

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_REFUSED.iter().find(|(net, len, _)| bits >> (32 - len) == net >> (32 - len)).map(|(_, _, name)| *name)
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return v4_range(v4);
    }
    let bits = u128::from(ip);
    V6_REFUSED.iter().find(|(net, len, _)| bits >> (128 - len) == net >> (128 - len)).map(|(_, _, name)| *name)
}

/// The IPv4 address an IPv6 address stands for: mapped `::ffff:0:0/96`, compatible `::/96`,
/// NAT64 `64:ff9b::/96` (low 32 bits) and 6to4 `2002::/16` (the 32 bits after the prefix).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    match bits >> 32 {
        0 | 0xffff | 0x0064_ff9b_0000_0000_0000_0000 => return Some(low),
        _ => {}
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_range_and_its_neighbours_have_known_answers() {
        let table: &[(&str, bool)] = &[
            // 0.0.0.0/8
            ("0.0.0.0", false),
            ("0.255.255.255", false),
            ("1.0.0.0", true),
            // 10/8
            ("9.255.255.255", true),
            ("10.0.0.0", false),
            ("10.255.255.255", false),
            ("11.0.0.0", true),
            // 100.64/10
            ("100.63.255.255", true),
            ("100.64.0.0", false),
            ("100.127.255.255", false),
            ("100.128.0.0", true),
            // 127/8
            ("126.255.255.255", true),
            ("127.0.0.1", false),
            ("127.255.255.255", false),
            ("128.0.0.0", true),
            // 169.254/16
            ("169.253.255.255", true),
            ("169.254.0.0", false),
            ("169.254.169.254", false),
            ("169.254.255.255", false),
            ("169.255.0.0", true),
            // 172.16/12
            ("172.15.255.255", true),
            ("172.16.0.0", false),
            ("172.31.255.255", false),
            ("172.32.0.0", true),
            // 192.0.0/24, 192.0.2/24
            ("191.255.255.255", true),
            ("192.0.0.0", false),
            ("192.0.0.255", false),
            ("192.0.1.0", true),
            ("192.0.2.0", false),
            ("192.0.2.255", false),
            ("192.0.3.0", true),
            // 192.168/16
            ("192.167.255.255", true),
            ("192.168.0.0", false),
            ("192.168.255.255", false),
            ("192.169.0.0", true),
            // 198.18/15
            ("198.17.255.255", true),
            ("198.18.0.0", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            // 198.51.100/24, 203.0.113/24
            ("198.51.99.255", true),
            ("198.51.100.0", false),
            ("198.51.100.255", false),
            ("198.51.101.0", true),
            ("203.0.112.255", true),
            ("203.0.113.0", false),
            ("203.0.113.255", false),
            ("203.0.114.0", true),
            // 224/4, 240/4, broadcast
            ("223.255.255.255", true),
            ("224.0.0.0", false),
            ("239.255.255.255", false),
            ("240.0.0.0", false),
            ("255.255.255.254", false),
            ("255.255.255.255", false),
            // public
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("93.184.215.14", true),
            // IPv6 specials
            ("::", false),
            ("::1", false),
            ("::2", false), // compatible form of 0.0.0.2
            // mapped ::ffff:0:0/96
            ("::ffff:127.0.0.1", false),
            ("::ffff:7f00:1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:0.0.0.0", false),
            ("::ffff:8.8.8.8", true),
            // compatible ::/96
            ("::127.0.0.1", false),
            ("::192.168.1.1", false),
            ("::8.8.8.8", true),
            // NAT64 64:ff9b::/96
            ("64:ff9b::127.0.0.1", false),
            ("64:ff9b::a00:1", false),
            ("64:ff9b::8.8.8.8", true),
            ("64:ff9b:1::8.8.8.8", false), // local-use NAT64
            // 6to4 2002::/16
            ("2002:7f00:1::", false),
            ("2002:a9fe:a9fe::1", false),
            ("2002:808:808::", true),
            ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2003::", true),
            // fc00::/7
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fc00::", false),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fe00::", true),
            // fe80::/10, fec0::/10
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("fe80::", false),
            ("fe80::1", false),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fec0::1", false),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            // ff00::/8
            ("ff00::", false),
            ("ff02::1", false),
            // 2001:db8::/32 and Teredo 2001::/32
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:db8::", false),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:db9::", true),
            ("2001::1", false),
            ("2001:1::", true),
            // 100::/64 discard-only
            ("100::1", false),
            ("100:0:0:1::", true),
            // public
            ("2606:4700:4700::1111", true),
            ("2001:4860:4860::8888", true),
        ];
        for (ip, public) in table {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(parsed), *public, "{ip}");
        }
    }

    #[test]
    fn a_refused_address_is_named_by_its_range() {
        assert_eq!(refused_range("169.254.169.254".parse().unwrap()), Some("link-local"));
        assert_eq!(refused_range("::ffff:127.0.0.1".parse().unwrap()), Some("loopback"));
        assert_eq!(refused_range("255.255.255.255".parse().unwrap()), Some("broadcast"));
        assert_eq!(refused_range("8.8.8.8".parse().unwrap()), None);
    }
}

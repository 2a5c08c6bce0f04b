//! Where a client may connect: [`is_public`] and the filter behind
//! [`ClientBuilder::allow_destination`](super::ClientBuilder::allow_destination).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether `ip` is a public (globally reachable unicast) address, the kind a server that
/// fetches URLs for its users may connect to without exposing its own network (SSRF).
///
/// False for the unspecified address, loopback, private networks (RFC 1918), carrier-grade
/// NAT (`100.64.0.0/10`), link-local (`169.254.0.0/16`, `fe80::/10`), unique-local
/// (`fc00::/7`), documentation and benchmarking ranges, IETF protocol assignments
/// (`192.0.0.0/24`, `2001::/23`), multicast, broadcast and reserved addresses, and IPv6
/// outside the global unicast block `2000::/3`. An IPv6 address that embeds an IPv4 one
/// (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is public only if
/// the IPv4 address is. Where a range mixes public and special addresses, it counts as not
/// public: the test errs on the side of refusing.
///
/// # Examples
///
/// ```
/// use greenlet::http::is_public;
///
/// assert!(is_public("93.184.215.14".parse()?));
/// assert!(is_public("2606:4700::1111".parse()?));
/// assert!(!is_public("127.0.0.1".parse()?));
/// assert!(!is_public("10.1.2.3".parse()?));
/// assert!(!is_public("169.254.169.254".parse()?)); // cloud metadata
/// assert!(!is_public("::ffff:192.168.0.1".parse()?));
/// assert!(!is_public("fd00::1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", with the unspecified address
        || a == 10 // private
        || (a == 100 && b & 0xc0 == 64) // carrier-grade NAT, 100.64.0.0/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local
        || (a == 172 && b & 0xf0 == 16) // private, 172.16.0.0/12
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation (TEST-NET-1)
        || (a == 192 && b == 168) // private
        || (a == 198 && b & 0xfe == 18) // benchmarking, 198.18.0.0/15
        || (a == 198 && b == 51 && c == 100) // documentation (TEST-NET-2)
        || (a == 203 && b == 0 && c == 113) // documentation (TEST-NET-3)
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded(s[6], s[7]); // NAT64
    }
    if s[0] & 0xe000 != 0x2000 {
        return false; // outside global unicast: ::1, fc00::/7, fe80::/10, ff00::/8, ...
    }
    match s[0] {
        0x2001 => s[1] >= 0x200 && s[1] != 0xdb8, // IETF protocol assignments; documentation
        0x2002 => embedded(s[1], s[2]),           // 6to4
        0x3fff => s[1] >= 0x1000,                 // documentation, 3fff::/20
        _ => true,
    }
}

/// A check on a destination address, as given to `allow_destination`.
type Check = dyn Fn(SocketAddr) -> bool + Send + Sync;

/// The destination checks of a client: an address is allowed if every check allows it
/// (none: every address is).
#[derive(Clone, Default)]
pub(crate) struct Destinations(Vec<Arc<Check>>);

impl Destinations {
    /// Adds a check that every address must also pass.
    pub(crate) fn add(&mut self, check: Arc<Check>) {
        self.0.push(check);
    }

    /// Whether every check allows `addr`.
    pub(crate) fn allows(&self, addr: SocketAddr) -> bool {
        self.0.iter().all(|check| check(addr))
    }
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destinations")
            .field("checks", &self.0.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn public_addresses() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn special_ipv4_addresses() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} is not public");
        }
    }

    #[test]
    fn special_ipv6_addresses() {
        for ip in [
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::ffff:255.255.255.255",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "2001::1",
            "2001:1ff::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "5f00::1",
            "4000::1",
        ] {
            assert!(!public(ip), "{ip} is not public");
        }
    }

    #[test]
    fn every_check_must_allow() {
        let mut d = Destinations::default();
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(d.allows(addr), "no check allows all");
        d.add(Arc::new(|a: SocketAddr| a.port() == 80));
        assert!(d.allows(addr));
        d.add(Arc::new(|a: SocketAddr| is_public(a.ip())));
        assert!(!d.allows(addr));
        assert_eq!(format!("{d:?}"), "Destinations { checks: 2 }");
    }
}

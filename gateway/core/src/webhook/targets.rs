//! Which addresses a webhook may be sent to (against server-side request forgery): a tenant
//! must not make the gateway call the services of its own network. Every address a target's
//! host resolves to is classified here, at creation and again before each attempt; the
//! request then goes to the address checked (the binary's transport never resolves again).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address an IP is, for the operator's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, unique-local fc00::/7, CGNAT 100.64.0.0/10, and the other ranges no public
    /// service uses (192.0.0.0/24, benchmarking 198.18.0.0/15, site-local fec0::/10).
    Private,
    /// 169.254.0.0/16 (cloud metadata services live there), fe80::/10.
    LinkLocal,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8, 255.255.255.255.
    Multicast,
    /// 240.0.0.0/4, documentation ranges: nothing to call.
    Reserved,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// An address range, `10.1.0.0/16` or `fd00::/8` (a bare address is a range of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address range (a.b.c.d/n or x::/n)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

/// The operator's rules (`[webhooks]`): by default only public addresses are called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRules {
    /// `webhooks.allow_loopback` (tests and single-host setups).
    pub allow_loopback: bool,
    /// `webhooks.allow_private`: RFC 1918, unique-local, CGNAT. Not link-local: list those
    /// in `allowed` one by one if really meant.
    pub allow_private: bool,
    /// `webhooks.allowed_cidrs`: ranges allowed whatever their class (never unspecified or
    /// multicast addresses).
    pub allowed: Vec<Cidr>,
}

impl TargetRules {
    /// `Ok` when the gateway may send to `ip`; otherwise the class that refused it.
    pub fn check(&self, ip: IpAddr) -> Result<(), AddressClass> {
        let ip = unwrap_embedded(ip);
        let class = classify(ip);
        let allowed = match class {
            AddressClass::Public => true,
            AddressClass::Unspecified | AddressClass::Multicast => false,
            AddressClass::Loopback if self.allow_loopback => true,
            AddressClass::Private if self.allow_private => true,
            _ => self.allowed.iter().any(|c| c.contains(ip)),
        };
        if allowed {
            Ok(())
        } else {
            Err(class)
        }
    }

    /// Every address must pass: a host that resolves to one public and one internal address
    /// could otherwise be sent to the internal one.
    pub fn check_all(&self, ips: &[IpAddr]) -> Result<(), AddressClass> {
        if ips.is_empty() {
            return Err(AddressClass::Unspecified);
        }
        ips.iter().try_for_each(|ip| self.check(*ip))
    }
}

/// An IPv4 address carried in an IPv6 one (`::ffff:a.b.c.d`, `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) is judged as that IPv4 address: each of
/// them reaches it.
fn unwrap_embedded(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-compatible (deprecated), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && !(s[6] == 0 && (s[7] == 0 || s[7] == 1)) {
        return IpAddr::V4(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(tail);
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    ip
}

fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) | (192, 0, 0) => AddressClass::Private,
        (172, b, _) if (16..32).contains(&b) => AddressClass::Private,
        (100, b, _) if (64..128).contains(&b) => AddressClass::Private,
        (198, 18 | 19, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (255, 255, 255) if ip.is_broadcast() => AddressClass::Multicast,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn by_default_only_public_addresses_pass() {
        let rules = TargetRules::default();
        for public in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
        ] {
            assert_eq!(rules.check(ip(public)), Ok(()), "{public}");
        }
        for (refused, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.8.9.1", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.0.0.1", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("100.127.255.254", AddressClass::Private),
            ("fd00::1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Multicast),
            ("240.0.0.1", AddressClass::Reserved),
        ] {
            assert_eq!(rules.check(ip(refused)), Err(class), "{refused}");
        }
        // Neighbours of the ranges are public.
        for public in ["172.32.0.1", "100.128.0.1", "11.0.0.1", "169.255.0.1"] {
            assert_eq!(rules.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        let rules = TargetRules::default();
        for (refused, class) in [
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddressClass::LinkLocal),
            ("2002:7f00:1::", AddressClass::Loopback),
        ] {
            assert_eq!(rules.check(ip(refused)), Err(class), "{refused}");
        }
        assert_eq!(rules.check(ip("::ffff:8.8.8.8")), Ok(()));
    }

    #[test]
    fn the_operator_opens_classes_and_ranges() {
        let rules = TargetRules {
            allow_loopback: true,
            allow_private: false,
            allowed: vec!["10.1.0.0/16".parse().unwrap(), "fe80::1".parse().unwrap()],
        };
        assert_eq!(rules.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(rules.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(rules.check(ip("10.1.200.3")), Ok(()));
        assert_eq!(rules.check(ip("10.2.0.1")), Err(AddressClass::Private));
        assert_eq!(rules.check(ip("fe80::1")), Ok(()));
        assert_eq!(rules.check(ip("fe80::2")), Err(AddressClass::LinkLocal));
        let private = TargetRules {
            allow_private: true,
            ..TargetRules::default()
        };
        assert_eq!(private.check(ip("192.168.0.9")), Ok(()));
        assert_eq!(
            private.check(ip("169.254.169.254")),
            Err(AddressClass::LinkLocal)
        );
        assert_eq!(private.check(ip("127.0.0.1")), Err(AddressClass::Loopback));
        // Never: the unspecified address and multicast, whatever is listed.
        let all = TargetRules {
            allowed: vec!["0.0.0.0/0".parse().unwrap()],
            ..TargetRules::default()
        };
        assert_eq!(all.check(ip("0.0.0.0")), Err(AddressClass::Unspecified));
        assert_eq!(all.check(ip("10.0.0.1")), Ok(()));
    }

    #[test]
    fn every_address_of_a_host_must_pass() {
        let rules = TargetRules::default();
        assert_eq!(
            rules.check_all(&[ip("8.8.8.8"), ip("127.0.0.1")]),
            Err(AddressClass::Loopback)
        );
        assert_eq!(rules.check_all(&[]), Err(AddressClass::Unspecified));
        assert_eq!(rules.check_all(&[ip("8.8.8.8")]), Ok(()));
    }

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        let c: Cidr = "192.168.4.0/22".parse().unwrap();
        assert!(c.contains(ip("192.168.7.255")));
        assert!(!c.contains(ip("192.168.8.0")));
        assert!(!c.contains(ip("::1")));
    }
}

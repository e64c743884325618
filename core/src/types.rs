//! Value types of the lab format that are written as strings: CIDRs, address ranges,
//! MAC addresses, sizes and durations. Each parses with a message that says what a valid
//! value looks like.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

macro_rules! string_serde {
    ($ty:ty, $name:literal, $desc:literal, $example:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} such as `{}`", $desc, $example)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse::<$ty>().map_err(|e| {
                            E::custom(format!(
                                "invalid {}: {e}; expected {} such as `{}`",
                                $name, $desc, $example
                            ))
                        })
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_str(V)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_g: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": concat!($desc, ", for example `", $example, "`"),
                    "examples": [$example]
                })
            }
        }
    };
}

/// An IPv4 network in CIDR notation (`10.0.20.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address (host bits are zero).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    /// The first address (the network address).
    pub fn first(self) -> u32 {
        u32::from(self.addr) & self.mask()
    }
    /// The last address (the broadcast address for prefixes under 31).
    pub fn last(self) -> u32 {
        self.first() | !self.mask()
    }
    /// Whether `ip` is inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v >= self.first() && v <= self.last()
    }
    /// Whether `ip` is the network or broadcast address (only for prefixes under 31).
    pub fn is_reserved(self, ip: Ipv4Addr) -> bool {
        self.prefix < 31 && (u32::from(ip) == self.first() || u32::from(ip) == self.last())
    }
    /// The range of all addresses.
    pub fn range(self) -> IpRange {
        IpRange {
            start: Ipv4Addr::from(self.first()),
            end: Ipv4Addr::from(self.last()),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| "missing the `/prefix`".to_string())?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{p}` is not a prefix length 0-32"))?;
        let c = Cidr { addr, prefix };
        if u32::from(addr) != c.first() {
            return Err(format!(
                "host bits are set; the network is {}/{prefix}",
                Ipv4Addr::from(c.first())
            ));
        }
        Ok(c)
    }
}
string_serde!(
    Cidr,
    "Cidr",
    "an IPv4 network in CIDR notation",
    "10.0.20.0/24"
);

/// An inclusive IPv4 address range, written `start-end` or as a CIDR (`10.0.20.200/29`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address (inclusive).
    pub end: Ipv4Addr,
}

impl IpRange {
    /// A range of one address.
    pub fn single(ip: Ipv4Addr) -> Self {
        IpRange { start: ip, end: ip }
    }
    /// Whether `ip` is inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        ip >= self.start && ip <= self.end
    }
    /// Whether the two ranges share an address.
    pub fn overlaps(self, other: IpRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
    /// Number of addresses.
    pub fn len(self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }
    /// Always false: a range holds at least one address.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            return Ok(s.parse::<Cidr>()?.range());
        }
        let Some((a, b)) = s.split_once('-') else {
            return Err(if s.parse::<Ipv4Addr>().is_ok() {
                format!("a single address must be written as `{s}/32` or `{s}-{s}`")
            } else {
                "not a range".to_string()
            });
        };
        let start: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
        let end: Ipv4Addr = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not an IPv4 address"))?;
        if end < start {
            return Err(format!("the range ends ({end}) before it starts ({start})"));
        }
        Ok(IpRange { start, end })
    }
}
string_serde!(
    IpRange,
    "IpRange",
    "an IPv4 range `start-end` or a CIDR",
    "10.0.20.200-10.0.20.220"
);

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Multicast bit set: such an address cannot be a NIC's.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
    /// Locally administered bit set.
    pub fn is_local(self) -> bool {
        self.0[0] & 2 == 2
    }
    /// A stable, locally administered unicast MAC derived from the lab, the machine and the NIC index.
    pub fn derive(lab: &str, machine: &str, nic: usize) -> MacAddr {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"cloudlet-mac\0");
        h.update(lab.as_bytes());
        h.update([0]);
        h.update(machine.as_bytes());
        h.update([0]);
        h.update(nic.to_le_bytes());
        let d = h.finalize();
        let mut m = [0u8; 6];
        m.copy_from_slice(&d[..6]);
        m[0] = (m[0] & 0xfc) | 0x02;
        MacAddr(m)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err("a MAC address has six hex octets".into());
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(format!("octet `{p}` is not two hex digits"));
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("octet `{p}` is not hex"))?;
        }
        Ok(MacAddr(m))
    }
}
string_serde!(MacAddr, "MacAddr", "a MAC address", "00:50:56:aa:bb:01");

/// A size in bytes, written with a binary unit (`512MiB`, `8GiB`, `2TiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

impl Size {
    /// One GiB.
    pub const GIB: u64 = 1 << 30;
    /// The size in whole MiB.
    pub fn mib(self) -> u64 {
        self.0 >> 20
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (u, n) in UNITS {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{u}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| "give a unit: KiB, MiB, GiB or TiB".to_string())?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| "missing the number".to_string())?;
        let mult: u64 = match unit.trim() {
            "B" => 1,
            "KiB" | "Ki" => 1 << 10,
            "MiB" | "Mi" => 1 << 20,
            "GiB" | "Gi" => 1 << 30,
            "TiB" | "Ti" => 1 << 40,
            "KB" | "MB" | "GB" | "TB" | "K" | "M" | "G" | "T" => {
                return Err(format!(
                    "`{unit}` is ambiguous; use binary units (KiB, MiB, GiB, TiB)"
                ));
            }
            other => return Err(format!("unknown unit `{other}`")),
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| "too large".to_string())
    }
}
string_serde!(Size, "Size", "a size with a binary unit", "8GiB");

/// A duration written with a unit (`30s`, `15m`, `1h`, `7d`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Duration(pub u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (u, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if self.0 >= n && self.0.is_multiple_of(n) {
                return write!(f, "{}{u}", self.0 / n);
            }
        }
        write!(f, "{}s", self.0)
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| "give a unit: s, m, h or d".to_string())?;
        let (n, u) = s.split_at(split);
        let n: u64 = n.parse().map_err(|_| "missing the number".to_string())?;
        let mult = match u {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            other => return Err(format!("unknown unit `{other}`")),
        };
        Ok(Duration(n * mult))
    }
}
string_serde!(Duration, "Duration", "a duration with a unit", "1h");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let c: Cidr = "10.0.20.0/24".parse().unwrap();
        assert!(c.contains("10.0.20.7".parse().unwrap()));
        assert!(!c.contains("10.0.21.7".parse().unwrap()));
        assert!(c.is_reserved("10.0.20.255".parse().unwrap()));
        assert!(
            "10.0.20.1/24"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("10.0.20.0/24")
        );
    }

    #[test]
    fn range_parsing() {
        let r: IpRange = "10.0.20.200-10.0.20.220".parse().unwrap();
        assert_eq!(r.len(), 21);
        let s: IpRange = "10.0.20.200/32".parse().unwrap();
        assert_eq!(s.len(), 1);
        assert!(
            "10.0.20.200"
                .parse::<IpRange>()
                .unwrap_err()
                .contains("/32")
        );
        assert!("10.0.20.9-10.0.20.1".parse::<IpRange>().is_err());
    }

    #[test]
    fn macs() {
        let m: MacAddr = "00:50:56:AA:bb:01".parse().unwrap();
        assert_eq!(m.to_string(), "00:50:56:aa:bb:01");
        let d = MacAddr::derive("seed", "k8s-node1", 0);
        assert!(d.is_local() && !d.is_multicast());
        assert_eq!(d, MacAddr::derive("seed", "k8s-node1", 0));
        assert_ne!(d, MacAddr::derive("seed", "k8s-node2", 0));
    }

    #[test]
    fn sizes() {
        assert_eq!("8GiB".parse::<Size>().unwrap().0, 8 << 30);
        assert_eq!(Size(8 << 30).to_string(), "8GiB");
        assert!("8GB".parse::<Size>().unwrap_err().contains("binary"));
        assert!("8".parse::<Size>().is_err());
        assert_eq!("1h".parse::<Duration>().unwrap().0, 3600);
    }
}

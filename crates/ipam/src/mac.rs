//! MAC addresses: parsing, formatting and the deterministic generator used for
//! ports whose MAC is not given.
//!
//! Generated MACs are `0a:72:xx:xx:xx:xx`: the first octet `0a` has the
//! locally-administered bit set and the multicast bit clear, `72` is ASCII `r`
//! (rovn). They can never fall in Neutron's `fa:16:3e` range nor in any
//! vendor (globally administered) range. The low 32 bits come from a FNV-1a hash of
//! a seed (subnet and owner), so a given owner gets the same MAC after a restart.

use std::fmt;
use std::str::FromStr;

/// The two fixed leading octets of every generated MAC.
pub const GENERATED_MAC_PREFIX: [u8; 2] = [0x0a, 0x72];

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six colon- or dash-separated hexadecimal octets.
    #[error("malformed MAC address {0:?}: expected six hex octets like 0a:72:00:00:00:01")]
    Malformed(String),
    /// A multicast/broadcast MAC (low bit of the first octet set) cannot be a port address.
    #[error("MAC address {0} is a multicast address and cannot be assigned to a port")]
    Multicast(MacAddr),
    /// The all-zero MAC cannot be assigned to a port.
    #[error("MAC address 00:00:00:00:00:00 cannot be assigned to a port")]
    Zero,
}

impl MacAddr {
    /// A generated MAC for `seed`, `attempt` choosing among alternatives when an
    /// earlier attempt's MAC is already in use.
    pub fn generated(seed: &str, attempt: u32) -> Self {
        let hash = fnv1a64(seed.as_bytes(), attempt);
        let low = ((hash >> 32) ^ hash) as u32;
        let [a, b, c, d] = low.to_be_bytes();
        MacAddr([GENERATED_MAC_PREFIX[0], GENERATED_MAC_PREFIX[1], a, b, c, d])
    }

    /// Parses a MAC for use as a port address: rejects malformed, multicast and zero MACs.
    pub fn parse_unicast(text: &str) -> Result<Self, MacError> {
        let mac: MacAddr = text.parse()?;
        if mac.0 == [0; 6] {
            return Err(MacError::Zero);
        }
        if mac.0[0] & 1 == 1 {
            return Err(MacError::Multicast(mac));
        }
        Ok(mac)
    }
}

fn fnv1a64(bytes: &[u8], attempt: u32) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .chain(attempt.to_be_bytes().iter())
        .fold(OFFSET, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

impl FromStr for MacAddr {
    type Err = MacError;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(text: &str) -> Result<Self, MacError> {
        let malformed = || MacError::Malformed(text.to_owned());
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(malformed());
        }
        let mut octets = [0u8; 6];
        for (octet, part) in octets.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(malformed());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| malformed())?;
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    /// Lower-case, colon-separated, as OVN writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        let mac: MacAddr = "0A-72-00-11-22-FF".parse().unwrap();
        assert_eq!(mac.to_string(), "0a:72:00:11:22:ff");
        assert_eq!(
            MacAddr::parse_unicast("fa:16:3e:00:00:01").unwrap().0[0],
            0xfa
        );
    }

    #[test]
    fn rejects_bad_macs() {
        for bad in [
            "",
            "0a:72:00:11:22",
            "0a:72:00:11:22:3",
            "zz:72:00:11:22:33",
            "0a:72:00:11:22:33:44",
        ] {
            assert!(
                matches!(bad.parse::<MacAddr>(), Err(MacError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            MacAddr::parse_unicast("01:00:5e:00:00:01"),
            Err(MacError::Multicast(_))
        ));
        assert_eq!(
            MacAddr::parse_unicast("00:00:00:00:00:00"),
            Err(MacError::Zero)
        );
    }

    #[test]
    fn generated_macs_are_stable_local_unicast_and_not_neutron() {
        let a = MacAddr::generated("net2/ns/pod", 0);
        assert_eq!(a, MacAddr::generated("net2/ns/pod", 0));
        assert_ne!(a, MacAddr::generated("net2/ns/pod", 1));
        assert_ne!(a, MacAddr::generated("net2/ns/pod2", 0));
        assert_eq!(a.0[..2], GENERATED_MAC_PREFIX);
        assert_eq!(a.0[0] & 0b10, 0b10, "locally administered");
        assert_eq!(a.0[0] & 1, 0, "unicast");
        assert_ne!(a.0[..3], [0xfa, 0x16, 0x3e]);
    }
}

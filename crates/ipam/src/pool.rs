//! The addresses of one family of one subnet: never-used free ranges (handed out
//! lowest first), a FIFO of released addresses (handed out only once the
//! never-used ones are gone), and the used addresses with their owners.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Family, FamilyConfig};
use crate::error::ReservedReason;
use crate::range_set::RangeSet;

/// How many never-used addresses [`FamilyPool::next_free_avoiding`] looks at.
const AVOID_SCAN: usize = 65_536;
/// An address as an integer (IPv4 in the low 32 bits).
pub(crate) fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

/// Where an address stands relative to a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Outside the CIDR.
    Outside,
    /// Inside, but never handed out for this reason.
    Reserved(ReservedReason),
    /// Inside and assignable.
    Assignable,
}

#[derive(Debug, Clone)]
pub(crate) struct FamilyPool {
    family: Family,
    cidr: IpNet,
    network: u128,
    /// IPv4 broadcast address; IPv6 has none.
    broadcast: Option<u128>,
    gateway: u128,
    excluded: Vec<(u128, u128)>,
    /// Never-used free addresses.
    fresh: RangeSet,
    /// Released addresses in release order, each with the sequence number of that release.
    /// Entries whose sequence no longer matches `released_live` are stale and skipped.
    released: VecDeque<(u128, u64)>,
    /// Released addresses still free, with the sequence number of their latest release.
    released_live: HashMap<u128, u64>,
    next_seq: u64,
    used: HashMap<u128, String>,
}

impl FamilyPool {
    pub(crate) fn new(config: &FamilyConfig) -> Self {
        let cidr = config.cidr;
        let network = to_int(cidr.network());
        let last = to_int(cidr.broadcast());
        let (family, broadcast, last_usable) = match cidr {
            IpNet::V4(_) => (Family::V4, Some(last), last - 1),
            IpNet::V6(_) => (Family::V6, None, last),
        };
        let gateway = to_int(config.gateway);
        let excluded: Vec<(u128, u128)> = config
            .excluded
            .iter()
            .map(|&(a, b)| (to_int(a), to_int(b)))
            .collect();
        let mut fresh = RangeSet::from_range(network + 1, last_usable);
        fresh.remove(gateway);
        for &(start, end) in &excluded {
            fresh.remove_range(start, end);
        }
        FamilyPool {
            family,
            cidr,
            network,
            broadcast,
            gateway,
            excluded,
            fresh,
            released: VecDeque::new(),
            released_live: HashMap::new(),
            next_seq: 0,
            used: HashMap::new(),
        }
    }

    pub(crate) fn cidr(&self) -> IpNet {
        self.cidr
    }

    pub(crate) fn address(&self, value: u128) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4((value as u32).into()),
            Family::V6 => IpAddr::V6(value.into()),
        }
    }

    pub(crate) fn placement(&self, ip: IpAddr) -> Placement {
        if !self.cidr.contains(&ip) {
            return Placement::Outside;
        }
        let value = to_int(ip);
        if value == self.network {
            Placement::Reserved(ReservedReason::Network)
        } else if Some(value) == self.broadcast {
            Placement::Reserved(ReservedReason::Broadcast)
        } else if value == self.gateway {
            Placement::Reserved(ReservedReason::Gateway)
        } else if self.excluded.iter().any(|&(s, e)| (s..=e).contains(&value)) {
            Placement::Reserved(ReservedReason::Excluded)
        } else {
            Placement::Assignable
        }
    }

    pub(crate) fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.used.get(&to_int(ip)).map(String::as_str)
    }

    /// The address the next dynamic allocation gets, without taking it.
    pub(crate) fn next_free(&mut self) -> Option<IpAddr> {
        if let Some(value) = self.fresh.first() {
            return Some(self.address(value));
        }
        while let Some(&(value, seq)) = self.released.front() {
            if self.released_live.get(&value) == Some(&seq) {
                return Some(self.address(value));
            }
            self.released.pop_front();
        }
        None
    }

    /// Like [`FamilyPool::next_free`], preferring an address `avoid` does not reject (among
    /// the first [`AVOID_SCAN`] never-used ones, then the released ones); `next_free` when
    /// all of those are rejected.
    pub(crate) fn next_free_avoiding(&mut self, avoid: &dyn Fn(IpAddr) -> bool) -> Option<IpAddr> {
        let fresh = self
            .fresh
            .values()
            .take(AVOID_SCAN)
            .map(|v| self.address(v))
            .find(|ip| !avoid(*ip));
        if fresh.is_some() {
            return fresh;
        }
        let released = self
            .released
            .iter()
            .filter(|(value, seq)| self.released_live.get(value) == Some(seq))
            .map(|(value, _)| self.address(*value))
            .find(|ip| !avoid(*ip));
        released.or_else(|| self.next_free())
    }

    /// Marks `ip` used by `owner`. The caller has checked that it is inside the CIDR,
    /// not network/broadcast/gateway, and not used.
    pub(crate) fn take(&mut self, ip: IpAddr, owner: &str) {
        let value = to_int(ip);
        if !self.fresh.remove(value) {
            self.released_live.remove(&value);
        }
        self.used.insert(value, owner.to_owned());
        self.compact_released();
    }

    /// Frees `ip`; it is handed out again only after every never-used address.
    /// Excluded addresses (held since before they were excluded) are not freed.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        let value = to_int(ip);
        if self.used.remove(&value).is_some() && self.placement(ip) == Placement::Assignable {
            self.push_released(value);
        }
    }

    fn push_released(&mut self, value: u128) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.released.push_back((value, seq));
        self.released_live.insert(value, seq);
    }

    /// Drops stale queue entries once they outnumber live ones, keeping memory bounded.
    fn compact_released(&mut self) {
        if self.released.len() > 2 * self.released_live.len() + 64 {
            let live = &self.released_live;
            self.released
                .retain(|(value, seq)| live.get(value) == Some(seq));
        }
    }

    /// Live released addresses in release order.
    pub(crate) fn released_in_order(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.released
            .iter()
            .filter(|(value, seq)| self.released_live.get(value) == Some(seq))
            .map(|&(value, _)| self.address(value))
    }

    /// Moves a never-used free address to the back of the released queue
    /// (used when carrying release order over to a new configuration).
    pub(crate) fn mark_released(&mut self, ip: IpAddr) {
        let value = to_int(ip);
        if self.fresh.remove(value) {
            self.push_released(value);
        }
    }

    pub(crate) fn available(&self) -> u128 {
        self.fresh
            .len()
            .saturating_add(self.released_live.len() as u128)
    }

    pub(crate) fn using(&self) -> usize {
        self.used.len()
    }
}

//! One subnet's allocator: addresses of each family, MACs, and who holds them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{Family, SubnetConfig};
use crate::error::{AllocError, ReservedReason};
use crate::mac::MacAddr;
use crate::pool::{FamilyPool, Placement};

/// The owner name under which the subnet's gateway (router port) MAC is held.
/// Not a valid Kubernetes `namespace/name`, so it never collides with a pod owner.
pub const GATEWAY_MAC_OWNER: &str = "<gateway>";

/// What an owner asks for: static addresses and/or a static MAC; anything not given is generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRequest {
    /// Static addresses, at most one per family.
    pub ips: Vec<IpAddr>,
    /// Static MAC.
    pub mac: Option<MacAddr>,
}

impl AddressRequest {
    /// A request from the pod annotations `ovn.kubernetes.io/ip_address` (one address,
    /// or `v4,v6` for dual stack) and `ovn.kubernetes.io/mac_address`; empty values mean "generate".
    pub fn from_annotations(
        ip_address: Option<&str>,
        mac_address: Option<&str>,
    ) -> Result<Self, AllocError> {
        let ips = ip_address
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .map(|ip| {
                ip.parse()
                    .map_err(|_| AllocError::InvalidAddress(ip.to_owned()))
            })
            .collect::<Result<Vec<IpAddr>, _>>()?;
        let mac = match mac_address.map(str::trim).filter(|m| !m.is_empty()) {
            Some(text) => Some(MacAddr::parse_unicast(text)?),
            None => None,
        };
        Ok(AddressRequest { ips, mac })
    }
}

/// What an owner holds in a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// IPv4 address, when the subnet has IPv4 (absent only after a restore or
    /// reconfiguration that left it out; the next `allocate` fills it).
    pub v4: Option<Ipv4Addr>,
    /// IPv6 address, likewise.
    pub v6: Option<Ipv6Addr>,
    /// MAC address.
    pub mac: MacAddr,
}

impl Allocation {
    /// The addresses, IPv4 first.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }

    /// The addresses as the `ovn.kubernetes.io/ip_address` annotation writes them:
    /// IPv4 first, comma-separated (the form [`AddressRequest::from_annotations`] reads).
    pub fn ip_address_annotation(&self) -> String {
        self.ips()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The address of `family`, if held.
    pub fn ip(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.v4.map(IpAddr::V4),
            Family::V6 => self.v6.map(IpAddr::V6),
        }
    }

    fn set_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.v4 = Some(v4),
            IpAddr::V6(v6) => self.v6 = Some(v6),
        }
    }

    fn clear_ip(&mut self, family: Family) {
        match family {
            Family::V4 => self.v4 = None,
            Family::V6 => self.v6 = None,
        }
    }
}

/// Address counts for the Subnet status (`v4availableIPs`, `v4usingIPs`, ...).
/// "Available" never counts the network, broadcast, gateway or excluded addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubnetCounts {
    /// Free IPv4 addresses.
    pub v4_available: u128,
    /// Used IPv4 addresses.
    pub v4_using: usize,
    /// Free IPv6 addresses.
    pub v6_available: u128,
    /// Used IPv6 addresses.
    pub v6_using: usize,
}

/// An address an owner lost because a new configuration no longer covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Displaced {
    /// The owner, which keeps its other addresses and its MAC.
    pub owner: String,
    /// The address it lost.
    pub ip: IpAddr,
}

/// Whether a held address survives a reconfiguration that places it so.
fn keeps(placement: Placement) -> bool {
    matches!(
        placement,
        Placement::Assignable | Placement::Reserved(ReservedReason::Excluded)
    )
}

/// The allocator of one subnet.
#[derive(Debug, Clone)]
pub struct Subnet {
    name: String,
    config: SubnetConfig,
    v4: Option<FamilyPool>,
    v6: Option<FamilyPool>,
    owners: HashMap<String, Allocation>,
    macs: HashMap<MacAddr, String>,
    gateway_mac: MacAddr,
}

impl Subnet {
    /// An empty allocator for `config`. The gateway MAC is generated from the name
    /// and reserved, so it is stable across restarts and never given to an owner.
    pub fn new(name: &str, config: SubnetConfig) -> Self {
        let gateway_mac = MacAddr::generated(&format!("{name}/{GATEWAY_MAC_OWNER}"), 0);
        Subnet {
            name: name.to_owned(),
            v4: config.v4().map(FamilyPool::new),
            v6: config.v6().map(FamilyPool::new),
            config,
            owners: HashMap::new(),
            macs: HashMap::from([(gateway_mac, GATEWAY_MAC_OWNER.to_owned())]),
            gateway_mac,
        }
    }

    /// The subnet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration in force.
    pub fn config(&self) -> &SubnetConfig {
        &self.config
    }

    /// The MAC reserved for the subnet's gateway (router port).
    pub fn gateway_mac(&self) -> MacAddr {
        self.gateway_mac
    }

    /// What `owner` holds.
    pub fn get(&self, owner: &str) -> Option<&Allocation> {
        self.owners.get(owner)
    }

    /// Who holds `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> Option<&str> {
        self.pool(Family::of(ip))?.owner(ip)
    }

    /// Who holds `mac` ([`GATEWAY_MAC_OWNER`] for the gateway MAC).
    pub fn mac_owner(&self, mac: MacAddr) -> Option<&str> {
        self.macs.get(&mac).map(String::as_str)
    }

    /// All owners and what they hold, in no particular order.
    pub fn allocations(&self) -> impl Iterator<Item = (&str, &Allocation)> {
        self.owners
            .iter()
            .map(|(owner, alloc)| (owner.as_str(), alloc))
    }

    /// Number of owners.
    pub fn owner_count(&self) -> usize {
        self.owners.len()
    }

    /// Counts for the status.
    pub fn counts(&self) -> SubnetCounts {
        let (v4_available, v4_using) = self
            .v4
            .as_ref()
            .map_or((0, 0), |p| (p.available(), p.using()));
        let (v6_available, v6_using) = self
            .v6
            .as_ref()
            .map_or((0, 0), |p| (p.available(), p.using()));
        SubnetCounts {
            v4_available,
            v4_using,
            v6_available,
            v6_using,
        }
    }

    /// Gives `owner` one address per family of the subnet and a MAC.
    ///
    /// Idempotent: an owner that already holds addresses gets them back (and any family it
    /// lacks is filled in); a static request that differs from what it holds is refused.
    /// Dynamic addresses are the lowest never-used ones; released addresses are reused
    /// only once every never-used address is gone, oldest release first.
    /// On error nothing changes.
    pub fn allocate(
        &mut self,
        owner: &str,
        request: &AddressRequest,
    ) -> Result<Allocation, AllocError> {
        self.allocate_avoiding(owner, request, &|_| false)
    }

    /// [`Subnet::allocate`], giving a dynamic address that `avoid` rejects only when no
    /// other is left (e.g. addresses another VPC's overlapping Subnet holds).
    pub fn allocate_avoiding(
        &mut self,
        owner: &str,
        request: &AddressRequest,
        avoid: &dyn Fn(IpAddr) -> bool,
    ) -> Result<Allocation, AllocError> {
        let existing = self.owners.get(owner).copied();
        let mut planned: Vec<IpAddr> = Vec::new();
        for &ip in &request.ips {
            let family = Family::of(ip);
            if planned.iter().any(|p| Family::of(*p) == family) {
                return Err(AllocError::DuplicateFamily(family));
            }
            match existing.and_then(|a| a.ip(family)) {
                Some(held) if held != ip => {
                    return Err(AllocError::OwnerHasOtherAddress {
                        owner: owner.to_owned(),
                        existing: held,
                        requested: ip,
                    });
                }
                Some(_) => {}
                None => self.check_assignable(ip, owner, false)?,
            }
            planned.push(ip);
        }
        let mac = self.plan_mac(owner, existing.map(|a| a.mac), request.mac)?;

        let mut allocation = existing.unwrap_or(Allocation {
            v4: None,
            v6: None,
            mac,
        });
        let mut to_take = Vec::new();
        for family in [Family::V4, Family::V6] {
            if allocation.ip(family).is_some() || self.pool(family).is_none() {
                continue;
            }
            let ip = match planned.iter().find(|ip| Family::of(**ip) == family) {
                Some(&ip) => ip,
                None => self
                    .pool_mut(family)
                    .and_then(|pool| pool.next_free_avoiding(avoid))
                    .ok_or_else(|| AllocError::Exhausted {
                        subnet: self.name.clone(),
                        family,
                    })?,
            };
            to_take.push(ip);
        }
        for ip in to_take {
            self.pool_mut(Family::of(ip))
                .expect("family checked above")
                .take(ip, owner);
            allocation.set_ip(ip);
        }
        self.macs.insert(mac, owner.to_owned());
        self.owners.insert(owner.to_owned(), allocation);
        Ok(allocation)
    }

    /// Records that `owner` holds `ips` (and `mac`), as found in OVN or the API at start-up.
    ///
    /// Never hands out an address twice: an address or MAC held by another owner is refused
    /// with the holder's name, as is an address the owner would hold twice in one family.
    /// Addresses in `excludeIps` are accepted (they were assigned before being excluded)
    /// and never freed; network, broadcast and gateway addresses are refused.
    /// Restoring what the owner already holds is a no-op; families it lacks are added.
    /// Without `mac`, the owner keeps its MAC or gets a generated one. On error nothing changes.
    pub fn restore(
        &mut self,
        owner: &str,
        ips: &[IpAddr],
        mac: Option<MacAddr>,
    ) -> Result<Allocation, AllocError> {
        let existing = self.owners.get(owner).copied();
        let mut to_take: Vec<IpAddr> = Vec::new();
        for &ip in ips {
            let family = Family::of(ip);
            if to_take.iter().any(|p| Family::of(*p) == family) {
                return Err(AllocError::DuplicateFamily(family));
            }
            match existing.and_then(|a| a.ip(family)) {
                Some(held) if held == ip => continue,
                Some(held) => {
                    return Err(AllocError::OwnerHasOtherAddress {
                        owner: owner.to_owned(),
                        existing: held,
                        requested: ip,
                    });
                }
                None => self.check_assignable(ip, owner, true)?,
            }
            to_take.push(ip);
        }
        let mac = self.plan_mac(owner, existing.map(|a| a.mac), mac)?;
        let mut allocation = existing.unwrap_or(Allocation {
            v4: None,
            v6: None,
            mac,
        });
        for ip in to_take {
            self.pool_mut(Family::of(ip))
                .expect("checked assignable")
                .take(ip, owner);
            allocation.set_ip(ip);
        }
        self.macs.insert(mac, owner.to_owned());
        self.owners.insert(owner.to_owned(), allocation);
        Ok(allocation)
    }

    /// Frees everything `owner` holds and returns it.
    pub fn release(&mut self, owner: &str) -> Option<Allocation> {
        let allocation = self.owners.remove(owner)?;
        for ip in allocation.ips() {
            if let Some(pool) = self.pool_mut(Family::of(ip)) {
                pool.release(ip);
            }
        }
        self.macs.remove(&allocation.mac);
        Some(allocation)
    }

    /// Applies a new configuration (CIDR, gateway or excludeIps change).
    ///
    /// Held addresses still inside the new CIDRs (and not its network, broadcast or gateway)
    /// are kept, including newly excluded ones; the others are dropped from their owners and
    /// returned. Released addresses keep their place at the back of the queue.
    /// Refused, with nothing changed, when a new gateway is an address held by an owner.
    pub fn reconfigure(&mut self, config: SubnetConfig) -> Result<Vec<Displaced>, AllocError> {
        for family in config.families() {
            if let Some(owner) = self.owner_of(family.gateway) {
                return Err(AllocError::GatewayInUse {
                    gateway: family.gateway,
                    owner: owner.to_owned(),
                });
            }
        }
        let mut v4 = config.v4().map(FamilyPool::new);
        let mut v6 = config.v6().map(FamilyPool::new);
        let mut displaced = Vec::new();
        let mut owners: Vec<&String> = self.owners.keys().collect();
        owners.sort();
        let mut updated = Vec::with_capacity(owners.len());
        for owner in owners {
            let held = self.owners[owner];
            let mut allocation = held;
            for ip in held.ips() {
                let pool = match Family::of(ip) {
                    Family::V4 => v4.as_mut(),
                    Family::V6 => v6.as_mut(),
                };
                match pool {
                    Some(pool) if keeps(pool.placement(ip)) => pool.take(ip, owner),
                    _ => {
                        allocation.clear_ip(Family::of(ip));
                        displaced.push(Displaced {
                            owner: owner.clone(),
                            ip,
                        });
                    }
                }
            }
            updated.push((owner.clone(), allocation));
        }
        for (old, new) in [(&self.v4, &mut v4), (&self.v6, &mut v6)] {
            if let (Some(old), Some(new)) = (old, new.as_mut()) {
                for ip in old.released_in_order() {
                    if new.placement(ip) == Placement::Assignable {
                        new.mark_released(ip);
                    }
                }
            }
        }
        self.owners = updated.into_iter().collect();
        self.v4 = v4;
        self.v6 = v6;
        self.config = config;
        Ok(displaced)
    }

    fn pool(&self, family: Family) -> Option<&FamilyPool> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    fn pool_mut(&mut self, family: Family) -> Option<&mut FamilyPool> {
        match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
    }

    /// Checks that `ip` may be given to `owner`; `allow_excluded` for restores.
    fn check_assignable(
        &self,
        ip: IpAddr,
        owner: &str,
        allow_excluded: bool,
    ) -> Result<(), AllocError> {
        let family = Family::of(ip);
        let pool = self
            .pool(family)
            .ok_or_else(|| AllocError::FamilyNotInSubnet {
                ip,
                family,
                subnet: self.name.clone(),
            })?;
        match pool.placement(ip) {
            Placement::Outside => {
                return Err(AllocError::OutsideSubnet {
                    ip,
                    subnet: self.name.clone(),
                    cidr: pool.cidr(),
                });
            }
            Placement::Reserved(ReservedReason::Excluded) if allow_excluded => {}
            Placement::Reserved(reason) => {
                return Err(AllocError::Reserved {
                    ip,
                    subnet: self.name.clone(),
                    reason,
                });
            }
            Placement::Assignable => {}
        }
        match pool.owner(ip) {
            Some(holder) if holder != owner => Err(AllocError::AddressInUse {
                ip,
                owner: holder.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The MAC `owner` ends up with: the one it holds, the requested one, or a generated one.
    fn plan_mac(
        &self,
        owner: &str,
        held: Option<MacAddr>,
        requested: Option<MacAddr>,
    ) -> Result<MacAddr, AllocError> {
        match (held, requested) {
            (Some(held), Some(requested)) if held != requested => {
                Err(AllocError::OwnerHasOtherMac {
                    owner: owner.to_owned(),
                    existing: held,
                    requested,
                })
            }
            (Some(held), _) => Ok(held),
            (None, Some(requested)) => match self.macs.get(&requested) {
                Some(holder) if holder != owner => Err(AllocError::MacInUse {
                    mac: requested,
                    owner: holder.clone(),
                }),
                _ => Ok(requested),
            },
            (None, None) => {
                let seed = format!("{}/{owner}", self.name);
                Ok((0..=u32::MAX)
                    .map(|attempt| MacAddr::generated(&seed, attempt))
                    .find(|mac| !self.macs.contains_key(mac))
                    .expect("2^32 generated MACs cannot all be taken"))
            }
        }
    }
}

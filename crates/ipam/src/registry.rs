//! The registry of all subnets' allocators.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::SubnetConfig;
use crate::error::AllocError;
use crate::mac::MacAddr;
use crate::subnet::{AddressRequest, Allocation, Displaced, Subnet};

/// All subnets' allocators, by subnet name.
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    subnets: HashMap<String, Subnet>,
}

impl Ipam {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds subnet `name`, or applies `config` to it if present (see [`Subnet::reconfigure`]:
    /// addresses still in range are kept, the others are returned).
    pub fn upsert_subnet(
        &mut self,
        name: &str,
        config: SubnetConfig,
    ) -> Result<Vec<Displaced>, AllocError> {
        match self.subnets.get_mut(name) {
            Some(subnet) if subnet.config() == &config => Ok(Vec::new()),
            Some(subnet) => subnet.reconfigure(config),
            None => {
                self.subnets
                    .insert(name.to_owned(), Subnet::new(name, config));
                Ok(Vec::new())
            }
        }
    }

    /// Removes subnet `name` and returns it with whatever it still held.
    pub fn remove_subnet(&mut self, name: &str) -> Option<Subnet> {
        self.subnets.remove(name)
    }

    /// Subnet `name`.
    pub fn subnet(&self, name: &str) -> Option<&Subnet> {
        self.subnets.get(name)
    }

    /// All subnets, in no particular order.
    pub fn subnets(&self) -> impl Iterator<Item = &Subnet> {
        self.subnets.values()
    }

    /// [`Subnet::allocate`] in subnet `subnet`. A dynamic address held in another subnet
    /// whose CIDR overlaps (another VPC's: a VPC's own subnets never overlap) is given only
    /// when no other is left, so that pods of tenants using the same CIDR rarely share an
    /// address (a node reaches its pods by address alone).
    pub fn allocate(
        &mut self,
        subnet: &str,
        owner: &str,
        request: &AddressRequest,
    ) -> Result<Allocation, AllocError> {
        // Out of the map while it allocates, so that the others can be read meanwhile.
        let (name, mut target) = self
            .subnets
            .remove_entry(subnet)
            .ok_or_else(|| AllocError::UnknownSubnet(subnet.to_owned()))?;
        let overlaps = |other: &Subnet| {
            other.config().families().any(|f| {
                target.config().families().any(|t| {
                    t.cidr.contains(&f.cidr.network()) || f.cidr.contains(&t.cidr.network())
                })
            })
        };
        let overlapping: Vec<&Subnet> = self.subnets.values().filter(|o| overlaps(o)).collect();
        let held_elsewhere = |ip: IpAddr| overlapping.iter().any(|o| o.owner_of(ip).is_some());
        let result = target.allocate_avoiding(owner, request, &held_elsewhere);
        self.subnets.insert(name, target);
        result
    }

    /// [`Subnet::release`] in subnet `subnet` (`None` if the subnet or owner is unknown).
    pub fn release(&mut self, subnet: &str, owner: &str) -> Option<Allocation> {
        self.subnets.get_mut(subnet)?.release(owner)
    }

    /// [`Subnet::restore`] in subnet `subnet`. The subnet is named rather than found
    /// from the addresses because subnets of different VPCs may overlap.
    pub fn restore(
        &mut self,
        subnet: &str,
        owner: &str,
        ips: &[IpAddr],
        mac: Option<MacAddr>,
    ) -> Result<Allocation, AllocError> {
        self.subnet_mut(subnet)?.restore(owner, ips, mac)
    }

    fn subnet_mut(&mut self, name: &str) -> Result<&mut Subnet, AllocError> {
        self.subnets
            .get_mut(name)
            .ok_or_else(|| AllocError::UnknownSubnet(name.to_owned()))
    }
}

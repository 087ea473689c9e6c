//! A Neutron tenant on the chassis: router, network, security group and a VM.

use anyhow::{Context, Result};

use crate::netns::{Nic, Workload};
use crate::neutron::{Cidr, NeutronNetwork, NeutronRouter, SecurityGroup, VmPort};
use crate::ovn::OvnEnv;

/// A Neutron tenant as Neutron Zed writes it: router `router-<name>` with network
/// `net-<name>` attached, a default security group, and VM `vm-<name>` whose port is in
/// that group and in `neutron_pg_drop`, bound on the environment's chassis and up.
#[derive(Debug)]
pub struct Tenant {
    /// The router.
    pub router: NeutronRouter,
    /// The network attached to it.
    pub network: NeutronNetwork,
    /// The VM's port.
    pub vm_port: VmPort,
    /// The VM: a network namespace plugged into `br-int` as the VM port.
    pub vm: Workload,
    /// The VM port's security group.
    pub sg: SecurityGroup,
}

impl Tenant {
    /// Creates the tenant with network `cidr` (gateway: its first address) and the VM at
    /// `vm_ip`, and waits until the VM's port is up.
    pub fn create(env: &OvnEnv, name: &str, cidr: &str, vm_ip: &str) -> Result<Self> {
        let chassis = env
            .chassis_name()
            .context("the environment has no chassis to bind the VM on")?
            .to_owned();
        let parsed = Cidr::parse(cidr)?;
        let mut router = NeutronRouter::create(env, &format!("router-{name}"))?;
        let network = NeutronNetwork::create(env, &format!("net-{name}"), cidr)?;
        router.add_interface(env, &network)?;
        let sg = SecurityGroup::create(env)?;
        let vm_port = network.add_vm_port(env, &format!("vm-{name}"), vm_ip, &chassis, &sg)?;
        let nic = Nic::new(
            &vm_port.mac,
            &format!("{vm_ip}/{}", parsed.prefix),
            Some(&parsed.gateway().to_string()),
        );
        let vm = env.plug(&vm_port.port_id, &nic)?;
        env.wait_lsp_up(&vm_port.port_id)?;
        Ok(Self {
            router,
            network,
            vm_port,
            vm,
            sg,
        })
    }
}

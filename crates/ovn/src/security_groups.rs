//! Whether Neutron's security groups let pods of a subnet open connections to
//! a VM.
//!
//! Neutron puts every VM port with port security into the port group
//! `neutron_pg_drop`, whose two `drop` ACLs (priority 1001) drop all IP
//! traffic; each security group is a port group `pg_<sg>` whose
//! `allow-related` ACLs (priority 1002) let traffic through. Replies to
//! connections the VM opened pass (conntrack), so VM → pod works; a new
//! connection pod → VM passes only if an ingress (`to-lport`) rule of one of
//! the VM's security groups admits the pod's source address — usually a rule
//! with `remote_ip_prefix` covering the pod subnet. This module reads those
//! rows and tells, per VM port, what pods of a CIDR can reach.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use ovsdb::Uuid;

use crate::nb::{Acl, AddressSet, LogicalSwitchPort, PortGroup};

/// Name of Neutron's port group that drops everything not allowed.
pub const DROP_PORT_GROUP: &str = "neutron_pg_drop";

/// What pods of a CIDR can open towards one VM port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The port has no port security (not in `neutron_pg_drop`): nothing drops.
    Unfiltered,
    /// A rule admits every protocol from the whole CIDR.
    Allowed {
        /// The admitting ACL's match.
        rule: String,
    },
    /// Only some traffic is admitted (some protocols or ports, or part of the CIDR).
    Partial {
        /// The matches of the admitting ACLs.
        rules: Vec<String>,
    },
    /// New connections from the CIDR are dropped by `neutron_pg_drop`.
    Dropped,
}

/// The verdict for one Neutron VM port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPortReach {
    /// Logical_Switch_Port name (the Neutron port UUID).
    pub port: String,
    /// The port's addresses (`MAC IP...`).
    pub addresses: Vec<String>,
    /// Its security groups' port groups (`pg_<sg>`).
    pub security_groups: Vec<String>,
    /// What pods of the CIDR can open towards it.
    pub reach: Reach,
}

/// Port groups, ACLs and address sets of the Northbound database.
pub struct SecurityRows<'a> {
    /// Every Port_Group row.
    pub port_groups: &'a [PortGroup],
    /// Every ACL row, by uuid.
    pub acls: &'a BTreeMap<Uuid, Acl>,
    /// Every Address_Set row.
    pub address_sets: &'a [AddressSet],
}

/// What pods in `cidr` can open towards each of `vm_ports`.
pub fn pod_to_vm_reach(
    cidr: IpNet,
    vm_ports: &[&LogicalSwitchPort],
    rows: &SecurityRows<'_>,
) -> Vec<VmPortReach> {
    let address_sets: BTreeMap<&str, &AddressSet> = rows
        .address_sets
        .iter()
        .map(|set| (set.name.as_str(), set))
        .collect();
    vm_ports
        .iter()
        .map(|port| {
            let groups: Vec<&PortGroup> = rows
                .port_groups
                .iter()
                .filter(|pg| pg.ports.contains(&port.uuid))
                .collect();
            let filtered = groups.iter().any(|pg| pg.name == DROP_PORT_GROUP);
            let security_groups: Vec<String> = groups
                .iter()
                .filter(|pg| pg.name != DROP_PORT_GROUP)
                .map(|pg| pg.name.clone())
                .collect();
            let reach = if !filtered {
                Reach::Unfiltered
            } else {
                let mut partial = Vec::new();
                let mut allowed = None;
                for pg in groups.iter().filter(|pg| pg.name != DROP_PORT_GROUP) {
                    for acl in pg.acls.iter().filter_map(|uuid| rows.acls.get(uuid)) {
                        match admits(acl, &pg.name, cidr, &address_sets) {
                            Admission::All => allowed = Some(acl.match_.clone()),
                            Admission::Some => partial.push(acl.match_.clone()),
                            Admission::None => {}
                        }
                    }
                }
                match allowed {
                    Some(rule) => Reach::Allowed { rule },
                    None if !partial.is_empty() => Reach::Partial { rules: partial },
                    None => Reach::Dropped,
                }
            };
            VmPortReach {
                port: port.name.clone(),
                addresses: port.addresses.iter().cloned().collect(),
                security_groups,
                reach,
            }
        })
        .collect()
}

/// How much of the traffic from a CIDR an ACL admits.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    All,
    Some,
    None,
}

/// Reads a Neutron security-group ACL: `to-lport` allow rules of the port
/// group, `&&`-joined terms such as `outport == @pg_x`, `ip4`,
/// `ip4.src == 10.0.2.0/24`, `ip4.src == $pg_x_ip4`, `tcp`, `tcp.dst == 22`.
fn admits(
    acl: &Acl,
    port_group: &str,
    cidr: IpNet,
    address_sets: &BTreeMap<&str, &AddressSet>,
) -> Admission {
    if acl.direction != "to-lport" || !acl.action.starts_with("allow") {
        return Admission::None;
    }
    let family = if cidr.addr().is_ipv4() { "ip4" } else { "ip6" };
    let mut whole = true;
    let mut family_seen = false;
    for term in acl.match_.split("&&").map(str::trim) {
        let term = term.trim_matches(|c| c == '(' || c == ')').trim();
        if let Some(group) = term.strip_prefix("outport == @") {
            if group != port_group {
                return Admission::None;
            }
        } else if term == "ip4" || term == "ip6" {
            if term != family {
                return Admission::None;
            }
            family_seen = true;
        } else if let Some(source) = term.strip_prefix(&format!("{family}.src == ")) {
            match source_covers(source, cidr, address_sets) {
                Admission::All => {}
                Admission::Some => whole = false,
                Admission::None => return Admission::None,
            }
        } else if term.starts_with("ip4.src") || term.starts_with("ip6.src") {
            // A source of the other family or an operator we do not read.
            return Admission::None;
        } else if term == "ip" {
            family_seen = true;
        } else {
            // Protocol or port restrictions (`tcp`, `tcp.dst == 22`, `icmp4`...).
            whole = false;
        }
    }
    if !family_seen {
        return Admission::None;
    }
    if whole {
        Admission::All
    } else {
        Admission::Some
    }
}

/// Whether the source term (`10.0.2.0/24`, `{a, b}`, `$set`) covers `cidr`.
fn source_covers(
    source: &str,
    cidr: IpNet,
    address_sets: &BTreeMap<&str, &AddressSet>,
) -> Admission {
    let source = source.trim();
    let items: Vec<String> = if let Some(name) = source.strip_prefix('$') {
        match address_sets.get(name) {
            Some(set) => set.addresses.iter().cloned().collect(),
            None => return Admission::None,
        }
    } else {
        source
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let nets: BTreeSet<IpNet> = items.iter().filter_map(|s| parse_net(s)).collect();
    if nets.iter().any(|net| net.contains(&cidr)) {
        Admission::All
    } else if nets
        .iter()
        .any(|net| cidr.contains(net) || net.contains(&cidr.addr()))
    {
        Admission::Some
    } else {
        Admission::None
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(uuid: u128, match_: &str) -> Acl {
        Acl {
            uuid: Uuid::from_u128(uuid),
            direction: "to-lport".into(),
            priority: 1002,
            match_: match_.into(),
            action: "allow-related".into(),
            ..Acl::default()
        }
    }

    fn reach(acls: Vec<Acl>, sets: Vec<AddressSet>, in_drop: bool) -> Reach {
        let vm = LogicalSwitchPort {
            uuid: Uuid::from_u128(1),
            name: "4e0ae1f7-6c3b-4d8e-9a59-0d6f7cbb5b10".into(),
            addresses: ["fa:16:3e:00:00:01 10.0.1.50".to_string()].into(),
            ..LogicalSwitchPort::default()
        };
        let mut groups = vec![PortGroup {
            name: "pg_sg1".into(),
            ports: [vm.uuid].into(),
            acls: acls.iter().map(|a| a.uuid).collect(),
            ..PortGroup::default()
        }];
        if in_drop {
            groups.push(PortGroup {
                name: DROP_PORT_GROUP.into(),
                ports: [vm.uuid].into(),
                ..PortGroup::default()
            });
        }
        let acls: BTreeMap<Uuid, Acl> = acls.into_iter().map(|a| (a.uuid, a)).collect();
        let rows = SecurityRows {
            port_groups: &groups,
            acls: &acls,
            address_sets: &sets,
        };
        let cidr: IpNet = "10.0.2.0/24".parse().unwrap();
        pod_to_vm_reach(cidr, &[&vm], &rows).remove(0).reach
    }

    #[test]
    fn default_security_group_drops_pods() {
        let remote_group = acl(10, "outport == @pg_sg1 && ip4 && ip4.src == $pg_sg1_ip4");
        let set = AddressSet {
            name: "pg_sg1_ip4".into(),
            addresses: ["10.0.1.50".to_string()].into(),
            ..AddressSet::default()
        };
        assert_eq!(reach(vec![remote_group], vec![set], true), Reach::Dropped);
    }

    #[test]
    fn remote_ip_prefix_rule_admits_the_subnet() {
        let rule = "outport == @pg_sg1 && ip4 && ip4.src == 10.0.0.0/16";
        assert_eq!(
            reach(vec![acl(11, rule)], vec![], true),
            Reach::Allowed { rule: rule.into() }
        );
        let tcp = "outport == @pg_sg1 && ip4 && ip4.src == 10.0.2.0/24 && tcp && tcp.dst == 22";
        assert_eq!(
            reach(vec![acl(12, tcp)], vec![], true),
            Reach::Partial {
                rules: vec![tcp.into()]
            }
        );
        let other = "outport == @pg_sg1 && ip4 && ip4.src == 192.168.0.0/24";
        assert_eq!(reach(vec![acl(13, other)], vec![], true), Reach::Dropped);
        let any = "outport == @pg_sg1 && ip4";
        assert_eq!(
            reach(vec![acl(14, any)], vec![], true),
            Reach::Allowed { rule: any.into() }
        );
    }

    #[test]
    fn egress_rules_and_ports_without_security_are_told_apart() {
        let mut egress = acl(15, "inport == @pg_sg1 && ip4");
        egress.direction = "from-lport".into();
        assert_eq!(reach(vec![egress], vec![], true), Reach::Dropped);
        assert_eq!(reach(vec![], vec![], false), Reach::Unfiltered);
    }
}

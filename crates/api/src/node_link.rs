//! The node-link contract between `rovn-controller` and `rovn-agent`: how a node reaches a
//! VPC and the VPC reaches the node, recorded on one Northbound Logical_Switch_Port per
//! (VPC, node) that the controller writes and the agent reads.
//!
//! Every served VPC gets a switch of ours joined to its router; each node has a port on it,
//! with an address of the node-link network (default `100.64.0.0/16`, the same in every
//! VPC: VPCs are isolated, so the addresses may repeat). The router holds a static route to
//! each node address of the node (`<node ip>/32 via <port address>`). On the node, the agent
//! binds the port to a network namespace of its own per VPC (the node's gateway into that
//! VPC), which source-NATs what crosses it and forwards nothing else.
//!
//! The port's `external_ids` carry, besides the owner keys every row of ours has, what the
//! agent needs: [`NodeLink::external_ids`] writes them, [`NodeLink::from_port`] reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

/// `external_ids` key: the node the port serves (the agent replicates only its own ports).
pub const NODE_KEY: &str = "rovn:node";
/// `external_ids` key: the VPC.
pub const VPC_KEY: &str = "rovn:vpc";
/// `external_ids` key: the port's address with the node-link prefix (`100.64.0.2/16`).
pub const ADDRESS_KEY: &str = "rovn:address";
/// `external_ids` key: the VPC router's address on the node-link network.
pub const GATEWAY_KEY: &str = "rovn:gateway";
/// `external_ids` key: the VPC's Subnets, comma-separated (the agent routes the node's
/// pods of these Subnets through this port).
pub const SUBNETS_KEY: &str = "rovn:subnets";
/// `external_ids` key: the node's addresses the VPC routes to this port, comma-separated.
pub const NODE_IPS_KEY: &str = "rovn:node_ips";

/// Name of the node-link port of `node` in `vpc` (`/` is in no Kubernetes name, so the
/// name is unambiguous).
pub fn port_name(vpc: &str, node: &str) -> String {
    format!("rovn-node/{vpc}/{node}")
}

/// The MAC of a node-link address: `0a:52` (locally administered, unicast) then the four
/// octets of the address, so every address of the network has its own.
pub fn mac_of(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:52:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// One node's link into one VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLink {
    /// The VPC.
    pub vpc: String,
    /// The node.
    pub node: String,
    /// The port's address with the network's prefix.
    pub address: Ipv4Net,
    /// The router's address on the network.
    pub gateway: Ipv4Addr,
    /// The VPC's Subnets.
    pub subnets: BTreeSet<String>,
    /// The node's addresses the VPC routes to the port.
    pub node_ips: Vec<IpAddr>,
}

/// A node-link port whose `external_ids` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node-link port {port}: external_ids {key} is missing or invalid ({value:?})")]
pub struct InvalidNodeLink {
    /// The port's name.
    pub port: String,
    /// The key.
    pub key: &'static str,
    /// Its value (empty when missing).
    pub value: String,
}

impl NodeLink {
    /// The port's name ([`port_name`]).
    pub fn port_name(&self) -> String {
        port_name(&self.vpc, &self.node)
    }

    /// The port's MAC ([`mac_of`] its address).
    pub fn mac(&self) -> String {
        mac_of(self.address.addr())
    }

    /// The port's `addresses` entry: `"<mac> <address>"`.
    pub fn lsp_address(&self) -> String {
        format!("{} {}", self.mac(), self.address.addr())
    }

    /// The keys recording this link (the owner keys are the writer's to add).
    pub fn external_ids(&self) -> BTreeMap<String, String> {
        let joined = |items: Vec<String>| items.join(",");
        BTreeMap::from([
            (NODE_KEY.to_string(), self.node.clone()),
            (VPC_KEY.to_string(), self.vpc.clone()),
            (ADDRESS_KEY.to_string(), self.address.to_string()),
            (GATEWAY_KEY.to_string(), self.gateway.to_string()),
            (
                SUBNETS_KEY.to_string(),
                joined(self.subnets.iter().cloned().collect()),
            ),
            (
                NODE_IPS_KEY.to_string(),
                joined(self.node_ips.iter().map(IpAddr::to_string).collect()),
            ),
        ])
    }

    /// Reads the link recorded on port `port` with `external_ids`.
    pub fn from_port(
        port: &str,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<Self, InvalidNodeLink> {
        let get = |key: &'static str| {
            let value = external_ids.get(key).map(String::as_str).unwrap_or("");
            let invalid = move || InvalidNodeLink {
                port: port.to_string(),
                key,
                value: value.to_string(),
            };
            (value, invalid)
        };
        let required = |key: &'static str| {
            let (value, invalid) = get(key);
            if value.is_empty() {
                Err(invalid())
            } else {
                Ok(value.to_string())
            }
        };
        let list = |value: &str| -> Vec<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (address, bad_address) = get(ADDRESS_KEY);
        let (gateway, bad_gateway) = get(GATEWAY_KEY);
        let (node_ips, bad_node_ips) = get(NODE_IPS_KEY);
        Ok(NodeLink {
            vpc: required(VPC_KEY)?,
            node: required(NODE_KEY)?,
            address: address.parse().map_err(|_| bad_address())?,
            gateway: gateway.parse().map_err(|_| bad_gateway())?,
            subnets: list(get(SUBNETS_KEY).0).into_iter().collect(),
            node_ips: list(node_ips)
                .iter()
                .map(|ip| ip.parse().map_err(|_| bad_node_ips()))
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> NodeLink {
        NodeLink {
            vpc: "neutron-2c1f".to_string(),
            node: "node-1".to_string(),
            address: "100.64.0.2/16".parse().unwrap(),
            gateway: "100.64.0.1".parse().unwrap(),
            subnets: ["net2".to_string(), "net3".to_string()].into(),
            node_ips: vec!["192.168.1.5".parse().unwrap()],
        }
    }

    #[test]
    fn a_link_round_trips_through_external_ids() {
        let link = link();
        let ids = link.external_ids();
        assert_eq!(ids[SUBNETS_KEY], "net2,net3");
        assert_eq!(NodeLink::from_port("p", &ids), Ok(link.clone()));
        let empty = NodeLink {
            subnets: BTreeSet::new(),
            node_ips: Vec::new(),
            ..link
        };
        assert_eq!(NodeLink::from_port("p", &empty.external_ids()), Ok(empty));
    }

    #[test]
    fn names_and_macs_follow_the_address() {
        let link = link();
        assert_eq!(link.port_name(), "rovn-node/neutron-2c1f/node-1");
        assert_eq!(link.lsp_address(), "0a:52:64:40:00:02 100.64.0.2");
        assert_eq!(mac_of("100.64.1.255".parse().unwrap()), "0a:52:64:40:01:ff");
    }

    #[test]
    fn a_missing_or_bad_key_is_named() {
        let mut ids = link().external_ids();
        ids.insert(ADDRESS_KEY.to_string(), "100.64.0.2".to_string());
        let error = NodeLink::from_port("p", &ids).unwrap_err();
        assert_eq!(error.key, ADDRESS_KEY);
        ids.remove(NODE_KEY);
        assert_eq!(NodeLink::from_port("p", &ids).unwrap_err().key, NODE_KEY);
    }
}

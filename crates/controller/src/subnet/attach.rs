//! The OVN rows of a Subnet and the transactions that create, repair, move
//! and remove them.
//!
//! Per Subnet `<name>`, all with our owner marker
//! (`our_external_ids("subnet", <name>)`):
//! - Logical_Switch `<name>` (Kube-OVN compatible);
//! - Logical_Switch_Port `rovn-<name>-lsp`, type `router`, addresses
//!   `router`, `options:router-port=rovn-<name>-lrp`;
//! - Logical_Router_Port `rovn-<name>-lrp` on the VPC's router, networks =
//!   gateway/prefix per family, MAC = the IPAM's stable gateway MAC.
//!
//! The `rovn-` prefix can never be one of Neutron's names (`neutron-*`,
//! `lrp-<uuid>`, bare UUIDs, `provnet-*`), and Neutron's repair-mode sync,
//! which deletes foreign `lrp-*` router ports, leaves it alone. The only
//! write to a row that is not ours is inserting or deleting our router
//! port's uuid in a router's `ports`.

use std::collections::BTreeMap;

use ipam::SubnetConfig;
use ovn::Table;
use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort};
use ovn::ownership::{self, OWNER, OWNER_KEY};
use ovsdb::{Atom, Condition as Where, Mutation, Replica, Row, TxnBuilder, Uuid, Value};

/// `rovn:kind` of a Subnet's rows.
pub const KIND: &str = "subnet";

/// Name of a Subnet's router port.
pub fn lrp_name(subnet: &str) -> String {
    format!("rovn-{subnet}-lrp")
}

/// Name of a Subnet's router-type switch port.
pub fn lsp_name(subnet: &str) -> String {
    format!("rovn-{subnet}-lsp")
}

/// The rows a Subnet should have.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The switch (only name and marker are ours to set).
    pub switch: LogicalSwitch,
    /// The router-type switch port.
    pub lsp: LogicalSwitchPort,
    /// The router port.
    pub lrp: LogicalRouterPort,
}

impl Desired {
    /// The rows of Subnet `name` with `config` and gateway MAC `mac`.
    pub fn new(name: &str, config: &SubnetConfig, mac: &str) -> Self {
        let ids = ownership::our_external_ids(KIND, name);
        let networks = config
            .families()
            .map(|f| format!("{}/{}", f.gateway, f.cidr.prefix_len()))
            .collect();
        Self {
            switch: LogicalSwitch {
                name: name.to_string(),
                external_ids: ids.clone(),
                ..LogicalSwitch::default()
            },
            lsp: LogicalSwitchPort {
                name: lsp_name(name),
                type_: "router".to_string(),
                addresses: ["router".to_string()].into(),
                options: BTreeMap::from([("router-port".to_string(), lrp_name(name))]),
                external_ids: ids.clone(),
                ..LogicalSwitchPort::default()
            },
            lrp: LogicalRouterPort {
                name: lrp_name(name),
                mac: mac.to_string(),
                networks,
                external_ids: ids,
                ..LogicalRouterPort::default()
            },
        }
    }
}

fn decode<T: Table>(rows: Vec<std::sync::Arc<Row>>) -> Vec<T> {
    rows.iter()
        .filter_map(|row| T::from_row(row.uuid()?, row).ok())
        .collect()
}

fn ours_for(external_ids: &BTreeMap<String, String>, subnet: &str) -> bool {
    ownership::is_ours(external_ids)
        && external_ids.get(ownership::KIND_KEY).map(String::as_str) == Some(KIND)
        && external_ids.get(ownership::OBJECT_KEY).map(String::as_str) == Some(subnet)
}

/// What OVN holds of a Subnet's rows.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Our switch.
    pub switch: Option<LogicalSwitch>,
    /// Our router-type switch port, when it is on our switch.
    pub lsp: Option<LogicalSwitchPort>,
    /// Our router port.
    pub lrp: Option<LogicalRouterPort>,
    /// Routers whose `ports` hold our router port.
    pub lrp_routers: Vec<LogicalRouter>,
    /// A row with one of our names that we did not create.
    pub name_taken: Option<String>,
}

impl Observed {
    /// Reads Subnet `name`'s rows from the replica.
    pub fn read(replica: &Replica, name: &str) -> Self {
        let mut observed = Observed::default();
        let switches: Vec<LogicalSwitch> = decode(replica.by_name(LogicalSwitch::NAME, name));
        observed.switch = switches
            .iter()
            .find(|s| ours_for(&s.external_ids, name))
            .cloned();
        if observed.switch.is_none() && !switches.is_empty() {
            observed.name_taken = Some(format!("Logical_Switch {name}"));
        }
        let lsps: Vec<LogicalSwitchPort> =
            decode(replica.by_name(LogicalSwitchPort::NAME, &lsp_name(name)));
        observed.lsp = lsps
            .iter()
            .find(|p| {
                ours_for(&p.external_ids, name)
                    && observed
                        .switch
                        .as_ref()
                        .is_some_and(|s| s.ports.contains(&p.uuid))
            })
            .cloned();
        if lsps.iter().any(|p| !ours_for(&p.external_ids, name)) {
            observed.name_taken = Some(format!("Logical_Switch_Port {}", lsp_name(name)));
        }
        let lrps: Vec<LogicalRouterPort> =
            decode(replica.by_name(LogicalRouterPort::NAME, &lrp_name(name)));
        observed.lrp = lrps
            .iter()
            .find(|p| ours_for(&p.external_ids, name))
            .cloned();
        if lrps.iter().any(|p| !ours_for(&p.external_ids, name)) {
            observed.name_taken = Some(format!("Logical_Router_Port {}", lrp_name(name)));
        }
        if let Some(lrp) = &observed.lrp {
            observed.lrp_routers = decode::<LogicalRouter>(replica.table(LogicalRouter::NAME))
                .into_iter()
                .filter(|r| r.ports.contains(&lrp.uuid))
                .collect();
        }
        observed
    }
}

/// What an attach transaction changes (for logs and repair metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The switch was created.
    pub switch_created: bool,
    /// The router-type switch port was created or corrected.
    pub switch_port: bool,
    /// The router port was created, corrected or put back on the router.
    pub router_port: bool,
    /// The router port was taken off other routers (a move).
    pub moved_from: Vec<String>,
}

impl Changes {
    /// Whether the transaction changes anything.
    pub fn any(&self) -> bool {
        self.switch_created || self.switch_port || self.router_port || !self.moved_from.is_empty()
    }
}

fn where_ours(uuid: Uuid) -> Vec<Where> {
    vec![
        Where::uuid(uuid),
        Where::includes("external_ids", Value::map([(OWNER_KEY, OWNER)])),
    ]
}

/// Adds to `txn` what turns `observed` into `desired`: the switch and its
/// router-type port always; the router port on `router` when given, and off
/// any other router. Returns what it changes and the index of the
/// operation putting the port on `router` (its count must be 1).
pub fn plan(
    txn: &mut TxnBuilder,
    desired: &Desired,
    observed: &Observed,
    router: Option<&LogicalRouter>,
) -> (Changes, Option<usize>) {
    let mut changes = Changes::default();
    let lsp_row = || desired.lsp.to_row();
    match (&observed.switch, &observed.lsp) {
        (None, _) => {
            let lsp = txn.insert(LogicalSwitchPort::NAME, lsp_row());
            let switch = Row::new()
                .with("name", desired.switch.name.as_str())
                .with(
                    "external_ids",
                    Value::map(desired.switch.external_ids.clone()),
                )
                .with("ports", Value::set([lsp]));
            txn.insert(LogicalSwitch::NAME, switch);
            changes.switch_created = true;
            changes.switch_port = true;
        }
        (Some(switch), None) => {
            let lsp = txn.insert(LogicalSwitchPort::NAME, lsp_row());
            txn.mutate(
                LogicalSwitch::NAME,
                where_ours(switch.uuid),
                vec![Mutation::insert("ports", Value::set([lsp]))],
            );
            changes.switch_port = true;
        }
        (Some(_), Some(lsp)) => {
            // Keys others add (e.g. Neutron's maintenance options) are kept:
            // only ours are compared and restored.
            let mut options = lsp.options.clone();
            options.extend(desired.lsp.options.clone());
            let mut external_ids = lsp.external_ids.clone();
            external_ids.extend(desired.lsp.external_ids.clone());
            if lsp.type_ != desired.lsp.type_
                || lsp.addresses != desired.lsp.addresses
                || options != lsp.options
                || external_ids != lsp.external_ids
            {
                let row = Row::new()
                    .with("type", desired.lsp.type_.as_str())
                    .with("addresses", Value::set(desired.lsp.addresses.clone()))
                    .with("options", Value::map(options))
                    .with("external_ids", Value::map(external_ids));
                txn.update(LogicalSwitchPort::NAME, where_ours(lsp.uuid), row);
                changes.switch_port = true;
            }
        }
    }
    let Some(router) = router else {
        // Moved to a VPC whose router is missing: off the old router.
        if let Some(lrp) = &observed.lrp {
            for other in &observed.lrp_routers {
                txn.mutate(
                    LogicalRouter::NAME,
                    vec![Where::uuid(other.uuid)],
                    vec![Mutation::delete("ports", Value::set([lrp.uuid]))],
                );
                changes.moved_from.push(other.name.clone());
            }
        }
        return (changes, None);
    };
    let attach = match &observed.lrp {
        None => {
            let lrp = txn.insert(LogicalRouterPort::NAME, desired.lrp.to_row());
            changes.router_port = true;
            Atom::from(lrp)
        }
        Some(lrp) => {
            if lrp.mac != desired.lrp.mac || lrp.networks != desired.lrp.networks {
                let row = Row::new()
                    .with("mac", desired.lrp.mac.as_str())
                    .with("networks", Value::set(desired.lrp.networks.clone()));
                txn.update(LogicalRouterPort::NAME, where_ours(lrp.uuid), row);
                changes.router_port = true;
            }
            for other in observed
                .lrp_routers
                .iter()
                .filter(|r| r.uuid != router.uuid)
            {
                txn.mutate(
                    LogicalRouter::NAME,
                    vec![Where::uuid(other.uuid)],
                    vec![Mutation::delete("ports", Value::set([lrp.uuid]))],
                );
                changes.moved_from.push(other.name.clone());
            }
            if observed.lrp_routers.iter().any(|r| r.uuid == router.uuid) {
                return (changes, None);
            }
            changes.router_port = true;
            Atom::from(lrp.uuid)
        }
    };
    txn.mutate(
        LogicalRouter::NAME,
        vec![Where::uuid(router.uuid)],
        vec![Mutation::insert("ports", Value::set([attach]))],
    );
    (changes, Some(txn.operations().len() - 1))
}

/// Adds to `txn` the removal of everything Subnet `name` created: our
/// router port off every router holding it (OVN then drops it), and our
/// switch (its ports go with it). Only rows with our marker are touched.
pub fn plan_removal(txn: &mut TxnBuilder, observed: &Observed) -> bool {
    let mut any = false;
    if let Some(lrp) = &observed.lrp {
        for router in &observed.lrp_routers {
            txn.mutate(
                LogicalRouter::NAME,
                vec![Where::uuid(router.uuid)],
                vec![Mutation::delete("ports", Value::set([lrp.uuid]))],
            );
            any = true;
        }
    }
    if let Some(switch) = &observed.switch {
        txn.delete(LogicalSwitch::NAME, where_ours(switch.uuid));
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovsdb::Operation;

    fn dual() -> SubnetConfig {
        SubnetConfig::parse(None, "10.0.2.0/24,fd00:2::/64", None, &[]).unwrap()
    }

    #[test]
    fn desired_rows_carry_our_marker_and_gateways() {
        let d = Desired::new("net2", &dual(), "0a:72:00:00:00:01");
        assert_eq!(d.lrp.name, "rovn-net2-lrp");
        assert_eq!(d.lsp.name, "rovn-net2-lsp");
        assert!(ovn::ownership::check_name(&d.lrp.name).is_ok());
        assert!(ovn::ownership::check_name(&d.lsp.name).is_ok());
        assert_eq!(
            d.lrp.networks,
            ["10.0.2.1/24", "fd00:2::1/64"].map(String::from).into()
        );
        assert_eq!(d.lsp.options["router-port"], "rovn-net2-lrp");
        for ids in [
            &d.switch.external_ids,
            &d.lsp.external_ids,
            &d.lrp.external_ids,
        ] {
            assert!(ours_for(ids, "net2"));
            assert!(ovn::ownership::check_external_ids(ids).is_ok());
        }
    }

    #[test]
    fn keys_added_by_others_are_left_alone() {
        let d = Desired::new("net2", &dual(), "0a:72:00:00:00:01");
        let mut lsp = d.lsp.clone();
        lsp.options
            .insert("mcast_flood_reports".to_string(), "true".to_string());
        let observed = Observed {
            switch: Some(d.switch.clone()),
            lsp: Some(lsp.clone()),
            ..Observed::default()
        };
        let mut txn = TxnBuilder::new("OVN_Northbound");
        let (changes, _) = plan(&mut txn, &d, &observed, None);
        assert!(!changes.any() && txn.is_empty());
        // Our key changed: restored, the other key kept.
        lsp.options
            .insert("router-port".to_string(), "elsewhere".to_string());
        let observed = Observed {
            lsp: Some(lsp),
            ..observed
        };
        let (changes, _) = plan(&mut txn, &d, &observed, None);
        assert!(changes.switch_port);
        let Operation::Update { row, .. } = &txn.operations()[0] else {
            panic!("an update");
        };
        let options = row.get("options").and_then(Value::as_map).expect("options");
        assert_eq!(options.len(), 2);
    }

    #[test]
    fn first_attach_is_one_transaction_and_moves_only_touch_ports() {
        let d = Desired::new("net2", &dual(), "0a:72:00:00:00:01");
        let router = LogicalRouter {
            uuid: Uuid::from_u128(1),
            name: "neutron-r".to_string(),
            ..LogicalRouter::default()
        };
        let mut txn = TxnBuilder::new("OVN_Northbound");
        let (changes, op) = plan(&mut txn, &d, &Observed::default(), Some(&router));
        assert!(changes.switch_created && changes.switch_port && changes.router_port);
        let ops = txn.operations();
        assert_eq!(ops.len(), 4, "LSP, switch, LRP, router ports");
        assert!(
            matches!(&ops[op.unwrap()], Operation::Mutate { table, .. } if table == "Logical_Router")
        );

        // Already attached to another router: the same port moves.
        let lrp = LogicalRouterPort {
            uuid: Uuid::from_u128(2),
            ..d.lrp.clone()
        };
        let old = LogicalRouter {
            uuid: Uuid::from_u128(3),
            name: "old".to_string(),
            ports: [lrp.uuid].into(),
            ..LogicalRouter::default()
        };
        let observed = Observed {
            switch: Some(d.switch.clone()),
            lsp: Some(d.lsp.clone()),
            lrp: Some(lrp),
            lrp_routers: vec![old],
            name_taken: None,
        };
        let mut txn = TxnBuilder::new("OVN_Northbound");
        let (changes, _) = plan(&mut txn, &d, &observed, Some(&router));
        assert_eq!(changes.moved_from, ["old"]);
        assert!(txn.operations().iter().all(|op| matches!(
            op,
            Operation::Mutate { table, mutations, .. }
                if table == "Logical_Router" && mutations.iter().all(|m| m.column == "ports")
        )));
    }
}

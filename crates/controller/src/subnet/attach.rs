//! The OVN rows of a Subnet and the transactions that create, repair, move
//! and remove them.
//!
//! Per Subnet `<name>`, all owned by `Owner::subnet(<name>)`:
//! - Logical_Switch `<name>` (Kube-OVN compatible);
//! - Logical_Switch_Port `rovn-<name>-lsp`, type `router`, addresses
//!   `router`, `options:router-port` = the router port's name;
//! - Logical_Router_Port `rovn-<name>-<hash of the router's name>` on the
//!   VPC's router, networks = gateway/prefix per family, MAC = the IPAM's
//!   stable gateway MAC.
//!
//! The router port's name depends on the router because a move must change
//! it. When a port of the same name is re-parented (or deleted and
//! re-created) on another router, ovn-northd replaces the router side's
//! Southbound Port_Binding (new datapath and tunnel key) but leaves the
//! switch side's binding untouched (`peer` is still the same name), and
//! ovn-controller (23.03) recomputes only the flows of bindings that
//! changed: the switch side's patch flow, which holds the peer's datapath
//! and tunnel key as they were when it was computed, kept sending the
//! switch's traffic to the old router. With a new name, the switch port's
//! `router-port`, hence its binding's `peer`, changes in the same
//! transaction, and every chassis recomputes both sides.
//!
//! The `rovn-` prefix can never be one of Neutron's names (`neutron-*`,
//! `lrp-<uuid>`, bare UUIDs, `provnet-*`), and Neutron's repair-mode sync,
//! which deletes foreign `lrp-*` router ports, leaves it alone. Our rows are
//! found by their marker, whatever their name. The only write to a row that
//! is not ours is inserting or deleting our router port's uuid in a router's
//! `ports`.

use ipam::SubnetConfig;
use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort};
use ovn::owned::{Mine, Op, OwnedTxn, Owner, Refused, RouterPort};
use ovn::view::View;

/// Name of Subnet `subnet`'s router port on router `router`:
/// `rovn-<subnet>-<8 hex digits>`, the digits a stable hash (32-bit FNV-1a)
/// of the router's name. The last `-` separates the subnet from the hash, so
/// two Subnets never share a name, and no name ends like the switch ports'
/// `-lsp`.
pub fn lrp_name(subnet: &str, router: &str) -> String {
    let hash = router.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("rovn-{subnet}-{hash:08x}")
}

/// Name of a Subnet's router-type switch port.
pub fn lsp_name(subnet: &str) -> String {
    format!("rovn-{subnet}-lsp")
}

/// Where a valid Subnet stands in OVN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Our router port is on the router.
    Attached {
        /// The router.
        router: String,
        /// Whether it is Neutron's.
        neutron: bool,
    },
    /// The VPC's router is not in OVN (yet, or any more).
    RouterMissing {
        /// The router.
        router: String,
        /// Whether the VPC was imported from Neutron.
        imported: bool,
    },
    /// A row with one of our names exists and is not ours: nothing written.
    NameTaken(String),
    /// Never valid: nothing was created.
    NotCreated,
}

/// The rows a Subnet should have.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The switch (only name and marker are ours to set).
    pub switch: LogicalSwitch,
    /// The router-type switch port (`router-port` set only when the router
    /// is known).
    pub lsp: LogicalSwitchPort,
    /// The router port, when the router is known.
    pub lrp: Option<LogicalRouterPort>,
}

impl Desired {
    /// The rows of Subnet `name` with `config` and gateway MAC `mac`, on
    /// router `router` when it exists.
    pub fn new(name: &str, config: &SubnetConfig, mac: &str, router: Option<&str>) -> Self {
        let ids = Owner::subnet(name).external_ids();
        let networks = config
            .families()
            .map(|f| format!("{}/{}", f.gateway, f.cidr.prefix_len()))
            .collect();
        let lrp = router.map(|router| LogicalRouterPort {
            name: lrp_name(name, router),
            mac: mac.to_string(),
            networks,
            external_ids: ids.clone(),
            ..LogicalRouterPort::default()
        });
        let options = lrp
            .iter()
            .map(|lrp| ("router-port".to_string(), lrp.name.clone()))
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
                options,
                external_ids: ids,
                ..LogicalSwitchPort::default()
            },
            lrp,
        }
    }
}

/// One of our router ports and the routers whose `ports` hold it.
#[derive(Clone, Debug)]
pub struct PlacedPort {
    /// The router port.
    pub port: Mine<LogicalRouterPort>,
    /// Routers holding it (normally one; none once OVN has dropped it).
    pub routers: Vec<LogicalRouter>,
}

/// What OVN holds of a Subnet's rows.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Our switch.
    pub switch: Option<Mine<LogicalSwitch>>,
    /// Our router-type switch port, when it is on our switch.
    pub lsp: Option<Mine<LogicalSwitchPort>>,
    /// Our router ports, whatever their name and router (one, except in
    /// the middle of a move or after an upgrade of the naming).
    pub lrps: Vec<PlacedPort>,
    /// A row with one of our names that we did not create.
    pub name_taken: Option<String>,
}

impl Observed {
    /// Reads Subnet `name`'s rows from the replica; `lrp_name` is the name
    /// its router port should have (checked for a foreign row of that name).
    pub fn read(view: &View, name: &str, lrp_name: Option<&str>) -> Self {
        let owner = Owner::subnet(name);
        let mut observed = Observed::default();
        let switches = view.named::<LogicalSwitch>(name);
        if switches.iter().any(|s| !owner.owns(&s.external_ids)) {
            observed.name_taken = Some(format!("Logical_Switch {name}"));
        }
        observed.switch = switches
            .into_iter()
            .filter_map(Mine::claim)
            .find(|s| s.owner() == &owner);
        if observed.switch.is_some() {
            observed.name_taken = None;
        }
        let lsps = view.named::<LogicalSwitchPort>(&lsp_name(name));
        if lsps.iter().any(|p| !owner.owns(&p.external_ids)) {
            observed.name_taken = Some(format!("Logical_Switch_Port {}", lsp_name(name)));
        }
        observed.lsp = lsps.into_iter().filter_map(Mine::claim).find(|p| {
            p.owner() == &owner
                && observed
                    .switch
                    .as_ref()
                    .is_some_and(|s| s.ports.contains(&p.uuid))
        });
        if let Some(lrp_name) = lrp_name
            && view
                .named::<LogicalRouterPort>(lrp_name)
                .iter()
                .any(|p| !owner.owns(&p.external_ids))
        {
            observed.name_taken = Some(format!("Logical_Router_Port {lrp_name}"));
        }
        let ports = view.owned_by::<LogicalRouterPort>(&owner);
        if !ports.is_empty() {
            let routers = view.rows::<LogicalRouter>();
            observed.lrps = ports
                .into_iter()
                .map(|port| PlacedPort {
                    routers: routers
                        .iter()
                        .filter(|r| r.ports.contains(&port.uuid))
                        .cloned()
                        .collect(),
                    port,
                })
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
    /// Our router ports were taken off these routers (a move, or a port of
    /// an outdated name replaced).
    pub moved_from: Vec<String>,
}

impl Changes {
    /// Whether the transaction changes anything.
    pub fn any(&self) -> bool {
        self.switch_created || self.switch_port || self.router_port || !self.moved_from.is_empty()
    }
}

/// Adds to `txn` the removal of router port `lrp` from `routers` (OVN drops
/// the unreferenced port row).
fn detach(txn: &mut OwnedTxn, lrp: &PlacedPort, routers: &[&LogicalRouter]) {
    for router in routers {
        txn.detach_router_port(router, &lrp.port);
    }
}

/// Adds to `txn` what turns `observed` into `desired`: the switch and its
/// router-type port always; the router port on `router` when given, and
/// every other router port of ours off its routers (a move creates a port of
/// the new router's name, see the module doc). Returns what it changes and
/// the operation putting the port on `router` (its count must be 1).
pub fn plan(
    txn: &mut OwnedTxn,
    desired: &Desired,
    observed: &Observed,
    router: Option<&LogicalRouter>,
) -> Result<(Changes, Option<Op>), Refused> {
    let owner = Owner::subnet(&desired.switch.name);
    let mut changes = Changes::default();
    match (&observed.switch, &observed.lsp) {
        (None, _) => {
            let lsp = txn.insert(&owner, &desired.lsp)?;
            txn.insert_referencing(&owner, &desired.switch, Some(("ports", &[&lsp])))?;
            changes.switch_created = true;
            changes.switch_port = true;
        }
        (Some(switch), None) => {
            let lsp = txn.insert(&owner, &desired.lsp)?;
            txn.add_reference(switch, "ports", &lsp);
            changes.switch_port = true;
        }
        (Some(_), Some(lsp)) => {
            // Keys others add (e.g. Neutron's maintenance options) are kept:
            // only ours are compared and restored.
            let mut wanted = desired.lsp.clone();
            wanted.options = lsp.options.clone();
            wanted.options.extend(desired.lsp.options.clone());
            wanted.external_ids = lsp.external_ids.clone();
            wanted.external_ids.extend(desired.lsp.external_ids.clone());
            if lsp.type_ != wanted.type_
                || lsp.addresses != wanted.addresses
                || lsp.options != wanted.options
                || lsp.external_ids != wanted.external_ids
            {
                txn.update(
                    lsp,
                    &wanted,
                    &["type", "addresses", "options", "external_ids"],
                )?;
                changes.switch_port = true;
            }
        }
    }
    let (Some(router), Some(lrp)) = (router, &desired.lrp) else {
        // Moved to a VPC whose router is missing: off the old router.
        for placed in &observed.lrps {
            detach(txn, placed, &placed.routers.iter().collect::<Vec<_>>());
            changes
                .moved_from
                .extend(placed.routers.iter().map(|r| r.name.clone()));
        }
        return Ok((changes, None));
    };
    // The port of the desired name is kept (it can only be elsewhere if two
    // router names hash alike, or if someone moved it: then it is put back);
    // every other port of ours leaves its routers.
    let mut kept = None;
    for placed in &observed.lrps {
        let keep = kept.is_none() && placed.port.name == lrp.name;
        let others: Vec<&LogicalRouter> = placed
            .routers
            .iter()
            .filter(|r| !keep || r.uuid != router.uuid)
            .collect();
        detach(txn, placed, &others);
        changes
            .moved_from
            .extend(others.iter().map(|r| r.name.clone()));
        if keep {
            kept = Some(placed);
        }
    }
    let attach = match kept {
        None => {
            let inserted = txn.insert(&owner, lrp)?;
            changes.router_port = true;
            txn.attach_router_port(router, RouterPort::Inserted(&inserted))
        }
        Some(placed) => {
            let port = &placed.port;
            if port.mac != lrp.mac || port.networks != lrp.networks {
                txn.update(port, lrp, &["mac", "networks"])?;
                changes.router_port = true;
            }
            if placed.routers.iter().any(|r| r.uuid == router.uuid) {
                return Ok((changes, None));
            }
            changes.router_port = true;
            txn.attach_router_port(router, RouterPort::Ours(port))
        }
    };
    Ok((changes, Some(attach)))
}

/// Adds to `txn` the removal of everything Subnet `name` created: our
/// router ports off every router holding them (OVN then drops them), and
/// our switch (its ports go with it). Only rows that are ours are touched.
pub fn plan_removal(txn: &mut OwnedTxn, observed: &Observed) -> bool {
    let mut any = false;
    for placed in &observed.lrps {
        detach(txn, placed, &placed.routers.iter().collect::<Vec<_>>());
        any |= !placed.routers.is_empty();
    }
    if let Some(switch) = &observed.switch {
        txn.delete(switch);
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovn::Table;
    use ovsdb::{Atom, Operation, Uuid, Value};

    const MAC: &str = "0a:72:00:00:00:01";

    fn dual() -> SubnetConfig {
        SubnetConfig::parse(None, "10.0.2.0/24,fd00:2::/64", None, &[]).unwrap()
    }

    fn router(id: u128, name: &str) -> LogicalRouter {
        LogicalRouter {
            uuid: Uuid::from_u128(id),
            name: name.to_string(),
            ..LogicalRouter::default()
        }
    }

    /// Observed state of a Subnet attached as `on` says, its port at `port_id`.
    fn attached(on: &Desired, port_id: u128, routers: &[&LogicalRouter]) -> Observed {
        let port = Mine::claim(LogicalRouterPort {
            uuid: Uuid::from_u128(port_id),
            ..on.lrp.clone().unwrap()
        })
        .unwrap();
        Observed {
            switch: Mine::claim(on.switch.clone()),
            lsp: Mine::claim(on.lsp.clone()),
            lrps: vec![PlacedPort {
                routers: routers
                    .iter()
                    .map(|r| LogicalRouter {
                        ports: [port.uuid].into(),
                        ..(*r).clone()
                    })
                    .collect(),
                port,
            }],
            name_taken: None,
        }
    }

    #[test]
    fn router_port_names_depend_on_the_router_and_are_ours() {
        let name = lrp_name("net2", "neutron-r");
        assert_eq!(name, lrp_name("net2", "neutron-r"), "stable");
        assert_ne!(name, lrp_name("net2", "neutron-s"));
        let hash = name.strip_prefix("rovn-net2-").expect("prefix");
        assert!(hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ovn::owned::check_name(&name).is_ok());
        // The hash is the last segment: Subnets never share a name.
        assert_ne!(lrp_name("a-b", "r"), lrp_name("a", "r"));
        // 32-bit FNV-1a, fixed across builds and platforms.
        assert_eq!(lrp_name("s", ""), "rovn-s-811c9dc5");
        assert_eq!(lrp_name("s", "a"), "rovn-s-e40c292c");
    }

    #[test]
    fn desired_rows_carry_our_marker_and_gateways() {
        let d = Desired::new("net2", &dual(), MAC, Some("neutron-r"));
        let lrp = d.lrp.as_ref().unwrap();
        assert_eq!(lrp.name, lrp_name("net2", "neutron-r"));
        assert_eq!(d.lsp.name, "rovn-net2-lsp");
        assert!(ovn::owned::check_name(&lrp.name).is_ok());
        assert!(ovn::owned::check_name(&d.lsp.name).is_ok());
        assert_eq!(
            lrp.networks,
            ["10.0.2.1/24", "fd00:2::1/64"].map(String::from).into()
        );
        assert_eq!(d.lsp.options["router-port"], lrp.name);
        for ids in [
            &d.switch.external_ids,
            &d.lsp.external_ids,
            &lrp.external_ids,
        ] {
            assert!(Owner::subnet("net2").owns(ids));
            assert!(ovn::owned::check_external_ids(ids).is_ok());
        }
        let no_router = Desired::new("net2", &dual(), MAC, None);
        assert!(no_router.lrp.is_none() && no_router.lsp.options.is_empty());
    }

    #[test]
    fn keys_added_by_others_are_left_alone() {
        let d = Desired::new("net2", &dual(), MAC, Some("neutron-r"));
        let mut lsp = d.lsp.clone();
        lsp.options
            .insert("mcast_flood_reports".to_string(), "true".to_string());
        let observed = Observed {
            switch: Mine::claim(d.switch.clone()),
            lsp: Mine::claim(lsp.clone()),
            ..Observed::default()
        };
        let mut txn = OwnedTxn::new();
        let (changes, _) = plan(&mut txn, &d, &observed, None).unwrap();
        assert!(!changes.any() && txn.is_empty());
        // Our key changed: restored, the other key kept.
        lsp.options
            .insert("router-port".to_string(), "elsewhere".to_string());
        let observed = Observed {
            lsp: Mine::claim(lsp),
            ..observed
        };
        let (changes, _) = plan(&mut txn, &d, &observed, None).unwrap();
        assert!(changes.switch_port);
        let Operation::Update { row, .. } = &txn.operations()[0] else {
            panic!("an update");
        };
        let options = row.get("options").and_then(Value::as_map).expect("options");
        assert_eq!(options.len(), 2);
    }

    #[test]
    fn first_attach_is_one_transaction_and_a_settled_subnet_writes_nothing() {
        let r = router(1, "neutron-r");
        let d = Desired::new("net2", &dual(), MAC, Some(&r.name));
        let mut txn = OwnedTxn::new();
        let (changes, op) = plan(&mut txn, &d, &Observed::default(), Some(&r)).unwrap();
        assert!(changes.switch_created && changes.switch_port && changes.router_port);
        let ops = txn.operations();
        assert_eq!(ops.len(), 4, "LSP, switch, LRP, router ports");
        assert!(
            op.is_some()
                && matches!(ops.last(), Some(Operation::Mutate { table, .. }) if table == "Logical_Router")
        );

        let mut txn = OwnedTxn::new();
        let (changes, op) = plan(&mut txn, &d, &attached(&d, 2, &[&r]), Some(&r)).unwrap();
        assert!(!changes.any() && op.is_none() && txn.is_empty());
    }

    /// A move gives the Subnet a new router port (new name, same MAC and
    /// networks) and points the switch port at it, in one transaction; the
    /// old port only leaves the old router (OVN drops it).
    #[test]
    fn a_move_creates_a_port_of_the_new_routers_name() {
        let (old, new) = (router(3, "old"), router(1, "neutron-r"));
        let before = Desired::new("net2", &dual(), MAC, Some(&old.name));
        let observed = attached(&before, 2, &[&old]);
        let d = Desired::new("net2", &dual(), MAC, Some(&new.name));
        let mut txn = OwnedTxn::new();
        let (changes, op) = plan(&mut txn, &d, &observed, Some(&new)).unwrap();
        assert_eq!(changes.moved_from, ["old"]);
        assert!(changes.switch_port && changes.router_port);
        let ops = txn.operations();
        assert_eq!(ops.len(), 4, "{ops:?}");
        let Operation::Update { table, row, .. } = &ops[0] else {
            panic!("switch port update first: {ops:?}");
        };
        assert_eq!(table, LogicalSwitchPort::NAME);
        let options = row.get("options").and_then(Value::as_map).expect("options");
        assert_eq!(
            options.get(&Atom::from("router-port")),
            Some(&Atom::from(lrp_name("net2", "neutron-r").as_str()))
        );
        assert!(matches!(&ops[1], Operation::Mutate { table, .. } if table == "Logical_Router"));
        let Operation::Insert { table, row, .. } = &ops[2] else {
            panic!("router port insert: {ops:?}");
        };
        assert_eq!(table, LogicalRouterPort::NAME);
        assert_eq!(row.get_str("mac"), Some(MAC));
        assert_eq!(
            row.get_str("name"),
            Some(lrp_name("net2", "neutron-r").as_str())
        );
        assert!(op.is_some());
        assert!(matches!(&ops[3], Operation::Mutate { table, .. } if table == "Logical_Router"));
    }

    /// A port of ours with another name on the right router (e.g. from an
    /// older naming) is replaced, not kept beside the new one.
    #[test]
    fn a_port_of_an_outdated_name_is_replaced() {
        let r = router(1, "neutron-r");
        let d = Desired::new("net2", &dual(), MAC, Some(&r.name));
        let mut observed = attached(&d, 2, &[&r]);
        let outdated = LogicalRouterPort {
            name: "rovn-net2-lrp".to_string(),
            ..(*observed.lrps[0].port).clone()
        };
        observed.lrps[0].port = Mine::claim(outdated).unwrap();
        let mut txn = OwnedTxn::new();
        let (changes, op) = plan(&mut txn, &d, &observed, Some(&r)).unwrap();
        assert_eq!(changes.moved_from, ["neutron-r"]);
        assert!(changes.router_port && op.is_some());
        assert_eq!(txn.operations().len(), 3, "off, insert, on");
    }
}

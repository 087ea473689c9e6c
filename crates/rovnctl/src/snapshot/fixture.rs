//! A Northbound snapshot for unit tests, in the shapes Neutron and the
//! controller write their rows:
//!
//! - Neutron router `router-a` ([`ROUTER`]) with network `net-a`
//!   ([`NET_A`], 10.0.1.0/24) holding VM port `vm-a` ([`VM`], 10.0.1.50) in
//!   security group [`SG`] (no rule) and in `neutron_pg_drop`; our Subnet
//!   `net2` (10.0.2.0/24) with pods `ns2/web` and `ns2/db`; our node link
//!   with node `node-1`;
//! - our Vpc `vpc-b` with Subnet `net3` (10.0.3.0/24) and pod `ns3/app`;
//! - Neutron network `isolated` ([`ISOLATED`]) on no router, with VM port
//!   `vm-iso`;
//! - the port group of NetworkPolicy `ns2/deny`.

use std::collections::BTreeMap;

use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort, PortGroup};
use ovn::owned::owner::{Kind, NEUTRON_NETWORK_NAME, NEUTRON_ROUTER_NAME, Owner};
use ovsdb::Uuid;

use super::NbSnapshot;

/// The Neutron router.
pub const ROUTER: &str = "neutron-11111111-1111-1111-1111-111111111111";
/// Its Neutron network.
pub const NET_A: &str = "neutron-22222222-2222-2222-2222-222222222222";
/// The VM port on it.
pub const VM: &str = "44444444-4444-4444-4444-444444444444";
/// The VM's security group.
pub const SG: &str = "55555555-5555-5555-5555-555555555555";
/// A Neutron network on no router.
pub const ISOLATED: &str = "neutron-66666666-6666-6666-6666-666666666666";

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Rows {
    nb: NbSnapshot,
    next: u128,
}

impl Rows {
    fn fresh(&mut self) -> Uuid {
        self.next += 1;
        Uuid::from_u128(self.next)
    }

    fn router(&mut self, name: &str, external_ids: BTreeMap<String, String>) -> usize {
        let uuid = self.fresh();
        self.nb.routers.push(LogicalRouter {
            uuid,
            name: name.into(),
            external_ids,
            ..LogicalRouter::default()
        });
        self.nb.routers.len() - 1
    }

    fn switch(&mut self, name: &str, external_ids: BTreeMap<String, String>) -> usize {
        let uuid = self.fresh();
        self.nb.switches.push(LogicalSwitch {
            uuid,
            name: name.into(),
            external_ids,
            ..LogicalSwitch::default()
        });
        self.nb.switches.len() - 1
    }

    fn port(
        &mut self,
        switch: usize,
        name: &str,
        address: &str,
        external_ids: BTreeMap<String, String>,
    ) -> Uuid {
        let uuid = self.fresh();
        self.nb.switch_ports.insert(
            uuid,
            LogicalSwitchPort {
                uuid,
                name: name.into(),
                addresses: [address.to_string()].into(),
                external_ids,
                ..LogicalSwitchPort::default()
            },
        );
        self.nb.switches[switch].ports.insert(uuid);
        uuid
    }

    /// Joins `switch` to `router` with router port `lrp` on `network`.
    fn join(
        &mut self,
        router: usize,
        switch: usize,
        lrp: &str,
        network: &str,
        external_ids: BTreeMap<String, String>,
    ) {
        let uuid = self.fresh();
        self.nb.router_ports.insert(
            uuid,
            LogicalRouterPort {
                uuid,
                name: lrp.into(),
                networks: [network.to_string()].into(),
                external_ids: external_ids.clone(),
                ..LogicalRouterPort::default()
            },
        );
        self.nb.routers[router].ports.insert(uuid);
        let lsp = self.port(switch, &format!("{lrp}-lsp"), "router", external_ids);
        let port = self.nb.switch_ports.get_mut(&lsp).unwrap();
        port.type_ = "router".into();
        port.options.insert("router-port".into(), lrp.into());
    }

    fn group(&mut self, name: &str, ports: &[Uuid], external_ids: BTreeMap<String, String>) {
        let uuid = self.fresh();
        self.nb.port_groups.push(PortGroup {
            uuid,
            name: name.into(),
            ports: ports.iter().copied().collect(),
            external_ids,
            ..PortGroup::default()
        });
    }
}

fn pod(namespace: &str, name: &str, subnet: &str) -> BTreeMap<String, String> {
    let mut ids = Owner::pod(namespace, name).external_ids();
    ids.insert("rovn:subnet".into(), subnet.into());
    ids
}

/// The snapshot described above.
pub fn nb() -> NbSnapshot {
    let mut rows = Rows {
        nb: NbSnapshot::default(),
        next: 0,
    };
    let neutron = |extra: &[(&str, &str)]| {
        let mut all = vec![("neutron:revision_number", "3")];
        all.extend_from_slice(extra);
        ids(&all)
    };
    let router = rows.router(ROUTER, neutron(&[(NEUTRON_ROUTER_NAME, "router-a")]));
    let net_a = rows.switch(NET_A, neutron(&[(NEUTRON_NETWORK_NAME, "net-a")]));
    rows.join(
        router,
        net_a,
        "lrp-33333333-3333-3333-3333-333333333333",
        "10.0.1.1/24",
        neutron(&[(NEUTRON_NETWORK_NAME, NET_A)]),
    );
    let vm = rows.port(
        net_a,
        VM,
        "fa:16:3e:00:00:50 10.0.1.50",
        neutron(&[
            ("neutron:port_name", "vm-a"),
            ("neutron:device_owner", "compute:nova"),
            ("neutron:security_group_ids", SG),
        ]),
    );
    let net2 = rows.switch("net2", Owner::subnet("net2").external_ids());
    rows.join(
        router,
        net2,
        "rovn-net2-abcdef01",
        "10.0.2.1/24",
        Owner::subnet("net2").external_ids(),
    );
    let web = rows.port(
        net2,
        "web.ns2",
        "0a:58:0a:00:02:05 10.0.2.5",
        pod("ns2", "web", "net2"),
    );
    rows.port(
        net2,
        "db.ns2",
        "0a:58:0a:00:02:06 10.0.2.6",
        pod("ns2", "db", "net2"),
    );
    let link = Owner::node_link(ROUTER).external_ids();
    let nodes = rows.switch(&format!("rovn-nodes-{ROUTER}"), link.clone());
    rows.join(
        router,
        nodes,
        &format!("rovn-nodes-{ROUTER}-lrp"),
        "100.64.0.1/16",
        link.clone(),
    );
    let mut node_port = link;
    node_port.insert("rovn:node".into(), "node-1".into());
    rows.port(
        nodes,
        &format!("rovn-node/{ROUTER}/node-1"),
        "0a:52:64:40:00:02 100.64.0.2",
        node_port,
    );

    let vpc_b = rows.router("vpc-b", Owner::vpc("vpc-b").external_ids());
    let net3 = rows.switch("net3", Owner::subnet("net3").external_ids());
    rows.join(
        vpc_b,
        net3,
        "rovn-net3-0badcafe",
        "10.0.3.1/24",
        Owner::subnet("net3").external_ids(),
    );
    rows.port(
        net3,
        "app.ns3",
        "0a:58:0a:00:03:05 10.0.3.5",
        pod("ns3", "app", "net3"),
    );

    let isolated = rows.switch(ISOLATED, neutron(&[(NEUTRON_NETWORK_NAME, "isolated")]));
    rows.port(
        isolated,
        "77777777-7777-7777-7777-777777777777",
        "fa:16:3e:00:00:77 192.168.7.7",
        neutron(&[("neutron:port_name", "vm-iso")]),
    );

    rows.group("neutron_pg_drop", &[vm], neutron(&[]));
    rows.group(
        &format!("pg_{}", SG.replace('-', "_")),
        &[vm],
        neutron(&[("neutron:security_group_id", SG)]),
    );
    rows.group(
        "rovn_np_0011223344556677",
        &[web],
        Owner::new(Kind::NetworkPolicy, "ns2/deny").external_ids(),
    );
    rows.nb
}

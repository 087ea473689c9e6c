//! Subnets end to end: a real NB ovsdb-server with northd, a real
//! kube-apiserver, the real `rovn-controller` binary, and a Neutron
//! Zed-shaped router with a Neutron network on 10.0.1.0/24 written with
//! `ovn-nbctl` (`testenv::neutron`).

use api::annotations::{CIDR, IP_ADDRESS, LOGICAL_SWITCH};
use api::condition::{ATTACHED, READY, UNSUPPORTED, VALIDATED, find_condition, is_condition_true};
use api::{Subnet, SubnetSpec, Vpc, VpcSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use testenv::neutron::{NeutronNetwork, NeutronRouter, NeutronRows};
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::{
    ControllerEnv, ControllerProcess, subnet_ready as ready, subnet_spec, wait_gone,
};

// Names the controller gives its rows (product code, grouped here).
use controller::subnet::lrp_name;

const REPAIRS_ROUTER_PORT: &str = "rovn_ovn_repairs_total{row=\"router-port\"}";
const REPAIRS_SWITCH_PORT: &str = "rovn_ovn_repairs_total{row=\"switch-port\"}";

/// The test's environment (OVN with northd, an API server, controllers
/// started by the test) and its reads of our rows in NB.
struct Env {
    base: ControllerEnv,
    subnets: Api<Subnet>,
    vpcs: Api<Vpc>,
}

impl Env {
    async fn start(identity: &str) -> anyhow::Result<Self> {
        let base =
            ControllerEnv::start_without_controller(OvnEnv::builder().northd(), identity).await?;
        Ok(Self {
            subnets: base.cluster.subnets(),
            vpcs: base.cluster.vpcs(),
            base,
        })
    }

    /// A ready controller named `identity`.
    async fn controller(&self, identity: &str) -> anyhow::Result<ControllerProcess> {
        self.base.ready_controller(identity).await
    }

    /// `ovn-nbctl` output, trimmed.
    fn nbctl(&self, args: &[&str]) -> String {
        self.base
            .ovn
            .nbctl(args)
            .unwrap_or_else(|e| panic!("ovn-nbctl {args:?}: {e:#}"))
            .trim()
            .to_string()
    }

    /// `_uuid`s of the rows of `table` matching `conditions`.
    fn find(&self, table: &str, conditions: &[&str]) -> Vec<String> {
        let mut args = vec!["--bare", "--columns=_uuid", "find", table];
        args.extend_from_slice(conditions);
        self.nbctl(&args)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The `_uuid` of the row named `name` carrying Subnet `subnet`'s marker.
    fn ours(&self, table: &str, name: &str, subnet: &str) -> Option<String> {
        self.find(
            table,
            &[
                &format!("name={name}"),
                "external_ids:\"rovn:owner\"=rovn",
                "external_ids:\"rovn:kind\"=subnet",
                &format!("external_ids:\"rovn:object\"={subnet}"),
            ],
        )
        .into_iter()
        .next()
    }

    /// A column of the row named `name`, `--bare`.
    fn column(&self, table: &str, name: &str, column: &str) -> String {
        self.nbctl(&[
            "--bare",
            &format!("--columns={column}"),
            "find",
            table,
            &format!("name={name}"),
        ])
    }

    /// Option `key` of Logical_Switch_Port `lsp` (unquoted).
    fn lsp_option(&self, lsp: &str, key: &str) -> String {
        self.nbctl(&["get", "Logical_Switch_Port", lsp, &format!("options:{key}")])
            .trim_matches('"')
            .to_string()
    }

    /// The `ports` of router `router`, without the node link's (`rovn-nodes-*`, made for
    /// every served VPC: `controller::node_link`, tested in `lab`'s `node_links`).
    fn router_ports(&self, router: &str) -> Vec<String> {
        self.column("Logical_Router", router, "ports")
            .split_whitespace()
            .filter(|uuid| {
                !self
                    .nbctl(&["get", "Logical_Router_Port", uuid, "name"])
                    .trim_matches('"')
                    .starts_with("rovn-nodes-")
            })
            .map(str::to_string)
            .collect()
    }

    /// Whether any row of ours exists for Subnet `name`.
    fn any_rows_of(&self, name: &str) -> bool {
        [
            "Logical_Switch",
            "Logical_Switch_Port",
            "Logical_Router_Port",
        ]
        .iter()
        .any(|table| {
            !self
                .find(table, &[&format!("external_ids:\"rovn:object\"={name}")])
                .is_empty()
        }) || !self
            .find("Logical_Switch", &[&format!("name={name}")])
            .is_empty()
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.subnets
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch Subnet {name}: {e}"));
    }

    /// Waits until Subnet `name` is `Validated=False` with `reason`, then
    /// checks a Warning Event says so.
    async fn wait_refused(&self, name: &str, reason: &str) -> Subnet {
        let subnet = self
            .wait_subnet(name, &format!("refused with {reason}"), |s| {
                condition(s, VALIDATED).is_some_and(|c| !c.is_true() && c.reason == reason)
            })
            .await;
        self.wait_event(name, reason).await;
        subnet
    }

    /// Waits until Subnet `name` exists and `check` holds for it.
    async fn wait_subnet(&self, name: &str, what: &str, check: impl Fn(&Subnet) -> bool) -> Subnet {
        self.base
            .cluster
            .wait_subnet(name, what, check)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Waits for a Warning Event with `reason` on Subnet `name`.
    async fn wait_event(&self, name: &str, reason: &str) {
        self.base
            .cluster
            .wait_warning("default", name, reason)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Waits until namespace `name` carries the annotations of `subnet`.
    async fn wait_namespace_bound(&self, name: &str, subnet: &str, cidr: &str) {
        let namespaces: Api<Namespace> = Api::all(self.base.cluster.client().clone());
        eventually(&format!("namespace {name} bound to {subnet}"), || async {
            let ns = namespaces.get(name).await.expect("GET namespace");
            let a = ns.annotations();
            (a.get(LOGICAL_SWITCH).map(String::as_str) == Some(subnet)
                && a.get(CIDR).map(String::as_str) == Some(cidr))
            .then_some(())
        })
        .await;
    }
}

fn condition<'a>(subnet: &'a Subnet, type_: &str) -> Option<&'a api::Condition> {
    subnet
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_))
}

async fn wait_metric_at_least(controller: &ControllerProcess, name: &str, value: f64) {
    eventually(&format!("{name} >= {value}"), || async {
        controller.metric(name).filter(|v| *v >= value).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_subnet_on_a_neutron_router_is_attached_and_repaired() -> anyhow::Result<()> {
    let env = Env::start("subnets-seed").await?;
    let (ovn, cluster) = (&env.base.ovn, &env.base.cluster);
    let mut router = NeutronRouter::create(ovn, "router1").expect("router1");
    let net1 = NeutronNetwork::create(ovn, "net1", "10.0.1.0/24").expect("net1");
    let iface = router.add_interface(ovn, &net1).expect("interface");
    let r1 = router.lr_name();
    let net2_lrp = lrp_name("net2", &r1);
    let neutron = NeutronRows::snapshot(ovn)?;

    let controller = env.controller("subnets-a").await?;
    cluster.wait_vpc(&r1, "imported", |_| true).await?;
    cluster.create_namespace("net2").await?;
    cluster
        .create_subnet("net2", subnet_spec(Some(&r1), "10.0.2.0/24", &["net2"]))
        .await?;
    let subnet = env.wait_subnet("net2", "Ready", ready).await;

    // The switch, the router-type port and the router port, all ours.
    let ls = env
        .ours("Logical_Switch", "net2", "net2")
        .expect("switch net2 with our marker");
    let lsp = env
        .ours("Logical_Switch_Port", "rovn-net2-lsp", "net2")
        .expect("router-type LSP with our marker");
    let lrp = env
        .ours("Logical_Router_Port", &net2_lrp, "net2")
        .expect("LRP with our marker");
    assert_eq!(
        env.nbctl(&["--bare", "--columns=ports", "list", "Logical_Switch", &ls]),
        lsp
    );
    assert_eq!(
        env.column("Logical_Switch_Port", "rovn-net2-lsp", "type"),
        "router"
    );
    assert_eq!(
        env.column("Logical_Switch_Port", "rovn-net2-lsp", "addresses"),
        "router"
    );
    assert_eq!(env.lsp_option("rovn-net2-lsp", "router-port"), net2_lrp);
    assert_eq!(
        env.column("Logical_Router_Port", &net2_lrp, "networks"),
        "10.0.2.1/24"
    );
    let mac = env.column("Logical_Router_Port", &net2_lrp, "mac");
    assert!(
        mac.starts_with("0a:72:") && !mac.starts_with("fa:16:3e"),
        "{mac}"
    );
    let mut ports = env.router_ports(&r1);
    ports.sort();
    let neutron_lrp = env.find(
        "Logical_Router_Port",
        &[&format!("name={}", iface.lrp_name())],
    );
    let mut expected = vec![lrp.clone(), neutron_lrp[0].clone()];
    expected.sort();
    assert_eq!(ports, expected, "router ports: Neutron's and ours");
    neutron.assert_unchanged(ovn, "after the attachment");

    // Status: counts, conditions, the Neutron port-security note.
    let status = subnet.status.clone().expect("status");
    assert_eq!(status.v4_available_ips.map(|c| c.0), Some(253));
    assert_eq!(status.v4_using_ips.map(|c| c.0), Some(0));
    assert!(is_condition_true(&status.conditions, VALIDATED));
    assert!(is_condition_true(&status.conditions, ATTACHED));
    let note = find_condition(&status.conditions, "NeutronSecurityGroups").expect("note");
    assert!(
        note.is_true()
            && note.message.contains("neutron_pg_drop")
            && note.message.contains("10.0.2.0/24"),
        "{note:?}"
    );

    // Namespace binding: net2 → net2, others → the default Subnet.
    env.wait_namespace_bound("net2", "net2", "10.0.2.0/24")
        .await;
    env.wait_subnet("ovn-default", "Ready", ready).await;
    env.wait_namespace_bound("default", "ovn-default", "10.16.0.0/16")
        .await;

    // Neutron's repair sync / router update: our port taken off the router.
    let removed_at = std::time::Instant::now();
    env.nbctl(&["remove", "Logical_Router", &r1, "ports", &lrp]);
    let restored = eventually("router port restored", || async {
        env.ours("Logical_Router_Port", &net2_lrp, "net2")
            .filter(|uuid| env.router_ports(&r1).contains(uuid))
    })
    .await;
    // A figure, not an assertion (the poll itself adds up to 50 ms).
    eprintln!(
        "router port restored {:?} after its removal",
        removed_at.elapsed()
    );
    assert_eq!(env.column("Logical_Router_Port", &net2_lrp, "mac"), mac);
    assert_eq!(
        env.column("Logical_Router_Port", &net2_lrp, "networks"),
        "10.0.2.1/24"
    );
    wait_metric_at_least(&controller, REPAIRS_ROUTER_PORT, 1.0).await;

    // Our router-type port deleted, then changed.
    env.nbctl(&["lsp-del", "rovn-net2-lsp"]);
    eventually("switch port restored", || async {
        env.ours("Logical_Switch_Port", "rovn-net2-lsp", "net2")
    })
    .await;
    wait_metric_at_least(&controller, REPAIRS_SWITCH_PORT, 1.0).await;
    // Neutron's maintenance writes its keys on every switch and port: they
    // stay (no fight), while our own key is restored.
    env.nbctl(&[
        "set",
        "Logical_Switch",
        "net2",
        "other_config:mcast_snoop=false",
    ]);
    env.nbctl(&[
        "lsp-set-options",
        "rovn-net2-lsp",
        "router-port=elsewhere",
        "mcast_flood_reports=true",
    ]);
    eventually("switch port options restored", || async {
        (env.lsp_option("rovn-net2-lsp", "router-port") == net2_lrp).then_some(())
    })
    .await;
    assert_eq!(
        env.lsp_option("rovn-net2-lsp", "mcast_flood_reports"),
        "true"
    );
    assert_eq!(
        env.nbctl(&["get", "Logical_Switch", "net2", "other_config:mcast_snoop"])
            .trim_matches('"'),
        "false"
    );
    wait_metric_at_least(&controller, REPAIRS_SWITCH_PORT, 2.0).await;

    // Restart with our port deleted while the controller was down: back
    // with the same MAC.
    drop(controller);
    env.nbctl(&["lrp-del", &net2_lrp]);
    let controller = env.controller("subnets-b").await?;
    let again = eventually("router port restored after restart", || async {
        env.ours("Logical_Router_Port", &net2_lrp, "net2")
            .filter(|uuid| env.router_ports(&r1).contains(uuid))
    })
    .await;
    assert_ne!(again, restored);
    assert_eq!(env.column("Logical_Router_Port", &net2_lrp, "mac"), mac);
    assert_eq!(
        env.find("Logical_Switch", &["name=net2"]).len(),
        1,
        "one switch"
    );

    // A port of ours under another name (an older rovn's `rovn-net2-lrp`)
    // found at start-up: replaced, nothing left behind.
    drop(controller);
    env.nbctl(&["set", "Logical_Router_Port", &again, "name=rovn-net2-lrp"]);
    env.nbctl(&[
        "set",
        "Logical_Switch_Port",
        "rovn-net2-lsp",
        "options:router-port=rovn-net2-lrp",
    ]);
    let mut controller = env.controller("subnets-c").await?;
    eventually("outdated router port replaced", || async {
        let current = env.ours("Logical_Router_Port", &net2_lrp, "net2")?;
        let ports = env.router_ports(&r1);
        (ports.contains(&current)
            && !ports.contains(&again)
            && env
                .find("Logical_Router_Port", &["name=rovn-net2-lrp"])
                .is_empty()
            && env.lsp_option("rovn-net2-lsp", "router-port") == net2_lrp)
            .then_some(())
    })
    .await;
    assert_eq!(env.router_ports(&r1).len(), 2, "Neutron's port and ours");
    assert_eq!(env.column("Logical_Router_Port", &net2_lrp, "mac"), mac);

    // Neutron deletes the router: detached with RouterMissing; re-created
    // (same id): attached again.
    let router_id = router.id.clone();
    neutron.neutron_writes(ovn, "delete router1", || {
        router.remove_interface(ovn, &iface)?;
        router.delete(ovn)
    })?;
    env.wait_subnet("net2", "Attached=False RouterMissing", |s| {
        condition(s, ATTACHED).is_some_and(|c| !c.is_true() && c.reason == "RouterMissing")
            && !ready(s)
    })
    .await;
    assert!(
        env.ours("Logical_Switch", "net2", "net2").is_some(),
        "switch kept"
    );
    env.wait_event("net2", "RouterMissing").await;
    let router = neutron.neutron_writes(ovn, "re-create router1", || {
        NeutronRouter::create_with_id(ovn, &router_id, "router1")
    })?;
    assert_eq!(router.lr_name(), r1);
    env.wait_subnet("net2", "re-attached", |s| {
        ready(s) && condition(s, ATTACHED).is_some_and(|c| c.is_true())
    })
    .await;
    let lrp = env
        .ours("Logical_Router_Port", &net2_lrp, "net2")
        .expect("LRP again");
    assert_eq!(env.router_ports(&r1), vec![lrp]);

    // Deletion removes exactly our rows; the Neutron router stays.
    env.subnets
        .delete("net2", &DeleteParams::default())
        .await
        .expect("delete net2");
    wait_gone(&env.subnets, "net2").await?;
    assert!(!env.any_rows_of("net2"), "rows of net2 left in OVN");
    assert!(env.router_ports(&r1).is_empty());
    neutron.assert_unchanged(ovn, "after deleting net2");
    controller.process.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subnets_are_refused_before_any_ovn_write() -> anyhow::Result<()> {
    let env = Env::start("subnets-invalid").await?;
    let (ovn, cluster) = (&env.base.ovn, &env.base.cluster);
    let mut router = NeutronRouter::create(ovn, "router1").expect("router1");
    let net1 = NeutronNetwork::create(ovn, "net1", "10.0.1.0/24").expect("net1");
    router.add_interface(ovn, &net1).expect("interface");
    let r1 = router.lr_name();
    let controller = env.controller("subnets-invalid").await?;
    cluster.wait_vpc(&r1, "imported", |_| true).await?;

    // A valid Subnet bound to namespace shared, on the Neutron router.
    cluster
        .create_subnet(
            "sa",
            SubnetSpec {
                nat_outgoing: true,
                ..subnet_spec(Some(&r1), "10.0.6.0/24", &["shared"])
            },
        )
        .await?;
    let sa = env.wait_subnet("sa", "Ready", ready).await;
    let unsupported = condition(&sa, UNSUPPORTED).expect("Unsupported");
    assert!(
        unsupported.is_true() && unsupported.message.contains("spec.natOutgoing"),
        "{unsupported:?}"
    );
    let ports_before = env.router_ports(&r1);
    assert_eq!(ports_before.len(), 2);
    let neutron = NeutronRows::snapshot(ovn)?;

    let refused = [
        (
            "bad-cidr",
            subnet_spec(Some(&r1), "10.0.2.0/33", &[]),
            "InvalidCidr",
        ),
        (
            "bad-gateway",
            SubnetSpec {
                gateway: Some("10.0.4.1".to_string()),
                ..subnet_spec(Some(&r1), "10.0.3.0/24", &[])
            },
            "InvalidGateway",
        ),
        (
            "exclude-outside",
            SubnetSpec {
                exclude_ips: vec!["10.0.9.5".to_string()],
                ..subnet_spec(Some(&r1), "10.0.5.0/24", &[])
            },
            "InvalidExcludeIps",
        ),
        (
            "exclude-malformed",
            SubnetSpec {
                exclude_ips: vec!["10.0.5.x..10.0.5.9".to_string()],
                ..subnet_spec(Some(&r1), "10.0.5.0/24", &[])
            },
            "InvalidExcludeIps",
        ),
        (
            "unknown-vpc",
            subnet_spec(Some("no-such-vpc"), "10.0.7.0/24", &[]),
            "UnknownVpc",
        ),
        (
            "overlaps-neutron",
            subnet_spec(Some(&r1), "10.0.1.0/25", &[]),
            "CidrOverlapsRouterNetwork",
        ),
        (
            "overlaps-sa",
            subnet_spec(Some(&r1), "10.0.6.128/25", &[]),
            "CidrOverlapsSubnet",
        ),
        (
            "overlaps-ns",
            subnet_spec(Some("ovn-cluster"), "10.0.6.0/24", &["shared"]),
            "CidrOverlapsNamespaceSubnet",
        ),
        (
            "neutron-1f0d3f2e-6a7b-4c8d-9e0f-112233445566",
            subnet_spec(Some(&r1), "10.0.8.0/24", &[]),
            "ReservedName",
        ),
    ];
    for (name, spec, _) in &refused {
        cluster.create_subnet(name, spec.clone()).await?;
    }
    for (name, _, reason) in &refused {
        let subnet = env.wait_refused(name, reason).await;
        assert!(!ready(&subnet), "{name} Ready");
        assert!(
            condition(&subnet, ATTACHED).is_some_and(|c| !c.is_true()),
            "{name} attached"
        );
        assert!(!env.any_rows_of(name), "{name}: rows written to OVN");
    }
    let overlap = condition(
        &env.subnets.get("overlaps-neutron").await.expect("GET"),
        VALIDATED,
    )
    .expect("Validated")
    .message
    .clone();
    assert!(
        overlap.contains("10.0.1.1/24") && overlap.contains("Neutron network"),
        "{overlap}"
    );
    assert_eq!(env.router_ports(&r1), ports_before);

    // A running Subnet edited into an invalid one keeps running as it was.
    let lrp = env
        .ours("Logical_Router_Port", &lrp_name("sa", &r1), "sa")
        .expect("sa's LRP");
    env.patch_spec("sa", json!({ "cidrBlock": "10.0.1.0/24" }))
        .await;
    let sa = env.wait_refused("sa", "CidrOverlapsRouterNetwork").await;
    assert!(
        condition(&sa, VALIDATED).is_some_and(|c| c.message.contains("10.0.6.0/24")),
        "message names the configuration in force"
    );
    assert!(condition(&sa, ATTACHED).is_some_and(|c| c.is_true()));
    assert_eq!(
        env.ours("Logical_Router_Port", &lrp_name("sa", &r1), "sa"),
        Some(lrp.clone())
    );
    assert_eq!(
        env.column("Logical_Router_Port", &lrp_name("sa", &r1), "networks"),
        "10.0.6.1/24"
    );
    // Also across a restart: the accepted configuration is recorded.
    drop(controller);
    let mut controller = env.controller("subnets-invalid-2").await?;
    env.patch_spec("sa", json!({ "cidrBlock": "10.0.1.0/26" }))
        .await;
    env.wait_subnet("sa", "still refused, previous configuration kept", |s| {
        condition(s, VALIDATED).is_some_and(|c| {
            !c.is_true() && c.message.contains("10.0.1.0/26") && c.message.contains("10.0.6.0/24")
        })
    })
    .await;
    assert_eq!(
        env.ours("Logical_Router_Port", &lrp_name("sa", &r1), "sa"),
        Some(lrp)
    );
    assert_eq!(
        env.column("Logical_Router_Port", &lrp_name("sa", &r1), "networks"),
        "10.0.6.1/24"
    );

    // The Subnet refused because of sa's running configuration stays
    // refused after the restart (what ran is accepted first).
    env.patch_spec("overlaps-ns", json!({ "excludeIps": ["10.0.6.9"] }))
        .await;
    env.wait_subnet("overlaps-ns", "re-checked after the restart", |s| {
        condition(s, VALIDATED).is_some_and(|c| {
            c.observed_generation == s.metadata.generation
                && c.reason == "CidrOverlapsNamespaceSubnet"
        })
    })
    .await;
    assert!(!env.any_rows_of("overlaps-ns"));

    // A switch of that name exists and is not ours: left alone.
    env.nbctl(&["ls-add", "taken"]);
    let foreign = env.nbctl(&["list", "Logical_Switch", "taken"]);
    cluster
        .create_subnet("taken", subnet_spec(Some(&r1), "10.0.11.0/24", &[]))
        .await?;
    env.wait_subnet("taken", "NameTaken", |s| {
        condition(s, ATTACHED).is_some_and(|c| !c.is_true() && c.reason == "NameTaken")
    })
    .await;
    assert_eq!(env.nbctl(&["list", "Logical_Switch", "taken"]), foreign);
    assert!(
        env.ours("Logical_Router_Port", &lrp_name("taken", &r1), "taken")
            .is_none()
    );
    assert!(
        env.find("Logical_Switch_Port", &["name=rovn-taken-lsp"])
            .is_empty()
    );

    // Two overlapping Subnets created at once: exactly one is accepted.
    cluster
        .create_subnet("race-a", subnet_spec(Some(&r1), "10.0.10.0/24", &[]))
        .await?;
    cluster
        .create_subnet("race-b", subnet_spec(Some(&r1), "10.0.10.0/25", &[]))
        .await?;
    let settled = |s: &Subnet| ready(s) || condition(s, VALIDATED).is_some_and(|c| !c.is_true());
    let a = env.wait_subnet("race-a", "settled", settled).await;
    let b = env.wait_subnet("race-b", "settled", settled).await;
    assert!(
        ready(&a) != ready(&b),
        "exactly one of two overlapping Subnets runs"
    );
    let attached = ["race-a", "race-b"]
        .iter()
        .filter(|n| {
            env.ours("Logical_Router_Port", &lrp_name(n, &r1), n)
                .is_some()
        })
        .count();
    assert_eq!(attached, 1, "router ports of the two overlapping Subnets");

    // A refused Subnet fixed by an edit is created.
    env.patch_spec("bad-gateway", json!({ "gateway": "10.0.3.254" }))
        .await;
    env.wait_subnet("bad-gateway", "Ready after the fix", ready)
        .await;
    assert_eq!(
        env.column(
            "Logical_Router_Port",
            &lrp_name("bad-gateway", &r1),
            "networks"
        ),
        "10.0.3.254/24"
    );
    neutron.assert_unchanged(ovn, "after every refusal and fix");
    controller.process.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_move_rebind_and_wait_for_their_addresses_before_deletion() -> anyhow::Result<()> {
    let env = Env::start("subnets-move").await?;
    let (ovn, cluster) = (&env.base.ovn, &env.base.cluster);
    let router = NeutronRouter::create(ovn, "router-a").expect("router-a");
    let ra = router.lr_name();
    let controller = env.controller("subnets-move").await?;
    cluster.wait_vpc(&ra, "imported", |_| true).await?;
    env.vpcs
        .create(
            &PostParams::default(),
            &Vpc::new("vpc-b", VpcSpec::default()),
        )
        .await
        .expect("create vpc-b");
    cluster
        .wait_vpc("vpc-b", "Ready", |v| {
            v.status
                .as_ref()
                .is_some_and(|s| is_condition_true(&s.conditions, READY))
        })
        .await?;
    let neutron = NeutronRows::snapshot(ovn)?;
    cluster.create_namespace("mv-ns").await?;
    cluster.create_namespace("mv-ns2").await?;
    cluster
        .create_subnet("mv", subnet_spec(Some(&ra), "10.0.7.0/24", &["mv-ns"]))
        .await?;
    env.wait_subnet("mv", "Ready", ready).await;
    env.wait_namespace_bound("mv-ns", "mv", "10.0.7.0/24").await;
    let lrp = env
        .ours("Logical_Router_Port", &lrp_name("mv", &ra), "mv")
        .expect("LRP");
    let mac = env.column("Logical_Router_Port", &lrp_name("mv", &ra), "mac");
    assert_eq!(env.router_ports(&ra), vec![lrp.clone()]);

    // An address holder: a pod (no kubelet here: it stays Pending).
    let pods: Api<Pod> = cluster.pods("mv-ns");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "c", "image": "x" }] },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    // The pod reconciler gives it an address in mv.
    let address = eventually("pod web annotated", || async {
        let pod = pods.get("web").await.expect("GET pod");
        let a = pod.annotations();
        (a.get(LOGICAL_SWITCH).map(String::as_str) == Some("mv"))
            .then(|| a.get(IP_ADDRESS).cloned())
            .flatten()
    })
    .await;
    assert!(address.starts_with("10.0.7."), "{address}");
    env.wait_subnet("mv", "one address in use", |s| {
        s.status
            .as_ref()
            .is_some_and(|st| st.v4_using_ips.map(|c| c.0) == Some(1))
    })
    .await;
    let pod_port = env.find("Logical_Switch_Port", &["name=web.mv-ns"]);
    assert_eq!(pod_port.len(), 1, "pod port");
    let switch = env.ours("Logical_Switch", "mv", "mv").expect("switch");

    // Move to our own VPC: the port leaves the Neutron router and a new
    // one, named for the new router (so that chassis recompute the switch's
    // patch flows), with the same MAC and networks, is on vpc-b; the switch
    // port points at it.
    env.patch_spec("mv", json!({ "vpc": "vpc-b" })).await;
    env.wait_subnet("mv", "attached to vpc-b", |s| {
        ready(s) && condition(s, ATTACHED).is_some_and(|c| c.message.contains("vpc-b"))
    })
    .await;
    let on_b = lrp_name("mv", "vpc-b");
    let lrp_b = env
        .ours("Logical_Router_Port", &on_b, "mv")
        .expect("LRP on vpc-b");
    assert_ne!(lrp_b, lrp, "a new port");
    assert_eq!(env.router_ports("vpc-b"), vec![lrp_b]);
    assert!(env.router_ports(&ra).is_empty());
    assert!(
        env.ours("Logical_Router_Port", &lrp_name("mv", &ra), "mv")
            .is_none(),
        "the old port is gone"
    );
    assert_eq!(env.column("Logical_Router_Port", &on_b, "mac"), mac);
    assert_eq!(
        env.column("Logical_Router_Port", &on_b, "networks"),
        "10.0.7.1/24"
    );
    assert_eq!(env.lsp_option("rovn-mv-lsp", "router-port"), on_b);
    assert_eq!(env.ours("Logical_Switch", "mv", "mv"), Some(switch.clone()));
    let moved = env.subnets.get("mv").await.expect("GET mv");
    assert!(
        condition(&moved, "NeutronSecurityGroups").is_some_and(|c| !c.is_true()),
        "no Neutron note on our own VPC"
    );
    // To a VPC without a router (its name is taken by another CMS's
    // router, left alone): detached from vpc-b, the switch kept.
    env.nbctl(&[
        "create",
        "Logical_Router",
        "name=vpc-x",
        "external_ids:\"other:owner\"=x",
    ]);
    env.vpcs
        .create(
            &PostParams::default(),
            &Vpc::new("vpc-x", VpcSpec::default()),
        )
        .await
        .expect("create vpc-x");
    // Edited while the controller is down: at start-up our port is found
    // on vpc-b and taken off.
    drop(controller);
    env.patch_spec("mv", json!({ "vpc": "vpc-x" })).await;
    let mut controller = env.controller("subnets-move-2").await?;
    env.wait_subnet("mv", "detached: no router for vpc-x", |s| {
        condition(s, ATTACHED).is_some_and(|c| !c.is_true() && c.reason == "RouterNotReady")
    })
    .await;
    assert!(env.router_ports("vpc-b").is_empty());
    assert!(
        env.router_ports("vpc-x").is_empty(),
        "foreign router touched"
    );
    assert_eq!(env.ours("Logical_Switch", "mv", "mv"), Some(switch.clone()));
    assert!(
        env.find("Logical_Router_Port", &["external_ids:\"rovn:object\"=mv"])
            .is_empty(),
        "no router port of mv left"
    );
    // And back.
    env.patch_spec("mv", json!({ "vpc": ra })).await;
    let lrp = eventually("back on the Neutron router", || async {
        env.ours("Logical_Router_Port", &lrp_name("mv", &ra), "mv")
            .filter(|uuid| env.router_ports(&ra) == vec![uuid.clone()])
    })
    .await;
    assert_eq!(
        env.column("Logical_Router_Port", &lrp_name("mv", &ra), "mac"),
        mac
    );
    assert_eq!(
        env.find("Logical_Router_Port", &["external_ids:\"rovn:object\"=mv"]),
        vec![lrp.clone()],
        "one router port of mv"
    );
    neutron.assert_unchanged(ovn, "after the moves");

    // The pod kept its address and its port on the switch.
    let pod = pods.get("web").await.expect("GET pod");
    assert_eq!(pod.annotations().get(IP_ADDRESS), Some(&address));
    assert_eq!(
        env.find("Logical_Switch_Port", &["name=web.mv-ns"]),
        pod_port
    );
    assert!(
        env.nbctl(&[
            "--bare",
            "--columns=ports",
            "list",
            "Logical_Switch",
            &switch
        ])
        .contains(&pod_port[0])
    );

    // Rebinding: mv-ns falls back to the default Subnet, mv-ns2 joins mv.
    env.patch_spec("mv", json!({ "namespaces": ["mv-ns2"] }))
        .await;
    env.wait_namespace_bound("mv-ns2", "mv", "10.0.7.0/24")
        .await;
    env.wait_namespace_bound("mv-ns", "ovn-default", "10.16.0.0/16")
        .await;

    // Deletion waits for the address holder.
    env.base
        .kube
        .kubectl(&["delete", "subnet", "mv", "--wait=false"])
        .expect("kubectl delete subnet");
    env.wait_subnet("mv", "DeletionBlocked", |s| {
        condition(s, "DeletionBlocked")
            .is_some_and(|c| c.is_true() && c.message.contains("mv-ns/web"))
    })
    .await;
    env.wait_event("mv", "AddressesInUse").await;
    assert_eq!(env.ours("Logical_Switch", "mv", "mv"), Some(switch));
    assert_eq!(env.router_ports(&ra), vec![lrp]);
    pods.delete("web", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    wait_gone(&env.subnets, "mv").await?;
    assert!(!env.any_rows_of("mv"), "rows of mv left in OVN");
    assert!(env.router_ports(&ra).is_empty());
    neutron.assert_unchanged(ovn, "after deleting mv");
    controller.process.terminate()?;
    Ok(())
}

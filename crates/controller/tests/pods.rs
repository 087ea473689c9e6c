//! Pods end to end: a real NB ovsdb-server with northd, a real
//! kube-apiserver, the real `rovn-controller` binary. Pods are created with
//! `spec.nodeName` set (no scheduler or kubelet exists) and deleted with a
//! grace period of 0, as the kubelet confirms deletions.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use api::annotations::{CIDR, GATEWAY, IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS};
use api::pod_network::{PodNetwork, port_name};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::PostParams;
use ovn::Table;
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::owned::Owner;
use ovsdb::{ClientConfig, Condition};
use testenv::neutron::{NeutronNetwork, NeutronRouter};
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, eventually};
use testenv::stack::{AnnotationLog, Cluster, ControllerEnv, allocated, subnet_ready, subnet_spec};

/// Node name given to every test pod (no kubelet exists).
const NODE: &str = "node-1";

/// The controller's environment (OVN with northd, an API server, the
/// controller, the default Subnet Ready) and a NB client reading our pod
/// ports.
struct PodEnv {
    base: ControllerEnv,
    cluster: Cluster,
    nb: ovsdb::Client,
}

impl PodEnv {
    /// Starts everything; `identity` names the controller (and its log).
    async fn start(identity: &str) -> anyhow::Result<Self> {
        let base = ControllerEnv::start(OvnEnv::builder().northd(), identity).await?;
        let cluster = base.cluster.clone();
        cluster
            .wait_subnet("ovn-default", "Ready", subnet_ready)
            .await?;
        let nb = ovsdb::Client::connect(ClientConfig::from_remotes(&base.ovn.nb_remote())?).await?;
        Ok(Self { base, cluster, nb })
    }

    /// Waits until no pod port of ours and no IP resource is left.
    async fn wait_nothing_left(&self) {
        eventually("no pod port or IP resource left", || async {
            let ports = self.pod_ports().await.len();
            let ips = self.cluster.list_ips().await.expect("list IPs").len();
            if ports == 0 && ips == 0 {
                Ok(())
            } else {
                Err(format!("{ports} pod ports, {ips} IP resources"))
            }
        })
        .await;
    }

    /// Waits until Subnet `name` counts `count` addresses in use.
    async fn wait_using(&self, name: &str, count: u128) {
        eventually(
            &format!("Subnet {name} counting {count} in use"),
            || async {
                let using = self
                    .cluster
                    .subnet_v4_using(name)
                    .await
                    .expect("Subnet status");
                if using == Some(count) {
                    Ok(())
                } else {
                    Err(format!("{using:?} in use"))
                }
            },
        )
        .await;
    }

    /// Every Logical_Switch_Port with `external_ids:rovn:kind=pod`.
    async fn pod_ports(&self) -> Vec<LogicalSwitchPort> {
        let mut txn = ovsdb::TxnBuilder::new(ovn::nb::DATABASE);
        txn.select(
            LogicalSwitchPort::NAME,
            vec![Condition::includes(
                "external_ids",
                ovsdb::Value::map([("rovn:kind", "pod")]),
            )],
            None,
        );
        let result = self.nb.commit(&txn).await.expect("select ports");
        result.results[0]
            .rows()
            .unwrap_or_default()
            .iter()
            .map(|row| {
                LogicalSwitchPort::from_row(row.uuid().expect("uuid"), row).expect("typed port")
            })
            .collect()
    }

    /// The switch named `name`.
    async fn switch(&self, name: &str) -> Option<LogicalSwitch> {
        let mut txn = ovsdb::TxnBuilder::new(ovn::nb::DATABASE);
        txn.select(LogicalSwitch::NAME, vec![Condition::eq("name", name)], None);
        let result = self.nb.commit(&txn).await.expect("select switch");
        result.results[0]
            .rows()
            .unwrap_or_default()
            .first()
            .map(|row| LogicalSwitch::from_row(row.uuid().expect("uuid"), row).expect("typed"))
    }
}

/// A pod named `name` on [`NODE`] with `annotations`.
fn pod(name: &str, annotations: &[(&str, &str)]) -> Pod {
    testenv::stack::pod(name, NODE, annotations)
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let net: IpNet = cidr.parse().expect("cidr");
    net.contains(&ip)
}

/// The network the controller recorded on `pod` (the pod-network contract),
/// which must be readable; `None` until it is allocated.
fn network(pod: &Pod) -> Option<PodNetwork> {
    PodNetwork::from_annotations(pod.annotations())
        .unwrap_or_else(|e| panic!("pod {}: {e}", pod.name_any()))
}

/// The addresses of `network` as the annotation writes them
/// (`10.70.0.2,fd00:70::2`).
fn ip_annotation(network: &PodNetwork) -> String {
    network.to_annotations()[IP_ADDRESS].clone()
}

/// Checks the port, annotations and IP resource of an allocated pod.
async fn assert_pod_wired(
    env: &PodEnv,
    namespace: &str,
    name: &str,
    subnet: &str,
    cidr: &str,
) -> PodNetwork {
    let pod = eventually(&format!("pod {namespace}/{name} allocated"), || async {
        env.cluster
            .pods(namespace)
            .get(name)
            .await
            .ok()
            .filter(allocated)
    })
    .await;
    let got = network(&pod).expect("allocated");
    let gateway = cidr.replace(".0/", ".1/");
    let gateway: IpAddr = gateway.split('/').next().unwrap().parse().unwrap();
    assert_eq!(got.logical_switch, subnet, "{name}: logical_switch");
    let [address] = got.addresses.as_slice() else {
        panic!("{name}: one address: {got:?}");
    };
    assert_eq!(address.address.trunc().to_string(), cidr, "{name}: cidr");
    assert_eq!(address.gateway, Some(gateway), "{name}: gateway");
    let ip = address.address.addr();
    assert!(in_cidr(ip, cidr), "{name}: {ip} in {cidr}");
    assert_ne!(ip, gateway, "{name}: never the gateway");

    let port_name = port_name(namespace, name);
    let port = eventually(&format!("port {port_name}"), || async {
        env.pod_ports()
            .await
            .into_iter()
            .find(|p| p.name == port_name)
    })
    .await;
    let entry = format!("{} {ip}", got.mac);
    assert_eq!(
        port.addresses,
        BTreeSet::from([entry.clone()]),
        "{port_name}: addresses"
    );
    assert_eq!(
        port.port_security,
        BTreeSet::from([entry]),
        "{port_name}: port_security"
    );
    assert_eq!(port.type_, "", "{port_name}: a workload port");
    let mut expected_ids = Owner::pod(namespace, name).external_ids();
    expected_ids.extend(
        [
            ("rovn:pod_namespace", namespace.to_string()),
            ("rovn:pod_name", name.to_string()),
            ("rovn:pod_uid", pod.uid().expect("uid")),
            ("rovn:subnet", subnet.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    assert_eq!(port.external_ids, expected_ids, "{port_name}: external_ids");
    assert!(
        !port.external_ids.keys().any(|k| k.starts_with("neutron:")),
        "no Neutron key on our port"
    );
    let switch = env.switch(subnet).await.expect("subnet switch");
    assert!(
        switch.ports.contains(&port.uuid),
        "{port_name} is on switch {subnet}"
    );

    let ip = eventually(&format!("IP {port_name}"), || async {
        env.cluster.ips().get_opt(&port_name).await.expect("get IP")
    })
    .await;
    assert_eq!(ip.spec.pod_name, name);
    assert_eq!(ip.spec.namespace, namespace);
    assert_eq!(ip.spec.subnet, subnet);
    assert_eq!(ip.spec.v4_ip_address, ip_annotation(&got));
    assert_eq!(ip.spec.v6_ip_address, "");
    assert_eq!(ip.spec.ip_address, ip_annotation(&got));
    assert_eq!(ip.spec.mac_address, got.mac.to_string());
    assert_eq!(ip.spec.node_name, NODE);
    got
}

/// Waits until pod `name`'s port and IP resource are gone.
async fn assert_pod_released(env: &PodEnv, namespace: &str, name: &str) {
    let port_name = port_name(namespace, name);
    eventually(&format!("port and IP of {port_name} gone"), || async {
        let port = env
            .pod_ports()
            .await
            .into_iter()
            .any(|p| p.name == port_name);
        let ip = env
            .cluster
            .ips()
            .get_opt(&port_name)
            .await
            .expect("get IP")
            .is_some();
        (!port && !ip).then_some(())
    })
    .await;
}

/// A refused pod: a Warning Event with `reason`, and neither annotations
/// nor a port nor an IP resource.
async fn assert_refused(env: &PodEnv, namespace: &str, name: &str, reason: &str) {
    let warnings = env
        .cluster
        .wait_warning(namespace, name, reason)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pod = env
        .cluster
        .pods(namespace)
        .get(name)
        .await
        .expect("get pod");
    assert!(
        !allocated(&pod),
        "{name} must not be allocated: {warnings:?}"
    );
    let port_name = port_name(namespace, name);
    assert!(!env.pod_ports().await.iter().any(|p| p.name == port_name));
    assert!(
        env.cluster
            .ips()
            .get_opt(&port_name)
            .await
            .expect("get IP")
            .is_none()
    );
}

/// The seed scenario, pod side: Subnet net2 on an imported Neutron Zed
/// router that already serves 10.0.1.0/24, namespace net2 bound to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_pods_get_ports_annotations_and_ip_resources() -> anyhow::Result<()> {
    let env = PodEnv::start("pods-seed").await?;
    let mut router = NeutronRouter::create(&env.base.ovn, "router1").expect("neutron router");
    let net1 = NeutronNetwork::create(&env.base.ovn, "net1", "10.0.1.0/24").expect("neutron net1");
    router
        .add_interface(&env.base.ovn, &net1)
        .expect("router interface");
    let vpc = router.lr_name();
    env.cluster
        .wait_vpc(&vpc, "imported", |v| v.status.is_some())
        .await?;
    env.cluster.create_namespace("net2").await?;
    env.cluster.create_namespace("plain").await?;
    env.cluster
        .create_ready_subnet("net2", subnet_spec(Some(&vpc), "10.0.2.0/24", &["net2"]))
        .await?;

    // A pod in net2: first free address after the gateway.
    env.cluster
        .create_pods("net2", vec![pod("web", &[])])
        .await?;
    let web = assert_pod_wired(&env, "net2", "web", "net2", "10.0.2.0/24").await;
    assert_eq!(ip_annotation(&web), "10.0.2.2");
    assert!(
        web.mac.to_string().starts_with("0a:72:"),
        "generated MAC {}",
        web.mac
    );

    // Static IP and MAC.
    env.cluster
        .create_pods(
            "net2",
            vec![pod(
                "fixed",
                &[
                    (IP_ADDRESS, "10.0.2.100"),
                    (MAC_ADDRESS, "0a:00:00:00:01:00"),
                ],
            )],
        )
        .await?;
    let fixed = assert_pod_wired(&env, "net2", "fixed", "net2", "10.0.2.0/24").await;
    assert_eq!(
        (
            ip_annotation(&fixed).as_str(),
            fixed.mac.to_string().as_str()
        ),
        ("10.0.2.100", "0a:00:00:00:01:00")
    );

    // Conflicts and bad requests are refused with an Event, nothing allocated.
    env.cluster
        .create_pods(
            "net2",
            vec![
                pod("same-ip", &[(IP_ADDRESS, "10.0.2.100")]),
                pod("same-mac", &[(MAC_ADDRESS, "0a:00:00:00:01:00")]),
                pod("gateway-ip", &[(IP_ADDRESS, "10.0.2.1")]),
                pod("outside", &[(IP_ADDRESS, "10.0.9.9")]),
                pod("garbage", &[(IP_ADDRESS, "not-an-ip")]),
            ],
        )
        .await?;
    assert_refused(&env, "net2", "same-ip", "AllocationFailed").await;
    assert_refused(&env, "net2", "same-mac", "AllocationFailed").await;
    assert_refused(&env, "net2", "gateway-ip", "AllocationFailed").await;
    assert_refused(&env, "net2", "outside", "AllocationFailed").await;
    assert_refused(&env, "net2", "garbage", "InvalidAddressRequest").await;

    // The logical_switch annotation overrides the namespace binding.
    env.cluster
        .create_pods(
            "net2",
            vec![pod("elsewhere", &[(LOGICAL_SWITCH, "ovn-default")])],
        )
        .await?;
    assert_pod_wired(&env, "net2", "elsewhere", "ovn-default", "10.16.0.0/16").await;

    // An unbound namespace uses the default Subnet.
    env.cluster
        .create_pods("plain", vec![pod("p1", &[])])
        .await?;
    assert_pod_wired(&env, "plain", "p1", "ovn-default", "10.16.0.0/16").await;

    // hostNetwork pods are left alone.
    let mut host = pod("host", &[]);
    host.spec.as_mut().unwrap().host_network = Some(true);
    env.cluster
        .pods("plain")
        .create(&PostParams::default(), &host)
        .await
        .expect("create host pod");
    // Once a later pod is allocated, the hostNetwork one was seen long ago.
    env.cluster
        .create_pods("plain", vec![pod("p2", &[])])
        .await?;
    assert_pod_wired(&env, "plain", "p2", "ovn-default", "10.16.0.0/16").await;
    let host = env
        .cluster
        .pods("plain")
        .get("host")
        .await
        .expect("get host pod");
    assert!(!allocated(&host) && host.annotations().is_empty());
    assert!(!env.pod_ports().await.iter().any(|p| p.name == "host.plain"));

    // Deleting the static pod frees its address for the pod that wanted it.
    env.cluster
        .delete_pods("net2", &["fixed".to_string()])
        .await?;
    assert_pod_released(&env, "net2", "fixed").await;
    let same_ip = assert_pod_wired(&env, "net2", "same-ip", "net2", "10.0.2.0/24").await;
    assert_eq!(ip_annotation(&same_ip), "10.0.2.100");

    // Every pod deleted: nothing of ours is left.
    for (namespace, names) in [
        (
            "net2",
            vec![
                "web",
                "same-ip",
                "same-mac",
                "gateway-ip",
                "outside",
                "garbage",
                "elsewhere",
            ],
        ),
        ("plain", vec!["p1", "p2", "host"]),
    ] {
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        env.cluster.delete_pods(namespace, &names).await?;
    }
    env.wait_nothing_left().await;
    env.wait_using("net2", 0).await;
    Ok(())
}

/// 200 pods created then deleted: unique addresses and MACs, then nothing
/// left (ports, IP resources, IPAM counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pods_created_and_deleted_leak_nothing() -> anyhow::Result<()> {
    let env = PodEnv::start("pods-200").await?;
    env.cluster.create_namespace("burst").await?;
    env.cluster
        .create_ready_subnet("burst", subnet_spec(None, "10.40.0.0/22", &["burst"]))
        .await?;
    let names: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
    env.cluster
        .create_pods("burst", names.iter().map(|n| pod(n, &[])).collect())
        .await?;
    let pods = env.cluster.wait_allocated("burst", 200).await?;
    let networks: Vec<PodNetwork> = pods.iter().filter_map(network).collect();
    let ips: HashSet<IpAddr> = networks.iter().flat_map(PodNetwork::ips).collect();
    let macs: HashSet<_> = networks.iter().map(|n| n.mac).collect();
    assert_eq!(ips.len(), 200, "unique addresses");
    assert_eq!(macs.len(), 200, "unique MACs");
    assert!(ips.iter().all(|ip| in_cidr(*ip, "10.40.0.0/22")));
    assert_ports_match_pods(&env, &pods).await;
    env.wait_using("burst", 200).await;

    env.cluster.delete_pods("burst", &names).await?;
    env.wait_nothing_left().await;
    env.wait_using("burst", 0).await;
    Ok(())
}

/// Dual stack: one address per family in the annotations, the port and the
/// IP resource. Then repairs: our port deleted with `ovn-nbctl` and the IP
/// resource deleted come back with the same addresses, the annotations
/// untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_pod_and_repairs_of_its_port_and_ip_resource() -> anyhow::Result<()> {
    let env = PodEnv::start("pods-dual").await?;
    env.cluster.create_namespace("dual").await?;
    let subnet = api::Subnet::new(
        "dual",
        api::SubnetSpec {
            protocol: Some(api::Protocol::Dual),
            cidr_block: "10.70.0.0/24,fd00:70::/64".to_string(),
            namespaces: vec!["dual".to_string()],
            ..api::SubnetSpec::default()
        },
    );
    env.cluster
        .subnets()
        .create(&PostParams::default(), &subnet)
        .await
        .expect("create subnet");
    env.cluster
        .wait_subnet("dual", "Ready", subnet_ready)
        .await?;
    env.cluster
        .create_pods("dual", vec![pod("d1", &[])])
        .await?;
    let pod = eventually("d1 allocated", || async {
        env.cluster
            .pods("dual")
            .get("d1")
            .await
            .ok()
            .filter(allocated)
    })
    .await;
    let got = network(&pod).expect("allocated");
    let annotations = got.to_annotations();
    assert_eq!(annotations[IP_ADDRESS], "10.70.0.2,fd00:70::2");
    assert_eq!(annotations[CIDR], "10.70.0.0/24,fd00:70::/64");
    assert_eq!(annotations[GATEWAY], "10.70.0.1,fd00:70::1");
    assert_eq!(got.logical_switch, "dual");
    let entry = format!("{} 10.70.0.2 fd00:70::2", got.mac);
    let port = eventually("port d1.dual", || async {
        env.pod_ports()
            .await
            .into_iter()
            .find(|p| p.name == "d1.dual")
    })
    .await;
    assert_eq!(port.addresses, BTreeSet::from([entry.clone()]));
    assert_eq!(port.port_security, BTreeSet::from([entry.clone()]));
    let ip = eventually("IP d1.dual", || async {
        env.cluster.ips().get_opt("d1.dual").await.expect("get IP")
    })
    .await;
    assert_eq!(
        (
            ip.spec.v4_ip_address.as_str(),
            ip.spec.v6_ip_address.as_str()
        ),
        ("10.70.0.2", "fd00:70::2")
    );
    assert_eq!(ip.spec.ip_address, "10.70.0.2,fd00:70::2");

    // Someone deletes our port: it is restored with the same addresses.
    env.base
        .ovn
        .nbctl(&["lsp-del", "d1.dual"])
        .expect("lsp-del");
    let restored = eventually("port d1.dual restored", || async {
        env.pod_ports()
            .await
            .into_iter()
            .find(|p| p.name == "d1.dual" && p.uuid != port.uuid)
    })
    .await;
    assert_eq!(restored.addresses, BTreeSet::from([entry.clone()]));
    assert!(
        env.switch("dual")
            .await
            .expect("switch")
            .ports
            .contains(&restored.uuid)
    );
    // Someone deletes the IP resource: it comes back.
    env.cluster
        .ips()
        .delete("d1.dual", &kube::api::DeleteParams::default())
        .await
        .expect("delete IP");
    let back = eventually("IP d1.dual back", || async {
        env.cluster
            .ips()
            .get_opt("d1.dual")
            .await
            .expect("get IP")
            .filter(|i| i.uid() != ip.uid())
    })
    .await;
    assert_eq!(back.spec.ip_address, "10.70.0.2,fd00:70::2");
    let after = env.cluster.pods("dual").get("d1").await.expect("get d1");
    assert_eq!(network(&after), Some(got), "annotations untouched");
    Ok(())
}

/// Every pod port of ours belongs to an existing pod and records exactly its
/// annotations; every allocated pod has its port and IP resource.
async fn assert_ports_match_pods(env: &PodEnv, pods: &[Pod]) {
    let ports = env.pod_ports().await;
    let by_name: BTreeMap<String, &ovn::nb::LogicalSwitchPort> =
        ports.iter().map(|p| (p.name.clone(), p)).collect();
    assert_eq!(by_name.len(), ports.len(), "no duplicate port names");
    let ips: BTreeMap<String, api::IP> = env
        .cluster
        .list_ips()
        .await
        .expect("list IPs")
        .into_iter()
        .map(|ip| (ip.name_any(), ip))
        .collect();
    let mut expected = BTreeSet::new();
    for pod in pods {
        let name = port_name(&pod.namespace().unwrap(), &pod.name_any());
        let a = network(pod).expect("allocated");
        let port = by_name.get(&name).unwrap_or_else(|| panic!("port {name}"));
        assert_eq!(
            port.addresses,
            BTreeSet::from([format!("{} {}", a.mac, ip_annotation(&a))]),
            "{name}"
        );
        let ip = ips.get(&name).unwrap_or_else(|| panic!("IP {name}"));
        assert_eq!(
            (ip.spec.v4_ip_address.as_str(), ip.spec.mac_address.as_str()),
            (ip_annotation(&a).as_str(), a.mac.to_string().as_str())
        );
        expected.insert(name);
    }
    let orphans: Vec<&String> = by_name.keys().filter(|n| !expected.contains(*n)).collect();
    assert!(orphans.is_empty(), "orphan ports: {orphans:?}");
    let orphan_ips: Vec<&String> = ips.keys().filter(|n| !expected.contains(*n)).collect();
    assert!(orphan_ips.is_empty(), "orphan IP resources: {orphan_ips:?}");
}

/// SIGKILL in the middle of a 500-pod burst, some pods deleted while the
/// controller is down, then a restart: every pod annotated once, unique
/// addresses, no orphan port or IP resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_then_restart_hands_out_nothing_twice() -> anyhow::Result<()> {
    let mut env = PodEnv::start("pods-sigkill").await?;
    env.cluster.create_namespace("crash").await?;
    env.cluster
        .create_ready_subnet("crash", subnet_spec(None, "10.50.0.0/22", &["crash"]))
        .await?;
    let mut log = AnnotationLog::watch(env.cluster.pods("crash"));
    let names: Vec<String> = (0..500).map(|i| format!("c{i}")).collect();
    let creating = {
        let pods: Vec<_> = names.iter().map(|n| pod(n, &[])).collect();
        let cluster = env.cluster.clone();
        tokio::spawn(async move { cluster.create_pods("crash", pods).await })
    };
    // Kill once the burst is well under way.
    log.wait_allocated(100, HANG_GUARD).await?;
    env.base.kill_controller()?;
    let at_kill = log.allocated();
    creating.await??;
    // Deleted while the controller is down: allocated ones and others.
    let gone: Vec<String> = (0..500).step_by(10).map(|i| format!("c{i}")).collect();
    env.cluster.delete_pods("crash", &gone).await?;
    // Deleted and created again under the same name (a new uid) while the
    // controller is down: the old port must not be taken for the new pod's.
    let recreated = "c1".to_string();
    let old = env
        .cluster
        .pods("crash")
        .get(&recreated)
        .await
        .expect("get c1");
    env.cluster
        .delete_pods("crash", std::slice::from_ref(&recreated))
        .await?;
    env.cluster
        .create_pods("crash", vec![pod(&recreated, &[])])
        .await?;

    env.base.start_controller().await?;
    let pods = env
        .cluster
        .wait_allocated("crash", 500 - gone.len())
        .await?;
    eventually("pods synced after the restart", || async {
        (env.base.controller().metric("rovn_pods_synced") == Some(1.0)).then_some(())
    })
    .await;
    assert!(
        at_kill < 500,
        "the kill happened mid-burst ({at_kill} allocated)"
    );

    let changed = log.changed();
    assert!(
        changed.is_empty(),
        "pods re-annotated with different values: {changed:?}"
    );
    let networks: Vec<PodNetwork> = pods.iter().filter_map(network).collect();
    let ips: HashSet<IpAddr> = networks.iter().flat_map(PodNetwork::ips).collect();
    let macs: HashSet<_> = networks.iter().map(|n| n.mac).collect();
    assert_eq!(ips.len(), pods.len(), "unique addresses");
    assert_eq!(macs.len(), pods.len(), "unique MACs");
    eventually("ports and IP resources match the pods", || async {
        let ports = env.pod_ports().await;
        let ip_count = env.cluster.list_ips().await.expect("list IPs").len();
        (ports.len() == pods.len() && ip_count == pods.len()).then_some(())
    })
    .await;
    assert_ports_match_pods(&env, &pods).await;
    let new = pods.iter().find(|p| p.name_any() == recreated).expect("c1");
    assert_ne!(new.uid(), old.uid(), "c1 was re-created");
    let port = env
        .pod_ports()
        .await
        .into_iter()
        .find(|p| p.name == "c1.crash")
        .expect("c1 port");
    assert_eq!(
        port.external_ids.get("rovn:pod_uid"),
        new.uid().as_ref(),
        "the new c1's port"
    );
    env.wait_using("crash", pods.len() as u128).await;
    Ok(())
}

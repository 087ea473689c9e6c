//! The importer and our own VPCs end to end: a real NB ovsdb-server with
//! northd, a real kube-apiserver, the real `rovn-controller` binary, and
//! Neutron Zed-shaped rows written with `ovn-nbctl`.

use std::collections::BTreeMap;

use api::annotations::VPC_EXTERNAL_LABEL;
use api::condition::{READY, ROUTER_MISSING, UNSUPPORTED, find_condition, is_condition_true};
use api::{Subnet, Vpc, VpcSpec, VpcType};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use testenv::neutron::{NeutronNetwork, NeutronRouter, NeutronRows, SecurityGroup, new_uuid};
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::{ControllerEnv, subnet_spec, wait_gone};

fn status(vpc: &Vpc) -> api::VpcStatus {
    vpc.status.clone().unwrap_or_default()
}

fn ready(vpc: &Vpc) -> bool {
    is_condition_true(&status(vpc).conditions, READY)
}

/// Whether OVN has a Logical_Router `name` with our owner marker.
fn our_router_exists(ovn: &OvnEnv, name: &str) -> bool {
    let out = ovn
        .nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "Logical_Router",
            &format!("name={name}"),
            "external_ids:\"rovn:owner\"=rovn",
        ])
        .expect("find router");
    !out.trim().is_empty()
}

fn router_count(ovn: &OvnEnv, name: &str) -> usize {
    ovn.nbctl(&[
        "--bare",
        "--columns=_uuid",
        "find",
        "Logical_Router",
        &format!("name={name}"),
    ])
    .expect("find router")
    .split_whitespace()
    .count()
}

async fn delete_subnet(subnets: &Api<Subnet>, name: &str) -> anyhow::Result<()> {
    subnets.delete(name, &DeleteParams::default()).await?;
    wait_gone(subnets, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neutron_routers_are_imported_and_never_touched() -> anyhow::Result<()> {
    let env = ControllerEnv::start_without_controller(OvnEnv::builder().northd(), "a").await?;
    let (ovn, kube, cluster) = (&env.ovn, &env.kube, &env.cluster);
    let vpcs = cluster.vpcs();
    let subnets = cluster.subnets();

    // Neutron state before the controller starts.
    let neutron = NeutronRows::snapshot(ovn)?;
    let (mut router1, net1, sg) = neutron.neutron_writes(ovn, "router1 with net1 and a VM", || {
        let mut router1 = NeutronRouter::create(ovn, "router1").expect("router1");
        let net1 = NeutronNetwork::create(ovn, "net1", "10.0.1.0/24").expect("net1");
        router1.add_interface(ovn, &net1).expect("interface");
        let sg = SecurityGroup::create(ovn).expect("sg");
        net1.add_vm_port(ovn, "vm1-port", "10.0.1.50", "compute-1", &sg)
            .expect("vm port");
        sg.add_rule_allowing(ovn, "10.0.2.0/24").expect("sg rule");
        (router1, net1, sg)
    });
    // The fixtures' shape: 2 drop ACLs, 4 + 1 SG ACLs, VM in both groups.
    let acls = |pg: &str| {
        ovn.nbctl(&["--bare", "--columns=acls", "list", "Port_Group", pg])
            .expect("pg acls")
            .split_whitespace()
            .count()
    };
    assert_eq!(acls("neutron_pg_drop"), 2);
    assert_eq!(acls(&sg.pg_name()), 5);
    // Another CMS's router: never imported.
    ovn.nbctl(&[
        "create",
        "Logical_Router",
        "name=other-cms-router",
        "external_ids:\"other:owner\"=x",
    ])
    .expect("foreign router");

    let mut controller = env.ready_controller("a").await?;
    let r1 = router1.lr_name();

    // Import.
    let imported = cluster.wait_vpc(&r1, "imported and Ready", ready).await?;
    assert_eq!(
        imported
            .labels()
            .get(VPC_EXTERNAL_LABEL)
            .map(String::as_str),
        Some("true")
    );
    let st = status(&imported);
    assert_eq!(st.type_, Some(VpcType::External));
    assert_eq!(st.router.as_deref(), Some(r1.as_str()));
    assert_eq!(st.neutron_router_name.as_deref(), Some("router1"));
    assert_eq!(st.router_cidrs, vec!["10.0.1.1/24".to_string()]);
    assert_eq!(st.neutron_networks, vec!["net1".to_string()]);
    assert_eq!(st.subnets, vec![net1.ls_name()]);
    assert!(!is_condition_true(&st.conditions, ROUTER_MISSING));

    // The default VPC and its router (ours), the foreign router left out.
    cluster
        .wait_vpc("ovn-cluster", "default VPC Ready", ready)
        .await?;
    assert!(our_router_exists(ovn, "ovn-cluster"));
    assert!(cluster.vpc("other-cms-router").await?.is_none());
    eventually("routers_not_neutron = 1", || async {
        (controller.metric("rovn_routers_not_neutron") == Some(1.0)).then_some(())
    })
    .await;
    neutron.assert_unchanged(ovn, "after import");

    // Rename in Neutron.
    neutron.neutron_writes(ovn, "rename router1", || {
        router1.rename(ovn, "router1-renamed").expect("rename")
    });
    cluster
        .wait_vpc(&r1, "renamed", |v| {
            status(v).neutron_router_name.as_deref() == Some("router1-renamed")
        })
        .await?;

    // Port added, then removed.
    let (net2, iface2) = neutron.neutron_writes(ovn, "add net2 to router1", || {
        let net2 = NeutronNetwork::create(ovn, "net2", "10.0.3.0/24").expect("net2");
        let iface = router1.add_interface(ovn, &net2).expect("interface");
        (net2, iface)
    });
    cluster
        .wait_vpc(&r1, "net2 attached", |v| {
            let st = status(v);
            st.router_cidrs == ["10.0.1.1/24", "10.0.3.1/24"]
                && st.neutron_networks == ["net1", "net2"]
                && st.subnets.contains(&net2.ls_name())
        })
        .await?;
    neutron.neutron_writes(ovn, "remove net2 from router1", || {
        router1.remove_interface(ovn, &iface2).expect("remove")
    });
    cluster
        .wait_vpc(&r1, "net2 detached", |v| {
            status(v).router_cidrs == ["10.0.1.1/24"] && status(v).neutron_networks == ["net1"]
        })
        .await?;

    // A user deletes the imported Vpc: OVN untouched, the Vpc comes back.
    let nb_before = ovn.dump_nb().expect("dump");
    let old_uid = cluster.vpc(&r1).await?.expect("vpc").uid();
    kube.kubectl(&["delete", "vpc", &r1])
        .expect("kubectl delete vpc");
    let back = cluster
        .wait_vpc(&r1, "imported again", |v| v.uid() != old_uid && ready(v))
        .await?;
    assert_eq!(
        status(&back).neutron_router_name.as_deref(),
        Some("router1-renamed")
    );
    assert_eq!(
        ovn.dump_nb().expect("dump"),
        nb_before,
        "kubectl delete vpc changed OVN"
    );

    // Editing the imported Vpc's spec: reported, never applied to OVN.
    vpcs.patch(
        &r1,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"namespaces": ["net2"]}})),
    )
    .await
    .expect("edit spec");
    let edited = cluster
        .wait_vpc(&r1, "spec edit reported", |v| {
            find_condition(&status(v).conditions, UNSUPPORTED)
                .is_some_and(|c| c.is_true() && c.message.contains("spec.namespaces"))
        })
        .await?;
    assert!(ready(&edited));
    assert_eq!(
        ovn.dump_nb().expect("dump"),
        nb_before,
        "spec edit changed OVN"
    );

    // Router deleted without Subnets: the Vpc goes.
    let router2 = neutron.neutron_writes(ovn, "create router2", || {
        NeutronRouter::create(ovn, "router2").expect("router2")
    });
    let r2 = router2.lr_name();
    cluster.wait_vpc(&r2, "imported", ready).await?;
    neutron.neutron_writes(ovn, "delete router2", || {
        router2.delete(ovn).expect("delete")
    });
    wait_gone(&vpcs, &r2).await?;

    // Router deleted with a Subnet: RouterMissing; re-created: attached again.
    let router3 = neutron.neutron_writes(ovn, "create router3", || {
        NeutronRouter::create(ovn, "router3").expect("router3")
    });
    let r3 = router3.lr_name();
    cluster.wait_vpc(&r3, "imported", ready).await?;
    cluster
        .create_subnet("net3", subnet_spec(Some(&r3), "10.0.5.0/24", &[]))
        .await?;
    cluster
        .wait_vpc(&r3, "lists Subnet net3", |v| status(v).subnets == ["net3"])
        .await?;
    let router3_id = router3.id.clone();
    neutron.neutron_writes(ovn, "delete router3", || {
        router3.delete(ovn).expect("delete")
    });
    let missing = cluster
        .wait_vpc(&r3, "RouterMissing", |v| {
            is_condition_true(&status(v).conditions, ROUTER_MISSING)
        })
        .await?;
    assert!(!ready(&missing));
    assert_eq!(status(&missing).subnets, vec!["net3".to_string()]);
    neutron.neutron_writes(ovn, "re-create router3", || {
        NeutronRouter::create_with_id(ovn, &router3_id, "router3").expect("router3 again")
    });
    cluster
        .wait_vpc(&r3, "router back", |v| {
            ready(v) && !is_condition_true(&status(v).conditions, ROUTER_MISSING)
        })
        .await?;
    delete_subnet(&subnets, "net3").await?;
    cluster
        .wait_vpc(&r3, "no Subnet listed", |v| status(v).subnets.is_empty())
        .await?;

    // Our own VPC: router with our marker; deletion blocked while a Subnet uses it.
    vpcs.create(
        &PostParams::default(),
        &Vpc::new("vpc-a", VpcSpec::default()),
    )
    .await
    .expect("create vpc-a");
    cluster
        .wait_vpc("vpc-a", "Ready", |v| {
            ready(v) && status(v).type_ == Some(VpcType::Internal)
        })
        .await?;
    assert!(our_router_exists(ovn, "vpc-a"));
    cluster
        .create_subnet("sa", subnet_spec(Some("vpc-a"), "10.1.0.0/24", &[]))
        .await?;
    cluster
        .wait_vpc("vpc-a", "lists Subnet sa", |v| status(v).subnets == ["sa"])
        .await?;
    kube.kubectl(&["delete", "vpc", "vpc-a", "--wait=false"])
        .expect("kubectl delete vpc-a");
    cluster
        .wait_vpc("vpc-a", "DeletionBlocked", |v| {
            find_condition(&status(v).conditions, "DeletionBlocked")
                .is_some_and(|c| c.is_true() && c.message.contains("sa"))
        })
        .await?;
    assert!(
        our_router_exists(ovn, "vpc-a"),
        "router deleted while in use"
    );
    delete_subnet(&subnets, "sa").await?;
    wait_gone(&vpcs, "vpc-a").await?;
    eventually("vpc-a router deleted", || async {
        (!our_router_exists(ovn, "vpc-a")).then_some(())
    })
    .await;

    // A Subnet without spec.vpc is on the default VPC: listed there (and so blocks its deletion).
    cluster
        .create_subnet("no-vpc", subnet_spec(None, "10.2.0.0/24", &[]))
        .await?;
    cluster
        .wait_vpc("ovn-cluster", "lists Subnet no-vpc", |v| {
            status(v).subnets.iter().any(|s| s == "no-vpc")
        })
        .await?;
    delete_subnet(&subnets, "no-vpc").await?;

    // A Vpc named like a Neutron router, without a router: refused, nothing created.
    let fake = format!("neutron-{}", new_uuid().expect("uuid"));
    vpcs.create(&PostParams::default(), &Vpc::new(&fake, VpcSpec::default()))
        .await
        .expect("create reserved vpc");
    let refused = cluster
        .wait_vpc(&fake, "refused", |v| {
            find_condition(&status(v).conditions, READY).is_some_and(|c| c.reason == "ReservedName")
        })
        .await?;
    assert!(status(&refused).router.is_none());
    assert_eq!(router_count(ovn, &fake), 0);
    vpcs.delete(&fake, &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&vpcs, &fake).await?;

    // Restart: same Vpcs (same uids), no duplicate routers.
    let before: BTreeMap<String, String> = vpcs
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|v| (v.name_any(), v.uid().unwrap_or_default()))
        .collect();
    controller.process.terminate()?;
    let controller = env.ready_controller("a-restarted").await?;
    eventually("routers imported after restart", || async {
        (controller.metric("rovn_routers_imported") == Some(2.0)).then_some(())
    })
    .await;
    // A Neutron change after the restart is seen, proving the importer runs.
    let router4 = neutron.neutron_writes(ovn, "create router4", || {
        NeutronRouter::create(ovn, "router4").expect("router4")
    });
    cluster
        .wait_vpc(&router4.lr_name(), "imported after restart", ready)
        .await?;
    let after: BTreeMap<String, String> = vpcs
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter(|v| v.name_any() != router4.lr_name())
        .map(|v| (v.name_any(), v.uid().unwrap_or_default()))
        .collect();
    assert_eq!(
        after, before,
        "Vpcs lost, duplicated or re-created by the restart"
    );
    assert_eq!(router_count(ovn, "ovn-cluster"), 1);

    neutron.assert_unchanged(ovn, "end of suite");
    drop(controller);
    let _ = net1;
    Ok(())
}

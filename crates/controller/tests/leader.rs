//! Two controller replicas: only the Lease holder writes; when it dies the
//! other one takes over.

mod common;

use api::Vpc;
use api::condition::{READY, is_condition_true};
use common::*;
use kube::Api;
use testenv::kube::KubeEnv;
use testenv::neutron::NeutronRouter;
use testenv::ovn::OvnEnv;

fn ready(vpc: &Vpc) -> bool {
    vpc.status
        .as_ref()
        .is_some_and(|s| is_condition_true(&s.conditions, READY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let ovn = OvnEnv::builder().start().expect("OVN");
    let kube = KubeEnv::start().expect("kube-apiserver");
    let client = kube.client().await.expect("client");
    install_crds(&client).await;
    let vpcs: Api<Vpc> = Api::all(client.clone());

    let first = Controller::start(&ovn, &kube, "first");
    first.wait_ready().await;
    wait_vpc(
        &vpcs,
        "ovn-cluster",
        "default VPC Ready (first leads)",
        ready,
    )
    .await;

    let mut second = Controller::start(&ovn, &kube, "second");
    second.wait_ready().await;
    let router1 = NeutronRouter::create(&ovn, "router1").expect("router1");
    wait_vpc(&vpcs, &router1.lr_name(), "imported by the leader", ready).await;
    eventually("first counts the import", || async {
        (first.metric("rovn_routers_imported") == Some(1.0)).then_some(())
    })
    .await;
    // The standby runs no writer: no import, no reconcile of any kind.
    assert_eq!(second.metric("rovn_routers_imported"), Some(0.0));
    assert_eq!(second.metric_sum("rovn_reconciles_total"), 0.0);
    assert!(second.running());

    // The leader dies without releasing the Lease: the standby takes over
    // once it expires.
    drop(first);
    let router2 = NeutronRouter::create(&ovn, "router2").expect("router2");
    wait_vpc(
        &vpcs,
        &router2.lr_name(),
        "imported by the new leader",
        ready,
    )
    .await;
    eventually("second imports both routers", || async {
        (second.metric("rovn_routers_imported") == Some(2.0)).then_some(())
    })
    .await;
    let routers = ovn
        .nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "Logical_Router",
            "name=ovn-cluster",
        ])
        .expect("find");
    assert_eq!(
        routers.split_whitespace().count(),
        1,
        "default router duplicated"
    );
}

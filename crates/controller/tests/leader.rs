//! Two controller replicas: only the Lease holder writes; when it dies the
//! other one takes over.

use api::Vpc;
use api::condition::{READY, is_condition_true};
use testenv::neutron::NeutronRouter;
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::ControllerEnv;

fn ready(vpc: &Vpc) -> bool {
    vpc.status
        .as_ref()
        .is_some_and(|s| is_condition_true(&s.conditions, READY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over() -> anyhow::Result<()> {
    let env = ControllerEnv::start_without_controller(OvnEnv::builder(), "first").await?;
    let (ovn, cluster) = (&env.ovn, &env.cluster);

    let mut first = env.ready_controller("first").await?;
    cluster
        .wait_vpc("ovn-cluster", "default VPC Ready (first leads)", ready)
        .await?;

    let mut second = env.ready_controller("second").await?;
    let router1 = NeutronRouter::create(ovn, "router1")?;
    cluster
        .wait_vpc(&router1.lr_name(), "imported by the leader", ready)
        .await?;
    eventually("first counts the import", || async {
        first.metric("rovn_routers_imported") == Some(1.0)
    })
    .await;
    // The standby runs no writer: no import, no reconcile of any kind.
    assert_eq!(second.metric("rovn_routers_imported"), Some(0.0));
    assert_eq!(second.metric_sum("rovn_reconciles_total"), 0.0);
    assert!(second.process.running());

    // The leader dies (SIGKILL) without releasing the Lease: the standby
    // takes over once it expires.
    first.process.kill();
    let router2 = NeutronRouter::create(ovn, "router2")?;
    cluster
        .wait_vpc(&router2.lr_name(), "imported by the new leader", ready)
        .await?;
    eventually("second imports both routers", || async {
        second.metric("rovn_routers_imported") == Some(2.0)
    })
    .await;
    let routers = ovn.nbctl(&[
        "--bare",
        "--columns=_uuid",
        "find",
        "Logical_Router",
        "name=ovn-cluster",
    ])?;
    assert_eq!(
        routers.split_whitespace().count(),
        1,
        "default router duplicated"
    );
    Ok(())
}

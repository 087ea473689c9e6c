//! `rovnctl diagnose` against a real Northbound database holding what
//! Neutron Zed writes, and a real kube-apiserver for `--subnet`.

use std::process::Command;

use testenv::kube::KubeEnv;
use testenv::neutron::{NeutronNetwork, NeutronRouter, SecurityGroup};
use testenv::ovn::OvnEnv;
use testenv::stack::{Cluster, subnet_spec};

fn rovnctl(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rovnctl"))
        .args(args)
        .output()
        .expect("run rovnctl");
    assert!(
        out.status.success(),
        "rovnctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tells_which_vm_ports_drop_pod_connections_and_how_to_admit_them() {
    let env = OvnEnv::builder().start().unwrap();
    let mut router = NeutronRouter::create(&env, "router1").unwrap();
    let net1 = NeutronNetwork::create(&env, "net1", "10.0.1.0/24").unwrap();
    router.add_interface(&env, &net1).unwrap();
    let sg = SecurityGroup::create(&env).unwrap();
    let vm = net1
        .add_vm_port(&env, "vm1-port", "10.0.1.50", "chassis-1", &sg)
        .unwrap();
    let nb = env.nb_remote();
    let lr = router.lr_name();
    let args = [
        "diagnose",
        "--ovn-nb",
        &nb,
        "--router",
        &lr,
        "--cidr",
        "10.0.2.0/24",
    ];

    let before = rovnctl(&args);
    assert!(before.contains("(Neutron router \"router1\")"), "{before}");
    assert!(before.contains("Neutron network \"net1\""), "{before}");
    let vm_line = before
        .lines()
        .find(|l| l.contains(&vm.port_id))
        .unwrap_or_else(|| panic!("VM port missing: {before}"));
    assert!(
        vm_line.contains("DROPPED") && vm_line.contains("10.0.1.50"),
        "{vm_line}"
    );
    assert!(
        before.contains(&format!(
            "fix: openstack security group rule create --ingress --ethertype IPv4 \
             --remote-ip 10.0.2.0/24 {}",
            sg.id
        )),
        "{before}"
    );

    sg.add_rule_allowing(&env, "10.0.2.0/24").unwrap();
    let after = rovnctl(&args);
    let vm_line = after.lines().find(|l| l.contains(&vm.port_id)).unwrap();
    assert!(vm_line.contains("reachable: allowed by"), "{after}");
    assert!(!after.contains("DROPPED"), "{after}");

    // --subnet reads the CIDR and the VPC from the Subnet resource.
    let kube = KubeEnv::shared().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cluster = Cluster::connect(kube).await.unwrap();
        cluster.install_crds().await.unwrap();
        cluster
            .create_subnet("diag-net3", subnet_spec(Some(&lr), "10.0.3.0/24", &[]))
            .await
            .unwrap();
    });
    let kubeconfig = kube.kubeconfig().to_str().unwrap();
    let by_subnet = rovnctl(&[
        "diagnose",
        "--ovn-nb",
        &nb,
        "--subnet",
        "diag-net3",
        "--kubeconfig",
        kubeconfig,
    ]);
    assert!(
        by_subnet.contains("Pods in 10.0.3.0/24 on router"),
        "{by_subnet}"
    );
    let vm_line = by_subnet.lines().find(|l| l.contains(&vm.port_id)).unwrap();
    assert!(
        vm_line.contains("DROPPED"),
        "the rule admits 10.0.2.0/24 only: {by_subnet}"
    );
}

#[test]
fn unknown_router_is_a_clear_error() {
    let env = OvnEnv::builder().start().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rovnctl"))
        .args([
            "diagnose",
            "--ovn-nb",
            &env.nb_remote(),
            "--router",
            "nope",
            "--cidr",
            "10.0.2.0/24",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Logical_Router named \"nope\""),
        "{stderr}"
    );
}

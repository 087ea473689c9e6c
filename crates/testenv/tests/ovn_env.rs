//! The OVN test environment runs real daemons and cleans up after itself.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testenv::netns::{Netns, Nic};
use testenv::ovn::{Component, OvnEnv};
use testenv::pki::Pki;
use testenv::poll::wait_until;

/// Whether a process with this pid exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn standalone_nb_serves_nbctl_on_unix_and_tcp_and_cleans_up() {
    let env = OvnEnv::builder().nb_tcp().start().unwrap();
    env.nbctl(&["ls-add", "sw0"]).unwrap();
    let tcp = env.nb_tcp_remote().expect("tcp listener");
    assert!(tcp.starts_with("tcp:127.0.0.1:"), "{tcp}");
    let out = Command::new("ovn-nbctl")
        .args([&format!("--db={tcp}"), "--timeout=10", "ls-list"])
        .env_remove("OVN_NB_DAEMON")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(sw0)"));

    let before = env.dump_nb().unwrap();
    assert!(before.contains("\"name\":\"sw0\""), "{before}");
    assert_eq!(before, env.dump_nb().unwrap());
    env.nbctl(&["ls-add", "sw1"]).unwrap();
    assert_ne!(before, env.dump_nb().unwrap());

    let pids = env.pids();
    let dir = env.dir().to_path_buf();
    assert_eq!(pids.len(), 1);
    assert!(pids.iter().all(|p| alive(*p)));
    drop(env);
    assert!(pids.iter().all(|p| !alive(*p)), "daemons left running");
    assert!(!Path::new(&dir).exists(), "temp dir left behind");
}

#[test]
fn standalone_nb_restarts_on_the_same_socket_and_port_with_its_data() {
    let env = OvnEnv::builder().nb_tcp().start().unwrap();
    env.nbctl(&["ls-add", "kept"]).unwrap();
    let tcp = env.nb_tcp_remote().unwrap();
    let old_pid = env.pids()[0];
    env.nb_kill().unwrap();
    assert!(!alive(old_pid));
    assert!(env.nbctl(&["--timeout=1", "ls-list"]).is_err());
    env.nb_restart().unwrap();
    assert_eq!(env.nb_tcp_remote().unwrap(), tcp);
    assert!(env.nbctl(&["ls-list"]).unwrap().contains("(kept)"));
    let version = env.appctl(Component::Nb, &["version"]).unwrap();
    assert!(version.contains("ovsdb-server"), "{version}");
}

#[test]
fn ssl_listener_accepts_the_pki_client_certificate() {
    let env = OvnEnv::builder().nb_ssl().start().unwrap();
    env.nbctl(&["ls-add", "secure"]).unwrap();
    let ssl = env.nb_ssl_remote().expect("ssl listener");
    assert!(ssl.starts_with("ssl:127.0.0.1:"), "{ssl}");
    let client = env.pki().unwrap().client();
    let out = Command::new("ovn-nbctl")
        .args(client.cli_args())
        .args([&format!("--db={ssl}"), "--timeout=10", "ls-list"])
        .env_remove("OVN_NB_DAEMON")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("(secure)"));

    // A certificate from another CA is refused.
    let stranger = Pki::new().unwrap();
    let out = Command::new("ovn-nbctl")
        .args(stranger.client().cli_args())
        .args([&format!("--db={ssl}"), "--timeout=3", "ls-list"])
        .env_remove("OVN_NB_DAEMON")
        .output()
        .unwrap();
    assert!(!out.status.success(), "stranger accepted: {out:?}");
}

#[test]
fn nb_cluster_elects_a_leader_and_survives_its_death() {
    let env = OvnEnv::builder().nb_cluster(3).start().unwrap();
    assert_eq!(env.nb_remotes().len(), 3);
    env.nbctl(&["ls-add", "before"]).unwrap();

    let leader = env.nb_leader().unwrap();
    let leader_pid = env.nb_member_pid(leader).unwrap().unwrap();
    env.nb_kill_member(leader).unwrap();
    assert!(!alive(leader_pid));
    let new_leader = env.nb_leader().unwrap();
    assert_ne!(new_leader, leader);

    env.nbctl(&["ls-add", "after"]).unwrap();
    let switches = env.nbctl(&["ls-list"]).unwrap();
    assert!(
        switches.contains("(before)") && switches.contains("(after)"),
        "{switches}"
    );

    env.nb_restart_member(leader).unwrap();
    let status = env
        .appctl(
            Component::NbMember(leader),
            &["cluster/status", "OVN_Northbound"],
        )
        .unwrap();
    assert!(status.contains("Status: cluster member"), "{status}");
    assert!(env.dump_nb().unwrap().contains("\"name\":\"after\""));

    let pids = env.pids();
    assert_eq!(pids.len(), 3);
    drop(env);
    assert!(pids.iter().all(|p| !alive(*p)), "daemons left running");
}

#[test]
fn northd_translates_nb_switches_into_sb_datapaths() {
    let env = OvnEnv::builder().northd().start().unwrap();
    env.nbctl(&["ls-add", "sw0"]).unwrap();
    let found = wait_until(Duration::from_secs(30), "datapath sw0 in SB", || {
        let out = env
            .sbctl(&[
                "--bare",
                "--columns=external_ids",
                "list",
                "Datapath_Binding",
            ])
            .ok()?;
        out.contains("name=sw0").then_some(())
    });
    found.unwrap();
    let status = env.appctl(Component::Northd, &["status"]).unwrap();
    assert!(status.contains("active"), "{status}");
    assert_eq!(env.pids().len(), 3);
}

#[test]
fn two_workloads_on_one_logical_switch_ping_each_other_and_vanish_on_drop() {
    let env = OvnEnv::builder().chassis("chassis-1").start().unwrap();
    assert_eq!(env.chassis_name(), Some("chassis-1"));
    let encap = env
        .sbctl(&["--bare", "--columns=type", "list", "Encap"])
        .unwrap();
    assert_eq!(encap.trim(), "geneve");

    env.nbctl(&["ls-add", "sw0"]).unwrap();
    for (lsp, mac, ip) in [
        ("lsp-a", "0a:00:00:00:00:0a", "10.0.0.10"),
        ("lsp-b", "0a:00:00:00:00:0b", "10.0.0.11"),
    ] {
        env.nbctl(&[
            "lsp-add",
            "sw0",
            lsp,
            "--",
            "lsp-set-addresses",
            lsp,
            &format!("{mac} {ip}"),
        ])
        .unwrap();
    }
    let a = env
        .plug(
            "lsp-a",
            &Nic::new("0a:00:00:00:00:0a", "10.0.0.10/24", Some("10.0.0.1")),
        )
        .unwrap();
    let b = env
        .plug(
            "lsp-b",
            &Nic::new("0a:00:00:00:00:0b", "10.0.0.11/24", None),
        )
        .unwrap();
    env.wait_lsp_up("lsp-a").unwrap();
    env.wait_lsp_up("lsp-b").unwrap();
    assert!(a.ping("10.0.0.11"), "a cannot reach b");
    assert!(b.ping("10.0.0.10"), "b cannot reach a");
    assert!(
        !a.netns().ping_with_attempts("10.0.0.99", 1),
        "ghost answered"
    );
    let mtu = a.exec(&["cat", "/sys/class/net/eth0/mtu"]).unwrap();
    assert_eq!(mtu.trim(), "1400");
    let route = a.exec(&["ip", "route", "show", "default"]).unwrap();
    assert!(route.contains("default via 10.0.0.1 dev eth0"), "{route}");
    let link = a.exec(&["ip", "-o", "link", "show", "eth0"]).unwrap();
    assert!(link.contains("0a:00:00:00:00:0a"), "{link}");
    let offload = a.exec(&["ethtool", "-k", "eth0"]).unwrap();
    assert!(offload.contains("tx-checksumming: off"), "{offload}");

    let chassis_version = env.appctl(Component::Controller, &["version"]).unwrap();
    assert!(
        chassis_version.contains("ovn-controller"),
        "{chassis_version}"
    );
    let ports = env.vsctl(&["list-ports", "br-int"]).unwrap();
    assert!(
        ports.contains(a.host_if()) && ports.contains(b.host_if()),
        "{ports}"
    );

    let (a_ns, b_ns) = (a.netns().name().to_string(), b.netns().name().to_string());
    let a_if = a.host_if().to_string();
    let chassis_ns = env.chassis_netns().unwrap().expect("own netns").to_string();
    drop(a);
    assert!(!Netns::exists(&a_ns));
    let ports = env.vsctl(&["list-ports", "br-int"]).unwrap();
    assert!(
        !ports.contains(&a_if) && ports.contains(b.host_if()),
        "{ports}"
    );

    let pids = env.pids();
    assert_eq!(
        pids.len(),
        6,
        "nb, sb, northd, ovs db, vswitchd, controller"
    );
    drop(b);
    drop(env);
    assert!(pids.iter().all(|p| !alive(*p)), "daemons left running");
    for ns in [b_ns, chassis_ns] {
        assert!(!Netns::exists(&ns), "netns {ns} left behind");
    }
}

#[test]
fn chassis_in_the_host_netns_plugs_veths_made_there() {
    let env = OvnEnv::builder()
        .chassis_in_host_netns("host-chassis")
        .start()
        .unwrap();
    assert_eq!(env.chassis_netns().unwrap(), None);
    assert!(env.br_int().unwrap().netns.is_none());
    env.nbctl(&["ls-add", "sw0"]).unwrap();
    for (lsp, mac, ip) in [
        ("p1", "0a:00:00:00:01:01", "10.1.0.1"),
        ("p2", "0a:00:00:00:01:02", "10.1.0.2"),
    ] {
        let addresses = format!("{mac} {ip}");
        env.nbctl(&[
            "lsp-add",
            "sw0",
            lsp,
            "--",
            "lsp-set-addresses",
            lsp,
            &addresses,
        ])
        .unwrap();
    }
    let p1 = env
        .plug("p1", &Nic::new("0a:00:00:00:01:01", "10.1.0.1/24", None))
        .unwrap();
    let p2 = env
        .plug("p2", &Nic::new("0a:00:00:00:01:02", "10.1.0.2/24", None))
        .unwrap();
    // The host end of the veth is in the initial namespace.
    assert!(Path::new("/sys/class/net").join(p1.host_if()).exists());
    env.wait_lsp_up("p1").unwrap();
    env.wait_lsp_up("p2").unwrap();
    assert!(p1.ping("10.1.0.2"));
    let host_if = p1.host_if().to_string();
    drop(p1);
    assert!(!Path::new("/sys/class/net").join(&host_if).exists());
    drop(p2);
    drop(env);
    for tap in ["br-int", "ovs-netdev"] {
        assert!(
            !Path::new("/sys/class/net").join(tap).exists(),
            "{tap} left in the initial namespace"
        );
    }
}

#[test]
fn environments_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OvnEnv>();
    assert_send_sync::<testenv::netns::Workload>();
}

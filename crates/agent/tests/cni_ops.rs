//! The real `rovn-agent` serving the real `rovn-cni`, driven like kubelet drives a CNI
//! plugin, against real OVN (NB, northd, SB, a chassis with the userspace datapath in its
//! own network namespace) and a real kube-apiserver where the test plays the controller
//! (annotations) and creates the logical switch ports with ovn-nbctl.

use api::pod_network::port_name;
use serde_json::Value;
use testenv::kube::KubeEnv;
use testenv::netns::Netns;
use testenv::ovn::OvnEnv;
use testenv::process::run;
use testenv::stack::{AgentProcess, Attachment, Cluster, pod_network};
use testenv::unique_name as unique;

const NODE: &str = "node-a";

fn host_if_of(result: &Value) -> String {
    let host = &result["interfaces"][0];
    assert!(
        host.get("sandbox").is_none(),
        "first interface is the host end: {result}"
    );
    host["name"].as_str().expect("host end name").to_owned()
}

/// The CNI error object of an ADD of `attachment` that must fail.
async fn add_fails(attachment: Attachment) -> Value {
    tokio::task::spawn_blocking(move || {
        attachment
            .run("ADD", None)
            .and_then(|r| r.into_error())
            .expect("ADD fails")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn add_check_del_two_pods_that_ping_each_other() {
    let kube = KubeEnv::shared().expect("kube env");
    let cluster = Cluster::connect(kube).await.expect("kube client");
    let env = tokio::task::spawn_blocking(|| OvnEnv::builder().chassis(NODE).start())
        .await
        .unwrap()
        .expect("OVN env");
    let chassis_netns = env
        .chassis_netns()
        .expect("chassis")
        .expect("chassis in its own netns")
        .to_owned();
    let host_link_exists = |name: &str| env.chassis_link_exists(name).expect("ip link");
    let ovs_interface_ids = |name: &str| {
        env.ovs_interface_external_ids(name)
            .expect("ovs-vsctl find")
    };
    env.nbctl(&["ls-add", "net2"]).unwrap();

    let namespace = unique("agent");
    cluster
        .create_namespace(&namespace)
        .await
        .expect("create namespace");
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        &[
            AgentProcess::chassis_args(kube.kubeconfig(), NODE, &env).unwrap(),
            ["--allocation-timeout", "3", "--port-up-timeout", "60"]
                .map(String::from)
                .to_vec(),
        ]
        .concat(),
    )
    .expect("rovn-agent");

    // Two pods on one subnet; the controller's part (annotations, LSPs) played here.
    let pods = [
        ("web-a", "10.0.2.5", "0a:72:00:00:02:05"),
        ("web-b", "10.0.2.6", "0a:72:00:00:02:06"),
    ];
    let mut sandboxes = Vec::new();
    let mut attachments = Vec::new();
    for (name, ip, mac) in pods {
        cluster
            .create_pod(&namespace, name, NODE)
            .await
            .expect("create pod");
        let lsp = port_name(&namespace, name);
        env.nbctl(&["lsp-add", "net2", &lsp]).unwrap();
        env.nbctl(&["lsp-set-addresses", &lsp, &format!("{mac} {ip}")])
            .unwrap();
        let netns = Netns::new().unwrap();
        attachments.push(Attachment {
            socket: agent.socket.clone(),
            container_id: unique(&format!("ctr-{name}")),
            netns: format!("/var/run/netns/{}", netns.name()),
            namespace: namespace.clone(),
            pod: name.into(),
        });
        sandboxes.push(netns);
    }
    let allocation =
        |ip: &str, mac: &str| pod_network("net2", mac, &format!("{ip}/24"), "10.0.2.1").unwrap();
    // Pod A is annotated before its ADD; pod B's ADD starts first and waits for the
    // annotations (a watch in the agent).
    cluster
        .annotate_pod(&namespace, "web-a", &allocation(pods[0].1, pods[0].2))
        .await
        .expect("annotate web-a");
    let add_a = attachments[0].clone();
    let run_a = tokio::task::spawn_blocking(move || add_a.run("ADD", None).expect("run rovn-cni"))
        .await
        .unwrap();
    assert_eq!(
        run_a.exit_code,
        0,
        "ADD failed: {}\nOVS interfaces:\n{}\ncontroller:\n{}\nSB bindings:\n{}\nagent:\n{}",
        run_a.stdout,
        env.vsctl(&["list", "Interface"]).unwrap_or_default(),
        std::fs::read_to_string(env.dir().join("chassis/ovn-controller.log")).unwrap_or_default(),
        env.sbctl(&["list", "Port_Binding"]).unwrap_or_default(),
        agent.process.log()
    );
    let result_a = run_a.stdout;
    let add_b = attachments[1].clone();
    let pending_b = tokio::task::spawn_blocking(move || add_b.add());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cluster
        .annotate_pod(&namespace, "web-b", &allocation(pods[1].1, pods[1].2))
        .await
        .expect("annotate web-b");
    let result_b = pending_b.await.unwrap().expect("ADD");

    for ((result, attachment), (name, ip, mac)) in [&result_a, &result_b]
        .into_iter()
        .zip(&attachments)
        .zip(pods)
    {
        assert_eq!(result["cniVersion"], "1.1.0");
        assert_eq!(result["interfaces"][1]["name"], "eth0");
        assert_eq!(result["interfaces"][1]["mac"], mac);
        assert_eq!(
            result["interfaces"][1]["sandbox"],
            attachment.netns.as_str()
        );
        assert_eq!(result["ips"][0]["address"], format!("{ip}/24"));
        assert_eq!(result["ips"][0]["gateway"], "10.0.2.1");
        assert_eq!(result["ips"][0]["interface"], 1);
        assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(result["routes"][0]["gw"], "10.0.2.1");
        // Returned only with the port up.
        let lsp = port_name(&namespace, name);
        let up = env
            .nbctl(&["get", "Logical_Switch_Port", &lsp, "up"])
            .unwrap();
        assert_eq!(up.trim(), "true", "{lsp} not up when ADD returned");
        let host_if = host_if_of(result);
        assert!(host_if.len() <= 15);
        assert!(host_link_exists(&host_if));
        let ids = ovs_interface_ids(&host_if).expect("OVS interface");
        assert!(ids.contains(&format!("iface-id={lsp} ")), "{ids}");
        assert!(ids.contains(&format!("attached-mac={mac} ")), "{ids}");
        assert!(ids.contains("ovn-installed=true "), "{ids}");
        let netns = attachment.netns.rsplit('/').next().unwrap();
        let link = run("ip", &["-n", netns, "-o", "link", "show", "eth0"]).expect("link");
        assert!(link.contains(mac) && link.contains("mtu 1400"), "{link}");
        let routes = run("ip", &["-n", netns, "route", "show", "default"]).expect("routes");
        assert!(routes.contains("via 10.0.2.1 dev eth0"), "{routes}");
        let offload =
            run("ip", &["netns", "exec", netns, "ethtool", "-k", "eth0"]).expect("offload");
        assert!(offload.contains("tx-checksumming: off"), "{offload}");
        let offload = run(
            "ip",
            &["netns", "exec", &chassis_netns, "ethtool", "-k", &host_if],
        )
        .expect("ethtool");
        assert!(offload.contains("tx-checksumming: off"), "{offload}");
    }

    // Real packets through OVN between the two pods.
    assert!(sandboxes[0].ping(pods[1].1), "{}", agent.process.log());
    assert!(sandboxes[1].ping(pods[0].1), "{}", agent.process.log());

    // CHECK against the ADD results.
    let check = attachments[0].clone();
    let prev = result_a.clone();
    let checked =
        tokio::task::spawn_blocking(move || check.run("CHECK", Some(&prev)).expect("run rovn-cni"))
            .await
            .unwrap();
    assert_eq!(checked.exit_code, 0, "CHECK: {}", checked.stdout);
    // CHECK notices a missing address.
    run(
        "ip",
        &[
            "-n",
            sandboxes[1].name(),
            "addr",
            "del",
            "10.0.2.6/24",
            "dev",
            "eth0",
        ],
    )
    .expect("ip addr del");
    let check = attachments[1].clone();
    let prev = result_b.clone();
    let failed = tokio::task::spawn_blocking(move || {
        check
            .run("CHECK", Some(&prev))
            .and_then(|r| r.into_error())
            .expect("CHECK fails")
    })
    .await
    .unwrap();
    assert!(
        failed["details"]
            .as_str()
            .unwrap_or_default()
            .contains("10.0.2.6/24"),
        "{failed}"
    );

    // STATUS: ready.
    let status = attachments[0].clone();
    let ready =
        tokio::task::spawn_blocking(move || status.run("STATUS", None).expect("run rovn-cni"))
            .await
            .unwrap();
    assert_eq!(ready.exit_code, 0, "STATUS: {}", ready.stdout);

    // DEL removes veth and OVS port; DEL again is fine.
    let host_a = host_if_of(&result_a);
    let del = attachments[0].clone();
    let prev = result_a.clone();
    tokio::task::spawn_blocking(move || {
        del.del(Some(&prev)).expect("DEL");
        del.del(Some(&prev)).expect("DEL");
    })
    .await
    .unwrap();
    assert!(!host_link_exists(&host_a));
    assert_eq!(ovs_interface_ids(&host_a), None);
    let links = run("ip", &["-n", sandboxes[0].name(), "-o", "link"]).expect("links");
    assert!(!links.contains("eth0"), "{links}");
    // Pod B still has its port.
    assert!(ovs_interface_ids(&host_if_of(&result_b)).is_some());

    // DEL of an attachment whose netns is already gone (and was never added).
    let gone = Attachment {
        container_id: unique("ctr-gone"),
        netns: "/var/run/netns/rovn-never-existed".into(),
        ..attachments[1].clone()
    };
    tokio::task::spawn_blocking(move || gone.del(None).expect("DEL"))
        .await
        .unwrap();

    // A pod the controller never annotates: a clear error after the (short) wait, nothing left.
    cluster
        .create_pod(&namespace, "lonely", NODE)
        .await
        .expect("create pod");
    let lonely_ns = Netns::new().unwrap();
    let lonely = Attachment {
        container_id: unique("ctr-lonely"),
        netns: format!("/var/run/netns/{}", lonely_ns.name()),
        pod: "lonely".into(),
        ..attachments[0].clone()
    };
    let failed = add_fails(lonely).await;
    assert_eq!(failed["code"], 11, "{failed}");
    let details = failed["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("ovn.kubernetes.io/allocated=true")
            && details.contains("ovn.kubernetes.io/ip_address")
            && details.contains(&format!("{namespace}/lonely")),
        "{failed}"
    );
    // A pod that does not exist at all.
    let ghost = Attachment {
        container_id: unique("ctr-ghost"),
        pod: "ghost".into(),
        ..attachments[0].clone()
    };
    let failed = add_fails(ghost).await;
    assert!(
        failed["details"]
            .as_str()
            .unwrap_or_default()
            .contains("not found"),
        "{failed}"
    );

    // GC keeps only the valid attachments: pod B's port goes when not listed.
    let gc = attachments[1].clone();
    let host_b = host_if_of(&result_b);
    tokio::task::spawn_blocking(move || {
        gc.gc(serde_json::json!([]))
            .and_then(|r| r.into_result())
            .expect("GC")
    })
    .await
    .unwrap();
    assert_eq!(ovs_interface_ids(&host_b), None);
    assert!(!host_link_exists(&host_b));
    drop(agent);
}

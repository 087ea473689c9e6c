//! ClusterIP Services with real packets: the whole stack (NB/SB ovsdb-servers, northd, a
//! chassis with userspace `ovs-vswitchd` + `ovn-controller`, kube-apiserver, the real
//! `rovn-controller` and `rovn-agent`); pods are network namespaces plugged through
//! `rovn-cni`, their servers and clients small python3 programs.
//!
//! Tenant A (made by "Neutron" before rovn starts) has its router imported; Subnets net2
//! (10.0.2.0/24) and net3 (10.0.3.0/24) are attached to it, with pods `client` and `web2`
//! in net2 and `web3` in net3. Services are created with explicit ClusterIPs from the API
//! server's `--service-cluster-ip-range` (10.96.0.0/16). The test API server runs no
//! kube-controller-manager, so no EndpointSlice is made for a Service with a selector: the
//! test writes them itself, exactly as the endpointslice controller would (label
//! `kubernetes.io/service-name`, pod `targetRef`, `conditions.ready`).
//!
//! Proven with packets: pod → ClusterIP → endpoint in another subnet of the same Neutron
//! router and in its own subnet, TCP and UDP; hairpin (a pod reaches a Service whose only
//! endpoint is itself); ClientIP affinity; an endpoint made not ready, then removed: traffic
//! to it stops (the delay is measured and printed, never asserted); a Service without a
//! selector whose EndpointSlice is made by hand; our load balancer deleted, our switch's
//! group reference cleared and the VPC's whole group deleted by another client: restored;
//! endpoints in another, isolated VPC
//! (tenant B): each VPC reaches only its own endpoints, a VPC without any gets a reset, and
//! the Service gets a Warning Event; a controller restart keeps the rows of running Services
//! and removes those of a Service deleted meanwhile; no Neutron row changed, and no Neutron switch or router
//! references a load balancer.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ClientIPConfig, ObjectReference, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use testenv::neutron::NeutronRows;
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::{Cluster, ControllerEnv, PluggedPod, Serve, Tenant, pod, subnet_spec};
use testenv::unique_name;

/// TCP port the pods' servers listen on.
const HTTP: i32 = 8080;
/// UDP port the pods' servers answer on.
const DNS: i32 = 5353;

/// The endpoint of `pod`, as the endpointslice controller writes it.
fn endpoint(pod: &PluggedPod, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![pod.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

async fn plug_pod(
    cluster: &Cluster,
    socket: &std::path::Path,
    namespace: &str,
    name: &str,
    node: &str,
    serve: bool,
) -> PluggedPod {
    let serve = serve.then(|| Serve {
        tcp: vec![HTTP],
        udp: DNS,
    });
    PluggedPod::plug(cluster, socket, namespace, pod(name, node, &[]), serve)
        .await
        .expect("plugged pod")
}

fn service(name: &str, cluster_ip: &str, selector: bool, affinity: bool) -> Service {
    let port = |name: &str, protocol: &str, port: i32, target: i32| ServicePort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        ..ServicePort::default()
    };
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            selector: selector.then(|| [("app".to_string(), name.to_string())].into()),
            ports: Some(vec![
                port("http", "TCP", 80, HTTP),
                port("dns", "UDP", 53, DNS),
            ]),
            session_affinity: Some(if affinity { "ClientIP" } else { "None" }.into()),
            session_affinity_config: affinity.then_some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(600),
                }),
            }),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn slice(service: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    let port = |name: &str, protocol: &str, port: i32| EndpointPort {
        name: Some(name.into()),
        protocol: Some(protocol.into()),
        port: Some(port),
        ..EndpointPort::default()
    };
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-abcde")),
            labels: Some(
                [
                    (
                        "kubernetes.io/service-name".to_string(),
                        service.to_string(),
                    ),
                    (
                        "endpointslice.kubernetes.io/managed-by".to_string(),
                        "endpointslice-controller.k8s.io".to_string(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![port("http", "TCP", HTTP), port("dns", "UDP", DNS)]),
    }
}

/// Writes `slice` (created, or replacing the one of that name).
async fn put_slice(api: &Api<EndpointSlice>, slice: EndpointSlice) {
    let name = slice.metadata.name.clone().unwrap();
    match api.get_opt(&name).await.expect("get slice") {
        Some(current) => {
            let mut slice = slice;
            slice.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &slice)
                .await
                .expect("replace slice");
        }
        None => {
            api.create(&PostParams::default(), &slice)
                .await
                .expect("create slice");
        }
    }
}

/// Waits until requests from `from` to `ip:port` are no longer answered by `name`;
/// returns how long it took since `since` and what answered instead.
async fn wait_not_answered_by(
    from: &PluggedPod,
    ip: &str,
    port: i32,
    name: &str,
    since: Instant,
) -> (Duration, String) {
    let what = format!(
        "tcp {ip}:{port} from {} no longer answered by {name}",
        from.name
    );
    let answer = eventually(&what, || async {
        let answer = from.ask_once("tcp", ip, port);
        if answer == name {
            Err(answer)
        } else {
            Ok(answer)
        }
    })
    .await;
    (since.elapsed(), answer)
}

/// Waits until the load balancer named `name` no longer lists backend address `ip` and
/// prints how long that took since `since` (the controller's share of an endpoint change).
async fn wait_backend_gone(ovn: &OvnEnv, name: &str, ip: &str, since: Instant) {
    let what = format!("{ip} gone from the vips of {name}");
    eventually(&what, || async {
        let vips = ovn
            .nbctl(&["get", "Load_Balancer", &lb_uuid(ovn, name), "vips"])
            .unwrap_or_default();
        if vips.contains(&format!("{ip}:")) {
            Err(vips)
        } else {
            Ok(())
        }
    })
    .await;
    eprintln!(
        "  EndpointSlice written -> {name} updated in NB after {} ms",
        since.elapsed().as_millis()
    );
}

/// The uuid of the load balancer named `name`.
fn lb_uuid(ovn: &OvnEnv, name: &str) -> String {
    ovn.nbctl(&[
        "--bare",
        "--columns",
        "_uuid",
        "find",
        "Load_Balancer",
        &format!("name=\"{name}\""),
    ])
    .expect("find")
    .trim()
    .to_owned()
}

fn nb_list(ovn: &OvnEnv, table: &str, column: &str) -> String {
    ovn.nbctl(&["--bare", "--columns", column, "list", table])
        .expect("ovn-nbctl list")
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_ip_services_with_real_packets() {
    let mut env = ControllerEnv::start_without_controller(
        OvnEnv::builder().chassis("svc-node"),
        &unique_name("svc"),
    )
    .await
    .expect("OVN and the API server");
    let node = env.ovn.chassis_name().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let a = Tenant::create(&env.ovn, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
    let neutron = NeutronRows::snapshot(&env.ovn).expect("Neutron rows");
    let agent = env
        .start_controller_and_agent(dir.path())
        .await
        .expect("rovn-controller and rovn-agent");
    let cluster = &env.cluster;
    let vpc = a.router.lr_name();
    cluster
        .wait_vpc(&vpc, "imported", |v| v.status.is_some())
        .await
        .expect("router imported");
    for (name, cidr) in [("net2", "10.0.2.0/24"), ("net3", "10.0.3.0/24")] {
        cluster.create_namespace(name).await.expect("namespace");
        cluster
            .create_ready_subnet(name, subnet_spec(Some(&vpc), cidr, &[name]))
            .await
            .expect("Subnet Ready");
    }
    let client = plug_pod(cluster, &agent.socket, "net2", "client", &node, false).await;
    let web2 = plug_pod(cluster, &agent.socket, "net2", "web2", &node, true).await;
    let web3 = plug_pod(cluster, &agent.socket, "net3", "web3", &node, true).await;
    assert!(web3.ip.starts_with("10.0.3."), "{}", web3.ip);

    let services: Api<Service> = Api::namespaced(cluster.client().clone(), "net2");
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client().clone(), "net2");

    // Endpoint in another subnet of the same Neutron router, TCP and UDP.
    let web_ip = "10.96.0.20";
    services
        .create(&PostParams::default(), &service("web", web_ip, true, false))
        .await
        .expect("Service web");
    put_slice(&slices, slice("web", vec![endpoint(&web3, true)])).await;
    let started = Instant::now();
    client.wait_answer("tcp", web_ip, 80, "web3").await;
    eprintln!(
        "Service created -> first TCP answer: {:?}",
        started.elapsed()
    );
    client.wait_answer("udp", web_ip, 53, "web3").await;

    // The group of the VPC is on our switches only, never on Neutron's rows.
    // (The default VPC, with the default Subnet, has one too.)
    let groups = nb_list(&env.ovn, "Load_Balancer_Group", "name");
    let groups: BTreeSet<&str> = groups.split_whitespace().collect();
    assert_eq!(
        groups,
        BTreeSet::from([
            format!("rovn/service-group/{vpc}").as_str(),
            "rovn/service-group/ovn-cluster"
        ])
    );
    for switch in ["net2", "net3"] {
        let referenced = env
            .ovn
            .nbctl(&["get", "Logical_Switch", switch, "load_balancer_group"])
            .unwrap();
        assert_ne!(referenced.trim(), "[]", "{switch} references the group");
    }
    for (table, row) in [
        ("Logical_Switch", a.network.ls_name()),
        ("Logical_Router", vpc.clone()),
    ] {
        for column in ["load_balancer", "load_balancer_group"] {
            let value = env.ovn.nbctl(&["get", table, &row, column]).unwrap();
            assert_eq!(value.trim(), "[]", "Neutron's {table} {row} {column}");
        }
    }

    // Endpoint in the client's own subnet.
    put_slice(&slices, slice("web", vec![endpoint(&web2, true)])).await;
    client.wait_answer("tcp", web_ip, 80, "web2").await;
    client.wait_answer("udp", web_ip, 53, "web2").await;

    // Hairpin: web2 reaches the Service whose only endpoint is itself.
    web2.wait_answer("tcp", web_ip, 80, "web2").await;
    web2.wait_answer("udp", web_ip, 53, "web2").await;

    // Both endpoints without affinity: print how connections spread.
    put_slice(
        &slices,
        slice("web", vec![endpoint(&web2, true), endpoint(&web3, true)]),
    )
    .await;
    client.wait_answer("tcp", web_ip, 80, "web3").await;
    let spread: BTreeSet<String> = client.ask("tcp", web_ip, 80, 20).into_iter().collect();
    eprintln!("20 connections without affinity reached {spread:?}");

    // ClientIP affinity: every connection of the client reaches the same backend.
    let sticky_ip = "10.96.0.21";
    services
        .create(
            &PostParams::default(),
            &service("sticky", sticky_ip, true, true),
        )
        .await
        .expect("Service sticky");
    put_slice(
        &slices,
        slice("sticky", vec![endpoint(&web2, true), endpoint(&web3, true)]),
    )
    .await;
    let first = eventually("sticky answered", || async {
        let answer = client.ask_once("tcp", sticky_ip, 80);
        if answer.starts_with("web") {
            Ok(answer)
        } else {
            Err(answer)
        }
    })
    .await;
    let answers = client.ask("tcp", sticky_ip, 80, 20);
    assert!(
        answers.iter().all(|a| *a == first),
        "ClientIP affinity: every connection reaches {first}: {answers:?}"
    );
    let lb = env
        .ovn
        .nbctl(&[
            "--bare",
            "--columns",
            "options,selection_fields",
            "find",
            "Load_Balancer",
            &format!("name=\"rovn/service/net2/sticky/tcp/{vpc}\""),
        ])
        .unwrap();
    assert!(
        lb.contains("affinity_timeout=600") && lb.contains("ip_src"),
        "{lb}"
    );

    // Endpoint web3 of Service web made not ready, then removed: traffic to it stops.
    let only3 = "10.96.0.22";
    services
        .create(
            &PostParams::default(),
            &service("only3", only3, true, false),
        )
        .await
        .expect("Service only3");
    put_slice(&slices, slice("only3", vec![endpoint(&web3, true)])).await;
    client.wait_answer("tcp", only3, 80, "web3").await;
    let only3_lb = format!("rovn/service/net2/only3/tcp/{vpc}");
    let since = Instant::now();
    put_slice(&slices, slice("only3", vec![endpoint(&web3, false)])).await;
    wait_backend_gone(&env.ovn, &only3_lb, &web3.ip, since).await;
    let (not_ready, answer) = wait_not_answered_by(&client, only3, 80, "web3", since).await;
    eprintln!(
        "endpoint not ready -> traffic to it stopped after {} ms (answer: {answer}; includes a client start-up of ~30 ms)",
        not_ready.as_millis()
    );
    put_slice(&slices, slice("only3", vec![endpoint(&web3, true)])).await;
    client.wait_answer("tcp", only3, 80, "web3").await;
    let since = Instant::now();
    slices
        .delete("only3-abcde", &DeleteParams::default())
        .await
        .expect("delete slice");
    wait_backend_gone(&env.ovn, &only3_lb, &web3.ip, since).await;
    let (removed, answer) = wait_not_answered_by(&client, only3, 80, "web3", since).await;
    eprintln!(
        "EndpointSlice deleted -> traffic stopped after {} ms (answer: {answer})",
        removed.as_millis()
    );
    assert_eq!(
        client.ask_once("udp", only3, 53),
        "refused",
        "a vip without endpoints is rejected at once"
    );

    // A Service without a selector and an EndpointSlice made by hand.
    let manual_ip = "10.96.0.23";
    services
        .create(
            &PostParams::default(),
            &service("manual", manual_ip, false, false),
        )
        .await
        .expect("Service manual");
    let mut manual = slice("manual", vec![endpoint(&web3, true)]);
    manual.metadata.labels.as_mut().unwrap().insert(
        "endpointslice.kubernetes.io/managed-by".into(),
        "staff".into(),
    );
    put_slice(&slices, manual).await;
    client.wait_answer("tcp", manual_ip, 80, "web3").await;
    client.wait_answer("udp", manual_ip, 53, "web3").await;

    // Another client deletes our load balancer, then clears our switch's group reference:
    // both are restored at once.
    let web_lb = format!("rovn/service/net2/web/tcp/{vpc}");
    let since = Instant::now();
    env.ovn.nbctl(&["lb-del", &web_lb]).expect("lb-del");
    eventually("Service web's load balancer restored", || async {
        !lb_uuid(&env.ovn, &web_lb).is_empty()
    })
    .await;
    eprintln!(
        "load balancer deleted by another client -> restored after {:?}",
        since.elapsed()
    );
    client.wait_answer("tcp", web_ip, 80, "web3").await;
    let since = Instant::now();
    env.ovn
        .nbctl(&["clear", "Logical_Switch", "net2", "load_balancer_group"])
        .expect("clear");
    eventually("net2's group reference restored", || async {
        env.ovn
            .nbctl(&["get", "Logical_Switch", "net2", "load_balancer_group"])
            .is_ok_and(|groups| groups.trim() != "[]")
    })
    .await;
    eprintln!(
        "group reference cleared by another client -> restored after {:?}",
        since.elapsed()
    );
    client.wait_answer("tcp", manual_ip, 80, "web3").await;

    // ... and deletes the VPC's whole group (with its switches' references, as the
    // database requires): restored with its balancers, both switches pointing at it.
    let group = format!("rovn/service-group/{vpc}");
    let group_uuid = env
        .ovn
        .nbctl(&[
            "--bare",
            "--columns",
            "_uuid",
            "find",
            "Load_Balancer_Group",
            &format!("name=\"{group}\""),
        ])
        .expect("find group")
        .trim()
        .to_owned();
    let since = Instant::now();
    env.ovn
        .nbctl(&[
            "clear",
            "Logical_Switch",
            "net2",
            "load_balancer_group",
            "--",
            "clear",
            "Logical_Switch",
            "net3",
            "load_balancer_group",
            "--",
            "destroy",
            "Load_Balancer_Group",
            &group_uuid,
        ])
        .expect("destroy the group");
    eventually("the VPC's group restored and referenced", || async {
        let named = nb_list(&env.ovn, "Load_Balancer_Group", "name");
        named.split_whitespace().any(|n| n == group)
            && ["net2", "net3"].iter().all(|switch| {
                env.ovn
                    .nbctl(&["get", "Logical_Switch", switch, "load_balancer_group"])
                    .is_ok_and(|groups| groups.trim() != "[]")
            })
    })
    .await;
    eprintln!(
        "group deleted by another client -> restored after {:?}",
        since.elapsed()
    );
    client.wait_answer("tcp", web_ip, 80, "web3").await;
    client.wait_answer("tcp", manual_ip, 80, "web3").await;

    // A deleted Service leaves no row behind.
    services
        .delete("manual", &DeleteParams::default())
        .await
        .expect("delete Service");
    eventually("Service manual's load balancers removed", || async {
        !nb_list(&env.ovn, "Load_Balancer", "name").contains("/manual/")
    })
    .await;

    // Endpoints in another, isolated VPC: tenant B (made by "Neutron") with Subnet net4 and
    // pod db. Each VPC's load balancer holds only its own endpoints; a VPC without any gets
    // a reset; the Service says so in a Warning Event.
    let b = neutron.neutron_writes(&env.ovn, "tenant B", || {
        Tenant::create(&env.ovn, "b", "10.0.5.0/24", "10.0.5.50").expect("tenant B")
    });
    let vpc_b = b.router.lr_name();
    cluster
        .wait_vpc(&vpc_b, "imported", |v| v.status.is_some())
        .await
        .expect("router B imported");
    cluster.create_namespace("net4").await.expect("namespace");
    cluster
        .create_ready_subnet("net4", subnet_spec(Some(&vpc_b), "10.0.4.0/24", &["net4"]))
        .await
        .expect("Subnet net4 Ready");
    let db = plug_pod(cluster, &agent.socket, "net4", "db", &node, true).await;
    let split_ip = "10.96.0.24";
    services
        .create(
            &PostParams::default(),
            &service("split", split_ip, true, false),
        )
        .await
        .expect("Service split");
    put_slice(
        &slices,
        slice("split", vec![endpoint(&web3, true), endpoint(&db, true)]),
    )
    .await;
    client.wait_answer("tcp", split_ip, 80, "web3").await;
    db.wait_answer("tcp", split_ip, 80, "db").await;
    let answers: BTreeSet<String> = client.ask("tcp", split_ip, 80, 10).into_iter().collect();
    assert_eq!(
        answers,
        BTreeSet::from(["web3".to_string()]),
        "VPC A reaches only its own endpoint"
    );
    let answers: BTreeSet<String> = db.ask("tcp", split_ip, 80, 10).into_iter().collect();
    assert_eq!(
        answers,
        BTreeSet::from(["db".to_string()]),
        "VPC B reaches only its own endpoint"
    );
    cluster
        .wait_warning("net2", "split", "EndpointsInSeveralVpcs")
        .await
        .expect("Warning Event");
    put_slice(&slices, slice("split", vec![endpoint(&db, true)])).await;
    client.wait_answer("tcp", split_ip, 80, "refused").await;
    db.wait_answer("tcp", split_ip, 80, "db").await;

    // A restart leaves the load balancers of running Services untouched (same rows: traffic
    // never stops) and removes those of a Service deleted while the controller was down.
    let before = lb_uuid(&env.ovn, &web_lb);
    env.kill_controller().expect("kill");
    services
        .delete("sticky", &DeleteParams::default())
        .await
        .expect("delete Service");
    env.start_controller().await.expect("restart");
    eventually(
        "the load balancers of Service sticky removed after the restart",
        || async { !nb_list(&env.ovn, "Load_Balancer", "name").contains("/sticky/") },
    )
    .await;
    assert_eq!(
        lb_uuid(&env.ovn, &web_lb),
        before,
        "Service web's load balancer was kept"
    );
    client.wait_answer("tcp", web_ip, 80, "web3").await;

    neutron.assert_unchanged(&env.ovn, "after the Services");
}

//! [`assess`], the condition rules and remedies, and the text form, on the
//! Northbound rows of [`fixture`] and API objects as the controller writes
//! their status.

use api::condition::Condition;
use api::{SubnetSpec, SubnetStatus, VpcSpec, VpcStatus};
use k8s_openapi::api::apps::v1::DaemonSetStatus;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::SignedDuration;

use super::*;
use crate::connect::{DEFAULT_NB, NbSource};
use crate::snapshot::fixture::{self, ROUTER, SG, VM};

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
    Lease {
        metadata: meta(LEASE_NAME),
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(
                now() - SignedDuration::from_secs(renewed_secs_ago),
            )),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    }
}

fn imported_vpc() -> Vpc {
    let mut vpc = Vpc::new(ROUTER, VpcSpec::default());
    vpc.status = Some(VpcStatus {
        conditions: vec![
            Condition::new(READY, true, "Imported", "Neutron router router-a imported"),
            Condition::new(ROUTER_MISSING, false, "RouterFound", ""),
        ],
        router: Some(ROUTER.into()),
        type_: Some(VpcType::External),
        neutron_router_name: Some("router-a".into()),
        ..VpcStatus::default()
    });
    vpc
}

fn subnet(name: &str, vpc: &str, cidr: &str, conditions: Vec<Condition>) -> Subnet {
    let mut subnet = Subnet::new(
        name,
        SubnetSpec {
            vpc: Some(vpc.into()),
            cidr_block: cidr.into(),
            ..SubnetSpec::default()
        },
    );
    subnet.status = Some(SubnetStatus {
        conditions,
        ..SubnetStatus::default()
    });
    subnet
}

/// Subnet net2 on the Neutron router as the controller reports it.
fn net2() -> Subnet {
    subnet(
        "net2",
        ROUTER,
        "10.0.2.0/24",
        vec![
            Condition::new(VALIDATED, true, "Valid", ""),
            Condition::new(ATTACHED, true, "Attached", "router port ..."),
            Condition::new(READY, true, "Ready", ""),
            Condition::new(
                NEUTRON_SECURITY_GROUPS,
                true,
                "PodToVmNeedsSecurityGroupRule",
                "attached to Neutron router ...",
            ),
            Condition::new(UNSUPPORTED, false, "AllFieldsSupported", ""),
        ],
    )
}

fn agent_pod(name: &str, node: &str, ready: bool, restarts: i32) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                restart_count: restarts,
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn daemon_set(desired: i32, ready: i32) -> DaemonSet {
    DaemonSet {
        metadata: meta(AGENT_DAEMON_SET),
        status: Some(DaemonSetStatus {
            desired_number_scheduled: desired,
            number_ready: ready,
            ..DaemonSetStatus::default()
        }),
        ..DaemonSet::default()
    }
}

fn standalone() -> NbServer {
    NbServer {
        remote: "tcp:10.0.0.11:6641".into(),
        model: Some("standalone".into()),
        leader: Some(true),
        connected: Some(true),
        error: None,
    }
}

fn observed() -> Observed {
    Observed {
        address: NbAddress {
            remotes: "tcp:10.0.0.11:6641".into(),
            source: NbSource::Flag,
            config_map: None,
            config_map_error: None,
        },
        servers: vec![standalone()],
        answered: Some("tcp:10.0.0.11:6641".into()),
        nb: Ok(fixture::nb()),
        kube: Some(KubeObserved {
            lease_namespace: "rovn-system".into(),
            lease: Ok(Some(lease("ctrl-1", 3))),
            namespace: "rovn-system".into(),
            daemon_set: Ok(Some(daemon_set(1, 1))),
            agent_pods: Ok(vec![agent_pod("rovn-agent-x1", "node-1", true, 2)]),
            vpcs: Ok(vec![imported_vpc()]),
            subnets: Ok(vec![net2()]),
        }),
        now: now(),
    }
}

fn kube(observed: &mut Observed) -> &mut KubeObserved {
    observed.kube.as_mut().unwrap()
}

#[test]
fn a_healthy_install_reads_as_such_with_its_counts() {
    let status = assess(&observed());
    assert!(status.healthy, "{status}");
    assert_eq!(
        status.counts,
        Counts {
            imported_vpcs: Some(1),
            own_vpcs: Some(0),
            subnets: Some(1),
            pods: Some(3),
            network_policies: Some(1),
        }
    );
    let controller = status.controller.as_ref().unwrap();
    assert_eq!(controller.holder.as_deref(), Some("ctrl-1"));
    assert_eq!(controller.renewed_seconds_ago, Some(3));
    assert_eq!(controller.lease, "rovn-system/rovn-controller");
    assert_eq!(
        status.agents.nodes,
        [NodeAgent {
            node: "node-1".into(),
            pod: Some("rovn-agent-x1".into()),
            ready: Some(true),
            restarts: Some(2),
            node_links: vec![ROUTER.into()],
        }]
    );
    assert_eq!(status.northbound.raft_leader, None);
    // The VM's security group admits nothing from net2: a warning, not a problem.
    assert_eq!(status.findings.len(), 1, "{status}");
    let finding = &status.findings[0];
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(finding.subject, "Subnet net2");
    assert_eq!(
        finding.summary,
        format!(
            "NeutronSecurityGroups: new connections from its pods (10.0.2.0/24) to 1 of the 1 \
             VM port(s) on the Neutron networks of router {ROUTER} are dropped by \
             neutron_pg_drop: \"vm-a\" {VM} [fa:16:3e:00:00:50 10.0.1.50]"
        )
    );
    assert_eq!(
        finding.remedy,
        format!(
            "admit the pods in a security group of each of those VMs (rovn never writes \
             security groups): openstack security group rule create --ingress --ethertype IPv4 \
             --remote-ip 10.0.2.0/24 {SG}; rovnctl diagnose --subnet net2 lists every VM port \
             and what it admits"
        )
    );
    assert_eq!(
        finding.condition.as_ref().map(|c| c.type_.as_str()),
        Some(NEUTRON_SECURITY_GROUPS)
    );
}

#[test]
fn the_text_form_says_it_all() {
    let text = assess(&observed()).to_string();
    let expected = [
        "Northbound: tcp:10.0.0.11:6641 (--ovn-nb), read from tcp:10.0.0.11:6641\n",
        "  tcp:10.0.0.11:6641: standalone\n",
        "Controller: leader ctrl-1 (Lease rovn-system/rovn-controller, renewed 3s ago, lasts 15s)\n",
        "Agents: DaemonSet rovn-system/rovn-agent, 1 of 1 ready\n",
        &format!(
            "  node node-1: agent pod rovn-agent-x1 ready, 2 restarts; node-link ports into {ROUTER}\n"
        ),
        "Resources: 1 imported VPC, 0 own VPCs, 1 Subnet, 3 pods with a rovn port, 1 NetworkPolicy\n",
        "Needs attention:\n  [warning] Subnet net2: NeutronSecurityGroups: new connections",
        "    fix: admit the pods in a security group",
        "Healthy (1 warning)\n",
    ];
    for line in expected {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
}

#[test]
fn a_subnet_whose_vms_admit_its_pods_needs_nothing() {
    let mut observed = observed();
    let nb = observed.nb.as_mut().unwrap();
    // The VM port leaves neutron_pg_drop (port security off).
    nb.port_groups.retain(|g| g.name != "neutron_pg_drop");
    let status = assess(&observed);
    assert!(status.findings.is_empty(), "{status}");
    assert!(status.to_string().ends_with("Healthy (0 warnings)\n"));
}

#[test]
fn problems_come_with_their_remedy_and_make_the_status_unhealthy() {
    let mut observed = observed();
    let bad = subnet(
        "bad",
        ROUTER,
        "10.0.1.0/24",
        vec![
            Condition::new(
                VALIDATED,
                false,
                "CidrOverlapsRouterNetwork",
                "10.0.1.0/24 overlaps 10.0.1.1/24 on the router",
            ),
            Condition::new(ATTACHED, false, "NotValidated", "nothing is created"),
            Condition::new(READY, false, "InvalidSpec", "10.0.1.0/24 overlaps"),
        ],
    );
    let mut gone = imported_vpc();
    gone.status.as_mut().unwrap().conditions = vec![
        Condition::new(READY, false, "RouterMissing", "gone; Subnets: net2"),
        Condition::new(IMPORTED, false, "RouterMissing", ""),
        Condition::new(ROUTER_MISSING, true, "RouterDeleted", "gone; Subnets: net2"),
    ];
    kube(&mut observed).subnets.as_mut().unwrap().push(bad);
    kube(&mut observed).vpcs = Ok(vec![gone]);
    let status = assess(&observed);
    assert!(!status.healthy);
    let problems: Vec<(&str, &str)> = status
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .map(|f| {
            (
                f.subject.as_str(),
                f.condition.as_ref().unwrap().type_.as_str(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (
                &*format!("Vpc {ROUTER} (Neutron router \"router-a\")"),
                ROUTER_MISSING
            ),
            ("Subnet bad", VALIDATED),
        ],
        "Ready, Imported and Attached=NotValidated are explained by the others: {status}"
    );
    let bad = &status.findings[1];
    assert_eq!(
        bad.summary,
        "Validated=False (CidrOverlapsRouterNetwork): 10.0.1.0/24 overlaps 10.0.1.1/24 on the router"
    );
    assert!(
        bad.remedy.starts_with(&format!(
            "choose a cidrBlock outside the Neutron networks of router {ROUTER}"
        )),
        "{}",
        bad.remedy
    );
    assert!(
        status.findings[0]
            .remedy
            .starts_with("the Neutron router was deleted")
    );
    assert!(
        status
            .to_string()
            .ends_with("Unhealthy: 2 problems, 1 warning\n"),
        "{status}"
    );
}

#[test]
fn a_ready_condition_alone_gets_a_generic_remedy() {
    let conditions = vec![
        Condition::new(READY, false, "RouterNameTaken", "a router named x exists"),
        Condition::new(DELETION_BLOCKED, false, "NotDeleting", ""),
    ];
    let unhealthy = unhealthy(&conditions);
    assert_eq!(unhealthy.len(), 1);
    assert_eq!(unhealthy[0].1, Severity::Problem);
    assert!(vpc_remedy("x", unhealthy[0].0).contains("rename the Vpc, or remove that router"));
    assert_eq!(
        severity_of(&Condition::new(UNSUPPORTED, true, "Ignored", "natOutgoing")),
        Some(Severity::Warning)
    );
    assert_eq!(
        severity_of(&Condition::new(
            DELETION_BLOCKED,
            true,
            "AddressesInUse",
            "2 holders"
        )),
        Some(Severity::Warning)
    );
    assert_eq!(severity_of(&Condition::new("Custom", false, "X", "")), None);
    let unknown = Condition {
        status: ConditionStatus::Unknown,
        ..Condition::new(ATTACHED, false, "Pending", "")
    };
    assert_eq!(severity_of(&unknown), Some(Severity::Problem));
}

#[test]
fn the_controller_lease_tells_who_leads_and_whether_it_still_does() {
    let mut expired = observed();
    kube(&mut expired).lease = Ok(Some(lease("ctrl-1", 95)));
    let status = assess(&expired);
    assert!(!status.healthy);
    assert!(
        status.findings[0].summary.starts_with(
            "leader ctrl-1 last renewed Lease rovn-system/rovn-controller 95s ago and it lasts 15s"
        ),
        "{status}"
    );
    let mut absent = observed();
    kube(&mut absent).lease = Ok(None);
    let status = assess(&absent);
    assert!(status.controller.is_none());
    assert_eq!(
        status.findings[0].summary,
        "no Lease rovn-system/rovn-controller: no controller was ever elected there"
    );
    let mut released = observed();
    kube(&mut released)
        .lease
        .as_mut()
        .unwrap()
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .holder_identity = None;
    assert!(
        assess(&released).findings[0]
            .summary
            .starts_with("no controller holds Lease")
    );
}

#[test]
fn agents_not_ready_or_missing_are_problems_and_no_daemon_set_a_warning() {
    let mut observed_ = observed();
    kube(&mut observed_).daemon_set = Ok(Some(daemon_set(2, 0)));
    kube(&mut observed_).agent_pods = Ok(vec![agent_pod("rovn-agent-x1", "node-1", false, 7)]);
    let status = assess(&observed_);
    let summaries: Vec<&str> = status
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .map(|f| f.summary.as_str())
        .collect();
    assert_eq!(
        summaries,
        [
            "pod rovn-agent-x1 is not ready (7 restarts)",
            "DaemonSet rovn-system/rovn-agent wants 2 agents, 1 pods exist",
        ]
    );
    assert!(
        status
            .to_string()
            .contains("agent pod rovn-agent-x1 NOT ready, 7 restarts")
    );

    let mut by_hand = observed();
    kube(&mut by_hand).daemon_set = Ok(None);
    kube(&mut by_hand).agent_pods = Ok(Vec::new());
    let status = assess(&by_hand);
    assert!(status.healthy, "{status}");
    assert_eq!(status.agents.nodes[0].pod, None);
    assert!(
        status
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning
                && f.summary == "no DaemonSet rovn-system/rovn-agent")
    );
    assert!(status.to_string().contains(&format!(
        "Agents: no DaemonSet seen (see below)\n  node node-1: no agent pod; node-link ports into \
         {ROUTER}\n"
    )));
}

#[test]
fn the_raft_leader_and_unreachable_members() {
    let mut observed = observed();
    let member = |remote: &str, leader: bool| NbServer {
        remote: remote.into(),
        model: Some("clustered".into()),
        leader: Some(leader),
        connected: Some(true),
        error: None,
    };
    observed.servers = vec![
        member("ssl:10.0.0.11:6641", false),
        member("ssl:10.0.0.12:6641", true),
        NbServer {
            remote: "ssl:10.0.0.13:6641".into(),
            model: None,
            leader: None,
            connected: None,
            error: Some("connection refused".into()),
        },
    ];
    let status = assess(&observed);
    assert_eq!(
        status.northbound.raft_leader.as_deref(),
        Some("ssl:10.0.0.12:6641")
    );
    assert!(!status.healthy);
    assert_eq!(
        status.findings[0].subject,
        "Northbound server ssl:10.0.0.13:6641"
    );
    assert_eq!(
        status.findings[0].summary,
        "unreachable: connection refused"
    );
    let text = status.to_string();
    for line in [
        "  RAFT cluster leader: ssl:10.0.0.12:6641\n",
        "  ssl:10.0.0.11:6641: clustered, follower, connected\n",
        "  ssl:10.0.0.12:6641: clustered, leader, connected\n",
        "  ssl:10.0.0.13:6641: unreachable: connection refused\n",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    for server in &mut observed.servers {
        server.leader = Some(false);
    }
    assert!(
        assess(&observed)
            .findings
            .iter()
            .any(|f| f.summary == "no member of the RAFT cluster says it is the leader")
    );
}

#[test]
fn without_northbound_or_api_what_was_not_read_is_said() {
    let mut observed = observed();
    observed.nb = Err("connection refused".into());
    observed.answered = None;
    observed.servers[0] = NbServer {
        remote: DEFAULT_NB.into(),
        error: Some("connection refused".into()),
        model: None,
        leader: None,
        connected: None,
    };
    observed.address = NbAddress {
        remotes: DEFAULT_NB.into(),
        source: NbSource::Default,
        config_map: Some("rovn-system/rovn-config".into()),
        config_map_error: Some("forbidden".into()),
    };
    observed.kube = None;
    let status = assess(&observed);
    assert!(!status.healthy);
    assert_eq!(status.counts, Counts::default());
    let summaries: Vec<(Severity, &str)> = status
        .findings
        .iter()
        .map(|f| (f.severity, f.summary.as_str()))
        .collect();
    assert_eq!(
        summaries,
        [
            (
                Severity::Problem,
                &*format!("no answer from {DEFAULT_NB} (default): connection refused")
            ),
            (
                Severity::Warning,
                &*format!(
                    "ConfigMap rovn-system/rovn-config not read (forbidden); using {DEFAULT_NB}"
                )
            ),
            (
                Severity::Warning,
                "no kubeconfig: the controller, the agents' pods and the conditions of Vpcs and \
                 Subnets were not checked"
            ),
        ],
        "one problem for the one unreachable remote: {status}"
    );
    let text = status.to_string();
    assert!(
        text.contains(&format!(
            "Northbound: {DEFAULT_NB} (default), unreachable\n  {DEFAULT_NB}: unreachable: \
             connection refused\nController: not checked (no kubeconfig)\nAgents: not checked (no \
             kubeconfig)\nNeeds attention:\n"
        )),
        "{text}"
    );
}

#[test]
fn failed_api_reads_are_one_problem_per_error() {
    let mut observed = observed();
    let kube = kube(&mut observed);
    kube.vpcs = Err("forbidden".into());
    kube.subnets = Err("forbidden".into());
    let status = assess(&observed);
    let api: Vec<&str> = status
        .findings
        .iter()
        .filter(|f| f.subject == "Kubernetes API")
        .map(|f| f.summary.as_str())
        .collect();
    assert_eq!(api, ["could not read the Vpcs, the Subnets: forbidden"]);
    assert_eq!(status.counts.subnets, None);
}

#[test]
fn ages_read_well() {
    assert_eq!(age(-1), "0s");
    assert_eq!(age(42), "42s");
    assert_eq!(age(185), "3m05s");
    assert_eq!(age(7620), "2h07m");
}

#[test]
fn status_is_json_both_ways() {
    let status = assess(&observed());
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["northbound"]["address"]["source"], "flag");
    assert_eq!(json["controller"]["holder"], "ctrl-1");
    assert_eq!(json["counts"]["pods"], 3);
    assert_eq!(json["findings"][0]["severity"], "warning");
    assert_eq!(
        json["findings"][0]["condition"]["type"],
        NEUTRON_SECURITY_GROUPS
    );
    let back: Status = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
}

//! The load balancers a Service should have (pure: a Service, its
//! EndpointSlices and where each endpoint address lives in, rows out).
//!
//! One Load_Balancer per (protocol, VPC) that has at least one Service port
//! of that protocol, with one vip per ClusterIP and port:
//! `"10.96.0.10:53" -> "10.0.2.5:5353,10.0.3.7:5353"`, IPv6 as
//! `"[fd00::10]:53" -> "[fd00:2::5]:5353"`. Backends are the ready
//! endpoints (`conditions.ready` not false) of the slices of the ClusterIP's
//! family, at the slice port of the Service port's name and protocol, that
//! live in that VPC (or in no network we know: host-network endpoints are
//! offered to every VPC). A vip without backends is kept with an empty
//! backend list and `options:reject=true`, so that clients get a TCP reset
//! or an ICMP port unreachable at once instead of packets routed out of the
//! VPC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use ovn::nb::LoadBalancer;
use ovn::owned::Owner;
use ovn::owned::owner::VPC_KEY;

/// Label naming the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `sessionAffinityConfig.clientIP.timeoutSeconds` when not set.
pub const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;
/// The longest `options:affinity_timeout` OVN supports.
pub const MAX_AFFINITY_SECONDS: i32 = 65_535;

/// Where an endpoint address lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// In a network of this VPC (one of our Subnets, or one of the Neutron
    /// networks on its router).
    Vpc(String),
    /// In no network of any VPC (e.g. a host-network endpoint): offered to
    /// every VPC.
    Outside,
    /// In networks of several VPCs (overlapping CIDRs) and its pod does not
    /// tell which: left out.
    Ambiguous,
}

/// The rows of one Service and where its ready endpoints are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The load balancers, sorted by name.
    pub balancers: Vec<LoadBalancer>,
    /// VPCs holding at least one ready endpoint.
    pub endpoint_vpcs: BTreeSet<String>,
    /// Ready endpoint addresses left out (in several VPCs' networks).
    pub ambiguous: BTreeSet<IpAddr>,
}

/// The ClusterIPs of a Service that get vips: none for ExternalName and
/// headless (`None`) Services.
pub fn cluster_ips(spec: &ServiceSpec) -> Vec<IpAddr> {
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    let ips = if listed.is_empty() {
        spec.cluster_ip.iter().cloned().collect()
    } else {
        listed
    };
    ips.iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// `ip:port`, with brackets for IPv6.
fn socket(ip: IpAddr, port: i32) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The OVN protocol of a Service or slice port (`TCP` when unset).
fn protocol(name: Option<&str>) -> Option<&'static str> {
    match name.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// Name of the load balancer of Service `namespace/name` for `protocol`
/// in `vpc`.
pub fn balancer_name(namespace: &str, name: &str, protocol: &str, vpc: &str) -> String {
    format!(
        "{}/{protocol}/{vpc}",
        Owner::service(namespace, name).row_name()
    )
}

/// The backends (`ip:port`) of Service port `port` for ClusterIP family
/// `v6`, per VPC; records where the endpoints are in `plan`.
fn backends(
    port: &ServicePort,
    v6: bool,
    slices: &[&EndpointSlice],
    vpcs: &BTreeSet<String>,
    locate: &dyn Fn(IpAddr, Option<&ObjectReference>) -> Located,
    plan: &mut Plan,
) -> BTreeMap<String, BTreeSet<String>> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let mut per_vpc: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let wanted = protocol(port.protocol.as_deref());
    for slice in slices.iter().filter(|s| s.address_type == family) {
        let target = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                && protocol(p.protocol.as_deref()) == wanted
        });
        let Some(target) = target.and_then(|p| p.port) else {
            continue;
        };
        let ready = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
        for endpoint in ready {
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else {
                    continue;
                };
                if ip.is_ipv6() != v6 {
                    continue;
                }
                let backend = socket(ip, target);
                match locate(ip, endpoint.target_ref.as_ref()) {
                    Located::Vpc(vpc) => {
                        plan.endpoint_vpcs.insert(vpc.clone());
                        if vpcs.contains(&vpc) {
                            per_vpc.entry(vpc).or_default().insert(backend);
                        }
                    }
                    Located::Outside => {
                        for vpc in vpcs {
                            per_vpc
                                .entry(vpc.clone())
                                .or_default()
                                .insert(backend.clone());
                        }
                    }
                    Located::Ambiguous => {
                        plan.ambiguous.insert(ip);
                    }
                }
            }
        }
    }
    per_vpc
}

/// The load balancers of Service `namespace/name` with `spec` and the
/// EndpointSlices `slices` (those labelled with its name), for every VPC of
/// `vpcs`; `locate` says where an endpoint address lives.
pub fn plan(
    namespace: &str,
    name: &str,
    spec: &ServiceSpec,
    slices: &[&EndpointSlice],
    vpcs: &BTreeSet<String>,
    locate: &dyn Fn(IpAddr, Option<&ObjectReference>) -> Located,
) -> Plan {
    let mut plan = Plan::default();
    let mut vips: BTreeMap<(&'static str, String), BTreeMap<String, String>> = BTreeMap::new();
    let ips = cluster_ips(spec);
    for port in spec.ports.iter().flatten() {
        let Some(proto) = protocol(port.protocol.as_deref()) else {
            continue;
        };
        for &ip in &ips {
            let mut per_vpc = backends(port, ip.is_ipv6(), slices, vpcs, locate, &mut plan);
            for vpc in vpcs {
                let list: Vec<String> = per_vpc
                    .remove(vpc)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                vips.entry((proto, vpc.clone()))
                    .or_default()
                    .insert(socket(ip, port.port), list.join(","));
            }
        }
    }
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
            .clamp(1, MAX_AFFINITY_SECONDS)
    });
    let owner = Owner::service(namespace, name);
    plan.balancers = vips
        .into_iter()
        .map(|((proto, vpc), vips)| {
            let mut options = BTreeMap::from([("reject".to_string(), "true".to_string())]);
            let mut selection_fields = BTreeSet::new();
            if let Some(seconds) = affinity {
                options.insert("affinity_timeout".to_string(), seconds.to_string());
                selection_fields.insert("ip_src".to_string());
            }
            let mut external_ids = owner.external_ids();
            external_ids.insert(VPC_KEY.to_string(), vpc.clone());
            LoadBalancer {
                name: balancer_name(namespace, name, proto, &vpc),
                vips,
                protocol: Some(proto.to_string()),
                selection_fields,
                options,
                external_ids,
                ..LoadBalancer::default()
            }
        })
        .collect();
    plan.balancers.sort_by(|a, b| a.name.cmp(&b.name));
    plan
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ClientIPConfig, SessionAffinityConfig};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    fn port(name: &str, protocol: &str, port: i32) -> ServicePort {
        ServicePort {
            name: Some(name.to_string()),
            protocol: Some(protocol.to_string()),
            port,
            target_port: Some(IntOrString::String(name.to_string())),
            ..ServicePort::default()
        }
    }

    fn spec(ips: &[&str], ports: Vec<ServicePort>) -> ServiceSpec {
        ServiceSpec {
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }
    }

    fn slice(
        family: &str,
        ports: &[(&str, &str, i32)],
        endpoints: &[(&str, Option<bool>)],
    ) -> EndpointSlice {
        EndpointSlice {
            address_type: family.to_string(),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, protocol, port)| EndpointPort {
                        name: Some(name.to_string()),
                        protocol: Some(protocol.to_string()),
                        port: Some(*port),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
            endpoints: endpoints
                .iter()
                .map(|(address, ready)| Endpoint {
                    addresses: vec![address.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        }
    }

    /// 10.0.2.0/24 and fd00:2::/64 are in VPC `a`, 10.0.9.0/24 in `b`,
    /// 10.0.7.0/24 in both; anything else is outside.
    fn locate(ip: IpAddr, _: Option<&ObjectReference>) -> Located {
        let text = ip.to_string();
        if text.starts_with("10.0.2.") || text.starts_with("fd00:2:") {
            Located::Vpc("a".to_string())
        } else if text.starts_with("10.0.9.") {
            Located::Vpc("b".to_string())
        } else if text.starts_with("10.0.7.") {
            Located::Ambiguous
        } else {
            Located::Outside
        }
    }

    fn vpcs(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn vips(lb: &LoadBalancer) -> Vec<(&str, &str)> {
        lb.vips
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn ports_are_matched_by_name_and_protocol_and_only_ready_endpoints_count() {
        let spec = spec(
            &["10.96.0.10"],
            vec![
                port("dns", "UDP", 53),
                port("dns-tcp", "TCP", 53),
                port("metrics", "TCP", 9153),
            ],
        );
        let slices = [slice(
            "IPv4",
            &[
                ("dns", "UDP", 5353),
                ("dns-tcp", "TCP", 5353),
                ("metrics", "TCP", 9153),
            ],
            &[
                ("10.0.2.5", Some(true)),
                ("10.0.2.6", None),
                ("10.0.2.7", Some(false)),
            ],
        )];
        let plan = plan(
            "kube-system",
            "dns",
            &spec,
            &slices.iter().collect::<Vec<_>>(),
            &vpcs(&["a"]),
            &locate,
        );
        let [tcp, udp] = plan.balancers.as_slice() else {
            panic!("one balancer per protocol: {:?}", plan.balancers);
        };
        assert_eq!(tcp.name, "rovn/service/kube-system/dns/tcp/a");
        assert_eq!(tcp.protocol.as_deref(), Some("tcp"));
        assert_eq!(
            vips(tcp),
            [
                ("10.96.0.10:53", "10.0.2.5:5353,10.0.2.6:5353"),
                ("10.96.0.10:9153", "10.0.2.5:9153,10.0.2.6:9153"),
            ]
        );
        assert_eq!(udp.protocol.as_deref(), Some("udp"));
        assert_eq!(
            vips(udp),
            [("10.96.0.10:53", "10.0.2.5:5353,10.0.2.6:5353")]
        );
        assert_eq!(tcp.options.get("reject").map(String::as_str), Some("true"));
        assert!(tcp.selection_fields.is_empty() && !tcp.options.contains_key("affinity_timeout"));
        assert_eq!(
            Owner::of(&tcp.external_ids),
            Some(Owner::service("kube-system", "dns"))
        );
        assert_eq!(tcp.external_ids.get(VPC_KEY).map(String::as_str), Some("a"));
        assert_eq!(plan.endpoint_vpcs, vpcs(&["a"]));
    }

    #[test]
    fn each_vpc_gets_its_own_endpoints_and_an_empty_rejecting_vip_without() {
        let spec = spec(&["10.96.1.1"], vec![port("http", "TCP", 80)]);
        let slices = [slice(
            "IPv4",
            &[("http", "TCP", 8080)],
            &[
                ("10.0.2.5", None),
                ("10.0.9.5", None),
                ("192.168.1.10", None),
                ("10.0.7.7", None),
            ],
        )];
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let plan = plan("ns", "web", &spec, &refs, &vpcs(&["a", "b", "c"]), &locate);
        let by_vpc: Vec<(&str, Vec<(&str, &str)>)> = plan
            .balancers
            .iter()
            .map(|lb| (lb.external_ids[VPC_KEY].as_str(), vips(lb)))
            .collect();
        assert_eq!(
            by_vpc,
            [
                (
                    "a",
                    vec![("10.96.1.1:80", "10.0.2.5:8080,192.168.1.10:8080")]
                ),
                (
                    "b",
                    vec![("10.96.1.1:80", "10.0.9.5:8080,192.168.1.10:8080")]
                ),
                ("c", vec![("10.96.1.1:80", "192.168.1.10:8080")]),
            ]
        );
        assert_eq!(plan.endpoint_vpcs, vpcs(&["a", "b"]));
        assert_eq!(plan.ambiguous, ["10.0.7.7".parse().unwrap()].into());

        let none: Vec<&EndpointSlice> = Vec::new();
        let empty = super::plan("ns", "web", &spec, &none, &vpcs(&["a"]), &locate);
        assert_eq!(vips(&empty.balancers[0]), [("10.96.1.1:80", "")]);
    }

    #[test]
    fn dual_stack_vips_use_their_family_and_brackets() {
        let spec = spec(&["10.96.1.1", "fd00:96::1"], vec![port("http", "TCP", 80)]);
        let slices = [
            slice("IPv4", &[("http", "TCP", 8080)], &[("10.0.2.5", None)]),
            slice("IPv6", &[("http", "TCP", 8080)], &[("fd00:2::5", None)]),
        ];
        let plan = plan(
            "ns",
            "web",
            &spec,
            &slices.iter().collect::<Vec<_>>(),
            &vpcs(&["a"]),
            &locate,
        );
        assert_eq!(
            vips(&plan.balancers[0]),
            [
                ("10.96.1.1:80", "10.0.2.5:8080"),
                ("[fd00:96::1]:80", "[fd00:2::5]:8080")
            ]
        );
    }

    #[test]
    fn client_ip_affinity_sets_the_timeout_and_hashes_the_source() {
        let mut spec = spec(&["10.96.1.1"], vec![port("http", "SCTP", 80)]);
        spec.session_affinity = Some("ClientIP".to_string());
        let none: Vec<&EndpointSlice> = Vec::new();
        let lb = &plan("ns", "web", &spec, &none, &vpcs(&["a"]), &locate).balancers[0];
        assert_eq!(lb.protocol.as_deref(), Some("sctp"));
        assert_eq!(
            lb.options.get("affinity_timeout").map(String::as_str),
            Some("10800")
        );
        assert_eq!(lb.selection_fields, ["ip_src".to_string()].into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(86_400),
            }),
        });
        let lb = &plan("ns", "web", &spec, &none, &vpcs(&["a"]), &locate).balancers[0];
        assert_eq!(
            lb.options.get("affinity_timeout").map(String::as_str),
            Some("65535")
        );
    }

    #[test]
    fn headless_external_name_and_portless_services_get_nothing() {
        let none: Vec<&EndpointSlice> = Vec::new();
        let mut headless = spec(&["None"], vec![port("http", "TCP", 80)]);
        assert!(
            plan("ns", "h", &headless, &none, &vpcs(&["a"]), &locate)
                .balancers
                .is_empty()
        );
        headless.cluster_ips = None;
        assert!(cluster_ips(&headless).is_empty());
        let external = ServiceSpec {
            type_: Some("ExternalName".to_string()),
            external_name: Some("example.com".to_string()),
            ..spec(&["10.96.1.2"], vec![port("http", "TCP", 80)])
        };
        assert!(
            plan("ns", "e", &external, &none, &vpcs(&["a"]), &locate)
                .balancers
                .is_empty()
        );
        let portless = spec(&["10.96.1.3"], Vec::new());
        assert!(
            plan("ns", "p", &portless, &none, &vpcs(&["a"]), &locate)
                .balancers
                .is_empty()
        );
        let single = spec(&["10.96.1.4"], vec![port("http", "TCP", 80)]);
        assert!(
            plan("ns", "s", &single, &none, &BTreeSet::new(), &locate)
                .balancers
                .is_empty()
        );
    }
}

//! The kubeovn.io/v1 resources against a real kube-apiserver (one per test
//! binary, shared; every test uses its own object names).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use api::condition::{self, Condition};
use api::{
    IP, IpCount, IpSpec, PolicyRoute, PolicyRouteAction, Protocol, RoutePolicy, StaticRoute,
    Subnet, SubnetSpec, SubnetStatus, UnsupportedFields, Vpc, VpcSpec, VpcStatus, VpcType,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use testenv::kube::KubeEnv;

/// Field manager of the CRD installation.
const INSTALLER: &str = "rovn-api-tests";

/// Applies the CRDs (idempotent) and waits until they are Established.
async fn setup() -> Result<(&'static KubeEnv, Client)> {
    let env = KubeEnv::shared()?;
    let client = env.client().await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        api::install::apply_crds(&client, INSTALLER),
    )
    .await
    .context("CRDs not Established within 60 s")??;
    Ok((env, client))
}

fn vpc(name: &str, spec: VpcSpec) -> Vpc {
    Vpc::new(name, spec)
}

fn subnet(name: &str, spec: SubnetSpec) -> Subnet {
    Subnet::new(name, spec)
}

/// The API error of a failed call.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> Result<Box<kube::core::Status>> {
    match result {
        Err(kube::Error::Api(status)) => Ok(status),
        other => bail!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_are_established_cluster_scoped_with_status_subresource() -> Result<()> {
    let (_env, client) = setup().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for (name, kind) in [
        ("vpcs.kubeovn.io", "Vpc"),
        ("subnets.kubeovn.io", "Subnet"),
        ("ips.kubeovn.io", "IP"),
    ] {
        let crd = crds.get(name).await?;
        assert_eq!(crd.spec.group, "kubeovn.io");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.scope, "Cluster");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} not Established");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn install_reports_names_taken_by_another_crd() -> Result<()> {
    // Its own API server: the conflicting CRD must not disturb the other tests.
    let env = KubeEnv::start()?;
    let client = env.client().await?;
    let mut squatter = Vpc::crd();
    squatter.metadata.name = Some("vpcz.kubeovn.io".into());
    squatter.spec.names.plural = "vpcz".into();
    squatter.spec.names.singular = Some("vpcz".into());
    squatter.spec.names.short_names = None;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &squatter).await?;
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        api::install::apply_crds(&client, INSTALLER),
    )
    .await?
    .expect_err("vpcs.kubeovn.io conflicts with vpcz.kubeovn.io");
    match &error {
        api::install::InstallError::NamesNotAccepted { crd, message } => {
            assert_eq!(crd, "vpcs.kubeovn.io");
            assert!(message.contains("Vpc"), "{message}");
        }
        other => bail!("unexpected error {other}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_objects_round_trip() -> Result<()> {
    let (_env, client) = setup().await?;
    let pp = PostParams::default();

    let vpc_spec = VpcSpec {
        namespaces: vec!["rt-a".into(), "rt-b".into()],
        static_routes: vec![StaticRoute {
            policy: Some(RoutePolicy::Dst),
            cidr: "0.0.0.0/0".into(),
            next_hop_ip: "10.9.0.254".into(),
            ..Default::default()
        }],
        policy_routes: vec![PolicyRoute {
            priority: Some(100),
            match_: Some("ip4.src == 10.9.0.0/24".into()),
            action: Some(PolicyRouteAction::Reroute),
            next_hop_ip: Some("10.9.0.253".into()),
        }],
        default_subnet: Some("rt-subnet".into()),
        extra: [("enableExternal".to_string(), json!(true))].into(),
    };
    let vpcs: Api<Vpc> = Api::all(client.clone());
    let created = vpcs.create(&pp, &vpc("rt-vpc", vpc_spec.clone())).await?;
    assert_eq!(created.spec, vpc_spec);
    assert_eq!(vpcs.get("rt-vpc").await?.spec, vpc_spec);
    assert_eq!(
        vpc_spec.unsupported_fields(),
        [
            "spec.defaultSubnet",
            "spec.enableExternal",
            "spec.namespaces",
            "spec.policyRoutes",
            "spec.staticRoutes"
        ]
    );

    let subnet_spec = SubnetSpec {
        default: false,
        vpc: Some("rt-vpc".into()),
        protocol: Some(Protocol::Dual),
        namespaces: vec!["rt-a".into()],
        cidr_block: "10.9.0.0/24,fd00:9::/64".into(),
        gateway: Some("10.9.0.1,fd00:9::1".into()),
        exclude_ips: vec!["10.9.0.1".into(), "10.9.0.100..10.9.0.110".into()],
        provider: Some("ovn".into()),
        gateway_type: Some(api::GatewayType::Distributed),
        nat_outgoing: true,
        allow_subnets: vec!["10.8.0.0/16".into()],
        extra: [
            ("mtu".to_string(), json!(1400)),
            ("enableLb".to_string(), json!(false)),
        ]
        .into(),
        ..Default::default()
    };
    let subnets: Api<Subnet> = Api::all(client.clone());
    subnets
        .create(&pp, &subnet("rt-subnet", subnet_spec.clone()))
        .await?;
    let fetched = subnets.get("rt-subnet").await?;
    assert_eq!(fetched.spec, subnet_spec);
    assert_eq!(
        fetched.spec.unsupported_fields(),
        ["spec.allowSubnets", "spec.mtu", "spec.natOutgoing"]
    );

    let ip_spec = IpSpec {
        pod_name: "web-0".into(),
        namespace: "rt-a".into(),
        subnet: "rt-subnet".into(),
        node_name: "node-1".into(),
        ip_address: "10.9.0.2,fd00:9::2".into(),
        v4_ip_address: "10.9.0.2".into(),
        v6_ip_address: "fd00:9::2".into(),
        mac_address: "00:00:00:0a:09:02".into(),
        container_id: "0123456789abcdef".into(),
        pod_type: "StatefulSet".into(),
        ..Default::default()
    };
    let ips: Api<IP> = Api::all(client);
    ips.create(&pp, &IP::new("web-0.rt-a", ip_spec.clone()))
        .await?;
    let fetched = ips.get("web-0.rt-a").await?;
    assert_eq!(fetched.spec, ip_spec);
    assert!(fetched.spec.unsupported_fields().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_objects_are_rejected_with_readable_messages() -> Result<()> {
    let (_env, client) = setup().await?;
    let subnets: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<Subnet>(&()));
    let vpcs: Api<DynamicObject> = Api::all_with(client, &ApiResource::erase::<Vpc>(&()));
    let object = |kind: &str, name: &str, spec: serde_json::Value| -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec,
        }))?)
    };
    let cases = [
        (
            &subnets,
            object(
                "Subnet",
                "bad-protocol",
                json!({"cidrBlock": "10.1.0.0/24", "protocol": "IPv5"}),
            )?,
            vec![
                r#"spec.protocol: Unsupported value: "IPv5""#,
                r#""IPv4", "IPv6", "Dual""#,
            ],
        ),
        (
            &subnets,
            object("Subnet", "no-cidr", json!({"vpc": "ovn-cluster"}))?,
            vec!["spec.cidrBlock: Required value"],
        ),
        (
            &subnets,
            object("Subnet", "empty-cidr", json!({"cidrBlock": ""}))?,
            vec!["spec.cidrBlock", "at least 1 chars long"],
        ),
        (
            &subnets,
            object(
                "Subnet",
                "namespaces-string",
                json!({"cidrBlock": "10.1.0.0/24", "namespaces": "net2"}),
            )?,
            vec!["spec.namespaces", "must be of type array"],
        ),
        (
            &subnets,
            object(
                "Subnet",
                "bad-gateway-type",
                json!({"cidrBlock": "10.1.0.0/24", "gatewayType": "somewhere"}),
            )?,
            vec![r#"spec.gatewayType: Unsupported value: "somewhere""#],
        ),
        (
            &vpcs,
            object(
                "Vpc",
                "bad-route",
                json!({"staticRoutes": [{"policy": "policyFoo", "cidr": "0.0.0.0/0", "nextHopIP": "1.1.1.1"}]}),
            )?,
            vec![r#"spec.staticRoutes[0].policy: Unsupported value: "policyFoo""#],
        ),
        (
            &vpcs,
            object(
                "Vpc",
                "route-no-nexthop",
                json!({"staticRoutes": [{"cidr": "0.0.0.0/0"}]}),
            )?,
            vec!["spec.staticRoutes[0].nextHopIP: Required value"],
        ),
        (
            &vpcs,
            object(
                "Vpc",
                "bad-priority",
                json!({"policyRoutes": [{"priority": 40000, "match": "ip4", "action": "drop"}]}),
            )?,
            vec![
                "spec.policyRoutes[0].priority",
                "less than or equal to 32767",
            ],
        ),
    ];
    for (api, obj, expected) in cases {
        let name = obj.name_any();
        let status = api_error(api.create(&PostParams::default(), &obj).await)?;
        assert_eq!(status.code, 422, "{name}: {status:?}");
        for text in expected {
            assert!(
                status.message.contains(text),
                "{name}: {:?} lacks {text:?}",
                status.message
            );
        }
        assert!(api.get_opt(&name).await?.is_none(), "{name} was stored");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_only_written_through_the_status_subresource() -> Result<()> {
    let (_env, client) = setup().await?;
    let subnets: Api<Subnet> = Api::all(client);
    let spec = SubnetSpec {
        cidr_block: "10.2.0.0/24".into(),
        ..Default::default()
    };
    let counts = |n: u128| SubnetStatus {
        v4_available_ips: Some(IpCount(n)),
        ..Default::default()
    };

    // Status in a create body is dropped.
    let mut obj = subnet("status-only", spec.clone());
    obj.status = Some(counts(5));
    let created = subnets.create(&PostParams::default(), &obj).await?;
    assert_eq!(created.status.and_then(|s| s.v4_available_ips), None);

    // The status subresource writes status. IPv6-sized counts come back as
    // the float the API server keeps beyond 64 bits, i.e. to about 15 digits.
    let status = counts(253);
    let wide = 1u128 << 70;
    let patch = json!({"status": {"v4availableIPs": 253, "v6availableIPs": IpCount(wide)}});
    let patched = subnets
        .patch_status("status-only", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let mut patched_status = patched.status.context("status")?;
    let v6 = patched_status
        .v6_available_ips
        .take()
        .context("v6availableIPs")?;
    assert!(
        (v6.0 as f64 / wide as f64 - 1.0).abs() < 1e-12,
        "{v6} vs {wide}"
    );
    subnets
        .patch_status(
            "status-only",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"v6availableIPs": null}})),
        )
        .await?;
    assert_eq!(patched_status, status);

    // Status in an update of the main resource is ignored; the spec change is kept.
    let mut current = subnets.get("status-only").await?;
    current.spec.namespaces = vec!["ns-x".into()];
    current.status = Some(counts(1));
    let replaced = subnets
        .replace("status-only", &PostParams::default(), &current)
        .await?;
    assert_eq!(replaced.spec.namespaces, ["ns-x"]);
    assert_eq!(replaced.status.as_ref(), Some(&status));
    let merged = subnets
        .patch(
            "status-only",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"v4availableIPs": 7}})),
        )
        .await?;
    assert_eq!(merged.status.as_ref(), Some(&status));

    // A spec change through the status subresource is ignored.
    let via_status = subnets
        .patch_status(
            "status-only",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"cidrBlock": "10.3.0.0/24"}, "status": {"v4usingIPs": 2}}),
            ),
        )
        .await?;
    assert_eq!(via_status.spec.cidr_block, "10.2.0.0/24");
    assert_eq!(
        via_status.status.and_then(|s| s.v4_using_ips),
        Some(IpCount(2))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_of_status_merges_conditions_by_type() -> Result<()> {
    let (_env, client) = setup().await?;
    let vpcs: Api<Vpc> = Api::all(client);
    vpcs.create(&PostParams::default(), &vpc("ssa-vpc", VpcSpec::default()))
        .await?;

    let apply = |status: VpcStatus| api::status_apply_patch::<Vpc>(&status);
    let importer = VpcStatus {
        type_: Some(VpcType::External),
        router: Some("neutron-0d2e".into()),
        neutron_router_name: Some("router1".into()),
        router_cidrs: vec!["10.0.1.1/24".into()],
        conditions: vec![Condition::new(condition::READY, true, "Imported", "")],
        ..Default::default()
    };
    let auditor = VpcStatus {
        conditions: vec![api::unsupported::unsupported_condition(&[
            "spec.staticRoutes".into(),
        ])],
        ..Default::default()
    };
    let ssa = |manager: &str| PatchParams::apply(manager).force();
    vpcs.patch_status(
        "ssa-vpc",
        &ssa("importer"),
        &Patch::Apply(apply(importer.clone())),
    )
    .await?;
    let both = vpcs
        .patch_status("ssa-vpc", &ssa("auditor"), &Patch::Apply(apply(auditor)))
        .await?
        .status
        .context("status")?;
    assert_eq!(both.neutron_router_name.as_deref(), Some("router1"));
    assert_eq!(both.type_, Some(VpcType::External));
    assert!(condition::is_condition_true(
        &both.conditions,
        condition::READY
    ));
    let unsupported = condition::find_condition(&both.conditions, condition::UNSUPPORTED)
        .context("Unsupported")?;
    assert_eq!(unsupported.message, "Unsupported: spec.staticRoutes");

    // The importer re-applies without its condition and with a new name: only its fields change.
    let renamed = VpcStatus {
        neutron_router_name: Some("router1-renamed".into()),
        conditions: vec![],
        ..importer
    };
    let after = vpcs
        .patch_status("ssa-vpc", &ssa("importer"), &Patch::Apply(apply(renamed)))
        .await?
        .status
        .context("status")?;
    assert_eq!(
        after.neutron_router_name.as_deref(),
        Some("router1-renamed")
    );
    assert!(condition::find_condition(&after.conditions, condition::READY).is_none());
    assert!(condition::find_condition(&after.conditions, condition::UNSUPPORTED).is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_crd_manifest_applies_with_kubectl() -> Result<()> {
    let (env, _client) = setup().await?;
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds.yaml");
    let out = env.kubectl(&[
        "apply".as_ref(),
        "--server-side".as_ref(),
        format!("--field-manager={INSTALLER}").as_ref(),
        "-f".as_ref(),
        manifest.as_os_str(),
    ])?;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "customresourcedefinition.apiextensions.k8s.io/ips.kubeovn.io serverside-applied",
            "customresourcedefinition.apiextensions.k8s.io/subnets.kubeovn.io serverside-applied",
            "customresourcedefinition.apiextensions.k8s.io/vpcs.kubeovn.io serverside-applied",
        ]
    );
    Ok(())
}

/// The manifest of issue 3, exactly as a user copies it from the OpenStack integration guide.
const USER_MANIFEST: &str = "\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: net2
spec:
  vpc: neutron-22040ed5-0598-4f77-bffd-e7fd4db47e93
  cidrBlock: 12.0.1.0/24
  namespaces:
    - net2
";

#[tokio::test(flavor = "multi_thread")]
async fn user_manifest_applies_unchanged_with_kubectl() -> Result<()> {
    let (env, client) = setup().await?;
    let file = env.dir().join("net2.yaml");
    std::fs::write(&file, USER_MANIFEST)?;
    let out = env.kubectl(&["apply".as_ref(), "-f".as_ref(), file.as_os_str()])?;
    assert_eq!(out.trim(), "subnet.kubeovn.io/net2 created");
    let out = env.kubectl(&["apply".as_ref(), "-f".as_ref(), file.as_os_str()])?;
    assert_eq!(out.trim(), "subnet.kubeovn.io/net2 unchanged");

    let net2 = Api::<Subnet>::all(client).get("net2").await?;
    assert_eq!(
        net2.spec.vpc.as_deref(),
        Some("neutron-22040ed5-0598-4f77-bffd-e7fd4db47e93")
    );
    assert_eq!(net2.spec.cidr_block, "12.0.1.0/24");
    assert_eq!(net2.spec.namespaces, ["net2"]);
    assert!(net2.spec.unsupported_fields().is_empty());
    Ok(())
}

/// Kube-OVN manifests with fields rovn does not implement: accepted and listed.
const KUBE_OVN_MANIFESTS: &str = "\
apiVersion: kubeovn.io/v1
kind: Vpc
metadata:
  name: kovn-vpc
spec:
  namespaces:
  - kovn
  staticRoutes:
  - cidr: 0.0.0.0/0
    nextHopIP: 10.0.1.254
    policy: policyDst
  enableExternal: true
  vpcPeerings:
  - remoteVpc: other
    localConnectIP: 169.254.0.1/30
---
apiVersion: kubeovn.io/v1
kind: Vpc
metadata:
  name: kovn-minimal
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: kovn-subnet
spec:
  vpc: kovn-vpc
  protocol: IPv4
  cidrBlock: 10.0.1.0/24
  gateway: 10.0.1.1
  excludeIps:
  - 10.0.1.1..10.0.1.10
  namespaces:
  - kovn
  default: false
  provider: ovn
  gatewayType: distributed
  gatewayNode: ''
  natOutgoing: false
  private: true
  allowSubnets:
  - 10.16.0.0/16
  enableDHCP: true
  enableLb: false
  u2oInterconnection: false
";

#[tokio::test(flavor = "multi_thread")]
async fn kube_ovn_manifests_apply_and_unsupported_fields_are_listed() -> Result<()> {
    let (env, client) = setup().await?;
    let file = env.dir().join("kube-ovn.yaml");
    std::fs::write(&file, KUBE_OVN_MANIFESTS)?;
    env.kubectl(&["apply".as_ref(), "-f".as_ref(), file.as_os_str()])?;

    let vpcs = Api::<Vpc>::all(client.clone());
    let vpc = vpcs.get("kovn-vpc").await?;
    assert_eq!(
        vpc.spec.unsupported_fields(),
        [
            "spec.enableExternal",
            "spec.namespaces",
            "spec.staticRoutes",
            "spec.vpcPeerings"
        ]
    );
    let minimal = vpcs.get("kovn-minimal").await?;
    assert_eq!(minimal.spec, VpcSpec::default());
    let subnet = Api::<Subnet>::all(client).get("kovn-subnet").await?;
    assert_eq!(subnet.spec.protocol, Some(Protocol::IPv4));
    assert_eq!(
        subnet.spec.unsupported_fields(),
        ["spec.allowSubnets", "spec.enableDHCP", "spec.private"]
    );
    let condition = api::unsupported::unsupported_condition(&subnet.spec.unsupported_fields());
    assert_eq!(
        condition.message,
        "Unsupported: spec.allowSubnets, spec.enableDHCP, spec.private"
    );
    Ok(())
}

/// Header cells of a `kubectl get` table (columns are separated by 2+ spaces).
fn header_cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_shows_printer_columns() -> Result<()> {
    let (env, client) = setup().await?;
    let pp = PostParams::default();
    let ssa = PatchParams::apply("columns-test").force();

    let vpcs: Api<Vpc> = Api::all(client.clone());
    vpcs.create(&pp, &vpc("cols-vpc", VpcSpec::default()))
        .await?;
    let vpc_status = VpcStatus {
        type_: Some(VpcType::External),
        router: Some("neutron-cols".into()),
        neutron_router_name: Some("router-cols".into()),
        subnets: vec!["cols-subnet".into()],
        ..Default::default()
    };
    vpcs.patch_status(
        "cols-vpc",
        &ssa,
        &Patch::Apply(api::status_apply_patch::<Vpc>(&vpc_status)),
    )
    .await?;

    let subnets: Api<Subnet> = Api::all(client.clone());
    let spec = SubnetSpec {
        vpc: Some("cols-vpc".into()),
        protocol: Some(Protocol::IPv4),
        cidr_block: "10.7.0.0/24".into(),
        ..Default::default()
    };
    subnets.create(&pp, &subnet("cols-subnet", spec)).await?;
    let status = SubnetStatus {
        v4_using_ips: Some(IpCount(3)),
        v4_available_ips: Some(IpCount(250)),
        ..Default::default()
    };
    subnets
        .patch_status(
            "cols-subnet",
            &ssa,
            &Patch::Apply(
                json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "status": status}),
            ),
        )
        .await?;

    let ip_spec = IpSpec {
        pod_name: "cols".into(),
        namespace: "default".into(),
        subnet: "cols-subnet".into(),
        node_name: "node-cols".into(),
        v4_ip_address: "10.7.0.2".into(),
        mac_address: "00:00:00:07:00:02".into(),
        ..Default::default()
    };
    Api::<IP>::all(client)
        .create(&pp, &IP::new("cols.default", ip_spec))
        .await?;

    let out = env.kubectl(&["get", "vpc,subnet,ip"])?;
    let headers: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("NAME"))
        .map(header_cells)
        .collect();
    assert_eq!(
        headers,
        [
            vec!["NAME", "TYPE", "ROUTER", "NEUTRON NAME", "SUBNETS", "AGE"],
            vec![
                "NAME",
                "VPC",
                "PROTOCOL",
                "CIDR",
                "V4USED",
                "V4AVAILABLE",
                "AGE"
            ],
            vec!["NAME", "V4IP", "V6IP", "MAC", "NODE", "SUBNET", "AGE"],
        ],
        "kubectl get vpc,subnet,ip:\n{out}"
    );
    let row = |name: &str| -> Vec<&str> {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        row("vpc.kubeovn.io/cols-vpc")[1..5],
        [
            "External",
            "neutron-cols",
            "router-cols",
            r#"["cols-subnet"]"#
        ],
        "{out}"
    );
    assert_eq!(
        row("subnet.kubeovn.io/cols-subnet")[1..6],
        ["cols-vpc", "IPv4", "10.7.0.0/24", "3", "250"],
        "{out}"
    );
    // The empty V6IP cell leaves no word.
    assert_eq!(
        row("ip.kubeovn.io/cols.default")[1..5],
        ["10.7.0.2", "00:00:00:07:00:02", "node-cols", "cols-subnet"],
        "{out}"
    );
    Ok(())
}

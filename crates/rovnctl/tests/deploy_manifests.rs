//! `deploy/` as operators use it (`kubectl apply -k deploy/`), checked against a real API
//! server: everything validates server-side (admission included), the RBAC rules are exactly
//! the API calls of rovn-controller and rovn-agent (the list below names the code path of
//! each), the containers use the image `hack/images.sh` builds and only flags the binaries
//! have, and the CNI configuration the agent installs is one rovn-cni accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use testenv::kube::KubeEnv;

/// One RBAC permission: (API group, resource, resource name or "", verb).
type Grant = (String, String, String, String);

/// rovn-controller's ClusterRole, rule by rule (crates/controller/src).
const CONTROLLER_RULES: &[(&str, &str, &[&str])] = &[
    // pod.rs: reflector/watcher on Api::<Pod>::all (list + watch); allocation annotations
    // written with Patch::Merge (`annotate`).
    ("", "pods", &["list", "watch", "patch"]),
    // namespace.rs: Controller on Api::<Namespace>::all (list + watch); the Subnet
    // annotations written with Patch::Merge.
    ("", "namespaces", &["list", "watch", "patch"]),
    // service.rs: reflector/watcher on Api::<Service>::all (list + watch).
    ("", "services", &["list", "watch"]),
    ("", "nodes", &["list", "watch"]),
    // service.rs: reflector/watcher on Api::<EndpointSlice>::all (list + watch).
    ("discovery.k8s.io", "endpointslices", &["list", "watch"]),
    // network_policy.rs: reflector/watcher on Api::<NetworkPolicy>::all (list + watch).
    ("networking.k8s.io", "networkpolicies", &["list", "watch"]),
    // import.rs/vpc.rs/subnet.rs: watchers and Controllers on ctx.vpcs() (list + watch),
    // get_opt in subnet.rs, server-side apply of imported and default Vpcs (patch, and
    // create: an apply that makes a new object is authorized as create) and the finalizer
    // patches (patch), deleting an imported Vpc whose router is gone (delete).
    (
        "kubeovn.io",
        "vpcs",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // import.rs/vpc.rs apply_status: Vpc status by server-side apply.
    ("kubeovn.io", "vpcs/status", &["patch"]),
    // subnet.rs/vpc.rs/import.rs: Controller and watchers on ctx.subnets() and list()
    // (list + watch), ensure_default_subnet (create), finalizer and accepted-spec annotation
    // (patch).
    (
        "kubeovn.io",
        "subnets",
        &["list", "watch", "create", "patch"],
    ),
    // subnet/status.rs: Subnet status by server-side apply.
    ("kubeovn.io", "subnets/status", &["patch"]),
    // ip_resource.rs create/apply/delete, pod.rs watcher, subnet.rs list.
    (
        "kubeovn.io",
        "ips",
        &["list", "watch", "create", "patch", "delete"],
    ),
    // pod.rs, service.rs and subnet/status.rs: kube-runtime's Recorder publishes events.k8s.io/v1 Events
    // (create; a repeated one is patched).
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// The controller's Role in rovn-system (crates/controller/src/leader.rs: get_opt, create,
/// replace of the Lease named by --lease-name, default "rovn-controller").
const LEADER_ELECTION_RULES: &[(&str, &str, &str, &[&str])] = &[
    ("coordination.k8s.io", "leases", "", &["create"]),
    (
        "coordination.k8s.io",
        "leases",
        "rovn-controller",
        &["get", "update"],
    ),
];

/// rovn-agent's ClusterRole (crates/agent/src).
const AGENT_RULES: &[(&str, &str, &[&str])] = &[
    // pod.rs wait_for_network: get_opt, then await_condition (a watcher of that one pod:
    // list + watch).
    ("", "pods", &["get", "list", "watch"]),
    // ip_record.rs: the sandbox container id into the pod's IP resource (Patch::Merge).
    ("kubeovn.io", "ips", &["patch"]),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn grants(rules: &[(&str, &str, &[&str])]) -> BTreeSet<Grant> {
    rules
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(move |verb| {
                (
                    group.to_string(),
                    resource.to_string(),
                    String::new(),
                    verb.to_string(),
                )
            })
        })
        .collect()
}

/// The permissions a Role/ClusterRole object grants, one tuple per group × resource ×
/// resource name × verb.
fn granted(role: &Value) -> BTreeSet<Grant> {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(rule.get("resourceNames"));
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "no non-resource URLs: {rule:?}"
        );
        for group in strings(rule.get("apiGroups")) {
            for resource in strings(rule.get("resources")) {
                for name in &names {
                    for verb in strings(rule.get("verbs")) {
                        out.insert((group.clone(), resource.clone(), name.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

/// The objects `kubectl kustomize deploy/` renders.
fn rendered(env: &KubeEnv) -> Vec<Value> {
    let text = env
        .kubectl(&["kustomize", &deploy_dir().display().to_string()])
        .expect("kubectl kustomize deploy/");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("a YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("deploy/ has no {kind} {name}"))
}

/// Every container (init containers included) of a workload object.
fn containers(workload: &Value) -> Vec<&Value> {
    let spec = &workload["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[*k].as_sequence())
        .flatten()
        .collect()
}

/// The `--flags` a container's shell script passes.
fn flags_in(container: &Value) -> BTreeSet<String> {
    let script: String = container["args"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    script
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

fn help_of(bin: &str) -> String {
    let package = match bin {
        "rovn-controller" => "controller",
        "rovn-agent" => "agent",
        other => panic!("no package for {other}"),
    };
    let path = testenv::stack::workspace_bin(package, bin).expect("workspace binary");
    let out = Command::new(path).arg("--help").output().expect("--help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deploy_applies_server_side_with_exactly_the_rbac_the_code_uses() {
    let env = KubeEnv::start().expect("kube-apiserver");
    let deploy = deploy_dir().display().to_string();

    // The namespace for real (a dry run creates nothing, and everything else lives in it),
    // then all of deploy/ through the API server's validation and admission without
    // persisting it.
    env.kubectl(&[
        "apply",
        "-f",
        &deploy_dir().join("namespace.yaml").display().to_string(),
    ])
    .expect("apply namespace.yaml");
    let out = env
        .kubectl(&["apply", "-k", &deploy, "--dry-run=server"])
        .expect("kubectl apply -k deploy/ --dry-run=server");
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/vpcs.kubeovn.io",
        "serviceaccount/rovn-controller",
        "serviceaccount/rovn-agent",
        "clusterrole.rbac.authorization.k8s.io/rovn-controller",
        "clusterrole.rbac.authorization.k8s.io/rovn-agent",
        "role.rbac.authorization.k8s.io/rovn-controller-leader-election",
        "configmap/rovn-config",
        "configmap/rovn-cni",
        "deployment.apps/rovn-controller",
        "daemonset.apps/rovn-agent",
    ] {
        assert!(out.contains(object), "{object} not applied:\n{out}");
    }

    let objects = rendered(&env);

    // RBAC: exactly the intended permissions, nothing else (no Secrets, no wildcard).
    let controller = granted(find(&objects, "ClusterRole", "rovn-controller"));
    assert_eq!(controller, grants(CONTROLLER_RULES), "rovn-controller");
    let agent = granted(find(&objects, "ClusterRole", "rovn-agent"));
    assert_eq!(agent, grants(AGENT_RULES), "rovn-agent");
    let leader = granted(find(&objects, "Role", "rovn-controller-leader-election"));
    let expected_leader: BTreeSet<Grant> = LEADER_ELECTION_RULES
        .iter()
        .flat_map(|(g, r, n, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), n.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(leader, expected_leader, "leader election Role");
    let roles: Vec<&Value> = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .collect();
    assert_eq!(roles.len(), 3, "only these three roles");
    for role in roles {
        for (group, resource, _, verb) in granted(role) {
            assert!(
                ![group.as_str(), resource.as_str(), verb.as_str()].contains(&"*"),
                "wildcard in {role:?}"
            );
            assert!(
                resource != "secrets" && resource != "configmaps",
                "rovn reads no {resource} through the API"
            );
        }
    }
    // Each role is bound to its own ServiceAccount in rovn-system.
    for (kind, name, account) in [
        ("ClusterRoleBinding", "rovn-controller", "rovn-controller"),
        ("ClusterRoleBinding", "rovn-agent", "rovn-agent"),
        (
            "RoleBinding",
            "rovn-controller-leader-election",
            "rovn-controller",
        ),
    ] {
        let binding = find(&objects, kind, name);
        assert_eq!(binding["roleRef"]["name"].as_str(), Some(name));
        let subjects = binding["subjects"].as_sequence().expect("subjects");
        assert_eq!(subjects.len(), 1, "{kind} {name}");
        assert_eq!(subjects[0]["kind"].as_str(), Some("ServiceAccount"));
        assert_eq!(subjects[0]["name"].as_str(), Some(account));
        assert_eq!(subjects[0]["namespace"].as_str(), Some("rovn-system"));
    }

    // The workloads: the image hack/images.sh builds, used without a registry.
    let names = Command::new("bash")
        .arg(deploy_dir().join("../hack/images.sh"))
        .arg("--names")
        .output()
        .expect("hack/images.sh --names");
    let names = String::from_utf8_lossy(&names.stdout);
    let rovn_image = names
        .lines()
        .find_map(|l| l.strip_prefix("rovn.tar "))
        .expect("images.sh names rovn.tar")
        .trim()
        .to_owned();
    let deployment = find(&objects, "Deployment", "rovn-controller");
    let daemonset = find(&objects, "DaemonSet", "rovn-agent");
    for workload in [deployment, daemonset] {
        for container in containers(workload) {
            assert_eq!(container["image"].as_str(), Some(rovn_image.as_str()));
            assert!(matches!(
                container["imagePullPolicy"].as_str(),
                Some("IfNotPresent" | "Never")
            ));
            assert!(
                container["resources"]["requests"]["cpu"].is_string()
                    && container["resources"]["requests"]["memory"].is_string(),
                "resource requests on {container:?}"
            );
        }
    }
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let controller_container = &containers(deployment)[0];
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = controller_container[probe]["httpGet"]["path"].as_str();
        assert!(matches!(path, Some("/healthz" | "/readyz")), "{probe}");
    }
    assert_eq!(
        controller_container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let pod_spec = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod_spec["hostNetwork"].as_bool(), Some(true));
    let agent_container = containers(daemonset)
        .into_iter()
        .find(|c| c["name"].as_str() == Some("agent"))
        .expect("agent container");
    // Privileged only because its node-link gateways' namespaces are mounted with
    // Bidirectional propagation (allowed to privileged containers only), and only there.
    assert_eq!(
        agent_container["securityContext"]["privileged"].as_bool(),
        Some(true),
        "the agent mounts its gateways' namespaces for the host"
    );
    let bidirectional: Vec<&str> = agent_container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|m| m["mountPropagation"].as_str() == Some("Bidirectional"))
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert_eq!(bidirectional, ["/run/netns"]);

    // The scripts only pass flags the binaries have.
    let controller_help = help_of("rovn-controller");
    for flag in flags_in(controller_container) {
        assert!(
            controller_help.contains(&flag),
            "rovn-controller has no {flag}"
        );
    }
    let agent_help = help_of("rovn-agent");
    for flag in flags_in(agent_container) {
        assert!(agent_help.contains(&flag), "rovn-agent has no {flag}");
    }

    // The CNI configuration the init container installs: a CNI 1.1 conflist ("cniVersions"
    // up to 1.1.0 for runtimes that know it, "cniVersion" 1.0.0 for containerd 1.6) whose
    // plugin entry, as a runtime of either kind hands it to rovn-cni (cniVersion and name
    // added), rovn-cni accepts.
    let cni = find(&objects, "ConfigMap", "rovn-cni");
    let conflist: serde_json::Value =
        serde_json::from_str(cni["data"]["10-rovn.conflist"].as_str().expect("conflist"))
            .expect("the conflist is JSON");
    assert_eq!(conflist["cniVersion"], "1.0.0");
    let versions: Vec<&str> = conflist["cniVersions"]
        .as_array()
        .expect("cniVersions")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    let plugins = conflist["plugins"].as_array().expect("plugins");
    assert_eq!(plugins.len(), 1);
    for version in versions {
        let mut plugin = plugins[0].clone();
        plugin["cniVersion"] = version.into();
        plugin["name"] = conflist["name"].clone();
        let parsed = cni::config::NetConf::parse(plugin.to_string().as_bytes())
            .expect("rovn-cni accepts the installed configuration");
        assert_eq!(parsed.cni_version, version);
        assert_eq!(parsed.plugin_type, "rovn-cni");
        assert_eq!(
            parsed.socket,
            Path::new(cni::config::DEFAULT_SOCKET),
            "the agent's --cni-socket"
        );
    }
    assert!(
        flags_in(agent_container).contains("--cni-socket"),
        "the agent serves the socket the conflist names"
    );
}

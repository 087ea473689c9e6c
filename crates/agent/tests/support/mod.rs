//! Shared by the agent's integration tests and benchmark, beside `testenv::stack` (the
//! rovn processes, `rovn-cni` driven like kubelet, pods): the controller's part played by
//! the test (allocation annotations), unique names and running a command.

#![allow(dead_code)] // Each test binary uses its own part of the support code.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use testenv::ovn::OvnEnv;

/// Hang guard for waits in tests (never an assertion on speed).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A name unique to this test process: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The controller's allocation of one pod.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// IP address.
    pub ip: String,
    /// MAC address.
    pub mac: String,
    /// Subnet CIDR.
    pub cidr: String,
    /// Gateway.
    pub gateway: String,
    /// Logical switch.
    pub logical_switch: String,
}

/// Writes the Kube-OVN allocation annotations on the pod, as the controller does.
pub async fn annotate_pod(client: &kube::Client, namespace: &str, name: &str, a: &Allocation) {
    let annotations: BTreeMap<&str, &str> = BTreeMap::from([
        (api::annotations::IP_ADDRESS, a.ip.as_str()),
        (api::annotations::MAC_ADDRESS, a.mac.as_str()),
        (api::annotations::CIDR, a.cidr.as_str()),
        (api::annotations::GATEWAY, a.gateway.as_str()),
        (api::annotations::LOGICAL_SWITCH, a.logical_switch.as_str()),
        (api::annotations::ALLOCATED, api::annotations::TRUE),
    ]);
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .expect("annotate pod");
}

/// Runs a command and returns whether it succeeded and its stdout.
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `ip -n <chassis netns> link show <name>` succeeds.
pub fn host_link_exists(chassis_netns: &str, name: &str) -> bool {
    run("ip", &["-n", chassis_netns, "link", "show", name]).0
}

/// The `external_ids` of OVS Interface `name` on the test chassis, when it exists.
pub fn ovs_interface_ids(env: &OvnEnv, name: &str) -> Option<String> {
    let out = env
        .vsctl(&[
            "--bare",
            "--columns=external_ids",
            "find",
            "Interface",
            &format!("name={name}"),
        ])
        .expect("ovs-vsctl find");
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_owned())
}

//! What the pod reconciler wrote that its caches may not show yet: IP
//! resources it applied (until the IP watch shows them) and ports it
//! inserted (until the Northbound replica shows them), so that a pod
//! deleted right after is cleaned up completely and nothing is written
//! twice.

use std::collections::HashMap;
use std::sync::Mutex;

use api::IpSpec;
use ovsdb::Uuid;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes not yet seen in the caches.
#[derive(Default)]
pub struct WriteLag {
    /// IP resource name → spec applied.
    applied_ips: Mutex<HashMap<String, IpSpec>>,
    /// Pod owner key → uuid of the port inserted.
    inserted_ports: Mutex<HashMap<String, Uuid>>,
}

impl WriteLag {
    /// Records the spec applied to IP resource `name`.
    pub fn ip_applied(&self, name: &str, spec: IpSpec) {
        lock(&self.applied_ips).insert(name.to_string(), spec);
    }

    /// The spec last applied to IP resource `name`, until its watch event.
    pub fn applied_ip(&self, name: &str) -> Option<IpSpec> {
        lock(&self.applied_ips).get(name).cloned()
    }

    /// The watch showed IP resource `name` (or its deletion).
    pub fn ip_seen(&self, name: &str) {
        lock(&self.applied_ips).remove(name);
    }

    /// Records the port inserted for pod `owner`.
    pub fn port_inserted(&self, owner: &str, uuid: Uuid) {
        lock(&self.inserted_ports).insert(owner.to_string(), uuid);
    }

    /// The port inserted for `owner` that the replica has not shown yet.
    pub fn inserted_port(&self, owner: &str) -> Option<Uuid> {
        lock(&self.inserted_ports).get(owner).copied()
    }

    /// The replica showed port `uuid` of `owner`.
    pub fn port_seen(&self, owner: &str, uuid: Uuid) {
        let mut inserted = lock(&self.inserted_ports);
        if inserted.get(owner) == Some(&uuid) {
            inserted.remove(owner);
        }
    }

    /// Forgets what was written for pod `owner` and its IP resource
    /// `ip_name` (both deleted).
    pub fn forget(&self, owner: &str, ip_name: &str) {
        lock(&self.inserted_ports).remove(owner);
        lock(&self.applied_ips).remove(ip_name);
    }
}

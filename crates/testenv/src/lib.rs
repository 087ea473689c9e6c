//! Test environments built from real components: OVN/OVS daemons in temp dirs
//! (`ovn`), certificates from `ovs-pki` (`pki`), pods and VMs as network namespaces
//! (`netns`), Neutron's rows and the check that rovn never changes them (`neutron`), and,
//! with the `kube` feature, a real etcd + kube-apiserver (`kube`), a real Kubernetes node
//! (`node`) and rovn installed on it from `deploy/` (`install`); the rovn processes of a
//! whole stack and the Kubernetes side around them, shared by the controller's and the
//! agent's tests, the benchmarks and the local lab (`stack`); the raw OVSDB writer
//! benchmarks compare against (`raw_writer`) and the figures they print (`figures`).
//!
//! Underneath: every process the environments start (`process`) and the one poll helper
//! every wait uses (`poll`).

pub mod figures;
#[cfg(feature = "kube")]
mod http;
#[cfg(feature = "kube")]
pub mod install;
#[cfg(feature = "kube")]
pub mod kube;
pub mod netns;
pub mod neutron;
#[cfg(feature = "kube")]
pub mod node;
pub mod ovn;
pub mod pki;
pub mod poll;
pub mod process;
pub mod raw_writer;
pub mod stack;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name unique to this test process, e.g. for a namespace, a container id or a
/// controller identity: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

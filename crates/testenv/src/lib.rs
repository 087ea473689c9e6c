//! Test environments built from real components: OVN/OVS daemons in temp dirs
//! (`ovn`), certificates from `ovs-pki` (`pki`), and, with the `kube` feature,
//! a real etcd + kube-apiserver (`kube`).

pub mod ovn;
pub mod pki;
#[cfg(feature = "kube")]
pub mod kube;

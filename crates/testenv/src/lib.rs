//! Test environments built from real components: OVN/OVS daemons in temp dirs
//! (`ovn`), certificates from `ovs-pki` (`pki`), and, with the `kube` feature,
//! a real etcd + kube-apiserver (`kube`).

#[cfg(feature = "kube")]
pub mod kube;
pub mod netns;
pub mod neutron;
pub mod ovn;
pub mod pki;

//! Test environments built from real components: OVN/OVS daemons in temp dirs
//! (`ovn`), certificates from `ovs-pki` (`pki`), and, with the `kube` feature,
//! a real etcd + kube-apiserver (`kube`); and the rovn processes of a whole node stack
//! with a Neutron tenant, shared by the local lab and the end-to-end tests (`stack`); the raw
//! OVSDB writer benchmarks compare against (`raw_writer`).

#[cfg(feature = "kube")]
pub mod kube;
pub mod netns;
pub mod neutron;
#[cfg(feature = "kube")]
pub mod node;
pub mod ovn;
pub mod pki;
pub mod raw_writer;
pub mod stack;

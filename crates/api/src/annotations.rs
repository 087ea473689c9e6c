//! Kube-OVN-compatible annotation and label keys.

/// Label on Vpcs imported from Neutron (Kube-OVN: `"true"`).
pub const VPC_EXTERNAL_LABEL: &str = "ovn.kubernetes.io/vpc_external";

/// Pod/namespace annotation: IP address(es) of the pod, comma-separated for dual stack.
/// Written by the controller; as user input on a pod, a static address request.
pub const IP_ADDRESS: &str = "ovn.kubernetes.io/ip_address";
/// Pod annotation: MAC address of the pod. As user input, a static MAC request.
pub const MAC_ADDRESS: &str = "ovn.kubernetes.io/mac_address";
/// Pod/namespace annotation: CIDR(s) of the subnet.
pub const CIDR: &str = "ovn.kubernetes.io/cidr";
/// Pod annotation: gateway(s) of the subnet.
pub const GATEWAY: &str = "ovn.kubernetes.io/gateway";
/// Pod/namespace annotation: the subnet (logical switch). As user input on a pod, the subnet to use.
pub const LOGICAL_SWITCH: &str = "ovn.kubernetes.io/logical_switch";
/// Pod annotation: `"true"` once the controller allocated the pod's address.
pub const ALLOCATED: &str = "ovn.kubernetes.io/allocated";
/// Pod annotation: `"true"` once the pod's port is routed.
pub const ROUTED: &str = "ovn.kubernetes.io/routed";
/// Pod annotation (user input): the IP pool to allocate from.
pub const IP_POOL: &str = "ovn.kubernetes.io/ip_pool";

/// The value Kube-OVN uses for boolean annotations and labels.
pub const TRUE: &str = "true";

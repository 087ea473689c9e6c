//! The CNI `ADD` success result (spec 1.1 fields), and its 0.4.0 rendering.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The result of `ADD` (also the `prevResult` of `CHECK` and `DEL`).
/// Parsing accepts 0.4.0, 1.0.0 and 1.1.0 results (unknown fields such as 0.4.0's
/// `ips[].version` are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    /// Protocol version; the plugin sets it to the version of the request when printing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cni_version: String,
    /// Interfaces created by the attachment, host-side ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS configuration.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// MTU (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Netns path for interfaces inside the container (the `CNI_NETNS` value); `None` on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Socket path tied to the interface (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// PCI identifier of the device (1.1).
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.0.2.5/24`.
    pub address: IpNet,
    /// Default gateway of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<u32>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination, e.g. `0.0.0.0/0`.
    pub dst: IpNet,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Path MTU (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Priority, lower wins (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope: 0 global, 253 link, 254 host (1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

/// DNS settings of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, by priority.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, by priority.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

impl CniResult {
    /// The JSON printed for `cni_version`: the result with that version, and for 0.4.0
    /// the `version` (`"4"`/`"6"`) field that version requires on each address.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut result = self.clone();
        result.cni_version = cni_version.to_owned();
        let mut json = serde_json::to_value(&result).expect("a result always serializes");
        if cni_version == "0.4.0"
            && let Some(ips) = json.get_mut("ips").and_then(Value::as_array_mut)
        {
            for (entry, ip) in ips.iter_mut().zip(&self.ips) {
                let family = if ip.address.addr().is_ipv4() {
                    "4"
                } else {
                    "6"
                };
                entry["version"] = Value::String(family.to_owned());
            }
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> CniResult {
        CniResult {
            cni_version: String::new(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: Some("0a:72:00:00:00:01".into()),
                sandbox: Some("/var/run/netns/p".into()),
                pci_id: Some("0000:00:01.0".into()),
                ..Default::default()
            }],
            ips: vec![IpConfig {
                address: "fd00::5/64".parse().unwrap(),
                gateway: Some("fd00::1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![Route {
                dst: "::/0".parse().unwrap(),
                gw: None,
                mtu: Some(1400),
                advmss: None,
                priority: None,
                table: None,
                scope: Some(0),
            }],
            dns: Dns {
                nameservers: vec!["10.96.0.10".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn spec_json_shape() {
        assert_eq!(
            sample().to_json("1.1.0"),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "mac": "0a:72:00:00:00:01", "sandbox": "/var/run/netns/p", "pciID": "0000:00:01.0"}],
                "ips": [{"address": "fd00::5/64", "gateway": "fd00::1", "interface": 0}],
                "routes": [{"dst": "::/0", "mtu": 1400, "scope": 0}],
                "dns": {"nameservers": ["10.96.0.10"]}
            })
        );
        assert_eq!(sample().to_json("0.4.0")["ips"][0]["version"], "6");
        assert_eq!(
            CniResult::default().to_json("1.0.0"),
            json!({"cniVersion": "1.0.0"})
        );
    }

    #[test]
    fn parses_0_4_0_results() {
        let parsed: CniResult = serde_json::from_value(sample().to_json("0.4.0")).unwrap();
        let mut expected = sample();
        expected.cni_version = "0.4.0".into();
        assert_eq!(parsed, expected);
    }
}

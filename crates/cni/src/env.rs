//! The `CNI_*` environment of one invocation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::CniError;

/// A CNI operation (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach; must succeed when already detached.
    Del,
    /// Verify an attachment against `prevResult`.
    Check,
    /// Report whether ADD can be serviced (spec 1.1).
    Status,
    /// Remove resources of attachments not in the valid list (spec 1.1).
    Gc,
    /// Report supported versions (answered by the plugin itself).
    Version,
}

impl Command {
    /// Parses a `CNI_COMMAND` value.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        })
    }
}

/// The Kubernetes pod named in `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID`, when the runtime gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`, when the runtime gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra_container_id: Option<String>,
}

/// The environment of one invocation, validated for its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`: required for ADD, DEL, CHECK.
    pub container_id: Option<String>,
    /// `CNI_NETNS`: required for ADD and CHECK, optional for DEL.
    pub netns: Option<String>,
    /// `CNI_IFNAME`: required for ADD, DEL, CHECK.
    pub ifname: Option<String>,
    /// The pod from `CNI_ARGS`: required for ADD and CHECK.
    pub pod: Option<PodRef>,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<String>,
}

fn invalid(variables: &str, details: impl Into<String>) -> CniError {
    CniError::new(
        CniError::INVALID_ENVIRONMENT,
        format!("invalid environment variables: {variables}"),
        details,
    )
}

impl CniEnv {
    /// Reads and validates the environment through `var` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let non_empty = |key: &str| var(key).filter(|v| !v.is_empty());
        let command_text = non_empty("CNI_COMMAND")
            .ok_or_else(|| invalid("CNI_COMMAND", "CNI_COMMAND is not set"))?;
        let command = Command::parse(&command_text).ok_or_else(|| {
            invalid(
                "CNI_COMMAND",
                format!("unknown CNI_COMMAND {command_text:?}: expected ADD, DEL, CHECK, STATUS, GC or VERSION"),
            )
        })?;
        let attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let needs_netns = matches!(command, Command::Add | Command::Check);

        let container_id = non_empty("CNI_CONTAINERID");
        let netns = non_empty("CNI_NETNS");
        let ifname = non_empty("CNI_IFNAME");
        let mut missing = Vec::new();
        if attachment && container_id.is_none() {
            missing.push("CNI_CONTAINERID");
        }
        if needs_netns && netns.is_none() {
            missing.push("CNI_NETNS");
        }
        if attachment && ifname.is_none() {
            missing.push("CNI_IFNAME");
        }
        if !missing.is_empty() {
            let names = missing.join(", ");
            return Err(invalid(
                &names,
                format!("{names} must be set for {command}"),
            ));
        }
        if let Some(id) = &container_id {
            validate_container_id(id)?;
        }
        if let Some(name) = &ifname {
            validate_ifname(name)?;
        }
        let args = parse_cni_args(&var("CNI_ARGS").unwrap_or_default())?;
        let arg = |key: &str| args.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let pod = match (arg("K8S_POD_NAMESPACE"), arg("K8S_POD_NAME")) {
            (Some(namespace), Some(name)) => Some(PodRef {
                namespace,
                name,
                uid: arg("K8S_POD_UID"),
                infra_container_id: arg("K8S_POD_INFRA_CONTAINER_ID"),
            }),
            _ if needs_netns => {
                return Err(invalid(
                    "CNI_ARGS",
                    format!("CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME for {command}"),
                ));
            }
            _ => None,
        };
        let path = var("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            pod,
            path,
        })
    }
}

/// Parses `CNI_ARGS`: `KEY=VALUE` pairs separated by `;` (empty pairs ignored).
pub fn parse_cni_args(text: &str) -> Result<Vec<(String, String)>, CniError> {
    text.split(';')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(invalid(
                "CNI_ARGS",
                format!("malformed CNI_ARGS pair {pair:?}: expected KEY=VALUE"),
            )),
        })
        .collect()
}

/// Spec: not empty, an alphanumeric first character, then alphanumerics, `_`, `.` or `-`.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(invalid(
            "CNI_CONTAINERID",
            format!("invalid container id {id:?}"),
        ))
    }
}

/// Linux interface names: 1-15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let ok = name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "CNI_IFNAME",
            format!("invalid interface name {name:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=net2;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1",
        ),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut pairs: Vec<_> = ADD
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        pairs.extend(overrides.iter().filter(|(_, v)| !v.is_empty()));
        pairs
    }

    #[test]
    fn full_add_environment() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id.as_deref(), Some("abc123"));
        assert_eq!(e.netns.as_deref(), Some("/var/run/netns/x"));
        assert_eq!(e.ifname.as_deref(), Some("eth0"));
        assert_eq!(
            e.pod,
            Some(PodRef {
                namespace: "net2".into(),
                name: "web-0".into(),
                uid: Some("u-1".into()),
                infra_container_id: Some("abc123".into()),
            })
        );
        assert_eq!(e.path, ["/opt/cni/bin", "/usr/lib/cni"]);
    }

    #[test]
    fn del_needs_no_netns_nor_pod() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
        assert_eq!(e.pod, None);
        let e = env(&[("CNI_COMMAND", "STATUS")]).unwrap();
        assert_eq!(e.command, Command::Status);
    }

    #[test]
    fn invalid_environments_name_the_variable() {
        let code_and_msg = |pairs: Vec<(&str, &str)>| {
            let err = env(&pairs).unwrap_err();
            assert_eq!(err.code, CniError::INVALID_ENVIRONMENT);
            err.msg
        };
        assert!(code_and_msg(with(&[("CNI_COMMAND", "")])).contains("CNI_COMMAND"));
        assert!(code_and_msg(with(&[("CNI_COMMAND", "FROB")])).contains("CNI_COMMAND"));
        let msg = code_and_msg(with(&[("CNI_CONTAINERID", ""), ("CNI_NETNS", "")]));
        assert!(
            msg.contains("CNI_CONTAINERID") && msg.contains("CNI_NETNS"),
            "{msg}"
        );
        assert!(code_and_msg(with(&[("CNI_CONTAINERID", "-bad")])).contains("CNI_CONTAINERID"));
        assert!(
            code_and_msg(with(&[("CNI_IFNAME", "averyveryverylongname")])).contains("CNI_IFNAME")
        );
        assert!(code_and_msg(with(&[("CNI_IFNAME", "a/b")])).contains("CNI_IFNAME"));
        assert!(code_and_msg(with(&[("CNI_ARGS", "K8S_POD_NAMESPACE=a")])).contains("CNI_ARGS"));
        assert!(
            code_and_msg(with(&[(
                "CNI_ARGS",
                "K8S_POD_NAMESPACE=a;oops;K8S_POD_NAME=b"
            )]))
            .contains("CNI_ARGS")
        );
    }

    #[test]
    fn cni_args_parsing() {
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
        assert_eq!(
            parse_cni_args("A=1;;B=x=y").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(parse_cni_args("=1").is_err());
    }
}

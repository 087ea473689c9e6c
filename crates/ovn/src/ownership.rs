//! Who owns a row in the shared Northbound database, and the names and keys
//! rovn must never use.
//!
//! Neutron (ML2/OVN) recognises its rows by `neutron:*` keys in
//! `external_ids` and rewrites them at will; rows we create carry our own
//! marker and nothing of Neutron's. Every cleanup rovn does selects rows by
//! [`is_ours`], never by name.

use std::collections::BTreeMap;

use uuid::Uuid;

/// The `external_ids` key marking a row as created by rovn.
pub const OWNER_KEY: &str = "rovn:owner";
/// The value of [`OWNER_KEY`] on our rows.
pub const OWNER: &str = "rovn";
/// `external_ids` key: the kind of Kubernetes object the row belongs to
/// (`vpc`, `subnet`, `pod`).
pub const KIND_KEY: &str = "rovn:kind";
/// `external_ids` key: the name of that object (`namespace/name` for pods).
pub const OBJECT_KEY: &str = "rovn:object";

/// `external_ids` key Neutron puts on its routers (the router's display name).
pub const NEUTRON_ROUTER_NAME: &str = "neutron:router_name";
/// `external_ids` key Neutron puts on its networks' switches (display name).
pub const NEUTRON_NETWORK_NAME: &str = "neutron:network_name";
/// `external_ids` key on Neutron's router ports: the subnets they serve.
pub const NEUTRON_SUBNET_IDS: &str = "neutron:subnet_ids";

/// Whether rovn created this row.
pub fn is_ours(external_ids: &BTreeMap<String, String>) -> bool {
    external_ids.get(OWNER_KEY).map(String::as_str) == Some(OWNER)
}

/// Whether this is a Neutron router (only those are imported as Vpcs).
pub fn is_neutron_router(external_ids: &BTreeMap<String, String>) -> bool {
    external_ids.contains_key(NEUTRON_ROUTER_NAME)
}

/// Whether any Neutron key is on the row (then rovn never writes to it).
pub fn is_neutron_owned(external_ids: &BTreeMap<String, String>) -> bool {
    external_ids.keys().any(|k| k.starts_with("neutron:"))
}

/// The `external_ids` every row of ours carries: the owner marker, the kind
/// and name of the Kubernetes object it belongs to.
pub fn our_external_ids(kind: &str, object: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (OWNER_KEY.to_string(), OWNER.to_string()),
        (KIND_KEY.to_string(), kind.to_string()),
        (OBJECT_KEY.to_string(), object.to_string()),
    ])
}

/// A name or key rovn must not write, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reserved {
    /// The name follows one of Neutron's naming patterns.
    #[error("name {name:?} is reserved for Neutron ({pattern})")]
    NeutronName {
        /// The refused name.
        name: String,
        /// The Neutron pattern it matches.
        pattern: &'static str,
    },
    /// The `external_ids` key belongs to Neutron.
    #[error("external_ids key {0:?} belongs to Neutron")]
    NeutronKey(String),
}

/// Refuses names that could collide with Neutron's: `neutron-*`,
/// `provnet-*`, `lrp-<uuid>`, bare UUIDs (port names), `pg_*` and
/// `neutron_pg_drop` (security groups).
pub fn check_name(name: &str) -> Result<(), Reserved> {
    let reserved = |pattern| {
        Err(Reserved::NeutronName {
            name: name.to_string(),
            pattern,
        })
    };
    if name.starts_with("neutron-") {
        return reserved("neutron-<uuid>");
    }
    if name.starts_with("provnet-") {
        return reserved("provnet-<uuid>");
    }
    if name == "neutron_pg_drop" || name.starts_with("pg_") {
        return reserved("pg_<security group>");
    }
    if let Some(rest) = name.strip_prefix("lrp-")
        && Uuid::parse_str(rest).is_ok()
    {
        return reserved("lrp-<uuid>");
    }
    if Uuid::parse_str(name).is_ok() {
        return reserved("<port uuid>");
    }
    Ok(())
}

/// Refuses `external_ids` that would make a row look like Neutron's:
/// `neutron:*` keys and the DHCP keys `subnet_id`/`port_id`.
pub fn check_external_ids(external_ids: &BTreeMap<String, String>) -> Result<(), Reserved> {
    match external_ids
        .keys()
        .find(|k| k.starts_with("neutron:") || *k == "subnet_id" || *k == "port_id")
    {
        Some(key) => Err(Reserved::NeutronKey(key.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutron_names_are_refused() {
        for name in [
            "neutron-22040ed5-0598-4f77-bffd-e7fd4db47e93",
            "provnet-1",
            "lrp-22040ed5-0598-4f77-bffd-e7fd4db47e93",
            "22040ed5-0598-4f77-bffd-e7fd4db47e93",
            "neutron_pg_drop",
            "pg_22040ed5_0598",
        ] {
            assert!(check_name(name).is_err(), "{name} must be refused");
        }
        for name in [
            "net2",
            "ovn-cluster",
            "rovn-net2-lrp",
            "lrp-net2",
            "web.default",
        ] {
            assert!(check_name(name).is_ok(), "{name} must be allowed");
        }
    }

    #[test]
    fn ownership_is_read_from_external_ids() {
        let ours = our_external_ids("subnet", "net2");
        assert!(is_ours(&ours));
        assert!(check_external_ids(&ours).is_ok());
        assert!(!is_neutron_owned(&ours));
        let neutron = BTreeMap::from([(NEUTRON_ROUTER_NAME.to_string(), "router1".to_string())]);
        assert!(is_neutron_router(&neutron) && is_neutron_owned(&neutron) && !is_ours(&neutron));
        for key in ["neutron:revision_number", "subnet_id", "port_id"] {
            let ids = BTreeMap::from([(key.to_string(), "x".to_string())]);
            assert!(check_external_ids(&ids).is_err());
        }
    }
}

//! Who owns a row in the shared Northbound database: the [`Owner`] identity
//! written to and read from `external_ids`, the proof [`Mine`] that a row
//! read from the database is ours, and the names and keys rovn must never use.
//!
//! Neutron (ML2/OVN) recognises its rows by `neutron:*` keys in
//! `external_ids` and rewrites them at will; rows we create carry our marker
//! ([`OWNER_KEY`]`=`[`OWNER`]), the kind and the name of the Kubernetes
//! object they belong to, and nothing of Neutron's.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use uuid::Uuid;

use crate::Table;
use crate::nb::{
    Acl, AddressSet, DhcpOptions, LoadBalancer, LoadBalancerGroup, LogicalRouter,
    LogicalRouterPort, LogicalRouterStaticRoute, LogicalSwitch, LogicalSwitchPort, Nat, PortGroup,
};

/// The `external_ids` key marking a row as created by rovn.
pub const OWNER_KEY: &str = "rovn:owner";
/// The value of [`OWNER_KEY`] on our rows.
pub const OWNER: &str = "rovn";
/// `external_ids` key: the [`Kind`] of Kubernetes object the row belongs to.
pub const KIND_KEY: &str = "rovn:kind";
/// `external_ids` key: the name of that object (`namespace/name` for pods).
pub const OBJECT_KEY: &str = "rovn:object";
/// `external_ids` key of a pod's port: the pod's namespace.
pub const POD_NAMESPACE_KEY: &str = "rovn:pod_namespace";
/// `external_ids` key of a pod's port: the pod's name.
pub const POD_NAME_KEY: &str = "rovn:pod_name";
/// `external_ids` key of a pod's port: the pod's uid (tells a re-created
/// pod of the same name from the one the port was made for).
pub const POD_UID_KEY: &str = "rovn:pod_uid";
/// `external_ids` key of a pod's port: the Subnet the addresses come from.
pub const SUBNET_KEY: &str = "rovn:subnet";
/// `external_ids` key of a Service's load balancer: the VPC it serves.
pub const VPC_KEY: &str = "rovn:vpc";
/// Prefix of the names of our rows that have no `external_ids`
/// (Load_Balancer_Group): `rovn/<kind>/<object>` records the owner.
pub const NAME_PREFIX: &str = "rovn/";

/// `external_ids` key Neutron puts on its routers (the router's display name).
pub const NEUTRON_ROUTER_NAME: &str = "neutron:router_name";
/// `external_ids` key Neutron puts on its networks' switches (display name).
pub const NEUTRON_NETWORK_NAME: &str = "neutron:network_name";
/// `external_ids` key on Neutron's router ports: the subnets they serve.
pub const NEUTRON_SUBNET_IDS: &str = "neutron:subnet_ids";

/// Whether rovn created this row (it carries our marker).
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

/// The kind of Kubernetes object a row of ours belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The Logical_Router of one of our own Vpcs.
    Vpc,
    /// The switch, router port and router-type switch port of a Subnet.
    Subnet,
    /// The Logical_Switch_Port of a pod.
    Pod,
    /// The Load_Balancers of a Service (one per protocol and VPC).
    Service,
    /// The Load_Balancer_Group of a VPC's Services, applied to the VPC's
    /// switches of ours (the object is the VPC).
    ServiceGroup,
    /// The path between the nodes and a VPC (the object is the VPC): its
    /// node switch, router port, the nodes' switch ports and the routes to
    /// the nodes' addresses.
    NodeLink,
    /// The Port_Group (pods selected), Address_Sets (peers) and ACLs of a
    /// NetworkPolicy (the object is `namespace/name`).
    NetworkPolicy,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Vpc,
        Kind::Subnet,
        Kind::Pod,
        Kind::Service,
        Kind::ServiceGroup,
        Kind::NodeLink,
        Kind::NetworkPolicy,
    ];

    /// The value of [`KIND_KEY`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::ServiceGroup => "service-group",
            Kind::NodeLink => "node-link",
            Kind::NetworkPolicy => "network-policy",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// The Kubernetes object a row of ours belongs to: written to every row we
/// insert, read back from `external_ids`, and part of the condition of every
/// update, mutation and delete of our rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    kind: Kind,
    object: String,
}

impl Owner {
    /// The owner of kind `kind` named `object`.
    pub fn new(kind: Kind, object: impl Into<String>) -> Self {
        Self {
            kind,
            object: object.into(),
        }
    }

    /// Our Vpc `name` (its router).
    pub fn vpc(name: &str) -> Self {
        Self::new(Kind::Vpc, name)
    }

    /// Subnet `name` (its switch and router ports).
    pub fn subnet(name: &str) -> Self {
        Self::new(Kind::Subnet, name)
    }

    /// Pod `namespace/name` (its switch port).
    pub fn pod(namespace: &str, name: &str) -> Self {
        Self::new(Kind::Pod, format!("{namespace}/{name}"))
    }

    /// Service `namespace/name` (its load balancers).
    pub fn service(namespace: &str, name: &str) -> Self {
        Self::new(Kind::Service, format!("{namespace}/{name}"))
    }

    /// The Services of VPC `vpc` (its load balancer group).
    pub fn service_group(vpc: &str) -> Self {
        Self::new(Kind::ServiceGroup, vpc)
    }

    /// The path between the nodes and VPC `vpc`.
    pub fn node_link(vpc: &str) -> Self {
        Self::new(Kind::NodeLink, vpc)
    }

    /// NetworkPolicy `namespace/name` (its port group, address sets, ACLs).
    pub fn network_policy(namespace: &str, name: &str) -> Self {
        Self::new(Kind::NetworkPolicy, format!("{namespace}/{name}"))
    }

    /// The kind of object.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The object's name (`namespace/name` for pods).
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The owner recorded in `external_ids`: our marker, a known kind and an
    /// object; `None` for rows that are not ours.
    pub fn of(external_ids: &BTreeMap<String, String>) -> Option<Owner> {
        if !is_ours(external_ids) {
            return None;
        }
        let kind = Kind::parse(external_ids.get(KIND_KEY)?)?;
        let object = external_ids.get(OBJECT_KEY)?;
        Some(Owner::new(kind, object.as_str()))
    }

    /// Whether `external_ids` record this owner.
    pub fn owns(&self, external_ids: &BTreeMap<String, String>) -> bool {
        Owner::of(external_ids).as_ref() == Some(self)
    }

    /// The name recording this owner on a row without `external_ids`:
    /// `rovn/<kind>/<object>`.
    pub fn row_name(&self) -> String {
        format!("{NAME_PREFIX}{}/{}", self.kind.as_str(), self.object)
    }

    /// The owner recorded in a name made by [`Owner::row_name`].
    pub fn of_name(name: &str) -> Option<Owner> {
        let (kind, object) = name.strip_prefix(NAME_PREFIX)?.split_once('/')?;
        if object.is_empty() {
            return None;
        }
        Some(Owner::new(Kind::parse(kind)?, object))
    }

    /// The keys recording this owner: the marker, the kind and the object.
    pub fn external_ids(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_KEY.to_string(), OWNER.to_string()),
            (KIND_KEY.to_string(), self.kind.as_str().to_string()),
            (OBJECT_KEY.to_string(), self.object.clone()),
        ])
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.object)
    }
}

/// A typed row whose ownership can be read and written (every Northbound
/// table rovn writes has `external_ids`).
pub trait Owned: Table + Clone {
    /// The row's `external_ids`.
    fn external_ids(&self) -> &BTreeMap<String, String>;
    /// The row's `external_ids`, to fill before an insert.
    fn external_ids_mut(&mut self) -> &mut BTreeMap<String, String>;
    /// The row's name, for tables whose names could collide with Neutron's.
    fn name(&self) -> Option<&str>;
    /// Refuses column values that would collide with Neutron's rows (for
    /// ACLs: a priority outside [`ACL_PRIORITIES`]).
    fn check_columns(&self) -> Result<(), Reserved> {
        Ok(())
    }
}

macro_rules! owned {
    ($($table:ty $(, $name:ident)?;)*) => {$(
        impl Owned for $table {
            fn external_ids(&self) -> &BTreeMap<String, String> {
                &self.external_ids
            }
            fn external_ids_mut(&mut self) -> &mut BTreeMap<String, String> {
                &mut self.external_ids
            }
            fn name(&self) -> Option<&str> {
                owned!(@name self $(, $name)?)
            }
        }
    )*};
    (@name $self:ident, $name:ident) => { Some($self.$name.as_str()) };
    (@name $self:ident) => { None };
}

owned! {
    LogicalRouter, name;
    LogicalRouterPort, name;
    LogicalSwitch, name;
    LogicalSwitchPort, name;
    PortGroup, name;
    AddressSet, name;
    LoadBalancer, name;
    DhcpOptions;
    LogicalRouterStaticRoute;
    Nat;
}

/// The band of ACL priorities of ours: above Neutron's security groups
/// (1002) and `neutron_pg_drop` (1001), so that neither ever ties with ours.
/// (Our ACLs are on port groups holding only our pods' ports, and Neutron's
/// only VM ports: the band keeps a mistake on either side visible.)
pub const ACL_PRIORITIES: std::ops::RangeInclusive<i64> = 2000..=2099;

impl Owned for Acl {
    fn external_ids(&self) -> &BTreeMap<String, String> {
        &self.external_ids
    }
    fn external_ids_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.external_ids
    }
    fn name(&self) -> Option<&str> {
        None
    }
    fn check_columns(&self) -> Result<(), Reserved> {
        if ACL_PRIORITIES.contains(&self.priority) {
            Ok(())
        } else {
            Err(Reserved::AclPriority(self.priority))
        }
    }
}

/// A row read from the database that is ours: it carries our marker and an
/// [`Owner`], and no key of Neutron's. Updates, mutations and deletes of our
/// rows take a `Mine`, so a Neutron row cannot be handed to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Mine<T> {
    row: T,
    owner: Owner,
}

impl<T: Owned> Mine<T> {
    /// The row as ours, or `None` when it is not (no marker, an unknown
    /// kind, or a Neutron key).
    pub fn claim(row: T) -> Option<Self> {
        if is_neutron_owned(row.external_ids()) {
            return None;
        }
        let owner = Owner::of(row.external_ids())?;
        Some(Self { row, owner })
    }
}

impl<T> Mine<T> {
    /// Who owns the row.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The typed row.
    pub fn into_row(self) -> T {
        self.row
    }
}

impl Mine<LoadBalancerGroup> {
    /// The group as ours, or `None` when its name is not one of ours
    /// ([`Owner::row_name`]: the table has no `external_ids`).
    pub fn claim_group(row: LoadBalancerGroup) -> Option<Self> {
        let owner = Owner::of_name(&row.name)?;
        Some(Self { row, owner })
    }
}

impl<T> Deref for Mine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.row
    }
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
    /// An ACL priority outside our band [`ACL_PRIORITIES`].
    #[error("ACL priority {0} is outside rovn's band 2000-2099 (Neutron uses 1001 and 1002)")]
    AclPriority(i64),
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
        let owner = Owner::subnet("net2");
        let ours = owner.external_ids();
        assert!(is_ours(&ours) && owner.owns(&ours));
        assert_eq!(Owner::of(&ours), Some(owner.clone()));
        assert!(!Owner::subnet("net3").owns(&ours));
        assert!(!Owner::vpc("net2").owns(&ours));
        let pod = Owner::pod("ns", "web");
        assert_eq!(pod.object(), "ns/web");
        assert_eq!(Owner::of(&pod.external_ids()), Some(pod));
        let mut unknown = ours.clone();
        unknown.insert(KIND_KEY.to_string(), "from-a-newer-rovn".to_string());
        assert_eq!(Owner::of(&unknown), None);
        assert!(check_external_ids(&ours).is_ok());
        assert!(!is_neutron_owned(&ours));
        let neutron = BTreeMap::from([(NEUTRON_ROUTER_NAME.to_string(), "router1".to_string())]);
        assert!(is_neutron_router(&neutron) && is_neutron_owned(&neutron) && !is_ours(&neutron));
        for key in ["neutron:revision_number", "subnet_id", "port_id"] {
            let ids = BTreeMap::from([(key.to_string(), "x".to_string())]);
            assert!(check_external_ids(&ids).is_err());
        }
    }

    #[test]
    fn only_our_rows_without_neutron_keys_are_mine() {
        let ours = LogicalSwitch {
            name: "net2".to_string(),
            external_ids: Owner::subnet("net2").external_ids(),
            ..LogicalSwitch::default()
        };
        let mine = Mine::claim(ours.clone()).expect("ours");
        assert_eq!(mine.owner(), &Owner::subnet("net2"));
        assert_eq!(mine.name, "net2");
        let mut tagged = ours.clone();
        tagged
            .external_ids
            .insert(NEUTRON_NETWORK_NAME.to_string(), "net-a".to_string());
        assert_eq!(
            Mine::claim(tagged),
            None,
            "a row with a Neutron key is never ours"
        );
        let neutron = LogicalRouter {
            name: "neutron-r".to_string(),
            external_ids: BTreeMap::from([(NEUTRON_ROUTER_NAME.to_string(), "r".to_string())]),
            ..LogicalRouter::default()
        };
        assert_eq!(Mine::claim(neutron), None);
        assert_eq!(Mine::claim(LogicalSwitch::default()), None);
    }

    #[test]
    fn services_own_load_balancers_and_groups_are_ours_by_name() {
        let service = Owner::service("default", "web");
        assert_eq!(service.object(), "default/web");
        assert_eq!(Owner::of(&service.external_ids()), Some(service.clone()));
        let lb = LoadBalancer {
            name: "rovn/service/default/web/tcp/net".to_string(),
            external_ids: service.external_ids(),
            ..LoadBalancer::default()
        };
        assert_eq!(Mine::claim(lb).expect("ours").owner(), &service);

        let owner = Owner::service_group("neutron-r1");
        assert_eq!(owner.row_name(), "rovn/service-group/neutron-r1");
        assert!(check_name(&owner.row_name()).is_ok());
        assert_eq!(Owner::of_name(&owner.row_name()), Some(owner.clone()));
        let group = LoadBalancerGroup {
            name: owner.row_name(),
            ..LoadBalancerGroup::default()
        };
        assert_eq!(Mine::claim_group(group).expect("ours").owner(), &owner);
        for foreign in [
            "",
            "octavia-lbg",
            "rovn/",
            "rovn/service-group/",
            "rovn/unknown/x",
            "neutron-r1",
        ] {
            let group = LoadBalancerGroup {
                name: foreign.to_string(),
                ..LoadBalancerGroup::default()
            };
            assert_eq!(Mine::claim_group(group), None, "{foreign:?} is not ours");
        }
    }
}

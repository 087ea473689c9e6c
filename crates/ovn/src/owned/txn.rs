//! [`OwnedTxn`]: the only transactions rovn builds on the Northbound
//! database, and [`Gateway`], the only way to commit them.
//!
//! - Inserts carry the owner's keys (marker, kind, object) whatever the row
//!   held, and are refused for names and keys reserved for Neutron.
//! - Updates, mutations and deletes take a [`Mine`] (a row proven ours when
//!   it was read) and always carry the owner condition (`external_ids`
//!   includes the owner's keys), so a row that stopped being ours between the
//!   read and the commit is left alone.
//! - The one write to a row that is not ours is adding or removing our own
//!   row in a router's set column: our router port in `ports`
//!   ([`OwnedTxn::attach_router_port`], [`OwnedTxn::detach_router_port`]) and
//!   our static route in `static_routes` ([`OwnedTxn::attach_static_route`],
//!   [`OwnedTxn::detach_static_route`]).
//! - Load_Balancer_Group rows have no `external_ids`: ours are named
//!   `rovn/<kind>/<object>` ([`Owner::row_name`]), and every write to one
//!   carries the name as its condition; their members are our load
//!   balancers only.

use ovsdb::{
    Atom, Condition, Mutation, NamedUuid, Operation, Row, TxnBuilder, TxnResult, Uuid, Value,
    WaitUntil,
};

use super::owner::{Mine, Owned, Owner, Reserved, check_external_ids, check_name};
use crate::Table;
use crate::nb::{
    DATABASE, LoadBalancer, LoadBalancerGroup, LogicalRouter, LogicalRouterPort,
    LogicalRouterStaticRoute,
};

/// An operation of an [`OwnedTxn`], to read its outcome in [`Committed`] or
/// to tell whether it is the one that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op(usize);

impl Op {
    /// Whether the commit failed at this operation (e.g. a precondition).
    pub fn failed(self, error: &ovsdb::Error) -> bool {
        matches!(error, ovsdb::Error::Txn { index, .. } if *index == self.0)
    }
}

/// A write the gateway refuses to build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A name or key reserved for Neutron.
    #[error(transparent)]
    Reserved(#[from] Reserved),
    /// An update of `external_ids` that would drop the owner's keys.
    #[error("an update of {table} {uuid} would drop the owner keys of {owner}")]
    OwnerDropped {
        /// The table.
        table: &'static str,
        /// The row.
        uuid: Uuid,
        /// Its owner.
        owner: String,
    },
}

/// Our router port to attach: one inserted in the same transaction, or one
/// of ours already in the database.
#[derive(Debug, Clone, Copy)]
pub enum RouterPort<'a> {
    /// Inserted by this transaction.
    Inserted(&'a NamedUuid),
    /// Already in the database.
    Ours(&'a Mine<LogicalRouterPort>),
}

/// A Northbound transaction that can only write rovn's own rows (see the
/// module documentation).
#[derive(Debug, Clone)]
pub struct OwnedTxn {
    txn: TxnBuilder,
}

impl Default for OwnedTxn {
    fn default() -> Self {
        Self::new()
    }
}

fn owner_condition(owner: &Owner) -> Condition {
    Condition::includes("external_ids", Value::map(owner.external_ids()))
}

fn ours_condition() -> Condition {
    Condition::includes(
        "external_ids",
        Value::map([(super::owner::OWNER_KEY, super::owner::OWNER)]),
    )
}

fn group_conditions(group: &Mine<LoadBalancerGroup>) -> Vec<Condition> {
    vec![
        Condition::uuid(group.uuid),
        Condition::eq("name", group.owner().row_name().as_str()),
    ]
}

impl OwnedTxn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self {
            txn: TxnBuilder::new(DATABASE),
        }
    }

    /// Whether no write was added (comments and preconditions do not count).
    pub fn is_empty(&self) -> bool {
        self.txn
            .operations()
            .iter()
            .all(|op| matches!(op, Operation::Comment(_) | Operation::Wait { .. }))
    }

    /// The operations so far, for inspection in tests.
    pub fn operations(&self) -> &[Operation] {
        self.txn.operations()
    }

    /// The operations so far as `<verb> <table>` (`insert Logical_Switch`, `mutate
    /// Logical_Router`, ...), for tests that check what a plan writes.
    pub fn outline(&self) -> Vec<String> {
        self.operations()
            .iter()
            .map(|op| match op {
                Operation::Insert { table, .. } => format!("insert {table}"),
                Operation::Update { table, .. } => format!("update {table}"),
                Operation::Mutate { table, .. } => format!("mutate {table}"),
                Operation::Delete { table, .. } => format!("delete {table}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn push(&mut self, op: Operation) -> Op {
        self.txn.push(op);
        Op(self.txn.operations().len() - 1)
    }

    /// Adds a comment, shown in the server's log.
    pub fn comment(&mut self, text: impl Into<String>) {
        self.txn.comment(text);
    }

    /// Precondition: no row of table `T` is named `name` (the whole
    /// transaction fails at this operation otherwise).
    pub fn require_no_row_named<T: Owned>(&mut self, name: &str) -> Op {
        self.push(Operation::Wait {
            table: T::NAME.to_string(),
            conditions: vec![Condition::eq("name", name)],
            columns: vec!["name".to_string()],
            until: WaitUntil::Equal,
            rows: Vec::new(),
            timeout_ms: Some(0),
        })
    }

    /// Precondition: row `uuid` of table `T`, if it exists, still carries
    /// our marker (the whole transaction fails at this operation otherwise).
    pub fn require_still_ours<T: Owned>(&mut self, uuid: Uuid) -> Op {
        self.push(Operation::Wait {
            table: T::NAME.to_string(),
            conditions: vec![
                Condition::uuid(uuid),
                Condition::new(
                    "external_ids",
                    ovsdb::Function::Excludes,
                    Value::map([(super::owner::OWNER_KEY, super::owner::OWNER)]),
                ),
            ],
            columns: vec!["_uuid".to_string()],
            until: WaitUntil::Equal,
            rows: Vec::new(),
            timeout_ms: Some(0),
        })
    }

    /// Inserts `row` as `owner`'s: the owner's keys are written over the
    /// row's `external_ids` (other `rovn:` keys are kept). Refused for a name
    /// of Neutron's patterns or a Neutron key.
    pub fn insert<T: Owned>(&mut self, owner: &Owner, row: &T) -> Result<NamedUuid, Refused> {
        self.insert_referencing(owner, row, None)
    }

    /// Like [`OwnedTxn::insert`], with reference column `column` holding
    /// rows inserted earlier in this transaction (e.g. a switch and its
    /// first port).
    pub fn insert_referencing<T: Owned>(
        &mut self,
        owner: &Owner,
        row: &T,
        references: Option<(&str, &[&NamedUuid])>,
    ) -> Result<NamedUuid, Refused> {
        let mut row = row.clone();
        if let Some(name) = row.name() {
            check_name(name)?;
        }
        row.check_columns()?;
        row.external_ids_mut().extend(owner.external_ids());
        check_external_ids(row.external_ids())?;
        let mut columns = row.to_row();
        if let Some((column, refs)) = references {
            columns.set(column, Value::set(refs.iter().copied()));
        }
        Ok(self.txn.insert(T::NAME, columns))
    }

    /// Writes `columns` of `desired` to our row `row`, while it is still
    /// the same owner's. Refused if `external_ids` is written without the
    /// owner's keys or with a Neutron key.
    pub fn update<T: Owned>(
        &mut self,
        row: &Mine<T>,
        desired: &T,
        columns: &[&str],
    ) -> Result<Op, Refused> {
        desired.check_columns()?;
        if columns.contains(&"external_ids") {
            check_external_ids(desired.external_ids())?;
            if !row.owner().owns(desired.external_ids()) {
                return Err(Refused::OwnerDropped {
                    table: T::NAME,
                    uuid: row.uuid(),
                    owner: row.owner().to_string(),
                });
            }
        }
        let all = desired.to_row();
        let mut written = Row::new();
        for column in columns {
            if let Some(value) = all.get(column) {
                written.set(*column, value.clone());
            }
        }
        Ok(self.push(Operation::Update {
            table: T::NAME.to_string(),
            conditions: vec![Condition::uuid(row.uuid()), owner_condition(row.owner())],
            row: written,
        }))
    }

    /// Adds `reference` to set column `column` of our row `row`.
    pub fn add_reference<T: Owned>(
        &mut self,
        row: &Mine<T>,
        column: &str,
        reference: impl Into<Atom>,
    ) -> Op {
        self.mutate_ours(
            T::NAME,
            vec![Condition::uuid(row.uuid()), owner_condition(row.owner())],
            Mutation::insert(column, Value::set([reference.into()])),
        )
    }

    /// Removes `reference` from set column `column` of every row of ours of
    /// table `T` holding it (the rows need not be in our replica yet).
    pub fn remove_reference_from_ours<T: Owned>(&mut self, column: &str, reference: Uuid) -> Op {
        self.mutate_ours(
            T::NAME,
            vec![
                Condition::includes(column, Value::set([reference])),
                ours_condition(),
            ],
            Mutation::delete(column, Value::set([reference])),
        )
    }

    fn mutate_ours(&mut self, table: &str, conditions: Vec<Condition>, mutation: Mutation) -> Op {
        self.push(Operation::Mutate {
            table: table.to_string(),
            conditions,
            mutations: vec![mutation],
        })
    }

    /// Deletes our row `row`, while it is still the same owner's.
    pub fn delete<T: Owned>(&mut self, row: &Mine<T>) -> Op {
        self.delete_inserted::<T>(row.owner(), row.uuid())
    }

    /// Deletes row `uuid` of table `T` that `owner` inserted in an earlier
    /// transaction (it may not be in our replica yet), while it is still
    /// that owner's.
    pub fn delete_inserted<T: Owned>(&mut self, owner: &Owner, uuid: Uuid) -> Op {
        self.push(Operation::Delete {
            table: T::NAME.to_string(),
            conditions: vec![Condition::uuid(uuid), owner_condition(owner)],
        })
    }

    /// Inserts `owner`'s Load_Balancer_Group (named [`Owner::row_name`])
    /// holding our load balancers `members`.
    pub fn insert_group(
        &mut self,
        owner: &Owner,
        members: &[&Mine<LoadBalancer>],
    ) -> Result<NamedUuid, Refused> {
        let group = LoadBalancerGroup {
            name: owner.row_name(),
            load_balancer: members.iter().map(|lb| lb.uuid).collect(),
            ..LoadBalancerGroup::default()
        };
        check_name(&group.name)?;
        Ok(self.txn.insert(LoadBalancerGroup::NAME, group.to_row()))
    }

    /// Makes our load balancers `members` the only members of our group
    /// `group`, while it still has our name.
    pub fn set_group_members(
        &mut self,
        group: &Mine<LoadBalancerGroup>,
        members: &[&Mine<LoadBalancer>],
    ) -> Op {
        let mut row = Row::new();
        row.set(
            "load_balancer",
            Value::set(members.iter().map(|lb| Atom::from(lb.uuid))),
        );
        self.push(Operation::Update {
            table: LoadBalancerGroup::NAME.to_string(),
            conditions: group_conditions(group),
            row,
        })
    }

    /// Deletes our group `group`, while it still has our name (the
    /// transaction fails while a switch still references it).
    pub fn delete_group(&mut self, group: &Mine<LoadBalancerGroup>) -> Op {
        self.push(Operation::Delete {
            table: LoadBalancerGroup::NAME.to_string(),
            conditions: group_conditions(group),
        })
    }

    /// The one write to a row that may not be ours: adds our router port
    /// `port` to `router`'s `ports`.
    pub fn attach_router_port(&mut self, router: &LogicalRouter, port: RouterPort<'_>) -> Op {
        let port = match port {
            RouterPort::Inserted(named) => Atom::from(named),
            RouterPort::Ours(mine) => Atom::from(mine.uuid),
        };
        self.mutate_router(router, Mutation::insert("ports", Value::set([port])))
    }

    /// Removes our router port `port` from `router`'s `ports` (OVN then
    /// drops the unreferenced port row).
    pub fn detach_router_port(
        &mut self,
        router: &LogicalRouter,
        port: &Mine<LogicalRouterPort>,
    ) -> Op {
        self.mutate_router(router, Mutation::delete("ports", Value::set([port.uuid])))
    }

    /// The same one write for routes: inserts `owner`'s static route `route`
    /// and adds it to `router`'s `static_routes` (the table is not a root
    /// set: a route lives as long as a router holds it).
    pub fn attach_static_route(
        &mut self,
        router: &LogicalRouter,
        owner: &Owner,
        route: &LogicalRouterStaticRoute,
    ) -> Result<Op, Refused> {
        let named = self.insert(owner, route)?;
        Ok(self.mutate_router(
            router,
            Mutation::insert("static_routes", Value::set([Atom::from(&named)])),
        ))
    }

    /// Removes our static route `route` from `router`'s `static_routes`
    /// (OVN then drops the unreferenced row).
    pub fn detach_static_route(
        &mut self,
        router: &LogicalRouter,
        route: &Mine<LogicalRouterStaticRoute>,
    ) -> Op {
        self.mutate_router(
            router,
            Mutation::delete("static_routes", Value::set([route.uuid])),
        )
    }

    fn mutate_router(&mut self, router: &LogicalRouter, mutation: Mutation) -> Op {
        self.push(Operation::Mutate {
            table: LogicalRouter::NAME.to_string(),
            conditions: vec![Condition::uuid(router.uuid)],
            mutations: vec![mutation],
        })
    }
}

/// The outcome of a committed [`OwnedTxn`].
#[derive(Debug, Clone)]
pub struct Committed(TxnResult);

impl Committed {
    /// How many rows operation `op` changed (`None` for inserts and waits).
    pub fn count(&self, op: Op) -> Option<u64> {
        self.0.results.get(op.0)?.count()
    }

    /// The uuid of a row inserted under `name`.
    pub fn uuid_of(&self, name: &NamedUuid) -> Option<Uuid> {
        self.0.uuid_of(name)
    }
}

/// The Northbound write gateway: commits [`OwnedTxn`]s, nothing else.
#[derive(Clone, Debug)]
pub struct Gateway {
    client: ovsdb::Client,
}

impl Gateway {
    /// A gateway writing through `client`.
    pub fn new(client: ovsdb::Client) -> Self {
        Self { client }
    }

    /// Commits `txn`.
    pub async fn commit(&self, txn: &OwnedTxn) -> ovsdb::Result<Committed> {
        self.client.commit(&txn.txn).await.map(Committed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::nb::{LogicalSwitch, LogicalSwitchPort};
    use crate::owned::owner::{NEUTRON_ROUTER_NAME, OWNER_KEY};

    fn switch(name: &str) -> LogicalSwitch {
        LogicalSwitch {
            uuid: Uuid::from_u128(7),
            name: name.to_string(),
            external_ids: Owner::subnet(name).external_ids(),
            ..LogicalSwitch::default()
        }
    }

    fn conditions(op: &Operation) -> &[Condition] {
        match op {
            Operation::Update { conditions, .. }
            | Operation::Mutate { conditions, .. }
            | Operation::Delete { conditions, .. } => conditions,
            other => panic!("not a conditional write: {other:?}"),
        }
    }

    #[test]
    fn inserts_carry_the_owner_and_refuse_neutron_names_and_keys() {
        let mut txn = OwnedTxn::new();
        let owner = Owner::pod("ns", "web");
        let port = LogicalSwitchPort {
            name: "web.ns".to_string(),
            external_ids: BTreeMap::from([("rovn:subnet".to_string(), "net2".to_string())]),
            ..LogicalSwitchPort::default()
        };
        txn.insert(&owner, &port).unwrap();
        let Operation::Insert { row, .. } = &txn.operations()[0] else {
            panic!("an insert");
        };
        let ids = row.get_str_map("external_ids");
        assert_eq!(ids.get(OWNER_KEY).map(String::as_str), Some("rovn"));
        assert_eq!(ids.get("rovn:object").map(String::as_str), Some("ns/web"));
        assert_eq!(ids.get("rovn:subnet").map(String::as_str), Some("net2"));

        let neutron_name = LogicalSwitch {
            name: "neutron-22040ed5-0598-4f77-bffd-e7fd4db47e93".to_string(),
            ..LogicalSwitch::default()
        };
        assert!(matches!(
            txn.insert(&Owner::subnet("x"), &neutron_name),
            Err(Refused::Reserved(_))
        ));
        let neutron_key = LogicalSwitch {
            name: "net9".to_string(),
            external_ids: BTreeMap::from([("neutron:network_name".to_string(), "n".to_string())]),
            ..LogicalSwitch::default()
        };
        assert!(txn.insert(&Owner::subnet("net9"), &neutron_key).is_err());
        assert_eq!(txn.operations().len(), 1, "refused inserts add nothing");
    }

    #[test]
    fn writes_to_our_rows_carry_the_owner_condition() {
        let mine = Mine::claim(switch("net2")).unwrap();
        let owner = Condition::includes("external_ids", Value::map(mine.owner().external_ids()));
        let mut txn = OwnedTxn::new();
        let mut desired = (*mine).clone();
        desired
            .other_config
            .insert("k".to_string(), "v".to_string());
        txn.update(&mine, &desired, &["other_config"]).unwrap();
        txn.add_reference(&mine, "ports", Uuid::from_u128(9));
        txn.delete(&mine);
        for op in txn.operations() {
            assert!(conditions(op).contains(&owner), "{op:?}");
            assert!(
                conditions(op).contains(&Condition::uuid(mine.uuid)),
                "{op:?}"
            );
        }
        let Operation::Update { row, .. } = &txn.operations()[0] else {
            panic!("an update");
        };
        assert_eq!(row.len(), 1, "only the named column is written");
        txn.remove_reference_from_ours::<LogicalSwitch>("ports", Uuid::from_u128(9));
        assert!(conditions(txn.operations().last().unwrap()).contains(&ours_condition()));
    }

    #[test]
    fn an_update_cannot_drop_the_owner_or_add_neutron_keys() {
        let mine = Mine::claim(switch("net2")).unwrap();
        let mut txn = OwnedTxn::new();
        let mut desired = (*mine).clone();
        desired.external_ids.clear();
        assert!(matches!(
            txn.update(&mine, &desired, &["external_ids"]),
            Err(Refused::OwnerDropped { .. })
        ));
        let mut desired = (*mine).clone();
        desired
            .external_ids
            .insert(NEUTRON_ROUTER_NAME.to_string(), "r".to_string());
        assert!(matches!(
            txn.update(&mine, &desired, &["external_ids"]),
            Err(Refused::Reserved(_))
        ));
        assert!(txn.is_empty());
    }

    /// A Neutron row cannot become a `Mine`, so it cannot be updated,
    /// mutated or deleted; the only write to a router's row is our port in
    /// its `ports`.
    #[test]
    fn neutron_rows_can_only_get_our_router_port() {
        let router = LogicalRouter {
            uuid: Uuid::from_u128(1),
            name: "neutron-r".to_string(),
            external_ids: BTreeMap::from([(NEUTRON_ROUTER_NAME.to_string(), "r".to_string())]),
            ..LogicalRouter::default()
        };
        assert!(Mine::claim(router.clone()).is_none());
        let port = LogicalRouterPort {
            uuid: Uuid::from_u128(2),
            name: "rovn-net2-1".to_string(),
            external_ids: Owner::subnet("net2").external_ids(),
            ..LogicalRouterPort::default()
        };
        let port = Mine::claim(port).unwrap();
        let mut txn = OwnedTxn::new();
        txn.attach_router_port(&router, RouterPort::Ours(&port));
        txn.detach_router_port(&router, &port);
        for op in txn.operations() {
            let Operation::Mutate {
                table, mutations, ..
            } = op
            else {
                panic!("a mutation: {op:?}");
            };
            assert_eq!(table, LogicalRouter::NAME);
            assert_eq!(mutations.len(), 1);
            assert_eq!(mutations[0].column, "ports");
            assert_eq!(
                mutations[0].value,
                Value::set([port.uuid]),
                "only our port's uuid"
            );
        }
    }

    /// Our groups are written only while they carry our name, and hold only
    /// our load balancers.
    #[test]
    fn group_writes_are_conditioned_on_our_name() {
        let owner = Owner::service_group("neutron-r1");
        let lb = LoadBalancer {
            uuid: Uuid::from_u128(3),
            name: "rovn/service/default/web/tcp/neutron-r1".to_string(),
            external_ids: Owner::service("default", "web").external_ids(),
            ..LoadBalancer::default()
        };
        let lb = Mine::claim(lb).unwrap();
        let mut txn = OwnedTxn::new();
        txn.insert_group(&owner, &[&lb]).unwrap();
        let Operation::Insert { row, .. } = &txn.operations()[0] else {
            panic!("an insert");
        };
        assert_eq!(row.get_str("name"), Some("rovn/service-group/neutron-r1"));
        assert_eq!(row.get("load_balancer"), Some(&Value::set([lb.uuid])));
        let group = Mine::claim_group(LoadBalancerGroup {
            uuid: Uuid::from_u128(4),
            name: owner.row_name(),
            ..LoadBalancerGroup::default()
        })
        .unwrap();
        txn.set_group_members(&group, &[&lb]);
        txn.delete_group(&group);
        for op in &txn.operations()[1..] {
            let conditions = conditions(op);
            assert!(conditions.contains(&Condition::uuid(group.uuid)), "{op:?}");
            assert!(
                conditions.contains(&Condition::eq("name", "rovn/service-group/neutron-r1")),
                "{op:?}"
            );
        }
    }

    /// Our ACLs stay in our priority band, clear of Neutron's 1001/1002.
    #[test]
    fn acls_outside_our_priority_band_are_refused() {
        use crate::nb::{Acl, PortGroup};
        let owner = Owner::network_policy("ns", "deny");
        let acl = |priority| Acl {
            direction: "to-lport".to_string(),
            priority,
            match_: "outport == @rovn_np_1 && ip".to_string(),
            action: "drop".to_string(),
            ..Acl::default()
        };
        let mut txn = OwnedTxn::new();
        for neutron in [1001, 1002, 0, 32767] {
            assert!(matches!(
                txn.insert(&owner, &acl(neutron)),
                Err(Refused::Reserved(Reserved::AclPriority(p))) if p == neutron
            ));
        }
        let inserted = txn.insert(&owner, &acl(2000)).unwrap();
        let group = PortGroup {
            name: "rovn_np_1".to_string(),
            ..PortGroup::default()
        };
        txn.insert_referencing(&owner, &group, Some(("acls", &[&inserted])))
            .unwrap();
        assert_eq!(txn.outline(), ["insert ACL", "insert Port_Group"]);
        let neutron_group = PortGroup {
            name: "pg_4d2c".to_string(),
            ..PortGroup::default()
        };
        assert!(txn.insert(&owner, &neutron_group).is_err());
    }

    #[test]
    fn a_failed_precondition_is_told_by_its_operation() {
        let mut txn = OwnedTxn::new();
        let wait = txn.require_no_row_named::<LogicalSwitchPort>("web.ns");
        let error = ovsdb::Error::Txn {
            index: 0,
            error: "timed out".to_string(),
            details: None,
        };
        assert!(wait.failed(&error));
        txn.comment("rovn: test");
        assert!(txn.is_empty(), "a wait and a comment write nothing");
    }
}

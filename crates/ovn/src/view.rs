//! Typed reads of a replica: rows as [`Table`] types, by uuid, by name, by a
//! declared index, and our rows by [`Owner`] as [`Mine`]. A row that cannot
//! be read as its type is logged here and skipped.

use std::sync::Arc;

use ovsdb::{Index, MonitorSpec, Replica, Row, Uuid};

use crate::Table;
use crate::nb::LoadBalancerGroup;
use crate::owned::owner::{KIND_KEY, Kind, Mine, OBJECT_KEY, Owned, Owner};

/// The index of our rows by object ([`View::owned_by`]).
pub fn object_index() -> Index {
    Index::map_value("external_ids", OBJECT_KEY)
}

/// The index of our rows by kind ([`View::owned_of_kind`]).
pub fn kind_index() -> Index {
    Index::map_value("external_ids", KIND_KEY)
}

/// Adds table `T` with its typed row's columns to `spec`, with the indexes
/// [`View`] uses on it: names (for tables that have one) and owners.
pub fn index_table<T: Table>(spec: MonitorSpec) -> MonitorSpec {
    let spec = spec
        .table_columns(T::NAME, T::COLUMNS)
        .index(T::NAME, object_index())
        .index(T::NAME, kind_index());
    if T::COLUMNS.contains(&"name") {
        spec.index(T::NAME, Index::column("name"))
    } else {
        spec
    }
}

/// Reads `row` as a `T`; an unreadable row is logged and skipped.
pub fn decode<T: Table>(row: &Row) -> Option<T> {
    let uuid = row.uuid()?;
    match T::from_row(uuid, row) {
        Ok(typed) => Some(typed),
        Err(error) => {
            tracing::warn!(table = T::NAME, %uuid, %error, "unreadable row skipped");
            None
        }
    }
}

/// The owner recorded on a raw row (e.g. of a change event), if it is ours.
pub fn owner_of_row(row: &Row) -> Option<Owner> {
    Owner::of(&row.get_str_map("external_ids"))
}

fn decode_all<T: Table>(rows: Vec<Arc<Row>>) -> Vec<T> {
    rows.iter().filter_map(|row| decode(row)).collect()
}

/// Typed reads of a replica; cheap to clone.
#[derive(Clone, Debug)]
pub struct View {
    replica: Replica,
}

impl View {
    /// Typed reads of `replica`.
    pub fn new(replica: Replica) -> Self {
        Self { replica }
    }

    /// The replica (change events, sync state).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Every row of `T`.
    pub fn rows<T: Table>(&self) -> Vec<T> {
        decode_all(self.replica.table(T::NAME))
    }

    /// The row of `T` with uuid `uuid`.
    pub fn get<T: Table>(&self, uuid: Uuid) -> Option<T> {
        decode(&*self.replica.get_in(T::NAME, uuid)?)
    }

    /// The rows of `T` named `name` (OVN does not make names unique).
    pub fn named<T: Table>(&self, name: &str) -> Vec<T> {
        self.find(&Index::column("name"), name)
    }

    /// The rows of `T` whose `index` value is `value`.
    pub fn find<T: Table>(&self, index: &Index, value: &str) -> Vec<T> {
        decode_all(self.replica.find(T::NAME, index, value))
    }

    /// Our rows of `T` belonging to `owner`.
    pub fn owned_by<T: Owned>(&self, owner: &Owner) -> Vec<Mine<T>> {
        self.find::<T>(&object_index(), owner.object())
            .into_iter()
            .filter_map(Mine::claim)
            .filter(|mine| mine.owner() == owner)
            .collect()
    }

    /// Our rows of `T` belonging to objects of kind `kind`.
    pub fn owned_of_kind<T: Owned>(&self, kind: Kind) -> Vec<Mine<T>> {
        self.find::<T>(&kind_index(), kind.as_str())
            .into_iter()
            .filter_map(Mine::claim)
            .filter(|mine| mine.owner().kind() == kind)
            .collect()
    }

    /// Our rows of `T` whose `index` value is `value`.
    pub fn owned_where<T: Owned>(&self, index: &Index, value: &str) -> Vec<Mine<T>> {
        self.find::<T>(index, value)
            .into_iter()
            .filter_map(Mine::claim)
            .collect()
    }

    /// Our Load_Balancer_Groups of kind `kind` (known by name: the table
    /// has no `external_ids`).
    pub fn groups_of_kind(&self, kind: Kind) -> Vec<Mine<LoadBalancerGroup>> {
        self.rows::<LoadBalancerGroup>()
            .into_iter()
            .filter_map(Mine::claim_group)
            .filter(|mine| mine.owner().kind() == kind)
            .collect()
    }
}

//! Typed rows of the OVN Northbound and local Open_vSwitch databases, and
//! the one gateway for rovn's writes to the Northbound database it shares
//! with Neutron.
//!
//! - [`nb`], [`vswitch`]: typed rows ([`Table`]).
//! - [`view`]: typed reads of a replica, our rows as [`owned::Mine`].
//! - [`owned`]: which rows are ours and which Neutron's, the names and keys
//!   we must never write, and the only Northbound transaction reconcilers
//!   can build ([`owned::OwnedTxn`], committed by [`owned::Gateway`]).
//! - [`security_groups`]: whether Neutron's security groups let pods of a
//!   subnet open connections to a VM (`neutron_pg_drop`).
//! - [`check_schema`]: the server's schema has every column we use.

pub mod column;
pub mod nb;
pub mod owned;
pub mod security_groups;
pub mod table;
pub mod view;
pub mod vswitch;

pub use table::{RowError, Table};

/// Checks, at connect, that the server's schema has every table and column
/// of `required` ([`nb::REQUIRED`] or [`vswitch::REQUIRED`]). The error names
/// the first missing `table.column`; extra columns on the server are fine.
pub fn check_schema(schema: &ovsdb::Schema, required: &[(&str, &[&str])]) -> ovsdb::Result<()> {
    schema.require(required)
}

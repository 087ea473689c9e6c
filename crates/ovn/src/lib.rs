//! Typed rows of the OVN Northbound and local Open_vSwitch databases, and
//! the ownership rules for sharing the Northbound database with Neutron.
//!
//! - [`nb`], [`vswitch`]: typed rows ([`Table`]) read from replicas and
//!   written through `ovsdb` transactions.
//! - [`ownership`]: which rows are Neutron's, which are ours, and the names
//!   and keys we must never write.
//! - [`security_groups`]: whether Neutron's security groups let pods of a
//!   subnet open connections to a VM (`neutron_pg_drop`).
//! - [`check_schema`]: the server's schema has every column we use.

pub mod column;
pub mod nb;
pub mod ownership;
pub mod security_groups;
pub mod table;
pub mod vswitch;

pub use table::{RowError, Table};

/// Checks, at connect, that the server's schema has every table and column
/// of `required` ([`nb::REQUIRED`] or [`vswitch::REQUIRED`]). The error names
/// the first missing `table.column`; extra columns on the server are fine.
pub fn check_schema(schema: &ovsdb::Schema, required: &[(&str, &[&str])]) -> ovsdb::Result<()> {
    schema.require(required)
}

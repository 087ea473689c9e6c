//! The one gateway for rovn's writes to the shared Northbound database.
//!
//! - [`owner`]: who owns a row ([`Owner`], read from and written to
//!   `external_ids`), the proof that a row read from the database is ours
//!   ([`Mine`]), and the names and keys reserved for Neutron;
//! - [`txn`]: [`OwnedTxn`], the only transaction reconcilers can build (its
//!   inserts carry the owner, its other writes take a [`Mine`] and carry the
//!   owner condition, its one write to a foreign row is our router port in a
//!   router's `ports`), and [`Gateway`], the only way to commit one.
//!
//! Reading is [`crate::view`]'s job; it hands out [`Mine`] rows.

pub mod owner;
pub mod txn;

pub use owner::{Kind, Mine, Owned, Owner, Reserved, check_external_ids, check_name};
pub use txn::{Committed, Gateway, Op, OwnedTxn, Refused, RouterPort};

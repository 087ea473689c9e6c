//! The [`Table`] trait of typed rows and the macro that declares them.

use ovsdb::{Row, Uuid};

use crate::column::ColumnTypeError;

/// A row of `table` that could not be read as its typed row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}.{column}: {source}")]
pub struct RowError {
    /// The OVSDB table.
    pub table: &'static str,
    /// The column that did not match.
    pub column: &'static str,
    /// What was wrong with it.
    pub source: ColumnTypeError,
}

/// A typed view of the rows of one OVSDB table.
pub trait Table: Sized {
    /// The OVSDB table name.
    const NAME: &'static str;
    /// Every column the typed row reads: all must exist in the server's schema.
    const COLUMNS: &'static [&'static str];
    /// Reads a row (as held by a replica or returned by `select`).
    fn from_row(uuid: Uuid, row: &Row) -> Result<Self, RowError>;
    /// The writable columns of the row, for `insert` and whole-row `update`
    /// (columns maintained by the server or other daemons are left out).
    fn to_row(&self) -> Row;
    /// The row's `_uuid` (nil for a row not yet inserted).
    fn uuid(&self) -> Uuid;
}

/// Declares a typed row: `struct Name = "Table" { field: Type = "column", ... }`,
/// with an optional `read_only { ... }` section for columns that other
/// writers maintain (read, never written by [`Table::to_row`]).
macro_rules! ovn_table {
    (
        $(#[$meta:meta])*
        $name:ident = $table:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $column:literal, )*
        }
        $( read_only {
            $( $(#[$rmeta:meta])* $rfield:ident : $rty:ty = $rcolumn:literal, )*
        } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            /// The row's `_uuid` (nil before insertion).
            pub uuid: ::ovsdb::Uuid,
            $( $(#[$fmeta])* pub $field: $ty, )*
            $( $( $(#[$rmeta])* pub $rfield: $rty, )* )?
        }

        impl $crate::table::Table for $name {
            const NAME: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$($column,)* $( $($rcolumn,)* )?];

            fn from_row(
                uuid: ::ovsdb::Uuid,
                row: &::ovsdb::Row,
            ) -> Result<Self, $crate::table::RowError> {
                use $crate::column::ColumnValue;
                Ok(Self {
                    uuid,
                    $( $field: <$ty>::decode(row.get($column)).map_err(|source| {
                        $crate::table::RowError { table: $table, column: $column, source }
                    })?, )*
                    $( $( $rfield: <$rty>::decode(row.get($rcolumn)).map_err(|source| {
                        $crate::table::RowError { table: $table, column: $rcolumn, source }
                    })?, )* )?
                })
            }

            fn to_row(&self) -> ::ovsdb::Row {
                use $crate::column::ColumnValue;
                ::ovsdb::Row::new()
                    $( .with($column, self.$field.encode()) )*
            }

            fn uuid(&self) -> ::ovsdb::Uuid {
                self.uuid
            }
        }
    };
}

pub(crate) use ovn_table;

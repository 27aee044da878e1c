//! How the store's own types go in and out of SQLite columns. SQLite integers are `i64`; array
//! ids and nonces are random 64-bit numbers, stored as the `i64` of the same bits. (Tids, block
//! numbers, offsets and sizes are `u64` below 2^63: rusqlite binds and reads them as checked
//! `u64`, so a negative value read back is an error, never a huge number.)

use crate::types::ArrayId;
use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A random 64-bit number (a registry nonce) stored as the `i64` of the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bits(pub u64);

/// Columns of random 64-bit numbers: the `i64` of the same bits.
macro_rules! bits_column {
    ($t:ident) => {
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0 as i64))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(value).map(|v| $t(v as u64))
            }
        }
    };
}

bits_column!(ArrayId);
bits_column!(Bits);

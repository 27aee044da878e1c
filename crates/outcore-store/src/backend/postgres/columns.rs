//! How the store's own types go in and out of PostgreSQL columns. Integers are `bigint`;
//! array ids are random 64-bit numbers, stored as the `bigint` of the same bits; tids, block
//! numbers, lengths and counts are `u64` below 2^63, bound through [`Uint`] (checked) and read
//! with [`uint`].

use crate::types::ArrayId;
use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for ArrayId {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        (self.0 as i64).to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for ArrayId {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        i64::from_sql(ty, raw).map(|v| ArrayId(v as u64))
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as FromSql>::accepts(ty)
    }
}

/// A tid, block number, length or count bound as a `bigint`: one beyond the largest `bigint`
/// is an error of the statement, never a negative number.
#[derive(Clone, Copy, Debug)]
pub(super) struct Uint(pub u64);

impl ToSql for Uint {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        i64::try_from(self.0)?.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// Column `idx` of `row`, a `bigint` holding a tid, block number, length or count. outcore
/// never writes a negative one; one found anyway reads as `u64::MAX`, which every check after
/// (tid order, lengths within the block) rejects as corrupt.
pub(super) fn uint(row: &Row, idx: usize) -> u64 {
    u64::try_from(row.get::<_, i64>(idx)).unwrap_or(u64::MAX)
}

//! A read-model list in a stable order, read a window at a time (what a GraphQL connection
//! pages over). Only the read-model modules make one, so each list's SQL lives beside the
//! table it reads.

use std::marker::PhantomData;

use crate::db::{DbError, JsonRow, Param, ReadDb};
use crate::row::FromRow;

/// One list: the rows of `from_where` (a table and its filter, `$1..$n` bound to `params`)
/// ordered by `order`, which ends with a unique column so that windows never overlap, read
/// as `R` (the read model's row type).
#[derive(Debug, Clone)]
pub struct Listing<R = JsonRow> {
    from_where: String,
    order: &'static str,
    params: Vec<Param>,
    row: PhantomData<fn() -> R>,
}

impl<R: FromRow> Listing<R> {
    pub(crate) fn new(
        from_where: impl Into<String>,
        order: &'static str,
        params: Vec<Param>,
    ) -> Self {
        Self {
            from_where: from_where.into(),
            order,
            params,
            row: PhantomData,
        }
    }

    /// How many rows the list holds.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn count(&self, db: &ReadDb) -> Result<i64, DbError> {
        crate::row::count(db, &self.from_where, &self.params).await
    }

    /// At most `limit` rows from `offset` on.
    ///
    /// # Errors
    /// [`DbError`], also for a row that does not decode (naming its table and column).
    pub async fn window(&self, db: &ReadDb, offset: i64, limit: i64) -> Result<Vec<R>, DbError> {
        let n = self.params.len();
        let mut params = self.params.clone();
        params.push(limit.into());
        params.push(offset.into());
        let sql = format!(
            "SELECT * FROM {} ORDER BY {} LIMIT ${} OFFSET ${}",
            self.from_where,
            self.order,
            n + 1,
            n + 2
        );
        let table = self.from_where.split_whitespace().next().unwrap_or("?");
        db.query(&sql, &params)
            .await?
            .iter()
            .map(|r| R::from_row(r).map_err(|e| DbError::new(format!("{table}: {e}"))))
            .collect()
    }
}

/// The one row of `table` whose `key` column is `id`, if any (a by-id read), as `R`.
pub(crate) async fn by_key<R: FromRow>(
    db: &ReadDb,
    table: &str,
    key: &str,
    id: &str,
) -> Result<Option<R>, DbError> {
    db.query(
        &format!("SELECT * FROM {table} WHERE {key} = $1"),
        &[Param::from(id)],
    )
    .await?
    .first()
    .map(|r| R::from_row(r).map_err(|e| DbError::new(format!("{table}: {e}"))))
    .transpose()
}

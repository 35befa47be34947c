//! A read-model list in a stable order, read a window at a time (what a GraphQL connection
//! pages over). Only the read-model modules make one, so each list's SQL lives beside the
//! table it reads.

use crate::db::{DbError, JsonRow, Param, ReadDb};

/// One list: the rows of `from_where` (a table and its filter, `$1..$n` bound to `params`)
/// ordered by `order`, which ends with a unique column so that windows never overlap.
#[derive(Debug, Clone)]
pub struct Listing {
    from_where: String,
    order: &'static str,
    params: Vec<Param>,
}

impl Listing {
    pub(crate) fn new(
        from_where: impl Into<String>,
        order: &'static str,
        params: Vec<Param>,
    ) -> Self {
        Self {
            from_where: from_where.into(),
            order,
            params,
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
    /// [`DbError`].
    pub async fn window(
        &self,
        db: &ReadDb,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<JsonRow>, DbError> {
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
        db.query(&sql, &params).await
    }
}

/// The one row of `table` whose `key` column is `id`, if any (a by-id read).
pub(crate) async fn by_key(
    db: &ReadDb,
    table: &str,
    key: &str,
    id: &str,
) -> Result<Option<JsonRow>, DbError> {
    Ok(db
        .query(
            &format!("SELECT * FROM {table} WHERE {key} = $1"),
            &[Param::from(id)],
        )
        .await?
        .into_iter()
        .next())
}

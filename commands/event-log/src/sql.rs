//! A small portable layer over the two read-model engines: the one home of the SQL that runs
//! beside the event store (read models, checkpoints, claims, indexes, side tables), written
//! once for both engines.
//!
//! Read-model SQL is written once: `$1`-style parameters (SQLite accepts
//! them too), `TEXT`/`BIGINT` columns, `INSERT … ON CONFLICT … DO UPDATE`.
//! Rows come back as JSON objects so that dumps, diffs and GraphQL share one
//! representation.

use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Postgres, Row, Sqlite, Transaction, TypeInfo, ValueRef};

use crate::store::{storable, storable_json};
use crate::EventLog;

/// A bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL in a text column.
    Null,
    /// SQL NULL in an integer column (PostgreSQL wants the type).
    NullInt,
    /// An integer (also flags as 0/1, cents, points).
    Int(i64),
    /// Text (ids, dates, JSON).
    Text(String),
    /// An instant, for `timestamptz` columns of operational tables (read
    /// models store RFC 3339 text instead). SQLite stores it as RFC 3339 text.
    Time(chrono::DateTime<chrono::Utc>),
    /// A JSON document, for `jsonb` columns (JSON text on SQLite).
    Json(Value),
}

impl From<chrono::DateTime<chrono::Utc>> for Param {
    fn from(v: chrono::DateTime<chrono::Utc>) -> Self {
        Param::Time(v)
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Int(i64::from(v))
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_string())
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Param::NullInt, Param::Int)
    }
}

tokio::task_local! {
    /// Read-model statements run by the current task, when someone counts them: the
    /// API does so per GraphQL request (its `extensions.cost.statements`).
    pub static STATEMENTS: std::sync::Arc<std::sync::atomic::AtomicU64>;
}

fn count_statement() {
    let _ = STATEMENTS.try_with(|n| n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
}

/// A read-model row.
pub type JsonRow = Map<String, Value>;

/// Errors of the read-model database.
#[derive(Debug, thiserror::Error)]
#[error("read model database: {message}")]
pub struct DbError {
    message: String,
    unavailable: bool,
    refused_the_data: bool,
}

impl DbError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        DbError {
            message: message.into(),
            unavailable: false,
            refused_the_data: false,
        }
    }

    /// Whether the database was unreachable (pool exhausted or closed, I/O)
    /// rather than refusing the statement: worth a retry.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }

    /// Whether the database refused the *values* of the statement (PostgreSQL
    /// SQLSTATE classes 22 "data exception" and 23 "integrity constraint
    /// violation"; SQLite's constraint, mismatch and too-big results), so the
    /// same event will fail again: a poison event, not a passing trouble such
    /// as a deadlock, a timeout or a full disk.
    pub fn refused_the_data(&self) -> bool {
        self.refused_the_data
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::new(format!("staging: {e}"))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = matches!(
            e,
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
        );
        let refused_the_data = match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // The primary result code is the low byte of an extended one:
                    // 18 SQLITE_TOOBIG, 19 SQLITE_CONSTRAINT, 20 SQLITE_MISMATCH.
                    code.parse::<i64>()
                        .is_ok_and(|c| matches!(c & 0xff, 18..=20))
                } else {
                    code.starts_with("22") || code.starts_with("23")
                }
            }
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => true,
            _ => false,
        };
        DbError {
            message: e.to_string(),
            unavailable,
            refused_the_data,
        }
    }
}

/// Where read models live: the same database as the event log.
#[derive(Debug, Clone)]
pub enum ReadDb {
    /// PostgreSQL.
    Postgres(sqlx::PgPool),
    /// SQLite: writes through the log's single writer, reads through its readers.
    Sqlite {
        /// The single writer connection.
        writer: sqlx::SqlitePool,
        /// Read-only connections.
        reader: sqlx::SqlitePool,
    },
}

/// An open read-model transaction.
#[derive(Debug)]
pub enum ReadTx {
    /// PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
    /// SQLite.
    Sqlite(Transaction<'static, Sqlite>),
    /// An in-memory SQLite a rebuild stages into (see `staging.rs`): the same
    /// SQL, no round trips.
    Memory(Box<rusqlite::Connection>),
}

/// A lock held across transactions until [`Exclusive::release`] (or the process's end):
/// PostgreSQL's session advisory lock on a connection kept for it; nothing on SQLite, which
/// serves one instance.
pub struct Exclusive {
    held: Option<(sqlx::pool::PoolConnection<Postgres>, i64)>,
}

impl Drop for Exclusive {
    /// Not released (an error or a cancelled future on the way): the connection, which may
    /// hold the lock, is closed rather than returned to the pool.
    fn drop(&mut self) {
        if let Some((conn, _)) = self.held.take() {
            drop(conn.detach());
        }
    }
}

impl std::fmt::Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exclusive")
            .field("key", &self.held.as_ref().map(|(_, k)| k))
            .finish()
    }
}

impl Exclusive {
    /// Releases the lock.
    ///
    /// # Errors
    /// [`DbError`]; the connection is closed instead, which releases it too.
    pub async fn release(mut self) -> Result<(), DbError> {
        if let Some((mut conn, key)) = self.held.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // A connection that may still hold the lock must not go back to the pool.
                drop(conn.detach());
            }
            unlocked?;
        }
        Ok(())
    }
}

impl ReadDb {
    /// Waits for the lock named `key` across every instance on this database.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn exclusive(&self, key: i64) -> Result<Exclusive, DbError> {
        match self {
            ReadDb::Postgres(p) => {
                let mut conn = p.acquire().await?;
                // Polled, not waited for in one statement: a statement or lock timeout set
                // on the role must not fail a start that only has to wait its turn.
                loop {
                    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut *conn)
                        .await?;
                    if got {
                        return Ok(Exclusive {
                            held: Some((conn, key)),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
            ReadDb::Sqlite { .. } => Ok(Exclusive { held: None }),
        }
    }
}

/// PostgreSQL refusing a prepared statement whose result columns changed under it
/// ("cached plan must not change result type").
fn stale_plan(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("0A000") && d.message().contains("cached plan")
    })
}

macro_rules! bind_all {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                Param::Null => q.bind(None::<String>),
                Param::NullInt => q.bind(None::<i64>),
                Param::Int(i) => q.bind(*i),
                Param::Text(s) => q.bind(storable(s).into_owned()),
                Param::Time(t) => q.bind(*t),
                Param::Json(v) => q.bind(storable_json(v)),
            };
        }
        q
    }};
}

impl ReadDb {
    /// The read-model database of an event log.
    pub fn of(log: &EventLog) -> Self {
        match log.read_model() {
            EventLog::Postgres(pg) => ReadDb::Postgres(pg.pool().clone()),
            EventLog::Sqlite(s) => ReadDb::Sqlite {
                writer: s.writer().clone(),
                reader: s.reader().clone(),
            },
            // `read_model()` never returns an EventStoreDB log: its read
            // models live in PostgreSQL or SQLite.
            #[allow(unreachable_patterns)]
            _ => unreachable!("read_model() of an EventStoreDB log is SQL"),
        }
    }

    /// `postgresql` or `sqlite`.
    pub fn engine(&self) -> &'static str {
        match self {
            ReadDb::Postgres(_) => "postgresql",
            ReadDb::Sqlite { .. } => "sqlite",
        }
    }

    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE`, the write lock up front).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn begin(&self) -> Result<ReadTx, DbError> {
        Ok(match self {
            ReadDb::Postgres(p) => ReadTx::Postgres(p.begin().await?),
            ReadDb::Sqlite { writer, .. } => {
                ReadTx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?)
            }
        })
    }

    /// Begins a transaction for derived data only (read models and their
    /// checkpoint). On PostgreSQL it does not wait for the WAL flush: a crash
    /// may lose the last few such commits, never half of one, and the runner
    /// re-applies from the older checkpoint. Never use it for sessions or
    /// anything that is not rebuilt from the log.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn begin_derived(&self) -> Result<ReadTx, DbError> {
        let mut tx = self.begin().await?;
        if let ReadTx::Postgres(t) = &mut tx {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut **t)
                .await?;
        }
        Ok(tx)
    }

    /// Runs a read query.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<JsonRow>, DbError> {
        count_statement();
        Ok(match self {
            ReadDb::Postgres(p) => {
                let mut conn = p.acquire().await?;
                let rows = match bind_all!(sqlx::query(sql), params)
                    .fetch_all(&mut *conn)
                    .await
                {
                    // A read model swapped in with more columns (a rolling deploy, a rebuild)
                    // makes this connection's prepared `SELECT *` stale for good: forget the
                    // connection's statements and ask again.
                    Err(e) if stale_plan(&e) => {
                        sqlx::Connection::clear_cached_statements(&mut *conn).await?;
                        bind_all!(sqlx::query(sql), params)
                            .fetch_all(&mut *conn)
                            .await?
                    }
                    other => other?,
                };
                rows.iter().map(pg_row).collect()
            }
            ReadDb::Sqlite { reader, .. } => bind_all!(sqlx::query(sql), params)
                .fetch_all(reader)
                .await?
                .iter()
                .map(sqlite_row)
                .collect(),
        })
    }

    /// Runs a statement whose loss in a crash is harmless (see
    /// [`ReadDb::begin_derived`]): the commit does not wait for the WAL flush.
    /// For bookkeeping that a retry recreates with the same effect — the
    /// webhook ledger, whose effects carry idempotency keys.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn execute_relaxed(&self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let mut tx = self.begin_derived().await?;
        let n = tx.execute(sql, params).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Runs a statement outside a transaction.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn execute(&self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let mut tx = self.begin().await?;
        let n = tx.execute(sql, params).await?;
        tx.commit().await?;
        Ok(n)
    }
}

impl ReadTx {
    /// Runs a statement; returns the rows affected.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        count_statement();
        Ok(match self {
            ReadTx::Postgres(t) => bind_all!(sqlx::query(sql), params)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            ReadTx::Sqlite(t) => bind_all!(sqlx::query(sql), params)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            ReadTx::Memory(c) => {
                let mut st = c.prepare_cached(sql)?;
                bind_memory(&mut st, params)?;
                st.raw_execute()? as u64
            }
        })
    }

    /// Runs a query inside the transaction.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<JsonRow>, DbError> {
        count_statement();
        Ok(match self {
            ReadTx::Postgres(t) => bind_all!(sqlx::query(sql), params)
                .fetch_all(&mut **t)
                .await?
                .iter()
                .map(pg_row)
                .collect(),
            ReadTx::Sqlite(t) => bind_all!(sqlx::query(sql), params)
                .fetch_all(&mut **t)
                .await?
                .iter()
                .map(sqlite_row)
                .collect(),
            ReadTx::Memory(c) => {
                let mut st = c.prepare_cached(sql)?;
                bind_memory(&mut st, params)?;
                let names: Vec<String> = st.column_names().iter().map(|n| n.to_string()).collect();
                let mut rows = st.raw_query();
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut m = Map::new();
                    for (i, n) in names.iter().enumerate() {
                        m.insert(n.clone(), memory_value(r.get_ref(i)?));
                    }
                    out.push(m);
                }
                out
            }
        })
    }

    /// Commits.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            ReadTx::Postgres(t) => t.commit().await?,
            ReadTx::Sqlite(t) => t.commit().await?,
            // Staging is thrown away after its rows are copied.
            ReadTx::Memory(_) => {}
        }
        Ok(())
    }

    /// `postgresql` or `sqlite`.
    pub fn engine(&self) -> &'static str {
        match self {
            ReadTx::Postgres(_) => "postgresql",
            ReadTx::Sqlite(_) | ReadTx::Memory(_) => "sqlite",
        }
    }
}

/// Binds `$n` parameters by their number, as sqlx does for SQLite (a
/// statement may use `$2` before `$1`, or one parameter twice).
fn bind_memory(st: &mut rusqlite::CachedStatement<'_>, params: &[Param]) -> Result<(), DbError> {
    use rusqlite::types::Value as V;
    for i in 1..=st.parameter_count() {
        let n = st
            .parameter_name(i)
            .and_then(|n| n.trim_start_matches(['$', '?']).parse::<usize>().ok())
            .unwrap_or(i);
        let p = params
            .get(n - 1)
            .ok_or_else(|| DbError::new(format!("statement wants parameter ${n}")))?;
        let v = match p {
            Param::Null | Param::NullInt => V::Null,
            Param::Int(i) => V::Integer(*i),
            Param::Text(s) => V::Text(storable(s).into_owned()),
            Param::Time(t) => V::Text(t.to_rfc3339()),
            Param::Json(j) => V::Text(storable_json(j).to_string()),
        };
        st.raw_bind_parameter(i, v)?;
    }
    Ok(())
}

fn memory_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as R;
    match v {
        R::Null | R::Blob(_) => Value::Null,
        R::Integer(i) => Value::from(i),
        R::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        R::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
    }
}

/// A fresh in-memory staging database: no journal, no fsync.
///
/// # Errors
/// [`DbError`].
pub fn memory_tx() -> Result<ReadTx, DbError> {
    let c = rusqlite::Connection::open_in_memory()?;
    c.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -262144; BEGIN;",
    )?;
    c.set_prepared_statement_cache_capacity(256);
    Ok(ReadTx::Memory(Box::new(c)))
}

fn pg_row(r: &PgRow) -> JsonRow {
    let mut m = Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        let null = r.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true);
        let v = if null {
            Value::Null
        } else {
            match c.type_info().name() {
                "INT8" => r
                    .try_get::<i64, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                "INT4" => r
                    .try_get::<i32, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                "INT2" => r
                    .try_get::<i16, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                "NUMERIC" => r
                    .try_get::<String, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                "BOOL" => r
                    .try_get::<bool, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                "JSONB" | "JSON" => r.try_get::<Value, _>(i).unwrap_or(Value::Null),
                "TIMESTAMPTZ" => r
                    .try_get::<chrono::DateTime<chrono::Utc>, _>(i)
                    .map(|t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
                    .unwrap_or(Value::Null),
                _ => r
                    .try_get::<String, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
            }
        };
        m.insert(c.name().to_string(), v);
    }
    m
}

fn sqlite_row(r: &SqliteRow) -> JsonRow {
    let mut m = Map::new();
    for (i, c) in r.columns().iter().enumerate() {
        let v = match r.try_get_raw(i) {
            Ok(raw) if raw.is_null() => Value::Null,
            Ok(raw) => match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => r
                    .try_get::<i64, _>(i)
                    .map(Value::from)
                    .unwrap_or(Value::Null),
                _ => r
                    .try_get::<String, _>(i)
                    .map(Value::from)
                    .or_else(|_| r.try_get::<i64, _>(i).map(Value::from))
                    .unwrap_or(Value::Null),
            },
            Err(_) => Value::Null,
        };
        m.insert(c.name().to_string(), v);
    }
    m
}

/// Rows per multi-row `INSERT` when copying staged tables (PostgreSQL takes
/// at most 65,535 parameters per statement, SQLite 32,766).
const COPY_PARAMS: usize = 30_000;

/// Copies every row of `table` from the staging database into the same
/// table of `tx`, in multi-row inserts; returns the rows copied.
///
/// # Errors
/// [`DbError`].
pub async fn copy_table(
    staged: &mut rusqlite::Connection,
    tx: &mut ReadTx,
    table: &str,
) -> Result<u64, DbError> {
    // Declared types tell an integer NULL from a text one (PostgreSQL wants it).
    let columns: Vec<(String, bool)> = {
        let mut st = staged.prepare(&format!("PRAGMA table_info({table})"))?;
        let rows = st.query_map([], |r| {
            let name: String = r.get(1)?;
            let ty: String = r.get(2)?;
            Ok((name, ty.to_ascii_uppercase().contains("INT")))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    if columns.is_empty() {
        return Err(DbError::new(format!("staged table {table} has no columns")));
    }
    // sqlx's SQLite binding slows down more than linearly with a statement's
    // parameter count (2,000-row statements copied 25× slower than 100-row
    // ones); PostgreSQL takes chunks of rows through COPY.
    let per_insert = if tx.engine() == "postgresql" {
        5_000
    } else {
        (COPY_PARAMS / columns.len()).clamp(1, 100)
    };
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let select = format!(
        "SELECT rowid, {} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT {per_insert}",
        names.join(", ")
    );
    let (mut after, mut copied) = (0i64, 0u64);
    loop {
        // Read a chunk synchronously (the connection is not shared across awaits' threads).
        let chunk: Vec<(i64, Vec<Param>)> = {
            let mut st = staged.prepare_cached(&select)?;
            let mut rows = st.query([after])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let rowid: i64 = r.get(0)?;
                let mut vals = Vec::with_capacity(columns.len());
                for (i, (_, int)) in columns.iter().enumerate() {
                    use rusqlite::types::ValueRef as R;
                    vals.push(match r.get_ref(i + 1)? {
                        R::Null | R::Blob(_) if *int => Param::NullInt,
                        R::Null | R::Blob(_) => Param::Null,
                        R::Integer(v) => Param::Int(v),
                        R::Real(f) => Param::Text(f.to_string()),
                        R::Text(t) => Param::Text(String::from_utf8_lossy(t).into_owned()),
                    });
                }
                out.push((rowid, vals));
            }
            out
        };
        let Some((last, _)) = chunk.last() else {
            break;
        };
        after = *last;
        copied += chunk.len() as u64;
        if let ReadTx::Postgres(t) = tx {
            // COPY … FROM STDIN, text format: one round trip per chunk, no parsing of VALUES.
            let mut data = String::with_capacity(chunk.len() * 64);
            for (_, vals) in &chunk {
                for (c, v) in vals.iter().enumerate() {
                    if c > 0 {
                        data.push('\t');
                    }
                    copy_text(&mut data, v);
                }
                data.push('\n');
            }
            let mut copy = t
                .copy_in_raw(&format!("COPY {table} ({}) FROM STDIN", names.join(", ")))
                .await?;
            copy.send(data.into_bytes()).await?;
            copy.finish().await?;
            continue;
        }
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
        let mut params = Vec::with_capacity(chunk.len() * columns.len());
        for (row_no, (_, vals)) in chunk.into_iter().enumerate() {
            if row_no > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..vals.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", params.len() + c + 1));
            }
            sql.push(')');
            params.extend(vals);
        }
        tx.execute(&sql, &params).await?;
    }
    Ok(copied)
}

/// One value in PostgreSQL's COPY text format.
fn copy_text(out: &mut String, v: &Param) {
    match v {
        Param::Null | Param::NullInt => out.push_str("\\N"),
        Param::Int(i) => out.push_str(&i.to_string()),
        Param::Text(t) => {
            for ch in storable(t).chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
        Param::Time(t) => out.push_str(&t.to_rfc3339()),
        Param::Json(j) => copy_text(out, &Param::Text(storable_json(j).to_string())),
    }
}

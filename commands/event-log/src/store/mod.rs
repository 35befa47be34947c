//! The event log: one seam, several engines.
//!
//! [`EventLog`] is the only type the rest of the system talks to. It appends
//! a command's events atomically with optimistic concurrency, loads streams
//! and snapshots, remembers idempotency keys, and reads the global log in
//! commit order (see `docs/architecture.md` for why that order is safe).
//! It also implements cqrs-es's [`PersistedEventRepository`], so the stock
//! cqrs-es `PersistedEventStore` runs on it too.

pub mod esdb;
pub mod personal;
mod postgres;
mod repository;
mod sqlite;
mod text;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

#[cfg(feature = "esdb")]
pub use esdb::EsdbLog;
pub use postgres::PostgresLog;
pub(crate) use repository::to_serialized as to_serialized_event;
pub use sqlite::SqliteLog;
pub use text::{holds_nul, storable, storable_json};

/// Where an event sits in the global log. Ordered: the log is read in
/// ascending `LogPosition` order.
///
/// On PostgreSQL `tx` is the writing transaction's id (xid8) and `seq` the
/// event's bigint position; on SQLite `tx` is 0 and `seq` the row position.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// Writing transaction (0 on engines whose positions are already commit-ordered).
    pub tx: u64,
    /// Position of the event, unique across the log.
    pub seq: u64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition { tx: 0, seq: 0 };
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tx, self.seq)
    }
}

impl FromStr for LogPosition {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::InvalidPosition(s.to_string());
        let (tx, seq) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            tx: tx.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An event as stored, with its place in the global log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Place in the global log.
    pub position: LogPosition,
    /// Aggregate type (`Customer`, `Job`…).
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// 1-based sequence within the aggregate's stream.
    pub sequence: u64,
    /// Event type (`JobCompleted`…).
    pub event_type: String,
    /// Schema version of the payload.
    pub event_version: String,
    /// The event, as JSON.
    pub payload: Value,
    /// Metadata (see [`crate::metadata::EventMetadata`]).
    pub metadata: Value,
    /// When the database recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// When it happened: its metadata's `occurred_at` (a seeded or imported history keeps
    /// its own time), else when the database recorded it.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.metadata
            .get("occurred_at")
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(self.recorded_at, |t| t.with_timezone(&Utc))
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Event type.
    pub event_type: String,
    /// Schema version.
    pub event_version: String,
    /// Payload.
    pub payload: Value,
    /// Metadata.
    pub metadata: Value,
}

/// A snapshot to write with an append.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotWrite {
    /// The aggregate state after the appended events.
    pub payload: Value,
    /// Sequence of the last event the state includes.
    pub last_sequence: u64,
    /// Snapshot counter (1 for the first).
    pub snapshot_number: u64,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    /// Aggregate state.
    pub payload: Value,
    /// Sequence of the last event it includes.
    pub last_sequence: u64,
    /// Snapshot counter.
    pub snapshot_number: u64,
}

/// One atomic append to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// The stream's last sequence the command saw (0 for a new stream).
    pub expected_sequence: u64,
    /// Events, in order; their sequences are `expected_sequence + 1..`.
    pub events: Vec<NewEvent>,
    /// Snapshot to store in the same transaction.
    pub snapshot: Option<SnapshotWrite>,
    /// Idempotency key and the outcome to remember for it, written in the same transaction.
    pub idempotency: Option<(String, Value)>,
}

/// What an append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Positions of the appended events, in order.
    pub positions: Vec<LogPosition>,
}

/// An idempotency key already used.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    /// Aggregate type of the original command.
    pub aggregate_type: String,
    /// Aggregate id of the original command.
    pub aggregate_id: String,
    /// The outcome recorded with it.
    pub outcome: Value,
    /// Positions of the events the original command appended.
    pub positions: Vec<LogPosition>,
}

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another command appended to the stream first.
    #[error("concurrency conflict on {aggregate_type} {aggregate_id}: the stream moved past sequence {expected_sequence}")]
    Conflict {
        /// Aggregate type.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// The sequence the command expected.
        expected_sequence: u64,
    },
    /// The idempotency key was stored by a concurrent command.
    #[error("idempotency key already used")]
    DuplicateIdempotencyKey,
    /// `DATABASE_URL` is not one we can use.
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    /// A position string did not parse.
    #[error("invalid log position {0:?} (expected `<tx>.<seq>`)")]
    InvalidPosition(String),
    /// The database cannot be reached or refused the connection.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Applying migrations failed.
    #[error("migrating the event store failed: {0}")]
    Migration(String),
    /// A stored event or snapshot cannot be read back.
    #[error("stored {aggregate_type} {aggregate_id} #{sequence} ({event_type}) cannot be read: {reason}")]
    CorruptEvent {
        /// Aggregate type.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// Sequence.
        sequence: u64,
        /// Event type as stored.
        event_type: String,
        /// What went wrong.
        reason: String,
    },
    /// The store is in a state it must not run in.
    #[error("event store misconfigured: {0}")]
    Misconfigured(String),
    /// Any other database error.
    #[error("event store error: {0}")]
    Database(String),
}

impl StoreError {
    /// A database error, classified: unreachable (retry), a bad URL, or anything else.
    pub fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Configuration(_) => StoreError::InvalidUrl(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Which engine a `DATABASE_URL` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `sqlite://path` or `sqlite::memory:`.
    Sqlite(String),
    /// `esdb://…`, `esdb+discover://…`, `kurrentdb://…` or `kurrentdb+discover://…`
    /// (EventStoreDB / KurrentDB; read models go to `READ_MODEL_DATABASE_URL`).
    #[cfg(feature = "esdb")]
    Esdb(String),
}

/// The embedded default when `DATABASE_URL` is unset.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://./data/dirtfree.db";

impl DatabaseUrl {
    /// Parses a `DATABASE_URL`; `None` selects the embedded SQLite default.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for an empty value or an unknown scheme.
    pub fn parse(url: Option<&str>) -> Result<Self, StoreError> {
        let Some(url) = url else {
            return Ok(DatabaseUrl::Sqlite(DEFAULT_SQLITE_URL.to_string()));
        };
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Validate now, so a typo fails at start with the reason.
            url.parse::<sqlx::postgres::PgConnectOptions>()
                .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", redact_url(url))))?;
            Ok(DatabaseUrl::Postgres(url.to_string()))
        } else if url.starts_with("sqlite:") {
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?;
            Ok(DatabaseUrl::Sqlite(url.to_string()))
        } else if esdb::is_esdb_url(url) {
            #[cfg(feature = "esdb")]
            return esdb::client_settings(url).map(|()| DatabaseUrl::Esdb(url.to_string()));
            #[cfg(not(feature = "esdb"))]
            Err(StoreError::InvalidUrl(format!(
                "{}: EventStoreDB / KurrentDB needs a build with `--features esdb`",
                redact_url(url)
            )))
        } else if url.is_empty() {
            Err(StoreError::InvalidUrl("empty value".into()))
        } else {
            Err(StoreError::InvalidUrl(format!(
                "{}: unsupported scheme (expected postgres://, postgresql://, sqlite: or esdb://)",
                redact_url(url)
            )))
        }
    }
}

/// Hides the password of a URL so it can be logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Connection tuning.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Largest number of pooled connections (PostgreSQL).
    pub max_connections: u32,
    /// How long to wait for the database at start before giving up.
    pub connect_timeout: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The event log, on one of its engines. Cheap to clone.
#[derive(Debug, Clone)]
pub enum EventLog {
    /// PostgreSQL.
    Postgres(PostgresLog),
    /// Embedded SQLite.
    Sqlite(SqliteLog),
    /// EventStoreDB / KurrentDB, with a PostgreSQL or SQLite read-model database.
    #[cfg(feature = "esdb")]
    Esdb(EsdbLog),
}

macro_rules! dispatch {
    ($self:ident, $log:ident => $e:expr) => {
        match $self {
            EventLog::Postgres($log) => $e,
            EventLog::Sqlite($log) => $e,
            #[cfg(feature = "esdb")]
            EventLog::Esdb($log) => $e,
        }
    };
}

impl EventLog {
    /// Connects to the engine `url` selects and applies pending migrations.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`], [`StoreError::Unavailable`] when the
    /// database does not answer, [`StoreError::Migration`].
    pub async fn connect(url: &DatabaseUrl, options: &LogOptions) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Postgres(u) => {
                Ok(EventLog::Postgres(PostgresLog::connect(u, options).await?))
            }
            DatabaseUrl::Sqlite(u) => Ok(EventLog::Sqlite(SqliteLog::connect(u, options).await?)),
            // The read-model database comes from READ_MODEL_DATABASE_URL until the
            // server's config passes it (EsdbLog::connect takes it explicitly).
            #[cfg(feature = "esdb")]
            DatabaseUrl::Esdb(u) => {
                let read_model = std::env::var(esdb::READ_MODEL_DATABASE_URL).ok();
                let read_model = DatabaseUrl::parse(read_model.as_deref())?;
                Ok(EventLog::Esdb(
                    EsdbLog::connect(u, &read_model, options).await?,
                ))
            }
        }
    }

    /// The database of read models, checkpoints and other side tables: the
    /// log's own database on PostgreSQL and SQLite, the read-model database
    /// (always PostgreSQL or SQLite) on EventStoreDB.
    pub fn read_model(&self) -> &EventLog {
        #[cfg(feature = "esdb")]
        if let EventLog::Esdb(l) = self {
            return l.read_model();
        }
        self
    }

    /// Whether the side tables live in the embedded SQLite file (which `backup` copies; a
    /// PostgreSQL database is backed up with PostgreSQL's tools).
    pub fn is_embedded(&self) -> bool {
        matches!(self.read_model(), EventLog::Sqlite(_))
    }

    /// Writes a consistent copy of the embedded SQLite database to `path` (missing or
    /// empty): `VACUUM INTO` writes it as one read transaction sees it, while writers go on.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the store is not embedded or the copy fails.
    pub async fn copy_embedded_to(&self, path: &str) -> Result<(), StoreError> {
        let EventLog::Sqlite(store) = self.read_model() else {
            return Err(StoreError::Database(
                "only the embedded SQLite store is copied this way".into(),
            ));
        };
        sqlx::query("VACUUM INTO ?")
            .bind(path)
            .execute(store.writer())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Engine name, for health reports.
    pub fn engine(&self) -> &'static str {
        match self {
            EventLog::Postgres(_) => "postgresql",
            EventLog::Sqlite(_) => "sqlite",
            #[cfg(feature = "esdb")]
            EventLog::Esdb(_) => "esdb",
        }
    }

    /// Appends events to one stream atomically.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the stream is past `expected_sequence`;
    /// [`StoreError::DuplicateIdempotencyKey`] when the key was stored meanwhile.
    pub async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        let aggregate_type = req.aggregate_type.clone();
        let n = req.events.len() as u64;
        let req = personal::seal(self, req).await?;
        let appended = dispatch!(self, l => l.append(req).await)?;
        metrics::counter!("dirtfree_events_appended_total", "aggregate" => aggregate_type)
            .increment(n);
        Ok(appended)
    }

    /// Events of one stream with sequence > `after_sequence`, in order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn load_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = dispatch!(self, l => l.load_stream(aggregate_type, aggregate_id, after_sequence).await)?;
        personal::open(self, events).await
    }

    /// The stream's snapshot, if any.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        dispatch!(self, l => l.load_snapshot(aggregate_type, aggregate_id).await)
    }

    /// Up to `limit` events after `after`, in global log order. Never returns
    /// an event that a later call could precede with an earlier one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn read_all(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.read_all_stored(after, limit).await?;
        personal::open(self, events).await
    }

    /// [`EventLog::read_all`] as stored: personal fields still encrypted.
    /// For checks of the stored bytes (`replay-tools verify`'s hash chain).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn read_all_stored(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, l => l.read_all(after, limit).await)
    }

    /// Whether committed events exist that `read_all` cannot hand out yet
    /// (an older transaction is still open). The tailer polls briefly while so.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn has_held_back_events(&self, after: LogPosition) -> Result<bool, StoreError> {
        dispatch!(self, l => l.has_held_back_events(after).await)
    }

    /// The position of the last readable event (START for an empty log).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn head(&self) -> Result<LogPosition, StoreError> {
        dispatch!(self, l => l.head().await)
    }

    /// The position of the last *committed* event, readable or not yet (an
    /// older transaction may still be open): "everything committed so far".
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn committed_head(&self) -> Result<LogPosition, StoreError> {
        dispatch!(self, l => l.committed_head().await)
    }

    /// Number of events stored.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn count(&self) -> Result<u64, StoreError> {
        dispatch!(self, l => l.count().await)
    }

    /// The outcome stored under an idempotency key.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn find_idempotent(&self, key: &str) -> Result<Option<StoredOutcome>, StoreError> {
        dispatch!(self, l => l.find_idempotent(key).await)
    }

    /// A receiver that changes whenever events commit (in this process, or in
    /// another one when the engine can tell us).
    pub fn commits(&self) -> watch::Receiver<u64> {
        dispatch!(self, l => l.commits())
    }

    /// Closes the connections; background tasks end.
    pub async fn close(&self) {
        match self {
            EventLog::Postgres(l) => l.pool().close().await,
            EventLog::Sqlite(l) => {
                l.writer().close().await;
                l.reader().close().await;
            }
            #[cfg(feature = "esdb")]
            EventLog::Esdb(l) => l.close().await,
        }
    }

    /// Each connection pool's connections, for the metrics scrape: (pool, in use, open).
    /// PostgreSQL has one pool (`main`); SQLite a `writer` and a `reader`; EventStoreDB
    /// reports its read-model database's.
    pub fn pool_usage(&self) -> Vec<(&'static str, u32, u32)> {
        fn usage<DB: sqlx::Database>(
            name: &'static str,
            pool: &sqlx::Pool<DB>,
        ) -> (&'static str, u32, u32) {
            let open = pool.size();
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            (name, open.saturating_sub(idle), open)
        }
        match self {
            EventLog::Postgres(l) => vec![usage("main", l.pool())],
            EventLog::Sqlite(l) => vec![usage("writer", l.writer()), usage("reader", l.reader())],
            #[cfg(feature = "esdb")]
            EventLog::Esdb(l) => l.read_model().pool_usage(),
        }
    }

    /// Checks the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, l => l.ping().await)
    }

    /// Seconds the oldest transaction that holds a transaction id (one that wrote) has been
    /// open, anywhere in the PostgreSQL cluster: while it stays open, readers cannot pass
    /// it (docs/architecture.md). `None` on other engines, or when none is open.
    ///
    /// # Errors
    /// [`StoreError`] when the database does not answer.
    pub async fn oldest_writing_transaction_secs(&self) -> Result<Option<f64>, StoreError> {
        match self.read_model() {
            EventLog::Postgres(pg) => pg.oldest_writing_transaction_secs().await,
            _ => Ok(None),
        }
    }
}

pub(crate) fn parse_recorded_at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_sequence() {
        let a = LogPosition { tx: 5, seq: 90 };
        let b = LogPosition { tx: 6, seq: 10 };
        assert!(a < b);
        assert_eq!("5.90".parse::<LogPosition>().expect("parses"), a);
        assert!("5".parse::<LogPosition>().is_err());
    }

    #[test]
    fn database_urls_select_the_engine_or_fail_with_the_reason() {
        assert_eq!(
            DatabaseUrl::parse(None).expect("default"),
            DatabaseUrl::Sqlite(DEFAULT_SQLITE_URL.into())
        );
        assert!(matches!(
            DatabaseUrl::parse(Some("postgres://u:p@localhost/db")),
            Ok(DatabaseUrl::Postgres(_))
        ));
        let err = DatabaseUrl::parse(Some("mysql://u:secret@h/db")).expect_err("refused");
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
        assert!(
            !err.to_string().contains("secret"),
            "password leaked: {err}"
        );
        assert!(DatabaseUrl::parse(Some("")).is_err());
        assert!(DatabaseUrl::parse(Some("postgres://h:notaport/db")).is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://me:pw@h:5432/db"),
            "postgres://me:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}

//! Embedded SQLite engine: the default when `DATABASE_URL` is unset.
//!
//! All appends go through one writer connection, so positions are assigned
//! and committed in the same order and the reader can hand out everything it
//! sees. Readers use a separate pool (WAL mode lets them run beside the writer).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::watch;

use super::{
    AppendRequest, Appended, LogOptions, LogPosition, RecordedEvent, StoreError, StoredOutcome,
    StoredSnapshot,
};

const EVENT_COLUMNS: &str = "position, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, recorded_at";

/// The SQLite event log.
#[derive(Debug, Clone)]
pub struct SqliteLog {
    writer: SqlitePool,
    reader: SqlitePool,
    commits: Arc<watch::Sender<u64>>,
}

impl SqliteLog {
    /// Opens (creating if needed) the database file and migrates it.
    ///
    /// # Errors
    /// See [`super::EventLog::connect`].
    pub async fn connect(url: &str, options: &LogOptions) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged append survives power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = Path::new(opts.get_filename()).parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot open SQLite database {url}: {e}"))
            })?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        // An in-memory database exists once per connection: read through the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.clamp(1, 8))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(true))
                .await
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot open SQLite database {url}: {e}"))
                })?
        };
        let (tx, _) = watch::channel(0u64);
        Ok(Self {
            writer,
            reader,
            commits: Arc::new(tx),
        })
    }

    /// The writer pool (read models on SQLite write through it too, so that
    /// there is a single writer).
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The read-only pool.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub(super) fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Tells tailers in this process that events committed (used by writers
    /// that share the writer pool).
    pub fn notify_commit(&self) {
        self.commits.send_modify(|c| *c += 1);
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(StoreError::from_sqlx)
    }

    pub(super) async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        if req.events.is_empty() {
            return Ok(Appended { positions: vec![] });
        }
        let conflict = || StoreError::Conflict {
            aggregate_type: req.aggregate_type.clone(),
            aggregate_id: req.aggregate_id.clone(),
            expected_sequence: req.expected_sequence,
        };
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::from_sqlx)?;
        let mut positions = Vec::with_capacity(req.events.len());
        for (i, e) in req.events.iter().enumerate() {
            let pos: i64 = sqlx::query_scalar(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING position",
            )
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind((req.expected_sequence + 1 + i as u64) as i64)
            .bind(&e.event_type)
            .bind(&e.event_version)
            .bind(e.payload.to_string())
            .bind(e.metadata.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| if is_unique_violation(&err) { conflict() } else { StoreError::from_sqlx(err) })?;
            positions.push(LogPosition {
                tx: 0,
                seq: pos as u64,
            });
        }
        if let Some(snap) = &req.snapshot {
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
                 VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                   SET last_sequence = excluded.last_sequence, current_snapshot = excluded.current_snapshot, \
                       payload = excluded.payload, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE snapshots.last_sequence < excluded.last_sequence",
            )
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(snap.last_sequence as i64)
            .bind(snap.snapshot_number as i64)
            .bind(snap.payload.to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        if let Some((key, outcome)) = &req.idempotency {
            let stored = serde_json::json!({
                "result": outcome,
                "positions": positions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            sqlx::query(
                "INSERT INTO command_idempotency (idempotency_key, aggregate_type, aggregate_id, outcome) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(key)
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(stored.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                if is_unique_violation(&err) {
                    StoreError::DuplicateIdempotencyKey
                } else {
                    StoreError::from_sqlx(err)
                }
            })?;
        }
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        self.notify_commit();
        Ok(Appended { positions })
    }

    pub(super) async fn load_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
              WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ? ORDER BY sequence"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence as i64)
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(recorded).collect()
    }

    pub(super) async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT payload, last_sequence, current_snapshot FROM snapshots \
              WHERE aggregate_type = ? AND aggregate_id = ?",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(StoreError::from_sqlx)?;
        let Some(r) = row else { return Ok(None) };
        let text: String = r.try_get("payload").map_err(StoreError::from_sqlx)?;
        let payload: Value = serde_json::from_str(&text).map_err(|e| StoreError::CorruptEvent {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence: 0,
            event_type: "snapshot".into(),
            reason: e.to_string(),
        })?;
        Ok(Some(StoredSnapshot {
            payload,
            last_sequence: r
                .try_get::<i64, _>("last_sequence")
                .map_err(StoreError::from_sqlx)? as u64,
            snapshot_number: r
                .try_get::<i64, _>("current_snapshot")
                .map_err(StoreError::from_sqlx)? as u64,
        }))
    }

    pub(super) async fn read_all(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        ))
        .bind(after.seq as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(recorded).collect()
    }

    pub(super) async fn has_held_back_events(
        &self,
        _after: LogPosition,
    ) -> Result<bool, StoreError> {
        // One writer: whatever committed is readable at once.
        Ok(false)
    }

    pub(super) async fn head(&self) -> Result<LogPosition, StoreError> {
        let pos: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(LogPosition {
            tx: 0,
            seq: pos.unwrap_or(0) as u64,
        })
    }

    pub(super) async fn committed_head(&self) -> Result<LogPosition, StoreError> {
        self.head().await
    }

    pub(super) async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.reader)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(n as u64)
    }

    pub(super) async fn find_idempotent(
        &self,
        key: &str,
    ) -> Result<Option<StoredOutcome>, StoreError> {
        let row = sqlx::query(
            "SELECT aggregate_type, aggregate_id, outcome FROM command_idempotency WHERE idempotency_key = ?",
        )
        .bind(key)
        .fetch_optional(&self.writer)
        .await
        .map_err(StoreError::from_sqlx)?;
        let Some(r) = row else { return Ok(None) };
        let text: String = r.try_get("outcome").map_err(StoreError::from_sqlx)?;
        let outcome: Value =
            serde_json::from_str(&text).map_err(|e| StoreError::Database(e.to_string()))?;
        super::postgres::stored_outcome(
            r.try_get("aggregate_type").map_err(StoreError::from_sqlx)?,
            r.try_get("aggregate_id").map_err(StoreError::from_sqlx)?,
            outcome,
        )
        .map(Some)
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn recorded(r: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let aggregate_type: String = r.try_get("aggregate_type").map_err(StoreError::from_sqlx)?;
    let aggregate_id: String = r.try_get("aggregate_id").map_err(StoreError::from_sqlx)?;
    let sequence = r
        .try_get::<i64, _>("sequence")
        .map_err(StoreError::from_sqlx)? as u64;
    let event_type: String = r.try_get("event_type").map_err(StoreError::from_sqlx)?;
    let corrupt = |what: &str, e: serde_json::Error| StoreError::CorruptEvent {
        aggregate_type: aggregate_type.clone(),
        aggregate_id: aggregate_id.clone(),
        sequence,
        event_type: event_type.clone(),
        reason: format!("{what} is not JSON: {e}"),
    };
    let payload: String = r.try_get("payload").map_err(StoreError::from_sqlx)?;
    let metadata: String = r.try_get("metadata").map_err(StoreError::from_sqlx)?;
    let payload: Value = serde_json::from_str(&payload).map_err(|e| corrupt("payload", e))?;
    let metadata: Value = serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", e))?;
    let recorded_at: String = r.try_get("recorded_at").map_err(StoreError::from_sqlx)?;
    Ok(RecordedEvent {
        position: LogPosition {
            tx: 0,
            seq: r
                .try_get::<i64, _>("position")
                .map_err(StoreError::from_sqlx)? as u64,
        },
        aggregate_type,
        aggregate_id,
        sequence,
        event_type,
        event_version: r.try_get("event_version").map_err(StoreError::from_sqlx)?,
        payload,
        metadata,
        recorded_at: super::parse_recorded_at(&recorded_at),
    })
}

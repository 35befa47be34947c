//! PostgreSQL engine.
//!
//! Global order is `(transaction_id, position)`, and the reader only hands out
//! events of transactions older than every transaction still running
//! (`pg_snapshot_xmin`): such a prefix of the log can never grow in the
//! middle. The argument is in `docs/architecture.md`.

use std::sync::Arc;

use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::{watch, Notify};

use super::{
    AppendRequest, Appended, LogOptions, LogPosition, RecordedEvent, StoreError, StoredOutcome,
    StoredSnapshot,
};

/// The channel our appends NOTIFY on.
pub const NOTIFY_CHANNEL: &str = "dirtfree_events";

const EVENT_COLUMNS: &str = "transaction_id::text AS tx, position, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata, recorded_at";

/// The PostgreSQL event log.
#[derive(Debug, Clone)]
pub struct PostgresLog {
    pool: PgPool,
    commits: Arc<watch::Sender<u64>>,
    notify_others: Arc<Notify>,
}

impl PostgresLog {
    /// Connects, migrates, checks the transaction-id invariant and starts the
    /// NOTIFY sender and listener tasks.
    ///
    /// # Errors
    /// See [`super::EventLog::connect`].
    pub async fn connect(url: &str, options: &LogOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            // A transaction of ours forgotten open would hold every reader back (they read
            // only below the oldest running transaction): PostgreSQL ends it after a minute.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(
                        &mut *conn,
                        "SET idle_in_transaction_session_timeout = '60s'",
                    )
                    .await
                    .map(|_| ())
                })
            })
            .connect(url)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(_) => StoreError::InvalidUrl(e.to_string()),
                other => StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {}: {other}",
                    super::redact_url(url)
                )),
            })?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (tests, tools). Migrates and starts the tasks.
    ///
    /// # Errors
    /// See [`super::EventLog::connect`].
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        keep_the_order_after_a_restore(&pool).await?;

        let (tx, _) = watch::channel(0u64);
        let log = Self {
            pool,
            commits: Arc::new(tx),
            notify_others: Arc::new(Notify::new()),
        };
        log.spawn_notifier();
        log.spawn_listener();
        Ok(log)
    }

    /// The connection pool (read models share it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    // NOTIFY inside the append transaction would take the notification queue
    // lock at commit and serialise all writers; one coalesced NOTIFY after
    // commit wakes other instances just as well.
    fn spawn_notifier(&self) {
        let pool = self.pool.clone();
        let signal = Arc::clone(&self.notify_others);
        tokio::spawn(async move {
            loop {
                signal.notified().await;
                // A short pause lets a burst of commits share one NOTIFY.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "could not NOTIFY other instances of new events");
                    if pool.is_closed() {
                        return;
                    }
                }
            }
        });
    }

    fn spawn_listener(&self) {
        let pool = self.pool.clone();
        let commits = Arc::clone(&self.commits);
        tokio::spawn(async move {
            loop {
                if pool.is_closed() {
                    return;
                }
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener cannot connect; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                // Notifications may have been missed while (re)connecting.
                commits.send_modify(|n| *n += 1);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => commits.send_modify(|n| *n += 1),
                        Ok(None) => {
                            // Connection lost; sqlx reconnects on the next call.
                            commits.send_modify(|n| *n += 1);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "event listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
        });
    }

    pub(super) fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(StoreError::from_sqlx)
    }

    pub(super) async fn oldest_writing_transaction_secs(&self) -> Result<Option<f64>, StoreError> {
        sqlx::query_scalar(
            "SELECT extract(epoch FROM now() - min(xact_start))::float8 FROM pg_stat_activity \
              WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)
    }

    pub(super) async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        if req.events.is_empty() {
            return Ok(Appended { positions: vec![] });
        }
        let n = req.events.len();
        let first = req.expected_sequence + 1;
        let sequences: Vec<i64> = (0..n as u64).map(|i| (first + i) as i64).collect();
        let mut types = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut metadata = Vec::with_capacity(n);
        for e in req.events {
            types.push(e.event_type);
            versions.push(e.event_version);
            payloads.push(e.payload);
            metadata.push(e.metadata);
        }

        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        // One round trip for the whole batch; ORDER BY keeps positions in sequence order.
        let rows = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT $1, $2, u.s, u.t, u.v, u.p, u.m \
               FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) AS u(s, t, v, p, m) \
              ORDER BY u.s \
             RETURNING transaction_id::text AS tx, position, sequence",
        )
        .bind(&req.aggregate_type)
        .bind(&req.aggregate_id)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| map_write_error(e, &req.aggregate_type, &req.aggregate_id, req.expected_sequence))?;

        let mut with_seq: Vec<(i64, LogPosition)> = rows
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("sequence")?, position_of(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from_sqlx)?;
        with_seq.sort_by_key(|(s, _)| *s);
        let positions: Vec<LogPosition> = with_seq.into_iter().map(|(_, p)| p).collect();

        if let Some(snap) = &req.snapshot {
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                   SET last_sequence = EXCLUDED.last_sequence, current_snapshot = EXCLUDED.current_snapshot, \
                       payload = EXCLUDED.payload, updated_at = now() \
                 WHERE snapshots.last_sequence < EXCLUDED.last_sequence",
            )
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(snap.last_sequence as i64)
            .bind(snap.snapshot_number as i64)
            .bind(&snap.payload)
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
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(&req.aggregate_type)
            .bind(&req.aggregate_id)
            .bind(&stored)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_write_error(e, &req.aggregate_type, &req.aggregate_id, req.expected_sequence))?;
        }

        tx.commit().await.map_err(StoreError::from_sqlx)?;
        self.commits.send_modify(|c| *c += 1);
        self.notify_others.notify_one();
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
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence as i64)
        .fetch_all(&self.pool)
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
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| {
            Ok(StoredSnapshot {
                payload: r.try_get("payload")?,
                last_sequence: r.try_get::<i64, _>("last_sequence")? as u64,
                snapshot_number: r.try_get::<i64, _>("current_snapshot")? as u64,
            })
        })
        .transpose()
        .map_err(StoreError::from_sqlx)
    }

    pub(super) async fn read_all(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events \
              WHERE (transaction_id, position) > ($1::text::bigint, $2) \
                AND transaction_id < event_order_readable_below() \
              ORDER BY transaction_id, position LIMIT $3"
        ))
        .bind(after.tx.to_string())
        .bind(after.seq as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(recorded).collect()
    }

    pub(super) async fn has_held_back_events(
        &self,
        after: LogPosition,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
              WHERE (transaction_id, position) > ($1::text::bigint, $2) \
                AND transaction_id >= event_order_readable_below())",
        )
        .bind(after.tx.to_string())
        .bind(after.seq as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)
    }

    pub(super) async fn head(&self) -> Result<LogPosition, StoreError> {
        let row = sqlx::query(
            "SELECT transaction_id::text AS tx, position FROM events \
              WHERE transaction_id < event_order_readable_below() \
              ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        match row {
            Some(r) => position_of(&r).map_err(StoreError::from_sqlx),
            None => Ok(LogPosition::START),
        }
    }

    pub(super) async fn committed_head(&self) -> Result<LogPosition, StoreError> {
        let row = sqlx::query(
            "SELECT transaction_id::text AS tx, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        match row {
            Some(r) => position_of(&r).map_err(StoreError::from_sqlx),
            None => Ok(LogPosition::START),
        }
    }

    pub(super) async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(n as u64)
    }

    pub(super) async fn find_idempotent(
        &self,
        key: &str,
    ) -> Result<Option<StoredOutcome>, StoreError> {
        let row = sqlx::query(
            "SELECT aggregate_type, aggregate_id, outcome FROM command_idempotency WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| -> Result<StoredOutcome, StoreError> {
            let outcome: Value = r.try_get("outcome").map_err(StoreError::from_sqlx)?;
            stored_outcome(
                r.try_get("aggregate_type").map_err(StoreError::from_sqlx)?,
                r.try_get("aggregate_id").map_err(StoreError::from_sqlx)?,
                outcome,
            )
        })
        .transpose()
    }
}

pub(super) fn stored_outcome(
    aggregate_type: String,
    aggregate_id: String,
    mut outcome: Value,
) -> Result<StoredOutcome, StoreError> {
    let positions = outcome
        .get("positions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| p.as_str().unwrap_or_default().parse::<LogPosition>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(StoredOutcome {
        aggregate_type,
        aggregate_id,
        outcome: outcome
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null),
        positions,
    })
}

/// Keeps the global order across a restore into another cluster. Keys are this cluster's
/// transaction ids plus the store's offset; when the stored keys are ahead of what this
/// cluster would write (the events came from a cluster with a higher counter: pg_dump and
/// restore, a move to a managed database), the offset is raised so that every new key is
/// above every stored one. Raised against the oldest running transaction, so even a
/// transaction already open now writes above them, and every stored event (all of them
/// ended) stays readable. Several instances starting at once take turns on the row lock.
async fn keep_the_order_after_a_restore(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
    let row = sqlx::query(
        "SELECT o.order_offset, \
                (SELECT max(transaction_id) FROM events) AS newest, \
                pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS oldest_running, \
                pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next \
           FROM event_order_offset o FOR UPDATE",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::from_sqlx)?;
    let offset: i64 = row.try_get("order_offset").map_err(StoreError::from_sqlx)?;
    let newest: Option<i64> = row.try_get("newest").map_err(StoreError::from_sqlx)?;
    let oldest_running: i64 = row
        .try_get("oldest_running")
        .map_err(StoreError::from_sqlx)?;
    let next: i64 = row.try_get("next").map_err(StoreError::from_sqlx)?;
    if let Some(newest) = newest {
        // Only a key this cluster cannot have written (at or past its next transaction id)
        // says the events came from elsewhere; one from a transaction still running here
        // is no sign of that.
        if newest >= next + offset {
            let raised = newest + 1 - oldest_running;
            sqlx::query("UPDATE event_order_offset SET order_offset = $1")
                .bind(raised)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            tracing::warn!(
                newest_key = newest,
                from = offset,
                to = raised,
                "the stored events are ahead of this cluster's transaction ids (restored from \
                 another cluster): new events are ordered after them"
            );
        }
    }
    tx.commit().await.map_err(StoreError::from_sqlx)
}

fn position_of(r: &PgRow) -> Result<LogPosition, sqlx::Error> {
    let tx: String = r.try_get("tx")?;
    let seq: i64 = r.try_get("position")?;
    Ok(LogPosition {
        tx: tx.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        seq: seq as u64,
    })
}

fn recorded(r: &PgRow) -> Result<RecordedEvent, StoreError> {
    let get = || -> Result<RecordedEvent, sqlx::Error> {
        Ok(RecordedEvent {
            position: position_of(r)?,
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            sequence: r.try_get::<i64, _>("sequence")? as u64,
            event_type: r.try_get("event_type")?,
            event_version: r.try_get("event_version")?,
            payload: r.try_get("payload")?,
            metadata: r.try_get("metadata")?,
            recorded_at: r.try_get("recorded_at")?,
        })
    };
    get().map_err(StoreError::from_sqlx)
}

fn map_write_error(
    e: sqlx::Error,
    aggregate_type: &str,
    aggregate_id: &str,
    expected: u64,
) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("23505") {
            return match db.constraint() {
                Some("command_idempotency_pkey") => StoreError::DuplicateIdempotencyKey,
                _ => StoreError::Conflict {
                    aggregate_type: aggregate_type.to_string(),
                    aggregate_id: aggregate_id.to_string(),
                    expected_sequence: expected,
                },
            };
        }
    }
    StoreError::from_sqlx(e)
}

//! Sequenced dead letters ("parked" events), after Axon's: when a projection's
//! handler refuses an event, that event and every later event *of the same
//! aggregate* are parked for that projection, in order, while every other
//! aggregate keeps flowing into the same read model. The checkpoint moves on,
//! so one poison event never takes a read model away.
//!
//! Parked rows are written in the projection's own transaction (with its
//! checkpoint), so a crash neither loses nor repeats one. After a fix,
//! [`crate::ProjectionRunner::retry_parked`] applies each aggregate's parked
//! events in order; [`crate::ProjectionRunner::discard_parked`] drops them
//! (the caller records that as an event; rebuilds skip what was discarded).
//! A rebuild does not park: the same
//! failure fails it, so nothing half-built swaps in.
//!
//! The only SQL on `projection_parked` lives here.

use std::collections::{BTreeMap, BTreeSet};

use event_log::{LogPosition, RecordedEvent};
use serde::Serialize;

use crate::db::{DbError, JsonRow, Param, ReadDb, ReadTx};

/// An aggregate's stream, as `(aggregate_type, aggregate_id)`.
pub type Stream = (String, String);

/// Streams with parked events, by projection.
pub type ParkedStreams = BTreeMap<String, BTreeSet<Stream>>;

/// One parked event, for `status`, health and `replay-tools parked list`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParkedEvent {
    /// The projection it is parked for.
    pub projection: String,
    /// Its place in the log.
    pub position: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Sequence in the aggregate's stream.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// The handler's error, for the event that failed (`None` for one parked behind it).
    pub error: Option<String>,
}

/// Parked events of one projection, summed up.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParkedSummary {
    /// How many events are parked.
    pub count: i64,
    /// The earliest parked event's position.
    pub first_position: Option<String>,
    /// The error of the earliest event that failed.
    pub first_error: Option<String>,
}

fn text(r: &JsonRow, k: &str) -> Result<String, DbError> {
    r.get(k)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| DbError::new(format!("projection_parked row without {k}")))
}

fn int(r: &JsonRow, k: &str) -> Result<i64, DbError> {
    r.get(k)
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| DbError::new(format!("projection_parked row without {k}")))
}

/// The streams with parked events of `projections` (all when empty).
///
/// # Errors
/// [`DbError`].
pub async fn streams(tx: &mut ReadTx) -> Result<ParkedStreams, DbError> {
    let rows = tx
        .query(
            "SELECT DISTINCT projection, aggregate_type, aggregate_id FROM projection_parked",
            &[],
        )
        .await?;
    let mut out = ParkedStreams::new();
    for r in &rows {
        out.entry(text(r, "projection")?)
            .or_default()
            .insert((text(r, "aggregate_type")?, text(r, "aggregate_id")?));
    }
    Ok(out)
}

/// Parks `e` for `projection` (`error`: the handler's, for the event that failed).
///
/// # Errors
/// [`DbError`].
pub async fn park(
    tx: &mut ReadTx,
    projection: &str,
    e: &RecordedEvent,
    error: Option<&str>,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO projection_parked
           (projection, tx, seq, aggregate_type, aggregate_id, event_sequence, event_type, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (projection, tx, seq) DO NOTHING",
        &[
            projection.into(),
            (e.position.tx as i64).into(),
            (e.position.seq as i64).into(),
            e.aggregate_type.as_str().into(),
            e.aggregate_id.as_str().into(),
            (e.sequence as i64).into(),
            e.event_type.as_str().into(),
            error.into(),
        ],
    )
    .await
    .map(|_| ())
}

/// Parked events, oldest first (of one projection, or all).
///
/// # Errors
/// [`DbError`].
pub async fn list(db: &ReadDb, projection: Option<&str>) -> Result<Vec<ParkedEvent>, DbError> {
    let rows = db
        .query(
            "SELECT projection, tx, seq, aggregate_type, aggregate_id, event_sequence, event_type, error
             FROM projection_parked WHERE ($1 IS NULL OR projection = $1)
             ORDER BY projection, tx, seq",
            &[projection.into()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ParkedEvent {
                projection: text(r, "projection")?,
                position: LogPosition {
                    tx: int(r, "tx")? as u64,
                    seq: int(r, "seq")? as u64,
                }
                .to_string(),
                aggregate_type: text(r, "aggregate_type")?,
                aggregate_id: text(r, "aggregate_id")?,
                sequence: int(r, "event_sequence")?,
                event_type: text(r, "event_type")?,
                error: r.get("error").and_then(|v| v.as_str()).map(str::to_string),
            })
        })
        .collect()
}

/// Each projection's parked count, earliest position and first error.
///
/// # Errors
/// [`DbError`].
pub async fn summaries(db: &ReadDb) -> Result<BTreeMap<String, ParkedSummary>, DbError> {
    let mut out: BTreeMap<String, ParkedSummary> = BTreeMap::new();
    for e in list(db, None).await? {
        let s = out.entry(e.projection.clone()).or_default();
        s.count += 1;
        s.first_position.get_or_insert(e.position);
        if s.first_error.is_none() {
            s.first_error = e.error;
        }
    }
    Ok(out)
}

/// The parked positions of one stream for `projection`, in log order.
///
/// # Errors
/// [`DbError`].
pub async fn positions_of(
    tx: &mut ReadTx,
    projection: &str,
    stream: &Stream,
) -> Result<Vec<LogPosition>, DbError> {
    let rows = tx
        .query(
            "SELECT tx, seq FROM projection_parked
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3
             ORDER BY tx, seq",
            &[
                projection.into(),
                stream.0.as_str().into(),
                stream.1.as_str().into(),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LogPosition {
                tx: int(r, "tx")? as u64,
                seq: int(r, "seq")? as u64,
            })
        })
        .collect()
}

/// Forgets one stream's parked events for `projection`; returns how many.
///
/// # Errors
/// [`DbError`].
pub async fn remove(tx: &mut ReadTx, projection: &str, stream: &Stream) -> Result<u64, DbError> {
    tx.execute(
        "DELETE FROM projection_parked
         WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        &[
            projection.into(),
            stream.0.as_str().into(),
            stream.1.as_str().into(),
        ],
    )
    .await
}

/// Forgets one parked event.
///
/// # Errors
/// [`DbError`].
pub async fn remove_one(
    tx: &mut ReadTx,
    projection: &str,
    at: LogPosition,
) -> Result<u64, DbError> {
    tx.execute(
        "DELETE FROM projection_parked WHERE projection = $1 AND tx = $2 AND seq = $3",
        &[
            projection.into(),
            (at.tx as i64).into(),
            (at.seq as i64).into(),
        ],
    )
    .await
}

/// Records a retry's new error on the stream's first parked event.
///
/// # Errors
/// [`DbError`].
pub async fn set_error(
    tx: &mut ReadTx,
    projection: &str,
    at: LogPosition,
    error: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE projection_parked SET error = $4 WHERE projection = $1 AND tx = $2 AND seq = $3",
        &[
            projection.into(),
            (at.tx as i64).into(),
            (at.seq as i64).into(),
            Param::from(error),
        ],
    )
    .await
    .map(|_| ())
}

/// Drops a projection's parked rows (its read model is being rebuilt from zero).
///
/// # Errors
/// [`DbError`].
pub async fn clear(tx: &mut ReadTx, projection: &str) -> Result<u64, DbError> {
    tx.execute(
        "DELETE FROM projection_parked WHERE projection = $1",
        &[projection.into()],
    )
    .await
}

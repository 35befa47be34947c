//! `outbox_messages`: which messages are due, and which message a vendor's id belongs to.
//!
//! Derived from the `OutboundMessage` events (checkpoint `outbox-index` in
//! `policy_checkpoints`). Every row update is guarded by the stream sequence it comes from,
//! so re-applying events after a crash (checkpoint not yet saved), or two server instances
//! indexing the same events, changes nothing. The table is a hint for finding work: the
//! aggregate decides whether anything is sent.

use chrono::{DateTime, Duration, Utc};
use commands::policies::{load_checkpoint, save_checkpoint};
use commands::{EventLog, LogPosition, RecordedEvent, StoreError};
use domain::message::{MessageEvent, Provider, AGGREGATE_TYPE};
use projections::{row, DbError, ReadDb};

/// The index's checkpoint name in `policy_checkpoints`.
pub const CHECKPOINT: &str = "outbox-index";

fn db_error(e: DbError) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The message ids of `rows` (a `message_id` column).
fn message_ids(rows: &[projections::JsonRow]) -> Result<Vec<String>, StoreError> {
    rows.iter()
        .map(|r| row::text(r, "message_id").map_err(db_error))
        .collect()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// One row change derived from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    status: &'static str,
    due_at_ms: Option<i64>,
    provider: Option<&'static str>,
    provider_message_id: Option<String>,
}

/// What `event` means for its message's row. A claim's `due_at_ms` is when it was made: it is
/// due again when its lease has passed (see [`due`]), so a dead worker's claim is resolved.
fn change(event: &MessageEvent) -> Option<Change> {
    Some(match event {
        MessageEvent::MessageQueued { at, .. } => Change {
            status: "pending",
            due_at_ms: Some(ms(*at)),
            provider: None,
            provider_message_id: None,
        },
        MessageEvent::MessageSendStarted { at, provider, .. } => Change {
            status: "sending",
            due_at_ms: Some(ms(*at)),
            provider: Some(provider.as_str()),
            provider_message_id: None,
        },
        MessageEvent::MessageHeld { until, .. } => Change {
            status: "pending",
            due_at_ms: Some(ms(*until)),
            provider: None,
            provider_message_id: None,
        },
        MessageEvent::MessageSendAttemptFailed { retry_at, .. } => Change {
            status: "pending",
            due_at_ms: retry_at.map(ms),
            provider: None,
            provider_message_id: None,
        },
        MessageEvent::MessageSent {
            provider,
            provider_message_id,
            ..
        } => Change {
            status: "sent",
            due_at_ms: None,
            provider: Some(provider.as_str()),
            provider_message_id: Some(provider_message_id.clone()),
        },
        MessageEvent::MessageNotSent { .. } => Change {
            status: "not_sent",
            due_at_ms: None,
            provider: None,
            provider_message_id: None,
        },
        MessageEvent::MessageDeliveryStatusChanged { .. } => return None,
    })
}

/// Applies one `OutboundMessage` event to the index (idempotent).
///
/// # Errors
/// [`StoreError`] when the database fails or the event does not decode.
pub async fn apply(log: &EventLog, e: &RecordedEvent) -> Result<(), StoreError> {
    if e.aggregate_type != AGGREGATE_TYPE {
        return Ok(());
    }
    let event: MessageEvent =
        serde_json::from_value(e.payload.clone()).map_err(|err| StoreError::CorruptEvent {
            aggregate_type: e.aggregate_type.clone(),
            aggregate_id: e.aggregate_id.clone(),
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            reason: err.to_string(),
        })?;
    let channel = match &event {
        MessageEvent::MessageQueued { channel, .. } => {
            serde_json::to_value(channel).map_err(|e| StoreError::Database(e.to_string()))?
        }
        _ => serde_json::Value::Null,
    };
    let Some(c) = change(&event) else {
        return Ok(());
    };
    let seq = e.sequence as i64;
    let id = e.aggregate_id.as_str();
    ReadDb::of(log)
        .execute(
            "INSERT INTO outbox_messages (message_id, channel, status, due_at_ms, provider, provider_message_id, last_sequence)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, due_at_ms = excluded.due_at_ms,
             provider = COALESCE(excluded.provider, outbox_messages.provider),
             provider_message_id = COALESCE(excluded.provider_message_id, outbox_messages.provider_message_id),
             last_sequence = excluded.last_sequence
             WHERE outbox_messages.last_sequence < excluded.last_sequence",
            &[
                id.into(),
                channel.as_str().unwrap_or("").into(),
                c.status.into(),
                c.due_at_ms.into(),
                c.provider.into(),
                c.provider_message_id.into(),
                seq.into(),
            ],
        )
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// Indexes every `OutboundMessage` event after the checkpoint; returns how many events were read.
///
/// # Errors
/// [`StoreError`].
pub async fn catch_up(log: &EventLog) -> Result<u64, StoreError> {
    let mut position = load_checkpoint(log, CHECKPOINT).await?;
    let mut read = 0;
    loop {
        let events = log.read_all(position, 500).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(read);
        };
        for e in &events {
            apply(log, e).await?;
        }
        read += events.len() as u64;
        position = last;
        save_checkpoint(log, CHECKPOINT, position).await?;
    }
}

/// Messages due at `now`, oldest first: pending ones whose attempt is due, and claims older
/// than `claim_lease` (their worker died, or could not record the outcome).
///
/// # Errors
/// [`StoreError`].
pub async fn due(
    log: &EventLog,
    now: DateTime<Utc>,
    claim_lease: Duration,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = ReadDb::of(log)
        .query(
            "SELECT message_id FROM outbox_messages WHERE due_at_ms IS NOT NULL
             AND ((status <> 'sending' AND due_at_ms <= $1) OR (status = 'sending' AND due_at_ms <= $2))
             ORDER BY due_at_ms LIMIT $3",
            &[ms(now).into(), ms(now - claim_lease).into(), limit.into()],
        )
        .await
        .map_err(db_error)?;
    message_ids(&rows)
}

/// The message a vendor's id belongs to (`SM…` for Twilio, the email id for Resend). A
/// callback can race the indexing of `MessageSent`: on a miss the index catches up, waiting
/// (up to [`HELD_BACK_WAIT`]) for events an open transaction holds back from readers. Still
/// held back after that, the answer is "unavailable" — the vendor's retry finds it — never a
/// false "no such message".
///
/// # Errors
/// [`StoreError`]; [`StoreError::Unavailable`] when the log stayed held back.
pub async fn message_for_provider_id(
    log: &EventLog,
    provider: Provider,
    provider_message_id: &str,
) -> Result<Option<String>, StoreError> {
    let deadline = tokio::time::Instant::now() + HELD_BACK_WAIT;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if let Some(id) = lookup(log, provider, provider_message_id).await? {
            return Ok(Some(id));
        }
        catch_up(log).await?;
        if let Some(id) = lookup(log, provider, provider_message_id).await? {
            return Ok(Some(id));
        }
        // Committed events behind an older open transaction (PostgreSQL: any database of
        // the cluster) are not readable yet: they may hold the `MessageSent`. That
        // transaction may also have ended since the catch-up above, making them readable
        // but not yet read. Only when no committed event at all is after the checkpoint
        // (one statement, one snapshot) is the answer "no such message".
        let at = checkpoint(log).await?;
        if log.committed_head().await? <= at {
            // Everything committed is indexed by now: the index's answer is final.
            return lookup(log, provider, provider_message_id).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(
                "recent events are not readable yet (an older transaction is open)".into(),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(250));
    }
}

/// How long a callback's lookup waits for held-back events.
pub const HELD_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn lookup(
    log: &EventLog,
    provider: Provider,
    provider_message_id: &str,
) -> Result<Option<String>, StoreError> {
    let rows = ReadDb::of(log)
        .query(
            "SELECT message_id FROM outbox_messages WHERE provider = $1 AND provider_message_id = $2",
            &[provider.as_str().into(), provider_message_id.into()],
        )
        .await
        .map_err(db_error)?;
    Ok(message_ids(&rows)?.into_iter().next())
}

/// Messages by index status, and how late (ms) the oldest due one is at `now`: what health
/// and the metrics scrape report.
///
/// # Errors
/// [`StoreError`].
pub async fn counts(
    log: &EventLog,
    now: DateTime<Utc>,
) -> Result<(Vec<(String, i64)>, Option<i64>), StoreError> {
    let db = ReadDb::of(log);
    let rows = db
        .query(
            "SELECT status, count(*) AS n FROM outbox_messages GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .map_err(db_error)?;
    let by_status = rows
        .iter()
        .map(|r| Ok((row::text(r, "status")?, row::int(r, "n")?)))
        .collect::<Result<Vec<_>, DbError>>()
        .map_err(db_error)?;
    let oldest = db
        .query(
            "SELECT min(due_at_ms) AS due FROM outbox_messages WHERE due_at_ms IS NOT NULL",
            &[],
        )
        .await
        .map_err(db_error)?;
    let due = match oldest.first() {
        Some(r) => row::opt_int(r, "due").map_err(db_error)?,
        None => None,
    };
    Ok((by_status, due.map(|due| (ms(now) - due).max(0))))
}

/// The index's checkpoint (for status and tests).
///
/// # Errors
/// [`StoreError`].
pub async fn checkpoint(log: &EventLog) -> Result<LogPosition, StoreError> {
    load_checkpoint(log, CHECKPOINT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_indexed_at_the_time_it_was_made() {
        let at = Utc::now();
        let started = MessageEvent::MessageSendStarted {
            attempt: 1,
            provider: Provider::Resend,
            idempotency_key: "k".into(),
            resumed: false,
            at,
        };
        let c = change(&started).expect("a change");
        assert_eq!(c.status, "sending");
        assert_eq!(c.due_at_ms, Some(ms(at)));
    }
}

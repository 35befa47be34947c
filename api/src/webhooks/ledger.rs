//! `webhook_deliveries`: every verified delivery, recorded once per vendor id
//! before anything acts on it.
//!
//! Recording *is* the decision to act: the `INSERT … ON CONFLICT DO NOTHING`
//! that succeeds claims the delivery, so of 50 concurrent copies exactly one
//! acts. A claim whose processing never finished (the process died) may be
//! taken over by a redelivery once [`LEASE`] has passed; the effects carry
//! idempotency keys derived from the vendor's id, so a takeover never applies
//! anything twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::{EventLog, StoreError};

use super::delivery::{Delivery, Provider, SmsStatus};

/// How long a claim protects a delivery being processed from takeover.
pub const LEASE: Duration = Duration::from_secs(60);

/// What recording a delivery decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request recorded (or took over) the delivery and must act on it.
    Act,
    /// Already processed; `outcome` is what it did.
    Processed {
        /// The stored outcome.
        outcome: String,
    },
    /// Another request is acting on it right now.
    InProgress,
}

fn db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Database(other.to_string()),
    }
}

/// Records `delivery` if it is new, or finds out where its first copy is.
///
/// # Errors
/// [`StoreError`] when the database fails; nothing is claimed then.
pub async fn claim(log: &EventLog, d: &Delivery, now: DateTime<Utc>) -> Result<Claim, StoreError> {
    let provider = d.provider.as_str();
    let inserted = match log {
        EventLog::Postgres(pg) => sqlx::query(
            "INSERT INTO webhook_deliveries (provider, delivery_id, event_type, received_at, payload, claimed_at) \
             VALUES ($1, $2, $3, $4, $5, $4) ON CONFLICT (provider, delivery_id) DO NOTHING",
        )
        .bind(provider)
        .bind(&d.delivery_id)
        .bind(&d.event_type)
        .bind(now)
        .bind(&d.payload)
        .execute(pg.pool())
        .await
        .map_err(db_error)?
        .rows_affected(),
        EventLog::Sqlite(s) => sqlx::query(
            "INSERT INTO webhook_deliveries (provider, delivery_id, event_type, received_at, payload, claimed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?4) ON CONFLICT (provider, delivery_id) DO NOTHING",
        )
        .bind(provider)
        .bind(&d.delivery_id)
        .bind(&d.event_type)
        .bind(now)
        .bind(d.payload.to_string())
        .execute(s.writer())
        .await
        .map_err(db_error)?
        .rows_affected(),
    };
    if inserted == 1 {
        return Ok(Claim::Act);
    }
    let Some(row) = state(log, d.provider, &d.delivery_id).await? else {
        // Deleted in between (retention): record it afresh next time.
        return Ok(Claim::InProgress);
    };
    if row.processed {
        return Ok(Claim::Processed {
            outcome: row.outcome.unwrap_or_default(),
        });
    }
    let lease = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::MAX);
    if now - row.claimed_at < lease {
        return Ok(Claim::InProgress);
    }
    // Compare-and-set on the attempt counter: one redelivery takes over.
    let sql_pg = "UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_at = $1 \
                  WHERE provider = $2 AND delivery_id = $3 AND processed_at IS NULL AND attempts = $4";
    let sql_lite = "UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_at = ?1 \
                    WHERE provider = ?2 AND delivery_id = ?3 AND processed_at IS NULL AND attempts = ?4";
    let taken = match log {
        EventLog::Postgres(pg) => sqlx::query(sql_pg)
            .bind(now)
            .bind(provider)
            .bind(&d.delivery_id)
            .bind(row.attempts)
            .execute(pg.pool())
            .await
            .map_err(db_error)?
            .rows_affected(),
        EventLog::Sqlite(s) => sqlx::query(sql_lite)
            .bind(now)
            .bind(provider)
            .bind(&d.delivery_id)
            .bind(row.attempts)
            .execute(s.writer())
            .await
            .map_err(db_error)?
            .rows_affected(),
    };
    if taken == 1 {
        tracing::warn!(%provider, attempt = row.attempts + 1, "taking over a webhook delivery whose processing did not finish");
        Ok(Claim::Act)
    } else {
        Ok(Claim::InProgress)
    }
}

/// Marks a claimed delivery processed with what it did.
///
/// # Errors
/// [`StoreError`] when the database fails (the delivery stays claimed and
/// will be taken over by a redelivery after [`LEASE`]).
pub async fn finish(
    log: &EventLog,
    provider: Provider,
    delivery_id: &str,
    outcome: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match log {
        EventLog::Postgres(pg) => sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = $1, outcome = $2 WHERE provider = $3 AND delivery_id = $4",
        )
        .bind(now)
        .bind(outcome)
        .bind(provider.as_str())
        .bind(delivery_id)
        .execute(pg.pool())
        .await
        .map_err(db_error)?
        .rows_affected(),
        EventLog::Sqlite(s) => sqlx::query(
            "UPDATE webhook_deliveries SET processed_at = ?1, outcome = ?2 WHERE provider = ?3 AND delivery_id = ?4",
        )
        .bind(now)
        .bind(outcome)
        .bind(provider.as_str())
        .bind(delivery_id)
        .execute(s.writer())
        .await
        .map_err(db_error)?
        .rows_affected(),
    };
    Ok(())
}

/// Gives up a claim after a transient failure, so that the vendor's next
/// retry takes the delivery over at once instead of after [`LEASE`].
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn release(
    log: &EventLog,
    provider: Provider,
    delivery_id: &str,
) -> Result<(), StoreError> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    match log {
        EventLog::Postgres(pg) => sqlx::query(
            "UPDATE webhook_deliveries SET claimed_at = $1 WHERE provider = $2 AND delivery_id = $3 AND processed_at IS NULL",
        )
        .bind(epoch)
        .bind(provider.as_str())
        .bind(delivery_id)
        .execute(pg.pool())
        .await
        .map_err(db_error)?
        .rows_affected(),
        EventLog::Sqlite(s) => sqlx::query(
            "UPDATE webhook_deliveries SET claimed_at = ?1 WHERE provider = ?2 AND delivery_id = ?3 AND processed_at IS NULL",
        )
        .bind(epoch)
        .bind(provider.as_str())
        .bind(delivery_id)
        .execute(s.writer())
        .await
        .map_err(db_error)?
        .rows_affected(),
    };
    Ok(())
}

/// Waits up to `timeout` for another request to finish processing a
/// delivery; its outcome, or `None` when it is still unfinished.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn wait_processed(
    log: &EventLog,
    provider: Provider,
    delivery_id: &str,
    timeout: Duration,
) -> Result<Option<String>, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(row) = state(log, provider, delivery_id).await? {
            if row.processed {
                return Ok(Some(row.outcome.unwrap_or_default()));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Row {
    attempts: i32,
    claimed_at: DateTime<Utc>,
    processed: bool,
    outcome: Option<String>,
}

async fn state(
    log: &EventLog,
    provider: Provider,
    delivery_id: &str,
) -> Result<Option<Row>, StoreError> {
    type Raw = (i32, DateTime<Utc>, Option<DateTime<Utc>>, Option<String>);
    let raw: Option<Raw> = match log {
        EventLog::Postgres(pg) => sqlx::query_as(
            "SELECT attempts, claimed_at, processed_at, outcome FROM webhook_deliveries \
             WHERE provider = $1 AND delivery_id = $2",
        )
        .bind(provider.as_str())
        .bind(delivery_id)
        .fetch_optional(pg.pool())
        .await
        .map_err(db_error)?,
        EventLog::Sqlite(s) => sqlx::query_as(
            "SELECT attempts, claimed_at, processed_at, outcome FROM webhook_deliveries \
             WHERE provider = ?1 AND delivery_id = ?2",
        )
        .bind(provider.as_str())
        .bind(delivery_id)
        .fetch_optional(s.reader())
        .await
        .map_err(db_error)?,
    };
    Ok(
        raw.map(|(attempts, claimed_at, processed_at, outcome)| Row {
            attempts,
            claimed_at,
            processed: processed_at.is_some(),
            outcome,
        }),
    )
}

/// Number of deliveries recorded for `provider` (tests, health).
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn count(log: &EventLog, provider: Provider) -> Result<u64, StoreError> {
    let n: i64 = match log {
        EventLog::Postgres(pg) => {
            sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE provider = $1")
                .bind(provider.as_str())
                .fetch_one(pg.pool())
                .await
                .map_err(db_error)?
        }
        EventLog::Sqlite(s) => {
            sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE provider = ?1")
                .bind(provider.as_str())
                .fetch_one(s.reader())
                .await
                .map_err(db_error)?
        }
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The delivery status of an SMS we sent, from its recorded status
/// callbacks: the highest-ranked one, whatever order they arrived in.
/// `None` before any callback.
///
/// Stop-gap until the outbound-message aggregate (the outbox) records
/// statuses as events; see docs/webhooks.md.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn sms_status(
    log: &EventLog,
    message_sid: &str,
) -> Result<Option<SmsStatus>, StoreError> {
    let prefix = format!("{message_sid}:");
    let ids: Vec<String> = match log {
        EventLog::Postgres(pg) => sqlx::query_scalar(
            "SELECT delivery_id FROM webhook_deliveries WHERE provider = 'twilio' \
             AND event_type = 'message_status' AND starts_with(delivery_id, $1)",
        )
        .bind(&prefix)
        .fetch_all(pg.pool())
        .await
        .map_err(db_error)?,
        EventLog::Sqlite(s) => sqlx::query_scalar(
            "SELECT delivery_id FROM webhook_deliveries WHERE provider = 'twilio' \
             AND event_type = 'message_status' AND substr(delivery_id, 1, length(?1)) = ?1",
        )
        .bind(&prefix)
        .fetch_all(s.reader())
        .await
        .map_err(db_error)?,
    };
    Ok(ids
        .iter()
        .filter_map(|id| id.strip_prefix(&prefix).and_then(SmsStatus::parse))
        .fold(None, |cur, s| if s.supersedes(cur) { Some(s) } else { cur }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::delivery::{parse_stripe, Delivery};
    use commands::{DatabaseUrl, LogOptions};

    struct TempLog {
        log: EventLog,
        dir: std::path::PathBuf,
    }

    impl Drop for TempLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn sqlite_log() -> TempLog {
        let dir = std::env::temp_dir().join(format!("dirtfree-ledger-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = DatabaseUrl::parse(Some(&format!("sqlite://{}", dir.join("t.db").display())))
            .expect("url");
        let log = EventLog::connect(&url, &LogOptions::default())
            .await
            .expect("log");
        TempLog { log, dir }
    }

    fn delivery() -> Delivery {
        parse_stripe(br#"{"id":"evt_1","type":"charge.refunded","data":{"object":{}}}"#)
            .expect("parsed")
    }

    #[tokio::test]
    async fn the_first_copy_acts_and_later_copies_see_its_outcome() {
        let t = sqlite_log().await;
        let (d, now) = (delivery(), Utc::now());
        assert_eq!(claim(&t.log, &d, now).await.expect("claim"), Claim::Act);
        assert_eq!(
            claim(&t.log, &d, now).await.expect("claim"),
            Claim::InProgress
        );
        finish(&t.log, d.provider, &d.delivery_id, "ignored", now)
            .await
            .expect("finish");
        assert_eq!(
            claim(&t.log, &d, now).await.expect("claim"),
            Claim::Processed {
                outcome: "ignored".into()
            }
        );
        assert_eq!(count(&t.log, Provider::Stripe).await.expect("count"), 1);
    }

    #[tokio::test]
    async fn a_released_claim_is_taken_over_by_the_next_copy() {
        let t = sqlite_log().await;
        let (d, now) = (delivery(), Utc::now());
        assert_eq!(claim(&t.log, &d, now).await.expect("claim"), Claim::Act);
        release(&t.log, d.provider, &d.delivery_id)
            .await
            .expect("release");
        assert_eq!(claim(&t.log, &d, now).await.expect("claim"), Claim::Act);
        assert_eq!(
            claim(&t.log, &d, now).await.expect("claim"),
            Claim::InProgress
        );
    }

    #[tokio::test]
    async fn a_claim_abandoned_past_its_lease_is_taken_over_once() {
        let t = sqlite_log().await;
        let (d, now) = (delivery(), Utc::now());
        assert_eq!(claim(&t.log, &d, now).await.expect("claim"), Claim::Act);
        // The process died; a redelivery after the lease takes over, a second one does not.
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(claim(&t.log, &d, later).await.expect("claim"), Claim::Act);
        assert_eq!(
            claim(&t.log, &d, later).await.expect("claim"),
            Claim::InProgress
        );
    }

    #[tokio::test]
    async fn the_sms_status_is_the_highest_ranked_callback_whatever_the_order() {
        let t = sqlite_log().await;
        let now = Utc::now();
        for status in ["delivered", "sent", "queued"] {
            let params = vec![
                ("MessageSid".to_string(), "SM1".to_string()),
                ("MessageStatus".to_string(), status.to_string()),
            ];
            let d = crate::webhooks::delivery::parse_twilio_status(&params).expect("parsed");
            assert_eq!(claim(&t.log, &d, now).await.expect("claim"), Claim::Act);
        }
        assert_eq!(
            sms_status(&t.log, "SM1").await.expect("status"),
            Some(SmsStatus::Delivered)
        );
        assert_eq!(sms_status(&t.log, "SM2").await.expect("status"), None);
    }
}

//! `webhook_deliveries`: every verified delivery, recorded once per vendor id
//! before anything acts on it.
//!
//! Recording *is* the decision to act: the `INSERT … ON CONFLICT DO NOTHING`
//! that succeeds claims the delivery, so of 50 concurrent copies exactly one
//! acts. A claim whose processing never finished (the process died) may be
//! taken over by a redelivery once [`LEASE`] has passed; the effects carry
//! idempotency keys derived from the vendor's id, so a takeover never applies
//! anything twice.
//!
//! The table lives in the read-model database ([`ReadDb`]): the log's own
//! database on PostgreSQL and SQLite, the side database on EventStoreDB.
//! Its writes do not wait for the WAL flush ([`ReadDb::execute_relaxed`]):
//! a claim or outcome lost in a crash only means a redelivery acts again,
//! and every effect is keyed by the vendor's id, so it changes nothing twice.
//! The command's own append is the durable point.

use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::StoreError;
use projections::{DbError, JsonRow, Param, ReadDb};

use super::{Delivery, Provider, SmsStatus};

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

fn db_error(e: DbError) -> StoreError {
    if e.is_unavailable() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Database(e.to_string())
    }
}

/// Records `delivery` if it is new, or finds out where its first copy is.
///
/// # Errors
/// [`StoreError`] when the database fails; nothing is claimed then.
pub async fn claim(db: &ReadDb, d: &Delivery, now: DateTime<Utc>) -> Result<Claim, StoreError> {
    let provider = d.provider.as_str();
    let inserted = db
        .execute_relaxed(
            "INSERT INTO webhook_deliveries (provider, delivery_id, event_type, received_at, payload, claimed_at) \
             VALUES ($1, $2, $3, $4, $5, $4) ON CONFLICT (provider, delivery_id) DO NOTHING",
            &[
                provider.into(),
                d.delivery_id.as_str().into(),
                d.event_type.as_str().into(),
                now.into(),
                Param::Json(d.payload.clone()),
            ],
        )
        .await
        .map_err(db_error)?;
    if inserted == 1 {
        return Ok(Claim::Act);
    }
    let Some(row) = state(db, d.provider, &d.delivery_id).await? else {
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
    let taken = db
        .execute_relaxed(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, claimed_at = $1 \
             WHERE provider = $2 AND delivery_id = $3 AND processed_at IS NULL AND attempts = $4",
            &[
                now.into(),
                provider.into(),
                d.delivery_id.as_str().into(),
                Param::Int(row.attempts),
            ],
        )
        .await
        .map_err(db_error)?;
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
    db: &ReadDb,
    provider: Provider,
    delivery_id: &str,
    outcome: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db.execute_relaxed(
        "UPDATE webhook_deliveries SET processed_at = $1, outcome = $2 WHERE provider = $3 AND delivery_id = $4",
        &[now.into(), outcome.into(), provider.as_str().into(), delivery_id.into()],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Gives up a claim after a transient failure, so that the vendor's next
/// retry takes the delivery over at once instead of after [`LEASE`].
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn release(db: &ReadDb, provider: Provider, delivery_id: &str) -> Result<(), StoreError> {
    db.execute_relaxed(
        "UPDATE webhook_deliveries SET claimed_at = $1 WHERE provider = $2 AND delivery_id = $3 AND processed_at IS NULL",
        &[
            DateTime::<Utc>::UNIX_EPOCH.into(),
            provider.as_str().into(),
            delivery_id.into(),
        ],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Waits up to `timeout` for another request to finish processing a
/// delivery; its outcome, or `None` when it is still unfinished.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn wait_processed(
    db: &ReadDb,
    provider: Provider,
    delivery_id: &str,
    timeout: Duration,
) -> Result<Option<String>, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(row) = state(db, provider, delivery_id).await? {
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
    attempts: i64,
    claimed_at: DateTime<Utc>,
    processed: bool,
    outcome: Option<String>,
}

fn text<'a>(r: &'a JsonRow, column: &str) -> Option<&'a str> {
    r.get(column).and_then(|v| v.as_str())
}

async fn state(
    db: &ReadDb,
    provider: Provider,
    delivery_id: &str,
) -> Result<Option<Row>, StoreError> {
    let rows = db
        .query(
            "SELECT attempts, claimed_at, processed_at, outcome FROM webhook_deliveries \
             WHERE provider = $1 AND delivery_id = $2",
            &[provider.as_str().into(), delivery_id.into()],
        )
        .await
        .map_err(db_error)?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let claimed_at = text(r, "claimed_at")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| StoreError::Database("webhook_deliveries.claimed_at unreadable".into()))?;
    Ok(Some(Row {
        attempts: r.get("attempts").and_then(|v| v.as_i64()).unwrap_or(1),
        claimed_at,
        processed: text(r, "processed_at").is_some(),
        outcome: text(r, "outcome").map(str::to_string),
    }))
}

/// Number of deliveries recorded for `provider` (tests, health).
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn count(db: &ReadDb, provider: Provider) -> Result<u64, StoreError> {
    let rows = db
        .query(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE provider = $1",
            &[provider.as_str().into()],
        )
        .await
        .map_err(db_error)?;
    let n = rows
        .first()
        .and_then(|r| r.get("n"))
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
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
pub async fn sms_status(db: &ReadDb, message_sid: &str) -> Result<Option<SmsStatus>, StoreError> {
    let prefix = format!("{message_sid}:");
    // `substr`/`length` exist on both engines; the key's prefix is a plain string.
    let rows = db
        .query(
            "SELECT delivery_id FROM webhook_deliveries WHERE provider = 'twilio' \
             AND event_type = 'message_status' AND substr(delivery_id, 1, length($1)) = $1",
            &[prefix.as_str().into()],
        )
        .await
        .map_err(db_error)?;
    Ok(rows
        .iter()
        .filter_map(|r| text(r, "delivery_id"))
        .filter_map(|id| id.strip_prefix(&prefix).and_then(SmsStatus::parse))
        .fold(None, |cur, s| if s.supersedes(cur) { Some(s) } else { cur }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::WebhookEvent;
    use commands::{DatabaseUrl, EventLog, LogOptions};

    struct TempLog {
        log: ReadDb,
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
        TempLog {
            log: ReadDb::of(&log),
            dir,
        }
    }

    fn delivery() -> Delivery {
        Delivery {
            provider: Provider::Stripe,
            delivery_id: "evt_1".into(),
            event_type: "charge.refunded".into(),
            payload: serde_json::json!({"id": "evt_1", "type": "charge.refunded", "data": {"object": {}}}),
            event: WebhookEvent::Ignored,
        }
    }

    /// A Twilio status callback as the api's parser makes it (`MessageSid:status`).
    fn sms_status_delivery(sid: &str, status: &str) -> Delivery {
        Delivery {
            provider: Provider::Twilio,
            delivery_id: format!("{sid}:{status}"),
            event_type: "message_status".into(),
            payload: serde_json::json!({"MessageSid": sid, "MessageStatus": status}),
            event: WebhookEvent::SmsStatus {
                message_sid: sid.into(),
                status: SmsStatus::parse(status).expect("a Twilio status"),
                error_code: None,
            },
        }
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
            let d = sms_status_delivery("SM1", status);
            assert_eq!(claim(&t.log, &d, now).await.expect("claim"), Claim::Act);
        }
        assert_eq!(
            sms_status(&t.log, "SM1").await.expect("status"),
            Some(SmsStatus::Delivered)
        );
        assert_eq!(sms_status(&t.log, "SM2").await.expect("status"), None);
    }
}

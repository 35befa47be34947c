//! The outbound messages read model.

use domain::message::{MessageEvent, Recipient};

use super::prelude::*;

/// The outbound message log: what was queued, why, and what became of it. Bodies and
/// recipient addresses stay in the stream (they are personal data); the row says whose.
#[derive(Debug)]
pub struct Messages;

const MESSAGES: &[&str] = &["messages"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::message::AGGREGATE_TYPE];

impl Projection for Messages {
    fn name(&self) -> &'static str {
        "messages"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        MESSAGES
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {messages} (
                message_id TEXT PRIMARY KEY, kind TEXT NOT NULL, channel TEXT NOT NULL,
                customer_id TEXT, cause TEXT NOT NULL, status TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0, provider TEXT, provider_message_id TEXT,
                delivery_status TEXT, last_error TEXT, not_sent_reason TEXT,
                queued_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE INDEX {messages}_queued_{gen} ON {messages} (queued_at)",
            "CREATE INDEX {messages}_customer_{gen} ON {messages} (customer_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::Message(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = MESSAGES;
            let id = e.aggregate_id.clone();
            match event {
                MessageEvent::MessageQueued {
                    kind,
                    channel,
                    recipient,
                    cause,
                    at,
                    ..
                } => {
                    // Only a customer recipient names whose message it is.
                    let customer = match recipient {
                        Recipient::Customer { customer_id } => Some(customer_id.to_string()),
                        Recipient::Email { .. } | Recipient::Phone { .. } | Recipient::Withheld => {
                            None
                        }
                    };
                    exec(tx, ctx, t, "INSERT INTO {messages} (message_id, kind, channel, customer_id, cause, status, queued_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6) ON CONFLICT (message_id) DO NOTHING",
                        &[id.into(), text(kind).into(), text(channel).into(), customer.into(),
                          text(cause).into(), rfc3339(*at).into()]).await?;
                }
                MessageEvent::MessageSendStarted {
                    attempt,
                    provider,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'sending', attempts = $2, provider = $3, updated_at = $4 WHERE message_id = $1",
                        &[id.into(), i64::from(*attempt).into(), text(provider).into(), rfc3339(*at).into()]).await?;
                }
                MessageEvent::MessageSendAttemptFailed {
                    error,
                    retry_at,
                    at,
                    ..
                } => {
                    let status = if retry_at.is_none() {
                        "sending"
                    } else {
                        "retrying"
                    };
                    exec(tx, ctx, t, "UPDATE {messages} SET status = $2, last_error = $3, updated_at = $4 WHERE message_id = $1",
                        &[id.into(), status.into(), text(error).into(), rfc3339(*at).into()]).await?;
                }
                MessageEvent::MessageHeld { at, .. } => {
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'held', updated_at = $2 WHERE message_id = $1",
                        &[id.into(), rfc3339(*at).into()]).await?;
                }
                MessageEvent::MessageSent {
                    provider,
                    provider_message_id,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'sent', provider = $2, provider_message_id = $3, updated_at = $4 WHERE message_id = $1",
                        &[id.into(), text(provider).into(), text(provider_message_id).into(), rfc3339(*at).into()]).await?;
                }
                MessageEvent::MessageNotSent { reason, at } => {
                    let kind = kind_tag(reason);
                    exec(tx, ctx, t, "UPDATE {messages} SET status = 'not_sent', not_sent_reason = $2, updated_at = $3 WHERE message_id = $1",
                        &[id.into(), kind.into(), rfc3339(*at).into()]).await?;
                }
                MessageEvent::MessageDeliveryStatusChanged { to, at, .. } => {
                    exec(tx, ctx, t, "UPDATE {messages} SET delivery_status = $2, updated_at = $3 WHERE message_id = $1",
                        &[id.into(), text(to).into(), rfc3339(*at).into()]).await?;
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// One outbound message as the message log lists it: why, to whom, and what became of it
/// (its body and address stay in its stream). Instants are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Its id.
    pub message_id: String,
    /// Why it was sent (`offer`, `promotion`, `review_request`…).
    pub kind: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The customer it went to (none for staff recipients).
    pub customer_id: Option<String>,
    /// The event that caused it.
    pub cause: String,
    /// `queued`, `held`, `sending`, `retrying`, `sent` or `not_sent`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The vendor.
    pub provider: Option<String>,
    /// The vendor's id.
    pub provider_message_id: Option<String>,
    /// The vendor's last delivery report.
    pub delivery_status: Option<String>,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// Why it was not sent.
    pub not_sent_reason: Option<String>,
    /// Queued.
    pub queued_at: String,
    /// Last change.
    pub updated_at: String,
}

impl crate::row::FromRow for MessageRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_text, text};
        Ok(MessageRow {
            message_id: text(r, "message_id")?,
            kind: text(r, "kind")?,
            channel: text(r, "channel")?,
            customer_id: opt_text(r, "customer_id")?,
            cause: text(r, "cause")?,
            status: text(r, "status")?,
            attempts: int(r, "attempts")?,
            provider: opt_text(r, "provider")?,
            provider_message_id: opt_text(r, "provider_message_id")?,
            delivery_status: opt_text(r, "delivery_status")?,
            last_error: opt_text(r, "last_error")?,
            not_sent_reason: opt_text(r, "not_sent_reason")?,
            queued_at: text(r, "queued_at")?,
            updated_at: text(r, "updated_at")?,
        })
    }
}

/// Outbound messages in `status` of `kind` to `customer` (empty: any), newest first.
pub fn list(status: &str, kind: &str, customer: &str) -> crate::Listing<MessageRow> {
    crate::Listing::new(
        "rm_messages WHERE ($1 = '' OR status = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR customer_id = $3)",
        "queued_at DESC, message_id",
        vec![status.into(), kind.into(), customer.into()],
    )
}

/// Why a message counts as given up (the vendor refused it, retries ran out, or nobody
/// knows whether it went): not a missing consent or a vendor left unconfigured on purpose.
const GAVE_UP: &str = "'rejected', 'retries_exhausted', 'outcome_unknown'";

/// Per channel, how many customer and report messages queued after `since` (RFC 3339 UTC)
/// and after the newest one the channel sent gave up: what alerting calls a channel that is
/// not going out. Queue times, not update times: a late delivery report on an old message
/// says nothing about sending now. Alerts themselves are left out.
///
/// # Errors
/// When the read model cannot be read.
pub async fn given_up_since_last_sent(
    db: &crate::db::ReadDb,
    since: &str,
) -> Result<Vec<(String, i64)>, crate::db::DbError> {
    let rows = db
        .query(
            &format!(
                "SELECT m.channel, COUNT(*) AS n FROM rm_messages m
                 WHERE m.kind <> 'alert' AND m.status = 'not_sent' AND m.not_sent_reason IN ({GAVE_UP})
                   AND m.queued_at > $1
                   AND m.queued_at > COALESCE((SELECT MAX(s.queued_at) FROM rm_messages s
                        WHERE s.channel = m.channel AND s.status = 'sent' AND s.kind <> 'alert'
                          AND s.queued_at > $1), '')
                 GROUP BY m.channel"
            ),
            &[since.into()],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((crate::row::text(r, "channel")?, crate::row::int(r, "n")?)))
        .collect()
}

//! Finding the aggregate a vendor id points at: the customers holding a phone
//! number or an email address, the payment of a Stripe intent.
//!
//! No read model answers these yet, so they scan the event log: only the
//! streams of one aggregate type and the few event types that matter, in
//! stream order. That costs O(customers) per inbound SMS or bounce, which is
//! fine for one business's customer list; a projection should replace it
//! (see docs/webhooks.md). Payloads are decoded as the current (1.0) shape.

use std::collections::BTreeMap;

use commands::{EventLog, StoreError};
use domain::customer::{CustomerEvent, AGGREGATE_TYPE as CUSTOMER};
use domain::ids::{CustomerId, JobId, PaymentId};
use domain::payment::{PaymentEvent, AGGREGATE_TYPE as PAYMENT};
use domain::values::{Email, PhoneNumber};
use serde_json::Value;

fn db_error(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// `(aggregate_id, payload)` of the events of `aggregate_type` whose type is
/// one of `event_types`, in stream order.
async fn scan(
    log: &EventLog,
    aggregate_type: &str,
    event_types: &[&str],
) -> Result<Vec<(String, Value)>, StoreError> {
    let types: Vec<String> = event_types.iter().map(|s| s.to_string()).collect();
    match log {
        EventLog::Postgres(pg) => sqlx::query_as::<_, (String, Value)>(
            "SELECT aggregate_id, payload FROM events WHERE aggregate_type = $1 AND event_type = ANY($2) \
             ORDER BY aggregate_id, sequence",
        )
        .bind(aggregate_type)
        .bind(&types)
        .fetch_all(pg.pool())
        .await
        .map_err(db_error),
        EventLog::Sqlite(s) => {
            let placeholders = vec!["?"; types.len()].join(", ");
            let sql = format!(
                "SELECT aggregate_id, payload FROM events WHERE aggregate_type = ? AND event_type IN ({placeholders}) \
                 ORDER BY aggregate_id, sequence"
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind(aggregate_type);
            for t in &types {
                q = q.bind(t);
            }
            let rows = q.fetch_all(s.reader()).await.map_err(db_error)?;
            rows.into_iter()
                .map(|(id, p)| {
                    serde_json::from_str(&p)
                        .map(|v| (id, v))
                        .map_err(|e| StoreError::Database(e.to_string()))
                })
                .collect()
        }
    }
}

#[derive(Default)]
struct Contact {
    phone: Option<PhoneNumber>,
    email: Option<Email>,
    closed: bool,
}

async fn contacts(log: &EventLog) -> Result<BTreeMap<String, Contact>, StoreError> {
    let rows = scan(
        log,
        CUSTOMER,
        &[
            "CustomerCreated",
            "CustomerContactUpdated",
            "CustomerMergedInto",
            "CustomerPersonalDataErased",
        ],
    )
    .await?;
    let mut out: BTreeMap<String, Contact> = BTreeMap::new();
    for (id, payload) in rows {
        // An event we cannot decode is skipped, not fatal: the lookup is a hint.
        let Ok(event) = serde_json::from_value::<CustomerEvent>(payload) else {
            tracing::warn!(customer_id = %id, "undecodable customer event skipped by the webhook lookup");
            continue;
        };
        let c = out.entry(id).or_default();
        match event {
            CustomerEvent::CustomerCreated { phone, email, .. }
            | CustomerEvent::CustomerContactUpdated { phone, email, .. } => {
                c.phone = phone;
                c.email = email;
            }
            CustomerEvent::CustomerMergedInto { .. }
            | CustomerEvent::CustomerPersonalDataErased { .. } => {
                c.closed = true;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The open (not merged, not erased) customers whose phone is `phone`.
///
/// # Errors
/// [`StoreError`] when the log cannot be read.
pub async fn customers_by_phone(
    log: &EventLog,
    phone: &PhoneNumber,
) -> Result<Vec<CustomerId>, StoreError> {
    Ok(contacts(log)
        .await?
        .into_iter()
        .filter(|(_, c)| !c.closed && c.phone.as_ref() == Some(phone))
        .filter_map(|(id, _)| CustomerId::parse(&id).ok())
        .collect())
}

/// The open customers whose email address is `email`.
///
/// # Errors
/// [`StoreError`] when the log cannot be read.
pub async fn customers_by_email(
    log: &EventLog,
    email: &Email,
) -> Result<Vec<CustomerId>, StoreError> {
    Ok(contacts(log)
        .await?
        .into_iter()
        .filter(|(_, c)| !c.closed && c.email.as_ref() == Some(email))
        .filter_map(|(id, _)| CustomerId::parse(&id).ok())
        .collect())
}

/// The payment created for Stripe intent `intent_id`; when `job_id` is given
/// (the intent's `metadata.job_id`) the payment must be that job's.
///
/// # Errors
/// [`StoreError`] when the log cannot be read.
pub async fn payment_for_intent(
    log: &EventLog,
    intent_id: &str,
    job_id: Option<JobId>,
) -> Result<Option<PaymentId>, StoreError> {
    let rows = scan(log, PAYMENT, &["PaymentIntentCreated"]).await?;
    for (_, payload) in rows {
        if let Ok(PaymentEvent::PaymentIntentCreated {
            payment_id,
            job_id: paid_job,
            provider_intent_id,
            ..
        }) = serde_json::from_value::<PaymentEvent>(payload)
        {
            if provider_intent_id == intent_id && job_id.is_none_or(|j| j == paid_job) {
                return Ok(Some(payment_id));
            }
        }
    }
    Ok(None)
}

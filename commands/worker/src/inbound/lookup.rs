//! Finding the aggregate a vendor id points at: the customers holding a phone
//! number or an email address, the payment of a Stripe intent.
//!
//! Answered by the `customers` and `payments` read models (indexed on phone,
//! email and intent id). A lookup that finds nothing waits (bounded) until the
//! projection has applied everything committed before it asked, then asks
//! again: a webhook that follows a command at once still finds what that
//! command created. The request never does the projection's work itself
//! (dozens of concurrent deliveries would queue on its checkpoint lock).

use domain::ids::{CustomerId, JobId, PaymentId};
use domain::values::{Email, PhoneNumber};
use projections::{JsonRow, Param, ProjectionRunner};

use std::time::Duration;

use commands::StoreError;

fn store_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// How long a lookup waits for its read model to reach the log's head.
const FRESHNESS_WAIT: Duration = Duration::from_secs(5);

async fn fresh_rows(
    projections: &ProjectionRunner,
    projection: &str,
    sql: &str,
    params: &[Param],
) -> Result<Vec<JsonRow>, StoreError> {
    let rows = projections.query(sql, params).await.map_err(store_error)?;
    if !rows.is_empty() {
        return Ok(rows);
    }
    let head = projections.log().committed_head().await?;
    if !projections
        .wait_for_projection(projection, head, FRESHNESS_WAIT)
        .await
        .map_err(store_error)?
    {
        // Unavailable, not "unknown": the vendor retries later instead of the
        // delivery being recorded as matching nothing.
        return Err(StoreError::Unavailable(format!(
            "the {projection} read model is behind the log"
        )));
    }
    projections.query(sql, params).await.map_err(store_error)
}

fn ids<T>(rows: &[JsonRow], column: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    rows.iter()
        .filter_map(|r| r.get(column).and_then(|v| v.as_str()))
        .filter_map(parse)
        .collect()
}

/// The open (not merged, not erased) customers whose phone is `phone`; with `confirmed_only`,
/// only those for whom it counts as theirs (entered by staff, or confirmed with a code): a
/// number a customer typed in may be someone else's.
///
/// # Errors
/// [`StoreError`] when the read model cannot be brought up to date or read.
pub async fn customers_by_phone(
    projections: &ProjectionRunner,
    phone: &PhoneNumber,
    confirmed_only: bool,
) -> Result<Vec<CustomerId>, StoreError> {
    let rows = fresh_rows(
        projections,
        "customers",
        "SELECT customer_id FROM rm_customers WHERE phone = $1 AND erased = 0 AND merged_into IS NULL \
         AND phone_confirmed >= $2 ORDER BY customer_id",
        &[phone.as_str().into(), i64::from(confirmed_only).into()],
    )
    .await?;
    Ok(ids(&rows, "customer_id", |s| CustomerId::parse(s).ok()))
}

/// The open customers whose email address is `email`.
///
/// # Errors
/// [`StoreError`] when the read model cannot be brought up to date or read.
pub async fn customers_by_email(
    projections: &ProjectionRunner,
    email: &Email,
) -> Result<Vec<CustomerId>, StoreError> {
    let rows = fresh_rows(
        projections,
        "customers",
        "SELECT customer_id FROM rm_customers WHERE email = $1 AND erased = 0 AND merged_into IS NULL \
         ORDER BY customer_id",
        &[email.as_str().into()],
    )
    .await?;
    Ok(ids(&rows, "customer_id", |s| CustomerId::parse(s).ok()))
}

/// The payment created for Stripe intent `intent_id`; when `job_id` is given
/// (the intent's `metadata.job_id`) the payment must be that job's.
///
/// # Errors
/// [`StoreError`] when the read model cannot be brought up to date or read.
pub async fn payment_for_intent(
    projections: &ProjectionRunner,
    intent_id: &str,
    job_id: Option<JobId>,
) -> Result<Option<PaymentId>, StoreError> {
    let job = job_id.map(|j| j.to_string());
    let rows = fresh_rows(
        projections,
        "payments",
        "SELECT payment_id FROM rm_payments WHERE provider_intent_id = $1 AND ($2 IS NULL OR job_id = $2) \
         ORDER BY created_at, payment_id LIMIT 1",
        &[intent_id.into(), job.into()],
    )
    .await?;
    Ok(ids(&rows, "payment_id", |s| PaymentId::parse(s).ok())
        .into_iter()
        .next())
}

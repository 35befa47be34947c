//! The payments read model.

use domain::payment::PaymentEvent;

use super::prelude::*;

/// Payments by provider intent: what a Stripe webhook's intent id points at,
/// and the payment history of a job or customer.
#[derive(Debug)]
pub struct Payments;

const PAYMENTS: &[&str] = &["payments"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::payment::AGGREGATE_TYPE];

impl Projection for Payments {
    fn name(&self) -> &'static str {
        "payments"
    }
    fn version(&self) -> i64 {
        // 2: in-person payments (`method`).
        2
    }
    fn tables(&self) -> &'static [&'static str] {
        PAYMENTS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {payments} (
                payment_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, customer_id TEXT NOT NULL,
                amount_cents BIGINT NOT NULL, provider_intent_id TEXT NOT NULL, status TEXT NOT NULL,
                failure_reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                method TEXT NOT NULL DEFAULT 'stripe', reference TEXT)",
            "CREATE INDEX {payments}_intent_{gen} ON {payments} (provider_intent_id)",
            "CREATE INDEX {payments}_job_{gen} ON {payments} (job_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::Payment(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = PAYMENTS;
            let id = e.aggregate_id.clone();
            match event {
                PaymentEvent::PaymentIntentCreated {
                    job_id,
                    customer_id,
                    amount,
                    provider_intent_id,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "INSERT INTO {payments} (payment_id, job_id, customer_id, amount_cents, provider_intent_id, status, created_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT (payment_id) DO NOTHING",
                        &[id.into(), job_id.to_string().into(), customer_id.to_string().into(), amount.cents().into(),
                          text(provider_intent_id).into(), rfc3339(*at).into()]).await?;
                }
                PaymentEvent::PaymentReceived {
                    job_id,
                    customer_id,
                    amount,
                    method,
                    reference,
                    at,
                    ..
                } => {
                    exec(tx, ctx, t, "INSERT INTO {payments} (payment_id, job_id, customer_id, amount_cents, provider_intent_id, status, created_at, updated_at, method, reference)
                        VALUES ($1, $2, $3, $4, '', 'succeeded', $5, $5, $6, $7) ON CONFLICT (payment_id) DO NOTHING",
                        &[id.into(), job_id.to_string().into(), customer_id.to_string().into(), amount.cents().into(),
                          rfc3339(*at).into(), text(method).into(), text(reference).into()]).await?;
                }
                PaymentEvent::PaymentSucceeded { at, .. } => {
                    exec(tx, ctx, t, "UPDATE {payments} SET status = 'succeeded', failure_reason = NULL, updated_at = $2 WHERE payment_id = $1",
                        &[id.into(), rfc3339(*at).into()]).await?;
                }
                PaymentEvent::PaymentFailed { reason, at, .. } => {
                    exec(tx, ctx, t, "UPDATE {payments} SET status = 'failed', failure_reason = $2, updated_at = $3 WHERE payment_id = $1",
                        &[id.into(), text(reason).into(), rfc3339(*at).into()]).await?;
                }
            }
            Ok(())
        })
    }
}

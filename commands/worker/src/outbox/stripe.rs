//! Stripe PaymentIntents API: `POST {base}/v1/payment_intents` (form: `amount`, `currency`,
//! `customer`, `metadata[…]`, `automatic_payment_methods[enabled]`), `Authorization: Bearer
//! {secret key}`, and an `Idempotency-Key` derived from our payment id, so a payment requested
//! twice (a retry after a crash, a double click) makes one intent.
//!
//! Stripe (API v1) saves the *first* answer to a key once the endpoint started executing, 500s
//! included, and replays it for 24 hours: repeating a 5xx with the same key cannot help, so a
//! 5xx is [`SendError::Ambiguous`] (reconcile in the dashboard), not retried. 429 and 409 (a
//! concurrent request with the key) are not saved and are retried, as are connection errors.
//! The webhook `metadata.payment_id`/`job_id` ties `payment_intent.succeeded` back to us.

use std::time::Duration;

use async_trait::async_trait;
use commands::{AppError, CommandOutcome, Crm, EventMetadata};
use domain::ids::{CustomerId, JobId, PaymentId};
use domain::payment::PaymentCommand;
use domain::Actor as DomainActor;

use super::{clip, retry_after, transport_error, SendError};
use crate::secret::Secret;

/// One payment to request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntentRequest {
    /// Our payment (the aggregate id); the idempotency key derives from it.
    pub payment_id: PaymentId,
    /// The job paid for.
    pub job_id: JobId,
    /// The customer.
    pub customer_id: CustomerId,
    /// Amount in cents.
    pub amount_cents: i64,
    /// ISO currency, lower case (`usd`).
    pub currency: String,
    /// The customer's Stripe id (`cus_…`), when linked.
    pub stripe_customer: Option<String>,
}

impl PaymentIntentRequest {
    /// The `Idempotency-Key` of this payment.
    pub fn idempotency_key(&self) -> String {
        format!("dirtfree-pi-{}", self.payment_id)
    }
}

/// An intent Stripe created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedIntent {
    /// `pi_…`.
    pub id: String,
    /// What the payment page confirms with; not logged.
    pub client_secret: Option<Secret>,
}

/// The payments port: creates payment intents at a provider.
#[async_trait]
pub trait PaymentIntents: Send + Sync + std::fmt::Debug {
    /// Creates (or, for the same payment id, finds again) the intent.
    ///
    /// # Errors
    /// [`SendError`]: retryable (429, 409, connection refused), ambiguous (timeout, 5xx),
    /// permanent (other 4xx: bad amount, unknown customer, bad key).
    async fn create(&self, request: &PaymentIntentRequest) -> Result<CreatedIntent, SendError>;
}

/// Stripe's PaymentIntents API.
#[derive(Debug, Clone)]
pub struct StripePaymentIntents {
    client: reqwest::Client,
    base: String,
    secret_key: Secret,
}

impl StripePaymentIntents {
    /// A client for `STRIPE_SECRET_KEY` at `base` (`STRIPE_API_BASE`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: &str, secret_key: Secret, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_string(),
            secret_key,
        })
    }
}

#[async_trait]
impl PaymentIntents for StripePaymentIntents {
    async fn create(&self, r: &PaymentIntentRequest) -> Result<CreatedIntent, SendError> {
        let mut form = vec![
            ("amount".to_string(), r.amount_cents.to_string()),
            ("currency".to_string(), r.currency.clone()),
            (
                "automatic_payment_methods[enabled]".to_string(),
                "true".to_string(),
            ),
            ("metadata[payment_id]".to_string(), r.payment_id.to_string()),
            ("metadata[job_id]".to_string(), r.job_id.to_string()),
            (
                "metadata[customer_id]".to_string(),
                r.customer_id.to_string(),
            ),
        ];
        if let Some(c) = &r.stripe_customer {
            form.push(("customer".to_string(), c.clone()));
        }
        let response = self
            .client
            .post(format!("{}/v1/payment_intents", self.base))
            .bearer_auth(self.secret_key.expose())
            .header("Idempotency-Key", r.idempotency_key())
            .form(&form)
            .send()
            .await
            // A lost answer is safe to repeat: Stripe replays the saved one.
            .map_err(|e| match transport_error(&e) {
                SendError::Ambiguous { error } => SendError::Retryable {
                    error,
                    retry_after: None,
                },
                other => other,
            })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            let id =
                body.get("id")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| SendError::Ambiguous {
                        error: "answer without an id".into(),
                    })?;
            return Ok(CreatedIntent {
                id: id.to_string(),
                client_secret: body
                    .get("client_secret")
                    .and_then(|v| v.as_str())
                    .map(Secret::new),
            });
        }
        let error = body
            .pointer("/error/message")
            .and_then(|v| v.as_str())
            .map_or_else(|| status.to_string(), |s| clip(s, 500));
        let code = status.as_u16();
        Err(if code == 429 || code == 409 {
            SendError::Retryable {
                error: format!("HTTP {code}: {error}"),
                retry_after: wait,
            }
        } else if status.is_server_error() {
            SendError::Ambiguous {
                error: format!("HTTP {code}: {error}"),
            }
        } else {
            SendError::Permanent {
                status: code,
                error,
            }
        })
    }
}

/// Why a payment could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum PaymentRequestError {
    /// Stripe did not create the intent (or may have: see [`SendError::Ambiguous`]).
    #[error("stripe: {0}")]
    Provider(#[from] SendError),
    /// The intent exists at Stripe but recording it failed; requesting again with the same
    /// payment id finds it (same idempotency key) and records it.
    #[error(transparent)]
    Record(#[from] AppError),
}

/// Creates the intent at the provider (retrying 429/409/connection errors up to `attempts`
/// times, `backoff` apart, doubling), then records `PaymentIntentCreated`. Requesting again
/// with the same `payment_id` (after a crash between the two steps) creates no second intent:
/// the provider answers the same key with the same intent and the payment stream refuses a
/// second creation.
///
/// # Errors
/// [`PaymentRequestError`].
pub async fn request_payment(
    crm: &Crm,
    provider: &dyn PaymentIntents,
    request: &PaymentIntentRequest,
    meta: &EventMetadata,
    attempts: u32,
    backoff: Duration,
) -> Result<(CreatedIntent, CommandOutcome), PaymentRequestError> {
    let mut wait = backoff;
    let mut attempt = 1;
    let intent = loop {
        match provider.create(request).await {
            Ok(i) => break i,
            Err(SendError::Retryable { retry_after, .. }) if attempt < attempts => {
                tokio::time::sleep(wait.max(retry_after.unwrap_or_default())).await;
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let cmd = PaymentCommand::CreateIntent {
        payment_id: request.payment_id,
        job_id: request.job_id,
        customer_id: request.customer_id,
        amount_cents: request.amount_cents,
        provider_intent_id: intent.id.clone(),
    };
    let meta = meta
        .clone()
        .with_idempotency_key(format!("stripe:create:{}", request.payment_id));
    let outcome = crm
        .payments()
        .execute(request.payment_id, DomainActor::System, cmd, &meta)
        .await?;
    Ok((intent, outcome))
}

//! Vendor webhook ingress: `POST /api/webhooks/stripe`, `/api/webhooks/twilio`
//! (inbound SMS), `/api/webhooks/twilio/status` (delivery callbacks) and
//! `/api/webhooks/resend`.
//!
//! Each request goes through the same steps, and stops at the first that fails:
//! 1. the vendor's secret is configured (else 503, clear JSON error);
//! 2. the signature over the raw body verifies ([`signature`]; else 401 and a
//!    log line without secret or signature);
//! 3. the body parses into a [`Delivery`] ([`delivery`]; else 400), its text
//!    cleaned of NUL and control characters and cut to each field's maximum
//!    ([`text`]: cleaned, never refused, since the vendor would retry for days);
//! 4. the delivery is recorded once per vendor id in `webhook_deliveries`
//!    ([`worker::inbound::ledger`]); a copy already recorded answers 200 and changes nothing;
//! 5. the recorded delivery is mapped to domain commands ([`worker::inbound::effects`]), each
//!    with an idempotency key derived from the vendor's id.
//!
//! See docs/webhooks.md for the vendor set-up and what is mapped.

pub mod delivery;
pub mod signature;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use commands::{Actor, EventMetadata};
use serde_json::json;

pub use signature::SignatureError;
pub use worker::inbound::{
    ledger, CrmEffects, Delivery, Outcome, Provider, Transient, WebhookEffects, WebhookEvent,
};

use crate::http::REQUEST_ID;
use crate::state::AppState;

/// Path of the Stripe endpoint.
pub const STRIPE_PATH: &str = "/api/webhooks/stripe";
/// Path of the Twilio inbound-SMS endpoint.
pub const TWILIO_PATH: &str = "/api/webhooks/twilio";
/// Path of the Twilio status-callback endpoint.
pub const TWILIO_STATUS_PATH: &str = "/api/webhooks/twilio/status";
/// Path of the Resend endpoint.
pub const RESEND_PATH: &str = "/api/webhooks/resend";

/// How long a duplicate waits for the first copy of a delivery to finish.
const DUPLICATE_WAIT: Duration = Duration::from_secs(10);

/// Handler state: the server's state and the effects port.
#[derive(Debug, Clone)]
pub struct WebhookState {
    app: AppState,
    effects: Arc<dyn WebhookEffects>,
}

/// The webhook routes, acting on the server's CRM through [`CrmEffects`].
pub fn routes(state: AppState) -> Router {
    let effects = Arc::new(CrmEffects::new(
        state.crm.clone(),
        state.projections.clone(),
    ));
    routes_with(state, effects)
}

/// The webhook routes with another effects port (tests, tools).
pub fn routes_with(state: AppState, effects: Arc<dyn WebhookEffects>) -> Router {
    use axum::middleware::map_response;
    Router::new()
        .route(
            STRIPE_PATH,
            post(stripe).layer(map_response(|r: Response| counted(Provider::Stripe, r))),
        )
        .route(
            TWILIO_PATH,
            post(twilio_inbound).layer(map_response(|r: Response| counted(Provider::Twilio, r))),
        )
        .route(
            TWILIO_STATUS_PATH,
            post(twilio_status).layer(map_response(|r: Response| counted(Provider::Twilio, r))),
        )
        .route(
            RESEND_PATH,
            post(resend).layer(map_response(|r: Response| counted(Provider::Resend, r))),
        )
        .with_state(WebhookState {
            app: state,
            effects,
        })
}

/// What became of a webhook request (`processed`, `duplicate`, `invalid_signature`, …): set
/// on the response by [`accepted`] and [`WebhookError`], counted by [`counted`].
#[derive(Debug, Clone, Copy)]
struct DeliveryResult(&'static str);

/// Counts the request in `dirtfree_webhook_deliveries_total{vendor, result}`; a request
/// refused before its handler ran (a body over the limit) counts as `other`.
async fn counted(vendor: Provider, res: Response) -> Response {
    let result = res
        .extensions()
        .get::<DeliveryResult>()
        .map_or("other", |r| r.0);
    crate::metrics::webhook_delivery(vendor.as_str(), result);
    res
}

/// Why a webhook request was not processed; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The vendor's secret (or the public URL) is not configured.
    #[error("{0}")]
    Disabled(String),
    /// The signature is missing, malformed, stale or wrong.
    #[error("invalid {provider} signature")]
    Unauthorized {
        /// The vendor.
        provider: Provider,
        /// Why (logged, not returned).
        reason: SignatureError,
    },
    /// The body is not form-encoded where a form is expected.
    #[error("expected an application/x-www-form-urlencoded body")]
    UnsupportedMediaType,
    /// The verified body is not what the vendor sends.
    #[error("{0}")]
    BadRequest(String),
    /// Another copy of this delivery is still being processed.
    #[error("this delivery is being processed; retry later")]
    InProgress,
    /// The store failed or stayed contended; the vendor should retry.
    #[error("temporarily unavailable; retry later")]
    Unavailable(String),
}

impl WebhookError {
    /// The `result` label of the deliveries metric.
    fn result(&self) -> &'static str {
        match self {
            WebhookError::Disabled(_) => "disabled",
            WebhookError::Unauthorized { .. } => "invalid_signature",
            WebhookError::UnsupportedMediaType => "unsupported_media_type",
            WebhookError::BadRequest(_) => "bad_payload",
            WebhookError::InProgress => "in_progress",
            WebhookError::Unavailable(_) => "unavailable",
        }
    }

    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            WebhookError::Disabled(_) => (StatusCode::SERVICE_UNAVAILABLE, "WEBHOOK_DISABLED"),
            WebhookError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE"),
            WebhookError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            WebhookError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BAD_PAYLOAD"),
            WebhookError::InProgress => (StatusCode::CONFLICT, "DELIVERY_IN_PROGRESS"),
            WebhookError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORE_UNAVAILABLE"),
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        match &self {
            WebhookError::Unauthorized { provider, reason } => {
                tracing::warn!(%provider, %reason, "webhook refused: bad signature");
            }
            WebhookError::Unavailable(cause) => {
                tracing::error!(%cause, "webhook not processed; vendor will retry")
            }
            WebhookError::Disabled(m) => tracing::warn!(reason = %m, "webhook refused: disabled"),
            _ => tracing::info!(%code, "webhook refused"),
        }
        let mut res = (
            status,
            Json(json!({ "error": { "code": code, "message": self.to_string() } })),
        )
            .into_response();
        if matches!(
            self,
            WebhookError::InProgress | WebhookError::Unavailable(_)
        ) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        }
        res.extensions_mut().insert(DeliveryResult(self.result()));
        res
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn request_id(headers: &HeaderMap) -> String {
    header_str(headers, REQUEST_ID.as_str())
        .unwrap_or("-")
        .to_string()
}

fn unauthorized(provider: Provider) -> impl Fn(SignatureError) -> WebhookError {
    move |reason| WebhookError::Unauthorized { provider, reason }
}

/// `POST /api/webhooks/stripe`.
async fn stripe(
    State(s): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let secret = s.app.config.stripe_webhook_secret.as_ref().ok_or_else(|| {
        WebhookError::Disabled("stripe webhooks disabled: STRIPE_WEBHOOK_SECRET not set".into())
    })?;
    let sig = header_str(&headers, "stripe-signature")
        .ok_or(SignatureError::Missing)
        .map_err(unauthorized(Provider::Stripe))?;
    signature::verify_stripe(secret.expose(), sig, &body, Utc::now().timestamp())
        .map_err(unauthorized(Provider::Stripe))?;
    let d = delivery::parse_stripe(&body).map_err(|e| WebhookError::BadRequest(e.0))?;
    ingest(&s, d, &request_id(&headers), false).await
}

fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    let is_form = header_str(headers, header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !is_form {
        return Err(WebhookError::UnsupportedMediaType);
    }
    delivery::form_params(body).map_err(|e| WebhookError::BadRequest(e.0))
}

/// Checks the Twilio signature of a form POST to `path` and returns its parameters.
fn verify_twilio_form(
    s: &WebhookState,
    headers: &HeaderMap,
    uri: &Uri,
    path: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, WebhookError> {
    let c = &s.app.config;
    let token = c.twilio_auth_token.as_ref().ok_or_else(|| {
        WebhookError::Disabled("twilio webhooks disabled: TWILIO_AUTH_TOKEN not set".into())
    })?;
    let base = c
        .public_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            WebhookError::Disabled(
                "twilio webhooks disabled: PUBLIC_URL not set (Twilio signs the public URL)".into(),
            )
        })?;
    let params = form_body(headers, body)?;
    // The URL Twilio was given: configured base + route, plus the query it carried.
    let mut url = format!("{}{path}", base.trim_end_matches('/'));
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let sig = header_str(headers, "x-twilio-signature")
        .ok_or(SignatureError::Missing)
        .map_err(unauthorized(Provider::Twilio))?;
    signature::verify_twilio(token.expose(), &url, &params, sig)
        .map_err(unauthorized(Provider::Twilio))?;
    Ok(params)
}

/// `POST /api/webhooks/twilio`: an inbound SMS. Answers empty TwiML.
async fn twilio_inbound(
    State(s): State<WebhookState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let params = verify_twilio_form(&s, &headers, &uri, TWILIO_PATH, &body)?;
    let d = delivery::parse_twilio_inbound(&params).map_err(|e| WebhookError::BadRequest(e.0))?;
    ingest(&s, d, &request_id(&headers), true).await
}

/// `POST /api/webhooks/twilio/status`: a delivery status callback.
async fn twilio_status(
    State(s): State<WebhookState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let params = verify_twilio_form(&s, &headers, &uri, TWILIO_STATUS_PATH, &body)?;
    let d = delivery::parse_twilio_status(&params).map_err(|e| WebhookError::BadRequest(e.0))?;
    ingest(&s, d, &request_id(&headers), false).await
}

/// `POST /api/webhooks/resend` (signed by Svix).
async fn resend(
    State(s): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let secret = s.app.config.resend_webhook_secret.as_ref().ok_or_else(|| {
        WebhookError::Disabled("resend webhooks disabled: RESEND_WEBHOOK_SECRET not set".into())
    })?;
    let deny = unauthorized(Provider::Resend);
    let id = header_str(&headers, "svix-id")
        .filter(|v| !v.trim().is_empty())
        .ok_or(SignatureError::Missing)
        .map_err(&deny)?;
    let ts = header_str(&headers, "svix-timestamp")
        .ok_or(SignatureError::Missing)
        .map_err(&deny)?;
    let sig = header_str(&headers, "svix-signature")
        .ok_or(SignatureError::Missing)
        .map_err(&deny)?;
    signature::verify_svix(secret.expose(), id, ts, sig, &body, Utc::now().timestamp())
        .map_err(&deny)?;
    let d = delivery::parse_resend(id.trim(), &body).map_err(|e| WebhookError::BadRequest(e.0))?;
    ingest(&s, d, &request_id(&headers), false).await
}

fn accepted(status: &'static str, outcome: &str, twiml: bool) -> Response {
    let mut res = if twiml {
        // Twilio reads the answer to an inbound SMS as TwiML: an empty one sends no reply.
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            Json(json!({ "status": status, "outcome": outcome })),
        )
            .into_response()
    };
    res.extensions_mut().insert(DeliveryResult(status));
    res
}

/// Records a verified delivery once, then acts on it if this request recorded it.
async fn ingest(
    s: &WebhookState,
    d: Delivery,
    request_id: &str,
    twiml: bool,
) -> Result<Response, WebhookError> {
    let log = s.app.projections.db();
    let now = Utc::now();
    let unavailable = |e: commands::StoreError| WebhookError::Unavailable(e.to_string());
    match ledger::claim(log, &d, now).await.map_err(unavailable)? {
        ledger::Claim::Processed { outcome } => Ok(accepted("duplicate", &outcome, twiml)),
        ledger::Claim::InProgress => {
            match ledger::wait_processed(log, d.provider, &d.delivery_id, DUPLICATE_WAIT)
                .await
                .map_err(unavailable)?
            {
                Some(outcome) => Ok(accepted("duplicate", &outcome, twiml)),
                None => Err(WebhookError::InProgress),
            }
        }
        ledger::Claim::Act => {
            let meta = EventMetadata::new(Actor::Webhook(d.provider.as_str().into()), now)
                .with_request_id(request_id);
            match s.effects.apply(&d, &meta).await {
                Ok(outcome) => {
                    let record = outcome.record();
                    ledger::finish(log, d.provider, &d.delivery_id, &record, Utc::now())
                        .await
                        .map_err(unavailable)?;
                    tracing::info!(provider = %d.provider, event_type = %d.event_type, outcome = %record, "webhook processed");
                    Ok(accepted("processed", &record, twiml))
                }
                Err(e) => {
                    // Let the vendor's next retry take over at once.
                    if let Err(release) = ledger::release(log, d.provider, &d.delivery_id).await {
                        tracing::warn!(error = %release, "could not release a webhook claim; it expires with its lease");
                    }
                    Err(WebhookError::Unavailable(e.0))
                }
            }
        }
    }
}

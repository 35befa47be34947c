//! One-click unsubscribe from marketing email (issue #16; RFC 8058, as Gmail and Yahoo
//! require of bulk senders).
//!
//! Every marketing email carries a link `{PUBLIC_URL}/api/unsubscribe/{token}` and the headers
//! `List-Unsubscribe: <link>` and (over https) `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`. The token is 32 random bytes, one per message (a retried send
//! must be the same email: Resend refuses a changed body under the same idempotency key),
//! kept in `unsubscribe_tokens` (all its SQL is here) with the customer it unsubscribes.
//! Knowing a token only unsubscribes one customer from marketing email, so it is kept as
//! is, like a link in the customer's own mailbox.
//!
//! - `GET` shows a page with one button (link scanners fetch links: a GET changes nothing);
//! - `POST` (the mail client's one-click request, or the button) records the withdrawal of
//!   email consent as an event (`EmailConsentRevoked`, source `unsubscribe_link`), once:
//!   the token is then used, and a second POST answers the same page without a new event. An
//!   unknown token changes nothing (404). No sign-in: the link is the proof.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use chrono::Utc;
use domain::consent::{Channel, ConsentSource};
use domain::customer::CustomerCommand;
use domain::ids::{CustomerId, OutboundMessageId};
use projections::{DbError, Param, ReadDb};
use rand::RngCore;

use crate::state::AppState;

/// The link's path below `PUBLIC_URL`.
pub const PATH: &str = "/api/unsubscribe";

/// The token that unsubscribes `customer` from the message `message` (made on the first
/// attempt, the same on every later one); returns it (the link's last segment).
///
/// # Errors
/// [`DbError`].
pub async fn issue(
    db: &ReadDb,
    customer: CustomerId,
    message: OutboundMessageId,
) -> Result<String, DbError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let fresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    db.execute(
        "INSERT INTO unsubscribe_tokens (message_id, token, customer_id, created_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING",
        &[
            Param::from(message.to_string()),
            Param::from(fresh),
            Param::from(customer.to_string()),
            Param::from(Utc::now().timestamp_millis()),
        ],
    )
    .await?;
    let rows = db
        .query(
            "SELECT token FROM unsubscribe_tokens WHERE message_id = $1",
            &[Param::from(message.to_string())],
        )
        .await?;
    rows.first()
        .and_then(|r| r.get("token"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| DbError::new("the unsubscribe token was not kept"))
}

/// Forgets tokens older than `days` days.
///
/// # Errors
/// [`DbError`].
pub async fn purge_older_than(
    db: &ReadDb,
    now: chrono::DateTime<Utc>,
    days: i64,
) -> Result<u64, DbError> {
    db.execute(
        "DELETE FROM unsubscribe_tokens WHERE created_at_ms < $1",
        &[Param::from(
            (now - chrono::Duration::days(days)).timestamp_millis(),
        )],
    )
    .await
}

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Unknown,
    Fresh(CustomerId),
    Used,
}

async fn look_up(db: &ReadDb, token: &str) -> Result<Token, DbError> {
    let rows = db
        .query(
            "SELECT customer_id, used_at_ms FROM unsubscribe_tokens WHERE token = $1",
            &[Param::from(token.to_string())],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(Token::Unknown);
    };
    if row.get("used_at_ms").is_some_and(|v| !v.is_null()) {
        return Ok(Token::Used);
    }
    Ok(row
        .get("customer_id")
        .and_then(|v| v.as_str())
        .and_then(|s| CustomerId::parse(s).ok())
        .map_or(Token::Unknown, Token::Fresh))
}

/// Marks the token used; false when another request used it first.
async fn use_up(db: &ReadDb, token: &str) -> Result<bool, DbError> {
    let n = db
        .execute(
            "UPDATE unsubscribe_tokens SET used_at_ms = $2 WHERE token = $1 AND used_at_ms IS NULL",
            &[
                Param::from(token.to_string()),
                Param::from(Utc::now().timestamp_millis()),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The unsubscribe routes.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route(&format!("{PATH}/{{token}}"), get(page).post(unsubscribe))
        .with_state(state)
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(page)).into_response()
}

fn not_valid() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "<p>It may have been copied incompletely. Reply to any of our emails and we will take \
         you off the list.</p>",
    )
}

fn done() -> Response {
    html(
        StatusCode::OK,
        "You are unsubscribed",
        "<p>Dirt Free will not send you marketing email any more. Messages about your own \
         bookings still arrive.</p>",
    )
}

fn unavailable() -> Response {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again",
        "<p>We could not record this just now. Please try the link again in a minute.</p>",
    )
}

async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match look_up(state.projections.db(), &token).await {
        Ok(Token::Unknown) => not_valid(),
        Ok(Token::Used) => done(),
        Ok(Token::Fresh(_)) => html(
            StatusCode::OK,
            "Unsubscribe from Dirt Free marketing email?",
            &format!(
                "<form method=\"post\" action=\"{PATH}/{token}\">\
                 <button type=\"submit\">Unsubscribe</button></form>"
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe: the token could not be read");
            unavailable()
        }
    }
}

async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let db = state.projections.db();
    let mut customer = match look_up(db, &token).await {
        Ok(Token::Unknown) => return not_valid(),
        Ok(Token::Used) => return done(),
        Ok(Token::Fresh(c)) => c,
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe: the token could not be read");
            return unavailable();
        }
    };
    // Merged since the email went out: the survivor holds the address and the consent.
    let mut survivor = false;
    for _ in 0..32 {
        match state.crm.customers().load(customer).await {
            Ok(c) => match c.aggregate.merged_into() {
                Some(target) => customer = target,
                None => {
                    survivor = true;
                    break;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "unsubscribe: the customer could not be read");
                return unavailable();
            }
        }
    }
    if !survivor {
        tracing::warn!("unsubscribe: a chain of merges too long to follow");
        return unavailable();
    }
    // The withdrawal first, then the token: a failure in between leaves a token that
    // withdraws again, which changes nothing (consent is already withdrawn).
    let meta =
        commands::EventMetadata::new(commands::Actor::Customer(customer.to_string()), Utc::now());
    let revoked = state
        .crm
        .customers()
        .execute(
            customer,
            domain::Actor::Customer { id: customer },
            CustomerCommand::RevokeMarketingConsent {
                channel: Channel::Email,
                source: ConsentSource::UnsubscribeLink,
            },
            &meta,
        )
        .await;
    match revoked {
        Ok(_) => {}
        // Erased or merged since: nothing left to unsubscribe.
        Err(commands::AppError::Rule { .. } | commands::AppError::Validation { .. }) => {}
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe: the withdrawal could not be recorded");
            return unavailable();
        }
    }
    if let Err(e) = use_up(db, &token).await {
        tracing::warn!(error = %e, "unsubscribe: the token could not be marked used");
    }
    done()
}

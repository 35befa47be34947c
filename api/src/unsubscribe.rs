//! One-click unsubscribe from marketing email (issue #16; RFC 8058, as Gmail and Yahoo
//! require of bulk senders).
//!
//! Every marketing email carries a link `{PUBLIC_URL}/api/unsubscribe/{token}` and the headers
//! `List-Unsubscribe: <link>` and (over https) `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`. The token is 32 random bytes, one per message (a retried send
//! must be the same email: Resend refuses a changed body under the same idempotency key),
//! kept in `unsubscribe_tokens` (its SQL is in `worker::unsubscribe`) with the customer it unsubscribes.
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
use chrono::Utc;
use domain::consent::{Channel, ConsentSource};
use domain::customer::CustomerCommand;
use worker::unsubscribe::{look_up, use_up, Token};

use crate::state::AppState;

pub use worker::unsubscribe::PATH;

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

//! The one-click unsubscribe tokens of marketing email (`unsubscribe_tokens`; all its SQL is
//! here). The routes that use them are the api's (`api/src/unsubscribe.rs`).

use base64::Engine as _;
use chrono::Utc;
use domain::ids::{CustomerId, OutboundMessageId};
use projections::{DbError, Param, ReadDb};
use rand::RngCore;

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
pub enum Token {
    /// No such token.
    Unknown,
    /// Not used yet: it unsubscribes this customer.
    Fresh(CustomerId),
    /// Used before.
    Used,
}

/// What `token` is.
///
/// # Errors
/// [`DbError`].
pub async fn look_up(db: &ReadDb, token: &str) -> Result<Token, DbError> {
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
///
/// # Errors
/// [`DbError`].
pub async fn use_up(db: &ReadDb, token: &str) -> Result<bool, DbError> {
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

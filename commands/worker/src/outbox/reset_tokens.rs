//! Password-reset tokens on their way to the staff user's inbox, kept out of the event log.
//!
//! The reset email is an `OutboundMessage` like any other, and its body is part of the
//! `MessageQueued` event. The token must not be there (the log is kept forever, exported and
//! shown in the audit trail), so the body holds [`PLACEHOLDER`] and the plain token waits in
//! `password_reset_tokens`, keyed by the message id, until the worker sends the message and
//! fills it in. The row is deleted once the message is sent or given up, and when it expires;
//! the `PasswordResetRequested` event keeps only the token's SHA-256. Contact-confirmation
//! codes travel the same way ([`queue_with_secret`]), and so do sign-up and email-change
//! codes, whose address is not yet anyone's: their recipient is [`Recipient::Withheld`] and
//! the address waits in the same row.

use chrono::{DateTime, Utc};
use commands::app::Crm;
use commands::EventMetadata;
use domain::ids::OutboundMessageId;
use domain::message::{MessageCommand, MessageKind, Recipient};
use projections::{DbError, Param, ReadDb};

/// A message that carries a one-time secret, caused by the event named `cause`
/// (`Type:id:sequence`); its `body` holds [`PLACEHOLDER`].
#[derive(Debug)]
pub struct SecretMessage {
    /// The event that caused it (its id derives from this).
    pub cause: String,
    /// What it is.
    pub kind: MessageKind,
    /// SMS or email.
    pub channel: domain::consent::Channel,
    /// To whom.
    pub recipient: Recipient,
    /// Email subject.
    pub subject: Option<String>,
    /// The text, with [`PLACEHOLDER`] where the secret goes at send time.
    pub body: String,
    /// For a [`Recipient::Withheld`] message: the address, kept beside the secret.
    pub withheld_address: Option<String>,
}

/// Keeps `secret` for the message, then queues it: stored first, because the worker may
/// pick the message up at once.
///
/// # Errors
/// The store's or the message aggregate's refusal, as text.
pub async fn queue_with_secret(
    crm: &Crm,
    db: &ReadDb,
    secret: &str,
    expires_at: DateTime<Utc>,
    message: SecretMessage,
    meta: &EventMetadata,
) -> Result<(), String> {
    let message_id = OutboundMessageId::for_cause(&message.cause);
    store(
        db,
        message_id,
        secret,
        message.withheld_address.as_deref(),
        expires_at,
    )
    .await
    .map_err(|e| e.to_string())?;
    crm.messages()
        .execute(
            message_id,
            domain::Actor::System,
            MessageCommand::Queue {
                kind: message.kind,
                channel: message.channel,
                recipient: message.recipient,
                cause: message.cause,
                subject: message.subject,
                body: message.body,
            },
            meta,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Stands for the token in a reset message's body; replaced at send time only.
pub const PLACEHOLDER: &str = "{reset_token}";

/// Keeps `token` (and a withheld recipient's `address`) for the message `id` until
/// `expires_at`, and forgets expired ones.
///
/// # Errors
/// [`DbError`].
pub async fn store(
    db: &ReadDb,
    id: OutboundMessageId,
    token: &str,
    address: Option<&str>,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    purge_expired(db, Utc::now()).await?;
    db.execute(
        "INSERT INTO password_reset_tokens (message_id, token, address, expires_at_ms) VALUES ($1, $2, $3, $4)",
        &[
            Param::from(id.to_string()),
            token.into(),
            address.map(str::to_string).into(),
            expires_at.timestamp_millis().into(),
        ],
    )
    .await
    .map(|_| ())
}

/// The token waiting for message `id`, if it has not expired.
///
/// # Errors
/// [`DbError`].
pub async fn token(
    db: &ReadDb,
    id: OutboundMessageId,
    now: DateTime<Utc>,
) -> Result<Option<String>, DbError> {
    live_value(db, id, now, "token").await
}

/// The withheld recipient's address of message `id`, if its row has not expired.
///
/// # Errors
/// [`DbError`].
pub async fn address(
    db: &ReadDb,
    id: OutboundMessageId,
    now: DateTime<Utc>,
) -> Result<Option<String>, DbError> {
    live_value(db, id, now, "address").await
}

/// One column (a fixed name, never input) of message `id`'s unexpired row.
async fn live_value(
    db: &ReadDb,
    id: OutboundMessageId,
    now: DateTime<Utc>,
    column: &'static str,
) -> Result<Option<String>, DbError> {
    let rows = db
        .query(
            &format!(
                "SELECT {column} FROM password_reset_tokens WHERE message_id = $1 AND expires_at_ms > $2"
            ),
            &[Param::from(id.to_string()), now.timestamp_millis().into()],
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get(column))
        .and_then(|v| v.as_str())
        .map(str::to_string))
}

/// Forgets the token of message `id` (sent, or given up).
///
/// # Errors
/// [`DbError`].
pub async fn forget(db: &ReadDb, id: OutboundMessageId) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM password_reset_tokens WHERE message_id = $1",
        &[Param::from(id.to_string())],
    )
    .await
    .map(|_| ())
}

/// Forgets every token that expired before `now`.
///
/// # Errors
/// [`DbError`].
pub async fn purge_expired(db: &ReadDb, now: DateTime<Utc>) -> Result<u64, DbError> {
    db.execute(
        "DELETE FROM password_reset_tokens WHERE expires_at_ms <= $1",
        &[Param::from(now.timestamp_millis())],
    )
    .await
}

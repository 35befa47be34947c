//! Proving a contact is the customer's (issue #14): a portal customer's phone or email counts
//! as theirs only after they type the one-time code sent to it. Until then an inbound SMS from
//! that number is not attached to them, START from it opts nobody in, and they cannot opt it
//! into marketing. Contacts staff enter are trusted as before.
//!
//! The code follows the password-reset link's path: only its SHA-256 enters the log
//! (`ContactCodeIssued`); the message body holds a placeholder and the code waits in
//! `password_reset_tokens` until the outbox sends it.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{Duration, Utc};
use domain::consent::Channel;
use domain::customer::CustomerCommand;
use domain::message::{MessageKind, Recipient};
use rand::RngCore;
use worker::outbox::reset_tokens;

use super::auth;
use super::command::{self, settle};
use super::context::{self, parts, token_hash, Allow};
use super::customers::MarketingChannel;
use super::errors;

/// How long a code works.
const CODE_MINUTES: i64 = 15;

/// Asking for a code.
#[derive(InputObject, Debug)]
pub struct RequestContactCodeInput {
    /// `SMS`: the phone on file; `EMAIL`: the email on file.
    pub channel: MarketingChannel,
    /// Makes retries safe: a retry sends no second code.
    pub idempotency_key: Option<String>,
}

/// A code on its way.
#[derive(SimpleObject, Debug)]
pub struct ContactCodePayload {
    /// Where it was sent.
    pub channel: MarketingChannel,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// Log position (for `sync`).
    pub position: String,
}

/// Confirming with the code.
#[derive(InputObject, Debug)]
pub struct ConfirmContactInput {
    /// Which contact.
    pub channel: MarketingChannel,
    /// The six digits received.
    #[graphql(secret)]
    pub code: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A contact confirmed.
#[derive(SimpleObject, Debug)]
pub struct ConfirmContactPayload {
    /// Which contact.
    pub channel: MarketingChannel,
    /// Log position (for `sync`; empty when it was confirmed already).
    pub position: String,
}

/// Contact confirmation mutations.
#[derive(Debug, Default)]
pub struct ContactMutation;

#[Object]
impl ContactMutation {
    /// Sends a six-digit code (valid 15 minutes; a new one voids the last) to the signed-in
    /// customer's phone or email, when they entered it themselves and have not confirmed it.
    /// Five codes an hour per customer, and counted against the network's sign-in attempts
    /// (`RATE_LIMITED`).
    #[graphql(guard = "Allow::Customer")]
    async fn request_contact_code(
        &self,
        ctx: &Context<'_>,
        input: RequestContactCodeInput,
    ) -> async_graphql::Result<ContactCodePayload> {
        let (state, rc) = parts(ctx)?;
        let (me, actor, meta) = context::customer(rc)?;
        auth::rate_limit(state, &rc.client_ip)?;
        state
            .sign_in_limits
            .code_request(&format!("contact:{me}"))
            .map_err(auth::rate_limited)?;
        let code = format!("{:06}", rand::rngs::OsRng.next_u32() % 1_000_000);
        let expires_at = Utc::now() + Duration::minutes(CODE_MINUTES);
        let wanted = Channel::from(input.channel);
        let issue = CustomerCommand::IssueContactCode {
            channel: wanted,
            code_hash: token_hash(&code),
            expires_at,
        };
        let (by, key) = ((actor, meta.clone()), input.idempotency_key.as_ref());
        let out = command::run(rc, state.crm.customers(), me, by, key, issue).await?;
        let Some(event) = out.events.first() else {
            return Err(errors::internal(
                &rc.request_id,
                &"the code request recorded nothing",
            ));
        };
        // A replayed retry's code went out the first time.
        if !out.replayed {
            let cause = format!(
                "{}:{}:{}",
                domain::customer::AGGREGATE_TYPE,
                me,
                event.sequence
            );
            let body = format!(
                "Your Dirt Free confirmation code is {}. It works for {CODE_MINUTES} minutes. \
                 If you did not ask for it, ignore this message.",
                reset_tokens::PLACEHOLDER
            );
            let message = reset_tokens::SecretMessage {
                cause,
                kind: MessageKind::ContactConfirmation,
                channel: wanted,
                recipient: Recipient::Customer { customer_id: me },
                subject: (wanted == Channel::Email)
                    .then(|| "Confirm your email for Dirt Free".to_string()),
                body,
                withheld_address: None,
            };
            reset_tokens::queue_with_secret(
                &state.crm,
                state.projections.db(),
                &code,
                expires_at,
                message,
                &meta,
            )
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        }
        let position = settle(state, &out).await;
        Ok(ContactCodePayload {
            channel: input.channel,
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            position,
        })
    }

    /// Confirms the signed-in customer's phone or email with the code sent to it. A wrong or
    /// expired code is `VALIDATION` on `code`; five wrong codes per customer in 15 minutes,
    /// then `RATE_LIMITED` (a six-digit code cannot be guessed in its lifetime).
    #[graphql(guard = "Allow::Customer")]
    async fn confirm_contact(
        &self,
        ctx: &Context<'_>,
        input: ConfirmContactInput,
    ) -> async_graphql::Result<ConfirmContactPayload> {
        let (state, rc) = parts(ctx)?;
        let (me, actor, meta) = context::customer(rc)?;
        auth::rate_limit(state, &rc.client_ip)?;
        let attempt = state
            .sign_in_limits
            .code_attempt(&format!("contact:{me}"))
            .map_err(auth::rate_limited)?;
        let confirm = CustomerCommand::ConfirmContact {
            channel: Channel::from(input.channel),
            code_hash: token_hash(input.code.trim()),
        };
        let key = input.idempotency_key.as_ref();
        let out = command::run(rc, state.crm.customers(), me, (actor, meta), key, confirm).await?;
        attempt.succeeded();
        Ok(ConfirmContactPayload {
            channel: input.channel,
            position: settle(state, &out).await,
        })
    }
}

//! Staff account management beyond sign-in: password reset by an emailed link, role changes.
//!
//! The reset token is 32 random bytes; the log keeps only its SHA-256
//! (`PasswordResetRequested`), the email's body only a placeholder, and the plain token waits
//! in `password_reset_tokens` until the outbox sends the link (`worker::outbox::reset_tokens`).

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{Duration, Utc};
use commands::policies::outbox::PUBLIC_URL;
use commands::AppError;
use domain::consent::Channel;
use domain::ids::StaffUserId;
use domain::message::{MessageKind, Recipient};
use domain::ports::Role;
use domain::staff::StaffUserCommand as StaffCommand;
use domain::values::Email;
use projections::crm::accounts;
use worker::outbox::reset_tokens;
use worker::sessions::{self, PrincipalKind};

use super::auth::{self, StaffRole, StaffUser};
use super::command::{self, settle};
use super::context::{self, parts, token_hash, Allow, RequestCtx};
use super::errors;
use crate::state::AppState;

/// How long a reset link works.
pub const RESET_MINUTES: i64 = 60;

/// Asks for a password-reset link.
#[derive(InputObject, Debug)]
pub struct RequestPasswordResetInput {
    /// The staff user's login email.
    pub email: String,
}

/// Result of `requestPasswordReset`: the same whether or not the address belongs to anyone.
#[derive(SimpleObject, Debug)]
pub struct RequestPasswordResetPayload {
    /// Always true: if the address is an active staff user's, a link is on its way.
    pub accepted: bool,
}

/// A new password, with the token from the emailed link.
#[derive(InputObject, Debug)]
pub struct ResetPasswordInput {
    /// The `token` parameter of the link.
    #[graphql(secret)]
    pub token: String,
    /// The new password (at least 10 characters).
    #[graphql(secret)]
    pub new_password: String,
}

/// Result of `resetPassword`.
#[derive(SimpleObject, Debug)]
pub struct ResetPasswordPayload {
    /// The staff user whose password changed (their sessions have ended; sign in again).
    pub staff_user: StaffUser,
    /// Log position of the last event (pass to `sync` for read-your-writes).
    pub position: String,
}

/// A role change.
#[derive(InputObject, Debug)]
pub struct ChangeStaffRoleInput {
    /// The staff user.
    pub staff_user_id: ID,
    /// The new role.
    pub role: StaffRole,
    /// Makes retries safe: the same key returns the first outcome.
    pub idempotency_key: Option<String>,
}

/// A staff user after `changeStaffRole` or `deactivateStaffUser`.
#[derive(SimpleObject, Debug)]
pub struct StaffUserPayload {
    /// The user, with the new role.
    pub staff_user: StaffUser,
    /// Log position of the last event (empty when the role was already that).
    pub position: String,
}

/// The one answer to every unusable token: wrong, expired, used, or a deactivated user's.
fn bad_token() -> async_graphql::Error {
    errors::invalid(
        "token",
        "the reset link is invalid or has expired; ask for a new one",
    )
}

/// Records the reset request and queues the email. Runs after the answer has gone, so an
/// unknown address and a known one take the same time to answer.
async fn issue_reset(state: &AppState, rc: &RequestCtx, email: &str) -> Result<(), String> {
    let Some(row) = auth::staff_by_email(state, email).await else {
        return Ok(());
    };
    if !row.active {
        return Ok(());
    }
    let id = StaffUserId::parse(&row.staff_user_id).map_err(|e| e.to_string())?;
    let address = Email::parse(&row.email).map_err(|e| e.to_string())?;
    let token = auth::new_token();
    let expires_at = Utc::now() + Duration::minutes(RESET_MINUTES);
    let meta = context::meta(rc, commands::Actor::System("password-reset".into()));
    let out = state
        .crm
        .staff_users()
        .execute(
            id,
            domain::Actor::System,
            StaffCommand::RequestPasswordReset {
                token_hash: token_hash(&token),
                expires_at,
            },
            &meta,
        )
        .await
        .map_err(|e| e.to_string())?;
    let Some(event) = out.events.first() else {
        return Err("the reset request recorded nothing".into());
    };
    // The message is caused by the request event, as the outbox policy's messages are.
    let cause = format!(
        "{}:{}:{}",
        domain::staff::AGGREGATE_TYPE,
        id,
        event.sequence
    );
    let body = format!(
        "Someone (we hope you) asked to reset your Dirt Free CRM password.\n\n\
         Choose a new one within {RESET_MINUTES} minutes here:\n\
         {PUBLIC_URL}/reset-password?token={}\n\n\
         If you did not ask, ignore this email: your password stays as it is.",
        reset_tokens::PLACEHOLDER
    );
    let message = reset_tokens::SecretMessage {
        cause,
        kind: MessageKind::PasswordReset,
        channel: Channel::Email,
        recipient: Recipient::Email { address },
        subject: Some("Reset your Dirt Free CRM password".into()),
        body,
        withheld_address: None,
    };
    reset_tokens::queue_with_secret(
        &state.crm,
        state.projections.db(),
        &token,
        expires_at,
        message,
        &meta,
    )
    .await
}

/// The staff user a reset token belongs to, from the `accounts` read model (caught up once
/// when the token is not found, in case the request is not projected yet).
async fn staff_by_reset_token(
    state: &AppState,
    hash: &str,
) -> Result<Option<StaffUserId>, projections::DbError> {
    for attempt in 0..2 {
        if let Some(id) = accounts::staff_user_by_reset_token(state.projections.db(), hash).await? {
            return Ok(StaffUserId::parse(&id).ok());
        }
        if attempt == 0 {
            let _ = state.projections.catch_up("accounts").await;
        }
    }
    Ok(None)
}

/// Staff account mutations.
#[derive(Debug, Default)]
pub struct StaffMutation;

#[Object]
impl StaffMutation {
    /// Emails a password-reset link (valid 60 minutes, once) to an active staff user. Answers
    /// the same whether or not the address belongs to anyone. Rate limited like `login`.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        input: RequestPasswordResetInput,
    ) -> async_graphql::Result<RequestPasswordResetPayload> {
        let (state, rc) = parts(ctx)?;
        auth::rate_limit(state, &rc.client_ip)?;
        auth::check_len("email", &input.email)?;
        let (state, rc) = (state.clone(), rc.clone());
        tokio::spawn(async move {
            if let Err(error) = issue_reset(&state, &rc, &input.email).await {
                tracing::error!(request_id = %rc.request_id, %error, "password reset not issued");
            }
        });
        Ok(RequestPasswordResetPayload { accepted: true })
    }

    /// Sets a new password with the token from a reset link, and ends the user's sessions.
    /// A wrong, expired or used token is `VALIDATION` on `token`, and changes nothing.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        input: ResetPasswordInput,
    ) -> async_graphql::Result<ResetPasswordPayload> {
        let (state, rc) = parts(ctx)?;
        auth::rate_limit(state, &rc.client_ip)?;
        auth::check_password_in("newPassword", &input.new_password)?;
        if input.token.is_empty() || input.token.len() > 200 {
            return Err(bad_token());
        }
        let hash = token_hash(&input.token);
        let id = staff_by_reset_token(state, &hash)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?
            .ok_or_else(bad_token)?;
        let role = auth::staff_user(state, &id.to_string())
            .await
            .map_or(Role::Staff, |u| u.role.into());
        let password = input.new_password.clone();
        let password_hash =
            tokio::task::spawn_blocking(move || worker::accounts::passwords::hash(&password))
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?
                .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let meta = context::meta(rc, commands::Actor::Staff(id.to_string()));
        let out = state
            .crm
            .staff_users()
            .execute(
                id,
                domain::Actor::Staff { id, role },
                StaffCommand::CompletePasswordReset {
                    token_hash: hash,
                    password_hash,
                },
                &meta,
            )
            .await
            .map_err(|e| match e {
                AppError::Rule {
                    code: "INVALID_RESET_TOKEN" | "RESET_TOKEN_EXPIRED" | "STAFF_USER_DEACTIVATED",
                    ..
                }
                | AppError::Conflict { .. } => bad_token(),
                e => errors::app(&rc.request_id, e),
            })?;
        // Whoever had the old password (or a session opened with it) is signed out.
        sessions::revoke_all_of(
            state.projections.db(),
            PrincipalKind::Staff,
            &id.to_string(),
            None,
            Utc::now(),
        )
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let position = settle(state, &out).await;
        let staff_user = auth::staff_user(state, &id.to_string())
            .await
            .ok_or_else(|| errors::not_found("staff user", &id.to_string()))?;
        Ok(ResetPasswordPayload {
            staff_user,
            position,
        })
    }

    /// Changes a staff user's role (admin only; an admin cannot demote themselves). Their
    /// open sessions take the new role at once.
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn change_staff_role(
        &self,
        ctx: &Context<'_>,
        input: ChangeStaffRoleInput,
    ) -> async_graphql::Result<StaffUserPayload> {
        let (state, rc) = parts(ctx)?;
        let by = context::staff_actor(rc)?;
        let id = StaffUserId::parse(&input.staff_user_id)
            .map_err(|_| errors::invalid("staffUserId", "not a staff user id"))?;
        let role: Role = input.role.into();
        if by.0.staff_id() == Some(id) && role != Role::Admin {
            // Otherwise the last admin could lock everyone out of staff management.
            return Err(errors::rule(
                "CANNOT_DEMOTE_SELF",
                "admins cannot demote themselves",
                "role",
            ));
        }
        let (key, change) = (
            input.idempotency_key.as_ref(),
            StaffCommand::ChangeRole { role },
        );
        let done =
            command::execute(state, rc, state.crm.staff_users(), id, by, key, change).await?;
        // Sessions carry the role they were opened with: move the user's open ones along,
        // after the read model has the change (a login from now on reads the new role).
        sessions::set_staff_role(
            state.projections.db(),
            &id.to_string(),
            context::stored_role(role),
        )
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let staff_user = auth::staff_user(state, &id.to_string())
            .await
            .ok_or_else(|| errors::not_found("staff user", &id.to_string()))?;
        Ok(StaffUserPayload {
            staff_user,
            position: done.position,
        })
    }

    /// Deactivates a staff user (admin only; not oneself): they can no longer sign in and
    /// their open sessions end at once. Their history stays.
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn deactivate_staff_user(
        &self,
        ctx: &Context<'_>,
        input: DeactivateStaffUserInput,
    ) -> async_graphql::Result<StaffUserPayload> {
        let (state, rc) = parts(ctx)?;
        let by = context::staff_actor(rc)?;
        let id = StaffUserId::parse(&input.staff_user_id)
            .map_err(|_| errors::invalid("staffUserId", "not a staff user id"))?;
        let (key, deactivate) = (input.idempotency_key.as_ref(), StaffCommand::Deactivate);
        let on = state.crm.staff_users();
        let done = command::execute(state, rc, on, id, by, key, deactivate).await?;
        sessions::revoke_all_of(
            state.projections.db(),
            PrincipalKind::Staff,
            &id.to_string(),
            None,
            Utc::now(),
        )
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let staff_user = auth::staff_user(state, &id.to_string())
            .await
            .ok_or_else(|| errors::not_found("staff user", &id.to_string()))?;
        Ok(StaffUserPayload {
            staff_user,
            position: done.position,
        })
    }
}

/// Deactivating a staff user.
#[derive(InputObject, Debug)]
pub struct DeactivateStaffUserInput {
    /// Who.
    pub staff_user_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

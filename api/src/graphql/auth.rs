//! Staff and portal authentication: sign-in with argon2id passwords
//! ([`worker::accounts::passwords`]), opaque session tokens (stored as SHA-256, expiring,
//! revocable), the first admin.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use commands::app::{AppError, Crm};
use commands::EventMetadata;
use domain::ids::{CustomerId, PortalAccountId, StaffUserId};
use domain::portal::PortalAccountCommand as PortalCommand;
use domain::ports::Role;
use domain::staff::{StaffUser as StaffUserState, StaffUserCommand as StaffCommand};
use projections::crm::accounts::{self, StaffUserRow};
use rand::rngs::OsRng;
use rand::RngCore;
use worker::accounts::passwords;
use worker::sessions::{self, PrincipalKind};

use super::command::{self, settle};
use super::context::{self, parts, token_hash, Allow, Principal};
use super::errors;
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;
use worker::sign_in_limits::{AccountKind, Limited};

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;
const MIN_PASSWORD: usize = 10;
const MAX_TEXT: usize = 200;

/// RFC 3339 in UTC, seconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `RATE_LIMITED`, the same whichever limit was reached: it does not tell whether an
/// account exists.
pub(super) fn rate_limited(_: Limited) -> async_graphql::Error {
    errors::coded(
        "RATE_LIMITED",
        "too many sign-in attempts; wait a minute and try again",
        None,
    )
}

/// An attempt that names no account (password reset, password change) from `ip`: counts
/// against its network's sign-in attempts (see [`worker::sign_in_limits`]).
pub(super) fn rate_limit(state: &AppState, ip: &str) -> async_graphql::Result<()> {
    state.sign_in_limits.attempt(ip).map_err(rate_limited)
}

fn wrong_credentials() -> async_graphql::Error {
    errors::coded("UNAUTHENTICATED", "wrong email or password", None)
}

/// The staff user `email` names, as the event log has it now: the read model (which can lag
/// the log) only turns the email into an id, which never changes. An unknown email loads an
/// aggregate that does not exist, so it costs what a known one does.
///
/// # Errors
/// When the read model or the log cannot be read: sign-in then fails closed.
async fn staff_for_sign_in(
    state: &AppState,
    email: &str,
    request_id: &str,
) -> async_graphql::Result<(StaffUserId, StaffUserState)> {
    let row = accounts::staff_user_by_email(state.projections.db(), email)
        .await
        .map_err(|e| errors::internal(request_id, &e))?;
    let id = row
        .as_ref()
        .and_then(|r| StaffUserId::parse(&r.staff_user_id).ok())
        .unwrap_or_else(|| StaffUserId::from_uuid(uuid::Uuid::nil()));
    let loaded = state
        .crm
        .staff_users()
        .load(id)
        .await
        .map_err(|e| errors::app(request_id, e))?;
    Ok((id, loaded.aggregate))
}

pub(super) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) async fn open_session(
    state: &AppState,
    kind: PrincipalKind,
    id: &str,
    role: Option<&str>,
    ip: &str,
) -> async_graphql::Result<(String, DateTime<Utc>)> {
    let token = new_token();
    let now = Utc::now();
    let expires = now + Duration::hours(SESSION_HOURS);
    let session = sessions::NewSession {
        token_hash: &token_hash(&token),
        kind,
        principal_id: id,
        role,
        created_at: now,
        expires_at: expires,
        client_ip: ip,
    };
    sessions::open(state.projections.db(), &session)
        .await
        .map_err(|e| errors::internal("-", &e))?;
    Ok((token, expires))
}

/// A staff role.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::ports::Role")]
pub enum StaffRole {
    /// Everything, including staff management.
    Admin,
    /// Reports, promotions, pipeline, analytics.
    Manager,
    /// Day-to-day work: customers, jobs, loyalty.
    Staff,
}

/// Credentials.
#[derive(InputObject, Debug)]
pub struct LoginInput {
    /// Email address.
    pub email: String,
    /// Password.
    #[graphql(secret)]
    pub password: String,
}

/// A new session.
#[derive(SimpleObject, Debug)]
pub struct LoginPayload {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// When it stops working (RFC 3339, UTC).
    pub expires_at: String,
    /// The staff user's id (staff logins).
    pub staff_user_id: Option<ID>,
    /// The role (staff logins).
    pub role: Option<StaffRole>,
    /// The customer's id (portal logins).
    pub customer_id: Option<ID>,
}

/// A staff user.
#[derive(SimpleObject, Debug, Clone)]
pub struct StaffUser {
    /// Id.
    pub id: ID,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// Whether they can sign in.
    pub active: bool,
}

/// Who is signed in.
#[derive(SimpleObject, Debug)]
pub struct Viewer {
    /// `staff` or `customer`.
    pub kind: String,
    /// Staff user or customer id.
    pub id: ID,
    /// Role (staff only).
    pub role: Option<StaffRole>,
}

/// A new staff user.
#[derive(InputObject, Debug)]
pub struct CreateStaffUserInput {
    /// Email (their login).
    pub email: String,
    /// Full name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// Initial password (at least 10 characters).
    #[graphql(secret)]
    pub password: String,
    /// Makes retries safe: the same key returns the first outcome.
    pub idempotency_key: Option<String>,
}

/// Result of `createStaffUser`.
#[derive(SimpleObject, Debug)]
pub struct CreateStaffUserPayload {
    /// The user.
    pub staff_user: StaffUser,
    /// Log position of the last event (pass to `sync` for read-your-writes).
    pub position: String,
}

/// A new password for the signed-in user.
#[derive(InputObject, Debug)]
pub struct ChangePasswordInput {
    /// The password now in use.
    #[graphql(secret)]
    pub current_password: String,
    /// The new password (at least 10 characters).
    #[graphql(secret)]
    pub new_password: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Result of `changePassword`.
#[derive(SimpleObject, Debug)]
pub struct ChangePasswordPayload {
    /// Log position of the change (for `sync`).
    pub position: String,
}

pub(super) fn check_password(p: &str) -> async_graphql::Result<()> {
    check_password_in("password", p)
}

/// The password rules (length), for a password given in `field`.
pub(super) fn check_password_in(field: &str, p: &str) -> async_graphql::Result<()> {
    if p.chars().count() < MIN_PASSWORD || p.len() > 1024 {
        return Err(errors::invalid(
            field,
            format!("must be {MIN_PASSWORD} to 1024 characters"),
        ));
    }
    Ok(())
}

/// Bounded free text.
pub fn check_len(field: &str, v: &str) -> async_graphql::Result<()> {
    if v.chars().count() > MAX_TEXT {
        return Err(errors::invalid(
            field,
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

pub(super) async fn staff_by_email(state: &AppState, email: &str) -> Option<StaffUserRow> {
    accounts::staff_user_by_email(state.projections.db(), email)
        .await
        .ok()?
}

/// Reads a staff user from the read model.
pub async fn staff_user(state: &AppState, id: &str) -> Option<StaffUser> {
    accounts::staff_user_by_id(state.projections.db(), id)
        .await
        .ok()?
        .as_ref()
        .map(staff_user_from_row)
}

fn staff_user_from_row(r: &StaffUserRow) -> StaffUser {
    StaffUser {
        id: ID(r.staff_user_id.clone()),
        email: r.email.clone(),
        name: r.name.clone(),
        role: r.role.into(),
        active: r.active,
    }
}

/// Creates a staff user with `id` and their password, in one command. `retry`:
/// the idempotency key in `meta` was used before, so the first outcome is the
/// answer (the email is then taken by that very user); a concurrent retry
/// that loses the race to create `id` gets the winner's outcome too.
async fn create_staff(
    state: &AppState,
    crm: &Crm,
    actor: domain::Actor,
    meta: &EventMetadata,
    input: &CreateStaffUserInput,
    (id, retry): (StaffUserId, bool),
    request_id: &str,
) -> async_graphql::Result<(StaffUserId, commands::CommandOutcome)> {
    check_password(&input.password)?;
    check_len("name", &input.name)?;
    check_len("email", &input.email)?;
    if !retry && staff_by_email(state, &input.email).await.is_some() {
        return Err(errors::rule(
            "STAFF_EMAIL_TAKEN",
            "a staff user with this email exists",
            "email",
        ));
    }
    // On a retry the hash is not needed (the first outcome is the answer), but
    // computing it keeps one path; it runs off the runtime threads.
    let hash = passwords::hash_off_the_runtime(input.password.clone())
        .await
        .map_err(|e| errors::internal(request_id, &e))?;
    let out = crm
        .staff_users()
        .execute(
            id,
            actor,
            StaffCommand::Invite {
                staff_user_id: id,
                email: input.email.clone(),
                name: input.name.clone(),
                role: input.role.into(),
                password_hash: Some(hash),
            },
            meta,
        )
        .await
        .map_err(|e| errors::app(request_id, e))?;
    Ok((id, out))
}

/// Creates the first admin from ADMIN_EMAIL/ADMIN_PASSWORD on a store without staff.
///
/// # Errors
/// When a command fails.
pub async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&state.config.admin_email, &state.config.admin_password)
    else {
        return Ok(());
    };
    state.projections.catch_up("accounts").await?;
    if accounts::any_staff_user(state.projections.db()).await? {
        return Ok(());
    }
    let input = CreateStaffUserInput {
        email: email.clone(),
        name: "Administrator".into(),
        role: StaffRole::Admin,
        password: password.expose().to_string(),
        idempotency_key: Some("bootstrap-admin".into()),
    };
    let meta = EventMetadata::new(commands::Actor::System("bootstrap".into()), Utc::now())
        .with_idempotency_key("bootstrap-admin");
    let id = StaffUserId::from_uuid(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("dirtfree:bootstrap-admin:{email}").as_bytes(),
    ));
    create_staff(
        state,
        &state.crm,
        domain::Actor::System,
        &meta,
        &input,
        (id, false),
        "bootstrap",
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the first admin: {}", e.message))?;
    state.projections.catch_up("accounts").await?;
    tracing::info!(email = %email, "created the first admin from ADMIN_EMAIL");
    Ok(())
}

/// Authentication queries.
#[derive(Debug, Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Who is signed in (null when nobody).
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Viewer>> {
        let (_, rc) = parts(ctx)?;
        Ok(rc.principal.as_ref().map(|p| match p {
            Principal::Staff { id, role } => Viewer {
                kind: "staff".into(),
                id: ID(id.to_string()),
                role: Some((*role).into()),
            },
            Principal::Customer { id } => Viewer {
                kind: "customer".into(),
                id: ID(id.to_string()),
                role: None,
            },
        }))
    }

    /// Staff users by email (admin only).
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn staff_users(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<StaffUser>> {
        let (state, rc) = parts(ctx)?;
        paging::of_listing(
            state,
            rc,
            accounts::staff_users(),
            PageArgs::new(after, before, first, last),
            staff_user_from_row,
        )
        .await
    }
}

/// Authentication mutations.
#[derive(Debug, Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Staff sign-in with email and password. Decided on the event log's state of the user
    /// (active, role, password), not the read model's; limited per network and per account
    /// (`RATE_LIMITED`, the same for an unknown email).
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<LoginPayload> {
        let (state, rc) = parts(ctx)?;
        let attempt = state
            .sign_in_limits
            .sign_in(AccountKind::Staff, &input.email, &rc.client_ip)
            .map_err(rate_limited)?;
        let (id, user) = staff_for_sign_in(state, &input.email, &rc.request_id).await?;
        // A deactivated user, or one without a password, is checked against the dummy hash:
        // the answer and its timing are those of a wrong password.
        let hash = user
            .password_hash()
            .filter(|_| user.is_active())
            .map(|h| h.expose().to_string());
        let password = input.password.clone();
        let ok = passwords::verify_off_the_runtime(password, hash).await;
        let Some(role) = user.role().filter(|_| ok && user.is_active()) else {
            tracing::info!(request_id = %rc.request_id, "failed staff login");
            return Err(wrong_credentials());
        };
        attempt.succeeded();
        // The login is recorded before a session exists, and the aggregate refuses it for a
        // deactivated user: a deactivation appended since the load above still wins.
        let meta = context::meta(rc, commands::Actor::Staff(id.to_string()));
        state
            .crm
            .staff_users()
            .execute(
                id,
                domain::Actor::Staff { id, role },
                StaffCommand::RecordLogin,
                &meta,
            )
            .await
            .map_err(|e| match e {
                AppError::Store(_) => errors::app(&rc.request_id, e),
                _ => {
                    tracing::info!(request_id = %rc.request_id, error = %e, "staff login refused");
                    wrong_credentials()
                }
            })?;
        let (token, expires) = open_session(
            state,
            PrincipalKind::Staff,
            &id.to_string(),
            Some(context::stored_role(role)),
            &rc.client_ip,
        )
        .await?;
        Ok(LoginPayload {
            token,
            expires_at: rfc3339(expires),
            staff_user_id: Some(ID(id.to_string())),
            role: Some(role.into()),
            customer_id: None,
        })
    }

    /// Ends the current session.
    #[graphql(guard = "Allow::SignedIn")]
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let (state, rc) = parts(ctx)?;
        // The guard admitted a session, so there is its token's hash.
        let Some(hash) = &rc.token_hash else {
            return Err(errors::unauthenticated());
        };
        sessions::revoke(state.projections.db(), hash, Utc::now())
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        Ok(true)
    }

    /// Changes the signed-in user's own password (staff or portal customer), given the
    /// current one. Their other sessions end; this one stays signed in.
    #[graphql(guard = "Allow::SignedIn")]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> async_graphql::Result<ChangePasswordPayload> {
        let (state, rc) = parts(ctx)?;
        let principal = rc.principal.clone().ok_or_else(errors::unauthenticated)?;
        check_password_in("newPassword", &input.new_password)?;
        // Guessing the current password is a sign-in attempt too.
        rate_limit(state, &rc.client_ip)?;
        let db = state.projections.db();
        let (kind, id) = match &principal {
            Principal::Staff { id, .. } => (PrincipalKind::Staff, id.to_string()),
            Principal::Customer { id } => (PrincipalKind::Customer, id.to_string()),
        };
        let hash = match kind {
            PrincipalKind::Staff => accounts::staff_password_hash(db, &id).await,
            PrincipalKind::Customer => accounts::portal_password_hash(db, &id).await,
        }
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let current = input.current_password.clone();
        let ok = passwords::verify_off_the_runtime(current, hash).await;
        if !ok {
            return Err(errors::coded(
                "VALIDATION",
                "the current password is wrong",
                Some("currentPassword"),
            ));
        }
        let new_hash = passwords::hash_off_the_runtime(input.new_password.clone())
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let key = input.idempotency_key.as_ref();
        let password_hash = new_hash;
        let done = match principal {
            Principal::Staff { id: sid, .. } => {
                let cmd = StaffCommand::SetPasswordHash { password_hash };
                let by = context::staff_actor(rc)?;
                command::execute(state, rc, state.crm.staff_users(), sid, by, key, cmd).await?
            }
            Principal::Customer { id: cid } => {
                let (_, actor, meta) = context::customer(rc)?;
                let account = PortalAccountId::for_customer(cid);
                let cmd = PortalCommand::ChangePassword { password_hash };
                let on = state.crm.portal_accounts();
                command::execute(state, rc, on, account, (actor, meta), key, cmd).await?
            }
        };
        // A password change is how a user locks out whoever else holds a session.
        sessions::revoke_all_of(db, kind, &id, rc.token_hash.as_deref(), Utc::now())
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        Ok(ChangePasswordPayload {
            position: done.position,
        })
    }

    /// Creates a staff user (admin only).
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn create_staff_user(
        &self,
        ctx: &Context<'_>,
        input: CreateStaffUserInput,
    ) -> async_graphql::Result<CreateStaffUserPayload> {
        let (state, rc) = parts(ctx)?;
        let (actor, meta) = context::staff_actor(rc)?;
        let key = input.idempotency_key.as_ref();
        let meta = context::with_key(meta, key);
        let id = StaffUserId::from_uuid(context::id_for_create(state, rc, key).await);
        let retry = context::key_was_used(state, rc, key).await;
        let (id, out) = create_staff(
            state,
            &state.crm,
            actor,
            &meta,
            &input,
            (id, retry),
            &rc.request_id,
        )
        .await?;
        let position = settle(state, &out).await;
        let staff_user = staff_user(state, &id.to_string())
            .await
            .ok_or_else(|| errors::not_found("staff user", &id.to_string()))?;
        Ok(CreateStaffUserPayload {
            staff_user,
            position,
        })
    }

    /// Portal sign-in; limited as `login` is (the same networks, its own accounts).
    async fn portal_login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<LoginPayload> {
        let (state, rc) = parts(ctx)?;
        let attempt = state
            .sign_in_limits
            .sign_in(AccountKind::Portal, &input.email, &rc.client_ip)
            .map_err(rate_limited)?;
        let row = accounts::portal_account_by_email(state.projections.db(), &input.email)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let hash = row.as_ref().and_then(|(_, hash)| hash.clone());
        let password = input.password.clone();
        let ok = passwords::verify_off_the_runtime(password, hash).await;
        let Some((id, _)) = row.filter(|_| ok) else {
            return Err(wrong_credentials());
        };
        attempt.succeeded();
        let (token, expires) =
            open_session(state, PrincipalKind::Customer, &id, None, &rc.client_ip).await?;
        if let Ok(cid) = CustomerId::parse(&id) {
            let meta = context::meta(rc, commands::Actor::Customer(id.clone()));
            let _ = state
                .crm
                .portal_accounts()
                .execute(
                    PortalAccountId::for_customer(cid),
                    domain::Actor::Customer { id: cid },
                    PortalCommand::RecordLogin,
                    &meta,
                )
                .await;
        }
        Ok(LoginPayload {
            token,
            expires_at: rfc3339(expires),
            staff_user_id: None,
            role: None,
            customer_id: Some(ID(id)),
        })
    }
}

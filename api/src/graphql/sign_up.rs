//! Portal sign-up and email changes (issue #14): the transport of
//! [`worker::accounts::portal_sign_up`], which says how they tell nobody who is a customer.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::ids::CustomerId;
use domain::values::Email;
use worker::accounts::portal_sign_up::{PortalSignUp, Registration, SignUpError};
use worker::sign_in_limits::Limited;

use super::auth::{self, check_len, check_password, open_session, rfc3339, LoginPayload};
use super::command::settle;
use super::context::{self, parts, Allow};
use super::errors;
use crate::state::AppState;

/// Asking to sign up (or to move one's sign-in) with an email address.
#[derive(InputObject, Debug)]
pub struct EmailCodeInput {
    /// The address the code goes to.
    pub email: String,
    /// Makes retries safe: a retry sends no second code.
    pub idempotency_key: Option<String>,
}

/// The answer to asking for a code: the same whether or not the address has an account.
#[derive(SimpleObject, Debug)]
pub struct EmailCodePayload {
    /// Always true: the request was taken (what is sent depends on the address).
    pub accepted: bool,
    /// When a code sent now stops working (RFC 3339).
    pub expires_at: String,
}

/// Portal sign-up, with the code mailed by `startPortalSignUp`.
#[derive(InputObject, Debug)]
pub struct RegisterPortalAccountInput {
    /// Full name.
    pub name: String,
    /// Email (their login): the address the code went to.
    pub email: String,
    /// The eight digits mailed to it.
    #[graphql(secret)]
    pub code: String,
    /// Phone, E.164 or a US number.
    pub phone: Option<String>,
    /// Password (at least 10 characters).
    #[graphql(secret)]
    pub password: String,
    /// A friend's referral code.
    pub referral_code: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Moving the signed-in customer's sign-in to a new address, with the code mailed to it.
#[derive(InputObject, Debug)]
pub struct ConfirmEmailChangeInput {
    /// The new address.
    pub email: String,
    /// The eight digits mailed to it.
    #[graphql(secret)]
    pub code: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The email changed.
#[derive(SimpleObject, Debug)]
pub struct EmailChangedPayload {
    /// The address the customer now signs in with.
    pub email: String,
    /// Log position (for `sync`).
    pub position: String,
}

/// Sign-up and email-change mutations.
#[derive(Debug, Default)]
pub struct SignUpMutation;

#[Object]
impl SignUpMutation {
    /// Starts a portal sign-up: mails the address a eight-digit code (valid 15 minutes; a new
    /// one voids the last), or, when it already signs in to an account, a note saying so. The
    /// answer is the same either way. Limited per network, and to five codes an hour per
    /// address (`RATE_LIMITED`).
    async fn start_portal_sign_up(
        &self,
        ctx: &Context<'_>,
        input: EmailCodeInput,
    ) -> async_graphql::Result<EmailCodePayload> {
        let (state, rc) = parts(ctx)?;
        let email = parse_email(&input.email)?;
        let meta = context::meta(rc, commands::Actor::System("sign-up".into()));
        let expires_at = service(state)
            .start_sign_up(&rc.client_ip, email, input.idempotency_key.as_deref(), meta)
            .map_err(|e| error(&rc.request_id, e))?;
        Ok(code_sent(expires_at))
    }

    /// Portal sign-up with the code from `startPortalSignUp`: creates the customer (or, for an
    /// address staff entered, gives that customer the account), the portal account and (with
    /// a referral code) the referral, then signs in. The email counts as confirmed. A wrong or
    /// expired code is `VALIDATION` on `code` (five per address in 15 minutes, then
    /// `RATE_LIMITED`); sign-ups are limited per network and in total. With an
    /// `idempotencyKey`, a retry (also concurrent) with the same email and password gets the
    /// first outcome and a session; one with another password is `IDEMPOTENCY_KEY_REUSED`.
    async fn register_portal_account(
        &self,
        ctx: &Context<'_>,
        input: RegisterPortalAccountInput,
    ) -> async_graphql::Result<LoginPayload> {
        let (state, rc) = parts(ctx)?;
        check_password(&input.password)?;
        check_len("name", &input.name)?;
        let email = parse_email(&input.email)?;
        // A new customer's id derives from the key, so retries address it.
        let fresh = match &input.idempotency_key {
            Some(k) => CustomerId::from_uuid(context::derived_id(&format!(
                "registerPortalAccount:{email}:{k}"
            ))),
            None => CustomerId::from_uuid(uuid::Uuid::new_v4()),
        };
        let registration = Registration {
            name: input.name,
            email,
            code: input.code,
            phone: input.phone,
            password: input.password,
            referral_code: input.referral_code,
            idempotency_key: input.idempotency_key,
            fresh,
            client_ip: rc.client_ip.clone(),
        };
        let meta = context::meta(rc, commands::Actor::System("sign-up".into()));
        let registered = service(state)
            .register(registration, meta)
            .await
            .map_err(|e| error(&rc.request_id, e))?;
        if let Some(out) = &registered.last {
            settle(state, out).await;
        }
        let own = registered.customer_id.to_string();
        let (token, expires) = open_session(
            state,
            worker::sessions::PrincipalKind::Customer,
            &own,
            None,
            &rc.client_ip,
        )
        .await?;
        Ok(LoginPayload {
            token,
            expires_at: rfc3339(expires),
            staff_user_id: None,
            role: None,
            customer_id: Some(ID(own)),
        })
    }

    /// Asks to move the signed-in customer's sign-in to another address: mails it a code
    /// (valid 15 minutes) unless another account signs in with it, and answers the same
    /// either way. Five codes an hour per customer (`RATE_LIMITED`).
    #[graphql(guard = "Allow::Customer")]
    async fn request_email_change(
        &self,
        ctx: &Context<'_>,
        input: EmailCodeInput,
    ) -> async_graphql::Result<EmailCodePayload> {
        let (state, rc) = parts(ctx)?;
        let (me, _, _) = context::customer(rc)?;
        let email = parse_email(&input.email)?;
        let meta = context::meta(rc, commands::Actor::Customer(me.to_string()));
        let key = input.idempotency_key.as_deref();
        let expires_at = service(state)
            .start_email_change(me, &rc.client_ip, email, key, meta)
            .map_err(|e| error(&rc.request_id, e))?;
        Ok(code_sent(expires_at))
    }

    /// Moves the signed-in customer's sign-in (and contact email) to the address the code
    /// from `requestEmailChange` went to; it counts as confirmed. A wrong or expired code is
    /// `VALIDATION` on `code` (five in 15 minutes, then `RATE_LIMITED`); an address another
    /// account took meanwhile is `RULE_VIOLATION` on `email`.
    #[graphql(guard = "Allow::Customer")]
    async fn confirm_email_change(
        &self,
        ctx: &Context<'_>,
        input: ConfirmEmailChangeInput,
    ) -> async_graphql::Result<EmailChangedPayload> {
        let (state, rc) = parts(ctx)?;
        let (me, _, meta) = context::customer(rc)?;
        let email = parse_email(&input.email)?;
        let key = input.idempotency_key.as_deref();
        let last = service(state)
            .confirm_email_change(me, &email, &input.code, key, meta)
            .await
            .map_err(|e| error(&rc.request_id, e))?;
        let position = match &last {
            Some(out) => settle(state, out).await,
            None => String::new(),
        };
        Ok(EmailChangedPayload {
            email: email.to_string(),
            position,
        })
    }
}

fn service(state: &AppState) -> PortalSignUp {
    PortalSignUp::new(
        state.crm.clone(),
        state.projections.clone(),
        state.sign_in_limits.clone(),
    )
}

fn parse_email(raw: &str) -> async_graphql::Result<Email> {
    check_len("email", raw)?;
    Email::parse(raw).map_err(|e| errors::invalid("email", e.to_string()))
}

fn code_sent(expires_at: DateTime<Utc>) -> EmailCodePayload {
    EmailCodePayload {
        accepted: true,
        expires_at: expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// The API's error for a refused step.
fn error(request_id: &str, e: SignUpError) -> async_graphql::Error {
    match e {
        SignUpError::Invalid { field, message } => errors::invalid(field, message),
        SignUpError::AlreadyRegistered => errors::rule(
            "ALREADY_REGISTERED",
            "this email is already registered; sign in instead",
            "email",
        ),
        SignUpError::EmailTaken => {
            errors::rule("EMAIL_TAKEN", "another customer uses this email", "email")
        }
        SignUpError::KeyReused => errors::coded(
            "IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was used for a different sign-up",
            Some("idempotencyKey"),
        ),
        SignUpError::Limited => auth::rate_limited(Limited),
        SignUpError::App(e) => errors::app(request_id, e),
        SignUpError::Store(e) => errors::internal(request_id, &e),
    }
}

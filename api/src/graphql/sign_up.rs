//! Portal sign-up and email changes that tell nobody who is a customer (issue #14).
//!
//! Asking for a sign-up (`startPortalSignUp`) or an email change (`requestEmailChange`) always
//! gets the same answer, and the work happens after it: the address is sent a eight-digit code,
//! or, when it already signs in to an account, a note saying so. Only the mailbox's owner can
//! go on (`registerPortalAccount`, `confirmEmailChange`), so the code also proves the address:
//! the account's email counts as confirmed. A sign-up for an address staff entered claims that
//! customer instead of making a second one. The codes are kept as described in
//! [`worker::address_codes`].

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use domain::consent::Channel;
use domain::customer::CustomerCommand;
use domain::ids::{CustomerId, OutboundMessageId, PortalAccountId};
use domain::message::{MessageCommand, MessageKind, Recipient};
use domain::portal::PortalAccountCommand as PortalCommand;
use domain::values::Email;
use rand::RngCore;
use sha2::{Digest, Sha256};
use worker::address_codes::{self as codes, CodeKey, Purpose};
use worker::outbox::reset_tokens;

use super::auth::{
    self, check_len, check_password, hash_password_off_the_runtime, open_session, rfc3339, settle,
    verify_password_off_the_runtime, LoginPayload,
};
use super::context::{self, parts, token_hash, Allow};
use super::errors;
use crate::signin_limits::AccountKind;
use crate::state::AppState;

/// How long a code works.
const CODE_MINUTES: i64 = 15;

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
        state
            .sign_in_limits
            .address_code(&rc.client_ip, &limit_key(Purpose::SignUp, &email))
            .map_err(auth::rate_limited)?;
        let expires_at = Utc::now() + Duration::minutes(CODE_MINUTES);
        let request = input
            .idempotency_key
            .as_ref()
            .map(|k| format!("{email}:{k}"));
        let meta = context::meta(rc, commands::Actor::System("sign-up".into()));
        // After answering, so the time taken does not tell either.
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = mail_sign_up(&state, &email, request, expires_at, &meta).await {
                tracing::warn!(error = %e, "sign-up: the code was not queued");
            }
        });
        Ok(EmailCodePayload {
            accepted: true,
            expires_at: expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
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
        let once = input
            .idempotency_key
            .as_ref()
            .map(|k| format!("{}:{k}", codes::address_hash(email.as_str())));
        state
            .sign_in_limits
            .sign_up(&rc.client_ip, once.as_deref())
            .map_err(auth::rate_limited)?;
        // What can be refused is refused before the code is used up.
        if let Some(p) = input.phone.as_deref().filter(|p| !p.trim().is_empty()) {
            domain::values::PhoneNumber::parse(p)
                .map_err(|e| errors::invalid("phone", e.message))?;
        }
        let referrer = match &input.referral_code {
            Some(code) => Some(
                state
                    .crm
                    .referral_code_owner(code)
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?
                    .ok_or_else(|| errors::invalid("referralCode", "unknown referral code"))?,
            ),
            None => None,
        };
        let key = CodeKey::new(Purpose::SignUp, email.as_str(), None);
        let limit = format!("typed:{}", limit_key(Purpose::SignUp, &email));
        let issued = check_code(state, &key, &limit, &input.code)
            .await
            .map_err(|e| e.into_error(&rc.request_id))?;
        // Who the account is for: a keyed retry's customer, the customer staff entered with
        // this address, or a new one (whose id derives from the key, so retries address it).
        let fresh = match &input.idempotency_key {
            Some(k) => CustomerId::from_uuid(context::derived_id(&format!(
                "registerPortalAccount:{email}:{k}"
            ))),
            None => CustomerId::from_uuid(uuid::Uuid::new_v4()),
        };
        let existing = customers_with_email(state, &email)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let customer_id = match &issued.claimed_by {
            // The code made (or claimed) this customer: a retry goes on with it — keyed, or
            // when the first try stopped before the account was made.
            Some(c) => {
                let c = CustomerId::parse(c).map_err(|e| errors::internal(&rc.request_id, &e))?;
                let unfinished = state
                    .crm
                    .portal_accounts()
                    .load(PortalAccountId::for_customer(c))
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?
                    .aggregate
                    .password_hash()
                    .is_none();
                if input.idempotency_key.is_none() && !unfinished {
                    return Err(already_registered());
                }
                c
            }
            None if existing.iter().any(|(_, account)| *account) => {
                return Err(already_registered())
            }
            None => existing.first().map_or(fresh, |(c, _)| *c),
        };
        let own = customer_id.to_string();
        if !codes::claim(state.projections.db(), &key, &own)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?
        {
            return Err(already_registered());
        }
        let base = context::meta(rc, commands::Actor::Customer(own.clone()));
        // Each write has its own key (one key names one aggregate's outcome).
        let part_key = |part: &str| {
            input
                .idempotency_key
                .as_ref()
                .map(|k| format!("{k}#{part}"))
        };
        let actor = domain::Actor::Customer { id: customer_id };
        let customers = state.crm.customers();
        let known = customers
            .load(customer_id)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?
            .aggregate
            .id()
            .is_some();
        let mut last = None;
        // A customer staff entered keeps the details staff hold (the profile page changes
        // them) and was not referred by this sign-up.
        let new_customer = customer_id == fresh;
        if !known {
            last = Some(
                customers
                    .execute(
                        customer_id,
                        actor,
                        CustomerCommand::Create {
                            customer_id,
                            name: input.name.clone(),
                            email: Some(email.to_string()),
                            phone: input.phone.clone(),
                            birthday: None,
                            customer_since: None,
                        },
                        &context::with_key(base.clone(), input.idempotency_key.as_ref()),
                    )
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?,
            );
        }
        // The code went to this address: it is theirs.
        let proven = customers
            .execute(
                customer_id,
                actor,
                CustomerCommand::ConfirmProvenEmail {
                    email: email.to_string(),
                },
                &context::with_key(base.clone(), part_key("email").as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        last = Some(proven).filter(|o| !o.events.is_empty()).or(last);
        let account_id = PortalAccountId::for_customer(customer_id);
        let registered = |state: &AppState| {
            let state = state.clone();
            async move {
                state
                    .crm
                    .portal_accounts()
                    .load(account_id)
                    .await
                    .map(|a| a.aggregate.password_hash().map(|h| h.expose().to_string()))
            }
        };
        // A retry of a sign-up that already made the account hashes nothing new.
        let earlier = registered(state)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let mut replayed = earlier.is_some();
        if earlier.is_none() {
            let hash = hash_password_off_the_runtime(input.password.clone())
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?;
            let out = state
                .crm
                .portal_accounts()
                .execute(
                    account_id,
                    actor,
                    PortalCommand::Register {
                        customer_id,
                        password_hash: hash,
                    },
                    &context::with_key(base.clone(), part_key("portal-account").as_ref()),
                )
                .await
                .map_err(|e| errors::app(&rc.request_id, e))?;
            replayed = out.replayed;
            last = Some(out);
        }
        if earlier.is_none() && new_customer && referrer.is_some() {
            if let Some(code) = &input.referral_code {
                state
                    .crm
                    .record_referral(
                        customer_id,
                        code,
                        actor,
                        &context::with_key(base.clone(), part_key("referral").as_ref()),
                    )
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?;
            }
        }
        if replayed {
            // Another copy of this sign-up chose the password: a session only for that
            // password, and like a sign-in — limited, a wrong one counted against the account.
            let attempt = state
                .sign_in_limits
                .sign_in(AccountKind::Portal, email.as_str(), &rc.client_ip)
                .map_err(auth::rate_limited)?;
            let hash = match earlier {
                Some(h) => Some(h),
                None => registered(state)
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?,
            };
            if !verify_password_off_the_runtime(input.password.clone(), hash).await {
                return Err(if input.idempotency_key.is_some() {
                    errors::coded(
                        "IDEMPOTENCY_KEY_REUSED",
                        "this idempotency key was used for a different sign-up",
                        Some("idempotencyKey"),
                    )
                } else {
                    already_registered()
                });
            }
            attempt.succeeded();
        }
        if let Some(out) = &last {
            settle(state, out).await;
        }
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
        state
            .sign_in_limits
            .address_code(&rc.client_ip, &format!("email-change:{me}"))
            .map_err(auth::rate_limited)?;
        let expires_at = Utc::now() + Duration::minutes(CODE_MINUTES);
        let request = input
            .idempotency_key
            .as_ref()
            .map(|k| format!("{email}:{k}"));
        let meta = context::meta(rc, commands::Actor::Customer(me.to_string()));
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = mail_email_change(&state, me, &email, request, expires_at, &meta).await
            {
                tracing::warn!(error = %e, "email change: the code was not queued");
            }
        });
        Ok(EmailCodePayload {
            accepted: true,
            expires_at: expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
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
        let (me, actor, meta) = context::customer(rc)?;
        let email = parse_email(&input.email)?;
        let key = CodeKey::new(Purpose::EmailChange, email.as_str(), Some(&me.to_string()));
        check_code(
            state,
            &key,
            &format!("typed:email-change:{me}"),
            &input.code,
        )
        .await
        .map_err(|e| e.into_error(&rc.request_id))?;
        // The code is the customer's own: used again, it repeats the same change (no events).
        let holders = customers_with_email(state, &email)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        if holders.iter().any(|(other, _)| *other != me) {
            return Err(errors::rule(
                "EMAIL_TAKEN",
                "another customer uses this email",
                "email",
            ));
        }
        let customers = state.crm.customers();
        let current = customers
            .load(me)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?
            .aggregate;
        let scoped = |part: &str| {
            input
                .idempotency_key
                .as_ref()
                .map(|k| format!("{k}#{part}"))
        };
        let mut last = None;
        if current.email() != Some(&email) {
            last = Some(
                customers
                    .execute(
                        me,
                        actor,
                        CustomerCommand::UpdateContactDetails {
                            name: current.name().map(|n| n.to_string()).unwrap_or_default(),
                            email: Some(email.to_string()),
                            phone: current.phone().map(|p| p.to_string()),
                        },
                        &context::with_key(meta.clone(), scoped("contact").as_ref()),
                    )
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?,
            );
        }
        let proven = customers
            .execute(
                me,
                actor,
                CustomerCommand::ConfirmProvenEmail {
                    email: email.to_string(),
                },
                &context::with_key(meta, scoped("email").as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        last = Some(proven).filter(|o| !o.events.is_empty()).or(last);
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

fn parse_email(raw: &str) -> async_graphql::Result<Email> {
    check_len("email", raw)?;
    Email::parse(raw).map_err(|e| errors::invalid("email", e.to_string()))
}

/// The limiter's name for codes of `purpose` to `email` (hashed, as logs may show it).
fn limit_key(purpose: Purpose, email: &Email) -> String {
    format!("{purpose:?}:{}", codes::address_hash(email.as_str()))
}

/// The cause (hence the id) of a code's message: random, as anything derived from the
/// address (even a hash of it) would let a reader of the log test guesses.
fn cause(kind: &str) -> String {
    format!("{kind}:{}", uuid::Uuid::new_v4())
}

fn already_registered() -> async_graphql::Error {
    errors::rule(
        "ALREADY_REGISTERED",
        "this email is already registered; sign in instead",
        "email",
    )
}

/// Why a typed code was not accepted.
enum CodeRefused {
    Limited,
    Wrong,
    Store(String),
}

impl CodeRefused {
    fn into_error(self, request_id: &str) -> async_graphql::Error {
        match self {
            CodeRefused::Limited => auth::rate_limited(crate::signin_limits::Limited),
            CodeRefused::Wrong => errors::invalid(
                "code",
                "the code is wrong or has expired; ask for a new one",
            ),
            CodeRefused::Store(e) => errors::internal(request_id, &e),
        }
    }
}

/// Codes of one limit are checked one at a time (striped by the limit's hash, so memory stays
/// fixed): a check holds one of the limit's wrong codes while it runs, and concurrent
/// retries of one sign-up would otherwise use up the allowance together and be refused.
static CODE_CHECKS: [tokio::sync::Mutex<()>; 64] =
    [const { tokio::sync::Mutex::const_new(()) }; 64];

/// The code of `key` when `typed` is it; a wrong one counts against `limit`.
async fn check_code(
    state: &AppState,
    key: &CodeKey,
    limit: &str,
    typed: &str,
) -> Result<codes::Issued, CodeRefused> {
    let stripe = usize::from(Sha256::digest(limit.as_bytes())[0]) % CODE_CHECKS.len();
    let _one_at_a_time = CODE_CHECKS[stripe].lock().await;
    let attempt = state
        .sign_in_limits
        .code_attempt(limit)
        .map_err(|_| CodeRefused::Limited)?;
    let issued = codes::find(state.projections.db(), key, Utc::now())
        .await
        .map_err(|e| CodeRefused::Store(e.to_string()))?;
    match issued {
        Some(i) if i.code_hash == token_hash(typed.trim()) => {
            attempt.succeeded();
            Ok(i)
        }
        _ => Err(CodeRefused::Wrong),
    }
}

/// The customers (not erased or merged away) whose email is `email`, oldest id first, and
/// whether each has a portal account. Staff may have entered the address twice.
async fn customers_with_email(
    state: &AppState,
    email: &Email,
) -> Result<Vec<(CustomerId, bool)>, projections::DbError> {
    Ok(
        projections::crm::customers::with_email(state.projections.db(), email.as_str())
            .await?
            .into_iter()
            .filter_map(|(id, account)| Some((CustomerId::parse(&id).ok()?, account)))
            .collect(),
    )
}

/// Eight digits: a code that hands over an account (or a record staff keep) must stay out
/// of reach of the few guesses the limits allow while it lives.
fn eight_digits() -> String {
    format!("{:08}", rand::rngs::OsRng.next_u32() % 100_000_000)
}

/// Mails the address a sign-up code, or, when it signs in to an account, a note saying so.
async fn mail_sign_up(
    state: &AppState,
    email: &Email,
    request: Option<String>,
    expires_at: DateTime<Utc>,
    meta: &commands::EventMetadata,
) -> Result<(), String> {
    let holders = customers_with_email(state, email)
        .await
        .map_err(|e| e.to_string())?;
    match holders.iter().find(|(_, account)| *account) {
        Some((customer_id, _)) => {
            let body = format!(
                "Someone asked to create a Dirt Free account with this email address. You \
                 already have one: sign in at {}. If it was not you, ignore this message.",
                commands::policies::outbox::PUBLIC_URL
            );
            let cause = cause("PortalSignUp");
            let note = MessageCommand::Queue {
                kind: MessageKind::ContactConfirmation,
                channel: Channel::Email,
                recipient: Recipient::Customer {
                    customer_id: *customer_id,
                },
                cause: cause.clone(),
                subject: Some("You already have a Dirt Free account".into()),
                body,
            };
            state
                .crm
                .messages()
                .execute(
                    OutboundMessageId::for_cause(&cause),
                    domain::Actor::System,
                    note,
                    meta,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        None => {
            let key = CodeKey::new(Purpose::SignUp, email.as_str(), None);
            mail_code(state, &key, email, request, expires_at, "sign-up", meta).await
        }
    }
}

/// Mails the new address a code, unless another customer has it.
async fn mail_email_change(
    state: &AppState,
    me: CustomerId,
    email: &Email,
    request: Option<String>,
    expires_at: DateTime<Utc>,
    meta: &commands::EventMetadata,
) -> Result<(), String> {
    let holders = customers_with_email(state, email)
        .await
        .map_err(|e| e.to_string())?;
    if holders.iter().any(|(other, _)| *other != me) {
        return Ok(());
    }
    let key = CodeKey::new(Purpose::EmailChange, email.as_str(), Some(&me.to_string()));
    mail_code(
        state,
        &key,
        email,
        request,
        expires_at,
        "email change",
        meta,
    )
    .await
}

async fn mail_code(
    state: &AppState,
    key: &CodeKey,
    email: &Email,
    request: Option<String>,
    expires_at: DateTime<Utc>,
    what: &str,
    meta: &commands::EventMetadata,
) -> Result<(), String> {
    let code = eight_digits();
    let fresh = codes::issue(
        state.projections.db(),
        key,
        request.as_deref(),
        &token_hash(&code),
        expires_at,
    )
    .await
    .map_err(|e| e.to_string())?;
    if !fresh {
        // A retry of a request whose code is on its way.
        return Ok(());
    }
    let body = format!(
        "Your Dirt Free {what} code is {}. It works for {CODE_MINUTES} minutes. If you did \
         not ask for it, ignore this message.",
        reset_tokens::PLACEHOLDER
    );
    let message = reset_tokens::SecretMessage {
        cause: cause(match key.purpose() {
            Purpose::SignUp => "PortalSignUp",
            Purpose::EmailChange => "EmailChange",
        }),
        kind: MessageKind::ContactConfirmation,
        channel: Channel::Email,
        recipient: Recipient::Withheld,
        subject: Some(format!("Your Dirt Free {what} code")),
        body,
        withheld_address: Some(email.to_string()),
    };
    reset_tokens::queue_with_secret(
        &state.crm,
        state.projections.db(),
        &code,
        expires_at,
        message,
        meta,
    )
    .await
}

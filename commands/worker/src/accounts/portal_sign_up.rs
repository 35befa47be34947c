//! Portal sign-up and email changes that tell nobody who is a customer (issue #14).
//!
//! Asking for a sign-up or an email change always gets the same answer, and the work
//! happens after it: the address is sent an eight-digit code, or, when it already signs in
//! to an account, a note saying so. Only the mailbox's owner can go on ([`PortalSignUp::register`],
//! [`PortalSignUp::confirm_email_change`]), so the code also proves the address: the
//! account's email counts as confirmed. A sign-up for an address staff entered claims that
//! customer instead of making a second one. The codes are kept as described in
//! [`crate::address_codes`].

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use commands::{AppError, CommandOutcome, Crm, EventMetadata};
use domain::consent::Channel;
use domain::customer::CustomerCommand;
use domain::ids::{CustomerId, OutboundMessageId, PortalAccountId};
use domain::message::{MessageCommand, MessageKind, Recipient};
use domain::portal::PortalAccountCommand as PortalCommand;
use domain::values::Email;
use projections::ProjectionRunner;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{passwords, token_hash};
use crate::address_codes::{self as codes, CodeKey, Purpose};
use crate::outbox::reset_tokens;
use crate::sign_in_limits::{AccountKind, SignInLimits};

/// How long a code works.
pub const CODE_MINUTES: i64 = 15;

/// Why a sign-up step was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    /// A field is not acceptable (the code included: wrong or expired).
    #[error("{field}: {message}")]
    Invalid {
        /// The input field (GraphQL name).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The address signs in to an account already.
    #[error("this email is already registered; sign in instead")]
    AlreadyRegistered,
    /// Another customer uses the address.
    #[error("another customer uses this email")]
    EmailTaken,
    /// The idempotency key was used for a different sign-up.
    #[error("this idempotency key was used for a different sign-up")]
    KeyReused,
    /// A sign-up, code or sign-in limit was reached.
    #[error("too many attempts")]
    Limited,
    /// The application refused or failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// A side table or read model could not be read or written.
    #[error("{0}")]
    Store(String),
}

/// What a sign-up left: whose account it is, and the last write (to wait for).
#[derive(Debug)]
pub struct Registered {
    /// The customer who signs in with the account.
    pub customer_id: CustomerId,
    /// The last command that wrote events, if any did (a retry may write none).
    pub last: Option<CommandOutcome>,
}

/// A sign-up with the code from [`PortalSignUp::start_sign_up`].
#[derive(Debug)]
pub struct Registration {
    /// Full name.
    pub name: String,
    /// The address the code went to (the login).
    pub email: Email,
    /// The eight digits typed.
    pub code: String,
    /// Phone, E.164 or a US number.
    pub phone: Option<String>,
    /// The password chosen (already checked for length).
    pub password: String,
    /// A friend's referral code.
    pub referral_code: Option<String>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The customer a new sign-up creates: derived from the key, so retries address it.
    pub fresh: CustomerId,
    /// The client's address (for the limits).
    pub client_ip: String,
}

/// The portal's sign-up and email-change steps.
#[derive(Debug, Clone)]
pub struct PortalSignUp {
    crm: Crm,
    projections: ProjectionRunner,
    limits: Arc<SignInLimits>,
}

/// Codes of one limit are checked one at a time (striped by the limit's hash, so memory stays
/// fixed): a check holds one of the limit's wrong codes while it runs, and concurrent
/// retries of one sign-up would otherwise use up the allowance together and be refused.
static CODE_CHECKS: [tokio::sync::Mutex<()>; 64] =
    [const { tokio::sync::Mutex::const_new(()) }; 64];

impl PortalSignUp {
    /// The steps over the application, its read models and the server's limits.
    pub fn new(crm: Crm, projections: ProjectionRunner, limits: Arc<SignInLimits>) -> Self {
        PortalSignUp {
            crm,
            projections,
            limits,
        }
    }

    /// Mails `email` a sign-up code (valid [`CODE_MINUTES`]; a new one voids the last), or,
    /// when it already signs in to an account, a note saying so: after answering, so that
    /// neither the answer nor its time tells which. Returns when a code sent now expires.
    ///
    /// # Errors
    /// [`SignUpError::Limited`] per network, and five codes an hour per address.
    pub fn start_sign_up(
        &self,
        client_ip: &str,
        email: Email,
        idempotency_key: Option<&str>,
        meta: EventMetadata,
    ) -> Result<DateTime<Utc>, SignUpError> {
        self.limits
            .address_code(client_ip, &limit_key(Purpose::SignUp, &email))
            .map_err(|_| SignUpError::Limited)?;
        let expires_at = Utc::now() + Duration::minutes(CODE_MINUTES);
        let request = idempotency_key.map(|k| format!("{email}:{k}"));
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.mail_sign_up(&email, request, expires_at, &meta).await {
                tracing::warn!(error = %e, "sign-up: the code was not queued");
            }
        });
        Ok(expires_at)
    }

    /// Mails `email` a code to move customer `me`'s sign-in there, unless another account
    /// signs in with it; answers the same either way. Returns when a code sent now expires.
    ///
    /// # Errors
    /// [`SignUpError::Limited`]: five codes an hour per customer.
    pub fn start_email_change(
        &self,
        me: CustomerId,
        client_ip: &str,
        email: Email,
        idempotency_key: Option<&str>,
        meta: EventMetadata,
    ) -> Result<DateTime<Utc>, SignUpError> {
        self.limits
            .address_code(client_ip, &format!("email-change:{me}"))
            .map_err(|_| SignUpError::Limited)?;
        let expires_at = Utc::now() + Duration::minutes(CODE_MINUTES);
        let request = idempotency_key.map(|k| format!("{email}:{k}"));
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this
                .mail_email_change(me, &email, request, expires_at, &meta)
                .await
            {
                tracing::warn!(error = %e, "email change: the code was not queued");
            }
        });
        Ok(expires_at)
    }

    /// Signs up: creates the customer (or, for an address staff entered, gives that
    /// customer the account), the portal account and (with a referral code) the referral.
    /// The email counts as confirmed. A keyed retry (also concurrent) with the same email
    /// and password gets the first outcome; `meta`'s actor becomes the customer.
    ///
    /// # Errors
    /// [`SignUpError`]: limits, a wrong code, a taken address, a reused key, the application.
    pub async fn register(
        &self,
        r: Registration,
        meta: EventMetadata,
    ) -> Result<Registered, SignUpError> {
        let once = r
            .idempotency_key
            .as_ref()
            .map(|k| format!("{}:{k}", codes::address_hash(r.email.as_str())));
        self.limits
            .sign_up(&r.client_ip, once.as_deref())
            .map_err(|_| SignUpError::Limited)?;
        // What can be refused is refused before the code is used up.
        if let Some(p) = r.phone.as_deref().filter(|p| !p.trim().is_empty()) {
            domain::values::PhoneNumber::parse(p).map_err(|e| SignUpError::Invalid {
                field: "phone",
                message: e.message,
            })?;
        }
        let referrer = match &r.referral_code {
            Some(code) => Some(self.crm.referral_code_owner(code).await?.ok_or(
                SignUpError::Invalid {
                    field: "referralCode",
                    message: "unknown referral code".into(),
                },
            )?),
            None => None,
        };
        let key = CodeKey::new(Purpose::SignUp, r.email.as_str(), None);
        let limit = format!("typed:{}", limit_key(Purpose::SignUp, &r.email));
        let issued = self.check_code(&key, &limit, &r.code).await?;
        let customer_id = self
            .account_holder(&r, issued.claimed_by.as_deref())
            .await?;
        let own = customer_id.to_string();
        if !codes::claim(self.projections.db(), &key, &own)
            .await
            .map_err(store)?
        {
            return Err(SignUpError::AlreadyRegistered);
        }
        let mut meta = meta;
        meta.actor = commands::Actor::Customer(own);
        let steps = Steps {
            crm: &self.crm,
            customer_id,
            meta,
            key: r.idempotency_key.as_deref(),
        };
        let mut last = steps.create_customer(&r).await?;
        last = steps.confirm_email(&r.email).await?.or(last);
        // A retry of a sign-up that already made the account hashes nothing new.
        let earlier = steps.password_hash().await?;
        let mut replayed = earlier.is_some();
        if earlier.is_none() {
            let out = steps.open_account(&r.password).await?;
            replayed = out.replayed;
            last = Some(out);
        }
        // A customer staff entered keeps the details staff hold and was not referred by this
        // sign-up.
        if earlier.is_none() && customer_id == r.fresh && referrer.is_some() {
            if let Some(code) = &r.referral_code {
                steps.record_referral(code).await?;
            }
        }
        if replayed {
            self.same_password_as_before(&r, &steps, earlier).await?;
        }
        Ok(Registered { customer_id, last })
    }

    /// Who the account is for: the customer the code made or claimed (a retry goes on with
    /// it: keyed, or when the first try stopped before the account was made), the customer
    /// staff entered with this address, or a new one.
    async fn account_holder(
        &self,
        r: &Registration,
        claimed_by: Option<&str>,
    ) -> Result<CustomerId, SignUpError> {
        let existing = self.customers_with_email(&r.email).await?;
        match claimed_by {
            Some(c) => {
                let c = CustomerId::parse(c).map_err(store)?;
                let unfinished = self
                    .crm
                    .portal_accounts()
                    .load(PortalAccountId::for_customer(c))
                    .await?
                    .aggregate
                    .password_hash()
                    .is_none();
                if r.idempotency_key.is_none() && !unfinished {
                    return Err(SignUpError::AlreadyRegistered);
                }
                Ok(c)
            }
            None if existing.iter().any(|(_, account)| *account) => {
                Err(SignUpError::AlreadyRegistered)
            }
            None => Ok(existing.first().map_or(r.fresh, |(c, _)| *c)),
        }
    }

    /// Another copy of this sign-up chose the password: going on is like a sign-in —
    /// limited, a wrong password counted against the account.
    async fn same_password_as_before(
        &self,
        r: &Registration,
        steps: &Steps<'_>,
        earlier: Option<String>,
    ) -> Result<(), SignUpError> {
        let attempt = self
            .limits
            .sign_in(AccountKind::Portal, r.email.as_str(), &r.client_ip)
            .map_err(|_| SignUpError::Limited)?;
        let hash = match earlier {
            Some(h) => Some(h),
            None => steps.password_hash().await?,
        };
        if !passwords::verify_off_the_runtime(r.password.clone(), hash).await {
            return Err(if r.idempotency_key.is_some() {
                SignUpError::KeyReused
            } else {
                SignUpError::AlreadyRegistered
            });
        }
        attempt.succeeded();
        Ok(())
    }

    /// Moves customer `me`'s sign-in (and contact email) to `email`, which the code from
    /// [`PortalSignUp::start_email_change`] went to; it counts as confirmed. The code is the
    /// customer's own: used again, it repeats the same change (no events). Returns the last
    /// write, if any.
    ///
    /// # Errors
    /// A wrong or expired code (five in 15 minutes, then [`SignUpError::Limited`]); an
    /// address another account took meanwhile ([`SignUpError::EmailTaken`]).
    pub async fn confirm_email_change(
        &self,
        me: CustomerId,
        email: &Email,
        code: &str,
        idempotency_key: Option<&str>,
        meta: EventMetadata,
    ) -> Result<Option<CommandOutcome>, SignUpError> {
        let key = CodeKey::new(Purpose::EmailChange, email.as_str(), Some(&me.to_string()));
        self.check_code(&key, &format!("typed:email-change:{me}"), code)
            .await?;
        let holders = self.customers_with_email(email).await?;
        if holders.iter().any(|(other, _)| *other != me) {
            return Err(SignUpError::EmailTaken);
        }
        let actor = domain::Actor::Customer { id: me };
        let scoped = |part: &str| idempotency_key.map(|k| format!("{k}#{part}"));
        let customers = self.crm.customers();
        let current = customers.load(me).await?.aggregate;
        let mut last = None;
        if current.email() != Some(email) {
            let cmd = CustomerCommand::UpdateContactDetails {
                name: current.name().map(|n| n.to_string()).unwrap_or_default(),
                email: Some(email.to_string()),
                phone: current.phone().map(|p| p.to_string()),
            };
            let keyed = meta.clone().with_sender_key(scoped("contact").as_deref());
            last = Some(customers.execute(me, actor, cmd, &keyed).await?);
        }
        let cmd = CustomerCommand::ConfirmProvenEmail {
            email: email.to_string(),
        };
        let keyed = meta.with_sender_key(scoped("email").as_deref());
        let proven = customers.execute(me, actor, cmd, &keyed).await?;
        Ok(Some(proven).filter(|o| !o.events.is_empty()).or(last))
    }

    /// The code of `key` when `typed` is it; a wrong one counts against `limit`.
    async fn check_code(
        &self,
        key: &CodeKey,
        limit: &str,
        typed: &str,
    ) -> Result<codes::Issued, SignUpError> {
        let stripe = usize::from(Sha256::digest(limit.as_bytes())[0]) % CODE_CHECKS.len();
        let _one_at_a_time = CODE_CHECKS[stripe].lock().await;
        let attempt = self
            .limits
            .code_attempt(limit)
            .map_err(|_| SignUpError::Limited)?;
        let issued = codes::find(self.projections.db(), key, Utc::now())
            .await
            .map_err(store)?;
        match issued {
            Some(i) if i.code_hash == token_hash(typed.trim()) => {
                attempt.succeeded();
                Ok(i)
            }
            _ => Err(SignUpError::Invalid {
                field: "code",
                message: "the code is wrong or has expired; ask for a new one".into(),
            }),
        }
    }

    /// The customers (not erased or merged away) whose email is `email`, oldest id first,
    /// and whether each has a portal account. Staff may have entered the address twice.
    async fn customers_with_email(
        &self,
        email: &Email,
    ) -> Result<Vec<(CustomerId, bool)>, SignUpError> {
        Ok(
            projections::crm::customers::with_email(self.projections.db(), email.as_str())
                .await
                .map_err(store)?
                .into_iter()
                .filter_map(|(id, account)| Some((CustomerId::parse(&id).ok()?, account)))
                .collect(),
        )
    }

    /// Mails the address a sign-up code, or, when it signs in to an account, a note saying so.
    async fn mail_sign_up(
        &self,
        email: &Email,
        request: Option<String>,
        expires_at: DateTime<Utc>,
        meta: &EventMetadata,
    ) -> Result<(), String> {
        let holders = self
            .customers_with_email(email)
            .await
            .map_err(|e| e.to_string())?;
        let Some((customer_id, _)) = holders.iter().find(|(_, account)| *account) else {
            let key = CodeKey::new(Purpose::SignUp, email.as_str(), None);
            return self
                .mail_code(&key, email, request, expires_at, "sign-up", meta)
                .await;
        };
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
        self.crm
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

    /// Mails the new address a code, unless another customer has it.
    async fn mail_email_change(
        &self,
        me: CustomerId,
        email: &Email,
        request: Option<String>,
        expires_at: DateTime<Utc>,
        meta: &EventMetadata,
    ) -> Result<(), String> {
        let holders = self
            .customers_with_email(email)
            .await
            .map_err(|e| e.to_string())?;
        if holders.iter().any(|(other, _)| *other != me) {
            return Ok(());
        }
        let key = CodeKey::new(Purpose::EmailChange, email.as_str(), Some(&me.to_string()));
        self.mail_code(&key, email, request, expires_at, "email change", meta)
            .await
    }

    async fn mail_code(
        &self,
        key: &CodeKey,
        email: &Email,
        request: Option<String>,
        expires_at: DateTime<Utc>,
        what: &str,
        meta: &EventMetadata,
    ) -> Result<(), String> {
        let code = eight_digits();
        let db = self.projections.db();
        let fresh = codes::issue(db, key, request.as_deref(), &token_hash(&code), expires_at)
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
        reset_tokens::queue_with_secret(&self.crm, db, &code, expires_at, message, meta).await
    }
}

/// The writes of one sign-up, each with its own key (one key names one aggregate's outcome).
struct Steps<'a> {
    crm: &'a Crm,
    customer_id: CustomerId,
    meta: EventMetadata,
    key: Option<&'a str>,
}

impl Steps<'_> {
    fn actor(&self) -> domain::Actor {
        domain::Actor::Customer {
            id: self.customer_id,
        }
    }

    /// The metadata of one part, keyed `key#part` (the customer's creation: `key` itself).
    fn meta(&self, part: Option<&str>) -> EventMetadata {
        let key = match part {
            None => self.key.map(str::to_string),
            Some(part) => self.key.map(|k| format!("{k}#{part}")),
        };
        self.meta.clone().with_sender_key(key.as_deref())
    }

    /// Creates the customer unless they exist (staff entered them, or a retry made them).
    async fn create_customer(
        &self,
        r: &Registration,
    ) -> Result<Option<CommandOutcome>, SignUpError> {
        let customers = self.crm.customers();
        let known = customers
            .load(self.customer_id)
            .await?
            .aggregate
            .id()
            .is_some();
        if known {
            return Ok(None);
        }
        let cmd = CustomerCommand::Create {
            customer_id: self.customer_id,
            name: r.name.clone(),
            email: Some(r.email.to_string()),
            phone: r.phone.clone(),
            birthday: None,
            customer_since: None,
        };
        let out = customers
            .execute(self.customer_id, self.actor(), cmd, &self.meta(None))
            .await?;
        Ok(Some(out))
    }

    /// The code went to this address: it is theirs. The outcome when it wrote events.
    async fn confirm_email(&self, email: &Email) -> Result<Option<CommandOutcome>, SignUpError> {
        let cmd = CustomerCommand::ConfirmProvenEmail {
            email: email.to_string(),
        };
        let out = self
            .crm
            .customers()
            .execute(
                self.customer_id,
                self.actor(),
                cmd,
                &self.meta(Some("email")),
            )
            .await?;
        Ok(Some(out).filter(|o| !o.events.is_empty()))
    }

    /// The account's password hash, once it has one.
    async fn password_hash(&self) -> Result<Option<String>, SignUpError> {
        let account = PortalAccountId::for_customer(self.customer_id);
        Ok(self
            .crm
            .portal_accounts()
            .load(account)
            .await?
            .aggregate
            .password_hash()
            .map(|h| h.expose().to_string()))
    }

    /// Makes the portal account with the password's hash.
    async fn open_account(&self, password: &str) -> Result<CommandOutcome, SignUpError> {
        let hash = passwords::hash_off_the_runtime(password.to_string())
            .await
            .map_err(SignUpError::Store)?;
        let cmd = PortalCommand::Register {
            customer_id: self.customer_id,
            password_hash: hash,
        };
        let account = PortalAccountId::for_customer(self.customer_id);
        Ok(self
            .crm
            .portal_accounts()
            .execute(
                account,
                self.actor(),
                cmd,
                &self.meta(Some("portal-account")),
            )
            .await?)
    }

    /// Records that the friend whose code this is referred the new customer.
    async fn record_referral(&self, code: &str) -> Result<(), SignUpError> {
        self.crm
            .record_referral(
                self.customer_id,
                code,
                self.actor(),
                &self.meta(Some("referral")),
            )
            .await?;
        Ok(())
    }
}

fn store(e: impl std::fmt::Display) -> SignUpError {
    SignUpError::Store(e.to_string())
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

/// Eight digits: a code that hands over an account (or a record staff keep) must stay out
/// of reach of the few guesses the limits allow while it lives.
fn eight_digits() -> String {
    format!("{:08}", rand::rngs::OsRng.next_u32() % 100_000_000)
}

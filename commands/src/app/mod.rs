//! The application service: one [`AggregateStore`] per aggregate, typed
//! dispatch per use case, the checks that need more than one aggregate, and
//! one error type ([`AppError`]) the API maps to responses.
//!
//! ```ignore
//! let crm = Crm::new(log, DomainServices::new(tz, LoyaltyRules::default()));
//! let outcome = crm.jobs().execute(job_id, actor, JobCommand::Book { .. }, &meta).await?;
//! ```

use std::fmt::{self, Display};
use std::sync::Arc;

use cqrs_es::Aggregate;
use domain::conversation::{Conversation, ConversationCommand, ConversationError};
use domain::customer::{Customer, CustomerCommand, CustomerError};
use domain::ids::{
    ConversationId, CustomerId, JobId, LoyaltyAccountId, OpportunityId, OutboundMessageId,
    PaymentId, PortalAccountId, PromotionId, ReferralId, ReviewId, ReviewRequestId,
    ScheduledReportId, StaffUserId, VehicleId,
};
use domain::job::{Job, JobCommand, JobError};
use domain::loyalty::{LoyaltyAccount, LoyaltyCommand, LoyaltyError};
use domain::message::{MessageCommand, MessageError, OutboundMessage};
use domain::opportunity::{Opportunity, OpportunityCommand, OpportunityError};
use domain::payment::{Payment, PaymentCommand, PaymentError};
use domain::portal::{PortalAccount, PortalAccountCommand, PortalAccountError};
use domain::promotion::{Promotion, PromotionCommand, PromotionError};
use domain::referral::{Referral, ReferralCommand, ReferralError};
use domain::review::{
    Review, ReviewCommand, ReviewError, ReviewRequest, ReviewRequestCommand, ReviewRequestError,
};
use domain::scheduled_report::{ScheduledReport, ScheduledReportCommand, ScheduledReportError};
use domain::staff::{StaffUser, StaffUserCommand, StaffUserError};
use domain::values::ReferralCode;
use domain::vehicle::{Vehicle, VehicleCommand, VehicleError};
use domain::{Actor as DomainActor, CommandEnvelope, DomainServices};

use crate::aggregate_store::{AggregateStore, CommandError, CommandOutcome, Loaded};
use crate::metadata::EventMetadata;
use crate::store::{EventLog, StoreError};
use event_log::row;
use event_log::sql::ReadDb;

mod aggregates;
mod error;

pub use aggregates::*;
pub use error::*;

/// Snapshot interval of the long-lived aggregates (customers, loyalty
/// accounts, vans, campaigns): their streams grow for years.
pub const SNAPSHOT_EVERY: u64 = 50;

/// How many times a retry-safe command is re-decided after a concurrency conflict.
pub const CONFLICT_ATTEMPTS: u32 = 5;

struct Stores {
    log: EventLog,
    services: DomainServices,
    customers: AggregateStore<Customer>,
    jobs: AggregateStore<Job>,
    vehicles: AggregateStore<Vehicle>,
    staff_users: AggregateStore<StaffUser>,
    portal_accounts: AggregateStore<PortalAccount>,
    opportunities: AggregateStore<Opportunity>,
    promotions: AggregateStore<Promotion>,
    review_requests: AggregateStore<ReviewRequest>,
    reviews: AggregateStore<Review>,
    loyalty_accounts: AggregateStore<LoyaltyAccount>,
    referrals: AggregateStore<Referral>,
    conversations: AggregateStore<Conversation>,
    payments: AggregateStore<Payment>,
    scheduled_reports: AggregateStore<ScheduledReport>,
    messages: AggregateStore<OutboundMessage>,
}

/// The CRM's command side. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Crm {
    inner: Arc<Stores>,
}

impl fmt::Debug for Crm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crm")
            .field("engine", &self.inner.log.engine())
            .finish_non_exhaustive()
    }
}

impl Crm {
    /// One store per aggregate on `log`; snapshots for the long-lived ones.
    pub fn new(log: EventLog, services: DomainServices) -> Self {
        let s = |snap: bool| {
            (
                log.clone(),
                services.clone(),
                if snap { SNAPSHOT_EVERY } else { 0 },
            )
        };
        macro_rules! store {
            ($snap:expr) => {{
                let (l, sv, n) = s($snap);
                AggregateStore::new(l, sv).with_snapshots(n)
            }};
        }
        let inner = Stores {
            // No snapshots: a Customer's state holds personal data in clear,
            // which crypto-shredding must be able to make unreadable.
            customers: store!(false),
            jobs: store!(false),
            vehicles: store!(true),
            staff_users: store!(false),
            portal_accounts: store!(true),
            opportunities: store!(false),
            promotions: store!(true),
            review_requests: store!(false),
            reviews: store!(false),
            loyalty_accounts: store!(true),
            referrals: store!(false),
            conversations: store!(false),
            payments: store!(false),
            scheduled_reports: store!(false),
            messages: store!(false),
            log,
            services,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The same log with other services (e.g. a fixed clock for seeding).
    pub fn with_services(&self, services: DomainServices) -> Self {
        Self::new(self.inner.log.clone(), services)
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    /// Clock, ids, time zone and loyalty rules.
    pub fn services(&self) -> &DomainServices {
        &self.inner.services
    }

    /// Customers.
    pub fn customers(&self) -> Commands<'_, Customer> {
        Commands {
            crm: self,
            store: &self.inner.customers,
        }
    }
    /// Jobs.
    pub fn jobs(&self) -> Commands<'_, Job> {
        Commands {
            crm: self,
            store: &self.inner.jobs,
        }
    }
    /// Vans.
    pub fn vehicles(&self) -> Commands<'_, Vehicle> {
        Commands {
            crm: self,
            store: &self.inner.vehicles,
        }
    }
    /// Staff users.
    pub fn staff_users(&self) -> Commands<'_, StaffUser> {
        Commands {
            crm: self,
            store: &self.inner.staff_users,
        }
    }
    /// Portal accounts (id: [`PortalAccountId::for_customer`]).
    pub fn portal_accounts(&self) -> Commands<'_, PortalAccount> {
        Commands {
            crm: self,
            store: &self.inner.portal_accounts,
        }
    }
    /// Opportunities.
    pub fn opportunities(&self) -> Commands<'_, Opportunity> {
        Commands {
            crm: self,
            store: &self.inner.opportunities,
        }
    }
    /// Promotions.
    pub fn promotions(&self) -> Commands<'_, Promotion> {
        Commands {
            crm: self,
            store: &self.inner.promotions,
        }
    }
    /// Review requests (id: [`ReviewRequestId::for_job`]).
    pub fn review_requests(&self) -> Commands<'_, ReviewRequest> {
        Commands {
            crm: self,
            store: &self.inner.review_requests,
        }
    }
    /// Reviews.
    pub fn reviews(&self) -> Commands<'_, Review> {
        Commands {
            crm: self,
            store: &self.inner.reviews,
        }
    }
    /// Loyalty accounts (id: [`LoyaltyAccountId::for_customer`]).
    pub fn loyalty_accounts(&self) -> Commands<'_, LoyaltyAccount> {
        Commands {
            crm: self,
            store: &self.inner.loyalty_accounts,
        }
    }
    /// Referrals (id: [`ReferralId::for_referee`]).
    pub fn referrals(&self) -> Commands<'_, Referral> {
        Commands {
            crm: self,
            store: &self.inner.referrals,
        }
    }
    /// Conversations.
    pub fn conversations(&self) -> Commands<'_, Conversation> {
        Commands {
            crm: self,
            store: &self.inner.conversations,
        }
    }
    /// Payments.
    pub fn payments(&self) -> Commands<'_, Payment> {
        Commands {
            crm: self,
            store: &self.inner.payments,
        }
    }
    /// Scheduled reports.
    pub fn scheduled_reports(&self) -> Commands<'_, ScheduledReport> {
        Commands {
            crm: self,
            store: &self.inner.scheduled_reports,
        }
    }
    /// Outbound messages (id: [`OutboundMessageId::for_cause`]).
    pub fn messages(&self) -> Commands<'_, OutboundMessage> {
        Commands {
            crm: self,
            store: &self.inner.messages,
        }
    }

    /// Checks that a referenced aggregate exists (and, for customers and
    /// staff, that it can still be acted on).
    ///
    /// # Errors
    /// [`AppError::NotFound`] naming the field; [`AppError::Rule`] for a
    /// merged or erased customer or a deactivated staff user.
    pub async fn check_reference(&self, reference: Reference) -> Result<(), AppError> {
        let missing = |entity: &'static str, id: String, field: &str| AppError::NotFound {
            entity,
            id,
            field: Some(camel_case(field)),
        };
        match reference {
            Reference::Customer(id, field) => {
                let c = self.inner.customers.load(&id.to_string()).await?.aggregate;
                if c.id().is_none() {
                    return Err(missing("customer", id.to_string(), field));
                }
                if let Some(target) = c.merged_into() {
                    return Err(AppError::Rule {
                        code: "CUSTOMER_MERGED",
                        message: format!("customer {id} was merged into {target}"),
                    });
                }
                if c.is_erased() {
                    return Err(AppError::Rule {
                        code: "CUSTOMER_ERASED",
                        message: format!("customer {id}'s personal data was erased"),
                    });
                }
            }
            Reference::StaffUser(id, field) => {
                let s = self
                    .inner
                    .staff_users
                    .load(&id.to_string())
                    .await?
                    .aggregate;
                if s.role().is_none() {
                    return Err(missing("staff user", id.to_string(), field));
                }
                if !s.is_active() {
                    return Err(AppError::Rule {
                        code: "STAFF_USER_DEACTIVATED",
                        message: format!("staff user {id} is deactivated"),
                    });
                }
            }
            Reference::Vehicle(id, field) => {
                if self.inner.vehicles.load(&id.to_string()).await?.sequence == 0 {
                    return Err(missing("vehicle", id.to_string(), field));
                }
            }
            Reference::Job(id, field) => {
                if self.inner.jobs.load(&id.to_string()).await?.sequence == 0 {
                    return Err(missing("job", id.to_string(), field));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ referral codes

    /// Gives the customer a unique referral code (no-op when they have one).
    /// The code is claimed in `referral_code_claims` first; a code another
    /// customer holds makes us try the next derivation.
    ///
    /// # Errors
    /// [`AppError::NotFound`] for an unknown customer; the customer's refusals;
    /// [`AppError::Rule`] `REFERRAL_CODE_EXHAUSTED` after 16 collisions (never in practice).
    pub async fn issue_referral_code(
        &self,
        customer_id: CustomerId,
        actor: DomainActor,
        meta: &EventMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let loaded = self.customers().load_existing(customer_id).await?;
        if loaded.aggregate.referral_code().is_some() {
            return Ok(CommandOutcome {
                aggregate_type: domain::customer::AGGREGATE_TYPE.into(),
                aggregate_id: customer_id.to_string(),
                events: vec![],
                replayed: false,
            });
        }
        for attempt in 0..16u32 {
            let code = ReferralCode::from_seed(customer_id.0, attempt);
            let owner = self.claim_referral_code(&code, customer_id).await?;
            if owner == customer_id {
                return self
                    .customers()
                    .execute(
                        customer_id,
                        actor,
                        CustomerCommand::IssueReferralCode { attempt },
                        meta,
                    )
                    .await;
            }
            tracing::info!(%customer_id, attempt, "referral code collision; trying the next one");
        }
        Err(AppError::Rule {
            code: "REFERRAL_CODE_EXHAUSTED",
            message: "no free referral code could be derived".into(),
        })
    }

    /// Claims `code` for `customer`; returns the code's owner (the customer
    /// when the claim succeeded or was theirs already).
    async fn claim_referral_code(
        &self,
        code: &ReferralCode,
        customer: CustomerId,
    ) -> Result<CustomerId, AppError> {
        let db = ReadDb::of(self.log());
        // One transaction: the claim and the read of who holds it see the same row.
        let mut tx = db.begin().await.map_err(read_db_error)?;
        tx.execute(
            "INSERT INTO referral_code_claims (code, customer_id) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING",
            &[code.as_str().into(), customer.to_string().into()],
        )
        .await
        .map_err(read_db_error)?;
        let rows = tx
            .query(
                "SELECT customer_id FROM referral_code_claims WHERE code = $1",
                &[code.as_str().into()],
            )
            .await
            .map_err(read_db_error)?;
        tx.commit().await.map_err(read_db_error)?;
        let owner = rows
            .first()
            .map(|r| row::text(r, "customer_id"))
            .transpose()
            .map_err(read_db_error)?
            .ok_or_else(|| {
                AppError::Store(StoreError::Database("the claim was not kept".into()))
            })?;
        CustomerId::parse(&owner).map_err(|e| AppError::Store(StoreError::Database(e.to_string())))
    }

    /// The customer a referral code belongs to, if any.
    ///
    /// # Errors
    /// [`AppError::Validation`] (`referralCode`) for a malformed code; [`AppError::Store`].
    pub async fn referral_code_owner(&self, code: &str) -> Result<Option<CustomerId>, AppError> {
        let code =
            ReferralCode::parse(code).map_err(|e| AppError::validation(e.field, e.message))?;
        let rows = ReadDb::of(self.log())
            .query(
                "SELECT customer_id FROM referral_code_claims WHERE code = $1",
                &[code.as_str().into()],
            )
            .await
            .map_err(read_db_error)?;
        let owner = rows
            .first()
            .map(|r| row::text(r, "customer_id"))
            .transpose()
            .map_err(read_db_error)?;
        let Some(owner) = owner else { return Ok(None) };
        let owner = CustomerId::parse(&owner)
            .map_err(|e| AppError::Store(StoreError::Database(e.to_string())))?;
        // A claim whose event never got appended (crash in between) is not a code yet.
        let customer = self
            .inner
            .customers
            .load(&owner.to_string())
            .await?
            .aggregate;
        Ok((customer.referral_code() == Some(&code)).then_some(owner))
    }

    /// Records that `referee` signed up with `code`.
    ///
    /// # Errors
    /// [`AppError::NotFound`] (`referralCode`) for a code nobody holds;
    /// [`AppError::Validation`] for a malformed code; the referral's refusals
    /// (`SELF_REFERRAL`, `ALREADY_REFERRED`).
    pub async fn record_referral(
        &self,
        referee: CustomerId,
        code: &str,
        actor: DomainActor,
        meta: &EventMetadata,
    ) -> Result<CommandOutcome, AppError> {
        let referrer = self
            .referral_code_owner(code)
            .await?
            .ok_or_else(|| AppError::NotFound {
                entity: "referral code",
                id: code.trim().to_string(),
                field: Some("referralCode".into()),
            })?;
        self.referrals()
            .execute(
                ReferralId::for_referee(referee),
                actor,
                ReferralCommand::Record {
                    referrer,
                    referee,
                    code: code.to_string(),
                },
                meta,
            )
            .await
    }
}

fn read_db_error(e: event_log::sql::DbError) -> AppError {
    AppError::Store(StoreError::Database(e.to_string()))
}

/// Typed dispatch to one aggregate type, with reference checks and error mapping.
pub struct Commands<'a, A: AppAggregate> {
    crm: &'a Crm,
    store: &'a AggregateStore<A>,
}

impl<A: AppAggregate> fmt::Debug for Commands<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commands")
            .field("aggregate", &A::TYPE)
            .finish()
    }
}

impl<A: AppAggregate> Commands<'_, A> {
    /// Runs `command` by `actor` on aggregate `id`: checks the aggregates it
    /// refers to, then loads, decides and appends; a retry-safe command is
    /// re-decided after a concurrency conflict.
    ///
    /// # Errors
    /// [`AppError`]; nothing is appended when an error is returned.
    pub async fn execute(
        &self,
        id: A::Id,
        actor: DomainActor,
        command: A::Cmd,
        meta: &EventMetadata,
    ) -> Result<CommandOutcome, AppError> {
        if let Some(required) = A::required_id(&command) {
            if required != id {
                return Err(AppError::Validation {
                    field: "id".into(),
                    message: format!("a {} for this command must have id {required}", A::ENTITY),
                });
            }
        }
        for r in A::references(&command) {
            self.crm.check_reference(r).await?;
        }
        let key = id.to_string();
        let retry = A::retry_safe(&command);
        let envelope = CommandEnvelope::new(actor, command);
        let result = if retry {
            self.store
                .execute_retrying(&key, envelope, meta, CONFLICT_ATTEMPTS)
                .await
        } else {
            self.store.execute(&key, envelope, meta).await
        };
        result.map_err(|e| map_command_error::<A>(e, &key))
    }

    /// The current state (the default state, sequence 0, when it does not exist).
    ///
    /// # Errors
    /// [`AppError::Store`].
    pub async fn load(&self, id: A::Id) -> Result<Loaded<A>, AppError> {
        Ok(self.store.load(&id.to_string()).await?)
    }

    /// The current state of an aggregate that must exist.
    ///
    /// # Errors
    /// [`AppError::NotFound`] when it has no events; [`AppError::Store`].
    pub async fn load_existing(&self, id: A::Id) -> Result<Loaded<A>, AppError> {
        let loaded = self.load(id).await?;
        if loaded.sequence == 0 {
            return Err(AppError::not_found(A::ENTITY, id));
        }
        Ok(loaded)
    }

    /// The underlying store (history, decoding).
    pub fn store(&self) -> &AggregateStore<A> {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_field_names_become_api_field_names() {
        assert_eq!(camel_case("amount_cents"), "amountCents");
        assert_eq!(camel_case("customer_id"), "customerId");
        assert_eq!(camel_case("phone"), "phone");
        assert_eq!(camel_case("address.postal_code"), "address.postalCode");
    }

    #[test]
    fn domain_refusals_map_to_stable_codes() {
        let e = Job::app_error(JobError::UnknownJob, "j-1");
        assert_eq!((e.code(), e.field()), ("NOT_FOUND", None));
        let e = Job::app_error(
            JobError::Validation {
                field: "amount_cents",
                message: "must not be negative".into(),
            },
            "j-1",
        );
        assert_eq!((e.code(), e.field()), ("VALIDATION", Some("amountCents")));
        let e = LoyaltyAccount::app_error(
            LoyaltyError::InsufficientPoints {
                balance: 1,
                requested: 2,
            },
            "l",
        );
        assert_eq!(
            (e.code(), e.rule()),
            ("RULE_VIOLATION", Some("INSUFFICIENT_POINTS"))
        );
        let e = StaffUser::app_error(StaffUserError::AdminRequired, "s");
        assert_eq!(e.code(), "FORBIDDEN");
        let e = map_command_error::<Job>(
            CommandError::Conflict {
                aggregate_type: "Job".into(),
                aggregate_id: "j".into(),
            },
            "j",
        );
        assert_eq!(e.code(), "CONFLICT");
    }
}

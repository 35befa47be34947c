//! Customers: list and search, the customer-360 view, and their commands.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::NaiveDate;
use domain::customer::CustomerCommand;
use domain::ids::CustomerId;
use domain::ports::Role;
use projections::JsonRow;

use super::auth::{check_len, settle};
use super::context::Allow;
use super::context::{self, parts, Principal};
use super::errors;
use super::jobs::{job_from_row, Job};
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

/// An amount of money.
#[derive(Debug, Clone, SimpleObject)]
pub struct Money {
    /// Integer cents.
    pub amount_cents: i64,
    /// ISO 4217 currency.
    pub currency: String,
}

impl Money {
    /// US cents.
    pub fn usd(cents: i64) -> Self {
        Money {
            amount_cents: cents,
            currency: "USD".into(),
        }
    }
}

/// A field only staff may read: what staff keep *about* a customer for their own use
/// (tags, notes, merge bookkeeping, the sales pipeline, the bot's triage). A portal customer
/// reaches the same types through their own queries and gets `FORBIDDEN` for such a field
/// (docs/api.md, "Portal views"); on a non-null field GraphQL then nulls the object holding
/// it, so a portal client never asks for one.
#[derive(Debug, Clone, Copy)]
pub struct StaffOnly;

impl async_graphql::Guard for StaffOnly {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        match &ctx.data::<super::RequestCtx>()?.principal {
            Some(Principal::Staff { .. }) => Ok(()),
            Some(Principal::Customer { .. }) => Err(errors::coded(
                "FORBIDDEN",
                "staff-only field: the customer portal may not read it",
                None,
            )),
            None => Err(errors::unauthenticated()),
        }
    }
}

/// A customer, with the 360 view's summary. Staff see every field; a portal customer (their
/// own record, through `myProfile`, `customer` or a payload) is refused the staff-only ones.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Customer {
    /// Id.
    pub id: ID,
    /// Full name (null once erased).
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone, E.164.
    pub phone: Option<String>,
    /// Birthday (YYYY-MM-DD).
    pub birthday: Option<String>,
    /// Customer since (YYYY-MM-DD).
    pub customer_since: Option<String>,
    /// Tags (staff only).
    #[graphql(guard = "StaffOnly")]
    pub tags: Vec<String>,
    /// SMS marketing consent.
    pub sms_consent: bool,
    /// Email marketing consent.
    pub email_consent: bool,
    /// Email suppressed after a bounce or complaint.
    pub email_suppressed: bool,
    /// Personal data erased.
    pub erased: bool,
    /// Completed jobs.
    pub jobs_completed: i64,
    /// Total spent.
    pub total_spent: Money,
    /// Loyalty points balance.
    pub loyalty_points: i64,
    /// Loyalty tier (`bronze`…`platinum`).
    pub tier: String,
    /// Referral code, once issued.
    pub referral_code: Option<String>,
    /// Service addresses, by label.
    pub addresses: Vec<CustomerAddress>,
    /// How many staff notes there are (their text: `customerNotes`; staff only).
    #[graphql(guard = "StaffOnly")]
    pub note_count: i64,
    /// Set when this record was merged into another customer (staff only).
    #[graphql(guard = "StaffOnly")]
    pub merged_into_id: Option<ID>,
    /// When created (RFC 3339).
    pub created_at: String,
}

/// A labelled service address.
#[derive(Debug, Clone, SimpleObject)]
pub struct CustomerAddress {
    /// "home", "rental"...
    pub label: String,
    /// Street and number.
    pub line1: String,
    /// Apartment, suite.
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State or region.
    pub region: String,
    /// ZIP / postal code.
    pub postal_code: String,
}

fn addresses(json: Option<String>) -> Vec<CustomerAddress> {
    let map: serde_json::Map<String, serde_json::Value> = json
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let text =
        |a: &serde_json::Value, k: &str| a.get(k).and_then(|v| v.as_str()).map(str::to_string);
    map.iter()
        .map(|(label, a)| CustomerAddress {
            label: label.clone(),
            line1: text(a, "line1").unwrap_or_default(),
            line2: text(a, "line2").filter(|l| !l.is_empty()),
            city: text(a, "city").unwrap_or_default(),
            region: text(a, "region").unwrap_or_default(),
            postal_code: text(a, "postal_code").unwrap_or_default(),
        })
        .collect()
}

fn s(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}
fn i(r: &JsonRow, k: &str) -> i64 {
    r.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

pub(super) fn customer_from_row(r: &JsonRow) -> Customer {
    Customer {
        id: ID(s(r, "customer_id").unwrap_or_default()),
        name: s(r, "name"),
        email: s(r, "email"),
        phone: s(r, "phone"),
        birthday: s(r, "birthday"),
        customer_since: s(r, "customer_since"),
        tags: s(r, "tags")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        sms_consent: i(r, "sms_consent") == 1,
        email_consent: i(r, "email_consent") == 1,
        email_suppressed: i(r, "email_suppressed") == 1,
        erased: i(r, "erased") == 1,
        jobs_completed: i(r, "jobs_completed"),
        total_spent: Money::usd(i(r, "total_spent_cents")),
        loyalty_points: i(r, "loyalty_points"),
        tier: s(r, "tier").unwrap_or_else(|| "bronze".into()),
        referral_code: s(r, "referral_code"),
        addresses: addresses(s(r, "addresses")),
        note_count: i(r, "notes"),
        merged_into_id: s(r, "merged_into").map(ID),
        created_at: s(r, "created_at").unwrap_or_default(),
    }
}

/// Loads one customer from the read model.
pub async fn load_customer(state: &AppState, id: &str) -> Option<Customer> {
    projections::crm::customers::get(state.projections.db(), id)
        .await
        .ok()?
        .as_ref()
        .map(customer_from_row)
}

#[async_graphql::ComplexObject]
impl Customer {
    /// Service history, newest first.
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Job>> {
        let (state, rc) = parts(ctx)?;
        let args = PageArgs::new(after, before, first, last);
        // Over HTTP the request's loader reads the asked page of jobs of a whole page of
        // customers in one statement; elsewhere (a subscription) one query each.
        if let Some(loader) = ctx.data_opt::<DataLoader<super::loaders::JobsOfCustomers>>() {
            let key = super::loaders::JobsPage {
                customer: self.id.to_string(),
                bounds: paging::Bounds::of(&args)?,
            };
            let w = loader
                .load_one(key)
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?
                .unwrap_or_default();
            let jobs = w.rows.iter().map(job_from_row).collect();
            return Ok(paging::page(w.start, w.end, w.total, jobs));
        }
        paging::of_listing(
            state,
            rc,
            projections::crm::jobs::of_customer(self.id.as_ref()),
            args,
            job_from_row,
        )
        .await
    }
}

/// Customer queries.
#[derive(Debug, Default)]
pub struct CustomerQuery;

/// Who may read which customer: staff any; a portal customer only themselves.
pub fn may_read_customer(rc: &super::RequestCtx, id: &str) -> async_graphql::Result<()> {
    match &rc.principal {
        Some(Principal::Staff { .. }) => Ok(()),
        Some(Principal::Customer { id: own }) if own.to_string() == id => Ok(()),
        Some(Principal::Customer { .. }) => Err(errors::forbidden("read another customer")),
        None => Err(errors::unauthenticated()),
    }
}

#[Object]
impl CustomerQuery {
    /// One customer (staff: any; portal: only yourself, without the staff-only fields).
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        let (state, rc) = parts(ctx)?;
        may_read_customer(rc, &id)?;
        Ok(load_customer(state, &id).await)
    }

    /// The signed-in portal customer (the staff-only fields answer `FORBIDDEN`).
    async fn my_profile(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let (state, rc) = parts(ctx)?;
        let (id, _, _) = context::customer(rc)?;
        Ok(load_customer(state, &id.to_string()).await)
    }

    /// Customers, searchable by name, email, phone or tag; by name unless `sort` says
    /// otherwise.
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        tag: Option<String>,
        #[graphql(default)] sort: CustomerSort,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Customer>> {
        let (state, rc) = parts(ctx)?;
        context::staff(rc, Role::Staff, "list customers")?;
        if let Some(q) = &search {
            check_len("search", q)?;
        }
        paging::of_listing(
            state,
            rc,
            projections::crm::customers::search(search.as_deref(), tag.as_deref(), sort.into()),
            PageArgs::new(after, before, first, last),
            customer_from_row,
        )
        .await
    }
}

/// How the customer list is ordered.
#[derive(async_graphql::Enum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum CustomerSort {
    /// By name, A to Z.
    #[default]
    Name,
    /// Newest first.
    Newest,
    /// Biggest spenders first.
    TotalSpent,
    /// Most recently served first (never served last).
    LastJob,
}

impl From<CustomerSort> for projections::crm::customers::CustomerOrder {
    fn from(s: CustomerSort) -> Self {
        match s {
            CustomerSort::Name => Self::Name,
            CustomerSort::Newest => Self::Newest,
            CustomerSort::TotalSpent => Self::TotalSpent,
            CustomerSort::LastJob => Self::LastJob,
        }
    }
}

/// A new customer.
#[derive(InputObject, Debug)]
pub struct CreateCustomerInput {
    /// Full name.
    pub name: String,
    /// Email.
    pub email: Option<String>,
    /// Phone, E.164 (`+15125550100`) or a US number.
    pub phone: Option<String>,
    /// Birthday, YYYY-MM-DD.
    pub birthday: Option<NaiveDate>,
    /// Customer since, YYYY-MM-DD (default: today).
    pub customer_since: Option<NaiveDate>,
    /// Makes retries safe: the same key returns the first outcome.
    pub idempotency_key: Option<String>,
}

/// New contact details.
#[derive(InputObject, Debug)]
pub struct UpdateCustomerContactInput {
    /// Customer id.
    pub id: ID,
    /// Full name.
    pub name: String,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A tag to add.
#[derive(InputObject, Debug)]
pub struct TagCustomerInput {
    /// Customer id.
    pub id: ID,
    /// The tag.
    pub tag: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// New contact details for the signed-in portal customer.
#[derive(InputObject, Debug)]
pub struct UpdateMyProfileInput {
    /// Full name.
    pub name: String,
    /// Email (the portal sign-in): left out or the one on file; `requestEmailChange` moves it.
    pub email: Option<String>,
    /// Phone; unchanged when left out.
    pub phone: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The signed-in portal customer's marketing choice on a channel.
#[derive(InputObject, Debug)]
pub struct MyMarketingConsentInput {
    /// Channel.
    pub channel: MarketingChannel,
    /// Granted (true) or withdrawn (false).
    pub granted: bool,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An address to add (or replace) under a label.
#[derive(InputObject, Debug)]
pub struct AddCustomerAddressInput {
    /// Customer id.
    pub id: ID,
    /// Label, unique per customer ("home", "rental").
    pub label: String,
    /// Street and number.
    pub line1: String,
    /// Apartment, suite.
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State or region.
    pub region: String,
    /// ZIP / postal code.
    pub postal_code: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An address to remove.
#[derive(InputObject, Debug)]
pub struct RemoveCustomerAddressInput {
    /// Customer id.
    pub id: ID,
    /// Its label.
    pub label: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A birthday.
#[derive(InputObject, Debug)]
pub struct SetCustomerBirthdayInput {
    /// Customer id.
    pub id: ID,
    /// YYYY-MM-DD.
    pub birthday: NaiveDate,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A customer-since date.
#[derive(InputObject, Debug)]
pub struct SetCustomerSinceInput {
    /// Customer id.
    pub id: ID,
    /// YYYY-MM-DD.
    pub customer_since: NaiveDate,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A staff note.
#[derive(InputObject, Debug)]
pub struct AddCustomerNoteInput {
    /// Customer id.
    pub id: ID,
    /// The note.
    pub text: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Two records of one person.
#[derive(InputObject, Debug)]
pub struct MergeCustomersInput {
    /// The duplicate, which is closed.
    pub duplicate_id: ID,
    /// The customer that stays.
    pub survivor_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// GDPR erasure.
#[derive(InputObject, Debug)]
pub struct EraseCustomerInput {
    /// Customer id.
    pub id: ID,
    /// Why (kept; not personal data).
    pub reason: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A marketing channel.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum MarketingChannel {
    /// Text messages.
    Sms,
    /// Email.
    Email,
}

impl From<MarketingChannel> for domain::consent::Channel {
    fn from(c: MarketingChannel) -> Self {
        match c {
            MarketingChannel::Sms => domain::consent::Channel::Sms,
            MarketingChannel::Email => domain::consent::Channel::Email,
        }
    }
}

impl From<domain::consent::Channel> for MarketingChannel {
    fn from(c: domain::consent::Channel) -> Self {
        match c {
            domain::consent::Channel::Sms => MarketingChannel::Sms,
            domain::consent::Channel::Email => MarketingChannel::Email,
        }
    }
}

/// Recording a customer's marketing consent.
#[derive(InputObject, Debug)]
pub struct MarketingConsentInput {
    /// Customer id.
    pub id: ID,
    /// Channel.
    pub channel: MarketingChannel,
    /// Granted (true) or withdrawn (false).
    pub granted: bool,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The changed customer and the event position.
#[derive(SimpleObject, Debug)]
pub struct CustomerPayload {
    /// The customer as the read model now shows it.
    pub customer: Option<Customer>,
    /// Log position of the last event (for `sync`).
    pub position: String,
}

/// Parses a customer id argument.
pub fn customer_id(field: &str, id: &ID) -> async_graphql::Result<CustomerId> {
    CustomerId::parse(id).map_err(|_| errors::invalid(field, "not a customer id"))
}

async fn run(
    ctx: &Context<'_>,
    id: CustomerId,
    min: Role,
    what: &str,
    key: Option<&String>,
    cmd: CustomerCommand,
) -> async_graphql::Result<CustomerPayload> {
    let (state, rc) = parts(ctx)?;
    let (actor, meta) = context::staff(rc, min, what)?;
    let out = state
        .crm
        .customers()
        .execute(id, actor, cmd, &context::with_key(meta, key))
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?;
    let position = settle(state, &out).await;
    Ok(CustomerPayload {
        customer: load_customer(state, &id.to_string()).await,
        position,
    })
}

/// A command by the signed-in portal customer on their own record, and the portal
/// activity it counts as (best effort: the change itself is what matters).
async fn as_customer(
    ctx: &Context<'_>,
    me: CustomerId,
    key: Option<&String>,
    cmd: CustomerCommand,
    activity: Option<domain::portal::PortalActivity>,
) -> async_graphql::Result<CustomerPayload> {
    let (state, rc) = parts(ctx)?;
    let (_, actor, meta) = context::customer(rc)?;
    let out = state
        .crm
        .customers()
        .execute(me, actor, cmd, &context::with_key(meta.clone(), key))
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?;
    // A replayed retry already counted as activity the first time.
    if let Some(activity) = activity {
        record_portal_activity(state, &out, me, activity, &meta).await;
    }
    let position = settle(state, &out).await;
    Ok(CustomerPayload {
        customer: load_customer(state, &me.to_string()).await,
        position,
    })
}

/// Counts `activity` for the portal customer `me` after `out`, once: a replayed retry
/// already counted. Best effort: the change itself is what matters.
pub(super) async fn record_portal_activity(
    state: &AppState,
    out: &commands::CommandOutcome,
    me: CustomerId,
    activity: domain::portal::PortalActivity,
    meta: &commands::EventMetadata,
) {
    if out.replayed {
        return;
    }
    let _ = state
        .crm
        .portal_accounts()
        .execute(
            domain::ids::PortalAccountId::for_customer(me),
            domain::Actor::Customer { id: me },
            domain::portal::PortalAccountCommand::RecordActivity { activity },
            meta,
        )
        .await;
}

/// Customer mutations.
#[derive(Debug, Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates a customer (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        check_len("name", &input.name)?;
        let (state, rc) = parts(ctx)?;
        // A retried create returns the customer the first attempt made.
        let id = CustomerId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        let cmd = CustomerCommand::Create {
            customer_id: id,
            name: input.name,
            email: input.email,
            phone: input.phone,
            birthday: input.birthday,
            customer_since: input.customer_since,
        };
        run(
            ctx,
            id,
            Role::Staff,
            "create customers",
            input.idempotency_key.as_ref(),
            cmd,
        )
        .await
    }

    /// Updates name, email and phone (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn update_customer_contact(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerContactInput,
    ) -> async_graphql::Result<CustomerPayload> {
        check_len("name", &input.name)?;
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Staff,
            "update customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::UpdateContactDetails {
                name: input.name,
                email: input.email,
                phone: input.phone,
            },
        )
        .await
    }

    /// The signed-in portal customer changes their own name or phone (a field left out stays
    /// as it is). The email is their sign-in and moves only with a code sent to the new
    /// address (`requestEmailChange`, `confirmEmailChange`): another address here is
    /// `VALIDATION` on `email`, whether or not another account uses it.
    #[graphql(guard = "Allow::Customer")]
    async fn update_my_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateMyProfileInput,
    ) -> async_graphql::Result<CustomerPayload> {
        check_len("name", &input.name)?;
        let (state, rc) = parts(ctx)?;
        let (me, _, _) = context::customer(rc)?;
        // A field left out stays as it is: the email is the portal sign-in and must not
        // vanish because a form did not send it.
        let current = load_customer(state, &me.to_string())
            .await
            .ok_or_else(|| errors::not_found("customer", &me.to_string()))?;
        // The sign-in email as the log has it: the read model may not show a change just made.
        let email = state
            .crm
            .customers()
            .load(me)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?
            .aggregate
            .email()
            .map(|e| e.to_string());
        if let Some(e) = &input.email {
            check_len("email", e)?;
            if email.as_deref() != Some(e.trim().to_lowercase().as_str()) {
                return Err(errors::invalid(
                    "email",
                    "the sign-in email changes with a code sent to the new address: use requestEmailChange",
                ));
            }
        }
        let phone = input.phone.or(current.phone);
        as_customer(
            ctx,
            me,
            input.idempotency_key.as_ref(),
            CustomerCommand::UpdateContactDetails {
                name: input.name,
                email,
                phone,
            },
            None,
        )
        .await
    }

    /// The signed-in portal customer gives or withdraws marketing consent on a channel.
    #[graphql(guard = "Allow::Customer")]
    async fn set_my_marketing_consent(
        &self,
        ctx: &Context<'_>,
        input: MyMarketingConsentInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let (_, rc) = parts(ctx)?;
        let (me, _, _) = context::customer(rc)?;
        let channel = domain::consent::Channel::from(input.channel);
        let source = domain::consent::ConsentSource::Portal;
        let cmd = if input.granted {
            CustomerCommand::GrantMarketingConsent { channel, source }
        } else {
            CustomerCommand::RevokeMarketingConsent { channel, source }
        };
        as_customer(
            ctx,
            me,
            input.idempotency_key.as_ref(),
            cmd,
            Some(domain::portal::PortalActivity::UpdatedPreferences),
        )
        .await
    }

    /// Tags a customer (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn tag_customer(
        &self,
        ctx: &Context<'_>,
        input: TagCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Staff,
            "tag customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::AddTag { tag: input.tag },
        )
        .await
    }

    /// Records consent given or withdrawn by the customer, as told to staff.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn set_marketing_consent(
        &self,
        ctx: &Context<'_>,
        input: MarketingConsentInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        let channel = domain::consent::Channel::from(input.channel);
        let source = domain::consent::ConsentSource::Staff;
        let cmd = if input.granted {
            CustomerCommand::GrantMarketingConsent { channel, source }
        } else {
            CustomerCommand::RevokeMarketingConsent { channel, source }
        };
        run(
            ctx,
            id,
            Role::Staff,
            "record consent",
            input.idempotency_key.as_ref(),
            cmd,
        )
        .await
    }

    /// Erases a customer's personal data everywhere it is readable (admin).
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn erase_customer(
        &self,
        ctx: &Context<'_>,
        input: EraseCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Admin,
            "erase customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::ErasePersonalData {
                reason: input.reason,
            },
        )
        .await
    }

    /// Adds or replaces the address under `label` (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn add_customer_address(
        &self,
        ctx: &Context<'_>,
        input: AddCustomerAddressInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        check_len("label", &input.label)?;
        run(
            ctx,
            id,
            Role::Staff,
            "edit customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::AddAddress {
                label: input.label,
                address: domain::values::AddressInput {
                    line1: input.line1,
                    line2: input.line2,
                    city: input.city,
                    region: input.region,
                    postal_code: input.postal_code,
                },
            },
        )
        .await
    }

    /// Removes the address under `label` (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn remove_customer_address(
        &self,
        ctx: &Context<'_>,
        input: RemoveCustomerAddressInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        check_len("label", &input.label)?;
        run(
            ctx,
            id,
            Role::Staff,
            "edit customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::RemoveAddress { label: input.label },
        )
        .await
    }

    /// Sets the birthday (staff); the birthday bonus follows it.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn set_customer_birthday(
        &self,
        ctx: &Context<'_>,
        input: SetCustomerBirthdayInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Staff,
            "edit customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::SetBirthday {
                birthday: input.birthday,
            },
        )
        .await
    }

    /// Corrects the customer-since date (staff), e.g. after an import; the anniversary
    /// bonus follows it.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn set_customer_since(
        &self,
        ctx: &Context<'_>,
        input: SetCustomerSinceInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Staff,
            "edit customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::SetCustomerSince {
                customer_since: input.customer_since,
            },
        )
        .await
    }

    /// Adds a staff note (staff; up to 5,000 characters).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn add_customer_note(
        &self,
        ctx: &Context<'_>,
        input: AddCustomerNoteInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Staff,
            "add notes",
            input.idempotency_key.as_ref(),
            CustomerCommand::AddNote { text: input.text },
        )
        .await
    }

    /// Removes a tag (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn untag_customer(
        &self,
        ctx: &Context<'_>,
        input: TagCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            Role::Staff,
            "tag customers",
            input.idempotency_key.as_ref(),
            CustomerCommand::RemoveTag { tag: input.tag },
        )
        .await
    }

    /// Merges a duplicate into the customer that stays (managers): the duplicate is closed
    /// pointing at the survivor, and the survivor records what it absorbed. Returns the
    /// survivor.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn merge_customers(
        &self,
        ctx: &Context<'_>,
        input: MergeCustomersInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let duplicate = customer_id("duplicateId", &input.duplicate_id)?;
        let survivor = customer_id("survivorId", &input.survivor_id)?;
        if duplicate == survivor {
            return Err(errors::invalid(
                "survivorId",
                "a customer cannot be merged into itself",
            ));
        }
        let (state, rc) = parts(ctx)?;
        let (actor, meta) = context::staff(rc, Role::Manager, "merge customers")?;
        state
            .crm
            .customers()
            .execute(
                duplicate,
                actor,
                CustomerCommand::MergeInto { target: survivor },
                &context::with_key(meta.clone(), input.idempotency_key.as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        // Its own key: a retry after a failure here records the absorption once.
        let absorb_key = input
            .idempotency_key
            .as_ref()
            .map(|k| format!("{k}:absorb"));
        let out = state
            .crm
            .customers()
            .execute(
                survivor,
                actor,
                CustomerCommand::AbsorbDuplicate { source: duplicate },
                &context::with_key(meta, absorb_key.as_ref()),
            )
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?;
        let position = settle(state, &out).await;
        Ok(CustomerPayload {
            customer: load_customer(state, &survivor.to_string()).await,
            position,
        })
    }
}

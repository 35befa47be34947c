//! What the customer queries answer (money, addresses, the customer with its nested fields), and how a read-model row maps to it.

// The parts share their parent's imports.
use super::*;
use crate::graphql::loaders::{JobsOfCustomers, JobsPage};
use crate::graphql::RequestCtx;
use projections::crm::customers::CustomerRow;

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
        match &ctx.data::<RequestCtx>()?.principal {
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

pub(super) fn addresses(
    by_label: &std::collections::BTreeMap<String, domain::values::Address>,
) -> Vec<CustomerAddress> {
    by_label
        .iter()
        .map(|(label, a)| CustomerAddress {
            label: label.clone(),
            line1: a.line1.to_string(),
            line2: a.line2.as_ref().map(ToString::to_string),
            city: a.city.to_string(),
            region: a.region.to_string(),
            postal_code: a.postal_code.to_string(),
        })
        .collect()
}

pub(in crate::graphql) fn customer_from_row(r: &CustomerRow) -> Customer {
    Customer {
        id: ID(r.customer_id.clone()),
        name: r.name.clone(),
        email: r.email.clone(),
        phone: r.phone.clone(),
        birthday: r.birthday.clone(),
        customer_since: r.customer_since.clone(),
        tags: r.tags.clone(),
        sms_consent: r.sms_consent,
        email_consent: r.email_consent,
        email_suppressed: r.email_suppressed,
        erased: r.erased,
        jobs_completed: r.jobs_completed,
        total_spent: Money::usd(r.total_spent_cents),
        loyalty_points: r.loyalty_points,
        tier: r.tier.clone(),
        referral_code: r.referral_code.clone(),
        addresses: addresses(&r.addresses),
        note_count: r.notes,
        merged_into_id: r.merged_into.clone().map(ID),
        created_at: r.created_at.clone(),
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
        if let Some(loader) = ctx.data_opt::<DataLoader<JobsOfCustomers>>() {
            let key = JobsPage {
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

//! What the customer queries answer (money, addresses, the customer with its nested fields), and how a read-model row maps to it.

// The parts share their parent's imports.
use super::*;
use crate::graphql::loaders::{JobsOfCustomers, JobsPage};
use crate::graphql::RequestCtx;

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

pub(super) fn addresses(json: Option<String>) -> Vec<CustomerAddress> {
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

pub(super) fn s(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}
pub(super) fn i(r: &JsonRow, k: &str) -> i64 {
    r.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

pub(in crate::graphql) fn customer_from_row(r: &JsonRow) -> Customer {
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

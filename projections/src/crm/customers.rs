//! The customers read model.

use domain::consent::Channel;
use domain::customer::CustomerEvent;
use domain::job::JobEvent;
use domain::loyalty::LoyaltyEvent;

use super::prelude::*;
use crate::db::{DbError, Param, ReadDb};
use crate::row;

/// Customer list, search and the customer-360 header.
#[derive(Debug)]
pub struct Customers;

const CUSTOMERS: &[&str] = &["customers"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[
    domain::customer::AGGREGATE_TYPE,
    domain::job::AGGREGATE_TYPE,
    domain::loyalty::AGGREGATE_TYPE,
];

impl Projection for Customers {
    fn name(&self) -> &'static str {
        "customers"
    }
    fn version(&self) -> i64 {
        2
    }
    fn tables(&self) -> &'static [&'static str] {
        CUSTOMERS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {customers} (
                customer_id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT, birthday TEXT,
                customer_since TEXT, created_at TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '[]',
                addresses TEXT NOT NULL DEFAULT '{}', notes BIGINT NOT NULL DEFAULT 0,
                sms_consent BIGINT NOT NULL DEFAULT 0, email_consent BIGINT NOT NULL DEFAULT 0,
                email_suppressed BIGINT NOT NULL DEFAULT 0, erased BIGINT NOT NULL DEFAULT 0,
                merged_into TEXT, stripe_customer_id TEXT, referral_code TEXT,
                jobs_completed BIGINT NOT NULL DEFAULT 0, total_spent_cents BIGINT NOT NULL DEFAULT 0,
                last_job_at TEXT, loyalty_points BIGINT NOT NULL DEFAULT 0, tier TEXT NOT NULL DEFAULT 'bronze',
                phone_confirmed BIGINT NOT NULL DEFAULT 1, email_confirmed BIGINT NOT NULL DEFAULT 1)",
            "CREATE INDEX {customers}_name_{gen} ON {customers} (name)",
            "CREATE INDEX {customers}_email_{gen} ON {customers} (email)",
            "CREATE INDEX {customers}_phone_{gen} ON {customers} (phone)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(event) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = CUSTOMERS;
            let id = e.aggregate_id.clone();
            match event {
                Event::Customer(event) => customer(tx, ctx, id, event).await?,
                Event::Job(JobEvent::JobCompleted {
                    customer_id,
                    amount,
                    at,
                    ..
                }) => {
                    exec(tx, ctx, t, "UPDATE {customers} SET jobs_completed = jobs_completed + 1,
                        total_spent_cents = total_spent_cents + $2, last_job_at = $3 WHERE customer_id = $1",
                        &[customer_id.to_string().into(), amount.cents().into(), rfc3339(*at).into()]).await?;
                }
                Event::Loyalty(event) => {
                    let (customer_id, change) = match event {
                        LoyaltyEvent::PointsEarned {
                            customer_id,
                            points,
                            ..
                        }
                        | LoyaltyEvent::PointsAwarded {
                            customer_id,
                            points,
                            ..
                        }
                        | LoyaltyEvent::BirthdayBonusAwarded {
                            customer_id,
                            points,
                            ..
                        }
                        | LoyaltyEvent::AnniversaryBonusAwarded {
                            customer_id,
                            points,
                            ..
                        }
                        | LoyaltyEvent::ReferralBonusAwarded {
                            customer_id,
                            points,
                            ..
                        } => (customer_id, *points),
                        LoyaltyEvent::PointsRedeemed {
                            customer_id,
                            points,
                            ..
                        }
                        | LoyaltyEvent::PointsExpired {
                            customer_id,
                            points,
                            ..
                        } => (customer_id, -*points),
                        LoyaltyEvent::TierChanged {
                            customer_id, to, ..
                        } => {
                            exec(
                                tx,
                                ctx,
                                t,
                                "UPDATE {customers} SET tier = $2 WHERE customer_id = $1",
                                &[customer_id.to_string().into(), text(to).into()],
                            )
                            .await?;
                            return Ok(());
                        }
                        LoyaltyEvent::LoyaltyAccountEnrolled { .. } => return Ok(()),
                    };
                    exec(tx, ctx, t, "UPDATE {customers} SET loyalty_points = loyalty_points + $2 WHERE customer_id = $1",
                        &[customer_id.to_string().into(), change.into()]).await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

/// A customer's own events.
async fn customer(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &CustomerEvent,
) -> Result<(), ProjectionError> {
    let t = CUSTOMERS;
    match event {
        CustomerEvent::CustomerCreated {
            name,
            email,
            phone,
            birthday,
            customer_since,
            at,
            ..
        } => {
            exec(tx, ctx, t,
                "INSERT INTO {customers} (customer_id, name, email, phone, birthday, customer_since, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (customer_id) DO NOTHING",
                &[id.into(), text(name).into(), text(email).into(), text(phone).into(),
                  text(birthday).into(), text(customer_since).into(), rfc3339(*at).into()]).await?;
        }
        CustomerEvent::CustomerContactUpdated {
            name, email, phone, ..
        } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {customers} SET name = $2, email = $3, phone = $4 WHERE customer_id = $1",
                &[
                    id.into(),
                    text(name).into(),
                    text(email).into(),
                    text(phone).into(),
                ],
            )
            .await?;
        }
        CustomerEvent::CustomerAddressAdded { label, .. }
        | CustomerEvent::CustomerAddressRemoved { label, .. } => {
            let rows = tx
                .query(
                    &ctx.slot.sql(
                        t,
                        "SELECT addresses FROM {customers} WHERE customer_id = $1",
                    ),
                    &[id.clone().into()],
                )
                .await?;
            let mut map =
                json_column::<serde_json::Map<String, serde_json::Value>>(&rows, "addresses")?;
            match event {
                CustomerEvent::CustomerAddressAdded { address, .. } => {
                    map.insert(
                        label.to_string(),
                        serde_json::to_value(address).unwrap_or_default(),
                    );
                }
                _ => {
                    map.remove(label.as_str());
                }
            }
            exec(
                tx,
                ctx,
                t,
                "UPDATE {customers} SET addresses = $2 WHERE customer_id = $1",
                &[id.into(), serde_json::Value::Object(map).to_string().into()],
            )
            .await?;
        }
        CustomerEvent::CustomerNoteAdded { .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {customers} SET notes = notes + 1 WHERE customer_id = $1",
                &[id.into()],
            )
            .await?;
        }
        CustomerEvent::CustomerTagged { tag, .. } | CustomerEvent::CustomerUntagged { tag, .. } => {
            let tagged = matches!(event, CustomerEvent::CustomerTagged { .. });
            retag(tx, ctx, id, tag.as_str(), tagged).await?;
        }
        CustomerEvent::CustomerPersonalDataErased { .. } => {
            // Erasure: nothing personal stays readable in the read model.
            exec(
                tx,
                ctx,
                t,
                "UPDATE {customers} SET name = NULL, email = NULL, phone = NULL, birthday = NULL,
                addresses = '{}', tags = '[]', erased = 1 WHERE customer_id = $1",
                &[id.into()],
            )
            .await?;
        }
        other => {
            if let Some((column, value)) = one_column(other) {
                let sql = format!("UPDATE {{customers}} SET {column} = $2 WHERE customer_id = $1");
                exec(tx, ctx, t, &sql, &[id.into(), value]).await?;
            }
        }
    }
    Ok(())
}

/// Adds or removes one tag of the customer's sorted tag list.
async fn retag(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    tag: &str,
    tagged: bool,
) -> Result<(), ProjectionError> {
    let t = CUSTOMERS;
    let rows = tx
        .query(
            &ctx.slot
                .sql(t, "SELECT tags FROM {customers} WHERE customer_id = $1"),
            &[id.clone().into()],
        )
        .await?;
    let mut tags = json_column::<Vec<String>>(&rows, "tags")?;
    tags.retain(|x| x != tag);
    if tagged {
        tags.push(tag.to_owned());
    }
    tags.sort();
    exec(
        tx,
        ctx,
        t,
        "UPDATE {customers} SET tags = $2 WHERE customer_id = $1",
        &[id.into(), json(&tags).into()],
    )
    .await?;
    Ok(())
}

/// The column an event sets on its own, with the value (None: the event changes no
/// single column, or nothing this read model shows).
fn one_column(event: &CustomerEvent) -> Option<(&'static str, Param)> {
    use CustomerEvent as E;
    Some(match event {
        E::CustomerBirthdaySet { birthday, .. } => ("birthday", text(birthday).into()),
        E::CustomerSinceSet { customer_since, .. } => {
            ("customer_since", text(customer_since).into())
        }
        E::ContactConfirmationRequired { channel, .. } | E::ContactConfirmed { channel, .. } => {
            let column = match channel {
                Channel::Sms => "phone_confirmed",
                Channel::Email => "email_confirmed",
            };
            (column, matches!(event, E::ContactConfirmed { .. }).into())
        }
        E::SmsConsentGranted { .. } | E::SmsConsentRevoked { .. } => (
            "sms_consent",
            matches!(event, E::SmsConsentGranted { .. }).into(),
        ),
        E::EmailConsentGranted { .. } | E::EmailConsentRevoked { .. } => (
            "email_consent",
            matches!(event, E::EmailConsentGranted { .. }).into(),
        ),
        E::EmailSuppressed { .. } | E::EmailSuppressionLifted { .. } => (
            "email_suppressed",
            matches!(event, E::EmailSuppressed { .. }).into(),
        ),
        E::CustomerMergedInto {
            target_customer_id, ..
        } => ("merged_into", target_customer_id.to_string().into()),
        E::StripeCustomerLinked {
            stripe_customer_id, ..
        } => ("stripe_customer_id", stripe_customer_id.clone().into()),
        E::ReferralCodeIssued { code, .. } => ("referral_code", code.to_string().into()),
        // Handled in `customer`, or nothing this read model shows: listed, so that a
        // new event is a compile error here until someone decides.
        E::CustomerCreated { .. }
        | E::CustomerContactUpdated { .. }
        | E::CustomerAddressAdded { .. }
        | E::CustomerAddressRemoved { .. }
        | E::CustomerNoteAdded { .. }
        | E::CustomerTagged { .. }
        | E::CustomerUntagged { .. }
        | E::CustomerPersonalDataErased { .. }
        | E::DuplicateCustomerAbsorbed { .. }
        | E::ContactCodeIssued { .. } => return None,
    })
}

// ---------------------------------------------------------------- queries

/// Customers with a completed job before `end`, split at `since`: active (a job since) or
/// lapsed (none since). Erased and merged customers are left out. Instants are RFC 3339 UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustomerActivity {
    /// Last job at or after `since`.
    pub active: i64,
    /// Last job before `since`.
    pub lapsed: i64,
}

/// See [`CustomerActivity`].
///
/// # Errors
/// When the read model cannot be read.
pub async fn activity(db: &ReadDb, since: &str, end: &str) -> Result<CustomerActivity, DbError> {
    let rows = db
        .query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN last_job_at >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS active,
                    CAST(COALESCE(SUM(CASE WHEN last_job_at < $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS lapsed
               FROM rm_customers
              WHERE erased = 0 AND merged_into IS NULL AND last_job_at IS NOT NULL AND last_job_at < $2",
            &[since.into(), end.into()],
        )
        .await?;
    rows.first().map_or(Ok(CustomerActivity::default()), |r| {
        Ok(CustomerActivity {
            active: row::int(r, "active")?,
            lapsed: row::int(r, "lapsed")?,
        })
    })
}

/// A customer as the customer export lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// Id.
    pub customer_id: String,
    /// Name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Loyalty tier.
    pub tier: String,
    /// Loyalty balance.
    pub loyalty_points: i64,
    /// Jobs completed.
    pub jobs_completed: i64,
    /// Total spent, cents.
    pub total_spent_cents: i64,
}

/// Every customer not erased or merged away, by name.
///
/// # Errors
/// When the read model cannot be read.
pub async fn export_rows(db: &ReadDb) -> Result<Vec<ExportRow>, DbError> {
    db.query(
        "SELECT customer_id, name, email, phone, tier, loyalty_points, jobs_completed, total_spent_cents
           FROM rm_customers WHERE erased = 0 AND merged_into IS NULL ORDER BY name, customer_id",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ExportRow {
            customer_id: row::text(r, "customer_id")?,
            name: row::opt_text(r, "name")?,
            email: row::opt_text(r, "email")?,
            phone: row::opt_text(r, "phone")?,
            tier: row::text(r, "tier")?,
            loyalty_points: row::int(r, "loyalty_points")?,
            jobs_completed: row::int(r, "jobs_completed")?,
            total_spent_cents: row::int(r, "total_spent_cents")?,
        })
    })
    .collect()
}

// ---------------------------------------------------------------- queries

/// The customer `id`, if the read model has it (erased and merged ones too).
///
/// # Errors
/// [`crate::DbError`].
pub async fn get(db: &crate::ReadDb, id: &str) -> Result<Option<CustomerRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_customers", "customer_id", id).await
}

/// One customer as the customer list and the customer-360 header show them. Personal
/// fields are `None` once erased. Instants are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// Their id.
    pub customer_id: String,
    /// Name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Birthday (`YYYY-MM-DD`).
    pub birthday: Option<String>,
    /// Customer since (`YYYY-MM-DD`).
    pub customer_since: Option<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Addresses by label.
    pub addresses: std::collections::BTreeMap<String, domain::values::Address>,
    /// Staff notes on them.
    pub notes: i64,
    /// Marketing consent by SMS.
    pub sms_consent: bool,
    /// Marketing consent by email.
    pub email_consent: bool,
    /// Email suppressed (bounced or complained).
    pub email_suppressed: bool,
    /// Personal data erased.
    pub erased: bool,
    /// The customer this one was merged into.
    pub merged_into: Option<String>,
    /// Their referral code.
    pub referral_code: Option<String>,
    /// Completed jobs.
    pub jobs_completed: i64,
    /// Spent on completed jobs, cents.
    pub total_spent_cents: i64,
    /// Loyalty points.
    pub loyalty_points: i64,
    /// Loyalty tier.
    pub tier: String,
    /// Created.
    pub created_at: String,
}

impl crate::row::FromRow for CustomerRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_text, text};
        let json = |k: &str| -> Result<String, crate::DbError> { text(r, k) };
        let tags = json("tags")?;
        let addresses = json("addresses")?;
        Ok(CustomerRow {
            customer_id: text(r, "customer_id")?,
            name: opt_text(r, "name")?,
            email: opt_text(r, "email")?,
            phone: opt_text(r, "phone")?,
            birthday: opt_text(r, "birthday")?,
            customer_since: opt_text(r, "customer_since")?,
            tags: serde_json::from_str(&tags).map_err(|_| {
                crate::DbError::new("read-model column tags is not a JSON list of text")
            })?,
            addresses: serde_json::from_str(&addresses).map_err(|_| {
                crate::DbError::new("read-model column addresses is not a JSON map of addresses")
            })?,
            notes: int(r, "notes")?,
            sms_consent: int(r, "sms_consent")? == 1,
            email_consent: int(r, "email_consent")? == 1,
            email_suppressed: int(r, "email_suppressed")? == 1,
            erased: int(r, "erased")? == 1,
            merged_into: opt_text(r, "merged_into")?,
            referral_code: opt_text(r, "referral_code")?,
            jobs_completed: int(r, "jobs_completed")?,
            total_spent_cents: int(r, "total_spent_cents")?,
            loyalty_points: int(r, "loyalty_points")?,
            tier: text(r, "tier")?,
            created_at: text(r, "created_at")?,
        })
    }
}

/// How the customer list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerOrder {
    /// By name, A to Z.
    Name,
    /// Newest first.
    Newest,
    /// Biggest spenders first.
    TotalSpent,
    /// Most recently served first (never served last).
    LastJob,
}

impl CustomerOrder {
    /// The ORDER BY, ending with the id so pages are stable.
    fn order_by(self) -> &'static str {
        match self {
            Self::Name => "name, customer_id",
            Self::Newest => "created_at DESC, customer_id",
            Self::TotalSpent => "total_spent_cents DESC, customer_id",
            Self::LastJob => "(last_job_at IS NULL), last_job_at DESC, customer_id",
        }
    }
}

/// Customers (not erased or merged away) whose name, email or phone contains `search`
/// (case-insensitive) and who carry `tag`, in `order`.
pub fn search(
    search: Option<&str>,
    tag: Option<&str>,
    order: CustomerOrder,
) -> crate::Listing<CustomerRow> {
    let pattern = search.map(|q| format!("%{}%", q.to_lowercase()));
    let tag = tag.map(|t| format!("%\"{}\"%", t.replace('"', "")));
    crate::Listing::new(
        "rm_customers WHERE erased = 0 AND merged_into IS NULL
            AND ($1 = '' OR lower(name) LIKE $1 OR lower(email) LIKE $1 OR phone LIKE $1)
            AND ($2 = '' OR tags LIKE $2)",
        order.order_by(),
        vec![
            pattern.unwrap_or_default().into(),
            tag.unwrap_or_default().into(),
        ],
    )
}

/// The customers (not erased or merged away) whose email is `email`, oldest first, each
/// with whether they have a portal account.
///
/// # Errors
/// [`crate::DbError`].
pub async fn with_email(
    db: &crate::ReadDb,
    email: &str,
) -> Result<Vec<(String, bool)>, crate::DbError> {
    let rows = db
        .query(
            "SELECT c.customer_id, p.customer_id AS account FROM rm_customers c \
             LEFT JOIN rm_portal_accounts p ON p.customer_id = c.customer_id \
             WHERE c.email = $1 AND c.erased = 0 AND c.merged_into IS NULL \
             ORDER BY c.created_at, c.customer_id",
            &[crate::Param::from(email)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                crate::row::text(r, "customer_id")?,
                crate::row::opt_text(r, "account")?.is_some(),
            ))
        })
        .collect()
}

//! The inputs and payloads of the customer mutations, the list's order and the marketing channels.

// The parts share their parent's imports.
use super::*;

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

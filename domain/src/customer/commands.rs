//! What can be asked of a customer, and why it may be refused.

use chrono::{DateTime, NaiveDate, Utc};

use crate::consent::{Channel, ConsentSource, SuppressionReason};
use crate::error::validation_error;
use crate::ids::CustomerId;
use crate::values::AddressInput;

/// What can be asked of a customer. Raw input is validated by `decide`.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    /// Create the customer (`customer_since` defaults to today in the business's zone).
    Create {
        /// The new customer's id (the aggregate id).
        customer_id: CustomerId,
        /// Full name.
        name: String,
        /// Email address, if known.
        email: Option<String>,
        /// Phone number, if known (E.164 or a US number).
        phone: Option<String>,
        /// Birthday, if known.
        birthday: Option<NaiveDate>,
        /// Customer since, if not today (imports).
        customer_since: Option<NaiveDate>,
    },
    /// Replace name, email and phone.
    UpdateContactDetails {
        /// Full name.
        name: String,
        /// Email address (None removes it).
        email: Option<String>,
        /// Phone number (None removes it).
        phone: Option<String>,
    },
    /// Add or replace the address under `label` ("home", "rental"...).
    AddAddress {
        /// Label, unique per customer.
        label: String,
        /// The address.
        address: AddressInput,
    },
    /// Remove the address under `label`.
    RemoveAddress {
        /// Label of the address.
        label: String,
    },
    /// Set the birthday.
    SetBirthday {
        /// The date of birth (only month and day are used for greetings).
        birthday: NaiveDate,
    },
    /// Set the customer-since (anniversary) date.
    SetCustomerSince {
        /// The date.
        customer_since: NaiveDate,
    },
    /// Record marketing consent on a channel.
    GrantMarketingConsent {
        /// SMS or email.
        channel: Channel,
        /// Proof of where it came from.
        source: ConsentSource,
    },
    /// Record withdrawal of marketing consent on a channel.
    RevokeMarketingConsent {
        /// SMS or email.
        channel: Channel,
        /// Where it came from.
        source: ConsentSource,
    },
    /// Send a code to a contact the customer entered themselves (the caller delivers it).
    IssueContactCode {
        /// Phone (`Sms`) or email.
        channel: Channel,
        /// SHA-256 of the code (the code itself never enters the log).
        code_hash: String,
        /// When the code stops working.
        expires_at: DateTime<Utc>,
    },
    /// The customer proves a contact is theirs with the code sent to it.
    ConfirmContact {
        /// Phone (`Sms`) or email.
        channel: Channel,
        /// SHA-256 of the code they typed.
        code_hash: String,
    },
    /// The customer proved the email with a code the transport checked (a portal sign-up or
    /// an email change, whose codes live outside the log until the address is the customer's).
    ConfirmProvenEmail {
        /// The address the code went to; must be the one on file.
        email: String,
    },
    /// An inbound SMS from this customer's number: STOP-type keywords revoke SMS consent,
    /// START restores it, anything else changes nothing.
    ApplyInboundSms {
        /// The message body.
        body: String,
    },
    /// Stop emailing this customer's address (provider webhook: hard bounce or complaint).
    SuppressEmail {
        /// Bounce or complaint.
        reason: SuppressionReason,
        /// The provider's event id, for tracing.
        provider_event_id: String,
    },
    /// Add a staff note.
    AddNote {
        /// The note.
        text: String,
    },
    /// Tag the customer.
    AddTag {
        /// The tag.
        tag: String,
    },
    /// Remove a tag.
    RemoveTag {
        /// The tag.
        tag: String,
    },
    /// This customer is a duplicate of `target`: close it, pointing at the survivor.
    MergeInto {
        /// The surviving customer.
        target: CustomerId,
    },
    /// Record on the survivor that `source` was merged into it.
    AbsorbDuplicate {
        /// The duplicate that was closed.
        source: CustomerId,
    },
    /// GDPR erasure of personal data.
    ErasePersonalData {
        /// Why (e.g. "customer request 2025-06-01").
        reason: String,
    },
    /// Link the Stripe customer object.
    LinkStripeCustomer {
        /// Stripe's `cus_...` id.
        stripe_customer_id: String,
    },
    /// Give the customer a referral code derived from their id; `attempt` is bumped by the
    /// commands layer when the code collides with another customer's.
    IssueReferralCode {
        /// 0 first, then 1, 2... on collisions.
        attempt: u32,
    },
}

/// Why a customer command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `Create` on an existing customer.
    #[error("the customer already exists")]
    AlreadyExists,
    /// Any command but `Create` on a customer that does not exist.
    #[error("unknown customer")]
    UnknownCustomer,
    /// The customer was merged into another and is closed.
    #[error("the customer was merged into {target}")]
    Merged {
        /// The survivor, where the command should go.
        target: CustomerId,
    },
    /// The customer's personal data was erased.
    #[error("the customer's personal data was erased")]
    Erased,
    /// The customer entered this contact and has not confirmed it yet.
    #[error("confirm this {} first with the code sent to it", contact_name(*channel))]
    ContactNotConfirmed {
        /// Phone (`Sms`) or email.
        channel: Channel,
    },
}

/// What a channel's contact is called in messages.
fn contact_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "phone number",
        Channel::Email => "email address",
    }
}
validation_error!(CustomerError);

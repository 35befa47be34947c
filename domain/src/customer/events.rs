//! What happens to a customer: the events, each a fact in the log (see `docs/events.md`).

use chrono::{DateTime, NaiveDate, Utc};

use super::AGGREGATE_TYPE;
use crate::catalogue::domain_events;
use crate::consent::{Channel, ConsentSource, SuppressionReason};
use crate::ids::CustomerId;
use crate::ports::Actor;
use crate::values::{
    Address, Email, NonEmptyText, PhoneNumber, Reason, ReferralCode, SecretHash, Tag,
};

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Customer`](super::Customer) aggregate.
    pub enum CustomerEvent {
        /// A customer was created.
        CustomerCreated {
            /// The customer.
            customer_id: CustomerId,
            /// Full name (PII).
            name: NonEmptyText,
            /// Email (PII).
            email: Option<Email>,
            /// Phone, E.164 (PII).
            phone: Option<PhoneNumber>,
            /// Birthday (PII).
            birthday: Option<NaiveDate>,
            /// Customer-since date (anniversary).
            customer_since: NaiveDate,
            /// When.
            at: DateTime<Utc>,
        },
        /// Name, email and phone were replaced (the full new values).
        CustomerContactUpdated {
            /// Full name (PII).
            name: NonEmptyText,
            /// Email (PII).
            email: Option<Email>,
            /// Phone, E.164 (PII).
            phone: Option<PhoneNumber>,
            /// When.
            at: DateTime<Utc>,
        },
        /// An address was added or replaced under a label.
        CustomerAddressAdded {
            /// Label ("home").
            label: NonEmptyText,
            /// The address (PII).
            address: Address,
            /// When.
            at: DateTime<Utc>,
        },
        /// An address was removed.
        CustomerAddressRemoved {
            /// Label.
            label: NonEmptyText,
            /// When.
            at: DateTime<Utc>,
        },
        /// The birthday was set.
        CustomerBirthdaySet {
            /// Date of birth (PII; `None` once erased: optional so that an erased
            /// event still reads).
            birthday: Option<NaiveDate>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer-since date was set.
        CustomerSinceSet {
            /// The date.
            customer_since: NaiveDate,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer agreed to marketing SMS.
        SmsConsentGranted {
            /// Where the consent came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer withdrew SMS consent (e.g. replied STOP).
        SmsConsentRevoked {
            /// Where the withdrawal came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer agreed to marketing email.
        EmailConsentGranted {
            /// Where the consent came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer withdrew email consent.
        EmailConsentRevoked {
            /// Where the withdrawal came from.
            source: ConsentSource,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer's email address must not be sent to (hard bounce or complaint).
        EmailSuppressed {
            /// The suppressed address (PII).
            email: Email,
            /// Bounce or complaint.
            reason: SuppressionReason,
            /// The provider's webhook event id.
            provider_event_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The suppression ended because the customer's email address changed.
        EmailSuppressionLifted {
            /// When.
            at: DateTime<Utc>,
        },
        /// Staff added a note.
        CustomerNoteAdded {
            /// The note (may contain PII).
            text: NonEmptyText,
            /// Who wrote it.
            author: Actor,
            /// When.
            at: DateTime<Utc>,
        },
        /// A tag was added.
        CustomerTagged {
            /// The tag.
            tag: Tag,
            /// When.
            at: DateTime<Utc>,
        },
        /// A tag was removed.
        CustomerUntagged {
            /// The tag.
            tag: Tag,
            /// When.
            at: DateTime<Utc>,
        },
        /// This customer was a duplicate and is closed; its history continues on the target.
        CustomerMergedInto {
            /// The surviving customer.
            target_customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// A duplicate customer was merged into this one.
        DuplicateCustomerAbsorbed {
            /// The closed duplicate.
            source_customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// Personal data was erased (GDPR); earlier events' PII is to be crypto-shredded.
        CustomerPersonalDataErased {
            /// Why.
            reason: Reason,
            /// When.
            at: DateTime<Utc>,
        },
        /// The Stripe customer object was linked.
        StripeCustomerLinked {
            /// Stripe's `cus_...` id.
            stripe_customer_id: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer entered this phone or email themselves: it counts as theirs (inbound
        /// SMS, marketing consent) only once confirmed with a code sent to it.
        ContactConfirmationRequired {
            /// Phone (`sms`) or email.
            channel: Channel,
            /// When.
            at: DateTime<Utc>,
        },
        /// A confirmation code was sent to the contact (only its hash is kept).
        ContactCodeIssued {
            /// Phone (`sms`) or email.
            channel: Channel,
            /// SHA-256 of the code.
            code_hash: SecretHash,
            /// When the code stops working.
            expires_at: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The contact counts as the customer's: they confirmed the code, or staff entered a
        /// new value in place of an unconfirmed one.
        ContactConfirmed {
            /// Phone (`sms`) or email.
            channel: Channel,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer received a referral code.
        ReferralCodeIssued {
            /// The code.
            code: ReferralCode,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

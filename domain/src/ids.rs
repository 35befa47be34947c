//! Typed identifiers: a `CustomerId` cannot be passed where a `JobId` is expected.
//!
//! All ids wrap a [`Uuid`], serialise as a bare UUID string and display as one, so they can be
//! used directly as cqrs-es aggregate ids (`id.to_string()`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;

macro_rules! typed_id {
    ($(#[doc = $doc:literal])* $name:ident, $field:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the textual UUID form.
            ///
            /// # Errors
            /// [`ValidationError`] naming the id field when `raw` is not a UUID.
            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                Uuid::parse_str(raw.trim())
                    .map(Self)
                    .map_err(|_| ValidationError::new($field, "not a valid UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

typed_id!(
    /// A customer (the business's client).
    CustomerId, "customer_id");
typed_id!(
    /// A cleaning job (appointment).
    JobId, "job_id");
typed_id!(
    /// A van in the fleet.
    VehicleId, "vehicle_id");
typed_id!(
    /// A staff user (admin, manager or staff).
    StaffUserId, "staff_user_id");
typed_id!(
    /// A sales opportunity.
    OpportunityId, "opportunity_id");
typed_id!(
    /// A marketing promotion (campaign, birthday or anniversary).
    PromotionId, "promotion_id");
typed_id!(
    /// A review request; derived from the job id, see [`ReviewRequestId::for_job`].
    ReviewRequestId, "review_request_id");
typed_id!(
    /// A received review.
    ReviewId, "review_id");
typed_id!(
    /// A customer's loyalty account; see [`LoyaltyAccountId::for_customer`].
    LoyaltyAccountId, "loyalty_account_id");
typed_id!(
    /// A referral of one new customer (the referee); see [`ReferralId::for_referee`].
    ReferralId, "referral_id");
typed_id!(
    /// A chatbot conversation.
    ConversationId, "conversation_id");
typed_id!(
    /// A payment (one provider payment intent).
    PaymentId, "payment_id");
typed_id!(
    /// A scheduled report definition.
    ScheduledReportId, "scheduled_report_id");
typed_id!(
    /// A customer's portal account.
    PortalAccountId, "portal_account_id");
typed_id!(
    /// An outbound SMS or email; derived from its cause, see [`OutboundMessageId::for_cause`].
    OutboundMessageId, "message_id");

/// Namespaces for deterministic (UUID v5) ids. Changing them would orphan existing streams.
mod namespace {
    use uuid::Uuid;
    pub const REVIEW_REQUEST: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5a01);
    pub const LOYALTY_ACCOUNT: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5a02);
    pub const REFERRAL: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5a03);
    pub const PORTAL_ACCOUNT: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5a04);
    pub const OUTBOUND_MESSAGE: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5a05);
}

impl ReviewRequestId {
    /// The one review-request id a job can have: "one request per job" holds by construction,
    /// because a second request for the same job lands on the same stream and is refused.
    pub fn for_job(job: JobId) -> Self {
        Self(Uuid::new_v5(&namespace::REVIEW_REQUEST, job.0.as_bytes()))
    }
}

impl LoyaltyAccountId {
    /// The one loyalty account a customer can have.
    pub fn for_customer(customer: CustomerId) -> Self {
        Self(Uuid::new_v5(
            &namespace::LOYALTY_ACCOUNT,
            customer.0.as_bytes(),
        ))
    }
}

impl ReferralId {
    /// A customer can be referred once: the referral stream is keyed by the referee.
    pub fn for_referee(referee: CustomerId) -> Self {
        Self(Uuid::new_v5(&namespace::REFERRAL, referee.0.as_bytes()))
    }
}

impl PortalAccountId {
    /// A customer has at most one portal account.
    pub fn for_customer(customer: CustomerId) -> Self {
        Self(Uuid::new_v5(
            &namespace::PORTAL_ACCOUNT,
            customer.0.as_bytes(),
        ))
    }
}

impl ReviewId {
    /// The one portal review a job can have (a second is refused as already existing).
    pub fn for_portal_job(job: JobId) -> Self {
        Self(Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("portal-review:job:{job}").as_bytes(),
        ))
    }
}

impl ScheduledReportId {
    /// The built-in weekly report (every metric, last week) the `generate-weekly-report`
    /// job defines on its first run and generates each Monday.
    pub fn weekly_report() -> Self {
        Self(Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5b01))
    }
}

impl OutboundMessageId {
    /// The one message a cause (`Type:id:sequence[:part]` of the triggering event) can have:
    /// a policy that handles its trigger again addresses the same stream and is refused.
    pub fn for_cause(cause: &str) -> Self {
        Self(Uuid::new_v5(&namespace::OUTBOUND_MESSAGE, cause.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_derive_the_same_review_request_id_for_the_same_job() {
        let job = JobId(Uuid::from_u128(7));
        assert_eq!(ReviewRequestId::for_job(job), ReviewRequestId::for_job(job));
        assert_ne!(
            ReviewRequestId::for_job(job),
            ReviewRequestId::for_job(JobId(Uuid::from_u128(8)))
        );
    }

    #[test]
    fn it_should_name_the_field_when_an_id_is_not_a_uuid() {
        let err = CustomerId::parse("nope").expect_err("must fail");
        assert_eq!(err.field, "customer_id");
    }

    #[test]
    fn it_should_serialise_an_id_as_a_bare_uuid_string() {
        let id = JobId(Uuid::from_u128(1));
        let json = serde_json::to_string(&id).expect("serialises");
        assert_eq!(json, format!("\"{}\"", id.0));
    }
}

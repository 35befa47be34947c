//! Any event of any aggregate, typed: what the read side matches on instead of event-name
//! strings. A stored event is decoded by its aggregate type, with the same serde shapes the
//! aggregates load (so whatever the write side accepts, the read side reads).

use serde::Deserialize;

use crate::catalogue::EventSchema;

/// Declares [`Event`] and the per-aggregate list the catalogue is built from, from one table.
macro_rules! events {
    ($( $(#[doc = $doc:literal])* $variant:ident($ty:path) = $agg:path ),* $(,)?) => {
        /// An event of one of the domain's aggregates.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $( $(#[doc = $doc])* $variant($ty), )*
        }

        impl Event {
            /// Decodes a stored payload (`{"EventType": {fields}}`) of an aggregate type.
            /// `None` for an aggregate type this build does not have.
            ///
            /// # Errors
            /// The payload does not deserialise as that aggregate's event.
            pub fn decode(
                aggregate_type: &str,
                payload: &serde_json::Value,
            ) -> Option<Result<Event, serde_json::Error>> {
                $(
                    if aggregate_type == $agg {
                        return Some(<$ty>::deserialize(payload).map(Event::$variant));
                    }
                )*
                None
            }
        }

        /// The catalogue entries of every aggregate's events, grouped by aggregate.
        pub(crate) const SCHEMAS: &[&[EventSchema]] = &[ $( <$ty>::SCHEMAS, )* ];
    };
}

events! {
    /// A customer's.
    Customer(crate::customer::CustomerEvent) = crate::customer::AGGREGATE_TYPE,
    /// A job's.
    Job(crate::job::JobEvent) = crate::job::AGGREGATE_TYPE,
    /// A loyalty account's.
    Loyalty(crate::loyalty::LoyaltyEvent) = crate::loyalty::AGGREGATE_TYPE,
    /// A referral's.
    Referral(crate::referral::ReferralEvent) = crate::referral::AGGREGATE_TYPE,
    /// An opportunity's.
    Opportunity(crate::opportunity::OpportunityEvent) = crate::opportunity::AGGREGATE_TYPE,
    /// A promotion's.
    Promotion(crate::promotion::PromotionEvent) = crate::promotion::AGGREGATE_TYPE,
    /// A review request's.
    ReviewRequest(crate::review::ReviewRequestEvent) = crate::review::REVIEW_REQUEST_TYPE,
    /// A review's.
    Review(crate::review::ReviewEvent) = crate::review::REVIEW_TYPE,
    /// A vehicle's.
    Vehicle(crate::vehicle::VehicleEvent) = crate::vehicle::AGGREGATE_TYPE,
    /// A staff user's.
    StaffUser(crate::staff::StaffUserEvent) = crate::staff::AGGREGATE_TYPE,
    /// A portal account's.
    PortalAccount(crate::portal::PortalAccountEvent) = crate::portal::AGGREGATE_TYPE,
    /// A payment's.
    Payment(crate::payment::PaymentEvent) = crate::payment::AGGREGATE_TYPE,
    /// A conversation's.
    Conversation(crate::conversation::ConversationEvent) = crate::conversation::AGGREGATE_TYPE,
    /// A scheduled report's.
    ScheduledReport(crate::scheduled_report::ScheduledReportEvent) = crate::scheduled_report::AGGREGATE_TYPE,
    /// A job run's (the scheduler's).
    JobRun(crate::job_run::JobRunEvent) = crate::job_run::AGGREGATE_TYPE,
    /// An outbound message's.
    Message(crate::message::MessageEvent) = crate::message::AGGREGATE_TYPE,
    /// A read model's (operator decisions on parked events).
    ReadModel(crate::read_model::ReadModelEvent) = crate::read_model::AGGREGATE_TYPE,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::all_event_schemas;

    #[test]
    fn every_catalogued_aggregate_type_decodes_as_its_own_events() {
        for s in all_event_schemas() {
            // A payload with the right name but no fields is that aggregate's event, malformed.
            let payload = serde_json::json!({ s.name: {} });
            // A variant of another aggregate's enum would say "unknown variant"; its own
            // says which field is missing (or, for a field-less event, decodes).
            match Event::decode(s.aggregate, &payload) {
                Some(Ok(_)) => {
                    assert!(s.fields.is_empty(), "{} decoded without its fields", s.name)
                }
                Some(Err(e)) => assert!(
                    e.to_string().contains("missing field"),
                    "{} {} is not read as its aggregate's event: {e}",
                    s.aggregate,
                    s.name
                ),
                None => panic!("{} is not an aggregate type", s.aggregate),
            }
        }
        assert!(Event::decode("Counter", &serde_json::json!({})).is_none());
    }

    #[test]
    fn a_stored_job_event_decodes_to_the_job_variant_and_a_malformed_one_is_an_error() {
        let paid = serde_json::json!({"JobPaid": {
            "customer_id": "7d9f3c52-4a51-4c1e-9a43-0f6f3c1b2a10", "payment_id": "0b6f0e7e-3a51-4f3c-8d1e-5c9a2b7d4e11", "amount": 1200, "at": "2026-12-01T10:00:00Z"
        }});
        match Event::decode(crate::job::AGGREGATE_TYPE, &paid) {
            Some(Ok(Event::Job(crate::job::JobEvent::JobPaid { amount, .. }))) => {
                assert_eq!(amount.cents(), 1200);
            }
            other => panic!("not the job's payment: {other:?}"),
        }
        let missing = serde_json::json!({"JobPaid": {"payment_id": "p-1"}});
        assert!(matches!(
            Event::decode(crate::job::AGGREGATE_TYPE, &missing),
            Some(Err(_))
        ));
    }
}

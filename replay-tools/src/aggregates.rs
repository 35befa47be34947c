//! Typed access to each aggregate by its type name, for `state` and `verify`.

use commands::{AggregateStore, EventLog, HistoryPoint, RecordedEvent, StoreError};
use domain::ports::DomainServices;
use domain::{
    conversation::Conversation, customer::Customer, job::Job, job_run::JobRun,
    loyalty::LoyaltyAccount, message::OutboundMessage, opportunity::Opportunity, payment::Payment,
    portal::PortalAccount, promotion::Promotion, read_model::ReadModel, referral::Referral,
    review::Review, review::ReviewRequest, scheduled_report::ScheduledReport, staff::StaffUser,
    vehicle::Vehicle,
};

macro_rules! by_type {
    ($t:expr, $body:ident, $($name:literal => $agg:ty),* $(,)?) => {
        match $t {
            $($name => Some($body::<$agg>),)*
            _ => None,
        }
    };
}

/// Every aggregate type name.
pub const TYPES: &[&str] = &[
    "Customer",
    "Job",
    "Vehicle",
    "StaffUser",
    "PortalAccount",
    "Opportunity",
    "Promotion",
    "ReviewRequest",
    "Review",
    "LoyaltyAccount",
    "Referral",
    "Conversation",
    "Payment",
    "ScheduledReport",
    "OutboundMessage",
    "JobRun",
    "ReadModel",
];

type StateFn = fn(
    EventLog,
    String,
    HistoryPoint,
    chrono_tz::Tz,
) -> futures_like::BoxFuture<Result<(u64, serde_json::Value), StoreError>>;
type DecodeFn = fn(&EventLog, RecordedEvent, chrono_tz::Tz) -> Result<(), StoreError>;

mod futures_like {
    /// A boxed future.
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

fn state_of<A>(
    log: EventLog,
    id: String,
    at: HistoryPoint,
    tz: chrono_tz::Tz,
) -> futures_like::BoxFuture<Result<(u64, serde_json::Value), StoreError>>
where
    A: cqrs_es::Aggregate<Services = DomainServices> + 'static,
{
    Box::pin(async move {
        let store = AggregateStore::<A>::new(log, DomainServices::new(tz, Default::default()));
        let loaded = store.load_at(&id, at).await?;
        let value = serde_json::to_value(&loaded.aggregate)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok((loaded.sequence, value))
    })
}

fn decode_with<A>(log: &EventLog, e: RecordedEvent, tz: chrono_tz::Tz) -> Result<(), StoreError>
where
    A: cqrs_es::Aggregate<Services = DomainServices> + 'static,
{
    AggregateStore::<A>::new(log.clone(), DomainServices::new(tz, Default::default()))
        .decode(e)
        .map(|_| ())
}

/// The state loader for an aggregate type.
pub fn state_fn(t: &str) -> Option<StateFn> {
    by_type!(t, state_of,
        "Customer" => Customer, "Job" => Job, "Vehicle" => Vehicle, "StaffUser" => StaffUser, "PortalAccount" => PortalAccount,
        "Opportunity" => Opportunity, "Promotion" => Promotion, "ReviewRequest" => ReviewRequest, "Review" => Review,
        "LoyaltyAccount" => LoyaltyAccount, "Referral" => Referral, "Conversation" => Conversation, "Payment" => Payment,
        "ScheduledReport" => ScheduledReport, "OutboundMessage" => OutboundMessage, "JobRun" => JobRun,
        "ReadModel" => ReadModel,
    )
}

/// The payload decoder for an aggregate type.
pub fn decode_fn(t: &str) -> Option<DecodeFn> {
    by_type!(t, decode_with,
        "Customer" => Customer, "Job" => Job, "Vehicle" => Vehicle, "StaffUser" => StaffUser, "PortalAccount" => PortalAccount,
        "Opportunity" => Opportunity, "Promotion" => Promotion, "ReviewRequest" => ReviewRequest, "Review" => Review,
        "LoyaltyAccount" => LoyaltyAccount, "Referral" => Referral, "Conversation" => Conversation, "Payment" => Payment,
        "ScheduledReport" => ScheduledReport, "OutboundMessage" => OutboundMessage, "JobRun" => JobRun,
        "ReadModel" => ReadModel,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_aggregate_type_with_events_can_be_decoded_and_shown() {
        for (aggregate, _) in domain::catalogue::all_event_types() {
            assert!(
                super::decode_fn(aggregate).is_some() && super::TYPES.contains(&aggregate),
                "replay-tools does not know {aggregate}"
            );
        }
    }
}

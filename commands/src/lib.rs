//! The application layer of Dirt Free CRM: the application service ([`Crm`]) that
//! executes commands with metadata and idempotency on the event log (the `event-log`
//! crate, re-exported here), and the policies that react to events across aggregates.

pub mod app;
pub mod policies;
pub mod report_runs;
pub mod review_requests;

#[cfg(test)]
mod erasure_tests;

pub use app::{AppAggregate, AppError, Commands, Crm, Reference};
pub use event_log::{aggregate_store, metadata, store, tail};
pub use event_log::{
    Actor, AggregateStore, CommandError, CommandOutcome, CommittedEvent, DatabaseUrl, EventLog,
    EventMetadata, HistoryPoint, Loaded, LogOptions, LogPosition, LogTail, RecordedEvent,
    StoreError,
};
pub use policies::{Policy, PolicyRunner, PolicyStatus};

/// The domain crate, so that callers (API, tests) use the same version of its types.
pub use domain;

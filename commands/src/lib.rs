//! The application layer of Dirt Free CRM: the event log and its engines,
//! command execution with metadata and idempotency, the application service
//! ([`Crm`]), the policies that react to events across aggregates, and the
//! demo seed.

pub mod aggregate_store;
pub mod app;
pub mod demo;
pub mod metadata;
pub mod policies;
pub mod report_runs;
pub mod store;
pub mod tail;

pub use aggregate_store::{
    AggregateStore, CommandError, CommandOutcome, CommittedEvent, HistoryPoint, Loaded,
};
pub use app::{AppAggregate, AppError, Commands, Crm, Reference};
pub use metadata::{Actor, EventMetadata};
pub use policies::{Policy, PolicyRunner, PolicyStatus};
pub use store::{DatabaseUrl, EventLog, LogOptions, LogPosition, RecordedEvent, StoreError};
pub use tail::LogTail;

/// The domain crate, so that callers (API, tests) use the same version of its types.
pub use domain;

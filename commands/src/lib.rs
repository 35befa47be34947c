//! The application layer of Dirt Free CRM: the event log and its engines,
//! command execution with metadata and idempotency, and (later) the policies
//! that react to events across aggregates.

pub mod aggregate_store;
pub mod metadata;
pub mod store;
pub mod tail;

pub use aggregate_store::{AggregateStore, CommandError, CommandOutcome, CommittedEvent, HistoryPoint, Loaded};
pub use metadata::{Actor, EventMetadata};
pub use tail::LogTail;
pub use store::{DatabaseUrl, EventLog, LogOptions, LogPosition, RecordedEvent, StoreError};

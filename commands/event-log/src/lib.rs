//! The event log of Dirt Free CRM, the seam both sides stand on: the write side
//! (`commands`) appends through it and the read side (`projections`) follows it, and
//! neither depends on the other. It holds the engines (PostgreSQL, SQLite, EventStoreDB
//! behind the `esdb` feature), the gap-safe global order, event metadata, personal-data
//! sealing, the generic aggregate store over the log, and the commit tail.

pub mod aggregate_store;
pub mod metadata;
pub mod row;
pub mod sql;
pub mod store;
pub mod tail;

pub use aggregate_store::{
    AggregateStore, CommandError, CommandOutcome, CommittedEvent, HistoryPoint, Loaded,
};
pub use metadata::{Actor, EventMetadata};
pub use store::{DatabaseUrl, EventLog, LogOptions, LogPosition, RecordedEvent, StoreError};
pub use tail::LogTail;

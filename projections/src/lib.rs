//! Read models of Dirt Free CRM, built from the global event log.
//!
//! A [`ProjectionRunner`] feeds each [`Projection`] the log in order and
//! commits its table changes together with its checkpoint; read models can be
//! rebuilt from zero at any time (`replay-tools rebuild`).

pub mod crm;
pub use event_log::sql as db;
pub mod listing;
pub mod parked;
pub mod projection;
pub use event_log::row;
pub mod runner;

pub use db::{DbError, JsonRow, Param, ReadDb};
pub use listing::Listing;
pub use projection::{Decoded, Projection, ProjectionError, Slot};
pub use runner::{
    BeforeSwap, CompareBeforeSwap, Dump, HandlerFailure, ProjectionRunner, ProjectionStatus,
    RetriedStream, RunError,
};

//! The domain of Dirt Free CRM: aggregates, their commands, events and rules.
//!
//! Pure: no I/O, no database, no web framework. Each aggregate has a pure
//! `decide(&self, command, &CommandContext) -> Result<Vec<Event>, Error>` and an `apply_event`;
//! its cqrs-es `handle` reads the clock from [`ports::DomainServices`], calls `decide` and
//! writes the events. Cross-aggregate rules (job completed → points, review request, referral
//! reward) live in the commands crate's policies, which call the pure helpers here.

#![warn(missing_docs)]

pub mod catalogue;
pub mod consent;
pub mod error;
pub mod event;
pub mod ids;
pub mod personal_data;
pub mod ports;
pub mod testing;
pub mod values;

pub mod conversation;
pub mod customer;
pub mod job;
pub mod job_run;
pub mod loyalty;
pub mod message;
pub mod opportunity;
pub mod payment;
pub mod portal;
pub mod promotion;
pub mod quiet_hours;
pub mod read_model;
pub mod referral;
pub mod report;
pub mod review;
pub mod scheduled_report;
pub mod staff;
pub mod template;
pub mod vehicle;

pub use catalogue::{all_event_types, known_event_types};
pub use error::ValidationError;
pub use event::Event;
pub use ports::{Actor, Clock, CommandContext, CommandEnvelope, DomainServices, IdGenerator, Role};

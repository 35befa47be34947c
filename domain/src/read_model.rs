//! ReadModel: operators' decisions about a projection's read model that must
//! stay on record. Today one: discarding the events a projection parked for an
//! aggregate (its handler refused them; see `projections::parked`), so the
//! audit trail says who dropped what, when and why.
//!
//! The aggregate id is the projection's name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ports::{cqrs_aggregate, Actor, CommandContext, Role};

/// `Aggregate::TYPE` of [`ReadModel`].
pub const AGGREGATE_TYPE: &str = "ReadModel";

/// Longest reason kept.
pub const MAX_REASON_LEN: usize = 500;

/// Commands of [`ReadModel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadModelCommand {
    /// Drop the parked events of one aggregate without applying them.
    DiscardParked {
        /// The aggregate type whose events were parked.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// Their log positions (`tx.seq`).
        positions: Vec<String>,
        /// Why (for the audit trail).
        reason: String,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`ReadModel`] aggregate.
    pub enum ReadModelEvent {
        /// An operator discarded a projection's parked events of one aggregate: the read model
        /// stays without them.
        ParkedEventsDiscarded {
            /// The aggregate type whose events were parked.
            aggregate_type: String,
            /// The aggregate id.
            aggregate_id: String,
            /// Their log positions (`tx.seq`), in order.
            positions: Vec<String>,
            /// Why.
            reason: String,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a read-model command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadModelError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Only admins and the operator's tools decide about read models.
    #[error("only an admin or the operator's tools may do this")]
    NotAllowed,
}
validation_error!(ReadModelError);

/// A read model's record of decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModel {
    discards: u64,
}

impl ReadModel {
    /// Discards recorded so far.
    pub fn discards(&self) -> u64 {
        self.discards
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`ReadModelError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: ReadModelCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ReadModelEvent>, ReadModelError> {
        match &ctx.actor {
            Actor::System => {}
            Actor::Staff {
                role: Role::Admin, ..
            } => {}
            _ => return Err(ReadModelError::NotAllowed),
        }
        match cmd {
            ReadModelCommand::DiscardParked {
                aggregate_type,
                aggregate_id,
                positions,
                reason,
            } => {
                if aggregate_type.trim().is_empty() || aggregate_id.trim().is_empty() {
                    return Err(ValidationError::new("aggregate", "name the aggregate").into());
                }
                if positions.is_empty() {
                    return Err(
                        ValidationError::new("positions", "nothing is parked for it").into(),
                    );
                }
                let reason = reason.trim();
                if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
                    return Err(ValidationError::new(
                        "reason",
                        format!("say why, in at most {MAX_REASON_LEN} characters"),
                    )
                    .into());
                }
                Ok(vec![ReadModelEvent::ParkedEventsDiscarded {
                    aggregate_type,
                    aggregate_id,
                    positions,
                    reason: reason.to_string(),
                    at: ctx.now,
                }])
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: ReadModelEvent) {
        match event {
            ReadModelEvent::ParkedEventsDiscarded { .. } => self.discards += 1,
        }
    }
}

cqrs_aggregate!(
    ReadModel,
    AGGREGATE_TYPE,
    ReadModelCommand,
    ReadModelEvent,
    ReadModelError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{customer_actor, test_now};

    fn ctx(actor: Actor) -> CommandContext {
        CommandContext {
            actor,
            now: test_now(),
            tz: crate::testing::TEST_TZ,
        }
    }

    fn discard(reason: &str) -> ReadModelCommand {
        ReadModelCommand::DiscardParked {
            aggregate_type: "Customer".into(),
            aggregate_id: "c-1".into(),
            positions: vec!["100.0".into()],
            reason: reason.into(),
        }
    }

    #[test]
    fn it_should_record_a_discard_with_its_reason_when_the_operator_asks() {
        let events = ReadModel::default()
            .decide(discard("  fixed by hand  "), &ctx(Actor::System))
            .expect("discard");
        assert_eq!(
            events,
            vec![ReadModelEvent::ParkedEventsDiscarded {
                aggregate_type: "Customer".into(),
                aggregate_id: "c-1".into(),
                positions: vec!["100.0".into()],
                reason: "fixed by hand".into(),
                at: test_now(),
            }]
        );
    }

    #[test]
    fn it_should_not_discard_without_a_reason() {
        let err = ReadModel::default()
            .decide(discard(" "), &ctx(Actor::System))
            .expect_err("no reason");
        assert!(matches!(
            err,
            ReadModelError::Validation {
                field: "reason",
                ..
            }
        ));
    }

    #[test]
    fn it_should_not_let_a_customer_discard_anything() {
        let err = ReadModel::default()
            .decide(discard("mine"), &ctx(customer_actor(1)))
            .expect_err("customer");
        assert_eq!(err, ReadModelError::NotAllowed);
    }
}

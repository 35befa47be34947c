//! Referral: one new customer (the referee) referred by an existing one (the referrer) with the
//! referrer's code, tracked from sign-up to the referee's first completed job, when both sides
//! are rewarded — once.
//!
//! The stream id is [`ReferralId::for_referee`], so a customer can be referred only once.
//! Codes themselves are issued on the Customer aggregate ([`ReferralCode::from_seed`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::validation_error;
use crate::ids::{CustomerId, JobId, ReferralId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::ReferralCode;

/// `Aggregate::TYPE` of [`Referral`].
pub const AGGREGATE_TYPE: &str = "Referral";

/// What can be asked of a referral.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferralCommand {
    /// A new customer signed up with a code; the commands layer resolved the code's owner.
    Record {
        /// The code's owner.
        referrer: CustomerId,
        /// The new customer (the stream is keyed by them).
        referee: CustomerId,
        /// The code as typed.
        code: String,
    },
    /// The referee completed a job (policy on `JobCompleted`); only the first one rewards.
    RecordCompletedJob {
        /// The job.
        job_id: JobId,
        /// Points for the referrer (from `LoyaltyRules::referrer_bonus`).
        referrer_points: u32,
        /// Points for the referee (from `LoyaltyRules::referee_bonus`).
        referee_points: u32,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Referral`] aggregate.
    pub enum ReferralEvent {
        /// A referee signed up with a referrer's code.
        ReferralRecorded {
            /// The referral.
            referral_id: ReferralId,
            /// Who referred.
            referrer_customer_id: CustomerId,
            /// Who was referred.
            referee_customer_id: CustomerId,
            /// The code used.
            code: ReferralCode,
            /// When.
            at: DateTime<Utc>,
        },
        /// The referee's first completed job: both sides are to be rewarded (a policy awards
        /// the loyalty points, once per referral).
        ReferralRewarded {
            /// Who referred.
            referrer_customer_id: CustomerId,
            /// Who was referred.
            referee_customer_id: CustomerId,
            /// The referee's first completed job.
            job_id: JobId,
            /// Points for the referrer.
            referrer_points: i64,
            /// Points for the referee.
            referee_points: i64,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a referral command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferralError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A customer used their own code.
    #[error("customers cannot refer themselves")]
    SelfReferral,
    /// The referee was already referred.
    #[error("the customer was already referred")]
    AlreadyReferred,
    /// No referral recorded for this referee.
    #[error("unknown referral")]
    UnknownReferral,
}
validation_error!(ReferralError);

/// The referral's current state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referral {
    referrer: Option<CustomerId>,
    referee: Option<CustomerId>,
    rewarded_for: Option<JobId>,
}

impl Referral {
    /// Whether both sides were rewarded.
    pub fn is_rewarded(&self) -> bool {
        self.rewarded_for.is_some()
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`ReferralError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: ReferralCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ReferralEvent>, ReferralError> {
        let at = ctx.now;
        match cmd {
            ReferralCommand::Record {
                referrer,
                referee,
                code,
            } => {
                let code = ReferralCode::parse(&code)?;
                if referrer == referee {
                    return Err(ReferralError::SelfReferral);
                }
                if self.referee.is_some() {
                    return Err(ReferralError::AlreadyReferred);
                }
                Ok(vec![ReferralEvent::ReferralRecorded {
                    referral_id: ReferralId::for_referee(referee),
                    referrer_customer_id: referrer,
                    referee_customer_id: referee,
                    code,
                    at,
                }])
            }
            ReferralCommand::RecordCompletedJob {
                job_id,
                referrer_points,
                referee_points,
            } => {
                let (Some(referrer), Some(referee)) = (self.referrer, self.referee) else {
                    return Err(ReferralError::UnknownReferral);
                };
                // Later jobs (or a retried policy) change nothing: rewarded once.
                if self.rewarded_for.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![ReferralEvent::ReferralRewarded {
                    referrer_customer_id: referrer,
                    referee_customer_id: referee,
                    job_id,
                    referrer_points: i64::from(referrer_points),
                    referee_points: i64::from(referee_points),
                    at,
                }])
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: ReferralEvent) {
        match event {
            ReferralEvent::ReferralRecorded {
                referrer_customer_id,
                referee_customer_id,
                ..
            } => {
                self.referrer = Some(referrer_customer_id);
                self.referee = Some(referee_customer_id);
            }
            ReferralEvent::ReferralRewarded { job_id, .. } => self.rewarded_for = Some(job_id),
        }
    }
}

cqrs_aggregate!(
    Referral,
    AGGREGATE_TYPE,
    ReferralCommand,
    ReferralEvent,
    ReferralError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use proptest::prelude::*;
    use std::collections::HashSet;
    use uuid::Uuid;

    fn c(n: u128) -> CustomerId {
        CustomerId(Uuid::from_u128(n))
    }
    fn code() -> ReferralCode {
        ReferralCode::from_seed(c(1).0, 0)
    }
    fn recorded() -> ReferralEvent {
        ReferralEvent::ReferralRecorded {
            referral_id: ReferralId::for_referee(c(2)),
            referrer_customer_id: c(1),
            referee_customer_id: c(2),
            code: code(),
            at: test_now(),
        }
    }
    fn job_done(n: u128) -> ReferralCommand {
        ReferralCommand::RecordCompletedJob {
            job_id: JobId(Uuid::from_u128(n)),
            referrer_points: 250,
            referee_points: 100,
        }
    }
    fn when(
        given: Vec<ReferralEvent>,
        cmd: ReferralCommand,
    ) -> Result<Vec<ReferralEvent>, ReferralError> {
        testing::run::<Referral, _>(testing::test_services(), given, crate::Actor::System, cmd)
    }

    #[test]
    fn it_should_record_a_referral_made_with_a_code() {
        let cmd = ReferralCommand::Record {
            referrer: c(1),
            referee: c(2),
            code: code().as_str().to_lowercase(),
        };
        assert_eq!(when(vec![], cmd), Ok(vec![recorded()]));
    }

    #[test]
    fn it_should_refuse_a_self_referral() {
        let cmd = ReferralCommand::Record {
            referrer: c(1),
            referee: c(1),
            code: code().to_string(),
        };
        assert_eq!(when(vec![], cmd), Err(ReferralError::SelfReferral));
    }

    #[test]
    fn it_should_refuse_a_malformed_code_naming_the_field() {
        let cmd = ReferralCommand::Record {
            referrer: c(1),
            referee: c(2),
            code: "OOPS".into(),
        };
        assert_eq!(
            when(vec![], cmd).expect_err("bad").field(),
            Some("referral_code")
        );
    }

    #[test]
    fn it_should_not_refer_the_same_customer_twice() {
        let cmd = ReferralCommand::Record {
            referrer: c(3),
            referee: c(2),
            code: code().to_string(),
        };
        assert_eq!(
            when(vec![recorded()], cmd),
            Err(ReferralError::AlreadyReferred)
        );
    }

    #[test]
    fn it_should_reward_both_sides_on_the_referees_first_completed_job() {
        assert_eq!(
            when(vec![recorded()], job_done(10)),
            Ok(vec![ReferralEvent::ReferralRewarded {
                referrer_customer_id: c(1),
                referee_customer_id: c(2),
                job_id: JobId(Uuid::from_u128(10)),
                referrer_points: 250,
                referee_points: 100,
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_reward_only_once_even_after_more_completed_jobs() {
        let mut given = vec![recorded()];
        given.extend(when(vec![recorded()], job_done(10)).expect("ok"));
        assert_eq!(when(given, job_done(11)), Ok(vec![]));
    }

    #[test]
    fn it_should_not_reward_an_unknown_referral() {
        assert_eq!(
            when(vec![], job_done(10)),
            Err(ReferralError::UnknownReferral)
        );
    }

    #[test]
    fn it_should_give_different_customers_different_codes() {
        let codes: HashSet<_> = (0..10_000u128)
            .map(|n| ReferralCode::from_seed(Uuid::from_u128(n), 0))
            .collect();
        assert_eq!(codes.len(), 10_000);
    }

    proptest! {
        /// Codes are 8 characters from the alphabet, never 0, O, 1 or I, deterministic, and
        /// parse back to themselves.
        #[test]
        fn referral_codes_are_human_friendly(seed in any::<u128>(), attempt in 0u32..5) {
            let code = ReferralCode::from_seed(Uuid::from_u128(seed), attempt);
            prop_assert_eq!(code.as_str().len(), ReferralCode::LEN);
            prop_assert!(code.as_str().bytes().all(|b| ReferralCode::ALPHABET.contains(&b)));
            prop_assert!(!code.as_str().contains(['0', 'O', '1', 'I']));
            prop_assert_eq!(&ReferralCode::from_seed(Uuid::from_u128(seed), attempt), &code);
            prop_assert_eq!(ReferralCode::parse(code.as_str()).expect("parses"), code);
        }
    }
}

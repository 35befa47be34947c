//! JobRun: one run of a scheduled job for one slot (the instant its cron expression named).
//!
//! The aggregate id is derived from the job and the slot ([`job_run_id`]), so every scheduler
//! instance that wants to run a slot addresses the same stream. `Start` is refused once the
//! run exists; with the store's optimistic concurrency this makes "a slot runs once, even with
//! several server instances" hold on every engine without a lease table.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ports::{cqrs_aggregate, Actor, CommandContext};

/// `Aggregate::TYPE` of [`JobRun`].
pub const AGGREGATE_TYPE: &str = "JobRun";

/// Longest error text kept in a [`JobRunEvent::JobRunFailed`] event.
pub const MAX_ERROR_LEN: usize = 2_000;

/// The stream id of the run of `job` for `slot`: UUID v5 of `"{job}:{slot as RFC 3339}"`.
pub fn job_run_id(job: &str, slot: DateTime<Utc>) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x3b1e_6a0d_52c4_4f7e_9d21_7a8c_0e5f_4b12);
    let name = format!("{job}:{}", slot.to_rfc3339_opts(SecondsFormat::Secs, true));
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRunTrigger {
    /// The scheduler, on time.
    Scheduled,
    /// `POST /api/cron/execute/{job}`.
    Manual,
    /// The scheduler at start, for the latest slot missed while the server was down.
    CatchUp,
}

impl JobRunTrigger {
    /// The snake_case name (`catch_up`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobRunTrigger::Scheduled => "scheduled",
            JobRunTrigger::Manual => "manual",
            JobRunTrigger::CatchUp => "catch_up",
        }
    }
}

/// What a run did, counted over the things it looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunCounts {
    /// Things examined (customers, opportunities, recipients…).
    pub processed: u64,
    /// Things a command changed.
    pub changed: u64,
    /// Things left alone (not due, not eligible, already done).
    pub skipped: u64,
}

/// A run's lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobRunStatus {
    /// Not started (the stream is empty).
    #[default]
    NotStarted,
    /// Started; attempts may have failed and be retried.
    Running,
    /// Finished successfully.
    Finished,
    /// Failed for good (the last attempt failed).
    Failed,
}

/// What can be asked of a job run.
#[derive(Debug, Clone, PartialEq)]
pub enum JobRunCommand {
    /// Claim the slot and start the run.
    Start {
        /// The job's name (`award-birthday-points`).
        job: String,
        /// The slot the run is for (the aggregate id is derived from job and slot).
        slot: DateTime<Utc>,
        /// What started it.
        trigger: JobRunTrigger,
    },
    /// The run completed.
    Finish {
        /// What it did.
        counts: JobRunCounts,
        /// Named figures the run produced (metrics closed, report totals).
        figures: BTreeMap<String, i64>,
        /// A remark for operators (e.g. "no provider configured").
        note: Option<String>,
    },
    /// An attempt failed.
    Fail {
        /// Why (no secrets, no personal data).
        error: String,
        /// 1 for the first attempt.
        attempt: u32,
        /// Whether another attempt follows; false makes the failure final.
        will_retry: bool,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`JobRun`] aggregate.
    pub enum JobRunEvent {
        /// A scheduler instance claimed a job's slot and started the run.
        JobRunStarted {
            /// The job's name.
            job: String,
            /// The slot (the cron instant, UTC).
            slot: DateTime<Utc>,
            /// `scheduled`, `manual` or `catch_up`.
            trigger: JobRunTrigger,
            /// When.
            at: DateTime<Utc>,
        },
        /// The run completed.
        JobRunFinished {
            /// Processed / changed / skipped.
            counts: JobRunCounts,
            /// Named figures the run produced (may be empty).
            figures: BTreeMap<String, i64>,
            /// A remark for operators, if any.
            note: Option<String>,
            /// When.
            at: DateTime<Utc>,
        },
        /// An attempt of the run failed; final when `will_retry` is false.
        JobRunFailed {
            /// Why.
            error: String,
            /// Which attempt (1-based).
            attempt: u32,
            /// Whether the scheduler retries.
            will_retry: bool,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a job-run command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobRunError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The slot was claimed already (by this or another instance).
    #[error("the run for this slot was already started")]
    AlreadyStarted,
    /// Finish or fail before start.
    #[error("unknown job run")]
    UnknownRun,
    /// Finish or fail after the run ended.
    #[error("the run has already ended")]
    AlreadyEnded,
    /// Customers cannot run jobs.
    #[error("only the system or staff can run scheduled jobs")]
    NotAllowed,
}
validation_error!(JobRunError);

/// The run's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    job: Option<String>,
    slot: Option<DateTime<Utc>>,
    trigger: Option<JobRunTrigger>,
    status: JobRunStatus,
    attempts_failed: u32,
    counts: JobRunCounts,
}

impl JobRun {
    /// Where the run is.
    pub fn status(&self) -> JobRunStatus {
        self.status
    }
    /// The job, once started.
    pub fn job(&self) -> Option<&str> {
        self.job.as_deref()
    }
    /// The slot, once started.
    pub fn slot(&self) -> Option<DateTime<Utc>> {
        self.slot
    }
    /// What started it.
    pub fn trigger(&self) -> Option<JobRunTrigger> {
        self.trigger
    }
    /// Failed attempts so far.
    pub fn attempts_failed(&self) -> u32 {
        self.attempts_failed
    }
    /// Counts of the finished run.
    pub fn counts(&self) -> JobRunCounts {
        self.counts
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`JobRunError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: JobRunCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<JobRunEvent>, JobRunError> {
        if matches!(ctx.actor, Actor::Customer { .. }) {
            return Err(JobRunError::NotAllowed);
        }
        let at = ctx.now;
        match cmd {
            JobRunCommand::Start { job, slot, trigger } => {
                if self.status != JobRunStatus::NotStarted {
                    return Err(JobRunError::AlreadyStarted);
                }
                let valid = !job.is_empty()
                    && job.len() <= 64
                    && job
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !valid {
                    return Err(ValidationError::new(
                        "job",
                        "must be 1-64 lower-case letters, digits or dashes",
                    )
                    .into());
                }
                Ok(vec![JobRunEvent::JobRunStarted {
                    job,
                    slot,
                    trigger,
                    at,
                }])
            }
            JobRunCommand::Finish {
                counts,
                figures,
                note,
            } => {
                self.check_running()?;
                Ok(vec![JobRunEvent::JobRunFinished {
                    counts,
                    figures,
                    note,
                    at,
                }])
            }
            JobRunCommand::Fail {
                error,
                attempt,
                will_retry,
            } => {
                self.check_running()?;
                if attempt == 0 {
                    return Err(ValidationError::new("attempt", "attempts count from 1").into());
                }
                // Errors are for operators; a runaway message must not bloat the log.
                let error: String = error.chars().take(MAX_ERROR_LEN).collect();
                Ok(vec![JobRunEvent::JobRunFailed {
                    error,
                    attempt,
                    will_retry,
                    at,
                }])
            }
        }
    }

    fn check_running(&self) -> Result<(), JobRunError> {
        match self.status {
            JobRunStatus::NotStarted => Err(JobRunError::UnknownRun),
            JobRunStatus::Running => Ok(()),
            JobRunStatus::Finished | JobRunStatus::Failed => Err(JobRunError::AlreadyEnded),
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: JobRunEvent) {
        match event {
            JobRunEvent::JobRunStarted {
                job, slot, trigger, ..
            } => {
                self.job = Some(job);
                self.slot = Some(slot);
                self.trigger = Some(trigger);
                self.status = JobRunStatus::Running;
            }
            JobRunEvent::JobRunFinished { counts, .. } => {
                self.counts = counts;
                self.status = JobRunStatus::Finished;
            }
            JobRunEvent::JobRunFailed { will_retry, .. } => {
                self.attempts_failed += 1;
                if !will_retry {
                    self.status = JobRunStatus::Failed;
                }
            }
        }
    }
}

cqrs_aggregate!(
    JobRun,
    AGGREGATE_TYPE,
    JobRunCommand,
    JobRunEvent,
    JobRunError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{customer_actor, run, test_now, test_services};

    fn start() -> JobRunCommand {
        JobRunCommand::Start {
            job: "award-birthday-points".into(),
            slot: test_now(),
            trigger: JobRunTrigger::Scheduled,
        }
    }

    fn started() -> JobRunEvent {
        JobRunEvent::JobRunStarted {
            job: "award-birthday-points".into(),
            slot: test_now(),
            trigger: JobRunTrigger::Scheduled,
            at: test_now(),
        }
    }

    #[test]
    fn it_should_start_a_run_for_a_free_slot() {
        let events =
            run::<JobRun, _>(test_services(), vec![], Actor::System, start()).expect("started");
        assert_eq!(events, vec![started()]);
    }

    #[test]
    fn it_should_not_start_a_slot_twice() {
        let e = run::<JobRun, _>(test_services(), vec![started()], Actor::System, start());
        assert_eq!(e, Err(JobRunError::AlreadyStarted));
    }

    #[test]
    fn it_should_not_start_a_slot_again_after_it_finished() {
        let finished = JobRunEvent::JobRunFinished {
            counts: JobRunCounts::default(),
            figures: BTreeMap::new(),
            note: None,
            at: test_now(),
        };
        let e = run::<JobRun, _>(
            test_services(),
            vec![started(), finished],
            Actor::System,
            start(),
        );
        assert_eq!(e, Err(JobRunError::AlreadyStarted));
    }

    #[test]
    fn it_should_keep_running_after_a_failed_attempt_that_will_be_retried() {
        let mut run_state = JobRun::default();
        run_state.apply_event(started());
        run_state.apply_event(JobRunEvent::JobRunFailed {
            error: "database down".into(),
            attempt: 1,
            will_retry: true,
            at: test_now(),
        });
        assert_eq!(run_state.status(), JobRunStatus::Running);
        let finish = JobRunCommand::Finish {
            counts: JobRunCounts {
                processed: 3,
                changed: 1,
                skipped: 2,
            },
            figures: BTreeMap::new(),
            note: None,
        };
        let ctx = test_services().context(Actor::System);
        assert!(run_state.decide(finish, &ctx).is_ok());
    }

    #[test]
    fn it_should_end_the_run_on_a_final_failure() {
        let fail = JobRunCommand::Fail {
            error: "x".repeat(5_000),
            attempt: 3,
            will_retry: false,
        };
        let events = run::<JobRun, _>(test_services(), vec![started()], Actor::System, fail)
            .expect("recorded");
        let JobRunEvent::JobRunFailed { error, .. } = &events[0] else {
            panic!("expected JobRunFailed, got {events:?}");
        };
        assert_eq!(error.len(), MAX_ERROR_LEN);
        let mut state = JobRun::default();
        state.apply_event(started());
        state.apply_event(events[0].clone());
        assert_eq!(state.status(), JobRunStatus::Failed);
        let again = JobRunCommand::Finish {
            counts: JobRunCounts::default(),
            figures: BTreeMap::new(),
            note: None,
        };
        let ctx = test_services().context(Actor::System);
        assert_eq!(state.decide(again, &ctx), Err(JobRunError::AlreadyEnded));
    }

    #[test]
    fn it_should_not_finish_a_run_that_never_started() {
        let finish = JobRunCommand::Finish {
            counts: JobRunCounts::default(),
            figures: BTreeMap::new(),
            note: None,
        };
        let e = run::<JobRun, _>(test_services(), vec![], Actor::System, finish);
        assert_eq!(e, Err(JobRunError::UnknownRun));
    }

    #[test]
    fn it_should_refuse_a_malformed_job_name_and_a_customer() {
        let bad = JobRunCommand::Start {
            job: "Drop Table".into(),
            slot: test_now(),
            trigger: JobRunTrigger::Manual,
        };
        let e = run::<JobRun, _>(test_services(), vec![], Actor::System, bad);
        assert!(matches!(
            e,
            Err(JobRunError::Validation { field: "job", .. })
        ));
        let e = run::<JobRun, _>(test_services(), vec![], customer_actor(1), start());
        assert_eq!(e, Err(JobRunError::NotAllowed));
    }

    #[test]
    fn it_should_derive_one_stream_per_job_and_slot() {
        let a = job_run_id("check-system-health", test_now());
        assert_eq!(a, job_run_id("check-system-health", test_now()));
        assert_ne!(
            a,
            job_run_id(
                "check-system-health",
                test_now() + chrono::Duration::minutes(15)
            )
        );
        assert_ne!(a, job_run_id("cleanup-old-logs", test_now()));
    }

    #[test]
    fn events_serialise_externally_tagged() {
        let json = serde_json::to_value(started()).expect("serialises");
        assert_eq!(json["JobRunStarted"]["trigger"], "scheduled");
        assert_eq!(json["JobRunStarted"]["slot"], "2025-06-15T15:00:00Z");
    }
}

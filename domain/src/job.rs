//! Job: a cleaning appointment from booking to completion or cancellation, and its payment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ids::{CustomerId, JobId, PaymentId, StaffUserId, VehicleId};
use crate::ports::{cqrs_aggregate, Actor, CommandContext};
use crate::values::{Money, NonEmptyText, Reason};

/// `Aggregate::TYPE` of [`Job`].
pub const AGGREGATE_TYPE: &str = "Job";

/// How a job was booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingSource {
    /// By staff (phone, walk-in).
    Staff,
    /// By the customer in the portal.
    Online,
}

/// When a job takes place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleWindow {
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC), after `start`.
    pub end: DateTime<Utc>,
}

impl ScheduleWindow {
    /// Validates a window (field `window`): it must end after it starts and last at most a day.
    ///
    /// # Errors
    /// `window` when the window is empty, backwards or longer than 24 hours.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ValidationError> {
        if end <= start {
            return Err(ValidationError::new("window", "must end after it starts"));
        }
        if end - start > chrono::Duration::hours(24) {
            return Err(ValidationError::new("window", "must last at most 24 hours"));
        }
        Ok(Self { start, end })
    }
}

/// Result of a payment attempt for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PaymentOutcome {
    /// The money was taken.
    Paid,
    /// The attempt failed.
    Failed {
        /// The provider's reason.
        reason: String,
    },
}

/// What can be asked of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobCommand {
    /// Book a job, optionally already scheduled.
    Book {
        /// The new job's id (the aggregate id).
        job_id: JobId,
        /// The customer (existence is checked by the commands layer).
        customer_id: CustomerId,
        /// Staff or online.
        source: BookingSource,
        /// Services requested, e.g. "carpet cleaning".
        services: Vec<String>,
        /// When, if already agreed.
        window: Option<ScheduleWindow>,
    },
    /// Put an unscheduled job in the calendar.
    Schedule {
        /// When.
        window: ScheduleWindow,
    },
    /// Move a scheduled job; the previous window is kept in history.
    Reschedule {
        /// The new window.
        window: ScheduleWindow,
        /// Why, if given.
        reason: Option<String>,
    },
    /// Assign the technician.
    AssignTechnician {
        /// The technician (a staff user).
        technician_id: StaffUserId,
    },
    /// Assign the van.
    AssignVehicle {
        /// The vehicle.
        vehicle_id: VehicleId,
    },
    /// The technician started work.
    Start,
    /// The work is done.
    Complete {
        /// Amount charged, in cents.
        amount_cents: i64,
        /// Services performed.
        services: Vec<String>,
        /// Who did it; defaults to the assigned technician.
        technician_id: Option<StaffUserId>,
    },
    /// Cancel the job.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Record the result of a payment for this job.
    RecordPayment {
        /// The payment.
        payment_id: PaymentId,
        /// Amount, in cents.
        amount_cents: i64,
        /// Paid or failed.
        outcome: PaymentOutcome,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Job`] aggregate. Each carries `customer_id` for service-history views.
    pub enum JobEvent {
        /// A job was booked.
        JobBooked {
            /// The job.
            job_id: JobId,
            /// The customer.
            customer_id: CustomerId,
            /// Staff or online.
            source: BookingSource,
            /// Services requested.
            services: Vec<NonEmptyText>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The job was put in the calendar.
        JobScheduled {
            /// The customer.
            customer_id: CustomerId,
            /// When the job takes place.
            window: ScheduleWindow,
            /// When it was scheduled.
            at: DateTime<Utc>,
        },
        /// The job was moved; `previous` keeps the history.
        JobRescheduled {
            /// The customer.
            customer_id: CustomerId,
            /// The window it had.
            previous: ScheduleWindow,
            /// The new window.
            window: ScheduleWindow,
            /// Why, if given.
            reason: Option<Reason>,
            /// When it was moved.
            at: DateTime<Utc>,
        },
        /// A technician was assigned.
        TechnicianAssigned {
            /// The customer.
            customer_id: CustomerId,
            /// The technician.
            technician_id: StaffUserId,
            /// When.
            at: DateTime<Utc>,
        },
        /// A vehicle was assigned.
        VehicleAssigned {
            /// The customer.
            customer_id: CustomerId,
            /// The van.
            vehicle_id: VehicleId,
            /// When.
            at: DateTime<Utc>,
        },
        /// Work started.
        JobStarted {
            /// The customer.
            customer_id: CustomerId,
            /// The assigned technician, if any.
            technician_id: Option<StaffUserId>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The job was completed.
        JobCompleted {
            /// The customer.
            customer_id: CustomerId,
            /// Amount charged.
            amount: Money,
            /// Services performed.
            services: Vec<NonEmptyText>,
            /// Who did the work.
            technician_id: StaffUserId,
            /// The van used, if one was assigned.
            vehicle_id: Option<VehicleId>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The job was cancelled.
        JobCancelled {
            /// The customer.
            customer_id: CustomerId,
            /// Why.
            reason: Reason,
            /// Who cancelled.
            cancelled_by: Actor,
            /// When.
            at: DateTime<Utc>,
        },
        /// A payment for the job succeeded.
        JobPaid {
            /// The customer.
            customer_id: CustomerId,
            /// The payment.
            payment_id: PaymentId,
            /// Amount paid.
            amount: Money,
            /// When.
            at: DateTime<Utc>,
        },
        /// A payment for the job failed.
        JobPaymentFailed {
            /// The customer.
            customer_id: CustomerId,
            /// The payment.
            payment_id: PaymentId,
            /// Amount attempted.
            amount: Money,
            /// The provider's reason.
            reason: String,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a job command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `Book` on an existing job.
    #[error("the job already exists")]
    AlreadyExists,
    /// Any command but `Book` on a job that does not exist.
    #[error("unknown job")]
    UnknownJob,
    /// The job has no schedule yet (start, complete, reschedule).
    #[error("the job has not been scheduled")]
    NotScheduled,
    /// `Schedule` on a job that already has a window: use `Reschedule`.
    #[error("the job is already scheduled; reschedule it instead")]
    AlreadyScheduled,
    /// The job has started: it can no longer be started or rescheduled.
    #[error("the job has already started")]
    AlreadyStarted,
    /// The job was completed.
    #[error("the job is already completed")]
    JobAlreadyCompleted,
    /// The job was cancelled.
    #[error("the job was cancelled")]
    JobCancelled,
    /// A payment already succeeded for this job.
    #[error("the job is already paid")]
    AlreadyPaid,
    /// A customer tried to book for, or act on, someone else's job.
    #[error("customers can only book and change their own jobs")]
    NotYourJob,
    /// A customer tried what only staff do (assign, start, complete, record a payment).
    #[error("only staff can do this to a job")]
    StaffOnly,
}
validation_error!(JobError);

/// Where the job stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Not booked yet (the empty aggregate).
    #[default]
    New,
    /// Booked, no window yet.
    Booked,
    /// In the calendar.
    Scheduled,
    /// Work under way.
    InProgress,
    /// Done.
    Completed,
    /// Cancelled.
    Cancelled,
}

/// The job's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    id: Option<JobId>,
    customer_id: Option<CustomerId>,
    status: JobStatus,
    window: Option<ScheduleWindow>,
    previous_windows: Vec<ScheduleWindow>,
    technician_id: Option<StaffUserId>,
    vehicle_id: Option<VehicleId>,
    amount: Option<Money>,
    paid: bool,
}

/// What a decision returns: the events to record, or why nothing is.
type Decision = Result<Vec<JobEvent>, JobError>;

/// The services of a booking or a completion: each valid, at least one.
fn required_services(raw: &[String]) -> Result<Vec<NonEmptyText>, ValidationError> {
    let services = raw
        .iter()
        .map(|s| NonEmptyText::parse("services", s, 100))
        .collect::<Result<Vec<_>, _>>()?;
    if services.is_empty() {
        return Err(ValidationError::new(
            "services",
            "at least one service is required",
        ));
    }
    Ok(services)
}

impl Job {
    /// Current status.
    pub fn status(&self) -> JobStatus {
        self.status
    }
    /// Current window.
    pub fn window(&self) -> Option<ScheduleWindow> {
        self.window
    }
    /// Windows the job had before each reschedule, oldest first.
    pub fn previous_windows(&self) -> &[ScheduleWindow] {
        &self.previous_windows
    }

    /// The van assigned to it.
    pub fn vehicle_id(&self) -> Option<VehicleId> {
        self.vehicle_id
    }

    /// The customer.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.customer_id
    }

    /// Refuses commands on finished jobs.
    fn ensure_active(&self) -> Result<CustomerId, JobError> {
        match (self.status, self.customer_id) {
            (JobStatus::New, _) | (_, None) => Err(JobError::UnknownJob),
            (JobStatus::Completed, _) => Err(JobError::JobAlreadyCompleted),
            (JobStatus::Cancelled, _) => Err(JobError::JobCancelled),
            (_, Some(c)) => Ok(c),
        }
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`JobError`]; nothing is recorded when an error is returned.
    pub fn decide(&self, cmd: JobCommand, ctx: &CommandContext) -> Result<Vec<JobEvent>, JobError> {
        self.ensure_actor_may(&cmd, ctx.actor)?;
        let at = ctx.now;
        match cmd {
            JobCommand::Book {
                job_id,
                customer_id,
                source,
                services,
                window,
            } => self.book(job_id, customer_id, source, &services, window, ctx),
            JobCommand::Schedule { window } => self.schedule(window, at),
            JobCommand::Reschedule { window, reason } => {
                self.reschedule(window, reason.as_deref(), at)
            }
            JobCommand::AssignTechnician { technician_id } => {
                self.assign_technician(technician_id, at)
            }
            JobCommand::AssignVehicle { vehicle_id } => self.assign_vehicle(vehicle_id, at),
            JobCommand::Start => self.start(at),
            JobCommand::Complete {
                amount_cents,
                services,
                technician_id,
            } => self.complete(amount_cents, &services, technician_id, at),
            JobCommand::Cancel { reason } => self.cancel(&reason, ctx),
            JobCommand::RecordPayment {
                payment_id,
                amount_cents,
                outcome,
            } => self.record_payment(payment_id, amount_cents, outcome, at),
        }
    }

    /// A customer (the portal) may schedule, move or cancel their own job before work
    /// starts; everything else is staff's. `Book` checks the customer itself, after refusing an
    /// existing job.
    fn ensure_actor_may(&self, cmd: &JobCommand, actor: Actor) -> Result<(), JobError> {
        let Actor::Customer { id } = actor else {
            return Ok(());
        };
        if matches!(cmd, JobCommand::Book { .. }) {
            return Ok(());
        }
        if self.customer_id.is_some() && self.customer_id != Some(id) {
            return Err(JobError::NotYourJob);
        }
        match cmd {
            JobCommand::Schedule { .. }
            | JobCommand::Reschedule { .. }
            | JobCommand::Cancel { .. } => {
                if self.status == JobStatus::InProgress {
                    return Err(JobError::AlreadyStarted);
                }
                Ok(())
            }
            _ => Err(JobError::StaffOnly),
        }
    }

    /// Books the job, scheduled at once when a window is given.
    fn book(
        &self,
        job_id: JobId,
        customer_id: CustomerId,
        source: BookingSource,
        services: &[String],
        window: Option<ScheduleWindow>,
        ctx: &CommandContext,
    ) -> Decision {
        if self.status != JobStatus::New {
            return Err(JobError::AlreadyExists);
        }
        if let Actor::Customer { id } = ctx.actor {
            if id != customer_id {
                return Err(JobError::NotYourJob);
            }
        }
        let services = required_services(services)?;
        let at = ctx.now;
        let mut events = vec![JobEvent::JobBooked {
            job_id,
            customer_id,
            source,
            services,
            at,
        }];
        if let Some(window) = window {
            events.push(JobEvent::JobScheduled {
                customer_id,
                window,
                at,
            });
        }
        Ok(events)
    }

    fn schedule(&self, window: ScheduleWindow, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_active()?;
        if self.status != JobStatus::Booked {
            return Err(match self.status {
                JobStatus::InProgress => JobError::AlreadyStarted,
                _ => JobError::AlreadyScheduled,
            });
        }
        Ok(vec![JobEvent::JobScheduled {
            customer_id,
            window,
            at,
        }])
    }

    /// Moves a scheduled job to a different window; the previous one goes into history.
    fn reschedule(
        &self,
        window: ScheduleWindow,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Decision {
        let customer_id = self.ensure_active()?;
        let previous = match (self.status, self.window) {
            (JobStatus::InProgress, _) => return Err(JobError::AlreadyStarted),
            (JobStatus::Scheduled, Some(w)) => w,
            _ => return Err(JobError::NotScheduled),
        };
        if previous == window {
            return Err(ValidationError::new("window", "is the job's current window").into());
        }
        let reason = match reason.map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(Reason::parse(r)?),
        };
        Ok(vec![JobEvent::JobRescheduled {
            customer_id,
            previous,
            window,
            reason,
            at,
        }])
    }

    fn assign_technician(&self, technician_id: StaffUserId, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_active()?;
        if self.technician_id == Some(technician_id) {
            return Ok(vec![]);
        }
        Ok(vec![JobEvent::TechnicianAssigned {
            customer_id,
            technician_id,
            at,
        }])
    }

    fn assign_vehicle(&self, vehicle_id: VehicleId, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_active()?;
        if self.vehicle_id == Some(vehicle_id) {
            return Ok(vec![]);
        }
        Ok(vec![JobEvent::VehicleAssigned {
            customer_id,
            vehicle_id,
            at,
        }])
    }

    fn start(&self, at: DateTime<Utc>) -> Decision {
        let customer_id = self.ensure_active()?;
        match self.status {
            JobStatus::Scheduled => Ok(vec![JobEvent::JobStarted {
                customer_id,
                technician_id: self.technician_id,
                at,
            }]),
            JobStatus::InProgress => Err(JobError::AlreadyStarted),
            _ => Err(JobError::NotScheduled),
        }
    }

    /// Completes a scheduled or started job; the technician defaults to the assigned one.
    fn complete(
        &self,
        amount_cents: i64,
        services: &[String],
        technician_id: Option<StaffUserId>,
        at: DateTime<Utc>,
    ) -> Decision {
        let customer_id = self.ensure_active()?;
        if !matches!(self.status, JobStatus::Scheduled | JobStatus::InProgress) {
            return Err(JobError::NotScheduled);
        }
        let amount = Money::from_cents(amount_cents)?;
        let services = required_services(services)?;
        let technician_id = technician_id.or(self.technician_id).ok_or_else(|| {
            ValidationError::new("technician_id", "no technician given or assigned")
        })?;
        Ok(vec![JobEvent::JobCompleted {
            customer_id,
            amount,
            services,
            technician_id,
            vehicle_id: self.vehicle_id,
            at,
        }])
    }

    fn cancel(&self, reason: &str, ctx: &CommandContext) -> Decision {
        let customer_id = self.ensure_active()?;
        Ok(vec![JobEvent::JobCancelled {
            customer_id,
            reason: Reason::parse(reason)?,
            cancelled_by: ctx.actor,
            at: ctx.now,
        }])
    }

    /// Payments may arrive for a job in any state (money already moved), but not twice.
    fn record_payment(
        &self,
        payment_id: PaymentId,
        amount_cents: i64,
        outcome: PaymentOutcome,
        at: DateTime<Utc>,
    ) -> Decision {
        let customer_id = self.customer_id.ok_or(JobError::UnknownJob)?;
        let amount = Money::from_cents(amount_cents)?;
        if amount == Money::ZERO {
            return Err(ValidationError::new("amount_cents", "must be positive").into());
        }
        if self.paid {
            return Err(JobError::AlreadyPaid);
        }
        Ok(vec![match outcome {
            PaymentOutcome::Paid => JobEvent::JobPaid {
                customer_id,
                payment_id,
                amount,
                at,
            },
            PaymentOutcome::Failed { reason } => JobEvent::JobPaymentFailed {
                customer_id,
                payment_id,
                amount,
                reason,
                at,
            },
        }])
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: JobEvent) {
        match event {
            JobEvent::JobBooked {
                job_id,
                customer_id,
                ..
            } => {
                self.id = Some(job_id);
                self.customer_id = Some(customer_id);
                self.status = JobStatus::Booked;
            }
            JobEvent::JobScheduled { window, .. } => {
                self.window = Some(window);
                self.status = JobStatus::Scheduled;
            }
            JobEvent::JobRescheduled {
                previous, window, ..
            } => {
                self.previous_windows.push(previous);
                self.window = Some(window);
            }
            JobEvent::TechnicianAssigned { technician_id, .. } => {
                self.technician_id = Some(technician_id);
            }
            JobEvent::VehicleAssigned { vehicle_id, .. } => self.vehicle_id = Some(vehicle_id),
            JobEvent::JobStarted { .. } => self.status = JobStatus::InProgress,
            JobEvent::JobCompleted {
                amount,
                technician_id,
                ..
            } => {
                self.status = JobStatus::Completed;
                self.amount = Some(amount);
                self.technician_id = Some(technician_id);
            }
            JobEvent::JobCancelled { .. } => self.status = JobStatus::Cancelled,
            JobEvent::JobPaid { .. } => self.paid = true,
            JobEvent::JobPaymentFailed { .. } => {}
        }
    }
}

cqrs_aggregate!(Job, AGGREGATE_TYPE, JobCommand, JobEvent, JobError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use chrono::TimeZone;
    use uuid::Uuid;

    fn job_id() -> JobId {
        JobId(Uuid::from_u128(10))
    }
    fn customer() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }
    fn tech() -> StaffUserId {
        StaffUserId(Uuid::from_u128(77))
    }
    fn window(day: u32) -> ScheduleWindow {
        let start = Utc
            .with_ymd_and_hms(2025, 6, day, 14, 0, 0)
            .single()
            .expect("time");
        ScheduleWindow::new(start, start + chrono::Duration::hours(2)).expect("window")
    }
    fn services() -> Vec<NonEmptyText> {
        vec![NonEmptyText::parse("services", "carpet cleaning", 100).expect("ok")]
    }
    fn booked() -> JobEvent {
        JobEvent::JobBooked {
            job_id: job_id(),
            customer_id: customer(),
            source: BookingSource::Staff,
            services: services(),
            at: test_now(),
        }
    }
    fn scheduled(day: u32) -> JobEvent {
        JobEvent::JobScheduled {
            customer_id: customer(),
            window: window(day),
            at: test_now(),
        }
    }
    fn completed() -> JobEvent {
        JobEvent::JobCompleted {
            customer_id: customer(),
            amount: Money::from_cents(25_000).expect("ok"),
            services: services(),
            technician_id: tech(),
            vehicle_id: None,
            at: test_now(),
        }
    }
    fn complete_cmd(cents: i64) -> JobCommand {
        JobCommand::Complete {
            amount_cents: cents,
            services: vec!["carpet cleaning".into()],
            technician_id: Some(tech()),
        }
    }
    fn when(given: Vec<JobEvent>, cmd: JobCommand) -> Result<Vec<JobEvent>, JobError> {
        testing::run::<Job, _>(testing::test_services(), given, testing::staff(), cmd)
    }

    #[test]
    fn it_should_book_and_schedule_a_job_in_one_go() {
        let cmd = JobCommand::Book {
            job_id: job_id(),
            customer_id: customer(),
            source: BookingSource::Staff,
            services: vec!["carpet cleaning".into()],
            window: Some(window(20)),
        };
        assert_eq!(when(vec![], cmd), Ok(vec![booked(), scheduled(20)]));
    }

    #[test]
    fn it_should_let_a_customer_book_online_only_for_themselves() {
        let cmd = |c: u128| JobCommand::Book {
            job_id: job_id(),
            customer_id: CustomerId(Uuid::from_u128(c)),
            source: BookingSource::Online,
            services: vec!["rug cleaning".into()],
            window: None,
        };
        let run = |c| {
            testing::run::<Job, _>(
                testing::test_services(),
                vec![],
                testing::customer_actor(1),
                cmd(c),
            )
        };
        assert!(run(1).is_ok());
        assert_eq!(run(2), Err(JobError::NotYourJob));
    }

    #[test]
    fn it_should_not_complete_a_job_that_was_never_scheduled() {
        assert_eq!(
            when(vec![booked()], complete_cmd(25_000)),
            Err(JobError::NotScheduled)
        );
    }

    #[test]
    fn it_should_complete_a_started_job_recording_amount_services_and_technician() {
        let given = vec![
            booked(),
            scheduled(20),
            JobEvent::JobStarted {
                customer_id: customer(),
                technician_id: None,
                at: test_now(),
            },
        ];
        assert_eq!(when(given, complete_cmd(25_000)), Ok(vec![completed()]));
    }

    #[test]
    fn it_should_complete_a_scheduled_job_with_the_assigned_technician() {
        let given = vec![
            booked(),
            scheduled(20),
            JobEvent::TechnicianAssigned {
                customer_id: customer(),
                technician_id: tech(),
                at: test_now(),
            },
        ];
        let cmd = JobCommand::Complete {
            amount_cents: 25_000,
            services: vec!["carpet cleaning".into()],
            technician_id: None,
        };
        assert_eq!(when(given, cmd), Ok(vec![completed()]));
    }

    #[test]
    fn it_should_not_complete_a_job_without_a_technician() {
        let cmd = JobCommand::Complete {
            amount_cents: 25_000,
            services: vec!["carpet cleaning".into()],
            technician_id: None,
        };
        let err = when(vec![booked(), scheduled(20)], cmd).expect_err("no tech");
        assert_eq!(err.field(), Some("technician_id"));
    }

    #[test]
    fn it_should_refuse_a_negative_amount_naming_the_field() {
        let err = when(vec![booked(), scheduled(20)], complete_cmd(-1)).expect_err("negative");
        assert_eq!(err.field(), Some("amount_cents"));
    }

    #[test]
    fn it_should_not_cancel_a_completed_job() {
        let given = vec![booked(), scheduled(20), completed()];
        let cmd = JobCommand::Cancel {
            reason: "customer changed mind".into(),
        };
        assert_eq!(when(given, cmd), Err(JobError::JobAlreadyCompleted));
    }

    #[test]
    fn it_should_not_complete_a_job_twice() {
        let given = vec![booked(), scheduled(20), completed()];
        assert_eq!(
            when(given, complete_cmd(1)),
            Err(JobError::JobAlreadyCompleted)
        );
    }

    #[test]
    fn it_should_cancel_a_scheduled_job_with_a_reason() {
        let cmd = JobCommand::Cancel {
            reason: "weather".into(),
        };
        assert_eq!(
            when(vec![booked(), scheduled(20)], cmd),
            Ok(vec![JobEvent::JobCancelled {
                customer_id: customer(),
                reason: Reason::parse("weather").expect("ok"),
                cancelled_by: testing::staff(),
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_refuse_a_cancellation_without_a_reason() {
        let err =
            when(vec![booked()], JobCommand::Cancel { reason: " ".into() }).expect_err("empty");
        assert_eq!(err.field(), Some("reason"));
    }

    #[test]
    fn it_should_keep_the_previous_windows_when_rescheduling() {
        let cmd = JobCommand::Reschedule {
            window: window(22),
            reason: Some("customer away".into()),
        };
        let events = when(vec![booked(), scheduled(20)], cmd).expect("ok");
        assert_eq!(
            events,
            vec![JobEvent::JobRescheduled {
                customer_id: customer(),
                previous: window(20),
                window: window(22),
                reason: Some(Reason::parse("customer away").expect("ok")),
                at: test_now(),
            }]
        );
        let mut job = Job::default();
        for e in [booked(), scheduled(20)].into_iter().chain(events) {
            job.apply_event(e);
        }
        let again = job
            .decide(
                JobCommand::Reschedule {
                    window: window(25),
                    reason: None,
                },
                &testing::test_services().context(testing::staff()),
            )
            .expect("ok");
        again.into_iter().for_each(|e| job.apply_event(e));
        assert_eq!(job.previous_windows(), &[window(20), window(22)]);
        assert_eq!(job.window(), Some(window(25)));
    }

    #[test]
    fn it_should_not_reschedule_an_unscheduled_job() {
        let cmd = JobCommand::Reschedule {
            window: window(22),
            reason: None,
        };
        assert_eq!(when(vec![booked()], cmd), Err(JobError::NotScheduled));
    }

    #[test]
    fn it_should_not_schedule_a_job_twice() {
        let cmd = JobCommand::Schedule { window: window(22) };
        assert_eq!(
            when(vec![booked(), scheduled(20)], cmd),
            Err(JobError::AlreadyScheduled)
        );
    }

    #[test]
    fn it_should_not_start_an_unscheduled_job() {
        assert_eq!(
            when(vec![booked()], JobCommand::Start),
            Err(JobError::NotScheduled)
        );
    }

    #[test]
    fn it_should_refuse_commands_for_an_unknown_job() {
        assert_eq!(when(vec![], JobCommand::Start), Err(JobError::UnknownJob));
    }

    #[test]
    fn it_should_refuse_a_window_that_ends_before_it_starts() {
        let w = window(20);
        assert_eq!(
            ScheduleWindow::new(w.end, w.start)
                .expect_err("backwards")
                .field,
            "window"
        );
    }

    #[test]
    fn it_should_record_a_payment_once() {
        let pay = || JobCommand::RecordPayment {
            payment_id: PaymentId(Uuid::from_u128(5)),
            amount_cents: 25_000,
            outcome: PaymentOutcome::Paid,
        };
        let given = vec![booked(), scheduled(20), completed()];
        let events = when(given.clone(), pay()).expect("ok");
        assert!(matches!(events.as_slice(), [JobEvent::JobPaid { .. }]));
        let mut all = given;
        all.extend(events);
        assert_eq!(when(all, pay()), Err(JobError::AlreadyPaid));
    }

    #[test]
    fn it_should_serialise_events_externally_tagged_with_cents_and_rfc3339() {
        use cqrs_es::DomainEvent;
        let event = completed();
        assert_eq!(event.event_type(), "JobCompleted");
        assert_eq!(event.event_version(), "1.0");
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"JobCompleted": {
                "customer_id": "00000000-0000-0000-0000-000000000001",
                "amount": 25000,
                "services": ["carpet cleaning"],
                "technician_id": "00000000-0000-0000-0000-00000000004d",
                "vehicle_id": null,
                "at": "2025-06-15T15:00:00Z"
            }})
        );
        let back: JobEvent = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, event);
    }

    #[test]
    fn it_should_record_a_failed_payment() {
        let cmd = JobCommand::RecordPayment {
            payment_id: PaymentId(Uuid::from_u128(5)),
            amount_cents: 25_000,
            outcome: PaymentOutcome::Failed {
                reason: "card_declined".into(),
            },
        };
        let events = when(vec![booked(), scheduled(20), completed()], cmd).expect("ok");
        assert!(matches!(
            events.as_slice(),
            [JobEvent::JobPaymentFailed { .. }]
        ));
    }

    #[test]
    fn it_should_let_a_customer_move_or_cancel_only_their_own_job_before_work_starts() {
        let owner = Actor::Customer {
            id: CustomerId(Uuid::from_u128(1)),
        };
        let other = Actor::Customer {
            id: CustomerId(Uuid::from_u128(2)),
        };
        let booked = when(
            vec![],
            JobCommand::Book {
                job_id: JobId(Uuid::from_u128(10)),
                customer_id: CustomerId(Uuid::from_u128(1)),
                source: BookingSource::Online,
                services: vec!["rug cleaning".into()],
                window: None,
            },
        )
        .expect("booked");
        let cancel = || JobCommand::Cancel {
            reason: "away".into(),
        };
        let as_actor = |given: Vec<JobEvent>, actor, cmd| {
            crate::testing::run::<Job, _>(crate::testing::test_services(), given, actor, cmd)
        };
        assert_eq!(
            as_actor(booked.clone(), other, cancel()),
            Err(JobError::NotYourJob)
        );
        assert_eq!(
            as_actor(booked.clone(), owner, JobCommand::Start),
            Err(JobError::StaffOnly)
        );
        assert!(as_actor(booked.clone(), owner, cancel()).is_ok());
        let started: Vec<JobEvent> = {
            let mut g = booked.clone();
            g.extend(
                when(
                    booked.clone(),
                    JobCommand::Schedule {
                        window: ScheduleWindow::new(
                            test_now(),
                            test_now() + chrono::Duration::hours(2),
                        )
                        .expect("window"),
                    },
                )
                .expect("scheduled"),
            );
            let s = when(g.clone(), JobCommand::Start).expect("started");
            g.extend(s);
            g
        };
        assert_eq!(
            as_actor(started, owner, cancel()),
            Err(JobError::AlreadyStarted)
        );
    }
}

//! The scheduler: the 18 jobs of `cron-jobs.md`, run on their cron slots in the business's
//! time zone, each run recorded on a `JobRun` aggregate (see `docs/scheduler.md`).
//!
//! - **A slot runs once.** Running a slot starts with `JobRunCommand::Start` on the stream
//!   `job_run_id(job, slot)`; the aggregate refuses a second start and the store's optimistic
//!   concurrency refuses a concurrent one, so among several instances exactly one wins.
//! - **Catch-up.** On each tick (and at start) a job's *latest* slot at or before now runs if
//!   it is within the catch-up window and not yet started; older missed slots are not
//!   replayed (a daily job runs once after downtime, not once per missed day).
//! - **Retries.** A failing attempt is recorded (`JobRunFailed`, `will_retry`), retried
//!   with exponential back-off, and the last failure ends the run.
//! - **Effects once.** Jobs decide on read models and act only through domain commands whose
//!   idempotency keys are `cron:{job}:{slot}:{target}`.

mod jobs;
pub mod runs;
pub mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use chrono_tz::Tz;
use commands::app::Crm;
use commands::policies::PolicyRunner;
use commands::{AggregateStore, CommandError, EventLog, EventMetadata, StoreError};
use domain::job_run::{
    job_run_id, JobRun, JobRunCommand, JobRunCounts, JobRunError, JobRunTrigger,
};
use domain::{Actor as DomainActor, Clock, CommandEnvelope};
use projections::ProjectionRunner;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub use jobs::{GoogleReview, GoogleReviews, GoogleReviewsResult, NoGoogleReviews};
pub use runs::{list_runs, RunOutcome, RunRecord};
pub use schedule::{JobName, Schedule, UnknownJob};

/// Tunables of the scheduler. The defaults are the production values.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// A job's latest slot older than this is not caught up (a slot of yesterday's birthday
    /// job is of no use today).
    pub catch_up_window: chrono::Duration,
    /// How often the background loop looks at the clock.
    pub tick_every: Duration,
    /// Attempts per run before `JobRunFailed` is final.
    pub attempts: u32,
    /// Back-off before the second attempt; doubled for each further one.
    pub retry_backoff: Duration,
    /// check-stale-opportunities: days without activity.
    pub stale_after_days: u32,
    /// archive-old-opportunities: days after closing.
    pub archive_after_days: u32,
    /// process-promotion-deliveries: recipients per promotion per run.
    pub promotion_batch_size: u32,
    /// send-review-requests: completed jobs this recent are considered.
    pub review_request_window_days: u32,
    /// send-review-requests: days between the request and each reminder.
    pub review_reminder_every_days: u32,
    /// cleanup-old-logs: job runs older than this are past retention.
    pub run_log_retention_days: u32,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            catch_up_window: chrono::Duration::hours(24),
            tick_every: Duration::from_secs(20),
            attempts: 3,
            retry_backoff: Duration::from_secs(5),
            stale_after_days: 14,
            archive_after_days: 90,
            promotion_batch_size: 100,
            review_request_window_days: 14,
            review_reminder_every_days: 3,
            run_log_retention_days: 90,
        }
    }
}

/// One lock per job: in one process a job never runs twice at once.
#[derive(Debug)]
pub struct JobLocks {
    locks: HashMap<JobName, Mutex<()>>,
}

impl JobLocks {
    /// Fresh locks (an independent scheduler instance, as in tests).
    pub fn new() -> Self {
        Self {
            locks: JobName::ALL.iter().map(|j| (*j, Mutex::new(()))).collect(),
        }
    }

    /// The locks shared by every scheduler built with [`Scheduler::for_server`] in this process, so the
    /// background loop and `POST /api/cron/execute` exclude each other.
    pub fn process_wide() -> Arc<JobLocks> {
        static LOCKS: OnceLock<Arc<JobLocks>> = OnceLock::new();
        Arc::clone(LOCKS.get_or_init(|| Arc::new(JobLocks::new())))
    }

    fn of(&self, job: JobName) -> &Mutex<()> {
        // Every JobName has a lock: `new` builds one per variant.
        &self.locks[&job]
    }
}

impl Default for JobLocks {
    fn default() -> Self {
        Self::new()
    }
}

/// The scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) crm: Crm,
    pub(crate) projections: ProjectionRunner,
    pub(crate) policies: Option<PolicyRunner>,
    pub(crate) tz: Tz,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: SchedulerOptions,
    pub(crate) google: Arc<dyn GoogleReviews>,
    runs: AggregateStore<JobRun>,
    locks: Arc<JobLocks>,
    schedules: HashMap<JobName, Schedule>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("tz", &self.inner.tz)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Why a run did not happen or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Another run of this job is in progress in this process.
    #[error("{0} is already running")]
    Busy(JobName),
    /// The slot was started before (here or by another instance).
    #[error("{job} already ran for slot {slot}")]
    AlreadyRan {
        /// The job.
        job: JobName,
        /// The slot.
        slot: DateTime<Utc>,
    },
    /// The event store failed while recording the run.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cron expression could not be evaluated.
    #[error(transparent)]
    Cron(#[from] schedule::CronError),
}

/// What one run did: the endpoint's response body and the loop's log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The job.
    pub job: String,
    /// The slot (RFC 3339, UTC).
    pub slot: String,
    /// `scheduled`, `manual` or `catch_up`.
    pub trigger: &'static str,
    /// The `JobRun` aggregate id.
    pub run_id: String,
    /// `finished` or `failed`.
    pub status: &'static str,
    /// Attempts made.
    pub attempts: u32,
    /// Counts, when finished.
    pub counts: JobRunCounts,
    /// Figures, when finished.
    pub figures: BTreeMap<String, i64>,
    /// Note, when finished.
    pub note: Option<String>,
    /// The last error, when failed.
    pub error: Option<String>,
}

impl Scheduler {
    /// A scheduler over `crm` (whose clock it uses, so commands and slots agree on "now")
    /// with its own job locks.
    pub fn new(crm: Crm, projections: ProjectionRunner, options: SchedulerOptions) -> Self {
        Self::build(crm, projections, None, options, Arc::new(JobLocks::new()))
    }

    /// The server's scheduler: the application layer, read models and policies of the
    /// process, and the process-wide job locks.
    pub fn for_server(crm: Crm, projections: ProjectionRunner, policies: PolicyRunner) -> Self {
        Self::build(
            crm,
            projections,
            Some(policies),
            SchedulerOptions::default(),
            JobLocks::process_wide(),
        )
    }

    fn build(
        crm: Crm,
        projections: ProjectionRunner,
        policies: Option<PolicyRunner>,
        options: SchedulerOptions,
        locks: Arc<JobLocks>,
    ) -> Self {
        let services = crm.services().clone();
        let tz = services.tz;
        let clock = Arc::clone(&services.clock);
        let runs = AggregateStore::<JobRun>::new(crm.log().clone(), services);
        let schedules = JobName::ALL
            .iter()
            .map(|j| (*j, Schedule::of(*j, tz)))
            .collect();
        Self {
            inner: Arc::new(Inner {
                crm,
                projections,
                policies,
                tz,
                clock,
                options,
                google: Arc::new(NoGoogleReviews),
                runs,
                locks,
                schedules,
            }),
        }
    }

    /// Uses `source` for sync-google-reviews (tests, or a real client when one is configured).
    pub fn with_google_reviews(self, source: Arc<dyn GoogleReviews>) -> Self {
        let mut inner = (*self.inner).clone();
        inner.google = source;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        self.inner.crm.log()
    }

    /// The job's schedule in the business's time zone.
    pub fn schedule(&self, job: JobName) -> &Schedule {
        &self.inner.schedules[&job]
    }

    /// Runs every job whose latest slot (at or before the clock's now) is within the catch-up
    /// window and has not started; returns what ran. Jobs run one after another.
    ///
    /// # Errors
    /// Only a failure to evaluate a schedule; store errors while claiming a slot are logged
    /// and that job is left for the next tick.
    pub async fn tick(&self) -> Result<Vec<RunSummary>, SchedulerError> {
        self.due(JobName::ALL, JobRunTrigger::Scheduled).await
    }

    /// As [`Self::tick`] for the given jobs only.
    ///
    /// # Errors
    /// As [`Self::tick`].
    pub async fn tick_only(&self, jobs: &[JobName]) -> Result<Vec<RunSummary>, SchedulerError> {
        self.due(jobs, JobRunTrigger::Scheduled).await
    }

    /// As [`Self::tick`], recording the runs as `catch_up` (called once at start).
    ///
    /// # Errors
    /// As [`Self::tick`].
    pub async fn catch_up(&self) -> Result<Vec<RunSummary>, SchedulerError> {
        self.due(JobName::ALL, JobRunTrigger::CatchUp).await
    }

    async fn due(
        &self,
        jobs: &[JobName],
        trigger: JobRunTrigger,
    ) -> Result<Vec<RunSummary>, SchedulerError> {
        let now = self.inner.clock.now();
        let mut done = Vec::new();
        for job in jobs {
            let slot = self.schedule(*job).latest_at_or_before(now)?;
            if now - slot > self.inner.options.catch_up_window {
                continue;
            }
            // A slot already claimed costs one stream read, no write.
            match self
                .inner
                .runs
                .load(&job_run_id(job.as_str(), slot).to_string())
                .await
            {
                Ok(l) if l.sequence > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(job = %job, error = %e, "cannot read job run; retrying next tick");
                    continue;
                }
            }
            let _guard = self.inner.locks.of(*job).lock().await;
            match self.run_slot(*job, slot, trigger).await {
                Ok(s) => done.push(s),
                Err(SchedulerError::AlreadyRan { .. }) => {}
                Err(e) => tracing::warn!(job = %job, error = %e, "job run not recorded"),
            }
        }
        Ok(done)
    }

    /// Runs `job` now, by hand: the slot is the current second. Refused while the job runs in
    /// this process, and for a second request within the same second.
    ///
    /// # Errors
    /// [`SchedulerError::Busy`], [`SchedulerError::AlreadyRan`], [`SchedulerError::Store`].
    pub async fn trigger(&self, job: JobName) -> Result<RunSummary, SchedulerError> {
        let _guard = self
            .inner
            .locks
            .of(job)
            .try_lock()
            .map_err(|_| SchedulerError::Busy(job))?;
        let slot = self.inner.clock.now().trunc_subsecs(0);
        self.run_slot(job, slot, JobRunTrigger::Manual).await
    }

    /// Claims `slot` for `job` and runs it with retries. The caller holds the job's lock.
    async fn run_slot(
        &self,
        job: JobName,
        slot: DateTime<Utc>,
        trigger: JobRunTrigger,
    ) -> Result<RunSummary, SchedulerError> {
        let inner = &self.inner;
        let run_id = job_run_id(job.as_str(), slot).to_string();
        let slot_text = slot.to_rfc3339_opts(SecondsFormat::Secs, true);
        let meta = || {
            EventMetadata::new(
                commands::Actor::System(format!("cron:{job}")),
                inner.clock.now(),
            )
            .with_request_id(run_id.clone())
        };
        let start = JobRunCommand::Start {
            job: job.as_str().to_string(),
            slot,
            trigger,
        };
        match inner
            .runs
            .execute(&run_id, CommandEnvelope::system(start), &meta())
            .await
        {
            Ok(_) => {}
            Err(CommandError::Rejected(JobRunError::AlreadyStarted))
            | Err(CommandError::Conflict { .. }) => {
                return Err(SchedulerError::AlreadyRan { job, slot })
            }
            Err(CommandError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(StoreError::Database(e.to_string()).into()),
        }
        tracing::info!(job = %job, slot = %slot_text, trigger = trigger.as_str(), "job run started");
        let started = std::time::Instant::now();

        let attempts = inner.options.attempts.max(1);
        let mut backoff = inner.options.retry_backoff;
        let mut summary = RunSummary {
            job: job.as_str().to_string(),
            slot: slot_text,
            trigger: trigger.as_str(),
            run_id: run_id.clone(),
            status: "failed",
            attempts: 0,
            counts: JobRunCounts::default(),
            figures: BTreeMap::new(),
            note: None,
            error: None,
        };
        for attempt in 1..=attempts {
            summary.attempts = attempt;
            let ctx = jobs::JobContext {
                inner,
                job,
                slot,
                now: inner.clock.now(),
                run_id: &run_id,
            };
            let outcome = jobs::run(&ctx).await;
            let cmd = match outcome {
                Ok(tally) => {
                    summary.status = "finished";
                    summary.counts = tally.counts;
                    summary.figures = tally.figures.clone();
                    summary.note = tally.note.clone();
                    summary.error = None;
                    JobRunCommand::Finish {
                        counts: tally.counts,
                        figures: tally.figures,
                        note: tally.note,
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %job, attempt, error = %e.0, "job attempt failed");
                    summary.error = Some(e.0.clone());
                    JobRunCommand::Fail {
                        error: e.0,
                        attempt,
                        will_retry: attempt < attempts,
                    }
                }
            };
            let finished = matches!(cmd, JobRunCommand::Finish { .. });
            self.record(&run_id, cmd, &meta()).await?;
            if finished || attempt == attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        tracing::info!(job = %job, status = summary.status, counts = ?summary.counts, "job run ended");
        let labels = [
            ("job", job.as_str()),
            ("trigger", trigger.as_str()),
            ("status", summary.status),
        ];
        metrics::counter!("dirtfree_cron_runs_total", &labels).increment(1);
        metrics::histogram!("dirtfree_cron_run_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        Ok(summary)
    }

    async fn record(
        &self,
        run_id: &str,
        cmd: JobRunCommand,
        meta: &EventMetadata,
    ) -> Result<(), SchedulerError> {
        self.inner
            .runs
            .execute_retrying(
                run_id,
                CommandEnvelope::new(DomainActor::System, cmd),
                meta,
                3,
            )
            .await
            .map(|_| ())
            .map_err(|e| match e {
                CommandError::Store(e) => SchedulerError::Store(e),
                other => SchedulerError::Store(StoreError::Database(other.to_string())),
            })
    }

    /// Catches up once, then ticks every `tick_every` until `stop` is cancelled.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %e, "scheduler catch-up failed");
            }
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(self.inner.options.tick_every) => {}
                }
                if let Err(e) = self.tick().await {
                    tracing::error!(error = %e, "scheduler tick failed");
                }
            }
        })
    }
}

/// One job's health, for `/api/health/detailed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The job.
    pub job: &'static str,
    /// Its cron expression.
    pub schedule: &'static str,
    /// The next slot (UTC).
    pub next_slot: Option<DateTime<Utc>>,
    /// The latest run that finished.
    pub last_success: Option<RunRecord>,
    /// The latest run, whatever its outcome.
    pub last_run: Option<RunRecord>,
    /// Runs that failed for good, newest first (at most 5).
    pub recent_failures: Vec<RunRecord>,
}

/// The scheduler's health, for `/api/health/detailed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerStatus {
    /// `ok`, or `degraded` when a job's latest run failed.
    pub status: &'static str,
    /// The zone schedules are evaluated in.
    pub time_zone: String,
    /// Whether `POST /api/cron/execute/{job}` is on (CRON_SECRET set).
    pub manual_trigger_enabled: bool,
    /// Per job.
    pub jobs: Vec<JobStatus>,
}

/// Builds the status from recorded runs (oldest first) as of `now`.
pub fn status_of(runs: Vec<RunRecord>, tz: Tz, now: DateTime<Utc>) -> SchedulerStatus {
    let mut by_job: HashMap<String, Vec<RunRecord>> = HashMap::new();
    for r in runs {
        by_job.entry(r.job.clone()).or_default().push(r);
    }
    let jobs: Vec<JobStatus> = JobName::ALL
        .iter()
        .map(|j| {
            let runs = by_job.remove(j.as_str()).unwrap_or_default();
            JobStatus {
                job: j.as_str(),
                schedule: j.cron(),
                next_slot: Schedule::of(*j, tz).next_after(now).ok(),
                last_success: runs
                    .iter()
                    .rev()
                    .find(|r| r.outcome == RunOutcome::Finished)
                    .cloned(),
                last_run: runs.last().cloned(),
                recent_failures: runs
                    .iter()
                    .rev()
                    .filter(|r| r.outcome == RunOutcome::Failed)
                    .take(5)
                    .cloned()
                    .collect(),
            }
        })
        .collect();
    let degraded = jobs.iter().any(|j| {
        j.last_run
            .as_ref()
            .is_some_and(|r| r.outcome == RunOutcome::Failed)
    });
    SchedulerStatus {
        status: if degraded { "degraded" } else { "ok" },
        time_zone: tz.name().to_string(),
        manual_trigger_enabled: false,
        jobs,
    }
}

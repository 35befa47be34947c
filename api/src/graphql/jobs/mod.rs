//! Jobs (the calendar and service history), the vehicle board, and their commands.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::ids::{JobId, StaffUserId, VehicleId};
use domain::job::{BookingSource, JobCommand, ScheduleWindow};
use domain::ports::Role;
use domain::vehicle::VehicleCommand;
use projections::crm::jobs;

use super::auth::check_len;
use super::command::{self, settle};
use super::context::{self, parts, Allow, Principal};
use super::customers::{customer_id, Money};
use super::errors;
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

mod inputs;
mod objects;

pub use inputs::*;
pub use objects::*;

/// Job queries.
#[derive(Debug, Default)]
pub struct JobQuery;

#[Object]
impl JobQuery {
    /// One job (staff; a portal customer only their own).
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn job(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Job>> {
        let (state, rc) = parts(ctx)?;
        let job = load_job(state, &id).await;
        match &job {
            Some(j) => super::customers::may_read_customer(rc, &j.customer_id)?,
            // An unknown id answers a portal customer as someone else's job does: they learn
            // nothing about ids that are not theirs. Staff (the guard admits no one else) get null.
            None if matches!(rc.principal, Some(Principal::Customer { .. })) => {
                return Err(errors::forbidden("read another customer"));
            }
            None => {}
        }
        Ok(job)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    /// The jobs calendar: jobs whose window starts in [from, to), optionally by status.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        status: Option<String>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Job>> {
        let (state, rc) = parts(ctx)?;
        let f = |t: Option<DateTime<Utc>>| t.map(super::auth::rfc3339).unwrap_or_default();
        paging::of_listing(
            state,
            rc,
            jobs::scheduled(&f(from), &f(to), &status.unwrap_or_default()),
            PageArgs::new(after, before, first, last),
            job_from_row,
        )
        .await
    }

    /// The vehicle board, by name.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn vehicles(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Vehicle>> {
        let (state, rc) = parts(ctx)?;
        paging::of_listing(
            state,
            rc,
            jobs::vehicles(),
            PageArgs::new(after, before, first, last),
            vehicle,
        )
        .await
    }

    /// The signed-in portal customer's service history, newest first.
    #[graphql(guard = "Allow::Customer")]
    async fn my_jobs(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Job>> {
        let (state, rc) = parts(ctx)?;
        let (id, _, _) = context::customer(rc)?;
        paging::of_listing(
            state,
            rc,
            jobs::of_customer(&id.to_string()),
            PageArgs::new(after, before, first, last),
            job_from_row,
        )
        .await
    }
}

pub fn job_id(field: &str, id: &ID) -> async_graphql::Result<JobId> {
    JobId::parse(id).map_err(|_| errors::invalid(field, "not a job id"))
}

fn window(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> async_graphql::Result<Option<ScheduleWindow>> {
    match (start, end) {
        (None, None) => Ok(None),
        (Some(s), Some(e)) => ScheduleWindow::new(s, e)
            .map(Some)
            .map_err(|v| errors::invalid("end", v.message)),
        _ => Err(errors::invalid(
            "end",
            "give both start and end, or neither",
        )),
    }
}

fn check_services(services: &[String]) -> async_graphql::Result<()> {
    if services.len() > 20 {
        return Err(errors::invalid("services", "at most 20 services"));
    }
    services.iter().try_for_each(|s| check_len("services", s))
}

/// Runs one job command as the signed-in staff user (the guard checked their role), or as
/// the portal customer (the domain refuses other customers' jobs and anything but
/// scheduling and cancelling).
async fn run_job(
    ctx: &Context<'_>,
    id: JobId,
    key: Option<&String>,
    cmd: JobCommand,
) -> async_graphql::Result<JobPayload> {
    let (state, rc) = parts(ctx)?;
    let by = context::actor(rc)?;
    let done = command::execute(state, rc, state.crm.jobs(), id, by, key, cmd).await?;
    Ok(JobPayload {
        job: load_job(state, &id.to_string()).await,
        position: done.position,
    })
}

/// The signed-in portal customer's own job. Whose job it is comes before anything else, and
/// an unknown id answers like someone else's: a customer learns nothing about other ids.
async fn mine(ctx: &Context<'_>, id: JobId) -> async_graphql::Result<domain::job::Job> {
    let (state, rc) = parts(ctx)?;
    let (me, _, _) = context::customer(rc)?;
    let job = state
        .crm
        .jobs()
        .load(id)
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?
        .aggregate;
    if job.customer_id() != Some(me) {
        return Err(errors::forbidden("change another customer's booking"));
    }
    Ok(job)
}

/// What a completed job charged, when it can still be paid (`paid_ok`: a retry of a
/// recorded payment may find it paid already); RULE_VIOLATION on `jobId` otherwise.
fn amount_due(job: &Job, paid_ok: bool) -> async_graphql::Result<i64> {
    match (&job.status[..], &job.amount) {
        ("completed", _) if job.paid && !paid_ok => Err(errors::rule(
            "JOB_ALREADY_PAID",
            "the job is already paid",
            "jobId",
        )),
        ("completed", Some(m)) => Ok(m.amount_cents),
        _ => Err(errors::rule(
            "JOB_NOT_COMPLETED",
            "only a completed job can be paid",
            "jobId",
        )),
    }
}

/// Job mutations.
#[derive(Debug, Default)]
pub struct JobMutation;

#[Object]
impl JobMutation {
    /// Books a job for a customer (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn book_job(
        &self,
        ctx: &Context<'_>,
        input: BookJobInput,
    ) -> async_graphql::Result<JobPayload> {
        check_services(&input.services)?;
        let customer = customer_id("customerId", &input.customer_id)?;
        let w = window(input.start, input.end)?;
        let (state, rc) = parts(ctx)?;
        let id = JobId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::Book {
                job_id: id,
                customer_id: customer,
                source: BookingSource::Staff,
                services: input.services,
                window: w,
            },
        )
        .await
    }

    /// Books a service online as the signed-in portal customer.
    #[graphql(guard = "Allow::Customer")]
    async fn book_service_online(
        &self,
        ctx: &Context<'_>,
        input: BookServiceOnlineInput,
    ) -> async_graphql::Result<JobPayload> {
        check_services(&input.services)?;
        let w = window(input.start, input.end)?;
        let (state, rc) = parts(ctx)?;
        let (customer, actor, meta) = context::customer(rc)?;
        let id = JobId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        let book = JobCommand::Book {
            job_id: id,
            customer_id: customer,
            source: BookingSource::Online,
            services: input.services,
            window: w,
        };
        let by = (actor, meta.clone());
        let key = input.idempotency_key.as_ref();
        let done = command::execute(state, rc, state.crm.jobs(), id, by, key, book).await?;
        super::customers::record_portal_activity(
            state,
            &done.outcome,
            customer,
            domain::portal::PortalActivity::BookedService { job_id: id },
            &meta,
        )
        .await;
        Ok(JobPayload {
            job: load_job(state, &id.to_string()).await,
            position: done.position,
        })
    }

    /// The signed-in portal customer picks or moves the window of their own booking, before
    /// work starts.
    #[graphql(guard = "Allow::Customer")]
    async fn reschedule_my_booking(
        &self,
        ctx: &Context<'_>,
        input: RescheduleJobInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        let job = mine(ctx, id).await?;
        if let Some(r) = &input.reason {
            check_len("reason", r)?;
        }
        if input.start <= Utc::now() {
            return Err(errors::invalid("start", "must be in the future"));
        }
        let w = window(Some(input.start), Some(input.end))?
            .ok_or_else(|| errors::invalid("end", "required"))?;
        let cmd = if job.window().is_some() {
            JobCommand::Reschedule {
                window: w,
                reason: input.reason,
            }
        } else {
            JobCommand::Schedule { window: w }
        };
        run_job(ctx, id, input.idempotency_key.as_ref(), cmd).await
    }

    /// The signed-in portal customer cancels their own booking, before work starts.
    #[graphql(guard = "Allow::Customer")]
    async fn cancel_my_booking(
        &self,
        ctx: &Context<'_>,
        input: CancelJobInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        mine(ctx, id).await?;
        check_len("reason", &input.reason)?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::Cancel {
                reason: input.reason,
            },
        )
        .await
    }

    /// Puts an unscheduled job in the calendar (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn schedule_job(
        &self,
        ctx: &Context<'_>,
        input: ScheduleJobInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        let w = window(Some(input.start), Some(input.end))?
            .ok_or_else(|| errors::invalid("end", "required"))?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::Schedule { window: w },
        )
        .await
    }

    /// Moves a scheduled job to a new window (staff); the old window stays in its history.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn reschedule_job(
        &self,
        ctx: &Context<'_>,
        input: RescheduleJobInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        if let Some(r) = &input.reason {
            check_len("reason", r)?;
        }
        let w = window(Some(input.start), Some(input.end))?
            .ok_or_else(|| errors::invalid("end", "required"))?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::Reschedule {
                window: w,
                reason: input.reason,
            },
        )
        .await
    }

    /// Assigns a van (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn assign_vehicle(
        &self,
        ctx: &Context<'_>,
        input: AssignVehicleInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        let v = vehicle_id(&input.vehicle_id)?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::AssignVehicle { vehicle_id: v },
        )
        .await
    }

    /// Assigns a technician (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn assign_technician(
        &self,
        ctx: &Context<'_>,
        input: AssignTechnicianInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        let t = StaffUserId::parse(&input.technician_id)
            .map_err(|_| errors::invalid("technicianId", "not a staff user id"))?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::AssignTechnician { technician_id: t },
        )
        .await
    }

    /// Starts a scheduled job (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn start_job(
        &self,
        ctx: &Context<'_>,
        input: StartJobInput,
    ) -> async_graphql::Result<JobPayload> {
        let id = job_id("jobId", &input.job_id)?;
        run_job(ctx, id, input.idempotency_key.as_ref(), JobCommand::Start).await
    }

    /// Completes a job with its amount and services (staff). Loyalty points,
    /// the review request and referral rewards follow through policies.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn complete_job(
        &self,
        ctx: &Context<'_>,
        input: CompleteJobInput,
    ) -> async_graphql::Result<JobPayload> {
        check_services(&input.services)?;
        let id = job_id("jobId", &input.job_id)?;
        let tech = input
            .technician_id
            .as_ref()
            .map(|t| {
                StaffUserId::parse(t)
                    .map_err(|_| errors::invalid("technicianId", "not a staff user id"))
            })
            .transpose()?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::Complete {
                amount_cents: input.amount_cents,
                services: input.services,
                technician_id: tech,
            },
        )
        .await
    }

    /// Cancels a job that is not completed (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn cancel_job(
        &self,
        ctx: &Context<'_>,
        input: CancelJobInput,
    ) -> async_graphql::Result<JobPayload> {
        check_len("reason", &input.reason)?;
        let id = job_id("jobId", &input.job_id)?;
        run_job(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            JobCommand::Cancel {
                reason: input.reason,
            },
        )
        .await
    }

    /// Adds a van to the fleet (manager).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn register_vehicle(
        &self,
        ctx: &Context<'_>,
        input: RegisterVehicleInput,
    ) -> async_graphql::Result<VehiclePayload> {
        check_len("name", &input.name)?;
        let (state, rc) = parts(ctx)?;
        let key = input.idempotency_key.as_ref();
        let id = VehicleId::from_uuid(context::id_for_create(state, rc, key).await);
        let register = VehicleCommand::Register {
            vehicle_id: id,
            name: input.name,
            plate: input.plate,
        };
        vehicle_command(ctx, id, key, register).await
    }

    /// Sends a van to the workshop (managers); it leaves the board until it returns.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn send_vehicle_to_maintenance(
        &self,
        ctx: &Context<'_>,
        input: SendVehicleToMaintenanceInput,
    ) -> async_graphql::Result<VehiclePayload> {
        check_len("reason", &input.reason)?;
        let reason = input.reason.clone();
        vehicle_command(
            ctx,
            vehicle_id(&input.vehicle_id)?,
            input.idempotency_key.as_ref(),
            VehicleCommand::SendToMaintenance { reason },
        )
        .await
    }

    /// A van is back from the workshop (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn return_vehicle_from_maintenance(
        &self,
        ctx: &Context<'_>,
        input: VehicleRefInput,
    ) -> async_graphql::Result<VehiclePayload> {
        vehicle_command(
            ctx,
            vehicle_id(&input.vehicle_id)?,
            input.idempotency_key.as_ref(),
            VehicleCommand::ReturnFromMaintenance,
        )
        .await
    }

    /// Records money taken in person for a completed, unpaid job (staff): cash, a cheque or
    /// a card terminal. The amount defaults to the job's. The job is marked paid by the
    /// `job-payments` policy, as for a card payment (`sync` to the position, then read it).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn record_job_payment(
        &self,
        ctx: &Context<'_>,
        input: RecordJobPaymentInput,
    ) -> async_graphql::Result<PaymentRecordedPayload> {
        let (state, rc) = parts(ctx)?;
        let (actor, meta) = context::staff_actor(rc)?;
        let id = job_id("jobId", &input.job_id)?;
        if let Some(r) = &input.reference {
            check_len("reference", r)?;
        }
        // Bad input before any rule: a zero or negative amount is not "less than due".
        if input.amount_cents.is_some_and(|a| a <= 0) {
            return Err(errors::invalid("amountCents", "must be more than zero"));
        }
        let job = load_job(state, &id.to_string())
            .await
            .ok_or_else(|| errors::not_found("job", &id.to_string()))?;
        // A retry of a recorded payment answers with the first outcome, paid job or not.
        let retry = context::key_was_used(state, rc, input.idempotency_key.as_ref()).await;
        let due = amount_due(&job, retry)?;
        let amount = input.amount_cents.unwrap_or(due);
        // Marking a job paid with less than it costs (say 1 cent) is a manager's
        // decision (a discount, a goodwill gesture), not any staff member's.
        let manager = matches!(&rc.principal, Some(Principal::Staff { role, .. }) if role.is_manager_or_above());
        if !retry && amount < due && !manager {
            return Err(errors::rule(
                "AMOUNT_BELOW_DUE",
                format!("the job costs {due} cents; only a manager may record less"),
                "amountCents",
            ));
        }
        let customer = customer_id("jobId", &job.customer_id)?;
        // One payment in person per job: two clerks (or a double click) cannot record the
        // same money twice, whatever their keys.
        let payment_id =
            domain::ids::PaymentId::from_uuid(uuid::Uuid::new_v5(&id.as_uuid(), b"in-person"));
        let out = state
            .crm
            .payments()
            .execute(
                payment_id,
                actor,
                domain::payment::PaymentCommand::RecordInPerson {
                    payment_id,
                    job_id: id,
                    customer_id: customer,
                    amount_cents: amount,
                    method: input.method.into(),
                    reference: input.reference,
                },
                &context::with_key(meta, input.idempotency_key.as_ref()),
            )
            .await
            .map_err(|e| match e.rule() {
                Some("ALREADY_EXISTS") => errors::rule(
                    "PAYMENT_ALREADY_RECORDED",
                    "a payment in person is already recorded for this job",
                    "jobId",
                ),
                _ => errors::app(&rc.request_id, e),
            })?;
        Ok(PaymentRecordedPayload {
            payment_id: ID(payment_id.to_string()),
            amount: Money::usd(amount),
            position: settle(state, &out).await,
        })
    }

    /// Creates a Stripe payment for a completed, unpaid job (staff) and answers with the
    /// client secret for the card form. `PaymentSucceeded` arrives later by webhook.
    /// Needs `STRIPE_SECRET_KEY`; without it the answer is `UNAVAILABLE`.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn request_job_payment(
        &self,
        ctx: &Context<'_>,
        input: RequestJobPaymentInput,
    ) -> async_graphql::Result<PaymentRequestPayload> {
        let (state, rc) = parts(ctx)?;
        let (_, meta) = context::staff_actor(rc)?;
        let id = job_id("jobId", &input.job_id)?;
        let job = load_job(state, &id.to_string())
            .await
            .ok_or_else(|| errors::not_found("job", &id.to_string()))?;
        let amount = amount_due(&job, false)?;
        if amount <= 0 {
            return Err(errors::rule(
                "NOTHING_TO_PAY",
                "only a completed job with an amount can be paid",
                "jobId",
            ));
        }
        let Some(key) = state.config.stripe_secret_key.clone() else {
            return Err(errors::coded(
                "UNAVAILABLE",
                "card payments are not configured (STRIPE_SECRET_KEY)",
                None,
            ));
        };
        let provider = worker::outbox::stripe::StripePaymentIntents::new(
            &state.config.stripe_api_base,
            key,
            std::time::Duration::from_secs(10),
        )
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
        // With a key, the payment id derives from it: a retry finds the same payment, and
        // Stripe answers its idempotency key with the same intent.
        let payment_id = domain::ids::PaymentId::from_uuid(match &input.idempotency_key {
            Some(k) => uuid::Uuid::new_v5(&id.as_uuid(), format!("payment:{k}").as_bytes()),
            None => uuid::Uuid::new_v4(),
        });
        let customer = customer_id("jobId", &job.customer_id)?;
        let request = worker::outbox::stripe::PaymentIntentRequest {
            payment_id,
            job_id: id,
            customer_id: customer,
            amount_cents: amount,
            currency: "usd".into(),
            stripe_customer: None,
        };
        let (intent, out) = worker::outbox::stripe::request_payment(
            &state.crm,
            &provider,
            &request,
            &context::with_key(meta, input.idempotency_key.as_ref()),
            3,
            std::time::Duration::from_millis(200),
        )
        .await
        .map_err(|e| match e {
            worker::outbox::stripe::PaymentRequestError::Record(a) => errors::app(&rc.request_id, a),
            worker::outbox::stripe::PaymentRequestError::Provider(p) => {
                tracing::warn!(request_id = %rc.request_id, error = %p, "stripe refused a payment intent");
                errors::coded("UNAVAILABLE", "the payment provider did not create the payment; retry with the same idempotency key", None)
            }
        })?;
        Ok(PaymentRequestPayload {
            payment_id: ID(payment_id.to_string()),
            provider_intent_id: intent.id,
            client_secret: intent.client_secret.map(|s| s.expose().to_string()),
            amount: Money::usd(amount),
            position: settle(state, &out).await,
        })
    }
}

fn vehicle_id(id: &ID) -> async_graphql::Result<VehicleId> {
    VehicleId::parse(id).map_err(|_| errors::invalid("vehicleId", "not a vehicle id"))
}

/// Runs one van command as the signed-in staff user (the guard checked their role).
async fn vehicle_command(
    ctx: &Context<'_>,
    id: VehicleId,
    key: Option<&String>,
    cmd: VehicleCommand,
) -> async_graphql::Result<VehiclePayload> {
    let (state, rc) = parts(ctx)?;
    let by = context::staff_actor(rc)?;
    let done = command::execute(state, rc, state.crm.vehicles(), id, by, key, cmd).await?;
    Ok(VehiclePayload {
        vehicle_id: ID(id.to_string()),
        position: done.position,
    })
}

//! Jobs over the two years and the next two weeks: booked (by staff, or
//! online by a customer with a portal account), assigned a technician and a
//! van, sometimes rescheduled or cancelled, else worked and completed (the
//! last month's with the van dispatched), and often paid for.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::ids::{CustomerId, JobId, OpportunityId, PortalAccountId, StaffUserId, VehicleId};
use domain::job::{BookingSource, JobCommand, ScheduleWindow};
use domain::opportunity::OpportunityCommand;
use domain::vehicle::{VehicleCommand, VehicleStatus};
use domain::Actor as DomainActor;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::names::SERVICES;
use crate::opportunities::Won;
use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A job to book; `wins` the opportunity it converts.
#[derive(Debug, Clone)]
pub(crate) struct BookJob {
    job: JobId,
    customer: CustomerId,
    online: bool,
    services: Vec<String>,
    window: Option<ScheduleWindow>,
    technician: StaffUserId,
    van: VehicleId,
    wins: Option<OpportunityId>,
}

/// A job worked in its window; `van` when it is dispatched (the last month's jobs).
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    job: JobId,
    van: Option<VehicleId>,
    window: ScheduleWindow,
    amount_cents: i64,
    services: Vec<String>,
}

/// A job to book: customer, booking instant, day of the work, opportunity it wins.
type JobSpec = (
    CustomerId,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<OpportunityId>,
);

/// A job as booked, for what follows it.
struct Booked {
    job: JobId,
    customer: CustomerId,
    lane: usize,
    booked: DateTime<Utc>,
    services: Vec<(&'static str, i64)>,
    van: VehicleId,
}

/// The won opportunities' jobs first, then the rest up to the scale's count.
pub(crate) fn plan(p: &mut Planner, won: Vec<Won>) {
    let specs = specs(p, won);
    p.summary.jobs = specs.len();
    for spec in specs {
        plan_job(p, spec);
    }
}

fn specs(p: &mut Planner, won: Vec<Won>) -> Vec<JobSpec> {
    let job_count = p.sizes.jobs.saturating_sub(won.len());
    let mut specs: Vec<JobSpec> = Vec::new();
    for (cid, booked, opp) in won {
        specs.push((
            cid,
            booked,
            booked + Duration::days(p.rng.gen_range(3..14)),
            Some(opp),
        ));
    }
    for _ in 0..job_count {
        let day = between(
            &mut p.rng,
            p.start + Duration::days(3),
            p.end + Duration::days(14),
        );
        // Someone who had joined two days before the work.
        let eligible = p
            .customers
            .partition_point(|c| c.1 < day - Duration::days(2))
            .max(1);
        let (cid, joined, _) = p.customers[p.rng.gen_range(0..eligible)];
        let booked = (day - Duration::days(p.rng.gen_range(1..14)))
            .max(joined + Duration::hours(1))
            .min(p.end);
        specs.push((cid, booked, day, None));
    }
    specs
}

/// One job: booked; unless left unscheduled, maybe moved, then (if over by the
/// end) cancelled or completed and maybe paid.
fn plan_job(p: &mut Planner, spec: JobSpec) {
    let Some((b, window)) = plan_booking(p, spec) else {
        return;
    };
    let window = plan_reschedule(p, &b, window);
    if window.end >= p.end {
        return;
    }
    if p.rng.gen_bool(0.07) {
        plan_cancel(p, &b, window);
        return;
    }
    plan_completion(p, &b, window);
}

/// The booking step; the job's window unless it is left unscheduled.
fn plan_booking(
    p: &mut Planner,
    (cid, booked, day, wins): JobSpec,
) -> Option<(Booked, ScheduleWindow)> {
    let lane = p.lane_of(cid);
    let job = JobId(uuid(&mut p.rng));
    let hour = [8u32, 10, 13, 15][p.rng.gen_range(0..4)];
    let date = day.with_timezone(&p.tz).date_naive();
    let window_start = p.local(date, hour).max(booked + Duration::hours(2));
    let window = ScheduleWindow::new(window_start, window_start + Duration::hours(2)).ok();
    let n = p.rng.gen_range(1..=3);
    let services: Vec<(&str, i64)> = SERVICES.choose_multiple(&mut p.rng, n).copied().collect();
    let future = window_start > p.end;
    // Some jobs booked for after the end have no time yet.
    let unscheduled = future && p.rng.gen_bool(0.2);
    let technician = p.technicians[p.rng.gen_range(0..p.technicians.len())];
    let van = p.vans[p.rng.gen_range(0..p.vans.len())];
    let book = BookJob {
        job,
        customer: cid,
        online: p.rng.gen_bool(0.3),
        services: services.iter().map(|s| s.0.to_string()).collect(),
        window: if unscheduled { None } else { window },
        technician,
        van,
        wins,
    };
    p.customer_steps.push(Timed {
        at: booked,
        lane,
        step: Step::Book(Box::new(book)),
    });
    let window = window.filter(|_| !unscheduled)?;
    let b = Booked {
        job,
        customer: cid,
        lane,
        booked,
        services,
        van,
    };
    Some((b, window))
}

/// One in twenty booked well ahead moves a day or two later; the window it ends up in.
fn plan_reschedule(p: &mut Planner, b: &Booked, window: ScheduleWindow) -> ScheduleWindow {
    if !(p.rng.gen_bool(0.05) && window.start - b.booked > Duration::days(2)) {
        return window;
    }
    let moved = window.start + Duration::days(p.rng.gen_range(1..3));
    let Ok(w) = ScheduleWindow::new(moved, moved + Duration::hours(2)) else {
        return window;
    };
    let step = Step::Reschedule {
        job: b.job,
        window: w,
    };
    p.customer_steps.push(Timed {
        at: b.booked + Duration::days(1),
        lane: b.lane,
        step,
    });
    w
}

/// Cancelled the day before (not before it was booked).
fn plan_cancel(p: &mut Planner, b: &Booked, window: ScheduleWindow) {
    let reason = [
        "customer unavailable",
        "weather",
        "customer asked to cancel",
    ][p.rng.gen_range(0..3)];
    let t = (window.start - Duration::days(1))
        .max(b.booked + Duration::hours(1))
        .min(window.start);
    p.customer_steps.push(Timed {
        at: t,
        lane: b.lane,
        step: Step::Cancel { job: b.job, reason },
    });
    p.summary.cancelled_jobs += 1;
}

/// Worked in its window (a shared step: vans), at about the list price; often paid.
fn plan_completion(p: &mut Planner, b: &Booked, window: ScheduleWindow) {
    let base: i64 = b.services.iter().map(|s| s.1).sum();
    let amount_cents = base * p.rng.gen_range(90..120) / 100 / 100 * 100;
    let dispatched = window.start > p.end - Duration::days(30);
    let step = Step::Complete(Completion {
        job: b.job,
        van: dispatched.then_some(b.van),
        window,
        amount_cents,
        services: b.services.iter().map(|s| s.0.to_string()).collect(),
    });
    p.shared_steps.push(Timed {
        at: window.start,
        lane: 0,
        step,
    });
    p.summary.completed_jobs += 1;
    p.completed.push((b.job, b.customer, window.end));
    crate::payments::plan(p, b.job, b.customer, b.lane, window.end, amount_cents);
}

/// Books the job (online when the customer asked for it and has a portal account),
/// converts the opportunity it wins, and assigns the technician and van.
pub(crate) async fn book(ctx: &Ctx, t: DateTime<Utc>, b: &BookJob) -> Result<(), AppError> {
    let (crm, m) = (&ctx.crm, meta(t));
    let has_portal = crm
        .portal_accounts()
        .load(PortalAccountId::for_customer(b.customer))
        .await?
        .sequence
        > 0;
    let (actor, source) = if b.online && has_portal {
        (
            DomainActor::Customer { id: b.customer },
            BookingSource::Online,
        )
    } else {
        (ctx.manager(), BookingSource::Staff)
    };
    let cmd = JobCommand::Book {
        job_id: b.job,
        customer_id: b.customer,
        source,
        services: b.services.clone(),
        window: b.window,
    };
    crm.jobs().execute(b.job, actor, cmd, &m).await?;
    if let Some(opportunity) = b.wins {
        let cmd = OpportunityCommand::Win { job_id: b.job };
        crm.opportunities()
            .execute(opportunity, ctx.manager(), cmd, &m)
            .await?;
    }
    if b.window.is_some() {
        let tech = JobCommand::AssignTechnician {
            technician_id: b.technician,
        };
        ctx.later(
            t + Duration::minutes(5),
            crm.jobs().execute(b.job, ctx.manager(), tech, &m),
        )
        .await?;
        let van = JobCommand::AssignVehicle { vehicle_id: b.van };
        ctx.later(
            t + Duration::minutes(6),
            crm.jobs().execute(b.job, ctx.manager(), van, &m),
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn reschedule(
    ctx: &Ctx,
    t: DateTime<Utc>,
    job: JobId,
    window: ScheduleWindow,
) -> Result<(), AppError> {
    let cmd = JobCommand::Reschedule {
        window,
        reason: Some("customer asked for another day".into()),
    };
    ctx.crm
        .jobs()
        .execute(job, ctx.manager(), cmd, &meta(t))
        .await?;
    Ok(())
}

pub(crate) async fn cancel(
    ctx: &Ctx,
    t: DateTime<Utc>,
    job: JobId,
    reason: &str,
) -> Result<(), AppError> {
    let cmd = JobCommand::Cancel {
        reason: reason.into(),
    };
    ctx.crm
        .jobs()
        .execute(job, ctx.manager(), cmd, &meta(t))
        .await?;
    Ok(())
}

/// Dispatches the van if it is free, starts the job, completes it at the
/// window's end and releases the van.
pub(crate) async fn complete(ctx: &Ctx, t: DateTime<Utc>, c: &Completion) -> Result<(), AppError> {
    let (crm, jobs, sys, m) = (&ctx.crm, ctx.crm.jobs(), DomainActor::System, meta(t));
    let mut dispatched = None;
    if let Some(van) = c.van {
        if crm.vehicles().load(van).await?.aggregate.status() == VehicleStatus::Available {
            let dispatch = VehicleCommand::Dispatch { job_id: c.job };
            crm.vehicles().execute(van, sys, dispatch, &m).await?;
            dispatched = Some(van);
        }
    }
    jobs.execute(c.job, ctx.manager(), JobCommand::Start, &m)
        .await?;
    let cmd = JobCommand::Complete {
        amount_cents: c.amount_cents,
        services: c.services.clone(),
        technician_id: None,
    };
    ctx.later(c.window.end, jobs.execute(c.job, ctx.manager(), cmd, &m))
        .await?;
    if let Some(van) = dispatched {
        let release = VehicleCommand::Release { job_id: c.job };
        ctx.later(c.window.end, crm.vehicles().execute(van, sys, release, &m))
            .await?;
    }
    Ok(())
}

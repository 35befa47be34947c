//! The jobs and vehicles read model.

use domain::job::JobEvent;
use domain::vehicle::VehicleEvent;

use super::prelude::*;

/// Jobs calendar, service history and the vehicle board.
#[derive(Debug)]
pub struct Jobs;

const JOBS: &[&str] = &["jobs", "vehicles"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::job::AGGREGATE_TYPE, domain::vehicle::AGGREGATE_TYPE];

impl Projection for Jobs {
    fn name(&self) -> &'static str {
        "jobs"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        JOBS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {jobs} (
                job_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, status TEXT NOT NULL, source TEXT,
                services TEXT NOT NULL DEFAULT '[]', scheduled_start TEXT, scheduled_end TEXT,
                reschedule_count BIGINT NOT NULL DEFAULT 0, technician_id TEXT, vehicle_id TEXT,
                amount_cents BIGINT, paid BIGINT NOT NULL DEFAULT 0, payment_failed BIGINT NOT NULL DEFAULT 0,
                booked_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, cancelled_at TEXT, cancel_reason TEXT)",
            "CREATE INDEX {jobs}_customer_{gen} ON {jobs} (customer_id)",
            "CREATE INDEX {jobs}_start_{gen} ON {jobs} (scheduled_start)",
            "CREATE TABLE {vehicles} (
                vehicle_id TEXT PRIMARY KEY, name TEXT NOT NULL, plate TEXT, status TEXT NOT NULL,
                current_job_id TEXT, updated_at TEXT NOT NULL)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(event) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let id = e.aggregate_id.clone();
            match event {
                Event::Job(event) => job(tx, ctx, id, event).await?,
                Event::Vehicle(event) => vehicle(tx, ctx, id, event).await?,
                _ => {}
            }
            Ok(())
        })
    }
}

/// A job's own events.
async fn job(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &JobEvent,
) -> Result<(), ProjectionError> {
    let t = JOBS;
    match event {
        JobEvent::JobBooked {
            customer_id,
            source,
            services,
            at,
            ..
        } => {
            exec(
                tx,
                ctx,
                t,
                "INSERT INTO {jobs} (job_id, customer_id, status, source, services, booked_at)
                VALUES ($1, $2, 'booked', $3, $4, $5) ON CONFLICT (job_id) DO NOTHING",
                &[
                    id.into(),
                    customer_id.to_string().into(),
                    text(source).into(),
                    json(services).into(),
                    rfc3339(*at).into(),
                ],
            )
            .await?;
        }
        JobEvent::JobScheduled { window, .. } => {
            // The window's bounds as the payload stored them (not normalised to seconds).
            exec(tx, ctx, t, "UPDATE {jobs} SET status = 'scheduled', scheduled_start = $2, scheduled_end = $3 WHERE job_id = $1",
                &[id.into(), text(&window.start).into(), text(&window.end).into()]).await?;
        }
        JobEvent::JobRescheduled { window, .. } => {
            exec(tx, ctx, t, "UPDATE {jobs} SET scheduled_start = $2, scheduled_end = $3, reschedule_count = reschedule_count + 1 WHERE job_id = $1",
                &[id.into(), text(&window.start).into(), text(&window.end).into()]).await?;
        }
        JobEvent::TechnicianAssigned { technician_id, .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {jobs} SET technician_id = $2 WHERE job_id = $1",
                &[id.into(), technician_id.to_string().into()],
            )
            .await?;
        }
        JobEvent::VehicleAssigned { vehicle_id, .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {jobs} SET vehicle_id = $2 WHERE job_id = $1",
                &[id.into(), vehicle_id.to_string().into()],
            )
            .await?;
        }
        JobEvent::JobStarted { at, .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {jobs} SET status = 'in_progress', started_at = $2 WHERE job_id = $1",
                &[id.into(), rfc3339(*at).into()],
            )
            .await?;
        }
        JobEvent::JobCompleted {
            amount,
            services,
            technician_id,
            vehicle_id,
            at,
            ..
        } => {
            exec(tx, ctx, t, "UPDATE {jobs} SET status = 'completed', completed_at = $2, amount_cents = $3, services = $4,
                technician_id = $5, vehicle_id = COALESCE($6, vehicle_id) WHERE job_id = $1",
                &[id.into(), rfc3339(*at).into(), amount.cents().into(), json(services).into(),
                  technician_id.to_string().into(), vehicle_id.as_ref().map(ToString::to_string).into()]).await?;
        }
        JobEvent::JobCancelled { reason, at, .. } => {
            exec(tx, ctx, t, "UPDATE {jobs} SET status = 'cancelled', cancelled_at = $2, cancel_reason = $3 WHERE job_id = $1",
                &[id.into(), rfc3339(*at).into(), reason.as_str().into()]).await?;
        }
        JobEvent::JobPaid { .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {jobs} SET paid = 1 WHERE job_id = $1",
                &[id.into()],
            )
            .await?;
        }
        JobEvent::JobPaymentFailed { .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {jobs} SET payment_failed = payment_failed + 1 WHERE job_id = $1",
                &[id.into()],
            )
            .await?;
        }
    }
    Ok(())
}

/// A vehicle's own events.
async fn vehicle(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &VehicleEvent,
) -> Result<(), ProjectionError> {
    let t = JOBS;
    match event {
        VehicleEvent::VehicleRegistered {
            name, plate, at, ..
        } => {
            exec(tx, ctx, t, "INSERT INTO {vehicles} (vehicle_id, name, plate, status, updated_at) VALUES ($1, $2, $3, 'available', $4)
                ON CONFLICT (vehicle_id) DO NOTHING",
                &[id.into(), name.to_string().into(), text(plate).into(), rfc3339(*at).into()]).await?;
        }
        VehicleEvent::VehicleStatusChanged { to, job_id, at, .. } => {
            exec(tx, ctx, t, "UPDATE {vehicles} SET status = $2, current_job_id = $3, updated_at = $4 WHERE vehicle_id = $1",
                &[id.into(), text(to).into(), job_id.as_ref().map(ToString::to_string).into(), rfc3339(*at).into()]).await?;
        }
    }
    Ok(())
}

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

// ---------------------------------------------------------------- queries

/// One job as the read model holds it. Instants are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Its id.
    pub job_id: String,
    /// The customer.
    pub customer_id: String,
    /// `booked`, `scheduled`, `in_progress`, `completed`, `cancelled`.
    pub status: String,
    /// How it was booked.
    pub source: Option<String>,
    /// The services booked.
    pub services: Vec<String>,
    /// Window start.
    pub scheduled_start: Option<String>,
    /// Window end.
    pub scheduled_end: Option<String>,
    /// Times rescheduled.
    pub reschedule_count: i64,
    /// Assigned technician.
    pub technician_id: Option<String>,
    /// Assigned van.
    pub vehicle_id: Option<String>,
    /// What the completed job charged, cents.
    pub amount_cents: Option<i64>,
    /// Paid.
    pub paid: bool,
    /// Booked.
    pub booked_at: String,
    /// Completed.
    pub completed_at: Option<String>,
}

impl crate::row::FromRow for JobRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_int, opt_text, text};
        let services = text(r, "services")?;
        Ok(JobRow {
            job_id: text(r, "job_id")?,
            customer_id: text(r, "customer_id")?,
            status: text(r, "status")?,
            source: opt_text(r, "source")?,
            services: serde_json::from_str(&services).map_err(|_| {
                crate::DbError::new("read-model column services is not a JSON list of text")
            })?,
            scheduled_start: opt_text(r, "scheduled_start")?,
            scheduled_end: opt_text(r, "scheduled_end")?,
            reschedule_count: int(r, "reschedule_count")?,
            technician_id: opt_text(r, "technician_id")?,
            vehicle_id: opt_text(r, "vehicle_id")?,
            amount_cents: opt_int(r, "amount_cents")?,
            paid: int(r, "paid")? == 1,
            booked_at: text(r, "booked_at")?,
            completed_at: opt_text(r, "completed_at")?,
        })
    }
}

/// One van on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VehicleRow {
    /// Its id.
    pub vehicle_id: String,
    /// Name.
    pub name: String,
    /// Plate.
    pub plate: Option<String>,
    /// `available`, `on_job` or `maintenance`.
    pub status: String,
    /// The job it is on.
    pub current_job_id: Option<String>,
}

impl crate::row::FromRow for VehicleRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{opt_text, text};
        Ok(VehicleRow {
            vehicle_id: text(r, "vehicle_id")?,
            name: text(r, "name")?,
            plate: opt_text(r, "plate")?,
            status: text(r, "status")?,
            current_job_id: opt_text(r, "current_job_id")?,
        })
    }
}

/// A job of a customer's list with its place in it: what [`windows_of_customers`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedJob {
    /// The job.
    pub job: JobRow,
    /// Its offset in its customer's list (newest booking first).
    pub page_offset: usize,
    /// How many jobs the customer has.
    pub page_total: usize,
}

impl crate::row::FromRow for NumberedJob {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        let count = |k: &str| {
            crate::row::int(r, k).and_then(|n| {
                usize::try_from(n).map_err(|_| crate::DbError::new(format!("{k} is negative")))
            })
        };
        Ok(NumberedJob {
            job: JobRow::from_row(r)?,
            page_offset: count("page_offset")?,
            page_total: count("page_total")?,
        })
    }
}

/// The job `id`, if the read model has it.
///
/// # Errors
/// [`crate::DbError`].
pub async fn get(db: &crate::ReadDb, id: &str) -> Result<Option<JobRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_jobs", "job_id", id).await
}

/// The van `id`, if the read model has it.
///
/// # Errors
/// [`crate::DbError`].
pub async fn vehicle_by_id(
    db: &crate::ReadDb,
    id: &str,
) -> Result<Option<VehicleRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_vehicles", "vehicle_id", id).await
}

/// Jobs scheduled from `from` (RFC 3339, inclusive) until `to` (exclusive) in `status`, by
/// start; an empty bound or status does not filter.
pub fn scheduled(from: &str, to: &str, status: &str) -> crate::Listing<JobRow> {
    crate::Listing::new(
        "rm_jobs WHERE ($1 = '' OR scheduled_start >= $1) AND ($2 = '' OR scheduled_start < $2) AND ($3 = '' OR status = $3)",
        "scheduled_start, job_id",
        vec![from.into(), to.into(), status.into()],
    )
}

/// A customer's jobs, newest booking first (the order [`windows_of_customers`] numbers).
pub fn of_customer(customer: &str) -> crate::Listing<JobRow> {
    crate::Listing::new(
        "rm_jobs WHERE customer_id = $1",
        "booked_at DESC, job_id",
        vec![customer.into()],
    )
}

/// The vehicle board, by name.
pub fn vehicles() -> crate::Listing<VehicleRow> {
    crate::Listing::new("rm_vehicles", "name, vehicle_id", vec![])
}

/// The part of one customer's job list (ordered as [`of_customer`]) a page asks for:
/// offsets after `after` and before `before`, the first `first` or last `last` of those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobWindow<'a> {
    /// The customer.
    pub customer: &'a str,
    /// Rows after this offset.
    pub after: Option<usize>,
    /// Rows before this offset.
    pub before: Option<usize>,
    /// The first n (at most 100).
    pub first: Option<usize>,
    /// The last n (at most 100).
    pub last: Option<usize>,
}

/// The rows of each window, in one statement, each with its `page_offset` in its customer's
/// list and the customer's `page_total`; also every asked customer's first row, which carries
/// their total when their window is empty. Rows beyond a window may come too (the window is
/// cut exactly by the caller once the total is known); a customer with thousands of jobs
/// costs about a page of rows, as `LIMIT`/`OFFSET` did.
///
/// # Errors
/// [`crate::DbError`].
pub async fn windows_of_customers(
    db: &crate::ReadDb,
    windows: &[JobWindow<'_>],
) -> Result<Vec<NumberedJob>, crate::DbError> {
    use crate::row::FromRow;
    let mut customers: Vec<&str> = windows.iter().map(|w| w.customer).collect();
    customers.sort_unstable();
    customers.dedup();
    let mut params: Vec<crate::Param> = customers.iter().map(|c| crate::Param::from(*c)).collect();
    let mut wanted = vec!["page_offset = 0".to_string()];
    wanted.extend(windows.iter().map(|w| window_condition(w, &mut params)));
    let marks: Vec<String> = (1..=customers.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT * FROM (
            SELECT j.*,
                ROW_NUMBER() OVER (PARTITION BY j.customer_id ORDER BY j.booked_at DESC, j.job_id) - 1 AS page_offset,
                COUNT(*) OVER (PARTITION BY j.customer_id) AS page_total
            FROM rm_jobs j WHERE j.customer_id IN ({})
         ) numbered WHERE {} ORDER BY customer_id, page_offset",
        marks.join(", "),
        wanted.join(" OR ")
    );
    db.query(&sql, &params)
        .await?
        .iter()
        .map(|r| NumberedJob::from_row(r).map_err(|e| crate::DbError::new(format!("rm_jobs: {e}"))))
        .collect()
}

/// A condition (on `page_offset` and `page_total`) that holds for every row of `w` and for
/// few others. Parameters are appended to `params`. Public so that the api's paging can
/// check it admits every row of the windows it computes.
pub fn window_condition(w: &JobWindow<'_>, params: &mut Vec<crate::Param>) -> String {
    let mut bind = |v: crate::Param| {
        params.push(v);
        format!("${}", params.len())
    };
    let int = |n: usize| crate::Param::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let mut parts = vec![format!(
        "customer_id = {}",
        bind(crate::Param::from(w.customer))
    )];
    let start = w.after.map_or(0, |a| a.saturating_add(1));
    parts.push(format!("page_offset >= {}", bind(int(start))));
    // The window ends by `start + first` (50 without `first` or `last`), by `before`, and by
    // the total; with `last` it starts `last` rows before its end.
    let mut ends = Vec::new();
    match (w.first, w.last) {
        (Some(f), _) => ends.push(start.saturating_add(f.min(100))),
        (None, None) => ends.push(start.saturating_add(50)),
        (None, Some(_)) => {}
    }
    ends.extend(w.before);
    if let Some(&end) = ends.iter().min() {
        parts.push(format!("page_offset < {}", bind(int(end))));
    }
    if let Some(l) = w.last {
        let l = l.min(100);
        // offset >= min(end, total) - last
        let mut near = vec![format!("page_offset + {} >= page_total", bind(int(l)))];
        if let Some(&end) = ends.iter().min() {
            near.push(format!(
                "page_offset + {} >= {}",
                bind(int(l)),
                bind(int(end))
            ));
        }
        parts.push(format!("({})", near.join(" OR ")));
    }
    format!("({})", parts.join(" AND "))
}

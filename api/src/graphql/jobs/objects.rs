//! What the job and vehicle queries answer, and how a read-model row maps to each.

// The parts share their parent's imports.
use super::*;

/// A cleaning job.
#[derive(Debug, Clone, SimpleObject)]
pub struct Job {
    /// Id.
    pub id: ID,
    /// The customer.
    pub customer_id: ID,
    /// `booked`, `scheduled`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    /// `staff` or `online`.
    pub source: Option<String>,
    /// Services.
    pub services: Vec<String>,
    /// Window start (RFC 3339).
    pub scheduled_start: Option<String>,
    /// Window end.
    pub scheduled_end: Option<String>,
    /// How often it was moved.
    pub reschedule_count: i64,
    /// Technician.
    pub technician_id: Option<ID>,
    /// Van.
    pub vehicle_id: Option<ID>,
    /// Amount charged, once completed.
    pub amount: Option<Money>,
    /// Paid.
    pub paid: bool,
    /// Booked at.
    pub booked_at: String,
    /// Completed at.
    pub completed_at: Option<String>,
}

pub(super) fn s(r: &JsonRow, k: &str) -> Option<String> {
    r.get(k).and_then(|v| v.as_str()).map(str::to_string)
}

pub(in crate::graphql) fn job_from_row(r: &JsonRow) -> Job {
    Job {
        id: ID(s(r, "job_id").unwrap_or_default()),
        customer_id: ID(s(r, "customer_id").unwrap_or_default()),
        status: s(r, "status").unwrap_or_default(),
        source: s(r, "source"),
        services: s(r, "services")
            .and_then(|x| serde_json::from_str(&x).ok())
            .unwrap_or_default(),
        scheduled_start: s(r, "scheduled_start"),
        scheduled_end: s(r, "scheduled_end"),
        reschedule_count: r
            .get("reschedule_count")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        technician_id: s(r, "technician_id").map(ID),
        vehicle_id: s(r, "vehicle_id").map(ID),
        amount: r
            .get("amount_cents")
            .and_then(serde_json::Value::as_i64)
            .map(Money::usd),
        paid: r.get("paid").and_then(serde_json::Value::as_i64) == Some(1),
        booked_at: s(r, "booked_at").unwrap_or_default(),
        completed_at: s(r, "completed_at"),
    }
}

pub(super) async fn load_job(state: &AppState, id: &str) -> Option<Job> {
    jobs::get(state.projections.db(), id)
        .await
        .ok()?
        .as_ref()
        .map(job_from_row)
}

/// A van on the vehicle board.
#[derive(Debug, Clone, SimpleObject)]
pub struct Vehicle {
    /// Id.
    pub id: ID,
    /// Name.
    pub name: String,
    /// Plate.
    pub plate: Option<String>,
    /// `available`, `on_job` or `maintenance`.
    pub status: String,
    /// The job it is on.
    pub current_job_id: Option<ID>,
}

pub(super) fn vehicle(r: &JsonRow) -> Vehicle {
    Vehicle {
        id: ID(s(r, "vehicle_id").unwrap_or_default()),
        name: s(r, "name").unwrap_or_default(),
        plate: s(r, "plate"),
        status: s(r, "status").unwrap_or_default(),
        current_job_id: s(r, "current_job_id").map(ID),
    }
}

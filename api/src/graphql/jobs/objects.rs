//! What the job and vehicle queries answer, and how a read-model row maps to each.

// The parts share their parent's imports.
use super::*;
use projections::crm::jobs::{JobRow, VehicleRow};

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

pub(in crate::graphql) fn job_from_row(r: &JobRow) -> Job {
    Job {
        id: ID(r.job_id.clone()),
        customer_id: ID(r.customer_id.clone()),
        status: r.status.clone(),
        source: r.source.clone(),
        services: r.services.clone(),
        scheduled_start: r.scheduled_start.clone(),
        scheduled_end: r.scheduled_end.clone(),
        reschedule_count: r.reschedule_count,
        technician_id: r.technician_id.clone().map(ID),
        vehicle_id: r.vehicle_id.clone().map(ID),
        amount: r.amount_cents.map(Money::usd),
        paid: r.paid,
        booked_at: r.booked_at.clone(),
        completed_at: r.completed_at.clone(),
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

pub(super) fn vehicle(r: &VehicleRow) -> Vehicle {
    Vehicle {
        id: ID(r.vehicle_id.clone()),
        name: r.name.clone(),
        plate: r.plate.clone(),
        status: r.status.clone(),
        current_job_id: r.current_job_id.clone().map(ID),
    }
}

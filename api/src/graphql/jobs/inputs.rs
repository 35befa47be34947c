//! The inputs and payloads of the job, payment and vehicle mutations.

// The parts share their parent's imports.
use super::*;

/// A booking.
#[derive(InputObject, Debug)]
pub struct BookJobInput {
    /// The customer.
    pub customer_id: ID,
    /// Services requested.
    pub services: Vec<String>,
    /// Window start (optional: book now, schedule later).
    pub start: Option<DateTime<Utc>>,
    /// Window end.
    pub end: Option<DateTime<Utc>>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An online booking by the signed-in customer.
#[derive(InputObject, Debug)]
pub struct BookServiceOnlineInput {
    /// Services requested.
    pub services: Vec<String>,
    /// Preferred window start.
    pub start: Option<DateTime<Utc>>,
    /// Preferred window end.
    pub end: Option<DateTime<Utc>>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A window for an unscheduled job.
#[derive(InputObject, Debug)]
pub struct ScheduleJobInput {
    /// Job.
    pub job_id: ID,
    /// Window start.
    pub start: DateTime<Utc>,
    /// Window end.
    pub end: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A new window for a scheduled job.
#[derive(InputObject, Debug)]
pub struct RescheduleJobInput {
    /// Job.
    pub job_id: ID,
    /// New window start.
    pub start: DateTime<Utc>,
    /// New window end.
    pub end: DateTime<Utc>,
    /// Why (kept in the history).
    pub reason: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A van going to the workshop.
#[derive(InputObject, Debug)]
pub struct SendVehicleToMaintenanceInput {
    /// Van.
    pub vehicle_id: ID,
    /// Why.
    pub reason: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A van, by id.
#[derive(InputObject, Debug)]
pub struct VehicleRefInput {
    /// Van.
    pub vehicle_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// How money taken in person was paid.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::payment::PaymentMethod")]
pub enum PaymentMethod {
    /// Cash.
    Cash,
    /// A cheque.
    Check,
    /// A card on the technician's terminal (not through Stripe).
    CardTerminal,
}

/// Money taken in person for a job.
#[derive(InputObject, Debug)]
pub struct RecordJobPaymentInput {
    /// Job (completed, not yet paid).
    pub job_id: ID,
    /// How it was paid.
    pub method: PaymentMethod,
    /// Amount in cents (default: the job's amount).
    pub amount_cents: Option<i64>,
    /// Cheque number or terminal receipt.
    pub reference: Option<String>,
    /// Makes retries safe: a retry with the same key records one payment.
    pub idempotency_key: Option<String>,
}

/// A payment recorded.
#[derive(SimpleObject, Debug)]
pub struct PaymentRecordedPayload {
    /// Our payment id.
    pub payment_id: ID,
    /// Amount recorded.
    pub amount: Money,
    /// Log position (for `sync`; the job shows paid once the policy has marked it).
    pub position: String,
}

/// Asking the customer to pay a completed job by card.
#[derive(InputObject, Debug)]
pub struct RequestJobPaymentInput {
    /// Job (completed, with its amount, not yet paid).
    pub job_id: ID,
    /// Makes retries safe: a retry with the same key finds the same payment.
    pub idempotency_key: Option<String>,
}

/// A payment intent created at Stripe.
#[derive(SimpleObject, Debug)]
pub struct PaymentRequestPayload {
    /// Our payment id.
    pub payment_id: ID,
    /// Stripe's `pi_…` id.
    pub provider_intent_id: String,
    /// What the card form confirms the payment with (hand it to Stripe.js only).
    pub client_secret: Option<String>,
    /// Amount requested.
    pub amount: Money,
    /// Log position (for `sync`).
    pub position: String,
}

/// Assigning a van.
#[derive(InputObject, Debug)]
pub struct AssignVehicleInput {
    /// Job.
    pub job_id: ID,
    /// Van.
    pub vehicle_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Assigning a technician.
#[derive(InputObject, Debug)]
pub struct AssignTechnicianInput {
    /// Job.
    pub job_id: ID,
    /// Staff user doing the work.
    pub technician_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Completing a job.
#[derive(InputObject, Debug)]
pub struct CompleteJobInput {
    /// Job.
    pub job_id: ID,
    /// Amount charged, in cents (≥ 0).
    pub amount_cents: i64,
    /// Services performed.
    pub services: Vec<String>,
    /// Technician (default: the assigned one).
    pub technician_id: Option<ID>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Cancelling a job.
#[derive(InputObject, Debug)]
pub struct CancelJobInput {
    /// Job.
    pub job_id: ID,
    /// Why.
    pub reason: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Starting a job.
#[derive(InputObject, Debug)]
pub struct StartJobInput {
    /// Job.
    pub job_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A new van.
#[derive(InputObject, Debug)]
pub struct RegisterVehicleInput {
    /// Name ("Van 3").
    pub name: String,
    /// Plate.
    pub plate: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The changed job and the event position.
#[derive(SimpleObject, Debug)]
pub struct JobPayload {
    /// The job as the read model now shows it.
    pub job: Option<Job>,
    /// Log position of the last event (for `sync`).
    pub position: String,
}

/// A van after a change.
#[derive(SimpleObject, Debug)]
#[graphql(complex)]
pub struct VehiclePayload {
    /// Its id.
    pub vehicle_id: ID,
    /// Log position.
    pub position: String,
}

#[async_graphql::ComplexObject]
impl VehiclePayload {
    /// The van as the board now shows it.
    async fn vehicle(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vehicle>> {
        let (state, rc) = parts(ctx)?;
        Ok(
            jobs::vehicle_by_id(state.projections.db(), self.vehicle_id.as_ref())
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?
                .as_ref()
                .map(vehicle),
        )
    }
}

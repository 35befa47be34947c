//! Helpers for the application-layer tests: a [`Crm`] on a fresh database,
//! and the few commands most scenarios start with.

use commands::domain::consent::{Channel, ConsentSource};
use commands::domain::customer::CustomerCommand;
use commands::domain::ids::{CustomerId, JobId, StaffUserId};
use commands::domain::job::{BookingSource, JobCommand, ScheduleWindow};
use commands::domain::staff::StaffUserCommand;
use commands::domain::{testing, Actor as DomainActor, Role};
use commands::{Actor, Crm, EventLog, EventMetadata, LogPosition, RecordedEvent};
use uuid::Uuid;

/// A staff actor for commands.
pub fn staff() -> DomainActor {
    testing::manager()
}

/// Metadata for a test command.
pub fn meta() -> EventMetadata {
    EventMetadata::new(Actor::Staff("test".into()), chrono::Utc::now())
}

/// A CRM whose clock is fixed at `testing::test_now()` in the test time zone.
pub fn crm(log: EventLog) -> Crm {
    Crm::new(log, testing::test_services())
}

/// Creates customer `n` with a phone, an email and SMS consent.
///
/// # Panics
/// When a command fails.
pub async fn customer(crm: &Crm, n: u128) -> CustomerId {
    let id = CustomerId(Uuid::from_u128(n));
    let create = CustomerCommand::Create {
        customer_id: id,
        name: format!("Customer {n}"),
        email: Some(format!("c{n}@example.com")),
        phone: Some(format!("+1512555{:04}", n % 10_000)),
        birthday: None,
        customer_since: None,
    };
    crm.customers()
        .execute(id, staff(), create, &meta())
        .await
        .expect("create customer");
    let consent = CustomerCommand::GrantMarketingConsent {
        channel: Channel::Sms,
        source: ConsentSource::Staff,
    };
    crm.customers()
        .execute(id, staff(), consent, &meta())
        .await
        .expect("grant consent");
    id
}

/// Invites a technician.
///
/// # Panics
/// When a command fails.
pub async fn technician(crm: &Crm) -> StaffUserId {
    let id = StaffUserId(Uuid::from_u128(9_001));
    let cmd = StaffUserCommand::Invite {
        staff_user_id: id,
        email: "tech@example.com".into(),
        name: "Tech One".into(),
        role: Role::Staff,
        password_hash: None,
    };
    crm.staff_users()
        .execute(id, DomainActor::System, cmd, &meta())
        .await
        .expect("invite");
    id
}

/// Books, schedules and assigns job `n` for `customer`.
///
/// # Panics
/// When a command fails.
pub async fn scheduled_job(
    crm: &Crm,
    n: u128,
    customer: CustomerId,
    technician: StaffUserId,
) -> JobId {
    let job = JobId(Uuid::from_u128(n));
    let start = testing::test_now() + chrono::Duration::days(1);
    let window = ScheduleWindow::new(start, start + chrono::Duration::hours(2)).expect("window");
    let book = JobCommand::Book {
        job_id: job,
        customer_id: customer,
        source: BookingSource::Staff,
        services: vec!["carpet cleaning".into()],
        window: Some(window),
    };
    crm.jobs()
        .execute(job, staff(), book, &meta())
        .await
        .expect("book");
    let assign = JobCommand::AssignTechnician {
        technician_id: technician,
    };
    crm.jobs()
        .execute(job, staff(), assign, &meta())
        .await
        .expect("assign");
    job
}

/// Completes a job for `amount_cents`.
///
/// # Panics
/// When the command fails.
pub async fn complete(crm: &Crm, job: JobId, amount_cents: i64) {
    let cmd = JobCommand::Complete {
        amount_cents,
        services: vec!["carpet cleaning".into()],
        technician_id: None,
    };
    crm.jobs()
        .execute(job, staff(), cmd, &meta())
        .await
        .expect("complete");
}

/// Every event in the log, in log order.
///
/// # Panics
/// When the log cannot be read, or the committed head stays unreadable for a minute (a
/// transaction held open that long, or a store whose order is broken).
pub async fn all_events(log: &EventLog) -> Vec<RecordedEvent> {
    // Everything committed before the call: an empty batch before that head means a
    // transaction elsewhere in the cluster (another test's) holds events back, not the end.
    let target = log.committed_head().await.expect("committed head");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = Vec::new();
    let mut after = LogPosition::START;
    loop {
        let batch = log.read_all(after, 1_000).await.expect("read log");
        let Some(last) = batch.last() else {
            if after >= target {
                return out;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log stopped at {after}, before its committed head {target}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        };
        after = last.position;
        out.extend(batch);
    }
}

/// The event types of one stream, in order.
///
/// # Panics
/// When the stream cannot be read.
pub async fn stream_types(log: &EventLog, aggregate_type: &str, id: &str) -> Vec<String> {
    log.load_stream(aggregate_type, id, 0)
        .await
        .expect("load stream")
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

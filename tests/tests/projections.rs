//! Read models: exactly-once application, rebuilds, failures, analytics in
//! the business's time zone. Events are appended as the domain writes them
//! (the JSON shapes of docs/events.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use commands::store::{AppendRequest, NewEvent};
use commands::{Actor, EventLog, EventMetadata, LogPosition};
use projections::db::ReadTx;
use projections::projection::{ApplyContext, BoxFut};
use projections::{
    Decoded, Param, Projection, ProjectionError, ProjectionRunner, ProjectionStatus, Slot,
};
use serde_json::{json, Value};
use tests::{Engine, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

tests::on_both_engines!(
    read_models_follow_the_log_and_a_rebuild_gives_identical_tables,
    four_writers_and_two_runners_apply_every_event_exactly_once,
    a_failing_projection_stops_alone_reports_the_event_and_resumes_once_fixed,
    a_refused_event_is_parked_with_its_aggregates_later_events_while_the_rest_goes_on,
    revenue_is_dated_in_the_business_time_zone_across_dst_and_new_year,
    erasing_a_customer_removes_personal_data_from_the_read_model,
    staged_rows_copy_byte_for_byte_including_tabs_newlines_and_backslashes,
    a_projection_starting_over_beside_current_ones_moves_no_checkpoint_back,
);

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("valid time")
}

/// The id of a test's named aggregate: a UUID, as every id the write side writes is
/// (the typed read side refuses anything else).
fn uid(name: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

async fn append(
    log: &EventLog,
    aggregate_type: &str,
    id: &str,
    expected: u64,
    events: Vec<(&str, Value)>,
) -> u64 {
    let meta =
        serde_json::to_value(EventMetadata::new(Actor::Staff("s1".into()), Utc::now()).to_map())
            .expect("json");
    let n = events.len() as u64;
    log.append(AppendRequest {
        aggregate_type: aggregate_type.into(),
        aggregate_id: uid(id),
        expected_sequence: expected,
        events: events
            .into_iter()
            .map(|(t, body)| NewEvent {
                event_type: t.into(),
                event_version: "1.0".into(),
                payload: json!({ t: body }),
                metadata: meta.clone(),
            })
            .collect(),
        snapshot: None,
        idempotency: None,
    })
    .await
    .expect("append");
    expected + n
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn customer(log: &EventLog, id: &str, name: &str, when: DateTime<Utc>) {
    append(log, "Customer", id, 0, vec![("CustomerCreated", json!({
        "customer_id": uid(id), "name": name, "email": format!("{id}@example.com"), "phone": "+15125550100",
        "birthday": null, "customer_since": "2024-01-01", "at": at(when)
    }))]).await;
}

async fn completed_job(
    log: &EventLog,
    job: &str,
    cust: &str,
    tech: &str,
    amount: i64,
    services: &[&str],
    when: DateTime<Utc>,
) {
    append(log, "Job", job, 0, vec![
        ("JobBooked", json!({"job_id": uid(job), "customer_id": uid(cust), "source": "staff", "services": services, "at": at(when)})),
        ("JobScheduled", json!({"customer_id": uid(cust), "window": {"start": at(when), "end": at(when)}, "at": at(when)})),
        ("JobCompleted", json!({"customer_id": uid(cust), "amount": amount, "services": services, "technician_id": uid(tech), "vehicle_id": null, "at": at(when)})),
    ]).await;
}

async fn runner(log: &EventLog) -> ProjectionRunner {
    let r = ProjectionRunner::new(log.clone(), TZ);
    r.prepare().await.expect("prepare");
    r
}

async fn dump_all(r: &ProjectionRunner) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for n in r.names() {
        out.insert(n.to_string(), r.dump(n, Slot::Live).await.expect("dump"));
    }
    out
}

async fn read_models_follow_the_log_and_a_rebuild_gives_identical_tables(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    customer(&log, "c1", "Ada Lovelace", utc(2026, 3, 1, 15, 0)).await;
    customer(&log, "c2", "Grace Hopper", utc(2026, 3, 2, 15, 0)).await;
    append(
        &log,
        "Customer",
        "c1",
        1,
        vec![(
            "CustomerTagged",
            json!({"tag": "vip", "at": at(utc(2026, 3, 3, 0, 0))}),
        )],
    )
    .await;
    completed_job(
        &log,
        "j1",
        "c1",
        "t1",
        25_000,
        &["carpet"],
        utc(2026, 3, 5, 16, 0),
    )
    .await;
    completed_job(
        &log,
        "j2",
        "c1",
        "t2",
        10_001,
        &["carpet", "upholstery"],
        utc(2026, 3, 6, 16, 0),
    )
    .await;
    let r = runner(&log).await;
    r.catch_up_all().await.expect("catch up");

    let c1 = r.query("SELECT name, tags, jobs_completed, total_spent_cents FROM rm_customers WHERE customer_id = $1", &[Param::from(uid("c1"))]).await.expect("query");
    assert_eq!(c1[0]["name"], "Ada Lovelace");
    assert_eq!(c1[0]["tags"], "[\"vip\"]");
    assert_eq!(c1[0]["jobs_completed"], 2);
    assert_eq!(c1[0]["total_spent_cents"], 35_001);
    let by_service = r.query("SELECT service, CAST(SUM(amount_cents) AS BIGINT) AS cents FROM rm_revenue_by_service GROUP BY service ORDER BY service", &[]).await.expect("query");
    assert_eq!(by_service[0]["service"], "carpet");
    assert_eq!(
        by_service[0]["cents"]
            .as_i64()
            .or_else(|| by_service[0]["cents"].as_str().and_then(|s| s.parse().ok())),
        Some(25_000 + 5_001)
    );
    let returning = r
        .query(
            "SELECT job_id, returning_customer FROM rm_revenue ORDER BY local_date",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(
        (
            returning[0]["returning_customer"].clone(),
            returning[1]["returning_customer"].clone()
        ),
        (json!(0), json!(1))
    );

    let before = dump_all(&r).await;
    for n in r.names() {
        r.rebuild(n, &|_| {}, &|_, _| true).await.expect("rebuild");
    }
    assert_eq!(
        dump_all(&r).await,
        before,
        "rebuilding every projection changes nothing"
    );
    // The rebuilt tables keep following the log.
    customer(&log, "c3", "Katherine Johnson", utc(2026, 3, 7, 15, 0)).await;
    r.catch_up_all().await.expect("catch up");
    let n = r
        .query("SELECT customer_id FROM rm_customers", &[])
        .await
        .expect("query")
        .len();
    assert_eq!(n, 3);
    let status = r.status().await.expect("status");
    assert!(
        status.iter().all(|s| s.caught_up && s.state == "running"),
        "{status:?}"
    );
}

/// One of the CRM's read models as one instance runs it: it applies each event as the read
/// model does and, in the same transaction, records in `test_applied_by` that this instance
/// applied it. The record therefore holds exactly what committed, as the read model's rows
/// and checkpoint do: a batch rolled back, or lost to the other instance, leaves no line.
struct RecordedBy {
    inner: Arc<dyn Projection>,
    instance: &'static str,
}

impl Projection for RecordedBy {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn version(&self) -> i64 {
        self.inner.version()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }
    fn schema(&self) -> &'static [&'static str] {
        self.inner.schema()
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            self.inner.apply(tx, ctx, e).await?;
            tx.execute(
                "INSERT INTO test_applied_by (projection, position, instance) VALUES ($1, $2, $3)",
                &[
                    self.inner.name().into(),
                    e.position.to_string().into(),
                    self.instance.into(),
                ],
            )
            .await?;
            Ok(())
        })
    }
}

/// Every CRM read model as `instance` runs it ([`RecordedBy`]).
async fn recorded_runner(log: &EventLog, instance: &'static str) -> ProjectionRunner {
    let read_models = projections::crm::all()
        .into_iter()
        .map(|inner| Arc::new(RecordedBy { inner, instance }) as Arc<dyn Projection>)
        .collect();
    let r = ProjectionRunner::with_projections(log.clone(), TZ, read_models);
    r.prepare().await.expect("prepare");
    r
}

async fn four_writers_and_two_runners_apply_every_event_exactly_once(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    // Two "instances": two runners on separate connections to the same database, each
    // stoppable on its own. Their read models record which instance applied each event.
    let other = db.log().await;
    let r1 = recorded_runner(&log, "first").await;
    let r2 = recorded_runner(&other, "second").await;
    r1.db()
        .execute(
            "CREATE TABLE test_applied_by (projection TEXT NOT NULL, position TEXT NOT NULL, instance TEXT NOT NULL)",
            &[],
        )
        .await
        .expect("the table of who applied what");
    let (stop1, stop1_rx) = tokio::sync::watch::channel(false);
    let (stop2, stop2_rx) = tokio::sync::watch::channel(false);

    // Four writers, 50 customers each with three notes.
    let write = |from: usize, to: usize| {
        let mut writers = Vec::new();
        for w in 0..4 {
            let log = log.clone();
            writers.push(tokio::spawn(async move {
                for i in from..to {
                    let id = format!("w{w}-c{i}");
                    customer(&log, &id, "Name", utc(2026, 1, 1, 12, 0)).await;
                    let mut seq = 1;
                    for k in 0..3 {
                        seq = append(&log, "Customer", &id, seq, vec![("CustomerNoteAdded", json!({"text": "n", "author": {"kind": "system"}, "at": at(utc(2026, 1, 2, 12, k))}))]).await;
                    }
                }
            }));
        }
        writers
    };
    // The first instance starts alone, so that it has work of its own whatever the
    // scheduling; the second joins for the next 15 customers each, both instances running
    // side by side; then the first stops (a deploy, a crash) and the second must carry the
    // rest alone.
    let first = r1.clone().spawn(stop1_rx);
    for w in write(0, 10) {
        w.await.expect("writer");
    }
    let alone = log.committed_head().await.expect("head");
    assert!(
        r1.wait_for(alone, Duration::from_secs(60))
            .await
            .expect("wait"),
        "the first instance caught up alone"
    );
    let second = r2.clone().spawn(stop2_rx);
    for w in write(10, 25) {
        w.await.expect("writer");
    }
    stop1.send(true).expect("stop the first");
    for h in first {
        h.await.expect("first runner task");
    }
    let handed_over = log.committed_head().await.expect("head");
    for w in write(25, 50) {
        w.await.expect("writer");
    }
    let head = log.committed_head().await.expect("head");
    assert!(head > handed_over);
    // Only the second instance runs now: reaching the head is its work.
    assert!(
        r2.wait_for(head, Duration::from_secs(60))
            .await
            .expect("wait"),
        "the second instance caught up alone"
    );
    stop2.send(true).expect("stop the second");
    for h in second {
        h.await.expect("second runner task");
    }
    let total = log.count().await.expect("count") as i64;
    assert_eq!(total, 4 * 50 * 4);
    let notes = r1
        .query(
            "SELECT CAST(SUM(notes) AS BIGINT) AS n, COUNT(*) AS c FROM rm_customers",
            &[],
        )
        .await
        .expect("query");
    let num = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(-1)
    };
    assert_eq!(num(&notes[0]["n"]), 4 * 50 * 3, "every note counted once");
    assert_eq!(num(&notes[0]["c"]), 4 * 50);
    let audit = r1
        .query("SELECT COUNT(*) AS c FROM rm_audit_trail", &[])
        .await
        .expect("query");
    assert_eq!(num(&audit[0]["c"]), total);
    for s in r1.status().await.expect("status") {
        assert_eq!(
            s.events_applied, total,
            "{} applied each event once",
            s.name
        );
    }

    // Who applied what, as committed: every read model applied every event once, by one
    // instance or the other.
    let rows = r1
        .query(
            "SELECT projection, position, instance FROM test_applied_by",
            &[],
        )
        .await
        .expect("query");
    let mut applied: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for row in &rows {
        let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
        applied
            .entry((text("projection"), text("position")))
            .or_default()
            .push(text("instance"));
    }
    let more_than_once: Vec<_> = applied
        .iter()
        .filter(|(_, by)| by.len() != 1)
        .take(10)
        .collect();
    assert!(
        more_than_once.is_empty(),
        "applied more than once: {more_than_once:?}"
    );
    let names = r1.names();
    for name in &names {
        let events = applied
            .keys()
            .filter(|(projection, _)| projection.as_str() == *name)
            .count() as i64;
        assert_eq!(events, total, "{name} applied every event");
    }
    assert_eq!(
        rows.len() as i64,
        total * names.len() as i64,
        "no other lines"
    );
    // Both instances did work, each where only it could: everything up to the point where the
    // second joined was the first's, everything after the hand-over the second's.
    let mut by_instance: BTreeMap<String, i64> = BTreeMap::new();
    for ((projection, position), by) in &applied {
        let applied_at: LogPosition = position.parse().expect("a log position");
        let instance = by[0].as_str();
        *by_instance.entry(instance.to_string()).or_default() += 1;
        if applied_at <= alone {
            assert_eq!(instance, "first", "{projection} applied {position}");
        }
        if applied_at > handed_over {
            assert_eq!(instance, "second", "{projection} applied {position}");
        }
    }
    assert!(
        by_instance.get("first").is_some_and(|n| *n > 0)
            && by_instance.get("second").is_some_and(|n| *n > 0),
        "events applied per instance: {by_instance:?}"
    );
}

async fn a_projection_starting_over_beside_current_ones_moves_no_checkpoint_back(engine: Engine) {
    // What a deploy that changes one projection's version does: it starts from the
    // beginning while the others are at the head, and the group reads from the lowest.
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    for i in 0..40 {
        let id = format!("c{i}");
        customer(&log, &id, "Name", utc(2026, 1, 1, 12, 0)).await;
        append(&log, "Customer", &id, 1, vec![("CustomerNoteAdded", json!({"text": "n", "author": {"kind": "system"}, "at": at(utc(2026, 1, 2, 12, 0))}))]).await;
    }
    let r = runner(&log).await.with_batch(25);
    r.catch_up_all().await.expect("catch up");
    let before = dump_all(&r).await;
    r.db()
        .execute(
            "UPDATE projection_checkpoints SET version = 0 WHERE name = 'customers'",
            &[],
        )
        .await
        .expect("old version");
    r.prepare().await.expect("prepare resets customers");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handles = r.clone().spawn(stop_rx);
    let head = log.committed_head().await.expect("head");
    assert!(
        r.wait_for(head, Duration::from_secs(60))
            .await
            .expect("wait"),
        "caught up"
    );
    stop_tx.send(true).expect("stop");
    for h in handles {
        h.await.expect("runner task");
    }
    let after = dump_all(&r).await;
    let changed: Vec<&String> = after
        .keys()
        .filter(|n| after.get(*n) != before.get(*n))
        .collect();
    assert!(
        changed.is_empty(),
        "read models changed (counted twice?): {changed:?}"
    );
    let total = log.count().await.expect("count") as i64;
    for s in r.status().await.expect("status") {
        assert_eq!(
            s.events_applied, total,
            "{} applied each event once",
            s.name
        );
    }
}

/// One projection's status.
async fn status_of(r: &ProjectionRunner, name: &str) -> ProjectionStatus {
    r.status()
        .await
        .expect("status")
        .into_iter()
        .find(|s| s.name == name)
        .expect("a projection of that name")
}

/// The failure that stops a projection rather than parking an event: the database refuses the
/// statement for a reason of its own (here the table is gone), so the same event will apply
/// once that is fixed. The background runner takes the projection out of the group, retries it
/// alone with back-off, and lets it resume by itself once the cause is fixed.
async fn a_failing_projection_stops_alone_reports_the_event_and_resumes_once_fixed(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    customer(&log, "c1", "Ada", utc(2026, 3, 1, 15, 0)).await;
    let r = runner(&log).await;
    r.catch_up_all().await.expect("catch up");
    // The cause: the jobs read model's table is gone (renamed away, as a half-run migration or
    // an operator's slip leaves it). Nothing is wrong with the events.
    r.db()
        .execute("ALTER TABLE rm_jobs RENAME TO rm_jobs_away", &[])
        .await
        .expect("break the jobs table");
    completed_job(
        &log,
        "j1",
        "c1",
        "t1",
        25_000,
        &["carpet"],
        utc(2026, 3, 5, 16, 0),
    )
    .await;
    // A later event, for the other read models to carry on with.
    customer(&log, "c2", "Grace", utc(2026, 3, 6, 15, 0)).await;
    let failing = log.load_stream("Job", &uid("j1"), 0).await.expect("stream")[0].position;
    let head = log.committed_head().await.expect("head");

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    // Sampled from before the failure until after the resume: no other read model is ever
    // seen stopped or with an error.
    let watcher = {
        let r = r.clone();
        let stopped = stop_rx.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !*stopped.borrow() {
                for s in r.status().await.expect("status") {
                    if s.name != "jobs" && (s.state != "running" || s.last_error.is_some()) {
                        seen.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    let handles = r.clone().spawn(stop_rx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = status_of(&r, "jobs").await;
        if jobs.state == "failed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs never stopped: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Alone: every other read model carries on past the event jobs stopped on.
    for name in r.names().into_iter().filter(|n| *n != "jobs") {
        assert!(
            r.wait_for_projection(name, head, Duration::from_secs(60))
                .await
                .expect("wait"),
            "{name} carried on past the event jobs stopped on"
        );
    }
    let status = r.status().await.expect("status");
    for s in status.iter().filter(|s| s.name != "jobs") {
        assert!(
            s.caught_up && s.state == "running" && s.last_error.is_none(),
            "{s:?}"
        );
    }
    // Those that follow jobs too: the customer's completed job already counts.
    let c1 = r
        .query(
            "SELECT jobs_completed FROM rm_customers WHERE customer_id = $1",
            &[Param::from(uid("c1"))],
        )
        .await
        .expect("query");
    assert_eq!(c1[0]["jobs_completed"], 1, "{c1:?}");
    // It reports the event: its position, stream and type, and the database's error.
    let jobs = status.iter().find(|s| s.name == "jobs").expect("jobs");
    assert_eq!(jobs.state, "failed", "{jobs:?}");
    assert_eq!(
        jobs.error_position.as_deref(),
        Some(failing.to_string().as_str()),
        "{jobs:?}"
    );
    let error = jobs.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&uid("j1")) && error.contains("JobBooked") && error.contains("rm_jobs"),
        "{jobs:?}"
    );
    // Stopped, not parked: its checkpoint stays before the event, nothing of it skipped.
    assert_eq!(jobs.parked, 0, "{jobs:?}");
    assert!(!jobs.caught_up, "{jobs:?}");
    let checkpoint: LogPosition = jobs.position.parse().expect("a log position");
    assert!(checkpoint < failing, "{jobs:?}");
    // Retrying before the fix fails on the same event again.
    let retried = r.catch_up("jobs").await.expect_err("still broken");
    assert!(retried.to_string().contains(&uid("j1")), "{retried}");
    assert_eq!(
        status_of(&r, "jobs").await.error_position,
        Some(failing.to_string())
    );

    // The fix: the table is back. Nobody restarts anything: the runner's own retries resume
    // it, through the event it stopped on and on with what arrives after the fix.
    r.db()
        .execute("ALTER TABLE rm_jobs_away RENAME TO rm_jobs", &[])
        .await
        .expect("fix the jobs table");
    completed_job(
        &log,
        "j2",
        "c2",
        "t2",
        10_000,
        &["tile"],
        utc(2026, 3, 7, 16, 0),
    )
    .await;
    let head = log.committed_head().await.expect("head");
    assert!(
        r.wait_for_projection("jobs", head, Duration::from_secs(60))
            .await
            .expect("wait"),
        "jobs resumed once fixed: {:?}",
        status_of(&r, "jobs").await
    );
    assert!(
        r.wait_for(head, Duration::from_secs(60))
            .await
            .expect("wait"),
        "every read model at the head"
    );
    stop.send(true).expect("stop");
    for h in handles {
        h.await.expect("runner task");
    }
    let seen = watcher.await.expect("watcher");
    assert!(
        seen.is_empty(),
        "other read models seen stopped or failing: {seen:?}"
    );

    let total = log.count().await.expect("count") as i64;
    let jobs = status_of(&r, "jobs").await;
    assert_eq!(
        (
            jobs.state.as_str(),
            jobs.last_error.as_deref(),
            jobs.error_position.as_deref(),
            jobs.parked
        ),
        ("running", None, None, 0),
        "{jobs:?}"
    );
    assert!(jobs.caught_up, "{jobs:?}");
    let checkpoint: LogPosition = jobs.position.parse().expect("a log position");
    assert!(checkpoint > failing && checkpoint >= head, "{jobs:?}");
    // The event it had stopped on is in its table, with the rest of that job; so is the job
    // written after the fix.
    let j1 = r
        .query(
            "SELECT status, amount_cents FROM rm_jobs WHERE job_id = $1",
            &[Param::from(uid("j1"))],
        )
        .await
        .expect("query");
    assert_eq!(j1.len(), 1, "{j1:?}");
    assert_eq!(
        (j1[0]["status"].clone(), j1[0]["amount_cents"].clone()),
        (json!("completed"), json!(25_000)),
        "{j1:?}"
    );
    let j2 = r
        .query(
            "SELECT status FROM rm_jobs WHERE job_id = $1",
            &[Param::from(uid("j2"))],
        )
        .await
        .expect("query");
    assert_eq!(j2.len(), 1, "{j2:?}");
    assert_eq!(j2[0]["status"], "completed", "{j2:?}");
    // Every read model applied each event once: jobs nothing twice across its failed
    // attempts, the others nothing again.
    for s in r.status().await.expect("status") {
        assert_eq!(s.events_applied, total, "{s:?}");
        assert_eq!(s.state, "running", "{s:?}");
    }
    // And the resumed read model is what a clean rebuild makes.
    let resumed = r.dump("jobs", Slot::Live).await.expect("dump");
    r.rebuild("jobs", &|_| {}, &|_, _| true)
        .await
        .expect("rebuild");
    assert_eq!(
        r.dump("jobs", Slot::Live).await.expect("dump"),
        resumed,
        "the resumed jobs read model equals a clean rebuild"
    );
}

async fn a_refused_event_is_parked_with_its_aggregates_later_events_while_the_rest_goes_on(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    customer(&log, "c1", "Ada", utc(2026, 3, 1, 15, 0)).await;
    // A JobBooked without customer_id: the jobs projection cannot apply it.
    append(&log, "Job", "bad-job", 0, vec![("JobBooked", json!({"job_id": uid("bad-job"), "source": "staff", "services": [], "at": at(utc(2026, 3, 2, 0, 0))}))]).await;
    customer(&log, "c2", "Grace", utc(2026, 3, 3, 15, 0)).await;
    // A later event of the same job, and another job after it.
    append(&log, "Job", "bad-job", 1, vec![("JobScheduled", json!({"customer_id": uid("c1"), "window": {"start": at(utc(2026, 3, 4, 15, 0)), "end": at(utc(2026, 3, 4, 17, 0))}, "at": at(utc(2026, 3, 3, 16, 0))}))]).await;
    completed_job(
        &log,
        "good-job",
        "c2",
        "t1",
        5_000,
        &["carpet"],
        utc(2026, 3, 5, 15, 0),
    )
    .await;
    let r = runner(&log).await;
    r.catch_up_all()
        .await
        .expect("nothing stops the read models");
    let status = r.status().await.expect("status");
    let jobs = status.iter().find(|s| s.name == "jobs").expect("jobs");
    assert_eq!(jobs.state, "degraded", "{jobs:?}");
    assert!(jobs.caught_up, "{jobs:?}");
    assert_eq!(
        jobs.parked, 2,
        "the refused event and the later one of its job: {jobs:?}"
    );
    assert!(
        jobs.parked_error
            .as_deref()
            .unwrap_or_default()
            .contains("customer_id"),
        "{jobs:?}"
    );
    let parked = r.parked(Some("jobs")).await.expect("parked");
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.aggregate_id.as_str(), p.sequence, p.error.is_some()))
            .collect::<Vec<_>>(),
        vec![
            (uid("bad-job").as_str(), 1, true),
            (uid("bad-job").as_str(), 2, false)
        ]
    );
    // The rest went on: the other job is in the same read model, the others caught up.
    let good = r
        .query(
            "SELECT status FROM rm_jobs WHERE job_id = $1",
            &[uid("good-job").into()],
        )
        .await
        .expect("query");
    assert_eq!(good.len(), 1, "{good:?}");
    assert!(
        status
            .iter()
            .filter(|s| s.name != "jobs")
            .all(|s| s.caught_up),
        "{status:?}"
    );
    // Only the read models that follow jobs refuse a damaged job event; the rest run on.
    let follow_jobs = ["jobs", "customers", "activity", "analytics"];
    for s in &status {
        let expected = if follow_jobs.contains(&s.name.as_str()) {
            "degraded"
        } else {
            "running"
        };
        assert_eq!(s.state, expected, "{s:?}");
    }
    // A rebuild never parks: the same failure fails it and nothing is swapped in.
    let before = r.dump("jobs", Slot::Live).await.expect("dump");
    let rebuilt = r.rebuild("jobs", &|_| {}, &|_, _| true).await;
    assert!(rebuilt.is_err(), "{rebuilt:?}");
    assert_eq!(r.dump("jobs", Slot::Live).await.expect("dump"), before);
    // Retrying without a fix keeps them parked, in order, with the error.
    let retried = r.retry_parked(Some("jobs")).await.expect("retry");
    assert!(
        matches!(&retried[0].outcome, Err(e) if e.contains("customer_id")),
        "{retried:?}"
    );
    assert_eq!(r.parked(Some("jobs")).await.expect("parked").len(), 2);
    // Nothing was applied twice meanwhile, across the retries.
    let total = log.count().await.expect("count") as i64;
    let jobs = r
        .status()
        .await
        .expect("status")
        .into_iter()
        .find(|s| s.name == "jobs")
        .expect("jobs");
    assert_eq!(jobs.events_applied, total - 2, "{jobs:?}");
    // The operator discards them, on record; the read model is healthy again.
    let meta = commands::EventMetadata::new(
        commands::Actor::System("test".into()),
        utc(2026, 3, 6, 0, 0),
    );
    let dropped = r
        .discard_parked(
            "jobs",
            "Job",
            &uid("bad-job"),
            "written by a broken importer",
            &meta,
        )
        .await
        .expect("discard");
    assert_eq!(dropped.len(), 2);
    let record = log
        .load_stream("ReadModel", "jobs", 0)
        .await
        .expect("stream");
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].event_type, "ParkedEventsDiscarded");
    let jobs = r
        .status()
        .await
        .expect("status")
        .into_iter()
        .find(|s| s.name == "jobs")
        .expect("jobs");
    assert_eq!(
        (jobs.state.as_str(), jobs.parked),
        ("running", 0),
        "{jobs:?}"
    );
}

async fn revenue_is_dated_in_the_business_time_zone_across_dst_and_new_year(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    customer(&log, "c1", "Ada", utc(2025, 12, 1, 15, 0)).await;
    // 2026-03-08 is the spring-forward day in Chicago (02:00 CST → 03:00 CDT).
    // 05:30Z = 23:30 CST on 03-07; 08:30Z = 03:30 CDT on 03-08; 05:30Z on 03-09 = 00:30 CDT on 03-09.
    completed_job(
        &log,
        "j-dst-1",
        "c1",
        "t1",
        1_000,
        &["carpet"],
        utc(2026, 3, 8, 5, 30),
    )
    .await;
    completed_job(
        &log,
        "j-dst-2",
        "c1",
        "t1",
        2_000,
        &["carpet"],
        utc(2026, 3, 8, 8, 30),
    )
    .await;
    completed_job(
        &log,
        "j-dst-3",
        "c1",
        "t2",
        4_000,
        &["tile"],
        utc(2026, 3, 9, 5, 30),
    )
    .await;
    // New Year: 2025-12-31 23:30 CST is 2026-01-01 05:30Z; ISO week 2026-W01 runs Mon 2025-12-29 .. Sun 2026-01-04.
    completed_job(
        &log,
        "j-ny-1",
        "c1",
        "t1",
        8_000,
        &["carpet"],
        utc(2026, 1, 1, 5, 30),
    )
    .await;
    completed_job(
        &log,
        "j-ny-2",
        "c1",
        "t2",
        16_000,
        &["rug"],
        utc(2026, 1, 1, 6, 30),
    )
    .await;
    completed_job(
        &log,
        "j-ny-3",
        "c1",
        "t2",
        32_000,
        &["rug"],
        utc(2026, 1, 5, 12, 0),
    )
    .await;
    let r = runner(&log).await;
    r.catch_up_all().await.expect("catch up");
    let rows = r.query("SELECT local_date, CAST(SUM(amount_cents) AS BIGINT) AS cents FROM rm_revenue GROUP BY local_date ORDER BY local_date", &[]).await.expect("query");
    let got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["local_date"].as_str().unwrap_or_default().to_string(),
                r["cents"]
                    .as_i64()
                    .or_else(|| r["cents"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2025-12-31".to_string(), 8_000),
            ("2026-01-01".to_string(), 16_000),
            ("2026-01-05".to_string(), 32_000),
            ("2026-03-07".to_string(), 1_000),
            ("2026-03-08".to_string(), 2_000),
            ("2026-03-09".to_string(), 4_000),
        ]
    );
    let counts = r.query("SELECT local_date, value FROM rm_daily_counts WHERE metric = 'jobs_completed' ORDER BY local_date", &[]).await.expect("query");
    assert_eq!(counts.len(), 6);
}

async fn erasing_a_customer_removes_personal_data_from_the_read_model(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    customer(&log, "c1", "Ada Lovelace", utc(2026, 3, 1, 15, 0)).await;
    append(
        &log,
        "Customer",
        "c1",
        1,
        vec![(
            "CustomerPersonalDataErased",
            json!({"reason": "customer request", "at": at(utc(2026, 3, 2, 0, 0))}),
        )],
    )
    .await;
    let r = runner(&log).await;
    r.catch_up_all().await.expect("catch up");
    let rows = r
        .query("SELECT * FROM rm_customers", &[])
        .await
        .expect("query");
    let text = serde_json::to_string(&rows).expect("json");
    assert!(
        !text.contains("Ada") && !text.contains("c1@example.com") && !text.contains("+1512"),
        "{text}"
    );
    assert_eq!(rows[0]["erased"], 1);
    let _ = LogPosition::START;
}

/// A rebuild stages rows in memory and copies them (COPY on PostgreSQL, multi-row INSERT on
/// SQLite): awkward text and NULLs of both column types arrive unchanged.
async fn staged_rows_copy_byte_for_byte_including_tabs_newlines_and_backslashes(engine: Engine) {
    let db = TestDb::new(engine).await;
    let read = projections::ReadDb::of(&db.log().await);
    let ddl = "CREATE TABLE rm_copy_probe (id TEXT PRIMARY KEY, body TEXT, n BIGINT)";
    let mut mem = projections::db::memory_tx().expect("memory");
    mem.execute(ddl, &[]).await.expect("staged table");
    let awkward = "tab\there\nnew line\r\\ back\\slash \\N not null, ünïcødé, 'quote' \"dq\"";
    let rows: Vec<(String, Param, Param)> = (0..7_000)
        .map(|i| {
            let body = if i % 3 == 0 {
                Param::Null
            } else {
                Param::Text(format!("{awkward} {i}"))
            };
            let n = if i % 5 == 0 {
                Param::NullInt
            } else {
                Param::Int(i * 1_000_000_007)
            };
            (format!("r{i:05}"), body, n)
        })
        .collect();
    for (id, body, n) in &rows {
        mem.execute(
            "INSERT INTO rm_copy_probe (id, body, n) VALUES ($1, $2, $3)",
            &[id.as_str().into(), body.clone(), n.clone()],
        )
        .await
        .expect("staged row");
    }
    let mut tx = read.begin().await.expect("begin");
    tx.execute(ddl, &[]).await.expect("target table");
    let projections::db::ReadTx::Memory(conn) = &mut mem else {
        panic!("staging is in memory")
    };
    let copied = projections::db::copy_table(conn.as_mut(), &mut tx, "rm_copy_probe")
        .await
        .expect("copy");
    tx.commit().await.expect("commit");
    assert_eq!(copied, 7_000);
    let back = read
        .query("SELECT id, body, n FROM rm_copy_probe ORDER BY id", &[])
        .await
        .expect("read back");
    assert_eq!(back.len(), rows.len());
    for (row, (id, body, n)) in back.iter().zip(&rows) {
        assert_eq!(row["id"], json!(id));
        let want_body = match body {
            Param::Text(t) => json!(t),
            _ => Value::Null,
        };
        assert_eq!(row["body"], want_body, "{id}");
        let want_n = match n {
            Param::Int(v) => json!(v),
            _ => Value::Null,
        };
        assert_eq!(row["n"], want_n, "{id}");
    }
}

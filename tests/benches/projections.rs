//! Read-model throughput: rebuild every projection from a large log, and
//! event-to-read-model lag under a steady command load.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres BENCH_EVENTS=1000000 cargo bench -p tests --bench projections`
//! (figures in docs/performance.md).

use std::time::{Duration, Instant};

use commands::store::{AppendRequest, NewEvent};
use commands::{Actor, EventLog, EventMetadata};
use projections::ProjectionRunner;
use serde_json::json;
use tests::{Engine, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

fn ev(t: &str, body: serde_json::Value, meta: &serde_json::Value) -> NewEvent {
    NewEvent {
        event_type: t.into(),
        event_version: "1.0".into(),
        payload: json!({ t: body }),
        metadata: meta.clone(),
    }
}

async fn append(log: &EventLog, t: &str, id: &str, events: Vec<NewEvent>) {
    log.append(AppendRequest {
        aggregate_type: t.into(),
        aggregate_id: id.into(),
        expected_sequence: 0,
        events,
        snapshot: None,
        idempotency: None,
    })
    .await
    .expect("append");
}

/// One customer with three completed jobs and their loyalty: 14 events.
async fn unit(log: &EventLog, i: u64, meta: &serde_json::Value) {
    let c = format!("00000000-0000-4000-8000-{i:012}");
    let at = "2026-06-01T15:00:00Z";
    append(log, "Customer", &c, vec![ev("CustomerCreated", json!({"customer_id": c, "name": format!("Customer {i}"), "email": format!("c{i}@example.com"), "phone": null, "birthday": null, "customer_since": "2025-01-01", "at": at}), meta)]).await;
    let mut loyalty = vec![ev(
        "LoyaltyAccountEnrolled",
        json!({"account_id": c, "customer_id": c, "at": at}),
        meta,
    )];
    for j in 0..3 {
        // Ids are UUIDs, as the write side writes them (the read side refuses others).
        let job = format!("00000000-0000-4000-9{j:03}-{i:012}");
        append(log, "Job", &job, vec![
            ev("JobBooked", json!({"job_id": job, "customer_id": c, "source": "staff", "services": ["carpet"], "at": at}), meta),
            ev("JobScheduled", json!({"customer_id": c, "window": {"start": at, "end": at}, "at": at}), meta),
            ev("JobCompleted", json!({"customer_id": c, "amount": 15000, "services": ["carpet"], "technician_id": "00000000-0000-4000-a000-000000000001", "vehicle_id": null, "at": at}), meta),
        ]).await;
        loyalty.push(ev(
            "PointsEarned",
            json!({"customer_id": c, "job_id": job, "amount": 15000, "points": 150, "at": at}),
            meta,
        ));
    }
    append(
        log,
        "LoyaltyAccount",
        &format!("00000000-0000-4000-b000-{i:012}"),
        loyalty,
    )
    .await;
}

async fn run(engine: Engine, events: u64) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let meta = serde_json::to_value(
        EventMetadata::new(Actor::System("bench".into()), chrono::Utc::now()).to_map(),
    )
    .expect("json");
    let units = events / 14;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let (log, meta) = (log.clone(), meta.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < units {
                unit(&log, i, &meta).await;
                i += 8;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let total = log.count().await.expect("count");
    println!(
        "\n## {engine:?}: {total} events written in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let runner = ProjectionRunner::new(log.clone(), TZ).with_batch(2_000);
    runner.prepare().await.expect("prepare");
    if std::env::var("BENCH_EACH").is_ok() {
        for name in runner.names() {
            let t = Instant::now();
            runner
                .rebuild_many(&[name], &|_| {}, None)
                .await
                .expect("rebuild");
            println!(
                "| rebuild {name} alone | {:.0} events/s |",
                total as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    // `replay-tools rebuild --all`: one pass over the log for every projection.
    let names = runner.names();
    let start = Instant::now();
    runner
        .rebuild_many(&names, &|_| {}, None)
        .await
        .expect("rebuild");
    let all = start.elapsed().as_secs_f64();
    println!(
        "| rebuild all {} projections in one pass | {:.1} s, {:.0} log events/s |",
        names.len(),
        all,
        total as f64 / all
    );

    // Lag under load: 500 single-event commands/s for 10 s; one watcher polls
    // the slowest projection's checkpoint every 2 ms and times each event
    // from its commit to the moment every read model has it.
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handles = runner.clone().spawn(rx);
    let committed: std::sync::Arc<
        std::sync::Mutex<std::collections::BTreeMap<commands::LogPosition, Instant>>,
    > = Default::default();
    let watcher = {
        let (runner, committed) = (runner.clone(), committed.clone());
        tokio::spawn(async move {
            let mut lags = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let status = runner.status().await.expect("status");
                let slowest = status
                    .iter()
                    .filter_map(|s| s.position.parse::<commands::LogPosition>().ok())
                    .min()
                    .unwrap_or_default();
                let now = Instant::now();
                {
                    let mut q = committed.lock().expect("lock");
                    while q.first_key_value().is_some_and(|(p, _)| *p <= slowest) {
                        if let Some((_, t)) = q.pop_first() {
                            lags.push(now - t);
                        }
                    }
                }
                if lags.len() >= 5_000 || Instant::now() > deadline {
                    return lags;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Four writers, each paced at 125 commands/s: 500/s together.
    const WRITERS: u64 = 4;
    let period = Duration::from_millis(8);
    let begin = Instant::now();
    let per_writer = 5_000 / WRITERS;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (log, meta, committed) = (log.clone(), meta.clone(), committed.clone());
        writers.push(tokio::spawn(async move {
            for k in 0..per_writer {
                let id = format!("00000000-0000-4000-c{w:03}-{k:012}");
                let out = log
                    .append(AppendRequest { aggregate_type: "Job".into(), aggregate_id: id.clone(), expected_sequence: 0, events: vec![ev("JobBooked", json!({"job_id": id, "customer_id": "00000000-0000-4000-8000-000000000001", "source": "staff", "services": ["carpet"], "at": "2026-06-01T15:00:00Z"}), &meta)], snapshot: None, idempotency: None })
                    .await
                    .expect("append");
                committed
                    .lock()
                    .expect("lock")
                    .insert(out.positions[0], Instant::now());
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    begin + period * (k + 1) as u32,
                ))
                .await;
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let n = per_writer * WRITERS;
    let rate = n as f64 / begin.elapsed().as_secs_f64();
    let mut lags = watcher.await.expect("watcher");
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }
    lags.sort();
    let pct =
        |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)].as_secs_f64() * 1e3;
    println!("| lag commit → all read models, {} commands at {rate:.0}/s | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms |", lags.len(), pct(0.5), pct(0.95), pct(0.99));
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // RUST_LOG=info shows each rebuild's phases (staging, copy).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let engines = std::env::var("BENCH_ENGINES").unwrap_or_else(|_| "postgres,sqlite".into());
    if engines.contains("postgres") {
        run(Engine::Postgres, events).await;
    }
    if engines.contains("sqlite") {
        run(Engine::Sqlite, events).await;
    }
}

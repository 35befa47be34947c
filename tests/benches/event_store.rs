//! Event-store throughput, side by side in one run: raw SQL inserts, plain
//! cqrs-es + postgres-es, and ours; then 100-event transactions, loading a
//! 1,000-event aggregate and reading the global log. Same table for SQLite.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p tests --bench event_store`
//! (a throughput benchmark, so a plain harness rather than criterion's
//! per-iteration timing). Figures go to docs/performance.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commands::{Actor, AggregateStore, EventLog, EventMetadata, LogPosition, LogTail};
use tests::counter::{Counter, CounterCommand};
use tests::{Engine, TestDb};

const RUN: Duration = Duration::from_secs(4);
const STREAMS_PER_CLIENT: u64 = 200;

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::System("bench".into()), chrono::Utc::now())
}

/// Runs `clients` loops of `op(client, i)` for RUN; returns operations/s.
async fn throughput<F, Fut>(clients: u64, op: F) -> f64
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, done) = (Arc::clone(&op), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while start.elapsed() < RUN {
                let n = op(c, i).await;
                done.fetch_add(n, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("bench task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn payload() -> serde_json::Value {
    serde_json::json!({"Added": {"amount": 1}})
}

async fn raw_inserts(log: &EventLog, clients: u64) -> f64 {
    let log = log.clone();
    throughput(clients, move |c, i| {
        let log = log.clone();
        async move {
            let meta = serde_json::to_value(meta().to_map()).expect("json");
            let (id, seq) = (format!("raw{clients}-{c}"), (i + 1) as i64);
            match &log {
                EventLog::Postgres(pg) => {
                    sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Raw', $1, $2, 'Added', '2.0', $3, $4)")
                        .bind(id).bind(seq).bind(payload()).bind(meta)
                        .execute(pg.pool()).await.expect("raw insert");
                }
                EventLog::Sqlite(s) => {
                    sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Raw', ?, ?, 'Added', '2.0', ?, ?)")
                        .bind(id).bind(seq).bind(payload().to_string()).bind(meta.to_string())
                        .execute(s.writer()).await.expect("raw insert");
                }
                #[cfg(feature = "esdb")]
                EventLog::Esdb(_) => unreachable!("the raw-insert baseline is SQL only"),
            }
            1
        }
    })
    .await
}

async fn ours(
    store: &AggregateStore<Counter>,
    clients: u64,
    prefix: &str,
    per_command: u32,
) -> f64 {
    let (store, prefix) = (store.clone(), prefix.to_string());
    throughput(clients, move |c, i| {
        let store = store.clone();
        let id = format!("{prefix}-{c}-{}", i % STREAMS_PER_CLIENT);
        async move {
            let cmd = if per_command == 1 {
                CounterCommand::Add(1)
            } else {
                CounterCommand::AddMany(per_command)
            };
            store.execute(&id, cmd, &meta()).await.expect("command");
            u64::from(per_command)
        }
    })
    .await
}

async fn plain_cqrs_es(url: &str, clients: u64) -> f64 {
    use cqrs_es::persist::PersistedEventStore;
    use cqrs_es::CqrsFramework;
    use postgres_es::PostgresEventRepository;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .connect(url)
        .await
        .expect("pool");
    let cqrs = Arc::new(CqrsFramework::new(
        PersistedEventStore::<PostgresEventRepository, Counter>::new_event_store(
            PostgresEventRepository::new(pool),
        ),
        vec![],
        (),
    ));
    throughput(clients, move |c, i| {
        let cqrs = Arc::clone(&cqrs);
        let id = format!("plain-{c}-{}", i % STREAMS_PER_CLIENT);
        async move {
            cqrs.execute(&id, CounterCommand::Add(1))
                .await
                .expect("command");
            1
        }
    })
    .await
}

async fn load_1000(store: &AggregateStore<Counter>) -> Duration {
    for _ in 0..10 {
        store
            .execute("big", CounterCommand::AddMany(100), &meta())
            .await
            .expect("fill");
    }
    let n = 50;
    let start = Instant::now();
    for _ in 0..n {
        let l = store.load("big").await.expect("load");
        assert_eq!(l.sequence, 1000);
    }
    start.elapsed() / n
}

async fn read_log(log: &EventLog) -> (u64, f64) {
    let mut tail = LogTail::new(log.clone(), LogPosition::START, 5_000);
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        let batch = tail.poll().await.expect("read");
        if batch.is_empty() {
            break;
        }
        n += batch.len() as u64;
    }
    (n, n as f64 / start.elapsed().as_secs_f64())
}

async fn engine_table(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let store = AggregateStore::<Counter>::new(log.clone(), ());
    println!("\n## {engine:?}\n");
    println!("| measurement | 1 client | 8 clients |\n|---|---|---|");
    let raw = (raw_inserts(&log, 1).await, raw_inserts(&log, 8).await);
    println!(
        "| raw SQL single-event inserts (events/s) | {:.0} | {:.0} |",
        raw.0, raw.1
    );
    if engine == Engine::Postgres {
        let plain = (
            plain_cqrs_es(&db.url, 1).await,
            plain_cqrs_es(&db.url, 8).await,
        );
        println!(
            "| plain cqrs-es + postgres-es commands (commands/s) | {:.0} | {:.0} |",
            plain.0, plain.1
        );
    }
    let o = (
        ours(&store, 1, "one", 1).await,
        ours(&store, 8, "eight", 1).await,
    );
    println!(
        "| ours: AggregateStore::execute, 1 event (commands/s) | {:.0} | {:.0} |",
        o.0, o.1
    );
    println!(
        "| ours as % of raw | {:.0} % | {:.0} % |",
        100.0 * o.0 / raw.0,
        100.0 * o.1 / raw.1
    );
    let batch = (
        ours(&store, 1, "b1", 100).await,
        ours(&store, 8, "b8", 100).await,
    );
    println!(
        "| ours: 100-event transactions (events/s) | {:.0} | {:.0} |",
        batch.0, batch.1
    );
    let load = load_1000(&store).await;
    println!(
        "| load a 1,000-event aggregate (mean of 50) | {:.2} ms | |",
        load.as_secs_f64() * 1e3
    );
    let (n, rate) = read_log(&log).await;
    println!("| read the global log ({n} events, batches of 5,000) | {rate:.0} events/s | |");
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list; nothing to list.
    }
    engine_table(Engine::Postgres).await;
    engine_table(Engine::Sqlite).await;
}

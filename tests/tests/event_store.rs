//! The event-store conformance suite. Every test runs unchanged on each
//! engine (`postgres::…` and `sqlite::…`), through the public API of the
//! `commands` crate as the server uses it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use commands::store::{AppendRequest, NewEvent};
use commands::{
    Actor, AggregateStore, CommandError, DatabaseUrl, EventLog, EventMetadata, LogOptions,
    LogPosition, LogTail, StoreError,
};
use tests::counter::{Counter, CounterCommand, CounterError, IncrementedV1};
use tests::{Engine, TestDb};

tests::on_both_engines!(
    appended_events_load_back_in_order_with_their_metadata,
    fifty_concurrent_commands_on_one_aggregate_lose_no_update,
    conflicting_commands_succeed_when_retried,
    a_refused_command_appends_nothing,
    a_tailing_reader_sees_every_event_of_eight_writers_exactly_once_in_stream_order,
    a_writer_killed_with_sigkill_loses_no_acknowledged_event,
    an_idempotent_command_sent_twice_and_after_a_restart_takes_effect_once,
    an_idempotency_key_reused_for_another_aggregate_is_refused,
    an_old_event_version_is_upcast_on_load,
    snapshots_hold_each_event_once_and_equal_a_full_replay,
    a_stored_payload_that_no_longer_deserialises_is_a_typed_error_naming_the_event,
    an_unknown_event_type_is_a_typed_error_naming_it,
    migrations_rerun_on_an_existing_store_change_nothing,
    cqrs_es_persisted_event_store_runs_on_our_repository,
);

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::Staff("staff-1".into()), chrono::Utc::now())
        .with_request_id("req-test")
}

async fn appended_events_load_back_in_order_with_their_metadata(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = AggregateStore::<Counter>::new(db.log().await, ());
    let first = store
        .execute("c-1", CounterCommand::Add(5), &meta())
        .await
        .expect("first");
    let second = store
        .execute("c-1", CounterCommand::AddMany(2), &meta())
        .await
        .expect("second");
    assert_eq!(first.events.len(), 1);
    assert_eq!(
        second.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(second.last_position() > first.last_position());

    let loaded = store.load("c-1").await.expect("load");
    assert_eq!(
        (
            loaded.aggregate.value,
            loaded.aggregate.applied,
            loaded.sequence
        ),
        (7, 3, 3)
    );

    let stored = store
        .log()
        .load_stream("Counter", "c-1", 0)
        .await
        .expect("stream");
    assert_eq!(stored.len(), 3);
    let m = &stored[0].metadata;
    assert_eq!(m["actor"], "staff:staff-1");
    assert_eq!(m["request_id"], "req-test");
    assert_eq!(m["correlation_id"], "req-test");
    assert!(m["occurred_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(stored[0].event_version, "2.0");
}

async fn fifty_concurrent_commands_on_one_aggregate_lose_no_update(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = AggregateStore::<Counter>::new(db.log().await, ());
    let mut tasks = Vec::new();
    for i in 1..=50i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            (
                i,
                store.execute("hot", CounterCommand::Add(i), &meta()).await,
            )
        }));
    }
    let (mut accepted_sum, mut accepted, mut conflicts) = (0i64, 0u64, 0u64);
    for t in tasks {
        match t.await.expect("task") {
            (i, Ok(_)) => {
                accepted_sum += i;
                accepted += 1;
            }
            (
                _,
                Err(CommandError::Conflict {
                    aggregate_type,
                    aggregate_id,
                }),
            ) => {
                assert_eq!(
                    (aggregate_type.as_str(), aggregate_id.as_str()),
                    ("Counter", "hot")
                );
                conflicts += 1;
            }
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(accepted + conflicts, 50);
    assert!(accepted >= 1);
    let loaded = store.load("hot").await.expect("load");
    assert_eq!(
        loaded.aggregate.value, accepted_sum,
        "final state is the sum of the accepted commands"
    );
    assert_eq!(loaded.sequence, accepted);
}

async fn conflicting_commands_succeed_when_retried(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = AggregateStore::<Counter>::new(db.log().await, ());
    let mut tasks = Vec::new();
    for i in 1..=50i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .execute_retrying("hot", CounterCommand::Add(i), &meta(), 200)
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("retried until accepted");
    }
    let loaded = store.load("hot").await.expect("load");
    assert_eq!(loaded.aggregate.value, (1..=50).sum::<i64>());
    assert_eq!(loaded.sequence, 50);
}

async fn a_refused_command_appends_nothing(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = AggregateStore::<Counter>::new(db.log().await, ());
    let err = store
        .execute("c", CounterCommand::Add(-3), &meta())
        .await
        .expect_err("refused");
    assert!(matches!(
        err,
        CommandError::Rejected(CounterError::NotPositive)
    ));
    assert_eq!(store.log().count().await.expect("count"), 0);
}

async fn a_tailing_reader_sees_every_event_of_eight_writers_exactly_once_in_stream_order(
    engine: Engine,
) {
    const WRITERS: usize = 8;
    const EVENTS_PER_WRITER: u64 = 5_000;
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    // Snapshots keep reloading the contended stream cheap (and are exercised
    // under concurrency on the way).
    let store = AggregateStore::<Counter>::new(log.clone(), ()).with_snapshots(50);

    let total = WRITERS as u64 * EVENTS_PER_WRITER;
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut tail = LogTail::new(log, LogPosition::START, 500);
            let mut seen = Vec::with_capacity(total as usize);
            while (seen.len() as u64) < total {
                let batch = tokio::time::timeout(Duration::from_secs(60), tail.next_batch())
                    .await
                    .expect("reader stalled")
                    .expect("read");
                seen.extend(
                    batch
                        .into_iter()
                        .map(|e| (e.position, e.aggregate_id, e.sequence)),
                );
            }
            // Anything more would be a duplicate.
            let extra = tail.poll().await.expect("poll");
            (seen, extra.len())
        })
    };

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            // Each writer spreads over a few streams, with batches of 1 to 4 events,
            // and shares one stream with every other writer (contention).
            let mut written = 0u64;
            let mut i = 0u64;
            while written < EVENTS_PER_WRITER {
                let k = (1 + (i % 4)).min(EVENTS_PER_WRITER - written) as u32;
                let id = if i.is_multiple_of(5) {
                    "shared".to_string()
                } else {
                    format!("w{w}-{}", i % 3)
                };
                store
                    .execute_retrying(&id, CounterCommand::AddMany(k), &meta(), 1_000)
                    .await
                    .expect("append");
                written += u64::from(k);
                i += 1;
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let (seen, extra) = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("reader finishes")
        .expect("reader");
    assert_eq!(
        extra, 0,
        "the reader was handed events beyond the committed ones"
    );
    assert_eq!(seen.len() as u64, total);
    let unique: HashSet<(String, u64)> = seen.iter().map(|(_, a, s)| (a.clone(), *s)).collect();
    assert_eq!(unique.len() as u64, total, "an event was handed out twice");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "positions strictly increase"
    );
    let mut last_seq: HashMap<&str, u64> = HashMap::new();
    for (_, agg, seq) in &seen {
        let prev = last_seq.insert(agg.as_str(), *seq).unwrap_or(0);
        assert_eq!(*seq, prev + 1, "stream {agg} out of order or with a gap");
    }
    assert_eq!(log.count().await.expect("count"), total);
}

async fn a_writer_killed_with_sigkill_loses_no_acknowledged_event(engine: Engine) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let db = TestDb::new(engine).await;
    drop(db.log().await); // migrate before the writer starts
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_load-writer"))
        .arg(&db.url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn writer");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acked = Vec::new();
    while acked.len() < 600 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("writer is writing")
            .expect("read")
            .expect("writer alive");
        let mut parts = line.split_whitespace().skip(1);
        let id = parts.next().expect("id").to_string();
        let seq: u64 = parts.next().expect("seq").parse().expect("number");
        acked.push((id, seq));
    }
    // SIGKILL: no destructor, no flush, mid-load.
    child.start_kill().expect("kill");
    let _ = child.wait().await;
    // Acks printed before the kill but not yet read are acknowledged too.
    while let Ok(Some(line)) = lines.next_line().await {
        let mut parts = line.split_whitespace().skip(1);
        if let (Some(id), Some(Ok(seq))) = (parts.next(), parts.next().map(str::parse::<u64>)) {
            acked.push((id.to_string(), seq));
        }
    }

    let log = db.log().await;
    let mut stored: HashMap<String, HashSet<u64>> = HashMap::new();
    for w in 0..4 {
        let id = format!("crash-{w}");
        let events = log.load_stream("Counter", &id, 0).await.expect("load");
        let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert!(
            seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1),
            "gap in {id}"
        );
        stored.insert(id, seqs.into_iter().collect());
    }
    for (id, seq) in &acked {
        assert!(
            stored[id].contains(seq),
            "acknowledged event {id} #{seq} was lost"
        );
    }
}

async fn an_idempotent_command_sent_twice_and_after_a_restart_takes_effect_once(engine: Engine) {
    let db = TestDb::new(engine).await;
    let m = meta().with_idempotency_key("book-job-42");
    let first = {
        let store = AggregateStore::<Counter>::new(db.log().await, ());
        let first = store
            .execute("c", CounterCommand::Add(10), &m)
            .await
            .expect("first");
        let again = store
            .execute("c", CounterCommand::Add(10), &m)
            .await
            .expect("retry");
        assert!(!first.replayed);
        assert!(again.replayed);
        assert_eq!(
            again.events, first.events,
            "a retry gets the original outcome"
        );
        // Concurrent duplicates too.
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (store, m) = (store.clone(), m.clone());
            tasks.push(tokio::spawn(async move {
                store.execute("c", CounterCommand::Add(10), &m).await
            }));
        }
        for t in tasks {
            assert_eq!(
                t.await.expect("task").expect("replayed").events,
                first.events
            );
        }
        store.log().close().await;
        first
    };
    // "Restart": a new connection to the same database.
    let store = AggregateStore::<Counter>::new(db.log().await, ());
    let after_restart = store
        .execute("c", CounterCommand::Add(10), &m)
        .await
        .expect("after restart");
    assert_eq!(after_restart.events, first.events);
    assert_eq!(store.load("c").await.expect("load").aggregate.value, 10);
    assert_eq!(store.log().count().await.expect("count"), 1);
}

async fn an_idempotency_key_reused_for_another_aggregate_is_refused(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = AggregateStore::<Counter>::new(db.log().await, ());
    let m = meta().with_idempotency_key("k");
    store
        .execute("a", CounterCommand::Add(1), &m)
        .await
        .expect("first");
    let err = store
        .execute("b", CounterCommand::Add(1), &m)
        .await
        .expect_err("reused");
    assert!(
        matches!(err, CommandError::IdempotencyKeyReused { ref aggregate_id, .. } if aggregate_id == "a"),
        "{err}"
    );
    assert_eq!(store.log().count().await.expect("count"), 1);
}

async fn append_raw(
    log: &EventLog,
    id: &str,
    expected: u64,
    event_type: &str,
    version: &str,
    payload: serde_json::Value,
) {
    log.append(AppendRequest {
        aggregate_type: "Counter".into(),
        aggregate_id: id.into(),
        expected_sequence: expected,
        events: vec![NewEvent {
            event_type: event_type.into(),
            event_version: version.into(),
            payload,
            metadata: serde_json::to_value(meta().to_map()).expect("json"),
        }],
        snapshot: None,
        idempotency: None,
    })
    .await
    .expect("raw append");
}

async fn an_old_event_version_is_upcast_on_load(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    append_raw(
        &log,
        "old",
        0,
        "Incremented",
        "1.0",
        serde_json::json!({"Incremented": {"by": 4}}),
    )
    .await;
    let store = AggregateStore::<Counter>::new(log.clone(), ())
        .with_upcasters(vec![Box::new(IncrementedV1)]);
    store
        .execute("old", CounterCommand::Add(6), &meta())
        .await
        .expect("new event after the old one");
    let loaded = store.load("old").await.expect("load");
    assert_eq!((loaded.aggregate.value, loaded.aggregate.applied), (10, 2));
    // Without the upcaster the old event is a typed error, not a panic.
    let plain = AggregateStore::<Counter>::new(log, ());
    assert!(matches!(
        plain.load("old").await,
        Err(StoreError::CorruptEvent { sequence: 1, .. })
    ));
}

async fn snapshots_hold_each_event_once_and_equal_a_full_replay(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let snapshotting = AggregateStore::<Counter>::new(log.clone(), ()).with_snapshots(1);
    let mut snapshot_values = Vec::new();
    for _ in 0..3 {
        snapshotting
            .execute("s", CounterCommand::Add(10), &meta())
            .await
            .expect("add");
        let snap = log
            .load_snapshot("Counter", "s")
            .await
            .expect("snapshot")
            .expect("written");
        snapshot_values.push((
            snap.payload["value"].as_i64().expect("value"),
            snap.last_sequence,
        ));
    }
    // cqrs-es 0.5.0's snapshot store would have stored 20/40/60 here.
    assert_eq!(snapshot_values, vec![(10, 1), (20, 2), (30, 3)]);

    // Every 4 events, with multi-event commands crossing the boundary.
    let every4 = AggregateStore::<Counter>::new(log.clone(), ()).with_snapshots(4);
    for k in [3u32, 3, 1, 5, 2] {
        every4
            .execute("m", CounterCommand::AddMany(k), &meta())
            .await
            .expect("add many");
    }
    let snap = log
        .load_snapshot("Counter", "m")
        .await
        .expect("snapshot")
        .expect("written");
    assert_eq!(
        snap.payload["value"].as_i64(),
        Some(snap.last_sequence as i64)
    );
    let from_snapshot = every4.load("m").await.expect("load via snapshot");
    let replayed = AggregateStore::<Counter>::new(log, ())
        .load("m")
        .await
        .expect("full replay");
    assert_eq!(from_snapshot.aggregate, replayed.aggregate);
    assert_eq!(from_snapshot.sequence, replayed.sequence);
    assert_eq!(replayed.aggregate.value, 14);
}

async fn a_stored_payload_that_no_longer_deserialises_is_a_typed_error_naming_the_event(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    append_raw(
        &log,
        "bad",
        0,
        "Added",
        "2.0",
        serde_json::json!({"Added": {"amount": "eleven"}}),
    )
    .await;
    let store = AggregateStore::<Counter>::new(log, ());
    match store.load("bad").await {
        Err(StoreError::CorruptEvent {
            aggregate_id,
            sequence,
            event_type,
            ..
        }) => {
            assert_eq!(
                (aggregate_id.as_str(), sequence, event_type.as_str()),
                ("bad", 1, "Added")
            );
        }
        other => panic!("expected CorruptEvent, got {other:?}"),
    }
    let err = store
        .execute("bad", CounterCommand::Add(1), &meta())
        .await
        .expect_err("cannot decide on a corrupt stream");
    assert!(err.to_string().contains("bad #1"), "{err}");
}

async fn an_unknown_event_type_is_a_typed_error_naming_it(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    append_raw(
        &log,
        "u",
        0,
        "Teleported",
        "1.0",
        serde_json::json!({"Teleported": {}}),
    )
    .await;
    let err = AggregateStore::<Counter>::new(log, ())
        .load("u")
        .await
        .expect_err("unknown type");
    assert!(
        matches!(err, StoreError::CorruptEvent { ref event_type, .. } if event_type == "Teleported"),
        "{err}"
    );
}

async fn migrations_rerun_on_an_existing_store_change_nothing(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    AggregateStore::<Counter>::new(log.clone(), ())
        .execute("x", CounterCommand::Add(1), &meta())
        .await
        .expect("add");
    let schema = |log: EventLog| async move {
        match &log {
            EventLog::Postgres(pg) => sqlx::query_scalar::<_, String>(
                "SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, column_name) \
                 FROM information_schema.columns WHERE table_schema = 'public'",
            )
            .fetch_one(pg.pool())
            .await
            .expect("schema"),
            EventLog::Sqlite(s) => sqlx::query_scalar::<_, String>(
                "SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name)",
            )
            .fetch_one(s.reader())
            .await
            .expect("schema"),
            #[cfg(feature = "esdb")]
            EventLog::Esdb(_) => unreachable!("this suite runs on the SQL engines"),
        }
    };
    let before = schema(log.clone()).await;
    // Reopening runs the migrator again.
    let again = db.log().await;
    let after = schema(again.clone()).await;
    assert_eq!(before, after);
    assert_eq!(again.count().await.expect("count"), 1);
}

async fn cqrs_es_persisted_event_store_runs_on_our_repository(engine: Engine) {
    use cqrs_es::persist::PersistedEventStore;
    use cqrs_es::CqrsFramework;
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<EventLog, Counter>::new_event_store(log.clone()),
        vec![],
        (),
    );
    cqrs.execute("fw", CounterCommand::Add(2))
        .await
        .expect("framework command");
    cqrs.execute("fw", CounterCommand::Add(3))
        .await
        .expect("framework command");
    let ours = AggregateStore::<Counter>::new(log, ())
        .load("fw")
        .await
        .expect("load");
    assert_eq!(ours.aggregate.value, 5);
}

#[tokio::test]
async fn an_unparsable_database_url_is_a_clear_error() {
    let err = DatabaseUrl::parse(Some("postgress//nope")).expect_err("refused");
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
}

#[tokio::test]
async fn a_database_that_is_down_at_start_is_a_clear_error() {
    // Nothing listens on port 1.
    let url = DatabaseUrl::parse(Some("postgres://u:hunter2@127.0.0.1:1/db")).expect("valid url");
    let opts = LogOptions {
        connect_timeout: Duration::from_secs(2),
        ..LogOptions::default()
    };
    let err = EventLog::connect(&url, &opts).await.expect_err("down");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{text}");
    assert!(text.contains("127.0.0.1:1"), "names the server: {text}");
    assert!(!text.contains("hunter2"), "leaks the password: {text}");
}

/// The hole every bigserial-based reader falls into: T1 takes position 1,
/// T2 takes position 2 and commits first. A reader that checkpoints "2" never
/// sees 1. Ours must hand out neither until T1 ends, then both, in order.
#[tokio::test]
async fn postgres_reader_never_skips_an_event_committed_out_of_position_order() {
    let db = TestDb::new(Engine::Postgres).await;
    let log = db.log().await;
    let EventLog::Postgres(pg) = &log else {
        unreachable!("postgres engine")
    };
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('Counter', $1, 1, 'Added', '2.0', '{\"Added\":{\"amount\":1}}', '{}')";
    let mut t1 = pg.pool().begin().await.expect("t1");
    sqlx::query(insert)
        .bind("slow")
        .execute(&mut *t1)
        .await
        .expect("t1 insert");
    let mut t2 = pg.pool().begin().await.expect("t2");
    sqlx::query(insert)
        .bind("fast")
        .execute(&mut *t2)
        .await
        .expect("t2 insert");
    t2.commit().await.expect("t2 commit");

    let mut tail = LogTail::new(log.clone(), LogPosition::START, 100);
    assert!(
        tail.poll().await.expect("poll").is_empty(),
        "T2's event handed out while T1 (earlier position) is open"
    );
    assert!(log
        .has_held_back_events(LogPosition::START)
        .await
        .expect("held back"));

    t1.commit().await.expect("t1 commit");
    let seen: Vec<String> = tail
        .next_batch()
        .await
        .expect("next")
        .into_iter()
        .map(|e| e.aggregate_id)
        .collect();
    assert_eq!(seen, vec!["slow", "fast"]);
    assert!(tail.poll().await.expect("poll").is_empty());
}

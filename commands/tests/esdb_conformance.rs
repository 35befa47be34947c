//! The event-store conformance suite (as `tests/tests/event_store.rs` runs it
//! on PostgreSQL and SQLite) against EventStoreDB / KurrentDB.
//!
//! Needs `--features esdb` and a server: `ESDB_URL=esdb://localhost:2113?tls=false
//! cargo test -p commands --features esdb --test esdb_conformance -- --ignored`.
//! Every test is `#[ignore]`d, so a run without a server reports them as
//! ignored (with the reason), never as passed; run with `--ignored` and no
//! `ESDB_URL`, each one fails saying why, so that mode cannot pass either. Tests share the server: each works in its own
//! aggregate ids (a fresh prefix) and reads `$all` from the head it found.
//!
//! Not ported: the SIGKILL test (its writer binary lives in the `tests`
//! crate) and the migrations test (EventStoreDB has no schema; the read-model
//! database is the PostgreSQL/SQLite suites' subject).
#![cfg(feature = "esdb")]

// The same Counter aggregate as the PostgreSQL/SQLite suite.
#[path = "../../tests/src/counter.rs"]
mod counter;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use commands::store::{AppendRequest, EsdbLog, NewEvent};
use commands::{
    Actor, AggregateStore, CommandError, DatabaseUrl, EventLog, EventMetadata, LogOptions,
    LogPosition, LogTail, StoreError,
};
use counter::{Counter, CounterCommand, CounterError, IncrementedV1};

const WHY_NOT_RUN: &str = "ESDB_URL not set: this test needs a live EventStoreDB/KurrentDB \
     (e.g. ESDB_URL=esdb://localhost:2113?tls=false) and checked nothing";

/// A connection to the live server, and this test's own corner of it.
struct Live {
    url: String,
    log: EventLog,
    prefix: String,
    start: LogPosition,
}

impl Live {
    async fn connect() -> Self {
        let Ok(url) = std::env::var("ESDB_URL") else {
            // Failing, not returning: a test that checked nothing must not pass.
            panic!("{WHY_NOT_RUN}");
        };
        let log = open(&url).await;
        let start = log.head().await.expect("head");
        Self {
            url,
            log,
            prefix: uuid::Uuid::new_v4().simple().to_string(),
            start,
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Events of this test in `$all`, in log order.
    async fn mine(&self, log: &EventLog) -> Vec<commands::RecordedEvent> {
        let (mut out, mut after) = (Vec::new(), self.start);
        loop {
            let batch = log.read_all(after, 1_000).await.expect("read_all");
            let Some(last) = batch.last() else { return out };
            after = last.position;
            out.extend(
                batch
                    .into_iter()
                    .filter(|e| e.aggregate_id.starts_with(&self.prefix)),
            );
        }
    }
}

async fn open(url: &str) -> EventLog {
    EventLog::Esdb(
        EsdbLog::connect(
            url,
            &DatabaseUrl::Sqlite("sqlite::memory:".into()),
            &LogOptions::default(),
        )
        .await
        .expect("connect to ESDB_URL"),
    )
}

macro_rules! live_tests {
    ($($name:ident),* $(,)?) => {
        mod live {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[ignore = "needs a live EventStoreDB: set ESDB_URL and run with --ignored"]
                async fn $name() {
                    let live = super::Live::connect().await;
                    super::$name(live).await
                }
            )*
        }
    };
}

live_tests!(
    appended_events_load_back_in_order_with_their_metadata,
    fifty_concurrent_commands_on_one_aggregate_lose_no_update,
    conflicting_commands_succeed_when_retried,
    a_refused_command_appends_nothing,
    a_tailing_reader_sees_every_event_of_eight_writers_exactly_once_in_stream_order,
    an_idempotent_command_sent_twice_and_after_a_restart_takes_effect_once,
    an_idempotency_key_reused_for_another_aggregate_is_refused,
    a_key_whose_append_conflicted_can_be_used_again,
    a_stale_expected_sequence_is_a_typed_conflict,
    an_old_event_version_is_upcast_on_load,
    snapshots_hold_each_event_once_and_equal_a_full_replay,
    a_stored_payload_that_no_longer_deserialises_is_a_typed_error_naming_the_event,
    an_unknown_event_type_is_a_typed_error_naming_it,
    the_global_reader_hands_out_domain_events_only,
    cqrs_es_persisted_event_store_runs_on_our_repository,
);

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::Staff("staff-1".into()), chrono::Utc::now())
        .with_request_id("req-test")
}

async fn appended_events_load_back_in_order_with_their_metadata(live: Live) {
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    let id = live.id("c-1");
    let first = store
        .execute(&id, CounterCommand::Add(5), &meta())
        .await
        .expect("first");
    let second = store
        .execute(&id, CounterCommand::AddMany(2), &meta())
        .await
        .expect("second");
    assert_eq!(first.events.len(), 1);
    assert_eq!(
        second.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(second.last_position() > first.last_position());
    let loaded = store.load(&id).await.expect("load");
    assert_eq!(
        (
            loaded.aggregate.value,
            loaded.aggregate.applied,
            loaded.sequence
        ),
        (7, 3, 3)
    );
    let stored = live
        .log
        .load_stream("Counter", &id, 0)
        .await
        .expect("stream");
    assert_eq!(stored.len(), 3);
    let m = &stored[0].metadata;
    assert_eq!(m["actor"], "staff:staff-1");
    assert_eq!(m["request_id"], "req-test");
    assert_eq!(m["correlation_id"], "req-test");
    assert!(m["occurred_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(stored[0].event_version, "2.0");
    let positions: Vec<_> = stored.iter().map(|e| e.position).collect();
    let returned: Vec<_> = first
        .events
        .iter()
        .chain(&second.events)
        .map(|e| e.position)
        .collect();
    assert_eq!(
        positions, returned,
        "append returns the events' $all positions"
    );
}

async fn fifty_concurrent_commands_on_one_aggregate_lose_no_update(live: Live) {
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    let id = live.id("hot");
    let mut tasks = Vec::new();
    for i in 1..=50i64 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            (i, store.execute(&id, CounterCommand::Add(i), &meta()).await)
        }));
    }
    let (mut accepted_sum, mut accepted, mut conflicts) = (0i64, 0u64, 0u64);
    for t in tasks {
        match t.await.expect("task") {
            (i, Ok(_)) => {
                accepted_sum += i;
                accepted += 1;
            }
            (_, Err(CommandError::Conflict { aggregate_type, .. })) => {
                assert_eq!(aggregate_type, "Counter");
                conflicts += 1;
            }
            (_, Err(e)) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(accepted + conflicts, 50);
    assert!(accepted >= 1);
    let loaded = store.load(&id).await.expect("load");
    assert_eq!(loaded.aggregate.value, accepted_sum);
    assert_eq!(loaded.sequence, accepted);
}

async fn conflicting_commands_succeed_when_retried(live: Live) {
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    let id = live.id("hot");
    let mut tasks = Vec::new();
    for i in 1..=50i64 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            store
                .execute_retrying(&id, CounterCommand::Add(i), &meta(), 200)
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("retried until accepted");
    }
    let loaded = store.load(&id).await.expect("load");
    assert_eq!(loaded.aggregate.value, (1..=50).sum::<i64>());
    assert_eq!(loaded.sequence, 50);
}

async fn a_refused_command_appends_nothing(live: Live) {
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    let err = store
        .execute(&live.id("c"), CounterCommand::Add(-3), &meta())
        .await
        .expect_err("refused");
    assert!(matches!(
        err,
        CommandError::Rejected(CounterError::NotPositive)
    ));
    assert!(live.mine(&live.log).await.is_empty());
}

async fn a_tailing_reader_sees_every_event_of_eight_writers_exactly_once_in_stream_order(
    live: Live,
) {
    const WRITERS: usize = 8;
    // Smaller than the local engines' 5,000: this crosses a network.
    const EVENTS_PER_WRITER: u64 = 500;
    let store = AggregateStore::<Counter>::new(live.log.clone(), ()).with_snapshots(50);
    let total = WRITERS as u64 * EVENTS_PER_WRITER;
    let reader = {
        let (log, start, prefix) = (live.log.clone(), live.start, live.prefix.clone());
        tokio::spawn(async move {
            let mut tail = LogTail::new(log, start, 500);
            let mut seen = Vec::new();
            while (seen.len() as u64) < total {
                let batch = tokio::time::timeout(Duration::from_secs(60), tail.next_batch())
                    .await
                    .expect("reader stalled")
                    .expect("read");
                seen.extend(
                    batch
                        .into_iter()
                        .filter(|e| e.aggregate_id.starts_with(&prefix))
                        .map(|e| (e.position, e.aggregate_id, e.sequence)),
                );
            }
            let extra = tail
                .poll()
                .await
                .expect("poll")
                .into_iter()
                .filter(|e| e.aggregate_id.starts_with(&prefix))
                .count();
            (seen, extra)
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, prefix) = (store.clone(), live.prefix.clone());
        writers.push(tokio::spawn(async move {
            let (mut written, mut i) = (0u64, 0u64);
            while written < EVENTS_PER_WRITER {
                let k = (1 + (i % 4)).min(EVENTS_PER_WRITER - written) as u32;
                let id = if i.is_multiple_of(5) {
                    format!("{prefix}-shared")
                } else {
                    format!("{prefix}-w{w}-{}", i % 3)
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
    let (seen, extra) = tokio::time::timeout(Duration::from_secs(180), reader)
        .await
        .expect("reader finishes")
        .expect("reader");
    assert_eq!(extra, 0, "handed out beyond the committed events");
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
}

async fn an_idempotent_command_sent_twice_and_after_a_restart_takes_effect_once(live: Live) {
    let m = meta().with_idempotency_key(live.id("book-job-42"));
    let id = live.id("c");
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    let first = store
        .execute(&id, CounterCommand::Add(10), &m)
        .await
        .expect("first");
    let again = store
        .execute(&id, CounterCommand::Add(10), &m)
        .await
        .expect("retry");
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (store, m, id) = (store.clone(), m.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            store.execute(&id, CounterCommand::Add(10), &m).await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("task").expect("replayed").events,
            first.events
        );
    }
    live.log.close().await;
    // "Restart": a new connection.
    let store = AggregateStore::<Counter>::new(open(&live.url).await, ());
    let after_restart = store
        .execute(&id, CounterCommand::Add(10), &m)
        .await
        .expect("after restart");
    assert_eq!(after_restart.events, first.events);
    assert_eq!(store.load(&id).await.expect("load").aggregate.value, 10);
    assert_eq!(live.mine(store.log()).await.len(), 1);
}

async fn an_idempotency_key_reused_for_another_aggregate_is_refused(live: Live) {
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    let m = meta().with_idempotency_key(live.id("k"));
    store
        .execute(&live.id("a"), CounterCommand::Add(1), &m)
        .await
        .expect("first");
    let err = store
        .execute(&live.id("b"), CounterCommand::Add(1), &m)
        .await
        .expect_err("reused");
    assert!(
        matches!(err, CommandError::IdempotencyKeyReused { ref aggregate_id, .. } if *aggregate_id == live.id("a")),
        "{err}"
    );
    assert_eq!(live.mine(&live.log).await.len(), 1);
}

fn raw(id: &str, expected: u64, key: Option<String>) -> AppendRequest {
    AppendRequest {
        aggregate_type: "Counter".into(),
        aggregate_id: id.into(),
        expected_sequence: expected,
        events: vec![NewEvent {
            event_type: "Added".into(),
            event_version: "2.0".into(),
            payload: serde_json::json!({"Added": {"amount": 1}}),
            metadata: serde_json::to_value(meta().to_map()).expect("json"),
        }],
        snapshot: None,
        idempotency: key.map(|k| (k, serde_json::json!({"event_types": ["Added"]}))),
    }
}

async fn a_key_whose_append_conflicted_can_be_used_again(live: Live) {
    let id = live.id("k2");
    let key = live.id("key");
    live.log
        .append(raw(&id, 0, None))
        .await
        .expect("first event");
    // Wrong expected sequence: the pending record is written, the events are not.
    assert!(matches!(
        live.log.append(raw(&id, 0, Some(key.clone()))).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(live
        .log
        .find_idempotent(&key)
        .await
        .expect("find")
        .is_none());
    let appended = live
        .log
        .append(raw(&id, 1, Some(key.clone())))
        .await
        .expect("the key is free again");
    let stored = live
        .log
        .find_idempotent(&key)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.positions, appended.positions);
    // The same request again is refused by the store and resolved by the caller.
    assert!(matches!(
        live.log.append(raw(&id, 2, Some(key))).await,
        Err(StoreError::DuplicateIdempotencyKey)
    ));
    assert_eq!(live.mine(&live.log).await.len(), 2);
}

async fn a_stale_expected_sequence_is_a_typed_conflict(live: Live) {
    let id = live.id("stale");
    live.log.append(raw(&id, 0, None)).await.expect("first");
    for expected in [0, 5] {
        match live.log.append(raw(&id, expected, None)).await {
            Err(StoreError::Conflict {
                aggregate_id,
                expected_sequence,
                ..
            }) => assert_eq!((aggregate_id, expected_sequence), (id.clone(), expected)),
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
}

async fn append_raw(
    log: &EventLog,
    id: &str,
    event_type: &str,
    version: &str,
    payload: serde_json::Value,
) {
    let mut req = raw(id, 0, None);
    req.events[0].event_type = event_type.into();
    req.events[0].event_version = version.into();
    req.events[0].payload = payload;
    log.append(req).await.expect("raw append");
}

async fn an_old_event_version_is_upcast_on_load(live: Live) {
    let id = live.id("old");
    append_raw(
        &live.log,
        &id,
        "Incremented",
        "1.0",
        serde_json::json!({"Incremented": {"by": 4}}),
    )
    .await;
    let store = AggregateStore::<Counter>::new(live.log.clone(), ())
        .with_upcasters(vec![Box::new(IncrementedV1)]);
    store
        .execute(&id, CounterCommand::Add(6), &meta())
        .await
        .expect("new event after the old one");
    let loaded = store.load(&id).await.expect("load");
    assert_eq!((loaded.aggregate.value, loaded.aggregate.applied), (10, 2));
    let plain = AggregateStore::<Counter>::new(live.log.clone(), ());
    assert!(matches!(
        plain.load(&id).await,
        Err(StoreError::CorruptEvent { sequence: 1, .. })
    ));
}

async fn snapshots_hold_each_event_once_and_equal_a_full_replay(live: Live) {
    let log = live.log.clone();
    let s = live.id("s");
    let snapshotting = AggregateStore::<Counter>::new(log.clone(), ()).with_snapshots(1);
    let mut values = Vec::new();
    for _ in 0..3 {
        snapshotting
            .execute(&s, CounterCommand::Add(10), &meta())
            .await
            .expect("add");
        let snap = log
            .load_snapshot("Counter", &s)
            .await
            .expect("snapshot")
            .expect("written");
        values.push((
            snap.payload["value"].as_i64().expect("value"),
            snap.last_sequence,
        ));
    }
    assert_eq!(values, vec![(10, 1), (20, 2), (30, 3)]);
    let m = live.id("m");
    let every4 = AggregateStore::<Counter>::new(log.clone(), ()).with_snapshots(4);
    for k in [3u32, 3, 1, 5, 2] {
        every4
            .execute(&m, CounterCommand::AddMany(k), &meta())
            .await
            .expect("add many");
    }
    let snap = log
        .load_snapshot("Counter", &m)
        .await
        .expect("snapshot")
        .expect("written");
    assert_eq!(
        snap.payload["value"].as_i64(),
        Some(snap.last_sequence as i64)
    );
    let from_snapshot = every4.load(&m).await.expect("load via snapshot");
    let replayed = AggregateStore::<Counter>::new(log, ())
        .load(&m)
        .await
        .expect("full replay");
    assert_eq!(from_snapshot.aggregate, replayed.aggregate);
    assert_eq!(from_snapshot.sequence, replayed.sequence);
    assert_eq!(replayed.aggregate.value, 14);
}

async fn a_stored_payload_that_no_longer_deserialises_is_a_typed_error_naming_the_event(
    live: Live,
) {
    let id = live.id("bad");
    append_raw(
        &live.log,
        &id,
        "Added",
        "2.0",
        serde_json::json!({"Added": {"amount": "eleven"}}),
    )
    .await;
    let store = AggregateStore::<Counter>::new(live.log.clone(), ());
    match store.load(&id).await {
        Err(StoreError::CorruptEvent {
            aggregate_id,
            sequence,
            event_type,
            ..
        }) => assert_eq!(
            (aggregate_id, sequence, event_type.as_str()),
            (id, 1, "Added")
        ),
        other => panic!("expected CorruptEvent, got {other:?}"),
    }
}

async fn an_unknown_event_type_is_a_typed_error_naming_it(live: Live) {
    let id = live.id("u");
    append_raw(
        &live.log,
        &id,
        "Teleported",
        "1.0",
        serde_json::json!({"Teleported": {}}),
    )
    .await;
    let err = AggregateStore::<Counter>::new(live.log.clone(), ())
        .load(&id)
        .await
        .expect_err("unknown type");
    assert!(
        matches!(err, StoreError::CorruptEvent { ref event_type, .. } if event_type == "Teleported"),
        "{err}"
    );
}

async fn the_global_reader_hands_out_domain_events_only(live: Live) {
    let store = AggregateStore::<Counter>::new(live.log.clone(), ()).with_snapshots(1);
    let m = meta().with_idempotency_key(live.id("g"));
    store
        .execute(&live.id("g"), CounterCommand::AddMany(2), &m)
        .await
        .expect("append with a snapshot and an idempotency record");
    let mine = live.mine(&live.log).await;
    assert_eq!(
        mine.iter()
            .map(|e| (e.event_type.as_str(), e.sequence))
            .collect::<Vec<_>>(),
        vec![("Added", 1), ("Added", 2)]
    );
    assert!(!live
        .log
        .has_held_back_events(live.start)
        .await
        .expect("held back"));
    assert_eq!(live.log.head().await.expect("head"), mine[1].position);
}

async fn cqrs_es_persisted_event_store_runs_on_our_repository(live: Live) {
    use cqrs_es::persist::PersistedEventStore;
    use cqrs_es::CqrsFramework;
    let id = live.id("fw");
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<EventLog, Counter>::new_event_store(live.log.clone()),
        vec![],
        (),
    );
    cqrs.execute(&id, CounterCommand::Add(2))
        .await
        .expect("framework command");
    cqrs.execute(&id, CounterCommand::Add(3))
        .await
        .expect("framework command");
    let ours = AggregateStore::<Counter>::new(live.log.clone(), ())
        .load(&id)
        .await
        .expect("load");
    assert_eq!(ours.aggregate.value, 5);
}

#[tokio::test]
async fn an_esdb_url_selects_the_engine_and_a_bad_one_fails_with_the_reason() {
    assert!(matches!(
        DatabaseUrl::parse(Some(
            "esdb+discover://admin:changeit@cluster.local:2113?tls=true"
        )),
        Ok(DatabaseUrl::Esdb(_))
    ));
    assert!(matches!(
        DatabaseUrl::parse(Some("kurrentdb://localhost:2113?tls=false")),
        Ok(DatabaseUrl::Esdb(_))
    ));
    let err = DatabaseUrl::parse(Some("esdb://admin:hunter2@localhost:2113?tls=maybe"))
        .expect_err("bad tls value");
    let text = err.to_string();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{text}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
}

#[tokio::test]
async fn a_server_that_is_down_at_start_is_a_clear_error() {
    // Nothing listens on port 1.
    let opts = LogOptions {
        connect_timeout: Duration::from_secs(2),
        ..LogOptions::default()
    };
    let err = EsdbLog::connect(
        "esdb://admin:hunter2@127.0.0.1:1?tls=false",
        &DatabaseUrl::Sqlite("sqlite::memory:".into()),
        &opts,
    )
    .await
    .expect_err("down");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{text}");
    assert!(text.contains("127.0.0.1:1"), "names the server: {text}");
    assert!(!text.contains("hunter2"), "leaks the password: {text}");
}

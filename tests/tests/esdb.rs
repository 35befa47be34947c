//! The EventStoreDB / KurrentDB engine's mapping, without a server: recorded
//! events as the client returns them (JSON fixtures under
//! `tests/fixtures/esdb/`) decoded through the engine's own functions.
//!
//! The live conformance suite is `commands/tests/esdb_conformance.rs`: it
//! needs the `esdb` feature of `commands` and a server at `ESDB_URL`.

use commands::store::esdb::{
    decode_record, decode_stream_record, event_id, expected_revision, outcome_of,
    pending_append_landed, EsdbRecord, ExpectedRevision, IdempotencyRecord,
};
use commands::{DatabaseUrl, LogPosition, StoreError};

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/fixtures/esdb/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_recorded_stream_decodes_to_sequences_positions_and_the_original_metadata() {
    let records: Vec<EsdbRecord> = fixture("read_stream_counter.json");
    let events: Vec<_> = records
        .iter()
        .map(|r| decode_stream_record("Counter", "c-1", r).expect("decodes"))
        .collect();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "sequence = revision + 1"
    );
    assert_eq!(
        events[0].position,
        LogPosition {
            tx: 18874,
            seq: 18874
        }
    );
    assert!(
        events.windows(2).all(|w| w[0].position < w[1].position),
        "one append's events share a commit position and order by prepare"
    );
    assert_eq!(events[1].position.tx, events[2].position.tx);
    let e = &events[0];
    assert_eq!(
        (e.aggregate_type.as_str(), e.aggregate_id.as_str()),
        ("Counter", "c-1")
    );
    assert_eq!(
        (e.event_type.as_str(), e.event_version.as_str()),
        ("Added", "2.0")
    );
    assert_eq!(e.payload, serde_json::json!({"Added": {"amount": 5}}));
    assert_eq!(e.metadata["actor"], "staff:staff-1");
    assert_eq!(e.metadata["correlation_id"], "req-test");
    let keys: Vec<&String> = e.metadata.as_object().expect("object").keys().collect();
    assert!(
        keys.iter().all(|k| !k.starts_with('$')),
        "reserved keys are not handed back: {keys:?}"
    );
    assert_eq!(e.recorded_at.to_rfc3339(), "2026-03-08T08:00:00.120+00:00");
}

#[test]
fn a_page_of_all_yields_only_our_domain_events_in_order() {
    let records: Vec<EsdbRecord> = fixture("read_all_page.json");
    let ours: Vec<_> = records
        .iter()
        .filter_map(|r| decode_record(r).expect("no corrupt event"))
        .collect();
    assert_eq!(
        ours.iter()
            .map(|e| (e.aggregate_id.as_str(), e.sequence))
            .collect::<Vec<_>>(),
        vec![("c-1", 1), ("c-1", 2), ("c-1", 3)],
        "system events, snapshots, idempotency records and other applications' events are skipped"
    );
    assert!(ours.windows(2).all(|w| w[0].position < w[1].position));
}

#[test]
fn an_event_of_ours_with_a_payload_that_is_not_json_is_a_typed_error_naming_it() {
    let record: EsdbRecord = fixture("corrupt_payload.json");
    match decode_record(&record) {
        Err(StoreError::CorruptEvent {
            aggregate_type,
            aggregate_id,
            sequence,
            event_type,
            ..
        }) => assert_eq!(
            (
                aggregate_type.as_str(),
                aggregate_id.as_str(),
                sequence,
                event_type.as_str()
            ),
            ("Counter", "bad", 1, "Added")
        ),
        other => panic!("expected CorruptEvent, got {other:?}"),
    }
}

#[test]
fn a_foreign_event_in_an_aggregate_stream_is_a_typed_error_not_a_skip() {
    let records: Vec<EsdbRecord> = fixture("read_all_page.json");
    let foreign = records
        .iter()
        .find(|r| r.stream_id == "billing-7")
        .expect("fixture has it");
    assert!(decode_record(foreign).expect("skipped").is_none());
    assert!(matches!(
        decode_stream_record("billing", "7", foreign),
        Err(StoreError::CorruptEvent { sequence: 13, .. })
    ));
}

#[test]
fn a_pending_idempotency_record_resolves_to_the_events_its_append_wrote() {
    let pending: IdempotencyRecord = fixture("idempotency_pending.json");
    let IdempotencyRecord::Pending {
        expected_sequence,
        event_count,
        ..
    } = &pending
    else {
        panic!("pending fixture")
    };
    assert_eq!(
        expected_revision(*expected_sequence),
        ExpectedRevision::Exact(0)
    );
    let stream: Vec<EsdbRecord> = fixture("read_stream_counter.json");
    // The append's events are the ones after its expected sequence.
    let written = &stream[*expected_sequence as usize..];
    let ids: Vec<_> = written.iter().map(|r| r.id).collect();
    assert!(pending_append_landed("add-two", *event_count, &ids));
    assert!(!pending_append_landed("another-key", *event_count, &ids));
    let positions: Vec<LogPosition> = written.iter().map(|r| r.position.into()).collect();
    let outcome = outcome_of(pending.clone(), Some(&positions))
        .expect("valid")
        .expect("landed");
    assert_eq!(outcome.positions, positions);
    assert_eq!(outcome.outcome["event_types"][1], "Added");
    assert_eq!(
        outcome_of(pending, None).expect("valid"),
        None,
        "an append that never landed leaves the key free"
    );

    let completed: IdempotencyRecord = fixture("idempotency_completed.json");
    let from_completed = outcome_of(completed, None).expect("valid").expect("stored");
    assert_eq!(
        from_completed, outcome,
        "both records give the same outcome"
    );
    assert_eq!(
        ids,
        vec![event_id(Some("add-two"), 0), event_id(Some("add-two"), 1)]
    );
}

#[test]
fn an_esdb_url_is_refused_with_the_reason_or_accepted_with_the_feature() {
    for url in [
        "esdb://admin:hunter2@node1:2113?tls=false",
        "esdb+discover://admin:hunter2@cluster.example.com:2113",
        "kurrentdb://admin:hunter2@localhost:2113?tls=false",
        "kurrentdb+discover://admin:hunter2@cluster.example.com:2113",
    ] {
        match DatabaseUrl::parse(Some(url)) {
            Ok(u) => assert!(format!("{u:?}").contains("Esdb"), "{url}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("--features esdb"), "{text}");
                assert!(!text.contains("hunter2"), "password leaked: {text}");
            }
        }
    }
}

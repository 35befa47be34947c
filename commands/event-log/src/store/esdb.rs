//! EventStoreDB / KurrentDB engine: the scale-out event log behind the same seam.
//!
//! The pure half of this module (stream names, expected revisions, event ids,
//! the metadata and position encodings, decoding of recorded events) is always
//! compiled, so its unit tests run in every build; the client half
//! ([`EsdbLog`]) only with the cargo feature `esdb`, so default builds do not
//! compile a gRPC client.
//!
//! # Client crate
//! We use [`kurrentdb`](https://crates.io/crates/kurrentdb) (1.x), not
//! `eventstore` (4.0.0, Feb 2025). It is the same team's client under the
//! database's new name, and the one still maintained: `eventstore` gets no
//! further releases. It speaks to EventStoreDB 20.10+ and KurrentDB servers,
//! and its connection-string parser accepts both `esdb://` and `kurrentdb://`
//! (with `+discover`), the schemes `DATABASE_URL` selects this engine with.
//!
//! # Mapping (see `docs/operations.md` for the limits)
//! - One stream per aggregate, `{AggregateType}-{id}`; sequence = revision + 1,
//!   so the expected revision of an append is `NoStream` for sequence 0 and
//!   `sequence - 1` otherwise: a concurrent writer gets `WrongExpectedVersion`,
//!   mapped to [`StoreError::Conflict`].
//! - Event ids are uuid v5 of the idempotency key and the event's index, so a
//!   retried append with the same expected revision is deduplicated by the
//!   server; commands without a key get random ids.
//! - Our metadata is the event's custom metadata JSON, plus reserved `$` keys
//!   (`$correlationId`/`$causationId`, which the server's own projections read,
//!   and the aggregate type, id and event version).
//! - Snapshots go to `{AggregateType}-{id}-snapshot` (last event wins).
//! - Idempotency outcomes go to `dirtfree-idem-{key}`: a *pending* record is
//!   written before the events (the reservation), a *completed* one after.
//! - `$all` is read forwards; `LogPosition { tx: commit, seq: prepare }`.

#[cfg(feature = "esdb")]
mod client;

#[cfg(feature = "esdb")]
pub use client::EsdbLog;

/// The error for the impossible case of an EventStoreDB log used as a
/// read-model database (`EsdbLog::connect` refuses to build one). Defined in every
/// build, so callers' matches need no feature of their own.
pub fn read_model_is_not_esdb() -> StoreError {
    StoreError::Misconfigured("the read-model database cannot be EventStoreDB".into())
}

/// Validates an EventStoreDB connection string with the client's own parser.
#[cfg(feature = "esdb")]
pub(crate) fn client_settings(url: &str) -> Result<(), StoreError> {
    client::parse_settings(url).map(|_| ())
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{LogPosition, RecordedEvent, StoreError, StoredOutcome};

/// URL schemes that select this engine (the client's connection-string format).
pub const SCHEMES: [&str; 4] = [
    "esdb://",
    "esdb+discover://",
    "kurrentdb://",
    "kurrentdb+discover://",
];

/// Whether a `DATABASE_URL` selects the EventStoreDB / KurrentDB engine.
pub fn is_esdb_url(url: &str) -> bool {
    SCHEMES.iter().any(|s| url.starts_with(s))
}

/// Environment variable naming the read-model database (PostgreSQL or SQLite)
/// when the event log is on EventStoreDB; unset selects the embedded SQLite default.
pub const READ_MODEL_DATABASE_URL: &str = "READ_MODEL_DATABASE_URL";

/// Event type of snapshot records (in the `-snapshot` companion streams).
pub const SNAPSHOT_EVENT_TYPE: &str = "dirtfree.snapshot";
/// Event type of the record that reserves an idempotency key before the append.
pub const IDEMPOTENCY_PENDING_EVENT_TYPE: &str = "dirtfree.idempotency.pending";
/// Event type of the record that stores an idempotency key's outcome after the append.
pub const IDEMPOTENCY_COMPLETED_EVENT_TYPE: &str = "dirtfree.idempotency.completed";

// Reserved metadata keys. `$correlationId` / `$causationId` are the names the
// server's `$by_correlation_id` projection and its UI understand.
const META_CORRELATION: &str = "$correlationId";
const META_CAUSATION: &str = "$causationId";
const META_AGGREGATE_TYPE: &str = "$aggregateType";
const META_AGGREGATE_ID: &str = "$aggregateId";
const META_EVENT_VERSION: &str = "$eventVersion";
/// Where metadata that is not a JSON object is kept.
const META_VALUE: &str = "$value";

/// Namespace of the uuid v5 event ids (fixed forever: changing it would stop
/// the server from recognising retried appends written before the change).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1e_4c2a_9d3f_5e70_8a41_d2c9_0f7b_3e16);

/// The aggregate's stream: `{AggregateType}-{id}` (the server's `$by_category`
/// projection files it under the aggregate type).
pub fn stream_name(aggregate_type: &str, aggregate_id: &str) -> String {
    format!("{aggregate_type}-{aggregate_id}")
}

/// The aggregate's snapshot stream: `{AggregateType}-{id}-snapshot`.
pub fn snapshot_stream_name(aggregate_type: &str, aggregate_id: &str) -> String {
    format!("{aggregate_type}-{aggregate_id}-snapshot")
}

/// The stream remembering one idempotency key: `dirtfree-idem-{key}`. Not a
/// `$` system stream, whose default ACL would demand an admin connection.
pub fn idempotency_stream_name(key: &str) -> String {
    format!("dirtfree-idem-{key}")
}

/// What the server must find before an append (the client's `StreamState`
/// without `Any`/`StreamExists`, which we never use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this (0-based) revision.
    Exact(u64),
}

/// The expected revision of an append after the stream's last known
/// `expected_sequence` (1-based; 0 = no events yet).
pub fn expected_revision(expected_sequence: u64) -> ExpectedRevision {
    match expected_sequence {
        0 => ExpectedRevision::NoStream,
        n => ExpectedRevision::Exact(n - 1),
    }
}

/// Our 1-based sequence of the event at a 0-based stream revision.
pub fn sequence_of_revision(revision: u64) -> u64 {
    revision + 1
}

/// The revision of the first event after `after_sequence` (where a stream read starts).
pub fn revision_after_sequence(after_sequence: u64) -> u64 {
    after_sequence
}

/// The id of the `index`-th event (0-based) of a command: uuid v5 of the
/// idempotency key and the index, so that the same command retried produces
/// the same ids and the server drops the duplicate; random without a key.
pub fn event_id(idempotency_key: Option<&str>, index: usize) -> Uuid {
    match idempotency_key {
        // The index is the part after the last '/', so "a/1"+2 and "a"+"1/2" differ.
        Some(key) => Uuid::new_v5(&EVENT_ID_NAMESPACE, format!("{key}/{index}").as_bytes()),
        None => Uuid::new_v4(),
    }
}

/// A position in `$all` as the client reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EsdbPosition {
    /// Commit position: where the writing transaction's commit record is.
    pub commit: u64,
    /// Prepare position: where the event itself is.
    pub prepare: u64,
}

impl From<EsdbPosition> for LogPosition {
    /// `$all` is in commit order, ordered by (commit, prepare), exactly as
    /// `LogPosition` orders (tx, seq).
    fn from(p: EsdbPosition) -> Self {
        LogPosition {
            tx: p.commit,
            seq: p.prepare,
        }
    }
}

impl From<LogPosition> for EsdbPosition {
    fn from(p: LogPosition) -> Self {
        EsdbPosition {
            commit: p.tx,
            prepare: p.seq,
        }
    }
}

/// The custom metadata stored with an event: our metadata object plus the
/// reserved `$` keys. Metadata that is not an object is kept under `$value`.
pub fn encode_metadata(
    metadata: &Value,
    aggregate_type: &str,
    aggregate_id: &str,
    event_version: &str,
) -> Value {
    let mut out = match metadata {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert(META_VALUE.into(), other.clone());
            m
        }
    };
    for (ours, theirs) in [
        ("correlation_id", META_CORRELATION),
        ("causation_id", META_CAUSATION),
    ] {
        if let Some(v) = out.get(ours).cloned() {
            out.insert(theirs.into(), v);
        }
    }
    out.insert(META_AGGREGATE_TYPE.into(), aggregate_type.into());
    out.insert(META_AGGREGATE_ID.into(), aggregate_id.into());
    out.insert(META_EVENT_VERSION.into(), event_version.into());
    Value::Object(out)
}

/// What [`decode_metadata`] recovers from an event's custom metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedMetadata {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Schema version of the payload.
    pub event_version: String,
    /// Our metadata, as it was given to the append.
    pub metadata: Value,
}

/// Reads back [`encode_metadata`]'s output; `None` when the bytes are not an
/// event written by this engine (no JSON object, or no `$eventVersion`).
pub fn decode_metadata(bytes: &[u8]) -> Option<DecodedMetadata> {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(bytes) else {
        return None;
    };
    let take = |m: &mut Map<String, Value>, k: &str| match m.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let event_version = take(&mut m, META_EVENT_VERSION)?;
    let aggregate_type = take(&mut m, META_AGGREGATE_TYPE)?;
    let aggregate_id = take(&mut m, META_AGGREGATE_ID)?;
    m.remove(META_CORRELATION);
    m.remove(META_CAUSATION);
    let metadata = match m.remove(META_VALUE) {
        Some(v) if m.is_empty() => v,
        Some(v) => {
            m.insert(META_VALUE.into(), v);
            Value::Object(m)
        }
        None => Value::Object(m),
    };
    Some(DecodedMetadata {
        aggregate_type,
        aggregate_id,
        event_version,
        metadata,
    })
}

/// A recorded event as the client returns it (`kurrentdb::RecordedEvent`),
/// as plain data: what the JSON fixtures under `tests/fixtures/esdb/` hold.
/// Payload and metadata bytes are written as UTF-8 strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EsdbRecord {
    /// Stream the event belongs to.
    pub stream_id: String,
    /// Event id.
    pub id: Uuid,
    /// 0-based revision in its stream.
    pub revision: u64,
    /// Event type.
    pub event_type: String,
    /// Payload bytes.
    #[serde(with = "utf8_bytes")]
    pub data: Vec<u8>,
    /// Custom (user) metadata bytes.
    #[serde(with = "utf8_bytes")]
    pub custom_metadata: Vec<u8>,
    /// Whether the server marked the payload as JSON.
    pub is_json: bool,
    /// Position in `$all`.
    pub position: EsdbPosition,
    /// When the server recorded it.
    pub created: DateTime<Utc>,
}

mod utf8_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        String::deserialize(d).map(String::into_bytes)
    }
}

/// Whether an event type is one of this engine's bookkeeping records.
pub fn is_bookkeeping(event_type: &str) -> bool {
    matches!(
        event_type,
        SNAPSHOT_EVENT_TYPE | IDEMPOTENCY_PENDING_EVENT_TYPE | IDEMPOTENCY_COMPLETED_EVENT_TYPE
    )
}

/// Decodes one event read from `$all`. `Ok(None)` for anything that is not a
/// domain event of ours (system events, snapshots, idempotency records,
/// events other applications wrote to the same server).
///
/// # Errors
/// [`StoreError::CorruptEvent`] for an event of ours whose payload is not JSON.
pub fn decode_record(r: &EsdbRecord) -> Result<Option<RecordedEvent>, StoreError> {
    if r.event_type.starts_with('$') || is_bookkeeping(&r.event_type) {
        return Ok(None);
    }
    let Some(meta) = decode_metadata(&r.custom_metadata) else {
        return Ok(None);
    };
    let sequence = sequence_of_revision(r.revision);
    let payload = serde_json::from_slice(&r.data).map_err(|e| StoreError::CorruptEvent {
        aggregate_type: meta.aggregate_type.clone(),
        aggregate_id: meta.aggregate_id.clone(),
        sequence,
        event_type: r.event_type.clone(),
        reason: format!("payload is not JSON: {e}"),
    })?;
    Ok(Some(RecordedEvent {
        position: r.position.into(),
        aggregate_type: meta.aggregate_type,
        aggregate_id: meta.aggregate_id,
        sequence,
        event_type: r.event_type.clone(),
        event_version: meta.event_version,
        payload,
        metadata: meta.metadata,
        recorded_at: r.created,
    }))
}

/// Decodes one event read from the stream of `aggregate_type`/`aggregate_id`,
/// where every event must be a domain event of ours.
///
/// # Errors
/// [`StoreError::CorruptEvent`] naming the event when it is not.
pub fn decode_stream_record(
    aggregate_type: &str,
    aggregate_id: &str,
    r: &EsdbRecord,
) -> Result<RecordedEvent, StoreError> {
    decode_record(r)?.ok_or_else(|| StoreError::CorruptEvent {
        aggregate_type: aggregate_type.to_string(),
        aggregate_id: aggregate_id.to_string(),
        sequence: sequence_of_revision(r.revision),
        event_type: r.event_type.clone(),
        reason: "not an event written by Dirt Free CRM (no $eventVersion in its metadata)".into(),
    })
}

/// A snapshot record (the payload of a [`SNAPSHOT_EVENT_TYPE`] event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Aggregate state.
    pub payload: Value,
    /// Sequence of the last event it includes.
    pub last_sequence: u64,
    /// Snapshot counter.
    pub snapshot_number: u64,
}

/// A record of an idempotency stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdempotencyRecord {
    /// Written before the events: the key is taken for this append.
    Pending {
        /// Aggregate type.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// The stream's sequence the append expects.
        expected_sequence: u64,
        /// Number of events the append writes.
        event_count: u64,
        /// The outcome to remember (what `AppendRequest::idempotency` carries).
        result: Value,
    },
    /// Written after the events: the outcome with the events' positions.
    Completed {
        /// Aggregate type.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// The outcome to remember.
        result: Value,
        /// Positions of the appended events, as `tx.seq` strings.
        positions: Vec<String>,
    },
}

impl IdempotencyRecord {
    /// The event type this record is stored under.
    pub fn event_type(&self) -> &'static str {
        match self {
            IdempotencyRecord::Pending { .. } => IDEMPOTENCY_PENDING_EVENT_TYPE,
            IdempotencyRecord::Completed { .. } => IDEMPOTENCY_COMPLETED_EVENT_TYPE,
        }
    }
}

/// Whether the events found at a pending record's place in its stream (their
/// ids, in order) are the ones that append wrote under `key`.
pub fn pending_append_landed(key: &str, event_count: u64, found_ids: &[Uuid]) -> bool {
    event_count > 0
        && found_ids.len() as u64 == event_count
        && found_ids
            .iter()
            .enumerate()
            .all(|(i, id)| *id == event_id(Some(key), i))
}

/// The stored outcome of a completed record, or of a pending one whose events
/// landed at `positions`.
///
/// # Errors
/// [`StoreError::InvalidPosition`] for a malformed stored position.
pub fn outcome_of(
    record: IdempotencyRecord,
    landed_at: Option<&[LogPosition]>,
) -> Result<Option<StoredOutcome>, StoreError> {
    match record {
        IdempotencyRecord::Completed {
            aggregate_type,
            aggregate_id,
            result,
            positions,
        } => Ok(Some(StoredOutcome {
            aggregate_type,
            aggregate_id,
            outcome: result,
            positions: positions
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()?,
        })),
        IdempotencyRecord::Pending {
            aggregate_type,
            aggregate_id,
            result,
            ..
        } => Ok(landed_at.map(|positions| StoredOutcome {
            aggregate_type,
            aggregate_id,
            outcome: result,
            positions: positions.to_vec(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_stream_expects_no_stream_and_an_existing_one_its_last_revision() {
        assert_eq!(expected_revision(0), ExpectedRevision::NoStream);
        assert_eq!(expected_revision(1), ExpectedRevision::Exact(0));
        assert_eq!(expected_revision(42), ExpectedRevision::Exact(41));
        assert_eq!(sequence_of_revision(0), 1);
        assert_eq!(revision_after_sequence(3), 3, "sequence 4 is revision 3");
    }

    #[test]
    fn event_ids_are_stable_per_key_and_index_and_random_without_a_key() {
        assert_eq!(event_id(Some("k"), 0), event_id(Some("k"), 0));
        assert_ne!(event_id(Some("k"), 0), event_id(Some("k"), 1));
        assert_ne!(event_id(Some("a/1"), 2), event_id(Some("a"), 12));
        assert_eq!(event_id(Some("k"), 0).get_version_num(), 5);
        assert_ne!(event_id(None, 0), event_id(None, 0));
    }

    #[test]
    fn metadata_round_trips_and_carries_the_server_correlation_keys() {
        let ours =
            serde_json::json!({"actor": "staff:s-1", "correlation_id": "c", "causation_id": "d"});
        let stored = encode_metadata(&ours, "Job", "j-1", "2.0");
        assert_eq!(stored["$correlationId"], "c");
        assert_eq!(stored["$causationId"], "d");
        let back = decode_metadata(stored.to_string().as_bytes()).expect("ours");
        assert_eq!(back.metadata, ours);
        assert_eq!(
            (back.aggregate_type.as_str(), back.aggregate_id.as_str()),
            ("Job", "j-1")
        );
        let null = encode_metadata(&Value::Null, "Job", "j-1", "1.0");
        assert_eq!(
            decode_metadata(null.to_string().as_bytes())
                .expect("ours")
                .metadata,
            Value::Null
        );
        assert_eq!(decode_metadata(b"{\"actor\":\"x\"}"), None);
        assert_eq!(decode_metadata(b"not json"), None);
    }

    #[test]
    fn positions_map_commit_to_tx_and_prepare_to_seq_in_the_same_order() {
        let a = EsdbPosition {
            commit: 100,
            prepare: 90,
        };
        let b = EsdbPosition {
            commit: 100,
            prepare: 95,
        };
        let c = EsdbPosition {
            commit: 200,
            prepare: 10,
        };
        let (la, lb, lc) = (
            LogPosition::from(a),
            LogPosition::from(b),
            LogPosition::from(c),
        );
        assert_eq!(la, LogPosition { tx: 100, seq: 90 });
        assert!(la < lb && lb < lc);
        assert_eq!(EsdbPosition::from(lc), c);
    }

    #[test]
    fn a_pending_append_counts_as_landed_only_with_all_of_its_ids_in_order() {
        let ids: Vec<Uuid> = (0..2).map(|i| event_id(Some("k"), i)).collect();
        assert!(pending_append_landed("k", 2, &ids));
        assert!(!pending_append_landed("k", 2, &ids[..1]));
        assert!(!pending_append_landed("other", 2, &ids));
        assert!(!pending_append_landed("k", 2, &[ids[1], ids[0]]));
    }
}

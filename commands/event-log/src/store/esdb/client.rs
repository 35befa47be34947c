//! The `kurrentdb` client half of the EventStoreDB / KurrentDB engine
//! (cargo feature `esdb`). Everything it stores or reads goes through the
//! pure mapping of the parent module.

use std::sync::Arc;
use std::time::Duration;

use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, Position, ReadAllOptions,
    ReadStreamOptions, StreamMetadata, StreamPosition, StreamState, SubscribeToAllOptions,
    SubscriptionFilter,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    decode_record, decode_stream_record, encode_metadata, event_id, expected_revision,
    idempotency_stream_name, outcome_of, pending_append_landed, revision_after_sequence,
    snapshot_stream_name, stream_name, EsdbPosition, EsdbRecord, ExpectedRevision,
    IdempotencyRecord, SnapshotRecord, SNAPSHOT_EVENT_TYPE,
};
use crate::store::{
    redact_url, AppendRequest, Appended, DatabaseUrl, EventLog, LogOptions, LogPosition,
    PostgresLog, RecordedEvent, SqliteLog, StoreError, StoredOutcome, StoredSnapshot,
};

/// How many `$all` events one server round trip asks for while scanning.
const SCAN_CHUNK: usize = 1_000;

/// The EventStoreDB / KurrentDB event log, with the PostgreSQL or SQLite
/// database that holds read models and side tables. Cheap to clone.
#[derive(Clone)]
pub struct EsdbLog {
    client: Arc<Client>,
    read_model: Box<EventLog>,
    commits: Arc<watch::Sender<u64>>,
    stop: CancellationToken,
    url: String,
}

impl std::fmt::Debug for EsdbLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsdbLog")
            .field("url", &self.url)
            .field("read_model", &self.read_model.engine())
            .finish_non_exhaustive()
    }
}

/// Validates an `esdb://` / `kurrentdb://` connection string.
///
/// # Errors
/// [`StoreError::InvalidUrl`] with the parser's reason (password redacted).
pub(crate) fn parse_settings(url: &str) -> Result<ClientSettings, StoreError> {
    url.parse::<ClientSettings>()
        .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", redact_url(url))))
}

impl EsdbLog {
    /// Connects to the server `url` names and opens (migrating) the read-model
    /// database `read_model`, which must be PostgreSQL or SQLite. Fails when
    /// the server does not answer within `options.connect_timeout`.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`], [`StoreError::Unavailable`], and the
    /// read-model database's errors (see [`EventLog::connect`]).
    pub async fn connect(
        url: &str,
        read_model: &DatabaseUrl,
        options: &LogOptions,
    ) -> Result<Self, StoreError> {
        let settings = parse_settings(url)?;
        let client = Client::new(settings)
            .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", redact_url(url))))?;
        let read_model = match read_model {
            DatabaseUrl::Postgres(u) => EventLog::Postgres(PostgresLog::connect(u, options).await?),
            DatabaseUrl::Sqlite(u) => EventLog::Sqlite(SqliteLog::connect(u, options).await?),
            DatabaseUrl::Esdb(_) => {
                return Err(StoreError::InvalidUrl(format!(
                    "{READ_MODEL}: read models need PostgreSQL or SQLite, not EventStoreDB",
                    READ_MODEL = super::READ_MODEL_DATABASE_URL
                )))
            }
        };
        let (tx, _) = watch::channel(0u64);
        let log = Self {
            client: Arc::new(client),
            read_model: Box::new(read_model),
            commits: Arc::new(tx),
            stop: CancellationToken::new(),
            url: redact_url(url),
        };
        tokio::time::timeout(options.connect_timeout, log.ping())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "EventStoreDB at {} did not answer within {:?}",
                    log.url, options.connect_timeout
                ))
            })?
            .map_err(|e| match e {
                StoreError::Unavailable(why) => StoreError::Unavailable(format!(
                    "cannot reach EventStoreDB at {}: {why}",
                    log.url
                )),
                other => other,
            })?;
        log.spawn_subscription();
        Ok(log)
    }

    /// The database holding read models, checkpoints and other side tables.
    pub fn read_model(&self) -> &EventLog {
        &self.read_model
    }

    /// Stops the wake-up subscription and closes the read-model database.
    pub async fn close(&self) {
        self.stop.cancel();
        Box::pin(self.read_model.close()).await;
    }

    /// Other instances' appends arrive through a catch-up subscription to
    /// `$all` from its end (server push, no polling); each event bumps the
    /// watch channel. On error it resubscribes after a second and bumps once,
    /// since events may have been missed; `LogTail`'s 2 s idle re-read covers
    /// the gap in between.
    fn spawn_subscription(&self) {
        let client = Arc::clone(&self.client);
        let commits = Arc::clone(&self.commits);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let options = SubscribeToAllOptions::default()
                    .position(StreamPosition::End)
                    .filter(SubscriptionFilter::on_event_type().exclude_system_events());
                let mut sub = client.subscribe_to_all(&options).await;
                commits.send_modify(|n| *n += 1);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        next = sub.next() => match next {
                            Ok(_) => commits.send_modify(|n| *n += 1),
                            Err(e) => {
                                tracing::warn!(error = %e, "EventStoreDB subscription failed; resubscribing");
                                break;
                            }
                        },
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    pub(crate) fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(1)
            .requires_leader(true);
        let mut stream = self.client.read_all(&options).await.map_err(map_error)?;
        stream.next().await.map(|_| ()).map_err(map_error)
    }

    pub(crate) async fn append(&self, req: AppendRequest) -> Result<Appended, StoreError> {
        if req.events.is_empty() {
            return Ok(Appended { positions: vec![] });
        }
        let stream = stream_name(&req.aggregate_type, &req.aggregate_id);
        let key = req.idempotency.as_ref().map(|(k, _)| k.clone());
        let reservation = match &req.idempotency {
            Some((k, result)) => Some(self.reserve(k, &req, result).await?),
            None => None,
        };
        let n = req.events.len() as u64;
        let events = req
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let meta = encode_metadata(
                    &e.metadata,
                    &req.aggregate_type,
                    &req.aggregate_id,
                    &e.event_version,
                );
                EventData::json(&e.event_type, &e.payload)
                    .and_then(|d| d.id(event_id(key.as_deref(), i)).metadata_as_json(&meta))
                    .map_err(|e| StoreError::Database(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state = match expected_revision(req.expected_sequence) {
            ExpectedRevision::NoStream => StreamState::NoStream,
            ExpectedRevision::Exact(r) => StreamState::StreamRevision(r),
        };
        match self.append_raw(&stream, state, events).await {
            Ok(()) => {}
            Err(kurrentdb::Error::WrongExpectedVersion { .. }) => {
                return Err(StoreError::Conflict {
                    aggregate_type: req.aggregate_type,
                    aggregate_id: req.aggregate_id,
                    expected_sequence: req.expected_sequence,
                })
            }
            Err(e) => return Err(map_error(e)),
        }
        // The write result has one position for the batch: read the events
        // back (from the leader) for each one's position.
        let written = self
            .read_stream_records(&stream, revision_after_sequence(req.expected_sequence), n)
            .await?;
        if written.len() as u64 != n {
            return Err(StoreError::Database(format!(
                "{stream}: {n} events appended but {} read back",
                written.len()
            )));
        }
        let positions: Vec<LogPosition> = written.iter().map(|r| r.position.into()).collect();

        if let (Some((key, result)), Some(rev)) = (&req.idempotency, reservation) {
            // Best effort: `find_idempotent` rebuilds the outcome from the
            // pending record and the stream when this write is lost.
            let record = IdempotencyRecord::Completed {
                aggregate_type: req.aggregate_type.clone(),
                aggregate_id: req.aggregate_id.clone(),
                result: result.clone(),
                positions: positions.iter().map(ToString::to_string).collect(),
            };
            if let Err(e) = self
                .append_record(
                    &idempotency_stream_name(key),
                    StreamState::StreamRevision(rev),
                    &record,
                )
                .await
            {
                tracing::warn!(error = %e, "could not record an idempotency outcome; it will be rebuilt on lookup");
            }
        }
        if let Some(snap) = &req.snapshot {
            // The events are committed: a lost snapshot only costs a longer replay.
            let record = SnapshotRecord {
                payload: snap.payload.clone(),
                last_sequence: snap.last_sequence,
                snapshot_number: snap.snapshot_number,
            };
            let data = EventData::json(SNAPSHOT_EVENT_TYPE, &record)
                .map_err(|e| StoreError::Database(e.to_string()))?;
            let snapshots = snapshot_stream_name(&req.aggregate_type, &req.aggregate_id);
            if let Err(e) = self
                .append_raw(&snapshots, StreamState::Any, vec![data])
                .await
            {
                tracing::warn!(error = %e, stream = %snapshots, "could not write a snapshot");
            }
            if snap.snapshot_number == 1 {
                // Only the last snapshot is ever read: let the server scavenge the rest.
                let keep_two = StreamMetadata::builder().max_count(2).build();
                let options = AppendToStreamOptions::default().requires_leader(true);
                if let Err(e) = self
                    .client
                    .set_stream_metadata(snapshots.as_str(), &options, &keep_two)
                    .await
                {
                    tracing::warn!(error = %e, stream = %snapshots, "could not cap the snapshot stream");
                }
            }
        }
        self.commits.send_modify(|c| *c += 1);
        Ok(Appended { positions })
    }

    /// Takes `key` for this append by writing a pending record to its stream
    /// (expected: no stream). The key is taken over only when the earlier
    /// attempt provably appended nothing. Returns the pending record's revision.
    async fn reserve(
        &self,
        key: &str,
        req: &AppendRequest,
        result: &serde_json::Value,
    ) -> Result<u64, StoreError> {
        let stream = idempotency_stream_name(key);
        let pending = IdempotencyRecord::Pending {
            aggregate_type: req.aggregate_type.clone(),
            aggregate_id: req.aggregate_id.clone(),
            expected_sequence: req.expected_sequence,
            event_count: req.events.len() as u64,
            result: result.clone(),
        };
        match self
            .append_record(&stream, StreamState::NoStream, &pending)
            .await
        {
            Ok(()) => return Ok(0),
            Err(kurrentdb::Error::WrongExpectedVersion { .. }) => {}
            Err(e) => return Err(map_error(e)),
        }
        let Some((rev, last)) = self.last_idempotency_record(key).await? else {
            return Err(StoreError::DuplicateIdempotencyKey);
        };
        if matches!(last, IdempotencyRecord::Completed { .. })
            || self.landed_positions(key, &last).await?.is_some()
        {
            return Err(StoreError::DuplicateIdempotencyKey);
        }
        match self
            .append_record(&stream, StreamState::StreamRevision(rev), &pending)
            .await
        {
            Ok(()) => Ok(rev + 1),
            Err(kurrentdb::Error::WrongExpectedVersion { .. }) => {
                Err(StoreError::DuplicateIdempotencyKey)
            }
            Err(e) => Err(map_error(e)),
        }
    }

    /// The positions of a pending record's events when they are in its stream.
    async fn landed_positions(
        &self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<Option<Vec<LogPosition>>, StoreError> {
        let IdempotencyRecord::Pending {
            aggregate_type,
            aggregate_id,
            expected_sequence,
            event_count,
            ..
        } = record
        else {
            return Ok(None);
        };
        let found = self
            .read_stream_records(
                &stream_name(aggregate_type, aggregate_id),
                revision_after_sequence(*expected_sequence),
                *event_count,
            )
            .await?;
        let ids: Vec<Uuid> = found.iter().map(|r| r.id).collect();
        Ok(pending_append_landed(key, *event_count, &ids)
            .then(|| found.iter().map(|r| r.position.into()).collect()))
    }

    async fn last_idempotency_record(
        &self,
        key: &str,
    ) -> Result<Option<(u64, IdempotencyRecord)>, StoreError> {
        let Some(r) = self.last_record(&idempotency_stream_name(key)).await? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&r.data).map_err(|e| {
            StoreError::Database(format!(
                "idempotency record {} #{} is unreadable: {e}",
                r.stream_id, r.revision
            ))
        })?;
        Ok(Some((r.revision, record)))
    }

    pub(crate) async fn find_idempotent(
        &self,
        key: &str,
    ) -> Result<Option<StoredOutcome>, StoreError> {
        let Some((_, record)) = self.last_idempotency_record(key).await? else {
            return Ok(None);
        };
        let landed = self.landed_positions(key, &record).await?;
        outcome_of(record, landed.as_deref())
    }

    pub(crate) async fn load_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_records(
            &stream_name(aggregate_type, aggregate_id),
            revision_after_sequence(after_sequence),
            u64::MAX,
        )
        .await?
        .iter()
        .map(|r| decode_stream_record(aggregate_type, aggregate_id, r))
        .collect()
    }

    pub(crate) async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let stream = snapshot_stream_name(aggregate_type, aggregate_id);
        let Some(r) = self.last_record(&stream).await? else {
            return Ok(None);
        };
        let s: SnapshotRecord =
            serde_json::from_slice(&r.data).map_err(|e| StoreError::CorruptEvent {
                aggregate_type: aggregate_type.to_string(),
                aggregate_id: aggregate_id.to_string(),
                sequence: 0,
                event_type: "snapshot".into(),
                reason: e.to_string(),
            })?;
        Ok(Some(StoredSnapshot {
            payload: s.payload,
            last_sequence: s.last_sequence,
            snapshot_number: s.snapshot_number,
        }))
    }

    /// `$all` forwards after `after`, our domain events only. `$all` is in
    /// commit order and the server serves reads only up to what it has
    /// committed, so a later read can never return an earlier position.
    pub(crate) async fn read_all(
        &self,
        after: LogPosition,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = limit as usize;
        let mut out = Vec::with_capacity(limit.min(SCAN_CHUNK));
        let mut cursor = after;
        while out.len() < limit {
            let chunk = self.read_all_chunk(cursor, SCAN_CHUNK).await?;
            let full = chunk.len() >= SCAN_CHUNK;
            for r in chunk {
                let position = LogPosition::from(r.position);
                // The start position is inclusive on the server; ours is exclusive.
                if position <= cursor {
                    continue;
                }
                cursor = position;
                if let Some(e) = decode_record(&r)? {
                    out.push(e);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            // A short page is the end of `$all` (or of the server's filter
            // window): the tailer reads again on the next wake-up.
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `max` records of `$all` from `from` (inclusive), system events excluded server-side.
    async fn read_all_chunk(
        &self,
        from: LogPosition,
        max: usize,
    ) -> Result<Vec<EsdbRecord>, StoreError> {
        let position = if from == LogPosition::START {
            StreamPosition::Start
        } else {
            let p = EsdbPosition::from(from);
            StreamPosition::Position(Position {
                commit: p.commit,
                prepare: p.prepare,
            })
        };
        let options = ReadAllOptions::default()
            .position(position)
            .forwards()
            .filter(SubscriptionFilter::on_event_type().exclude_system_events())
            .max_count(max)
            .requires_leader(true);
        let mut stream = self.client.read_all(&options).await.map_err(map_error)?;
        let mut out = Vec::new();
        while let Some(e) = stream.next().await.map_err(map_error)? {
            if let Some(r) = e.event.as_ref() {
                out.push(record_of(r));
            }
        }
        Ok(out)
    }

    pub(crate) async fn has_held_back_events(
        &self,
        _after: LogPosition,
    ) -> Result<bool, StoreError> {
        // The server hands out `$all` only up to its commit point: nothing is held back.
        Ok(false)
    }

    /// The last domain event's position, scanning `$all` backwards past
    /// snapshots and idempotency records.
    pub(crate) async fn head(&self) -> Result<LogPosition, StoreError> {
        let mut from = StreamPosition::End;
        loop {
            let options = ReadAllOptions::default()
                .position(from)
                .backwards()
                .filter(SubscriptionFilter::on_event_type().exclude_system_events())
                .max_count(SCAN_CHUNK)
                .requires_leader(true);
            let mut stream = self.client.read_all(&options).await.map_err(map_error)?;
            let mut seen = 0usize;
            let mut last = None;
            while let Some(e) = stream.next().await.map_err(map_error)? {
                let Some(r) = e.event.as_ref() else { continue };
                seen += 1;
                let r = record_of(r);
                if Some(r.position) == last {
                    continue;
                }
                if decode_record(&r)?.is_some() {
                    return Ok(r.position.into());
                }
                last = Some(r.position);
            }
            match last {
                Some(p) if seen >= SCAN_CHUNK => {
                    from = StreamPosition::Position(Position {
                        commit: p.commit,
                        prepare: p.prepare,
                    });
                }
                _ => return Ok(LogPosition::START),
            }
        }
    }

    /// Everything committed is readable at once (nothing is held back), so
    /// the committed head is the head.
    pub(crate) async fn committed_head(&self) -> Result<LogPosition, StoreError> {
        self.head().await
    }

    /// Counts our domain events by scanning `$all` (EventStoreDB keeps no
    /// count): O(events), meant for tools and tests, not hot paths.
    pub(crate) async fn count(&self) -> Result<u64, StoreError> {
        let (mut n, mut after) = (0u64, LogPosition::START);
        loop {
            let batch = self.read_all(after, SCAN_CHUNK as u32).await?;
            let Some(last) = batch.last() else {
                return Ok(n);
            };
            after = last.position;
            n += batch.len() as u64;
        }
    }

    /// Appends, retrying once when a follower answered `NotLeader`: the
    /// follower wrote nothing, and the client has reconnected to the leader.
    async fn append_raw(
        &self,
        stream: &str,
        state: StreamState,
        events: Vec<EventData>,
    ) -> Result<(), kurrentdb::Error> {
        let options = AppendToStreamOptions::default()
            .stream_state(state)
            .requires_leader(true);
        match self
            .client
            .append_to_stream(stream, &options, events.clone())
            .await
        {
            Err(kurrentdb::Error::NotLeaderException(leader)) => {
                tracing::info!(?leader, "EventStoreDB leader changed; retrying the append");
                self.client
                    .append_to_stream(stream, &options, events)
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    async fn append_record(
        &self,
        stream: &str,
        state: StreamState,
        record: &IdempotencyRecord,
    ) -> Result<(), kurrentdb::Error> {
        let data = EventData::json(record.event_type(), record)
            .map_err(|e| kurrentdb::Error::InternalParsingError(e.to_string()))?
            .id(Uuid::new_v4());
        self.append_raw(stream, state, vec![data]).await
    }

    /// Up to `max` events of `stream` from `revision` on; empty for a missing stream.
    async fn read_stream_records(
        &self,
        stream: &str,
        revision: u64,
        max: u64,
    ) -> Result<Vec<EsdbRecord>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::Position(revision))
            .forwards()
            .max_count(usize::try_from(max).unwrap_or(usize::MAX))
            .requires_leader(true);
        self.collect_stream(stream, &options).await
    }

    async fn last_record(&self, stream: &str) -> Result<Option<EsdbRecord>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1)
            .requires_leader(true);
        Ok(self.collect_stream(stream, &options).await?.pop())
    }

    async fn collect_stream(
        &self,
        stream: &str,
        options: &ReadStreamOptions,
    ) -> Result<Vec<EsdbRecord>, StoreError> {
        let mut read = match self.client.read_stream(stream, options).await {
            Ok(s) => s,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(vec![]),
            Err(e) => return Err(map_error(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(e)) => {
                    if let Some(r) = e.event.as_ref() {
                        out.push(record_of(r));
                    }
                }
                Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => return Ok(out),
                Err(e) => return Err(map_error(e)),
            }
        }
    }
}

/// The client's recorded event as plain data, for the pure decoders.
fn record_of(r: &kurrentdb::RecordedEvent) -> EsdbRecord {
    EsdbRecord {
        stream_id: r.stream_id().to_string(),
        id: r.id,
        revision: r.revision,
        event_type: r.event_type.clone(),
        data: r.data.to_vec(),
        custom_metadata: r.custom_metadata.to_vec(),
        is_json: r.is_json,
        position: EsdbPosition {
            commit: r.position.commit,
            prepare: r.position.prepare,
        },
        created: r.created,
    }
}

/// Client errors as store errors: what a retry may fix is `Unavailable`.
fn map_error(e: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as E;
    match e {
        E::NotLeaderException(leader) => StoreError::Unavailable(format!(
            "EventStoreDB leader changed (new leader {}:{}); retry",
            leader.host, leader.port
        )),
        E::ServerError(_)
        | E::ConnectionClosed
        | E::GrpcConnectionError(_)
        | E::DeadlineExceeded => StoreError::Unavailable(format!("EventStoreDB: {e}")),
        E::AccessDenied => StoreError::Misconfigured(
            "EventStoreDB denied access: the connection's user needs read and write on the \
             aggregate, snapshot and dirtfree-idem streams and read on $all"
                .into(),
        ),
        other => StoreError::Database(format!("EventStoreDB: {other}")),
    }
}

//! Running commands against aggregates stored in the [`EventLog`].
//!
//! This plays the part of cqrs-es's `CqrsFramework` + `PersistedEventStore`,
//! with three differences that matter to us: the outcome carries the events'
//! log positions (read-your-writes), idempotency keys are honoured durably,
//! and snapshots are written from the state the `EventSink` already built, so
//! events are applied exactly once (cqrs-es 0.5.0 applies them twice).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::metadata::EventMetadata;
use crate::store::{
    AppendRequest, EventLog, LogPosition, NewEvent, RecordedEvent, SnapshotWrite, StoreError,
};

/// An aggregate loaded from the log.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// Its state.
    pub aggregate: A,
    /// Sequence of the last event applied (0: the aggregate does not exist yet).
    pub sequence: u64,
    /// Number of the snapshot it was loaded from, or of the last one written.
    pub snapshot_number: u64,
}

/// One event a command appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedEvent {
    /// Sequence in the aggregate's stream.
    pub sequence: u64,
    /// Event type.
    pub event_type: String,
    /// Place in the global log.
    pub position: LogPosition,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// The events appended, in order (empty: the command changed nothing).
    pub events: Vec<CommittedEvent>,
    /// True when this is the stored outcome of an earlier identical request.
    #[serde(default)]
    pub replayed: bool,
}

impl CommandOutcome {
    /// Position of the last event, for read-your-writes.
    pub fn last_position(&self) -> Option<LogPosition> {
        self.events.last().map(|e| e.position)
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command (a business rule or invalid input).
    #[error(transparent)]
    Rejected(E),
    /// Another command changed the aggregate first; nothing was written.
    #[error("{aggregate_type} {aggregate_id} was changed by another command; reload and retry")]
    Conflict {
        /// Aggregate type.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
    },
    /// The idempotency key was already used for a different aggregate.
    #[error("idempotency key {key:?} was already used for {aggregate_type} {aggregate_id}")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// Aggregate type it was used with.
        aggregate_type: String,
        /// Aggregate id it was used with.
        aggregate_id: String,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A point in an aggregate's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryPoint {
    /// After the event with this sequence.
    Version(u64),
    /// After every event recorded at or before this instant.
    Time(DateTime<Utc>),
}

/// Loads and changes aggregates of type `A`. Cheap to clone.
pub struct AggregateStore<A: Aggregate> {
    log: EventLog,
    services: Arc<A::Services>,
    snapshot_every: Option<u64>,
    upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    _a: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for AggregateStore<A> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            services: Arc::clone(&self.services),
            snapshot_every: self.snapshot_every,
            upcasters: Arc::clone(&self.upcasters),
            _a: PhantomData,
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for AggregateStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateStore")
            .field("aggregate", &A::TYPE)
            .field("snapshot_every", &self.snapshot_every)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> AggregateStore<A> {
    /// A store without snapshots or upcasters.
    pub fn new(log: EventLog, services: A::Services) -> Self {
        Self {
            log,
            services: Arc::new(services),
            snapshot_every: None,
            upcasters: Arc::new(Vec::new()),
            _a: PhantomData,
        }
    }

    /// Writes a snapshot every `every` events (0 disables).
    pub fn with_snapshots(mut self, every: u64) -> Self {
        self.snapshot_every = (every > 0).then_some(every);
        self
    }

    /// Upcasters applied to stored events before they are deserialised.
    pub fn with_upcasters(mut self, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// The log underneath.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Turns a stored event into `A::Event`, upcasting first.
    ///
    /// # Errors
    /// [`StoreError::CorruptEvent`] naming the event when it does not deserialise.
    pub fn decode(&self, e: RecordedEvent) -> Result<A::Event, StoreError> {
        let (aggregate_id, sequence) = (e.aggregate_id.clone(), e.sequence);
        let serialized = crate::store::to_serialized_event(e);
        let serialized: SerializedEvent = self.upcasters.iter().fold(serialized, |ev, u| {
            if u.can_upcast(&ev.event_type, &ev.event_version) {
                u.upcast(ev)
            } else {
                ev
            }
        });
        serde_json::from_value(serialized.payload).map_err(|err| StoreError::CorruptEvent {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id,
            sequence,
            event_type: serialized.event_type,
            reason: err.to_string(),
        })
    }

    /// Loads the current state: the snapshot (if any) plus later events.
    ///
    /// # Errors
    /// [`StoreError::CorruptEvent`] for an event that does not deserialise;
    /// [`StoreError::Unavailable`] / [`StoreError::Database`].
    pub async fn load(&self, aggregate_id: &str) -> Result<Loaded<A>, StoreError> {
        let mut loaded = Loaded {
            aggregate: A::default(),
            sequence: 0,
            snapshot_number: 0,
        };
        if self.snapshot_every.is_some() {
            if let Some(s) = self.log.load_snapshot(A::TYPE, aggregate_id).await? {
                // A snapshot of an older aggregate shape is ignored: replay instead.
                match serde_json::from_value::<A>(s.payload) {
                    Ok(a) => {
                        loaded = Loaded {
                            aggregate: a,
                            sequence: s.last_sequence,
                            snapshot_number: s.snapshot_number,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(aggregate = A::TYPE, aggregate_id, error = %e, "ignoring unreadable snapshot")
                    }
                }
            }
        }
        for e in self
            .log
            .load_stream(A::TYPE, aggregate_id, loaded.sequence)
            .await?
        {
            loaded.sequence = e.sequence;
            let event = self.decode(e)?;
            loaded.aggregate.apply(event);
        }
        Ok(loaded)
    }

    /// The state as it was at a point in its history, by replaying from the start.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub async fn load_at(
        &self,
        aggregate_id: &str,
        at: HistoryPoint,
    ) -> Result<Loaded<A>, StoreError> {
        let mut loaded = Loaded {
            aggregate: A::default(),
            sequence: 0,
            snapshot_number: 0,
        };
        for e in self.log.load_stream(A::TYPE, aggregate_id, 0).await? {
            let include = match at {
                HistoryPoint::Version(v) => e.sequence <= v,
                HistoryPoint::Time(t) => e.recorded_at <= t,
            };
            if !include {
                break;
            }
            loaded.sequence = e.sequence;
            let event = self.decode(e)?;
            loaded.aggregate.apply(event);
        }
        Ok(loaded)
    }

    /// Runs one command: load, decide, append. Nothing is written when the
    /// aggregate refuses or another command got there first.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] from the aggregate; [`CommandError::Conflict`]
    /// when the stream moved meanwhile; [`CommandError::IdempotencyKeyReused`];
    /// [`CommandError::Store`].
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        let started = std::time::Instant::now();
        // Boxed: inline, the measured future doubled every caller's future and overflowed
        // a test thread's stack in debug builds (the demo seed).
        let result = Box::pin(self.decide_and_append(aggregate_id, command, metadata)).await;
        // Labels are the aggregate type and the outcome's kind only: never an id.
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CommandError::Rejected(_) | CommandError::IdempotencyKeyReused { .. }) => {
                "rejected"
            }
            Err(CommandError::Conflict { .. }) => "conflict",
            Err(CommandError::Store(_)) => "error",
        };
        metrics::counter!("dirtfree_commands_total", "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("dirtfree_command_duration_seconds", "aggregate" => A::TYPE, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// [`Self::execute`] without its measurement.
    async fn decide_and_append(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<CommandOutcome, CommandError<A::Error>> {
        if let Some(key) = &metadata.idempotency_key {
            if let Some(prior) = self.prior_outcome(key, aggregate_id).await? {
                return Ok(prior);
            }
        }
        let mut loaded = self.load(aggregate_id).await?;
        let sink = EventSink::<A>::default();
        if let Err(refusal) = loaded
            .aggregate
            .handle(command, &self.services, &sink)
            .await
        {
            // A concurrent retry with the same key may have committed between
            // the lookup above and the load ("already exists"): its outcome is
            // this request's too.
            if let Some(key) = &metadata.idempotency_key {
                if let Some(prior) = self.prior_outcome(key, aggregate_id).await? {
                    return Ok(prior);
                }
            }
            return Err(CommandError::Rejected(refusal));
        }
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok(CommandOutcome {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: aggregate_id.to_string(),
                events: vec![],
                replayed: false,
            });
        }

        let meta_json = serde_json::to_value(metadata.to_map())
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let mut new_events = Vec::with_capacity(events.len());
        for e in &events {
            new_events.push(NewEvent {
                event_type: e.event_type(),
                event_version: e.event_version(),
                payload: storable_value(e)?,
                metadata: meta_json.clone(),
            });
        }
        let new_sequence = loaded.sequence + events.len() as u64;
        let snapshot = match self.snapshot_every {
            // The sink already applied the events to `loaded.aggregate`: it is
            // the state at `new_sequence`, to be stored as it is.
            Some(k) if loaded.sequence / k != new_sequence / k => Some(SnapshotWrite {
                payload: storable_value(&loaded.aggregate)?,
                last_sequence: new_sequence,
                snapshot_number: loaded.snapshot_number + 1,
            }),
            _ => None,
        };
        let event_types: Vec<String> = new_events.iter().map(|e| e.event_type.clone()).collect();
        let summary = serde_json::json!({ "event_types": event_types });
        let result = self
            .log
            .append(AppendRequest {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: aggregate_id.to_string(),
                expected_sequence: loaded.sequence,
                events: new_events,
                snapshot,
                idempotency: metadata.idempotency_key.clone().map(|k| (k, summary)),
            })
            .await;
        match result {
            Ok(appended) => Ok(CommandOutcome {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: aggregate_id.to_string(),
                events: appended
                    .positions
                    .into_iter()
                    .zip(event_types)
                    .enumerate()
                    .map(|(i, (position, event_type))| CommittedEvent {
                        sequence: loaded.sequence + 1 + i as u64,
                        event_type,
                        position,
                    })
                    .collect(),
                replayed: false,
            }),
            Err(StoreError::Conflict { .. }) | Err(StoreError::DuplicateIdempotencyKey) => {
                // A concurrent request with the same key may have won: that is
                // this request's outcome, not a conflict.
                if let Some(key) = &metadata.idempotency_key {
                    if let Some(prior) = self.prior_outcome(key, aggregate_id).await? {
                        return Ok(prior);
                    }
                }
                Err(CommandError::Conflict {
                    aggregate_type: A::TYPE.to_string(),
                    aggregate_id: aggregate_id.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a command, retrying on [`CommandError::Conflict`] up to `attempts`
    /// times. Only for commands whose decision is safe to re-take on fresh state.
    ///
    /// # Errors
    /// As [`Self::execute`]; `Conflict` once the attempts are used up.
    pub async fn execute_retrying(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        attempts: u32,
    ) -> Result<CommandOutcome, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.execute(aggregate_id, command.clone(), metadata).await {
                Err(CommandError::Conflict { .. }) if attempt < attempts.max(1) => {
                    // Jittered back-off so that contenders spread out.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 5;
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 2 + jitter))
                        .await;
                }
                other => return other,
            }
        }
    }

    async fn prior_outcome(
        &self,
        key: &str,
        aggregate_id: &str,
    ) -> Result<Option<CommandOutcome>, CommandError<A::Error>> {
        let Some(stored) = self.log.find_idempotent(key).await? else {
            return Ok(None);
        };
        if stored.aggregate_type != A::TYPE || stored.aggregate_id != aggregate_id {
            return Err(CommandError::IdempotencyKeyReused {
                key: key.to_string(),
                aggregate_type: stored.aggregate_type,
                aggregate_id: stored.aggregate_id,
            });
        }
        let types: Vec<String> = stored
            .outcome
            .get("event_types")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        // Sequences are recovered from the stream itself, by position.
        let stream = self.log.load_stream(A::TYPE, aggregate_id, 0).await?;
        let events = stored
            .positions
            .iter()
            .enumerate()
            .map(|(i, p)| CommittedEvent {
                sequence: stream
                    .iter()
                    .find(|e| e.position == *p)
                    .map_or(0, |e| e.sequence),
                event_type: types.get(i).cloned().unwrap_or_default(),
                position: *p,
            })
            .collect();
        Ok(Some(CommandOutcome {
            aggregate_type: stored.aggregate_type,
            aggregate_id: stored.aggregate_id,
            events,
            replayed: true,
        }))
    }
}

/// `v` as JSON that every engine can hold (see [`crate::store::storable`]).
fn storable_value(v: &impl serde::Serialize) -> Result<serde_json::Value, StoreError> {
    let json = serde_json::to_value(v).map_err(|e| StoreError::Database(e.to_string()))?;
    Ok(if crate::store::holds_nul(&json) {
        crate::store::storable_json(&json)
    } else {
        json
    })
}

//! cqrs-es's repository trait on our log, so the stock cqrs-es
//! `PersistedEventStore` (and anything else written against the trait) runs
//! unchanged on either engine.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;

use super::{AppendRequest, EventLog, NewEvent, RecordedEvent, SnapshotWrite, StoreError};

impl From<StoreError> for PersistenceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } | StoreError::DuplicateIdempotencyKey => {
                PersistenceError::OptimisticLockError
            }
            StoreError::Unavailable(_) => PersistenceError::ConnectionError(Box::new(e)),
            StoreError::CorruptEvent { .. } => PersistenceError::DeserializationError(Box::new(e)),
            other => PersistenceError::UnknownError(Box::new(other)),
        }
    }
}

pub(crate) fn to_serialized(e: RecordedEvent) -> SerializedEvent {
    SerializedEvent::new(
        e.aggregate_id,
        e.sequence as usize,
        e.aggregate_type,
        e.event_type,
        e.event_version,
        e.payload,
        e.metadata,
    )
}

impl PersistedEventRepository for EventLog {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .load_stream(A::TYPE, aggregate_id, 0)
            .await?
            .into_iter()
            .map(to_serialized)
            .collect())
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self
            .load_stream(A::TYPE, aggregate_id, last_sequence as u64)
            .await?
            .into_iter()
            .map(to_serialized)
            .collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(self
            .load_snapshot(A::TYPE, aggregate_id)
            .await?
            .map(|s| SerializedSnapshot {
                aggregate_id: aggregate_id.to_string(),
                aggregate: s.payload,
                current_sequence: s.last_sequence as usize,
                current_snapshot: s.snapshot_number as usize,
            }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let expected_sequence = first.sequence as u64 - 1;
        let last_sequence = expected_sequence + events.len() as u64;
        self.append(AppendRequest {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: first.aggregate_id.clone(),
            expected_sequence,
            events: events
                .iter()
                .map(|e| NewEvent {
                    event_type: e.event_type.clone(),
                    event_version: e.event_version.clone(),
                    payload: e.payload.clone(),
                    metadata: e.metadata.clone(),
                })
                .collect(),
            snapshot: snapshot_update.map(|(_, payload, n)| SnapshotWrite {
                payload,
                last_sequence,
                snapshot_number: n as u64,
            }),
            idempotency: None,
        })
        .await?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.load_stream(A::TYPE, aggregate_id, 0).await?;
        Ok(feed(events.into_iter().map(to_serialized).collect()))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        // Every stream of this aggregate type, in global order.
        let log = self.clone();
        let (mut feed, stream) = ReplayStream::new(256);
        tokio::spawn(async move {
            let mut after = super::LogPosition::START;
            loop {
                match log.read_all(after, 1000).await {
                    Ok(batch) if batch.is_empty() => return,
                    Ok(batch) => {
                        for e in batch {
                            after = e.position;
                            if e.aggregate_type == A::TYPE
                                && feed.push(Ok(to_serialized(e))).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = feed.push(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}

fn feed(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for e in events {
            if feed.push(Ok(e)).await.is_err() {
                return;
            }
        }
    });
    stream
}

//! A counter aggregate: small enough to reason about, enough to exercise
//! concurrency, snapshots and upcasting.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The counter's state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Sum of all additions.
    pub value: i64,
    /// Number of events applied: catches double application.
    pub applied: u64,
}

/// Commands.
#[derive(Debug, Clone)]
pub enum CounterCommand {
    /// Add `n` (must be positive).
    Add(i64),
    /// Add 1, `n` times, as `n` events.
    AddMany(u32),
}

/// Events (version 2.0; version 1.0 was `Incremented { by }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterEvent {
    /// The counter grew.
    Added {
        /// By how much.
        amount: i64,
    },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "2.0".into()
    }
}

/// Refusals.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CounterError {
    /// Non-positive amount.
    #[error("amount must be positive")]
    NotPositive,
}

impl Aggregate for Counter {
    const TYPE: &'static str = "Counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CounterCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CounterError> {
        match command {
            CounterCommand::Add(n) if n <= 0 => Err(CounterError::NotPositive),
            CounterCommand::Add(n) => {
                sink.write(CounterEvent::Added { amount: n }, self).await;
                Ok(())
            }
            CounterCommand::AddMany(k) => {
                for _ in 0..k {
                    sink.write(CounterEvent::Added { amount: 1 }, self).await;
                }
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: CounterEvent) {
        match event {
            CounterEvent::Added { amount } => {
                self.value += amount;
                self.applied += 1;
            }
        }
    }
}

/// Upcasts `Incremented { by }` (1.0) to `Added { amount }` (2.0).
#[derive(Debug)]
pub struct IncrementedV1;

impl EventUpcaster for IncrementedV1 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "Incremented" && event_version == "1.0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        let by = event
            .payload
            .pointer("/Incremented/by")
            .cloned()
            .unwrap_or_default();
        event.payload = serde_json::json!({ "Added": { "amount": by } });
        event.event_type = "Added".into();
        event.event_version = "2.0".into();
        event
    }
}

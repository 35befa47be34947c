//! Runs projections: each reads the global log from its checkpoint and
//! updates its tables *and* its checkpoint in one transaction, so an event's
//! effect is applied exactly once, across crashes and across instances.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use event_log::{EventLog, LogPosition, RecordedEvent, StoreError};
use serde::Serialize;
use tokio::sync::watch;

use crate::db::{DbError, JsonRow, Param, ReadDb, ReadTx};
use crate::parked::{self, ParkedEvent, Stream};
use crate::projection::{ApplyContext, Decoded, Projection, ProjectionError, Slot};

mod apply;
mod live;
mod parking;
mod rebuild;
mod schema;

use apply::handler_error;

/// Why a projection run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read-model database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A handler refused an event: the projection stops there.
    #[error(transparent)]
    Handler(Box<HandlerFailure>),
    /// No projection by that name.
    #[error("unknown projection {0:?}")]
    Unknown(String),
    /// An operator's request was refused (e.g. a discard with nothing parked or no reason).
    #[error("{0}")]
    Refused(String),
}

/// Where and why a handler failed.
#[derive(Debug, thiserror::Error)]
#[error("projection {projection} failed on {aggregate_type} {aggregate_id} #{sequence} ({event_type}) at {position}: {error}")]
pub struct HandlerFailure {
    /// Projection.
    pub projection: String,
    /// Where.
    pub position: LogPosition,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Sequence.
    pub sequence: u64,
    /// Event type.
    pub event_type: String,
    /// The handler's error.
    pub error: String,
}

/// A projection's state, for `/api/health/detailed` and `replay-tools status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatus {
    /// Name.
    pub name: String,
    /// Version of its code.
    pub version: i64,
    /// Checkpoint (`tx.seq`).
    pub position: String,
    /// Events applied since it was built.
    pub events_applied: i64,
    /// `running`, `degraded` (running, with events parked) or `failed`
    /// (stopped: the database was unreachable, or a rebuild failed).
    pub state: String,
    /// The last error, when failed.
    pub last_error: Option<String>,
    /// The position of the event it failed on.
    pub error_position: Option<String>,
    /// Whether it has applied everything readable in the log.
    pub caught_up: bool,
    /// Events parked because the handler refused them (or an earlier event of
    /// their aggregate): see [`crate::parked`].
    pub parked: i64,
    /// The earliest parked event's position.
    pub parked_position: Option<String>,
    /// The error of the earliest parked event that failed.
    pub parked_error: Option<String>,
}

/// What [`ProjectionRunner::retry_parked`] did with one aggregate's parked events.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetriedStream {
    /// Projection.
    pub projection: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Events applied (and no longer parked), or the error they failed with again.
    pub outcome: Result<u64, String>,
}

/// Rows of a projection's tables, by table.
pub type Dump = BTreeMap<String, Vec<String>>;

/// Decides, from the live and the shadow dump, whether a rebuild swaps.
pub type BeforeSwap<'a> = dyn Fn(&Dump, &Dump) -> bool + Send + Sync + 'a;

/// [`BeforeSwap`] for several projections: also gets the projection's name.
pub type CompareBeforeSwap<'a> = dyn Fn(&str, &Dump, &Dump) -> bool + Send + Sync + 'a;

/// One staging lane's database and the projections it holds.
type StagedLane = (ReadTx, Vec<Arc<dyn Projection>>);

/// Events per read while a rebuild stages.
const STAGING_BATCH: u32 = 10_000;

/// Runs a set of projections over one log.
#[derive(Clone)]
pub struct ProjectionRunner {
    log: EventLog,
    db: ReadDb,
    tz: Tz,
    projections: Vec<Arc<dyn Projection>>,
    batch: u32,
    /// Positions operators discarded, per projection (see [`Self::discarded`]).
    discarded: Arc<std::sync::Mutex<Option<Arc<Discarded>>>>,
}

/// Log positions each projection must never apply: an operator discarded them
/// (`ParkedEventsDiscarded` in the projection's `ReadModel` stream).
type Discarded = BTreeMap<String, BTreeSet<LogPosition>>;

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field(
                "projections",
                &self
                    .projections
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn checkpoint_name(p: &dyn Projection, slot: Slot) -> String {
    match slot {
        Slot::Live => p.name().to_string(),
        Slot::Shadow => format!("{}#shadow", p.name()),
    }
}

/// The advisory lock key of [`ProjectionRunner::upgrade`].
const UPGRADE_LOCK: i64 = 0x6469_7274_6672_6565; // "dirtfree"

fn int(r: &JsonRow, k: &str) -> i64 {
    r.get(k).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

impl ProjectionRunner {
    /// All of the CRM's projections over `log`, dating in `tz`.
    pub fn new(log: EventLog, tz: Tz) -> Self {
        Self::with_projections(log, tz, crate::crm::all())
    }

    /// A chosen set of projections.
    pub fn with_projections(log: EventLog, tz: Tz, projections: Vec<Arc<dyn Projection>>) -> Self {
        let db = ReadDb::of(&log);
        Self {
            log,
            db,
            tz,
            projections,
            batch: 500,
            discarded: Arc::default(),
        }
    }

    /// Events per transaction during catch-up.
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The read-model database (for queries).
    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    /// The log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Projection names.
    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    fn find(&self, name: &str) -> Result<Arc<dyn Projection>, RunError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| RunError::Unknown(name.to_string()))
    }

    /// The positions operators discarded, read from the `ReadModel` streams once
    /// and kept (a discard through this runner refreshes them). A rebuild, or a
    /// shadow rebuild after a version change, skips them as the live
    /// read model did, instead of failing or parking on them again.
    async fn discarded(&self) -> Result<Arc<Discarded>, RunError> {
        use domain::read_model::ReadModelEvent;
        let cached = self
            .discarded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(d) = cached {
            return Ok(d);
        }
        let mut all = Discarded::new();
        for p in &self.projections {
            let stream = self
                .log
                .load_stream(domain::read_model::AGGREGATE_TYPE, p.name(), 0)
                .await?;
            let positions: BTreeSet<LogPosition> = stream
                .into_iter()
                .filter_map(|e| serde_json::from_value(e.payload).ok())
                .flat_map(|e| match e {
                    ReadModelEvent::ParkedEventsDiscarded { positions, .. } => positions,
                })
                .filter_map(|p| p.parse().ok())
                .collect();
            if !positions.is_empty() {
                all.insert(p.name().to_string(), positions);
            }
        }
        let all = Arc::new(all);
        *self
            .discarded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&all));
        Ok(all)
    }

    /// Queries the read models (GraphQL, tools).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<JsonRow>, DbError> {
        self.db.query(sql, params).await
    }
}

/// Which part of a projection's DDL to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ddl {
    All,
    Tables,
    Indexes,
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos & 0xffff_ffff_ffff)
}

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

    async fn table_exists(&self, tx: &mut ReadTx, table: &str) -> Result<bool, DbError> {
        let sql = match tx {
            ReadTx::Postgres(_) => "SELECT 1 AS x WHERE to_regclass($1) IS NOT NULL",
            ReadTx::Sqlite(_) | ReadTx::Memory(_) => {
                "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
        };
        Ok(!tx.query(sql, &[table.into()]).await?.is_empty())
    }

    async fn create_tables(
        &self,
        tx: &mut ReadTx,
        p: &dyn Projection,
        slot: Slot,
    ) -> Result<(), DbError> {
        self.create_schema(tx, p, slot, Ddl::All).await
    }

    /// Runs a projection's DDL: all of it, only the tables (a bulk load
    /// follows, which is faster without secondary indexes to maintain), or
    /// only the secondary indexes (after the load).
    async fn create_schema(
        &self,
        tx: &mut ReadTx,
        p: &dyn Projection,
        slot: Slot,
        which: Ddl,
    ) -> Result<(), DbError> {
        let gen = uuid_suffix();
        for ddl in p.schema() {
            let is_index = ddl
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE INDEX")
                || ddl
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("CREATE UNIQUE INDEX");
            let wanted = match which {
                Ddl::All => true,
                Ddl::Tables => !is_index,
                Ddl::Indexes => is_index,
            };
            if wanted {
                let sql = slot.sql(p.tables(), ddl).replace("{gen}", &gen);
                tx.execute(&sql, &[]).await?;
            }
        }
        Ok(())
    }

    async fn drop_tables(
        &self,
        tx: &mut ReadTx,
        p: &dyn Projection,
        slot: Slot,
    ) -> Result<(), DbError> {
        for t in p.tables() {
            tx.execute(&format!("DROP TABLE IF EXISTS {}", slot.table(t)), &[])
                .await?;
        }
        Ok(())
    }

    /// Creates missing tables and checkpoints. A projection whose stored version is older
    /// than this code's keeps its tables serving: [`Self::upgrade`] rebuilds it in a shadow
    /// and swaps. One whose stored version is newer belongs to a newer instance (a rolling
    /// deploy): this instance leaves it alone ([`Self::owns`]).
    ///
    /// # Errors
    /// [`RunError::Db`].
    pub async fn prepare(&self) -> Result<(), RunError> {
        for p in &self.projections {
            let mut tx = self.db.begin().await?;
            let rows = tx
                .query(
                    "SELECT version FROM projection_checkpoints WHERE name = $1",
                    &[p.name().into()],
                )
                .await?;
            let stored = rows.first().map(|r| int(r, "version"));
            let missing = {
                let mut any = false;
                for t in p.tables() {
                    if !self.table_exists(&mut tx, &Slot::Live.table(t)).await? {
                        any = true;
                    }
                }
                any
            };
            match stored {
                // Also when the new version adds a table: the old ones keep serving.
                Some(v) if v < p.version() => {
                    tracing::info!(
                        projection = p.name(),
                        from = v,
                        to = p.version(),
                        "projection changed: rebuilding it in a shadow while the old tables serve"
                    );
                }
                Some(v) if v > p.version() => {
                    tracing::warn!(projection = p.name(), stored = v, mine = p.version(), "projection belongs to a newer version: this instance leaves it to that one");
                }
                Some(v) if v == p.version() && !missing => {}
                _ => {
                    if stored.is_some() {
                        tracing::info!(
                            projection = p.name(),
                            "projection tables missing: rebuilding from the start"
                        );
                    }
                    self.drop_tables(&mut tx, p.as_ref(), Slot::Live).await?;
                    self.create_tables(&mut tx, p.as_ref(), Slot::Live).await?;
                    parked::clear(&mut tx, p.name()).await?;
                    tx.execute(
                        "DELETE FROM projection_checkpoints WHERE name = $1",
                        &[p.name().into()],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO projection_checkpoints (name, version) VALUES ($1, $2)",
                        &[p.name().into(), p.version().into()],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// The stored version of each projection's live checkpoint.
    async fn stored_versions(&self) -> Result<BTreeMap<String, i64>, RunError> {
        let rows = self
            .db
            .query("SELECT name, version FROM projection_checkpoints", &[])
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name = r.get("name").and_then(|v| v.as_str())?;
                Some((name.to_string(), int(r, "version")))
            })
            .collect())
    }

    /// Whether this instance runs `p`: its checkpoint is at this code's version. During a
    /// rolling deploy the other version's instance runs it, and this one must not write
    /// tables of another shape nor move their checkpoint.
    fn owns(p: &dyn Projection, stored: Option<i64>) -> bool {
        stored == Some(p.version())
    }

    /// An operator's retry or discard runs only on the version whose handlers built the
    /// tables (during a rolling deploy, run it with the binary of the version that owns it).
    async fn refuse_unless_owned(&self, p: &dyn Projection) -> Result<(), RunError> {
        let stored = self.stored_versions().await?.get(p.name()).copied();
        if Self::owns(p, stored) {
            return Ok(());
        }
        Err(RunError::Refused(format!(
            "projection {} is at version {} and this binary's is {}: use the binary of that version",
            p.name(),
            stored.map_or_else(|| "none".to_string(), |v| v.to_string()),
            p.version()
        )))
    }

    /// The projections whose stored version is older than this code's.
    ///
    /// # Errors
    /// [`RunError::Db`].
    pub async fn outdated(&self) -> Result<Vec<&'static str>, RunError> {
        let stored = self.stored_versions().await?;
        Ok(self
            .projections
            .iter()
            .filter(|p| stored.get(p.name()).is_some_and(|v| *v < p.version()))
            .map(|p| p.name())
            .collect())
    }

    /// Rebuilds every outdated projection ([`Self::outdated`]) in shadow tables and swaps
    /// each in once caught up, as `replay-tools rebuild` does: the old tables serve (and the
    /// old version's instances keep them current) until the swap. From the swap on, the
    /// checkpoint carries this version, so older instances stop writing it. Returns the
    /// projections upgraded.
    ///
    /// # Errors
    /// [`RunError`]; a projection not yet swapped keeps its old tables.
    pub async fn upgrade(
        &self,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Vec<String>, RunError> {
        if self.outdated().await?.is_empty() {
            return Ok(Vec::new());
        }
        // Several new instances starting at once take turns (each would rebuild the same
        // shadow tables); the later ones find the work done.
        let lock = self.db.exclusive(UPGRADE_LOCK).await?;
        let result = async {
            let names = self.outdated().await?;
            if names.is_empty() {
                return Ok(Vec::new());
            }
            tracing::info!(projections = ?names, "rebuilding changed projections in shadow tables");
            let done = self.rebuild_many(&names, progress, None).await?;
            Ok(done.into_iter().map(|(n, _)| n).collect())
        }
        .await;
        lock.release().await?;
        result
    }

    /// Applies at most one batch to one projection; returns how many events it applied.
    async fn step(&self, p: &dyn Projection, slot: Slot) -> Result<usize, RunError> {
        let name = checkpoint_name(p, slot);
        let mut tx = self.db.begin_derived().await?;
        let lock = match tx {
            // The row lock makes concurrent runners (other instances) take turns:
            // the second one reads the checkpoint the first one committed.
            ReadTx::Postgres(_) => {
                "SELECT tx, seq, version FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
            }
            ReadTx::Sqlite(_) | ReadTx::Memory(_) => {
                "SELECT tx, seq, version FROM projection_checkpoints WHERE name = $1"
            }
        };
        let rows = tx.query(lock, &[name.clone().into()]).await?;
        let Some(row) = rows.first() else {
            return Ok(0);
        };
        if !Self::owns(p, Some(int(row, "version"))) {
            return Ok(0);
        }
        let after = LogPosition {
            tx: int(row, "tx") as u64,
            seq: int(row, "seq") as u64,
        };
        let events = Decoded::all(self.log.read_all(after, self.batch).await?);
        let Some(last) = events.last().map(|e| e.position) else {
            tx.commit().await?;
            return Ok(0);
        };
        let ctx = ApplyContext { tz: self.tz, slot };
        let share = match slot {
            // Live: a refused event is parked with its aggregate's later events.
            Slot::Live => {
                let mut streams = parked_from_start(
                    parked::streams(&mut tx)
                        .await?
                        .remove(p.name())
                        .unwrap_or_default(),
                );
                self.apply_share(&mut tx, p, ctx, &events, after, Some(&mut streams))
                    .await
            }
            // A rebuild does not park: the failure fails it (nothing half-built swaps in).
            Slot::Shadow => {
                self.apply_share(&mut tx, p, ctx, &events, after, None)
                    .await
            }
        };
        let share = match share {
            Ok(share) => share,
            Err(run_error) => {
                drop(tx);
                if let RunError::Handler(h) = &run_error {
                    self.record_failure(&name, h.position, &run_error).await?;
                }
                return Err(run_error);
            }
        };
        tx.execute(
            "UPDATE projection_checkpoints SET tx = $2, seq = $3, events_applied = events_applied + $4,
             state = 'running', last_error = NULL, error_position = NULL WHERE name = $1",
            &[name.into(), (last.tx as i64).into(), (last.seq as i64).into(), share.applied.into()],
        )
        .await?;
        tx.commit().await?;
        report_parked(&share.newly_parked);
        Ok(events.len())
    }

    /// Applies the events after `after` to `p` inside `tx`, under a savepoint.
    ///
    /// With `parking` (the live tables): an event the handler refuses, for a
    /// reason other than the database being unreachable, is parked together
    /// with every later event of its aggregate (and of aggregates already in
    /// `parking`), and the share is re-run without them. Each re-run parks one
    /// more aggregate, so there are at most as many as poisoned aggregates.
    /// Without `parking`, the first refusal is the error.
    ///
    /// # Errors
    /// [`RunError::Handler`] (nothing of the share applied), [`RunError::Db`].
    async fn apply_share(
        &self,
        tx: &mut ReadTx,
        p: &dyn Projection,
        ctx: ApplyContext,
        events: &[Decoded],
        after: LogPosition,
        mut parking: Option<&mut BTreeMap<Stream, LogPosition>>,
    ) -> Result<Share, RunError> {
        let mut errors: BTreeMap<LogPosition, String> = BTreeMap::new();
        let mut newly_parked = Vec::new();
        let discarded = self.discarded().await?;
        let skip = discarded.get(p.name());
        loop {
            tx.execute("SAVEPOINT projection_step", &[]).await?;
            let mut applied = 0i64;
            let mut refused: Option<Result<(&Decoded, ProjectionError), DbError>> = None;
            let unskipped = |e: &&Decoded| !skip.is_some_and(|s| s.contains(&e.position));
            for e in events
                .iter()
                .filter(|e| e.position > after)
                .filter(unskipped)
            {
                if let Some(streams) = parking.as_deref() {
                    // Parked from its first refused event on (earlier ones applied).
                    let from = streams.get(&(e.aggregate_type.clone(), e.aggregate_id.clone()));
                    if from.is_some_and(|from| e.position >= *from) {
                        let error = errors.get(&e.position).map(String::as_str);
                        if let Err(db) = parked::park(tx, p.name(), e, error).await {
                            refused = Some(Err(db));
                            break;
                        }
                        continue;
                    }
                }
                match p.apply(tx, ctx, e).await {
                    Ok(()) => applied += 1,
                    Err(err) => {
                        refused = Some(Ok((e, err)));
                        break;
                    }
                }
            }
            let Some(refused) = refused else {
                tx.execute("RELEASE SAVEPOINT projection_step", &[]).await?;
                return Ok(Share {
                    applied,
                    newly_parked,
                });
            };
            tx.execute("ROLLBACK TO SAVEPOINT projection_step", &[])
                .await?;
            tx.execute("RELEASE SAVEPOINT projection_step", &[]).await?;
            let (e, err) = refused?;
            let failure = handler_error(p.name(), e, &err);
            match parking.as_deref_mut() {
                // Only an event that will fail the same way again is parked; a
                // deadlock, a timeout or a full disk stops the projection, which
                // retries with back-off. So do too many poisoned aggregates at once:
                // that is a broken handler, not bad data.
                Some(streams) if err.is_poison() && newly_parked.len() < MAX_NEWLY_PARKED => {
                    streams.insert(
                        (e.aggregate_type.clone(), e.aggregate_id.clone()),
                        e.position,
                    );
                    errors.insert(e.position, err.to_string());
                    newly_parked.push(failure);
                }
                _ => return Err(failure),
            }
        }
    }

    async fn record_failure(
        &self,
        name: &str,
        position: LogPosition,
        e: &RunError,
    ) -> Result<(), DbError> {
        tracing::error!(projection = name, %position, error = %e, "projection stopped on an event");
        self.db
            .execute(
                "UPDATE projection_checkpoints SET state = 'failed', last_error = $2, error_position = $3 WHERE name = $1",
                &[name.into(), e.to_string().into(), position.to_string().into()],
            )
            .await
            .map(|_| ())
    }

    /// Applies everything readable now to one projection; returns the count.
    ///
    /// # Errors
    /// The first [`RunError`]; the projection's checkpoint stays before the failing event.
    pub async fn catch_up(&self, name: &str) -> Result<u64, RunError> {
        let p = self.find(name)?;
        // Everything committed before the call, including events an older
        // open transaction still holds back from readers.
        let target = self.log.committed_head().await?;
        if !Self::owns(p.as_ref(), self.stored_versions().await?.get(name).copied()) {
            // Another version's instance runs it (or an upgrade is pending): wait a while for
            // that one to get there, as a caller reading its own writes expects.
            self.wait_for_projection(name, target, Duration::from_secs(5))
                .await?;
            return Ok(0);
        }
        let mut total = 0u64;
        loop {
            let n = self.step(p.as_ref(), Slot::Live).await?;
            total += n as u64;
            if n == 0 {
                if self.checkpoint(p.as_ref()).await? >= target
                    || !Self::owns(p.as_ref(), self.stored_versions().await?.get(name).copied())
                {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    async fn checkpoint(&self, p: &dyn Projection) -> Result<LogPosition, RunError> {
        let rows = self
            .db
            .query(
                "SELECT tx, seq FROM projection_checkpoints WHERE name = $1",
                &[p.name().into()],
            )
            .await?;
        Ok(rows.first().map_or(LogPosition::START, |r| LogPosition {
            tx: int(r, "tx") as u64,
            seq: int(r, "seq") as u64,
        }))
    }

    /// Catches every projection up; failures are returned after all were tried.
    ///
    /// # Errors
    /// The first projection's failure.
    pub async fn catch_up_all(&self) -> Result<u64, RunError> {
        let mut total = 0;
        let mut first_error = None;
        for name in self.names() {
            match self.catch_up(name).await {
                Ok(n) => total += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    }

    /// Applies at most one batch to every projection of `ps` in one
    /// transaction: one read of the log, one commit, instead of one of each per
    /// projection. Each projection's share runs under a savepoint, so a handler
    /// that fails rolls back only its own projection, which is returned (with
    /// its error, already recorded) for the caller to take out of the group;
    /// the others' work commits. Returns the events read and the failures.
    ///
    /// # Errors
    /// [`RunError`] when the database or the log fails (nothing is applied).
    async fn step_group(
        &self,
        ps: &[Arc<dyn Projection>],
    ) -> Result<(usize, Vec<(Arc<dyn Projection>, RunError)>), RunError> {
        if ps.is_empty() {
            return Ok((0, Vec::new()));
        }
        let mut tx = self.db.begin_derived().await?;
        let marks: Vec<String> = (1..=ps.len()).map(|i| format!("${i}")).collect();
        let names: Vec<Param> = ps.iter().map(|p| p.name().into()).collect();
        // Rows locked in name order by every instance: they take turns, never deadlock.
        let lock =
            format!(
            "SELECT name, tx, seq, version FROM projection_checkpoints WHERE name IN ({}) ORDER BY name{}",
            marks.join(", "),
            if matches!(tx, ReadTx::Postgres(_)) { " FOR UPDATE" } else { "" }
        );
        let rows = tx.query(&lock, &names).await?;
        let at: BTreeMap<String, LogPosition> = rows
            .iter()
            .filter(|r| {
                let name = r.get("name").and_then(|v| v.as_str());
                ps.iter()
                    .find(|p| Some(p.name()) == name)
                    .is_some_and(|p| Self::owns(p.as_ref(), Some(int(r, "version"))))
            })
            .map(|r| {
                (
                    r.get("name")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    LogPosition {
                        tx: int(r, "tx") as u64,
                        seq: int(r, "seq") as u64,
                    },
                )
            })
            .collect();
        let Some(from) = at.values().min().copied() else {
            return Ok((0, Vec::new()));
        };
        let events = Decoded::all(self.log.read_all(from, self.batch).await?);
        let Some(last) = events.last().map(|e| e.position) else {
            tx.commit().await?;
            return Ok((0, Vec::new()));
        };
        let ctx = ApplyContext {
            tz: self.tz,
            slot: Slot::Live,
        };
        let mut failed = Vec::new();
        let mut newly_parked = Vec::new();
        let mut parked_streams = parked::streams(&mut tx).await?;
        let mut done: Vec<(&'static str, i64)> = Vec::with_capacity(ps.len());
        for p in ps {
            let Some(after) = at.get(p.name()).copied() else {
                continue;
            };
            // The batch starts at the group's lowest checkpoint: a projection already at or
            // past its end has nothing in it, and its checkpoint must not move back to it.
            if after >= last {
                continue;
            }
            let mut streams =
                parked_from_start(parked_streams.remove(p.name()).unwrap_or_default());
            match self
                .apply_share(&mut tx, p.as_ref(), ctx, &events, after, Some(&mut streams))
                .await
            {
                Ok(share) => {
                    newly_parked.extend(share.newly_parked);
                    done.push((p.name(), share.applied));
                }
                Err(RunError::Handler(h)) => {
                    let position = h.position;
                    failed.push((Arc::clone(p), position, RunError::Handler(h)));
                }
                Err(other) => return Err(other),
            }
        }
        if !done.is_empty() {
            // One statement for every checkpoint that moves: a round trip per projection
            // per batch was most of a batch's cost when it held one command's events.
            let mut params: Vec<Param> = vec![(last.tx as i64).into(), (last.seq as i64).into()];
            let mut cases = String::new();
            let mut names = Vec::with_capacity(done.len());
            for (name, applied) in &done {
                params.push((*name).into());
                params.push((*applied).into());
                let (n, a) = (params.len() - 1, params.len());
                cases.push_str(&format!(" WHEN ${n} THEN ${a}"));
                names.push(format!("${n}"));
            }
            tx.execute(
                &format!(
                    "UPDATE projection_checkpoints SET tx = $1, seq = $2,
                     events_applied = events_applied + CASE name{cases} ELSE 0 END,
                     state = 'running', last_error = NULL, error_position = NULL
                     WHERE name IN ({})",
                    names.join(", ")
                ),
                &params,
            )
            .await?;
        }
        tx.commit().await?;
        report_parked(&newly_parked);
        let mut out = Vec::new();
        for (p, position, e) in failed {
            self.record_failure(p.name(), position, &e).await?;
            out.push((p, e));
        }
        Ok((events.len(), out))
    }

    /// Runs every projection in the background until `shutdown` turns true:
    /// the healthy ones together ([`Self::step_group`]), each failing one on
    /// its own, retrying with back-off (it resumes once the cause is fixed)
    /// while the others carry on.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let runner = Arc::new(self);
        let group_runner = Arc::clone(&runner);
        let mut shutdown_group = shutdown.clone();
        let (failed_tx, mut failed_rx) =
            tokio::sync::mpsc::unbounded_channel::<Arc<dyn Projection>>();
        let group = tokio::spawn(async move {
            let runner = group_runner;
            let mut members: Vec<Arc<dyn Projection>> = runner.projections.clone();
            let mut commits = runner.log.commits();
            let mut backoff = Duration::from_millis(500);
            loop {
                if *shutdown_group.borrow() {
                    return;
                }
                commits.borrow_and_update();
                let wait = match runner.step_group(&members).await {
                    Ok((n, failures)) => {
                        for (p, e) in failures {
                            tracing::warn!(projection = p.name(), error = %e, "projection failed; it retries on its own");
                            members.retain(|m| m.name() != p.name());
                            let _ = failed_tx.send(p);
                        }
                        backoff = Duration::from_millis(500);
                        if n > 0 {
                            continue;
                        }
                        let held = runner
                            .log
                            .has_held_back_events(LogPosition::START)
                            .await
                            .unwrap_or(false);
                        if held {
                            Duration::from_millis(20)
                        } else {
                            Duration::from_secs(2)
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "projections failed to step");
                        let b = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        b
                    }
                };
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown_group.changed() => {}
                }
            }
        });
        let solo_runner = Arc::clone(&runner);
        let solo = tokio::spawn(async move {
            let runner = solo_runner;
            let mut tasks = Vec::new();
            let mut shutdown_solo = shutdown.clone();
            loop {
                tokio::select! {
                    p = failed_rx.recv() => {
                        let Some(p) = p else { break };
                        tasks.push(tokio::spawn(Self::run_alone(Arc::clone(&runner), p, shutdown.clone())));
                    }
                    _ = shutdown_solo.changed() => {
                        if *shutdown_solo.borrow() { break; }
                    }
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        vec![group, solo]
    }

    /// One projection on its own (after it failed in the group): steps with
    /// back-off until shutdown.
    async fn run_alone(
        runner: Arc<Self>,
        p: Arc<dyn Projection>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut commits = runner.log.commits();
        let mut backoff = Duration::from_millis(500);
        // It just failed: wait before the first retry.
        let mut wait = backoff;
        loop {
            tokio::select! {
                _ = commits.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            commits.borrow_and_update();
            wait = match runner.step(p.as_ref(), Slot::Live).await {
                Ok(0) => {
                    backoff = Duration::from_millis(500);
                    let held = runner
                        .log
                        .has_held_back_events(LogPosition::START)
                        .await
                        .unwrap_or(false);
                    if held {
                        Duration::from_millis(20)
                    } else {
                        Duration::from_secs(2)
                    }
                }
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(projection = p.name(), error = %e, retry_in = ?backoff, "projection failed");
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    b
                }
            };
        }
    }

    /// Every projection's checkpoint and state.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, RunError> {
        let head = self.log.head().await?;
        let rows = self
            .db
            .query("SELECT name, version, tx, seq, events_applied, state, last_error, error_position FROM projection_checkpoints ORDER BY name", &[])
            .await?;
        let mut parked = parked::summaries(&self.db).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let pos = LogPosition {
                    tx: int(r, "tx") as u64,
                    seq: int(r, "seq") as u64,
                };
                let s = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let name = s("name").unwrap_or_default();
                let parked = parked.remove(&name).unwrap_or_default();
                let mut state = s("state").unwrap_or_default();
                if state == "running" && parked.count > 0 {
                    state = "degraded".into();
                }
                ProjectionStatus {
                    name,
                    version: int(r, "version"),
                    position: pos.to_string(),
                    events_applied: int(r, "events_applied"),
                    state,
                    last_error: s("last_error"),
                    error_position: s("error_position"),
                    caught_up: pos >= head,
                    parked: parked.count,
                    parked_position: parked.first_position,
                    parked_error: parked.first_error,
                }
            })
            .collect())
    }

    /// Read-your-writes: waits (at most `timeout`) until every live projection
    /// has applied `position`. Returns whether they did.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn wait_for(
        &self,
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, RunError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let names: Vec<String> = self.names().into_iter().map(str::to_string).collect();
        loop {
            let rows = self
                .db
                .query("SELECT name, tx, seq FROM projection_checkpoints", &[])
                .await?;
            let done = names.iter().all(|n| {
                rows.iter().any(|r| {
                    r.get("name").and_then(|v| v.as_str()) == Some(n.as_str())
                        && LogPosition {
                            tx: int(r, "tx") as u64,
                            seq: int(r, "seq") as u64,
                        } >= position
                })
            });
            if done {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (at most `timeout`) until projection `name` has applied
    /// `position`, without doing its work: the running runner does. Returns
    /// whether it did.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn wait_for_projection(
        &self,
        name: &str,
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, RunError> {
        let p = self.find(name)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.checkpoint(p.as_ref()).await? >= position {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every row of a projection's tables, sorted: equal dumps mean equal read models.
    ///
    /// # Errors
    /// [`RunError`].
    pub async fn dump(
        &self,
        name: &str,
        slot: Slot,
    ) -> Result<BTreeMap<String, Vec<String>>, RunError> {
        let p = self.find(name)?;
        let mut out = BTreeMap::new();
        for t in p.tables() {
            let rows = self
                .db
                .query(&format!("SELECT * FROM {}", slot.table(t)), &[])
                .await?;
            let mut lines: Vec<String> = rows
                .iter()
                .map(|r| serde_json::Value::Object(r.clone()).to_string())
                .collect();
            lines.sort();
            out.insert((*t).to_string(), lines);
        }
        Ok(out)
    }

    /// Rebuilds a projection into shadow tables while the live ones keep
    /// serving, then swaps them in one transaction once the shadow has caught
    /// up. `before_swap` sees the shadow's dump next to the live one (for
    /// `--diff`) and returns whether to swap.
    ///
    /// # Errors
    /// [`RunError`]; the live tables are untouched on failure.
    pub async fn rebuild(
        &self,
        name: &str,
        progress: &(dyn Fn(u64) + Send + Sync),
        before_swap: &BeforeSwap<'_>,
    ) -> Result<u64, RunError> {
        let compare = |_: &str, live: &Dump, shadow: &Dump| before_swap(live, shadow);
        let done = self.rebuild_many(&[name], progress, Some(&compare)).await?;
        Ok(done.first().map_or(0, |(_, n)| *n))
    }

    /// Rebuilds several projections reading the log once: every event is
    /// applied to all of them in an in-memory SQLite staging database (the
    /// same handlers and SQL, no round trips), the staged rows are copied
    /// into each projection's shadow tables with multi-row inserts, then each
    /// shadow catches up with what arrived meanwhile and is swapped in as
    /// [`ProjectionRunner::rebuild`] does. `compare`, when given, sees each
    /// projection's live and shadow dumps and decides whether to swap; without
    /// it every shadow is swapped in without dumping. Returns the events
    /// applied per projection.
    ///
    /// # Errors
    /// [`RunError`]; live tables already swapped stay swapped, the others are
    /// untouched.
    pub async fn rebuild_many(
        &self,
        names: &[&str],
        progress: &(dyn Fn(u64) + Send + Sync),
        compare: Option<&CompareBeforeSwap<'_>>,
    ) -> Result<Vec<(String, u64)>, RunError> {
        let ps = names
            .iter()
            .map(|n| self.find(n))
            .collect::<Result<Vec<_>, _>>()?;
        for p in &ps {
            let shadow = checkpoint_name(p.as_ref(), Slot::Shadow);
            let mut tx = self.db.begin().await?;
            self.drop_tables(&mut tx, p.as_ref(), Slot::Shadow).await?;
            // Secondary indexes come after the bulk copy (copy_staged).
            self.create_schema(&mut tx, p.as_ref(), Slot::Shadow, Ddl::Tables)
                .await?;
            tx.execute(
                "DELETE FROM projection_checkpoints WHERE name = $1",
                &[shadow.clone().into()],
            )
            .await?;
            tx.execute(
                "INSERT INTO projection_checkpoints (name, version) VALUES ($1, $2)",
                &[shadow.into(), p.version().into()],
            )
            .await?;
            tx.commit().await?;
        }
        let started = std::time::Instant::now();
        let (staged, staged_at, staged_count) = self.stage(&ps, progress).await?;
        let staged_in = started.elapsed();
        // Each lane copies over its own connection, concurrently with the others.
        futures::future::try_join_all(staged.into_iter().map(|(mut mem, group)| async move {
            for p in &group {
                self.copy_staged(&mut mem, p.as_ref(), staged_at, staged_count)
                    .await?;
            }
            Ok::<(), RunError>(())
        }))
        .await?;
        tracing::info!(
            events = staged_count,
            staged_ms = staged_in.as_millis() as u64,
            copied_ms = (started.elapsed() - staged_in).as_millis() as u64,
            "rebuild staged in memory and copied"
        );
        let mut out = Vec::new();
        for p in &ps {
            let mut applied = staged_count;
            loop {
                let n = self.step(p.as_ref(), Slot::Shadow).await?;
                if n == 0 {
                    break;
                }
                applied += n as u64;
                progress(applied);
            }
            if let Some(compare) = compare {
                let live = self.dump(p.name(), Slot::Live).await?;
                let shadow_dump = self.dump(p.name(), Slot::Shadow).await?;
                if !compare(p.name(), &live, &shadow_dump) {
                    let mut tx = self.db.begin().await?;
                    self.drop_tables(&mut tx, p.as_ref(), Slot::Shadow).await?;
                    tx.execute(
                        "DELETE FROM projection_checkpoints WHERE name = $1",
                        &[checkpoint_name(p.as_ref(), Slot::Shadow).into()],
                    )
                    .await?;
                    tx.commit().await?;
                    out.push((p.name().to_string(), applied));
                    continue;
                }
            }
            applied += self.swap(p.as_ref()).await?;
            out.push((p.name().to_string(), applied));
        }
        Ok(out)
    }

    /// Applies the log, from the start to what is readable now, to `ps` in
    /// in-memory staging databases (one per lane); returns them with the last
    /// position applied and the number of events read.
    async fn stage(
        &self,
        ps: &[Arc<dyn Projection>],
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(Vec<StagedLane>, LogPosition, u64), RunError> {
        // Projections are dealt round-robin to lanes, one in-memory database and one task
        // each, so that the heavy ones (activity, analytics) apply on different cores while
        // this task reads and decodes the next batch.
        let lanes = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(ps.len().max(1));
        let mut groups: Vec<Vec<Arc<dyn Projection>>> = vec![Vec::new(); lanes];
        for (i, p) in ps.iter().enumerate() {
            groups[i % lanes].push(Arc::clone(p));
        }
        let ctx = ApplyContext {
            tz: self.tz,
            slot: Slot::Shadow,
        };
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = Vec::with_capacity(lanes);
        let discarded = self.discarded().await?;
        for group in groups {
            let discarded = Arc::clone(&discarded);
            let mut mem = crate::db::memory_tx()?;
            for p in &group {
                self.create_tables(&mut mem, p.as_ref(), Slot::Shadow)
                    .await?;
            }
            let (sender, mut batches) = tokio::sync::mpsc::channel::<Arc<Vec<Decoded>>>(2);
            senders.push(sender);
            workers.push(tokio::spawn(async move {
                while let Some(batch) = batches.recv().await {
                    for e in batch.iter() {
                        for p in &group {
                            if discarded
                                .get(p.name())
                                .is_some_and(|s| s.contains(&e.position))
                            {
                                continue;
                            }
                            p.apply(&mut mem, ctx, e)
                                .await
                                .map_err(|err| handler_error(p.name(), e, &err))?;
                        }
                    }
                }
                Ok::<StagedLane, RunError>((mem, group))
            }));
        }
        let (mut pos, mut count) = (LogPosition::START, 0u64);
        loop {
            let events = Decoded::all(self.log.read_all(pos, STAGING_BATCH).await?);
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            pos = last;
            count += events.len() as u64;
            let batch = Arc::new(events);
            let mut lane_failed = false;
            for s in &senders {
                // A lane that stopped failed on an event: its result below says which.
                lane_failed |= s.send(Arc::clone(&batch)).await.is_err();
            }
            if lane_failed {
                break;
            }
            progress(count);
        }
        drop(senders);
        let mut staged = Vec::with_capacity(workers.len());
        for w in workers {
            staged.push(
                w.await
                    .map_err(|e| RunError::Db(DbError::new(format!("staging lane: {e}"))))??,
            );
        }
        Ok((staged, pos, count))
    }

    /// Copies a projection's staged rows into its shadow tables and moves the
    /// shadow checkpoint to `at`, in one transaction.
    async fn copy_staged(
        &self,
        staged: &mut ReadTx,
        p: &dyn Projection,
        at: LogPosition,
        count: u64,
    ) -> Result<(), RunError> {
        let ReadTx::Memory(mem) = staged else {
            return Err(RunError::Db(DbError::new("staging is not in memory")));
        };
        let mut tx = self.db.begin_derived().await?;
        for t in p.tables() {
            crate::db::copy_table(mem.as_mut(), &mut tx, &Slot::Shadow.table(t)).await?;
        }
        self.create_schema(&mut tx, p, Slot::Shadow, Ddl::Indexes)
            .await?;
        tx.execute(
            "UPDATE projection_checkpoints SET tx = $2, seq = $3, events_applied = $4 WHERE name = $1",
            &[
                checkpoint_name(p, Slot::Shadow).into(),
                (at.tx as i64).into(),
                (at.seq as i64).into(),
                (count as i64).into(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Swaps a caught-up shadow in; returns the events applied on the way.
    async fn swap(&self, p: &dyn Projection) -> Result<u64, RunError> {
        let name = p.name();
        let shadow = checkpoint_name(p, Slot::Shadow);
        let mut applied = 0u64;
        // The swap: hold the live checkpoint so the live runner waits, apply
        // what arrived meanwhile to the shadow, then rename.
        let mut tx = self.db.begin().await?;
        let lock = match tx {
            ReadTx::Postgres(_) => {
                "SELECT tx FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
            }
            ReadTx::Sqlite(_) | ReadTx::Memory(_) => {
                "SELECT tx FROM projection_checkpoints WHERE name = $1"
            }
        };
        tx.query(lock, &[name.into()]).await?;
        let ctx = ApplyContext {
            tz: self.tz,
            slot: Slot::Shadow,
        };
        let rows = tx
            .query(
                "SELECT tx, seq, events_applied FROM projection_checkpoints WHERE name = $1",
                &[shadow.clone().into()],
            )
            .await?;
        let row = rows.first().cloned().unwrap_or_default();
        let mut pos = LogPosition {
            tx: int(&row, "tx") as u64,
            seq: int(&row, "seq") as u64,
        };
        let mut total = int(&row, "events_applied");
        loop {
            let events = Decoded::all(self.log.read_all(pos, self.batch).await?);
            if events.is_empty() {
                break;
            }
            for e in &events {
                p.apply(&mut tx, ctx, e)
                    .await
                    .map_err(|err| handler_error(p.name(), e, &err))?;
                pos = e.position;
            }
            total += events.len() as i64;
            applied += events.len() as u64;
        }
        for t in p.tables() {
            tx.execute(
                &format!("DROP TABLE IF EXISTS {}", Slot::Live.table(t)),
                &[],
            )
            .await?;
            tx.execute(
                &format!(
                    "ALTER TABLE {} RENAME TO {}",
                    Slot::Shadow.table(t),
                    Slot::Live.table(t)
                ),
                &[],
            )
            .await?;
        }
        tx.execute(
            "UPDATE projection_checkpoints SET tx = $2, seq = $3, events_applied = $4, version = $5, state = 'running',
             last_error = NULL, error_position = NULL WHERE name = $1",
            &[name.into(), (pos.tx as i64).into(), (pos.seq as i64).into(), total.into(), p.version().into()],
        )
        .await?;
        tx.execute(
            "DELETE FROM projection_checkpoints WHERE name = $1",
            &[shadow.into()],
        )
        .await?;
        // The rebuilt tables hold every event (a rebuild fails rather than park).
        parked::clear(&mut tx, name).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Parked events, oldest first (of one projection, or of all).
    ///
    /// # Errors
    /// [`RunError::Db`].
    pub async fn parked(&self, projection: Option<&str>) -> Result<Vec<ParkedEvent>, RunError> {
        if let Some(name) = projection {
            self.find(name)?;
        }
        Ok(parked::list(&self.db, projection).await?)
    }

    /// Applies the parked events again, each aggregate's in log order, in one
    /// transaction per aggregate that holds the projection's checkpoint (the
    /// live runner waits). An aggregate whose events now apply leaves the
    /// parking; one that fails again stays, with the new error. Returns, per
    /// projection and aggregate, how many events were applied or the error.
    ///
    /// # Errors
    /// [`RunError`] when the database or the log fails.
    pub async fn retry_parked(
        &self,
        projection: Option<&str>,
    ) -> Result<Vec<RetriedStream>, RunError> {
        let mut out = Vec::new();
        let ctx = ApplyContext {
            tz: self.tz,
            slot: Slot::Live,
        };
        let all = {
            let mut tx = self.db.begin().await?;
            let all = parked::streams(&mut tx).await?;
            tx.commit().await?;
            all
        };
        for (name, streams) in all {
            if projection.is_some_and(|want| want != name) {
                continue;
            }
            let Ok(p) = self.find(&name) else {
                continue;
            };
            self.refuse_unless_owned(p.as_ref()).await?;
            for stream in streams {
                let mut tx = self.db.begin_derived().await?;
                let lock = match tx {
                    ReadTx::Postgres(_) => {
                        "SELECT tx FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
                    }
                    ReadTx::Sqlite(_) | ReadTx::Memory(_) => {
                        "SELECT tx FROM projection_checkpoints WHERE name = $1"
                    }
                };
                tx.query(lock, &[name.as_str().into()]).await?;
                let positions = parked::positions_of(&mut tx, &name, &stream).await?;
                let Some(first) = positions.first().copied() else {
                    continue;
                };
                let wanted: BTreeSet<LogPosition> = positions.iter().copied().collect();
                let events: Vec<Decoded> = self
                    .log
                    .load_stream(&stream.0, &stream.1, 0)
                    .await?
                    .into_iter()
                    .filter(|e| wanted.contains(&e.position))
                    .map(Decoded::new)
                    .collect();
                let result = self
                    .apply_share(&mut tx, p.as_ref(), ctx, &events, LogPosition::START, None)
                    .await;
                let outcome = match result {
                    Ok(share) => {
                        parked::remove(&mut tx, &name, &stream).await?;
                        tx.execute(
                            "UPDATE projection_checkpoints SET events_applied = events_applied + $2 WHERE name = $1",
                            &[name.as_str().into(), share.applied.into()],
                        )
                        .await?;
                        Ok(share.applied as u64)
                    }
                    Err(RunError::Handler(h)) => {
                        parked::set_error(&mut tx, &name, first, &h.error).await?;
                        Err(h.error)
                    }
                    Err(other) => return Err(other),
                };
                tx.commit().await?;
                out.push(RetriedStream {
                    projection: name.clone(),
                    aggregate_type: stream.0,
                    aggregate_id: stream.1,
                    outcome,
                });
            }
        }
        Ok(out)
    }

    /// Drops one aggregate's parked events for a projection without applying
    /// them (the operator decided the read model is right without them) and
    /// records the decision first, as `ParkedEventsDiscarded` in the
    /// projection's `ReadModel` stream with `meta` (who, why). Returns the
    /// positions dropped.
    ///
    /// # Errors
    /// [`RunError::Unknown`]; [`RunError::Refused`] when nothing is parked for
    /// the aggregate or the reason is missing; [`RunError::Db`]/[`RunError::Store`].
    pub async fn discard_parked(
        &self,
        projection: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        reason: &str,
        meta: &event_log::EventMetadata,
    ) -> Result<Vec<LogPosition>, RunError> {
        use domain::ports::{CommandEnvelope, DomainServices};
        use domain::read_model::{ReadModel, ReadModelCommand};
        self.refuse_unless_owned(self.find(projection)?.as_ref())
            .await?;
        let stream = (aggregate_type.to_string(), aggregate_id.to_string());
        let positions = {
            let mut tx = self.db.begin().await?;
            let positions = parked::positions_of(&mut tx, projection, &stream).await?;
            tx.commit().await?;
            positions
        };
        // The decision is on record before anything is dropped.
        let store = event_log::AggregateStore::<ReadModel>::new(
            self.log.clone(),
            DomainServices::new(self.tz, Default::default()),
        );
        let command = ReadModelCommand::DiscardParked {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            positions: positions.iter().map(ToString::to_string).collect(),
            reason: reason.to_string(),
        };
        store
            .execute_retrying(
                projection,
                CommandEnvelope::new(domain::Actor::System, command),
                meta,
                5,
            )
            .await
            .map_err(|e| RunError::Refused(e.to_string()))?;
        let mut tx = self.db.begin_derived().await?;
        let now_parked = parked::positions_of(&mut tx, projection, &stream).await?;
        // Only what the decision named: events parked since stay parked.
        for p in positions.iter().filter(|p| now_parked.contains(p)) {
            parked::remove_one(&mut tx, projection, *p).await?;
        }
        tx.commit().await?;
        // Read again at the next use: a rebuild through this runner skips them too.
        *self
            .discarded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        Ok(positions)
    }

    /// Queries the read models (GraphQL, tools).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<JsonRow>, DbError> {
        self.db.query(sql, params).await
    }
}

fn handler_error(projection: &str, e: &RecordedEvent, err: &ProjectionError) -> RunError {
    RunError::Handler(Box::new(HandlerFailure {
        projection: projection.to_string(),
        position: e.position,
        aggregate_type: e.aggregate_type.clone(),
        aggregate_id: e.aggregate_id.clone(),
        sequence: e.sequence,
        event_type: e.event_type.clone(),
        error: err.to_string(),
    }))
}

/// Aggregates newly parked by one projection in one batch beyond which the batch
/// fails instead: so many poisoned aggregates at once is a broken handler.
const MAX_NEWLY_PARKED: usize = 20;

/// Streams parked in earlier batches: every event of theirs is parked.
fn parked_from_start(streams: BTreeSet<Stream>) -> BTreeMap<Stream, LogPosition> {
    streams
        .into_iter()
        .map(|s| (s, LogPosition::START))
        .collect()
}

/// What one projection made of a batch.
struct Share {
    /// Events applied.
    applied: i64,
    /// The events that failed and were parked (with their aggregate's later ones).
    newly_parked: Vec<RunError>,
}

/// Tells the operator about newly parked events: an error line per poisoned
/// aggregate (one incident each, not one per later event parked behind it).
fn report_parked(newly_parked: &[RunError]) {
    for e in newly_parked {
        tracing::error!(error = %e, "event parked: the projection goes on without this aggregate until `replay-tools parked retry`");
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

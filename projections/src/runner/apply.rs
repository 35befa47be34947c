//! Applying the log: one projection's step, a group's shared read, parking poisoned aggregates.

use super::*;

impl ProjectionRunner {
    /// Applies at most one batch to one projection; returns how many events it applied.
    pub(super) async fn step(&self, p: &dyn Projection, slot: Slot) -> Result<usize, RunError> {
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
    pub(super) async fn apply_share(
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

    pub(super) async fn record_failure(
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

    pub(super) async fn checkpoint(&self, p: &dyn Projection) -> Result<LogPosition, RunError> {
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
    pub(super) async fn step_group(
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
}

pub(super) fn handler_error(
    projection: &str,
    e: &RecordedEvent,
    err: &ProjectionError,
) -> RunError {
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
pub(super) const MAX_NEWLY_PARKED: usize = 20;

/// Streams parked in earlier batches: every event of theirs is parked.
pub(super) fn parked_from_start(streams: BTreeSet<Stream>) -> BTreeMap<Stream, LogPosition> {
    streams
        .into_iter()
        .map(|s| (s, LogPosition::START))
        .collect()
}

/// What one projection made of a batch.
pub(super) struct Share {
    /// Events applied.
    pub(super) applied: i64,
    /// The events that failed and were parked (with their aggregate's later ones).
    pub(super) newly_parked: Vec<RunError>,
}

/// Tells the operator about newly parked events: an error line per poisoned
/// aggregate (one incident each, not one per later event parked behind it).
pub(super) fn report_parked(newly_parked: &[RunError]) {
    for e in newly_parked {
        tracing::error!(error = %e, "event parked: the projection goes on without this aggregate until `replay-tools parked retry`");
    }
}

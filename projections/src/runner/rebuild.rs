//! Rebuilding read models in shadow tables, comparing, and swapping them in.

use super::*;

impl ProjectionRunner {
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
    pub(super) async fn stage(
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
    pub(super) async fn copy_staged(
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
    pub(super) async fn swap(&self, p: &dyn Projection) -> Result<u64, RunError> {
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
}

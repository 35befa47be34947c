//! Operators' view of parked events: list, retry, discard.

use super::*;

impl ProjectionRunner {
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
}

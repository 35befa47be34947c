//! Creating, versioning and upgrading the projections' tables.

use super::*;

impl ProjectionRunner {
    pub(super) async fn table_exists(&self, tx: &mut ReadTx, table: &str) -> Result<bool, DbError> {
        let sql = match tx {
            ReadTx::Postgres(_) => "SELECT 1 AS x WHERE to_regclass($1) IS NOT NULL",
            ReadTx::Sqlite(_) | ReadTx::Memory(_) => {
                "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
        };
        Ok(!tx.query(sql, &[table.into()]).await?.is_empty())
    }

    pub(super) async fn create_tables(
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
    pub(super) async fn create_schema(
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

    pub(super) async fn drop_tables(
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
    pub(super) async fn stored_versions(&self) -> Result<BTreeMap<String, i64>, RunError> {
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
    pub(super) fn owns(p: &dyn Projection, stored: Option<i64>) -> bool {
        stored == Some(p.version())
    }

    /// An operator's retry or discard runs only on the version whose handlers built the
    /// tables (during a rolling deploy, run it with the binary of the version that owns it).
    pub(super) async fn refuse_unless_owned(&self, p: &dyn Projection) -> Result<(), RunError> {
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
}

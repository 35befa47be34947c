//! The server as the next release would be during a rolling deploy: every read model as
//! today but `customers`, one version on, whose tables gain a `next_version` column that
//! its handler sets on each row it writes. A row without it was written by an instance of
//! the old version after the new one took the read model over (`rolling_deploy.rs`).

use std::sync::{Arc, OnceLock};

use projections::db::ReadTx;
use projections::projection::{ApplyContext, BoxFut};
use projections::{Param, Projection, ProjectionError};

struct NextCustomers(Arc<dyn Projection>);

impl Projection for NextCustomers {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn version(&self) -> i64 {
        self.0.version() + 1
    }
    fn tables(&self) -> &'static [&'static str] {
        self.0.tables()
    }
    fn schema(&self) -> &'static [&'static str] {
        static SCHEMA: OnceLock<Vec<&'static str>> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let mut all = self.0.schema().to_vec();
            all.push("ALTER TABLE {customers} ADD COLUMN next_version BIGINT");
            all
        })
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a projections::Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            self.0.apply(tx, ctx, e).await?;
            if e.aggregate_type == "Customer" {
                let sql = ctx.slot.sql(
                    &["customers"],
                    "UPDATE {customers} SET next_version = 1 WHERE customer_id = $1",
                );
                tx.execute(&sql, &[Param::from(e.aggregate_id.clone())])
                    .await?;
            }
            Ok(())
        })
    }
}

fn read_models() -> Vec<Arc<dyn Projection>> {
    projections::crm::all()
        .into_iter()
        .map(|p| -> Arc<dyn Projection> {
            if p.name() == "customers" {
                Arc::new(NextCustomers(p))
            } else {
                p
            }
        })
        .collect()
}

#[tokio::main]
async fn main() {
    std::process::exit(api::main_entry_with(read_models).await);
}

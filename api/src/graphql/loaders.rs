//! Batched reads for fields that appear once per item of a page: without them a
//! page of 100 customers with their jobs is 200 statements; with them, one.
//! A loader lives for one request (created in `graphql::execute`).

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use projections::{JsonRow, Param};

use crate::state::AppState;

/// Every job of each asked customer, newest first (the order `Customer.jobs` pages in).
#[derive(Debug)]
pub struct JobsOfCustomers {
    state: AppState,
}

impl Loader<String> for JobsOfCustomers {
    type Value = Vec<JsonRow>;
    type Error = String;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<JsonRow>>, String> {
        let marks: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let params: Vec<Param> = keys.iter().map(|k| Param::from(k.as_str())).collect();
        let rows = self
            .state
            .projections
            .query(
                &format!(
                    "SELECT * FROM rm_jobs WHERE customer_id IN ({}) ORDER BY customer_id, booked_at DESC, job_id",
                    marks.join(", ")
                ),
                &params,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut out: HashMap<String, Vec<JsonRow>> = HashMap::new();
        for r in rows {
            if let Some(c) = r.get("customer_id").and_then(|v| v.as_str()) {
                out.entry(c.to_string()).or_default().push(r);
            }
        }
        Ok(out)
    }
}

/// The loaders of one request. `spawn` runs their batches (so they can carry the
/// request's statement count along).
pub fn for_request<S, R>(state: &AppState, spawn: S) -> DataLoader<JobsOfCustomers>
where
    S: Fn(futures::future::BoxFuture<'static, ()>) -> R + Send + Sync + 'static,
{
    DataLoader::new(
        JobsOfCustomers {
            state: state.clone(),
        },
        spawn,
    )
    // Long enough for a page's items to ask together on a busy machine.
    .delay(std::time::Duration::from_millis(5))
}

//! The CRM's read models, one module per projection. Each owns its tables and applies the
//! domain's typed events ([`domain::Event`]): a renamed event or field is a compile error
//! here, and an event that does not decode is refused naming it (see docs/events.md).

pub mod accounts;
pub mod activity;
pub mod analytics;
pub mod campaigns;
pub mod conversations;
pub mod customers;
pub mod job_runs;
pub mod jobs;
pub mod kpis;
pub mod loyalty;
pub mod messages;
pub mod notes;
pub mod payments;
pub mod pipeline;
pub mod reviews;
pub mod scheduled_reports;

pub use accounts::Accounts;
pub use activity::Activity;
pub use analytics::Analytics;
pub use campaigns::Campaigns;
pub use conversations::Conversations;
pub use customers::Customers;
pub use job_runs::JobRuns;
pub use jobs::Jobs;
pub use loyalty::Loyalty;
pub use messages::Messages;
pub use notes::Notes;
pub use payments::Payments;
pub use pipeline::Pipeline;
pub use reviews::Reviews;
pub use scheduled_reports::ScheduledReports;

use crate::db::ReadTx;
use crate::projection::{ApplyContext, Projection, ProjectionError};

/// What every read-model module uses.
mod prelude {
    pub(super) use super::exec;
    pub(super) use crate::db::ReadTx;
    pub(super) use crate::projection::{
        json, json_column, kind_tag, rfc3339, text, ApplyContext, BoxFut, Decoded, Projection,
        ProjectionError,
    };
    pub(super) use domain::Event;
}

/// Every projection the server runs, in a stable order.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(Customers),
        std::sync::Arc::new(Jobs),
        std::sync::Arc::new(Loyalty),
        std::sync::Arc::new(Pipeline),
        std::sync::Arc::new(Campaigns),
        std::sync::Arc::new(Reviews),
        std::sync::Arc::new(Activity),
        std::sync::Arc::new(Analytics),
        std::sync::Arc::new(Accounts),
        std::sync::Arc::new(Payments),
        std::sync::Arc::new(JobRuns),
        std::sync::Arc::new(ScheduledReports),
        std::sync::Arc::new(Messages),
        std::sync::Arc::new(Conversations),
        std::sync::Arc::new(Notes),
    ]
}

/// Runs one statement on the projection's tables of the slot being written.
async fn exec(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    tables: &[&str],
    sql: &str,
    params: &[crate::db::Param],
) -> Result<u64, ProjectionError> {
    Ok(tx.execute(&ctx.slot.sql(tables, sql), params).await?)
}

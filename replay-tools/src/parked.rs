//! `parked`: events a projection refused, parked with their aggregate's later
//! events while the rest of the read model went on (see `projections::parked`).
//!
//! - `parked list [PROJECTION]` shows them with the error;
//! - `parked retry [PROJECTION]` applies each aggregate's parked events again,
//!   in order, after the cause was fixed (a new build, a repaired row);
//! - `parked discard PROJECTION AGGREGATE_TYPE AGGREGATE_ID --reason … --yes`
//!   drops one aggregate's parked events without applying them, recorded as a
//!   `ParkedEventsDiscarded` event (the `ReadModel` stream of that projection).

use commands::{Actor, EventMetadata};
use projections::ProjectionRunner;

use crate::Ctx;

/// What to do with parked events.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List parked events, oldest first.
    List {
        /// Only this projection's.
        projection: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Apply parked events again, each aggregate's in order.
    Retry {
        /// Only this projection's.
        projection: Option<String>,
    },
    /// Drop one aggregate's parked events without applying them (recorded as an event).
    Discard {
        /// The projection.
        projection: String,
        /// The aggregate type (`Customer`, `Job`…).
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: String,
        /// Really discard (without it, nothing changes).
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let runner = ProjectionRunner::new(ctx.log.clone(), ctx.tz);
    runner.prepare().await?;
    match opts.action {
        Action::List { projection, json } => {
            let parked = runner.parked(projection.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string(&parked)?);
                return Ok(0);
            }
            println!(
                "{:<16} {:>22} {:<16} {:<38} {:>5} {:<28} error",
                "projection", "position", "aggregate", "id", "seq", "event"
            );
            for p in &parked {
                println!(
                    "{:<16} {:>22} {:<16} {:<38} {:>5} {:<28} {}",
                    p.projection,
                    p.position,
                    p.aggregate_type,
                    p.aggregate_id,
                    p.sequence,
                    p.event_type,
                    p.error
                        .as_deref()
                        .unwrap_or("(parked behind an earlier event)")
                );
            }
            Ok(0)
        }
        Action::Retry { projection } => {
            let retried = runner.retry_parked(projection.as_deref()).await?;
            let mut failed = 0;
            for r in &retried {
                match &r.outcome {
                    Ok(n) => println!(
                        "{}: {} {}: {n} events applied",
                        r.projection, r.aggregate_type, r.aggregate_id
                    ),
                    Err(e) => {
                        failed += 1;
                        println!(
                            "{}: {} {}: still failing: {e}",
                            r.projection, r.aggregate_type, r.aggregate_id
                        );
                    }
                }
            }
            if retried.is_empty() {
                println!("nothing is parked");
            }
            Ok(i32::from(failed > 0))
        }
        Action::Discard {
            projection,
            aggregate_type,
            aggregate_id,
            reason,
            yes,
        } => {
            let parked: Vec<_> = runner
                .parked(Some(&projection))
                .await?
                .into_iter()
                .filter(|p| p.aggregate_type == aggregate_type && p.aggregate_id == aggregate_id)
                .collect();
            if parked.is_empty() {
                anyhow::bail!(
                    "{projection} has nothing parked for {aggregate_type} {aggregate_id}"
                );
            }
            if !yes {
                println!(
                    "would discard {} parked events of {aggregate_type} {aggregate_id} from {projection}; add --yes to do it",
                    parked.len()
                );
                return Ok(0);
            }
            let meta = EventMetadata::new(Actor::System("replay-tools".into()), chrono::Utc::now());
            let dropped = runner
                .discard_parked(&projection, &aggregate_type, &aggregate_id, &reason, &meta)
                .await?;
            println!(
                "discarded {} parked events of {aggregate_type} {aggregate_id} from {projection} (recorded in the ReadModel stream {projection})",
                dropped.len()
            );
            Ok(0)
        }
    }
}

//! `status`: head position and each projection's checkpoint and state.

use projections::ProjectionRunner;

use crate::Ctx;

/// No options.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let runner = ProjectionRunner::new(ctx.log.clone(), ctx.tz);
    runner.prepare().await?;
    let head = ctx.log.head().await?;
    let count = ctx.log.count().await?;
    let status = runner.status().await?;
    if opts.json {
        println!(
            "{}",
            serde_json::json!({ "engine": ctx.log.engine(), "head": head.to_string(), "events": count, "projections": status })
        );
        return Ok(0);
    }
    println!("engine {}  head {head}  events {count}", ctx.log.engine());
    println!(
        "{:<16} {:>4} {:>22} {:>10} {:>9} {:<8} {:>6} error",
        "projection", "ver", "checkpoint", "applied", "caught-up", "state", "parked"
    );
    for s in &status {
        let error = match (&s.last_error, &s.parked_error) {
            (Some(e), _) => format!("{e} (at {})", s.error_position.clone().unwrap_or_default()),
            (None, Some(e)) => format!(
                "parked from {}: {e} (replay-tools parked list)",
                s.parked_position.clone().unwrap_or_default()
            ),
            (None, None) => String::new(),
        };
        println!(
            "{:<16} {:>4} {:>22} {:>10} {:>9} {:<8} {:>6} {error}",
            s.name,
            s.version,
            s.position,
            s.events_applied,
            if s.caught_up { "yes" } else { "no" },
            s.state,
            s.parked,
        );
    }
    Ok(i32::from(status.iter().any(|s| s.state == "failed")))
}

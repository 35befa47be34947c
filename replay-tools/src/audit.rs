//! `audit`: one aggregate's full history with its metadata.

use crate::Ctx;

/// Which aggregate.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Aggregate type (`Customer`, `Job`, `LoyaltyAccount`…).
    aggregate_type: String,
    /// Aggregate id.
    id: String,
    /// Print JSON Lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let events = ctx
        .log
        .load_stream(&opts.aggregate_type, &opts.id, 0)
        .await?;
    if events.is_empty() {
        eprintln!("no events for {} {}", opts.aggregate_type, opts.id);
        return Ok(2);
    }
    for e in events {
        let m = |k: &str| {
            e.metadata
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_string()
        };
        if opts.json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            println!(
                "#{:<4} {:<28} v{:<4} at {} by {} (request {}, correlation {}, ip {}) position {}",
                e.sequence,
                e.event_type,
                e.event_version,
                m("occurred_at"),
                m("actor"),
                m("request_id"),
                m("correlation_id"),
                m("client_ip"),
                e.position
            );
            println!("      {}", e.payload);
        }
    }
    Ok(0)
}

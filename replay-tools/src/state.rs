//! `state`: an aggregate as it was at a version or a moment.

use chrono::{DateTime, Utc};
use commands::HistoryPoint;

use crate::aggregates;
use crate::Ctx;

/// Which aggregate, and when.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Aggregate type (`Customer`, `Job`…).
    aggregate_type: String,
    /// Aggregate id.
    id: String,
    /// A version (event sequence number) or an RFC 3339 timestamp; default: now.
    #[arg(long)]
    at: Option<String>,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let point = match opts.at.as_deref() {
        None => HistoryPoint::Version(u64::MAX),
        Some(s) => match s.parse::<u64>() {
            Ok(v) => HistoryPoint::Version(v),
            Err(_) => HistoryPoint::Time(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|e| {
                        anyhow::anyhow!("--at {s:?} is neither a version nor an RFC 3339 time: {e}")
                    })?
                    .with_timezone(&Utc),
            ),
        },
    };
    let f = aggregates::state_fn(&opts.aggregate_type).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown aggregate type {:?} (one of {})",
            opts.aggregate_type,
            aggregates::TYPES.join(", ")
        )
    })?;
    let (version, state) = f(ctx.log.clone(), opts.id.clone(), point, ctx.tz).await?;
    if version == 0 {
        eprintln!(
            "{} {} had no events at that point",
            opts.aggregate_type, opts.id
        );
        return Ok(2);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "aggregateType": opts.aggregate_type, "id": opts.id, "version": version, "state": state })
        )?
    );
    Ok(0)
}

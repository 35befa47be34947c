//! `import`: load an export into an empty store, stream by stream in the
//! export's order, through the normal append path.

use std::io::BufRead;

use commands::store::{AppendRequest, NewEvent};
use indicatif::ProgressBar;
use serde::Deserialize;

use crate::Ctx;

/// What to import.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The JSON Lines file written by `export`.
    file: std::path::PathBuf,
    /// Required: importing writes to the store.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Deserialize)]
struct Line {
    aggregate_type: String,
    aggregate_id: String,
    sequence: u64,
    event_type: String,
    event_version: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    if !opts.yes {
        anyhow::bail!(
            "import writes every event of {} into the store: pass --yes",
            opts.file.display()
        );
    }
    let existing = ctx.log.count().await?;
    if existing > 0 {
        anyhow::bail!(
            "the target store already holds {existing} events; import needs an empty store"
        );
    }
    let file = std::fs::File::open(&opts.file)?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    if header.trim() == crate::export::HEADER_SEALED {
        anyhow::bail!(
            "{}: its personal fields are sealed with the source store's keys, which this store \
             does not have; export with --clear to move a store (or restore a backup)",
            opts.file.display()
        );
    }
    if header.trim() != crate::export::HEADER {
        anyhow::bail!(
            "{} is not a dirtfree-events v1 export (first line {header:?})",
            opts.file.display()
        );
    }
    let bar = ProgressBar::new_spinner();
    let mut pending: Option<AppendRequest> = None;
    let mut n = 0u64;
    for (i, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 2))?;
        let same_stream = pending.as_ref().is_some_and(|p| {
            p.aggregate_type == l.aggregate_type
                && p.aggregate_id == l.aggregate_id
                && p.expected_sequence + p.events.len() as u64 + 1 == l.sequence
        });
        if !same_stream {
            if let Some(p) = pending.take() {
                n += p.events.len() as u64;
                ctx.log.append(p).await?;
                bar.set_position(n);
            }
            pending = Some(AppendRequest {
                aggregate_type: l.aggregate_type.clone(),
                aggregate_id: l.aggregate_id.clone(),
                expected_sequence: l.sequence.saturating_sub(1),
                events: vec![],
                snapshot: None,
                idempotency: None,
            });
        }
        if let Some(p) = pending.as_mut() {
            p.events.push(NewEvent {
                event_type: l.event_type,
                event_version: l.event_version,
                payload: l.payload,
                metadata: l.metadata,
            });
        }
    }
    if let Some(p) = pending.take() {
        n += p.events.len() as u64;
        ctx.log.append(p).await?;
    }
    bar.finish_and_clear();
    eprintln!("imported {n} events");
    Ok(0)
}

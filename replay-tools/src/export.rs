//! `export`: the whole log as JSON Lines, in global order (format in docs/export-format.md).

use std::io::Write;

use commands::{LogPosition, LogTail};
use indicatif::ProgressBar;

use crate::Ctx;

/// Where to write.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Output file (default: standard output).
    #[arg(long, short)]
    out: Option<std::path::PathBuf>,
}

/// The first line of every export.
pub const HEADER: &str = r#"{"format":"dirtfree-events","version":1}"#;

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let mut out: Box<dyn Write> = match &opts.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let total = ctx.log.count().await?;
    let bar = if opts.out.is_some() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    writeln!(out, "{HEADER}")?;
    let mut tail = LogTail::new(ctx.log.clone(), LogPosition::START, 5_000);
    let mut n = 0u64;
    loop {
        let batch = tail.poll().await?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            let line = serde_json::json!({
                "aggregate_type": e.aggregate_type,
                "aggregate_id": e.aggregate_id,
                "sequence": e.sequence,
                "event_type": e.event_type,
                "event_version": e.event_version,
                "payload": e.payload,
                "metadata": e.metadata,
                "recorded_at": e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        bar.set_position(n);
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("exported {n} events");
    Ok(0)
}

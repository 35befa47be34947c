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
    /// Write customers' personal fields decrypted (to move a store to another engine with
    /// `import`). Without it they stay sealed as stored: the file is then of no use without
    /// this store's keys, and `import` refuses it.
    #[arg(long)]
    clear: bool,
}

/// The first line of an export with personal fields in clear (`--clear`): `import` reads it.
pub const HEADER: &str = r#"{"format":"dirtfree-events","version":1}"#;

/// The first line of an export with personal fields sealed as stored (the default).
pub const HEADER_SEALED: &str =
    r#"{"format":"dirtfree-events","version":1,"personal_data":"sealed"}"#;

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let mut out: Box<dyn Write> = match &opts.out {
        Some(p) => {
            // The export holds password hashes (and with --clear personal data in clear):
            // readable by its owner only, from the first byte.
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)?;
            // An existing file keeps its mode on open: narrow it too.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            if opts.clear {
                eprintln!(
                    "warning: {} holds customers' personal data in clear (--clear) and staff \
                     password hashes; it is readable by you only (0600): keep it so, and \
                     delete it when done",
                    p.display()
                );
            }
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let total = ctx.log.count().await?;
    let bar = if opts.out.is_some() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    writeln!(out, "{}", if opts.clear { HEADER } else { HEADER_SEALED })?;
    // Everything committed before the export started, also events an older open
    // transaction (anywhere in the cluster) still holds back from readers: an empty
    // batch before the target means "wait", not "done".
    let target = ctx.log.committed_head().await?;
    let mut tail = LogTail::new(ctx.log.clone(), LogPosition::START, 5_000);
    if !opts.clear {
        tail = tail.stored();
    }
    let mut at = LogPosition::START;
    let mut n = 0u64;
    loop {
        let batch = tail.poll().await?;
        if batch.is_empty() {
            if at >= target {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        }
        for e in batch {
            at = e.position;
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
    eprintln!(
        "exported {n} events ({})",
        if opts.clear {
            "personal data in clear"
        } else {
            "personal data sealed; `import` needs an export made with --clear"
        }
    );
    Ok(0)
}

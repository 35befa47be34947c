//! `backup`: a consistent copy of the embedded SQLite store, taken while the server serves.
//!
//! SQLite's `VACUUM INTO` writes the database as one read transaction sees it: in WAL mode
//! the server's writers go on meanwhile, and the copy holds every event committed before
//! it started and nothing after (no half of a command). The copy holds customers' personal
//! data and their keys: it is created readable by its owner only. PostgreSQL stores are
//! backed up with PostgreSQL's tools (docs/operations.md).

use std::path::PathBuf;

use crate::Ctx;

/// Where to write.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The backup file to create (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    if !ctx.log.is_embedded() {
        anyhow::bail!(
            "backup copies the embedded SQLite store; back up PostgreSQL with pg_dump \
             (docs/operations.md, \"Backups\")"
        );
    }
    if opts.out.exists() {
        anyhow::bail!("{} exists already: choose a new file", opts.out.display());
    }
    // Created empty and private first, so the copy is never readable by others.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&opts.out)?;
    }
    let path = opts
        .out
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the backup path is not UTF-8"))?
        .to_string();
    // VACUUM INTO refuses an existing non-empty file only; the empty one above is filled.
    ctx.log.copy_embedded_to(&path).await?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&opts.out, std::fs::Permissions::from_mode(0o600))?;
    }
    let events = ctx.log.count().await?;
    eprintln!(
        "backup written to {} ({events} events in the store now; restore: docs/operations.md)",
        opts.out.display()
    );
    Ok(0)
}

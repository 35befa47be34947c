//! `replay-tools`: the operator's view of the event log.
//!
//! One module per subcommand (`Opts` + `run`); destructive ones need `--yes`. A library
//! with a thin binary, so that the tests crate can run the same tool as a process.

mod aggregates;
mod audit;
mod backup;
mod export;
mod import;
mod parked;
mod rebuild;
mod seed;
mod state;
mod status;
mod verify;

use clap::{Parser, Subcommand};
use commands::{DatabaseUrl, EventLog, LogOptions};

/// Inspect, verify, rebuild and move the Dirt Free CRM event log.
#[derive(Debug, Parser)]
#[command(name = "replay-tools", version)]
pub struct Cli {
    /// `postgres://…` or `sqlite://…`; unset → the server's embedded default.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The business's time zone (read models date things in it).
    #[arg(
        long,
        env = "BUSINESS_TIMEZONE",
        default_value = "America/Chicago",
        global = true
    )]
    business_timezone: chrono_tz::Tz,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Head position, each projection's checkpoint, lag and state.
    Status(status::Opts),
    /// Rebuild read models into shadow tables, then swap them in.
    Rebuild(rebuild::Opts),
    /// The full history of one aggregate, with who/when/which request.
    Audit(audit::Opts),
    /// An aggregate's state at a past moment or version.
    State(state::Opts),
    /// Write the whole log as JSON Lines.
    Export(export::Opts),
    /// A consistent copy of the embedded SQLite store, while the server serves.
    Backup(backup::Opts),
    /// Load a JSON Lines export into an empty store.
    Import(import::Opts),
    /// Check the log: sequence gaps, unknown types, unreadable payloads, edits.
    Verify(verify::Opts),
    /// Fill an empty store with the demo business.
    Seed(seed::Opts),
    /// Events a projection refused, parked while the rest went on: list, retry, discard.
    Parked(parked::Opts),
}

/// What every subcommand gets.
#[derive(Debug)]
pub struct Ctx {
    /// The log.
    pub log: EventLog,
    /// Business time zone.
    pub tz: chrono_tz::Tz,
}

async fn open(cli: &Cli) -> anyhow::Result<Ctx> {
    let url = DatabaseUrl::parse(cli.database_url.as_deref())?;
    let log = EventLog::connect(
        &url,
        &LogOptions {
            max_connections: 8,
            ..LogOptions::default()
        },
    )
    .await?;
    Ok(Ctx {
        log,
        tz: cli.business_timezone,
    })
}

/// Runs the command line; returns the process's exit code.
pub async fn main_entry() -> i32 {
    let cli = Cli::parse();
    let result = async {
        let ctx = open(&cli).await?;
        match cli.command {
            Command::Status(o) => status::run(&ctx, o).await,
            Command::Rebuild(o) => rebuild::run(&ctx, o).await,
            Command::Audit(o) => audit::run(&ctx, o).await,
            Command::State(o) => state::run(&ctx, o).await,
            Command::Export(o) => export::run(&ctx, o).await,
            Command::Backup(o) => backup::run(&ctx, o).await,
            Command::Import(o) => import::run(&ctx, o).await,
            Command::Verify(o) => verify::run(&ctx, o).await,
            Command::Seed(o) => seed::run(&ctx, o).await,
            Command::Parked(o) => parked::run(&ctx, o).await,
        }
    }
    .await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}

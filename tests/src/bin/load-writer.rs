//! Appends events as fast as it can and prints `ack <aggregate> <sequence>`
//! after each commit. The crash test kills it with SIGKILL and checks that
//! every acknowledged event is still there.

use std::io::Write;

use commands::{Actor, AggregateStore, DatabaseUrl, EventLog, EventMetadata, LogOptions};
use tests::counter::{Counter, CounterCommand};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: load-writer <DATABASE_URL>"))?;
    let log = EventLog::connect(&DatabaseUrl::parse(Some(&url))?, &LogOptions::default()).await?;
    let store = AggregateStore::<Counter>::new(log, ());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for w in 0..4 {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let id = format!("crash-{w}");
            loop {
                let meta =
                    EventMetadata::new(Actor::System("load-writer".into()), chrono::Utc::now());
                if let Ok(o) = store
                    .execute_retrying(&id, CounterCommand::AddMany(3), &meta, 50)
                    .await
                {
                    for e in o.events {
                        if tx.send(format!("ack {id} {}", e.sequence)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(line) = rx.recv().await {
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

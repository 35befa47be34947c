//! `verify`: sequence gaps, unknown event types, payloads that no longer
//! deserialise, and events edited after they were sealed. Each problem is
//! reported with the event it concerns; the exit code is 1 if any.

use std::collections::{HashMap, HashSet};

use commands::{LogPosition, LogTail};
use projections::{row, Param, ReadDb};
use sha2::{Digest, Sha256};

use crate::aggregates;
use crate::Ctx;

/// Options.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Check only; do not seal events that have no fingerprint yet.
    #[arg(long)]
    no_seal: bool,
}

fn hex_sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// An event's fingerprint as `log_seals` keeps it: its stream, sequence and ordinal, the
/// hash of its content and of the chain up to it.
type Seal = (String, String, i64, i64, String, String);

/// The fingerprints sealed so far, by stream and sequence.
async fn sealed(db: &ReadDb) -> anyhow::Result<HashMap<(String, String, i64), String>> {
    let rows = db
        .query(
            "SELECT aggregate_type, aggregate_id, sequence, content_hash FROM log_seals",
            &[],
        )
        .await?;
    let mut sealed = HashMap::new();
    for r in &rows {
        let key = (
            row::text(r, "aggregate_type")?,
            row::text(r, "aggregate_id")?,
            row::int(r, "sequence")?,
        );
        sealed.insert(key, row::text(r, "content_hash")?);
    }
    Ok(sealed)
}

/// Seals the events that had no fingerprint yet, 500 to a transaction.
async fn seal(db: &ReadDb, to_seal: &[Seal]) -> anyhow::Result<()> {
    for chunk in to_seal.chunks(500) {
        let mut tx = db.begin().await?;
        for (t, id, seq, ord, content, chain) in chunk {
            tx.execute(
                "INSERT INTO log_seals (aggregate_type, aggregate_id, sequence, ordinal, content_hash, chain_hash)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING",
                &[Param::from(t.clone()), id.clone().into(), (*seq).into(), (*ord).into(), content.clone().into(), chain.clone().into()],
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let db = ReadDb::of(&ctx.log);
    let sealed = sealed(&db).await?;
    let mut problems = Vec::new();
    let mut last_seq: HashMap<(String, String), u64> = HashMap::new();
    let mut seen: HashSet<(String, String, i64)> = HashSet::new();
    let mut to_seal: Vec<Seal> = Vec::new();
    let mut chain = String::new();
    let mut ordinal = 0i64;
    // The hash chain covers the stored bytes (personal fields encrypted);
    // decoding checks the events as readers see them.
    let mut tail = LogTail::new(ctx.log.clone(), LogPosition::START, 5_000).stored();
    // As export: everything committed before the start, held-back events included.
    let target = ctx.log.committed_head().await?;
    let mut reached = LogPosition::START;
    loop {
        let batch = tail.poll().await?;
        if batch.is_empty() {
            if reached >= target {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        }
        if let Some(last) = batch.last() {
            reached = last.position;
        }
        let opened = commands::store::personal::open(&ctx.log, batch.clone()).await?;
        for (e, readable) in batch.into_iter().zip(opened) {
            ordinal += 1;
            let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
            let prev = last_seq.insert(key, e.sequence).unwrap_or(0);
            let at = format!(
                "{} {} #{} ({} v{}) at {}",
                e.aggregate_type,
                e.aggregate_id,
                e.sequence,
                e.event_type,
                e.event_version,
                e.position
            );
            if e.sequence != prev + 1 {
                problems.push(format!("sequence gap: {at} follows #{prev}"));
            }
            if !domain::catalogue::is_known_event_type(
                &e.aggregate_type,
                &e.event_type,
                &e.event_version,
            ) {
                problems.push(format!("unknown event type: {at}"));
            } else if let Some(decode) = aggregates::decode_fn(&e.aggregate_type) {
                if let Err(err) = decode(&ctx.log, readable, ctx.tz) {
                    problems.push(format!("payload does not deserialise: {at}: {err}"));
                }
            }
            let content = hex_sha(&[
                &e.aggregate_type,
                &e.aggregate_id,
                &e.sequence.to_string(),
                &e.event_type,
                &e.event_version,
                &e.payload.to_string(),
                &e.metadata.to_string(),
            ]);
            chain = hex_sha(&[&chain, &content]);
            let skey = (
                e.aggregate_type.clone(),
                e.aggregate_id.clone(),
                e.sequence as i64,
            );
            match sealed.get(&skey) {
                Some(h) if *h != content => {
                    problems.push(format!("edited after it was sealed: {at}"))
                }
                Some(_) => {}
                None => to_seal.push((
                    skey.0.clone(),
                    skey.1.clone(),
                    skey.2,
                    ordinal,
                    content,
                    chain.clone(),
                )),
            }
            seen.insert(skey);
        }
    }
    for k in sealed.keys() {
        if !seen.contains(k) {
            problems.push(format!(
                "sealed event missing from the log (deleted?): {} {} #{}",
                k.0, k.1, k.2
            ));
        }
    }
    for p in &problems {
        println!("{p}");
    }
    if !opts.no_seal {
        seal(&db, &to_seal).await?;
    }
    eprintln!(
        "verified {ordinal} events: {} problem(s); {} newly sealed; chain head {}",
        problems.len(),
        if opts.no_seal { 0 } else { to_seal.len() },
        if chain.is_empty() { "-" } else { &chain[..16] }
    );
    Ok(i32::from(!problems.is_empty()))
}

//! `replay-tools rebuild --all --diff` as a library call: every projection rebuilt from
//! the whole log into shadow tables and compared with the live ones, nothing swapped.
//! The CLI is another crate's binary (tests cannot name it), so this makes the same
//! `ProjectionRunner::rebuild_many` call it makes.

use std::collections::BTreeSet;
use std::sync::Mutex;

use commands::EventLog;
use projections::{Dump, ProjectionRunner};

/// Brings the live read models up to the head of the log (stop the server first, so that
/// nothing writes meanwhile), rebuilds every projection beside them and returns, for each
/// that differs, its name and the rows only one side has (at most 10 per table and side).
/// Empty when the live read models equal a clean rebuild.
///
/// # Errors
/// The catch-up's or the rebuild's error, as text (a projection that cannot apply an event
/// fails both).
pub async fn differences_from_a_clean_rebuild(
    log: &EventLog,
    tz: chrono_tz::Tz,
) -> Result<Vec<String>, String> {
    let runner = ProjectionRunner::new(log.clone(), tz);
    runner
        .prepare()
        .await
        .map_err(|e| format!("prepare: {e}"))?;
    runner
        .catch_up_all()
        .await
        .map_err(|e| format!("catching the live read models up: {e}"))?;
    let names = runner.names();
    let found = Mutex::new(Vec::new());
    runner
        .rebuild_many(
            &names,
            &|_| {},
            Some(&|name: &str, live: &Dump, shadow: &Dump| {
                if live != shadow {
                    found
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{name}:\n{}", rows_only_one_side_has(live, shadow)));
                }
                // As without `--yes`: compare, never swap.
                false
            }),
        )
        .await
        .map_err(|e| format!("rebuild --all: {e}"))?;
    Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// The rows only one side has, per table (at most 10 each), and the row counts when they
/// differ.
pub fn rows_only_one_side_has(live: &Dump, shadow: &Dump) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for table in live.keys().chain(shadow.keys()).collect::<BTreeSet<_>>() {
        let l = live.get(table).unwrap_or(&empty);
        let s = shadow.get(table).unwrap_or(&empty);
        let only = |a: &Vec<String>, b: &Vec<String>| -> Vec<String> {
            let b: BTreeSet<&String> = b.iter().collect();
            a.iter()
                .filter(|r| !b.contains(r))
                .take(10)
                .cloned()
                .collect()
        };
        for r in only(l, s) {
            out.push_str(&format!("    {table} live only:    {}\n", clip(&r)));
        }
        for r in only(s, l) {
            out.push_str(&format!("    {table} rebuild only: {}\n", clip(&r)));
        }
        if l.len() != s.len() {
            out.push_str(&format!(
                "    {table}: {} rows live, {} rebuilt\n",
                l.len(),
                s.len()
            ));
        }
    }
    out
}

/// A row cut to 300 characters (a row may hold a megabyte of hostile text).
fn clip(row: &str) -> String {
    match row.char_indices().nth(300) {
        Some((i, _)) => format!("{}… ({} chars)", &row[..i], row.chars().count()),
        None => row.to_string(),
    }
}

//! `rebuild`: fill shadow tables from the start of the log while the live
//! read model keeps serving, then swap.

use indicatif::{ProgressBar, ProgressStyle};
use projections::ProjectionRunner;

use crate::Ctx;

/// Which projections, and whether to swap.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The projection to rebuild.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    projection: Option<String>,
    /// Rebuild every projection.
    #[arg(long)]
    all: bool,
    /// Show how the shadow differs from the live tables before swapping.
    #[arg(long)]
    diff: bool,
    /// Swap the rebuilt tables in (without it, nothing live changes).
    #[arg(long)]
    yes: bool,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    let runner = ProjectionRunner::new(ctx.log.clone(), ctx.tz);
    runner.prepare().await?;
    let names: Vec<String> = if opts.all {
        runner.names().into_iter().map(str::to_string).collect()
    } else {
        opts.projection.into_iter().collect()
    };
    let total = ctx.log.count().await?;
    // One pass over the log for all of them (see ProjectionRunner::rebuild_many).
    let bar = ProgressBar::new(total).with_message(if names.len() == 1 {
        names[0].clone()
    } else {
        format!("{} projections", names.len())
    });
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} events {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (diff, yes) = (opts.diff, opts.yes);
    let changed = std::sync::Mutex::new(std::collections::BTreeSet::<String>::new());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let done = runner
        .rebuild_many(
            &refs,
            &|n| bar.set_position(n),
            Some(
                &|name: &str, live: &projections::Dump, shadow: &projections::Dump| {
                    if live != shadow {
                        if let Ok(mut c) = changed.lock() {
                            c.insert(name.to_string());
                        }
                    }
                    if diff {
                        print_diff(live, shadow);
                    }
                    yes
                },
            ),
        )
        .await?;
    bar.finish_and_clear();
    let changed = changed.into_inner().unwrap_or_default();
    for (name, applied) in &done {
        println!(
            "{name}: {applied} events applied; shadow {} live; {}",
            if changed.contains(name) {
                "differs from"
            } else {
                "identical to"
            },
            if yes {
                "swapped in"
            } else {
                "not swapped (pass --yes)"
            }
        );
    }
    println!(
        "{} projection(s) rebuilt from {total} events in {:.1} s",
        done.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(i32::from(!changed.is_empty() && !opts.yes))
}

fn print_diff(
    live: &std::collections::BTreeMap<String, Vec<String>>,
    shadow: &std::collections::BTreeMap<String, Vec<String>>,
) {
    for (table, rows) in shadow {
        let empty = Vec::new();
        let old = live.get(table).unwrap_or(&empty);
        let old_set: std::collections::BTreeSet<&String> = old.iter().collect();
        let new_set: std::collections::BTreeSet<&String> = rows.iter().collect();
        for r in old_set.difference(&new_set) {
            println!("- {table}: {r}");
        }
        for r in new_set.difference(&old_set) {
            println!("+ {table}: {r}");
        }
    }
}

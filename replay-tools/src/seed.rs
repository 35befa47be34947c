//! `seed`: fill an empty store with the demo business, through the same
//! commands a user would issue, deterministic from a seed number.

use commands::app::Crm;
use commands::policies::PolicyRunner;
use demo_data::Scale;
use domain::loyalty::LoyaltyRules;
use domain::ports::DomainServices;

use crate::Ctx;

/// How much and from which seed.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The seed number: the same seed gives the same business.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// `small` (30 customers) or `full` (500 customers, 3,000 jobs).
    #[arg(long, default_value = "full")]
    scale: String,
    /// Required: seeding writes to the store.
    #[arg(long)]
    yes: bool,
}

pub async fn run(ctx: &Ctx, opts: Opts) -> anyhow::Result<i32> {
    if !opts.yes {
        anyhow::bail!("seeding writes a demo business into the store: pass --yes");
    }
    let scale = match opts.scale.as_str() {
        "small" => Scale::Small,
        "full" => Scale::Full,
        other => anyhow::bail!("--scale {other:?}: expected small or full"),
    };
    let crm = Crm::new(
        ctx.log.clone(),
        DomainServices::new(ctx.tz, LoyaltyRules::default()),
    );
    let summary = demo_data::seed(&crm, opts.seed, scale).await?;
    PolicyRunner::new(crm)
        .run_until_caught_up()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    println!("{summary:#?}");
    Ok(0)
}

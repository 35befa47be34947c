//! Loyalty: the policies award points for completed jobs; at the end some
//! customers redeem theirs and a few get a goodwill award.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::ids::{CustomerId, LoyaltyAccountId};
use domain::loyalty::LoyaltyCommand;
use domain::Actor as DomainActor;
use rand::Rng;

use crate::plan::{Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// What one customer does with their points at the end.
#[derive(Debug, Clone)]
pub(crate) struct LoyaltyTouch {
    customer: CustomerId,
    redeem: bool,
    award: bool,
}

/// Per customer, in lane order: redeem (three in ten), a goodwill award (one in twenty).
pub(crate) fn plan(p: &mut Planner) {
    let at = p.last() - Duration::minutes(10);
    for lane in 0..p.customers.len() {
        let (redeem, award) = (p.rng.gen_bool(0.3), p.rng.gen_bool(0.05));
        if redeem || award {
            let step = Step::Loyalty(LoyaltyTouch {
                customer: p.customers[lane].0,
                redeem,
                award,
            });
            p.closing_steps.push(Timed { at, lane, step });
        }
    }
}

/// The award (the manager's), then a redemption if the balance allows it.
pub(crate) async fn touch(ctx: &Ctx, t: DateTime<Utc>, l: &LoyaltyTouch) -> Result<(), AppError> {
    let (accounts, m) = (ctx.crm.loyalty_accounts(), meta(t));
    let id = LoyaltyAccountId::for_customer(l.customer);
    let account = accounts.load(id).await?.aggregate;
    if account.customer_id().is_none() {
        return Ok(());
    }
    if l.award {
        let cmd = LoyaltyCommand::Award {
            points: 50,
            reason: "Apology for a late arrival".into(),
        };
        accounts.execute(id, ctx.manager(), cmd, &m).await?;
    }
    if l.redeem && account.balance() >= 150 {
        let cmd = LoyaltyCommand::Redeem {
            points: 100,
            reward: "$10 off the next cleaning".into(),
        };
        let customer = DomainActor::Customer { id: l.customer };
        accounts.execute(id, customer, cmd, &m).await?;
    }
    Ok(())
}

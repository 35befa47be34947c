//! Portal accounts: some customers register for the self-service portal
//! and come back now and then to look at their loyalty points.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::ids::{CustomerId, PortalAccountId};
use domain::portal::{PortalAccountCommand, PortalActivity};
use domain::Actor as DomainActor;
use rand::Rng;

use crate::plan::{between, Planner, Step, Timed};
use crate::run::{meta, Ctx};
use crate::DEMO_PASSWORD_HASH;

/// Four in ten customers register within two months of joining, then visit up to three times.
pub(crate) fn plan(p: &mut Planner, lane: usize, customer: CustomerId, joined: DateTime<Utc>) {
    if !p.rng.gen_bool(0.4) {
        return;
    }
    let t = joined + Duration::days(p.rng.gen_range(1..60));
    if t >= p.end {
        return;
    }
    p.customer_steps.push(Timed {
        at: t,
        lane,
        step: Step::RegisterPortal { customer },
    });
    p.summary.portal_accounts += 1;
    for _ in 0..p.rng.gen_range(0..4) {
        let v = between(&mut p.rng, t + Duration::hours(1), p.end);
        p.customer_steps.push(Timed {
            at: v,
            lane,
            step: Step::PortalVisit { customer },
        });
    }
}

/// Registers the customer's account (placeholder password hash) and signs in.
pub(crate) async fn register(
    ctx: &Ctx,
    t: DateTime<Utc>,
    customer: CustomerId,
) -> Result<(), AppError> {
    let (accounts, m) = (ctx.crm.portal_accounts(), meta(t));
    let id = PortalAccountId::for_customer(customer);
    let actor = DomainActor::Customer { id: customer };
    let cmd = PortalAccountCommand::Register {
        customer_id: customer,
        password_hash: DEMO_PASSWORD_HASH.into(),
    };
    accounts.execute(id, actor, cmd, &m).await?;
    accounts
        .execute(id, actor, PortalAccountCommand::RecordLogin, &m)
        .await?;
    Ok(())
}

/// Signs in and looks at the loyalty page.
pub(crate) async fn visit(
    ctx: &Ctx,
    t: DateTime<Utc>,
    customer: CustomerId,
) -> Result<(), AppError> {
    let (accounts, m) = (ctx.crm.portal_accounts(), meta(t));
    let id = PortalAccountId::for_customer(customer);
    let actor = DomainActor::Customer { id: customer };
    accounts
        .execute(id, actor, PortalAccountCommand::RecordLogin, &m)
        .await?;
    let cmd = PortalAccountCommand::RecordActivity {
        activity: PortalActivity::ViewedLoyalty,
    };
    accounts.execute(id, actor, cmd, &m).await?;
    Ok(())
}

//! Card payments for completed jobs: an intent, then the provider's answer a
//! minute later (a few declined).

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::ids::{CustomerId, JobId, PaymentId};
use domain::payment::PaymentCommand;
use domain::Actor as DomainActor;
use rand::Rng;

use crate::plan::{uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A payment for a completed job; `fails` when the card is declined.
#[derive(Debug, Clone)]
pub(crate) struct Payment {
    payment: PaymentId,
    job: JobId,
    customer: CustomerId,
    amount_cents: i64,
    fails: bool,
}

/// Two in three completed jobs are paid by card five minutes after the work.
pub(crate) fn plan(
    p: &mut Planner,
    job: JobId,
    customer: CustomerId,
    lane: usize,
    done: DateTime<Utc>,
    amount_cents: i64,
) {
    if !p.rng.gen_bool(0.65) {
        return;
    }
    let step = Step::Pay(Payment {
        payment: PaymentId(uuid(&mut p.rng)),
        job,
        customer,
        amount_cents,
        fails: p.rng.gen_bool(0.04),
    });
    p.customer_steps.push(Timed {
        at: done + Duration::minutes(5),
        lane,
        step,
    });
}

/// The payment intent, then its success or failure as the provider's webhook reports it.
pub(crate) async fn pay(ctx: &Ctx, t: DateTime<Utc>, p: &Payment) -> Result<(), AppError> {
    let (payments, sys, m) = (ctx.crm.payments(), DomainActor::System, meta(t));
    let cmd = PaymentCommand::CreateIntent {
        payment_id: p.payment,
        job_id: p.job,
        customer_id: p.customer,
        amount_cents: p.amount_cents,
        provider_intent_id: format!("pi_demo_{}", p.payment.0.simple()),
    };
    payments.execute(p.payment, sys, cmd, &m).await?;
    let evt = format!("evt_demo_{}", &p.payment.0.simple().to_string()[..16]);
    let cmd = if p.fails {
        PaymentCommand::RecordFailed {
            provider_event_id: evt,
            reason: "card_declined".into(),
        }
    } else {
        PaymentCommand::RecordSucceeded {
            provider_event_id: evt,
        }
    };
    ctx.later(
        t + Duration::minutes(1),
        payments.execute(p.payment, sys, cmd, &m),
    )
    .await?;
    Ok(())
}

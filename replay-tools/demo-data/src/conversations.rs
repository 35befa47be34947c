//! Chat-widget conversations: a customer asks to book, the bot answers, some
//! are handed off to staff, all are closed ten minutes later.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::conversation::{ConversationCommand, Intent, Sender};
use domain::ids::{ConversationId, CustomerId};
use domain::Actor as DomainActor;
use rand::Rng;

use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A conversation with a customer; `hand_off` when the bot passes it to staff.
#[derive(Debug, Clone)]
pub(crate) struct Chat {
    id: ConversationId,
    customer: CustomerId,
    hand_off: bool,
}

/// Conversations with random customers, any time after they joined.
pub(crate) fn plan(p: &mut Planner) {
    for _ in 0..p.sizes.conversations {
        let (cid, joined, _) = p.customers[p.rng.gen_range(0..p.customers.len())];
        let t = between(&mut p.rng, joined + Duration::hours(1), p.end);
        let step = Step::Conversation(Chat {
            id: ConversationId(uuid(&mut p.rng)),
            customer: cid,
            hand_off: p.rng.gen_bool(0.3),
        });
        p.customer_steps.push(Timed {
            at: t,
            lane: p.lane_of(cid),
            step,
        });
    }
}

/// Started, the customer's message and its detected intent, the bot's reply,
/// maybe a hand-off, and the close.
pub(crate) async fn converse(ctx: &Ctx, t: DateTime<Utc>, c: &Chat) -> Result<(), AppError> {
    let (conv, sys, m, id) = (ctx.crm.conversations(), DomainActor::System, meta(t), c.id);
    let start = ConversationCommand::Start {
        conversation_id: id,
        customer_id: Some(c.customer),
    };
    conv.execute(id, sys, start, &m).await?;
    let msg = |sender, text: &str| ConversationCommand::AddMessage {
        sender,
        text: text.into(),
    };
    let ask = msg(
        Sender::Customer,
        "Hi, can I book a carpet cleaning next week?",
    );
    conv.execute(id, sys, ask, &m).await?;
    let intent = ConversationCommand::DetectIntent {
        intent: Intent::Book,
        confidence_percent: 87,
    };
    conv.execute(id, sys, intent, &m).await?;
    let reply = msg(Sender::Bot, "Sure! Which day works best for you?");
    ctx.later(t + Duration::seconds(5), conv.execute(id, sys, reply, &m))
        .await?;
    if c.hand_off {
        let cmd = ConversationCommand::HandOff { to_staff: None };
        ctx.later(t + Duration::minutes(2), conv.execute(id, sys, cmd, &m))
            .await?;
    }
    ctx.later(
        t + Duration::minutes(10),
        conv.execute(id, sys, ConversationCommand::Close, &m),
    )
    .await?;
    Ok(())
}

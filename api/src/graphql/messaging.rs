//! The chat widget's conversations (customer, bot and staff in one thread, handed to staff
//! when the bot cannot help) and the log of outbound messages (SMS and email).

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use domain::conversation::{ConversationCommand, Intent as DomainIntent, Sender};
use domain::ids::{ConversationId, StaffUserId};
use domain::ports::Role;
use projections::crm::conversations::{self, ConversationRow};
use projections::crm::messages::MessageRow;

use super::command::{self, settle};
use super::context::{self, parts, Allow, Principal};
use super::customers::{customer_id, StaffOnly};
use super::errors;
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

/// A chat conversation.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Conversation {
    /// Id.
    pub id: ID,
    /// The customer, when signed in.
    pub customer_id: Option<ID>,
    /// `open`, `handed_off` or `closed`.
    pub status: String,
    /// What the bot thinks the customer wants (`book`, `reschedule`, `question`; staff only).
    #[graphql(guard = "StaffOnly")]
    pub intent: Option<String>,
    /// The bot's confidence in it, percent (staff only).
    #[graphql(guard = "StaffOnly")]
    pub intent_confidence: Option<i64>,
    /// The staff user it was handed to (staff only).
    #[graphql(guard = "StaffOnly")]
    pub assigned_staff_id: Option<ID>,
    /// Messages so far.
    pub message_count: i64,
    /// Started (RFC 3339).
    pub started_at: String,
    /// Last message.
    pub last_message_at: Option<String>,
    /// Closed.
    pub closed_at: Option<String>,
}

fn conversation(r: &ConversationRow) -> Conversation {
    Conversation {
        id: ID(r.conversation_id.clone()),
        customer_id: r.customer_id.clone().map(ID),
        status: r.status.clone(),
        intent: r.intent.clone(),
        intent_confidence: r.intent_confidence,
        assigned_staff_id: r.assigned_staff_id.clone().map(ID),
        message_count: r.message_count,
        started_at: r.started_at.clone(),
        last_message_at: r.last_message_at.clone(),
        closed_at: r.closed_at.clone(),
    }
}

/// One message in a conversation.
#[derive(Debug, Clone, SimpleObject)]
pub struct ChatMessage {
    /// `customer`, `bot` or `staff`.
    pub sender: String,
    /// The staff user, for staff messages.
    pub staff_id: Option<ID>,
    /// The text.
    pub text: String,
    /// When (RFC 3339).
    pub at: String,
}

#[async_graphql::ComplexObject]
impl Conversation {
    /// The messages, oldest first (read from the conversation's own history), a
    /// page at a time: `last: 20` for the newest twenty.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<ChatMessage>> {
        let (state, rc) = parts(ctx)?;
        let events = state
            .log
            .load_stream(domain::conversation::AGGREGATE_TYPE, &self.id, 0)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let all = events
            .iter()
            .filter(|e| e.event_type == "MessageAdded")
            .filter_map(|e| e.payload.get("MessageAdded"))
            .map(chat_message)
            .collect();
        paging::of_vec(all, PageArgs::new(after, before, first, last)).await
    }
}

/// A `MessageAdded` body as a chat message.
pub(super) fn chat_message(m: &serde_json::Value) -> ChatMessage {
    let sender = m.get("sender");
    let text =
        |v: Option<&serde_json::Value>| v.and_then(|t| t.as_str()).unwrap_or_default().to_string();
    ChatMessage {
        sender: text(sender.and_then(|x| x.get("kind"))),
        staff_id: sender
            .and_then(|x| x.get("id"))
            .and_then(|k| k.as_str())
            .map(|k| ID(k.to_string())),
        text: text(m.get("text")),
        at: text(m.get("at")),
    }
}

async fn load_conversation(state: &AppState, id: &str) -> Option<Conversation> {
    conversations::get(state.projections.db(), id)
        .await
        .ok()?
        .as_ref()
        .map(conversation)
}

/// An outbound SMS or email and what became of it. The body and address stay in the
/// message's history (personal data); read them in its audit trail.
#[derive(Debug, Clone, SimpleObject)]
pub struct OutboundMessage {
    /// Id.
    pub id: ID,
    /// Why: `offer`, `promotion`, `review_request`, `review_reminder`, `password_reset`,
    /// `scheduled_report`, `test`, `contact_confirmation`, `alert`.
    pub kind: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The customer it went to (none for staff recipients).
    pub customer_id: Option<ID>,
    /// The event that caused it.
    pub cause: String,
    /// `queued`, `held` (marketing waiting for the end of quiet hours), `sending`, `retrying`,
    /// `sent` or `not_sent`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// `twilio` or `resend`.
    pub provider: Option<String>,
    /// The vendor's id.
    pub provider_message_id: Option<String>,
    /// The vendor's last delivery report (`delivered`, `bounced`…).
    pub delivery_status: Option<String>,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// Why it was not sent (`not_eligible`, `no_provider_configured`, `retries_exhausted`,
    /// `outcome_unknown`).
    pub not_sent_reason: Option<String>,
    /// Queued (RFC 3339).
    pub queued_at: String,
    /// Last change.
    pub updated_at: String,
}

fn outbound(r: &MessageRow) -> OutboundMessage {
    OutboundMessage {
        id: ID(r.message_id.clone()),
        kind: r.kind.clone(),
        channel: r.channel.clone(),
        customer_id: r.customer_id.clone().map(ID),
        cause: r.cause.clone(),
        status: r.status.clone(),
        attempts: r.attempts,
        provider: r.provider.clone(),
        provider_message_id: r.provider_message_id.clone(),
        delivery_status: r.delivery_status.clone(),
        last_error: r.last_error.clone(),
        not_sent_reason: r.not_sent_reason.clone(),
        queued_at: r.queued_at.clone(),
        updated_at: r.updated_at.clone(),
    }
}

/// Conversation and message queries.
#[derive(Debug, Default)]
pub struct MessagingQuery;

#[Object]
impl MessagingQuery {
    /// Conversations, newest first, optionally by status or customer (staff).
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        customer_id: Option<ID>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Conversation>> {
        let (state, rc) = parts(ctx)?;
        paging::of_listing(
            state,
            rc,
            conversations::list(
                &status.unwrap_or_default(),
                &customer_id.map(|c| c.0).unwrap_or_default(),
            ),
            PageArgs::new(after, before, first, last),
            conversation,
        )
        .await
    }

    /// One conversation with its messages (staff; a portal customer only their own).
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Conversation>> {
        let (state, rc) = parts(ctx)?;
        let found = load_conversation(state, &id).await;
        match (&rc.principal, &found) {
            (Some(Principal::Customer { id: me }), Some(c))
                if c.customer_id.as_ref().map(|x| x.as_str()) == Some(me.to_string().as_str()) =>
            {
                Ok(found)
            }
            // Someone else's, or (like `job`) unknown: a portal customer learns nothing about
            // ids that are not theirs.
            (Some(Principal::Customer { .. }), _) => {
                Err(errors::forbidden("read another customer's conversation"))
            }
            // Staff: the guard admitted no one else.
            _ => Ok(found),
        }
    }

    /// The signed-in portal customer's conversations, newest first.
    #[graphql(guard = "Allow::Customer")]
    async fn my_conversations(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Conversation>> {
        let (state, rc) = parts(ctx)?;
        let (me, _, _) = context::customer(rc)?;
        paging::of_listing(
            state,
            rc,
            conversations::list("", &me.to_string()),
            PageArgs::new(after, before, first, last),
            conversation,
        )
        .await
    }

    /// Outbound SMS and email, newest first, by status, kind or customer (managers).
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn outbound_messages(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        kind: Option<String>,
        customer_id: Option<ID>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<OutboundMessage>> {
        let (state, rc) = parts(ctx)?;
        paging::of_listing(
            state,
            rc,
            projections::crm::messages::list(
                &status.unwrap_or_default(),
                &kind.unwrap_or_default(),
                &customer_id.map(|c| c.0).unwrap_or_default(),
            ),
            PageArgs::new(after, before, first, last),
            outbound,
        )
        .await
    }
}

/// What the customer wants.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::conversation::Intent")]
pub enum Intent {
    /// Book a service.
    Book,
    /// Move an appointment.
    Reschedule,
    /// Ask a question.
    Question,
}

/// Opening a conversation.
#[derive(InputObject, Debug)]
pub struct StartConversationInput {
    /// The customer (staff only; a portal customer always opens their own).
    pub customer_id: Option<ID>,
    /// The first message, if any.
    pub text: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A message in a conversation.
#[derive(InputObject, Debug)]
pub struct AddConversationMessageInput {
    /// Conversation.
    pub conversation_id: ID,
    /// The text (up to 4,000 characters).
    pub text: String,
    /// Staff only: write as the bot (the chatbot service signs in as a staff user).
    #[graphql(default = false)]
    pub as_bot: bool,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The bot's classification of the customer's request.
#[derive(InputObject, Debug)]
pub struct DetectConversationIntentInput {
    /// Conversation.
    pub conversation_id: ID,
    /// The intent.
    pub intent: Intent,
    /// Confidence, whole percent 0–100.
    pub confidence_percent: i32,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Handing a conversation to a person.
#[derive(InputObject, Debug)]
pub struct HandOffConversationInput {
    /// Conversation.
    pub conversation_id: ID,
    /// A staff user to take it (staff only; default: whoever picks it up).
    pub to_staff_id: Option<ID>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A conversation, by id.
#[derive(InputObject, Debug)]
pub struct ConversationRefInput {
    /// Conversation.
    pub conversation_id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The conversation after a change.
#[derive(SimpleObject, Debug)]
pub struct ConversationPayload {
    /// As the read model now shows it.
    pub conversation: Option<Conversation>,
    /// Log position of the last event (for `sync`).
    pub position: String,
}

fn conversation_id(field: &str, id: &ID) -> async_graphql::Result<ConversationId> {
    ConversationId::parse(id).map_err(|_| errors::invalid(field, "not a conversation id"))
}

/// Runs conversation commands, in order, as the signed-in staff user or portal customer
/// (the guard checked the role); the domain refuses a customer acting on someone else's
/// conversation.
async fn run(
    ctx: &Context<'_>,
    id: ConversationId,
    key: Option<&String>,
    cmds: Vec<ConversationCommand>,
) -> async_graphql::Result<ConversationPayload> {
    let (state, rc) = parts(ctx)?;
    let by = context::actor(rc)?;
    let mut last = None;
    for (k, cmd) in cmds.into_iter().enumerate() {
        // Later steps of one request get their own keys, so a retry repeats none of them.
        let step_key = match k {
            0 => key.cloned(),
            k => key.map(|first| format!("{first}:{k}")),
        };
        let on = state.crm.conversations();
        last = Some(command::run(rc, on, id, by.clone(), step_key.as_ref(), cmd).await?);
    }
    let position = match &last {
        Some(out) => settle(state, out).await,
        None => String::new(),
    };
    Ok(ConversationPayload {
        conversation: load_conversation(state, &id.to_string()).await,
        position,
    })
}

fn sender(rc: &context::RequestCtx, as_bot: bool) -> async_graphql::Result<Sender> {
    match (&rc.principal, as_bot) {
        (Some(Principal::Customer { .. }), false) => Ok(Sender::Customer),
        (Some(Principal::Customer { .. }), true) => Err(errors::forbidden("write as the bot")),
        (Some(Principal::Staff { .. }), true) => Ok(Sender::Bot),
        (Some(Principal::Staff { id, .. }), false) => Ok(Sender::Staff { id: *id }),
        (None, _) => Err(errors::unauthenticated()),
    }
}

/// Conversation mutations.
#[derive(Debug, Default)]
pub struct MessagingMutation;

#[Object]
impl MessagingMutation {
    /// Opens a conversation: a portal customer their own (from the chat widget), staff one
    /// with any customer. An optional first message is added with it.
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn start_conversation(
        &self,
        ctx: &Context<'_>,
        input: StartConversationInput,
    ) -> async_graphql::Result<ConversationPayload> {
        let (state, rc) = parts(ctx)?;
        let customer = match (&rc.principal, &input.customer_id) {
            (Some(Principal::Customer { id }), None) => Some(*id),
            (Some(Principal::Customer { id }), Some(given)) => {
                let given = customer_id("customerId", given)?;
                if given != *id {
                    return Err(errors::forbidden("open a conversation for someone else"));
                }
                Some(given)
            }
            (_, given) => given
                .as_ref()
                .map(|g| customer_id("customerId", g))
                .transpose()?,
        };
        // Checked before anything is recorded: a bad first message must not leave an empty
        // conversation behind.
        if let Some(t) = &input.text {
            if t.trim().is_empty() || t.chars().count() > 4_000 {
                return Err(errors::invalid("text", "1 to 4,000 characters"));
            }
        }
        let first = match &input.text {
            Some(t) => Some(ConversationCommand::AddMessage {
                sender: sender(rc, false)?,
                text: t.clone(),
            }),
            None => None,
        };
        let id = ConversationId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        let mut cmds = vec![ConversationCommand::Start {
            conversation_id: id,
            customer_id: customer,
        }];
        cmds.extend(first);
        run(ctx, id, input.idempotency_key.as_ref(), cmds).await
    }

    /// Adds a message: as the customer in the portal, as yourself (staff), or as the bot.
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn add_conversation_message(
        &self,
        ctx: &Context<'_>,
        input: AddConversationMessageInput,
    ) -> async_graphql::Result<ConversationPayload> {
        let (_, rc) = parts(ctx)?;
        let id = conversation_id("conversationId", &input.conversation_id)?;
        let sender = sender(rc, input.as_bot)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            vec![ConversationCommand::AddMessage {
                sender,
                text: input.text,
            }],
        )
        .await
    }

    /// Records what the bot thinks the customer wants (staff: the chatbot service).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn detect_conversation_intent(
        &self,
        ctx: &Context<'_>,
        input: DetectConversationIntentInput,
    ) -> async_graphql::Result<ConversationPayload> {
        let id = conversation_id("conversationId", &input.conversation_id)?;
        let confidence = u8::try_from(input.confidence_percent)
            .ok()
            .filter(|c| *c <= 100)
            .ok_or_else(|| errors::invalid("confidencePercent", "must be 0-100"))?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            vec![ConversationCommand::DetectIntent {
                intent: DomainIntent::from(input.intent),
                confidence_percent: confidence,
            }],
        )
        .await
    }

    /// Hands the conversation to staff: the customer asks for a person, or the bot or a
    /// staff user passes it on (optionally to someone).
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn hand_off_conversation(
        &self,
        ctx: &Context<'_>,
        input: HandOffConversationInput,
    ) -> async_graphql::Result<ConversationPayload> {
        let (_, rc) = parts(ctx)?;
        let id = conversation_id("conversationId", &input.conversation_id)?;
        let to_staff = match &input.to_staff_id {
            Some(t) => {
                // Only on this input: the guard admits the customer too, who may ask for a
                // person but not choose one.
                if matches!(rc.principal, Some(Principal::Customer { .. })) {
                    return Err(errors::forbidden("choose who takes a conversation"));
                }
                Some(
                    StaffUserId::parse(t)
                        .map_err(|_| errors::invalid("toStaffId", "not a staff user id"))?,
                )
            }
            None => None,
        };
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            vec![ConversationCommand::HandOff { to_staff }],
        )
        .await
    }

    /// Closes the conversation (the customer or staff).
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn close_conversation(
        &self,
        ctx: &Context<'_>,
        input: ConversationRefInput,
    ) -> async_graphql::Result<ConversationPayload> {
        let id = conversation_id("conversationId", &input.conversation_id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            vec![ConversationCommand::Close],
        )
        .await
    }
}

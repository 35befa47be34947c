//! The conversations read model.

use domain::conversation::ConversationEvent;

use super::prelude::*;

/// Chat conversations from the portal widget: the inbox staff work from. Message text
/// stays in the stream; the row holds status, intent and counts.
#[derive(Debug)]
pub struct Conversations;

const CONVERSATIONS: &[&str] = &["conversations"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::conversation::AGGREGATE_TYPE];

impl Projection for Conversations {
    fn name(&self) -> &'static str {
        "conversations"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        CONVERSATIONS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {conversations} (
                conversation_id TEXT PRIMARY KEY, customer_id TEXT, status TEXT NOT NULL,
                intent TEXT, intent_confidence BIGINT, assigned_staff_id TEXT,
                message_count BIGINT NOT NULL DEFAULT 0, started_at TEXT NOT NULL,
                last_message_at TEXT, closed_at TEXT)",
            "CREATE INDEX {conversations}_started_{gen} ON {conversations} (started_at)",
            "CREATE INDEX {conversations}_customer_{gen} ON {conversations} (customer_id)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::Conversation(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let t = CONVERSATIONS;
            let id = e.aggregate_id.clone();
            match event {
                ConversationEvent::ConversationStarted {
                    customer_id, at, ..
                } => {
                    exec(tx, ctx, t, "INSERT INTO {conversations} (conversation_id, customer_id, status, started_at)
                        VALUES ($1, $2, 'open', $3) ON CONFLICT (conversation_id) DO NOTHING",
                        &[id.into(), customer_id.map(|c| c.to_string()).into(), rfc3339(*at).into()]).await?;
                }
                ConversationEvent::MessageAdded { at, .. } => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET message_count = message_count + 1, last_message_at = $2 WHERE conversation_id = $1",
                        &[id.into(), rfc3339(*at).into()]).await?;
                }
                ConversationEvent::IntentDetected {
                    intent,
                    confidence_percent,
                    ..
                } => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET intent = $2, intent_confidence = $3 WHERE conversation_id = $1",
                        &[id.into(), text(intent).into(), i64::from(*confidence_percent).into()]).await?;
                }
                ConversationEvent::ConversationHandedOff { to_staff, .. } => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET status = 'handed_off', assigned_staff_id = $2 WHERE conversation_id = $1",
                        &[id.into(), to_staff.map(|s| s.to_string()).into()]).await?;
                }
                ConversationEvent::ConversationClosed { at } => {
                    exec(tx, ctx, t, "UPDATE {conversations} SET status = 'closed', closed_at = $2 WHERE conversation_id = $1",
                        &[id.into(), rfc3339(*at).into()]).await?;
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// One conversation as the read model holds it. Instants are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    /// Its id.
    pub conversation_id: String,
    /// The customer, when signed in.
    pub customer_id: Option<String>,
    /// `open`, `handed_off` or `closed`.
    pub status: String,
    /// What the bot thinks the customer wants.
    pub intent: Option<String>,
    /// The bot's confidence in it, percent.
    pub intent_confidence: Option<i64>,
    /// The staff user it was handed to.
    pub assigned_staff_id: Option<String>,
    /// Messages so far.
    pub message_count: i64,
    /// Started.
    pub started_at: String,
    /// The last message's time.
    pub last_message_at: Option<String>,
    /// Closed.
    pub closed_at: Option<String>,
}

impl crate::row::FromRow for ConversationRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_int, opt_text, text};
        Ok(ConversationRow {
            conversation_id: text(r, "conversation_id")?,
            customer_id: opt_text(r, "customer_id")?,
            status: text(r, "status")?,
            intent: opt_text(r, "intent")?,
            intent_confidence: opt_int(r, "intent_confidence")?,
            assigned_staff_id: opt_text(r, "assigned_staff_id")?,
            message_count: int(r, "message_count")?,
            started_at: text(r, "started_at")?,
            last_message_at: opt_text(r, "last_message_at")?,
            closed_at: opt_text(r, "closed_at")?,
        })
    }
}

/// The conversation `id`, if the read model has it.
///
/// # Errors
/// [`crate::DbError`], also when its row does not decode.
pub async fn get(db: &crate::ReadDb, id: &str) -> Result<Option<ConversationRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_conversations", "conversation_id", id).await
}

/// Conversations in `status` with `customer` (empty: any), newest first.
pub fn list(status: &str, customer: &str) -> crate::Listing<ConversationRow> {
    crate::Listing::new(
        "rm_conversations WHERE ($1 = '' OR status = $1) AND ($2 = '' OR customer_id = $2)",
        "started_at DESC, conversation_id",
        vec![status.into(), customer.into()],
    )
}

//! Subscriptions over WebSocket (`/graphql/ws`, `graphql-transport-ws` and
//! the older `graphql-ws`): the event feed for admins, job-board and
//! vehicle-board changes for staff.
//!
//! The token comes in `connection_init`'s payload (`{"Authorization":
//! "Bearer …"}`, as GraphiQL and most clients send it). Each subscription
//! tails the global log from now (or after a given position, to resume after
//! a reconnect) and carries each event's position, so a client can `sync`
//! to it and query the read models it changed. Each also watches the socket's
//! session ([`socket::Caller`]) and ends when it no longer admits it. The
//! transport and its limits are in [`socket`].

mod socket;

use std::collections::VecDeque;
use std::str::FromStr;

use async_graphql::{Context, SimpleObject, Subscription, ID};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use commands::{LogPosition, LogTail, RecordedEvent};
use domain::ids::CustomerId;
use domain::ports::Role;
use futures::{Stream, StreamExt};

use super::context::{self, Allow};
use super::{errors, CrmSchema};
use crate::state::AppState;

/// Non-admins may resume (`after`) at most this many events behind the head, and never
/// from the start of the log: a board client that was away longer reloads the read models
/// and subscribes from now. Admins may replay the whole log.
pub const MAX_RESUME_BEHIND: u32 = 1_000;

/// One event of the global log.
#[derive(Debug, Clone, SimpleObject)]
pub struct LogEvent {
    /// Its position (pass to `sync`, or to `after` to resume).
    pub position: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: ID,
    /// Sequence within the aggregate.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Who: `staff:<id>`, `customer:<id>`, `webhook:<vendor>`, `system:<what>`.
    pub actor: Option<String>,
    /// When (RFC 3339, UTC).
    pub occurred_at: Option<String>,
    /// The event's data (an erased customer's personal fields read as placeholders).
    pub payload: async_graphql::Json<serde_json::Value>,
}

/// Fields of type `SecretHash` (password and reset-token hashes): kept in the log for the
/// aggregates, never handed to a client, not even an admin.
const SECRET_FIELDS: &[&str] = &["password_hash", "token_hash", "code_hash"];

/// The payload with every secret hash replaced by `"[redacted]"`.
pub fn without_secrets(mut payload: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if SECRET_FIELDS.contains(&k.as_str()) && !x.is_null() {
                        *x = serde_json::Value::from("[redacted]");
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut payload);
    payload
}

impl From<RecordedEvent> for LogEvent {
    fn from(e: RecordedEvent) -> Self {
        let m = |k: &str| {
            e.metadata
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        LogEvent {
            position: e.position.to_string(),
            actor: m("actor"),
            occurred_at: m("occurred_at"),
            aggregate_type: e.aggregate_type,
            aggregate_id: ID(e.aggregate_id),
            sequence: e.sequence as i64,
            event_type: e.event_type,
            payload: async_graphql::Json(without_secrets(e.payload)),
        }
    }
}

/// A change on a board: which job or vehicle, what happened, and where in the log.
#[derive(Debug, Clone, SimpleObject)]
pub struct BoardChange {
    /// `Job` or `Vehicle`.
    pub aggregate_type: String,
    /// The job's or vehicle's id.
    pub id: ID,
    /// What happened (`JobScheduled`, `VehicleAssigned`, `VehicleStatusChanged`…).
    pub event_type: String,
    /// Its position: `sync(position)` then query the board.
    pub position: String,
    /// When (RFC 3339, UTC).
    pub occurred_at: Option<String>,
}

impl From<LogEvent> for BoardChange {
    fn from(e: LogEvent) -> Self {
        BoardChange {
            aggregate_type: e.aggregate_type,
            id: e.aggregate_id,
            event_type: e.event_type,
            position: e.position,
            occurred_at: e.occurred_at,
        }
    }
}

/// Something happened in a chat conversation.
#[derive(Debug, Clone, SimpleObject)]
pub struct ConversationUpdate {
    /// The conversation.
    pub conversation_id: ID,
    /// `ConversationStarted`, `MessageAdded`, `IntentDetected`, `ConversationHandedOff` or
    /// `ConversationClosed`.
    pub event_type: String,
    /// The message, for `MessageAdded`.
    pub message: Option<super::messaging::ChatMessage>,
    /// Its position (`sync`, or `after` to resume).
    pub position: String,
}

impl From<LogEvent> for ConversationUpdate {
    fn from(e: LogEvent) -> Self {
        ConversationUpdate {
            message: (e.event_type == "MessageAdded")
                .then(|| {
                    e.payload
                        .0
                        .get("MessageAdded")
                        .map(super::messaging::chat_message)
                })
                .flatten(),
            conversation_id: e.aggregate_id,
            event_type: e.event_type,
            position: e.position,
        }
    }
}

/// Root of all subscriptions.
#[derive(Debug, Default)]
pub struct SubscriptionRoot;

/// Events of the log after `after`, those `keep` accepts, as they commit.
fn tail(
    state: &AppState,
    after: LogPosition,
    keep: impl Fn(&RecordedEvent) -> bool + Send + Sync + 'static,
) -> impl Stream<Item = LogEvent> {
    let tail = LogTail::new(state.log.clone(), after, 500);
    futures::stream::unfold(
        (tail, VecDeque::<RecordedEvent>::new(), keep),
        |(mut tail, mut queue, keep)| async move {
            loop {
                if let Some(e) = queue.pop_front() {
                    return Some((LogEvent::from(e), (tail, queue, keep)));
                }
                match tail.next_batch().await {
                    Ok(batch) => queue.extend(batch.into_iter().filter(|e| keep(e))),
                    Err(err) => {
                        // The database may come back; the subscription waits rather than ends.
                        tracing::warn!(error = %err, "subscription cannot read the log; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        },
    )
}

/// Who may follow the event feed (`events`).
const FEED: Allow = Allow::Staff(Role::Admin);
/// Who may follow the boards and the chat inbox.
const BOARDS: Allow = Allow::Staff(Role::Staff);
/// Who may follow one conversation (a portal customer only their own: see `conversation`).
const CHAT: Allow = Allow::StaffOrCustomer(Role::Staff);

/// Who may go on following a subscription. Its guard (one of the `Allow`s above) checked
/// the caller when it started; [`watched`] asks again whenever the socket learns that its
/// session speaks for someone else now (a new role) or no one.
#[derive(Debug, Clone)]
enum Audience {
    /// Whom the subscription's guard admits.
    Allowed(Allow),
    /// The portal customer a conversation is with.
    Customer(CustomerId),
}

impl Audience {
    /// `what` completes "your role may not …" (as the guard says it).
    fn admits(&self, rc: &context::RequestCtx, what: &str) -> async_graphql::Result<()> {
        match (self, &rc.principal) {
            (Audience::Allowed(allow), _) => allow.admits(rc, what),
            (Audience::Customer(me), Some(context::Principal::Customer { id })) if id == me => {
                Ok(())
            }
            (Audience::Customer(_), Some(_)) => {
                Err(errors::forbidden("follow another customer's conversation"))
            }
            (Audience::Customer(_), None) => Err(errors::unauthenticated()),
        }
    }
}

/// `items` while the socket's session admits `audience`; when it stops doing so, one
/// error (`UNAUTHENTICATED` once the session is over, else `FORBIDDEN`) and the end.
fn watched<T: Send + 'static>(
    ctx: &Context<'_>,
    audience: Audience,
    items: impl Stream<Item = T> + Send + 'static,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>>> {
    let rc = ctx.data::<context::RequestCtx>()?.clone();
    let what = context::use_of(ctx);
    let Some(socket::Caller(caller)) = ctx.data_opt::<socket::Caller>().cloned() else {
        // Not over a socket (nothing else serves subscriptions): no session to watch.
        return Ok(items.map(Ok).left_stream());
    };
    // The receiver was made when the `subscribe` arrived, from the principal the guard
    // checked: any later change shows as `changed()`.
    let state = Some((items.boxed(), caller, rc, (audience, what)));
    Ok(futures::stream::unfold(state, |state| async move {
        let (mut items, mut caller, mut rc, audience) = state?;
        loop {
            tokio::select! {
                biased;
                changed = caller.changed() => {
                    // The socket is gone: so is the subscription.
                    changed.ok()?;
                    rc.principal = caller.borrow_and_update().clone();
                    let verdict = match &rc.principal {
                        None => Err(errors::coded("UNAUTHENTICATED", socket::SESSION_ENDED, None)),
                        Some(_) => audience.0.admits(&rc, &audience.1),
                    };
                    if let Err(e) = verdict {
                        return Some((Err(e), None));
                    }
                }
                item = items.next() => {
                    return Some((Ok(item?), Some((items, caller, rc, audience))));
                }
            }
        }
    })
    .right_stream())
}

/// Where the subscription starts (its guard admitted the caller).
async fn start(
    ctx: &Context<'_>,
    after: Option<String>,
) -> async_graphql::Result<(AppState, LogPosition)> {
    let state = ctx.data::<AppState>()?.clone();
    let rc = ctx.data::<context::RequestCtx>()?;
    let after = from_position(&state, rc, after).await?;
    Ok((state, after))
}

/// Where a subscription starts: after `after`, or at the head of the log.
async fn from_position(
    state: &AppState,
    rc: &context::RequestCtx,
    after: Option<String>,
) -> async_graphql::Result<LogPosition> {
    match after {
        Some(p) => {
            let at = LogPosition::from_str(&p).map_err(|_| {
                errors::invalid("after", "not a log position (as `position` gives it)")
            })?;
            let admin = matches!(
                rc.principal,
                Some(context::Principal::Staff {
                    role: Role::Admin,
                    ..
                })
            );
            if !admin {
                within_reach(state, rc, at).await?;
            }
            Ok(at)
        }
        None => state
            .log
            .head()
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e)),
    }
}

/// Refuses a resume from the start of the log or more than [`MAX_RESUME_BEHIND`] events
/// back (counted by reading at most one more than that, as stored).
async fn within_reach(
    state: &AppState,
    rc: &context::RequestCtx,
    at: LogPosition,
) -> async_graphql::Result<()> {
    let too_far = || {
        errors::rule(
            "RESUME_TOO_FAR_BACK",
            format!(
                "only admins may resume from the start or more than {MAX_RESUME_BEHIND} events back: \
                 query the read models, then subscribe without `after`"
            ),
            "after",
        )
    };
    if at == LogPosition::START {
        return Err(too_far());
    }
    let behind = state
        .log
        .read_all_stored(at, MAX_RESUME_BEHIND + 1)
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?
        .len();
    if behind > MAX_RESUME_BEHIND as usize {
        return Err(too_far());
    }
    Ok(())
}

#[Subscription]
impl SubscriptionRoot {
    /// Every new event (admins): optionally only some event types, one aggregate type, or one
    /// aggregate. `after` resumes from a position a previous event carried.
    #[graphql(guard = "FEED")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        event_types: Option<Vec<String>>,
        aggregate_type: Option<String>,
        aggregate_id: Option<ID>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogEvent>>> {
        let (state, after) = start(ctx, after).await?;
        let aggregate_id = aggregate_id.map(|i| i.0);
        let events = tail(&state, after, move |e| {
            event_types
                .as_ref()
                .is_none_or(|t| t.contains(&e.event_type))
                && aggregate_type
                    .as_ref()
                    .is_none_or(|t| *t == e.aggregate_type)
                && aggregate_id.as_ref().is_none_or(|i| *i == e.aggregate_id)
        });
        watched(ctx, Audience::Allowed(FEED), events)
    }

    /// Changes to the jobs calendar (staff): booked, scheduled, rescheduled, assigned,
    /// started, completed, cancelled, paid.
    #[graphql(guard = "BOARDS")]
    async fn job_board(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<BoardChange>>> {
        let (state, after) = start(ctx, after).await?;
        let changes = tail(&state, after, |e| e.aggregate_type == "Job").map(BoardChange::from);
        watched(ctx, Audience::Allowed(BOARDS), changes)
    }

    /// Every conversation's activity (staff): the chat inbox, live.
    #[graphql(guard = "BOARDS")]
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ConversationUpdate>>> {
        let (state, after) = start(ctx, after).await?;
        let updates = tail(&state, after, |e| e.aggregate_type == "Conversation")
            .map(ConversationUpdate::from);
        watched(ctx, Audience::Allowed(BOARDS), updates)
    }

    /// One conversation, live: staff, or the portal customer it is with.
    #[graphql(guard = "CHAT")]
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ConversationUpdate>>> {
        let state = ctx.data::<AppState>()?.clone();
        let rc = ctx.data::<context::RequestCtx>()?;
        let conversation = domain::ids::ConversationId::parse(&id)
            .map_err(|_| errors::invalid("id", "not a conversation id"))?;
        let audience = match &rc.principal {
            Some(context::Principal::Customer { id: me }) => {
                let owner = state
                    .crm
                    .conversations()
                    .load(conversation)
                    .await
                    .map_err(|e| errors::app(&rc.request_id, e))?
                    .aggregate
                    .customer_id();
                if owner != Some(*me) {
                    return Err(errors::forbidden("follow another customer's conversation"));
                }
                Audience::Customer(*me)
            }
            // Staff: the guard admitted no one else.
            _ => Audience::Allowed(CHAT),
        };
        let (state, after) = start(ctx, after).await?;
        let id = id.0;
        let updates = tail(&state, after, move |e| {
            e.aggregate_type == "Conversation" && e.aggregate_id == id
        })
        .map(ConversationUpdate::from);
        watched(ctx, audience, updates)
    }

    /// Changes to the vehicle board (staff): vehicles registered or changing status, and
    /// vehicles assigned to jobs.
    #[graphql(guard = "BOARDS")]
    async fn vehicle_board(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<BoardChange>>> {
        let (state, after) = start(ctx, after).await?;
        let changes = tail(&state, after, |e| {
            e.aggregate_type == "Vehicle" || e.event_type == "VehicleAssigned"
        })
        .map(BoardChange::from);
        watched(ctx, Audience::Allowed(BOARDS), changes)
    }
}

/// `GET /graphql/ws`: upgrades to a GraphQL WebSocket (limits: docs/api.md, Subscriptions); the
/// principal comes from `connection_init`'s `Authorization` (or `authorization`/`token`).
pub async fn websocket(
    State((schema, state)): State<(CrmSchema, AppState)>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    socket::accept(schema, state, addr, &headers, upgrade)
}

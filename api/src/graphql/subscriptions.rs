//! Subscriptions over WebSocket (`/graphql/ws`, `graphql-transport-ws` and
//! the older `graphql-ws`): the event feed for admins, job-board and
//! vehicle-board changes for staff.
//!
//! The token comes in `connection_init`'s payload (`{"Authorization":
//! "Bearer …"}`, as GraphiQL and most clients send it). Each subscription
//! tails the global log from now (or after a given position, to resume after
//! a reconnect) and carries each event's position, so a client can `sync`
//! to it and query the read models it changed.

use std::collections::VecDeque;
use std::str::FromStr;

use async_graphql::{Context, Data, SimpleObject, Subscription, ID};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use commands::{LogPosition, LogTail, RecordedEvent};
use domain::ports::Role;
use futures::Stream;

use super::{context, errors, CrmSchema};
use crate::state::AppState;

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
const SECRET_FIELDS: &[&str] = &["password_hash", "token_hash"];

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

async fn start(
    ctx: &Context<'_>,
    after: Option<String>,
    role: Role,
    what: &str,
) -> async_graphql::Result<(AppState, LogPosition)> {
    let state = ctx.data::<AppState>()?.clone();
    let rc = ctx.data::<context::RequestCtx>()?;
    context::staff(rc, role, what)?;
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
        Some(p) => LogPosition::from_str(&p)
            .map_err(|_| errors::invalid("after", "not a log position (as `position` gives it)")),
        None => state
            .log
            .head()
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e)),
    }
}

#[Subscription]
impl SubscriptionRoot {
    /// Every new event (admins): optionally only some event types, one aggregate type, or one
    /// aggregate. `after` resumes from a position a previous event carried.
    async fn events(
        &self,
        ctx: &Context<'_>,
        event_types: Option<Vec<String>>,
        aggregate_type: Option<String>,
        aggregate_id: Option<ID>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = LogEvent>> {
        let (state, after) = start(ctx, after, Role::Admin, "follow the event feed").await?;
        let aggregate_id = aggregate_id.map(|i| i.0);
        Ok(tail(&state, after, move |e| {
            event_types
                .as_ref()
                .is_none_or(|t| t.contains(&e.event_type))
                && aggregate_type
                    .as_ref()
                    .is_none_or(|t| *t == e.aggregate_type)
                && aggregate_id.as_ref().is_none_or(|i| *i == e.aggregate_id)
        }))
    }

    /// Changes to the jobs calendar (staff): booked, scheduled, rescheduled, assigned,
    /// started, completed, cancelled, paid.
    async fn job_board(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = BoardChange>> {
        use futures::StreamExt;
        let (state, after) = start(ctx, after, Role::Staff, "follow the job board").await?;
        Ok(tail(&state, after, |e| e.aggregate_type == "Job").map(BoardChange::from))
    }

    /// Every conversation's activity (staff): the chat inbox, live.
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ConversationUpdate>> {
        use futures::StreamExt;
        let (state, after) = start(ctx, after, Role::Staff, "follow the chat inbox").await?;
        Ok(tail(&state, after, |e| e.aggregate_type == "Conversation")
            .map(ConversationUpdate::from))
    }

    /// One conversation, live: staff, or the portal customer it is with.
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ConversationUpdate>> {
        use futures::StreamExt;
        let state = ctx.data::<AppState>()?.clone();
        let rc = ctx.data::<context::RequestCtx>()?;
        let conversation = domain::ids::ConversationId::parse(&id)
            .map_err(|_| errors::invalid("id", "not a conversation id"))?;
        let after = match &rc.principal {
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
                from_position(&state, rc, after).await?
            }
            _ => {
                start(ctx, after, Role::Staff, "follow conversations")
                    .await?
                    .1
            }
        };
        let id = id.0;
        Ok(tail(&state, after, move |e| {
            e.aggregate_type == "Conversation" && e.aggregate_id == id
        })
        .map(ConversationUpdate::from))
    }

    /// Changes to the vehicle board (staff): vehicles registered or changing status, and
    /// vehicles assigned to jobs.
    async fn vehicle_board(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = BoardChange>> {
        use futures::StreamExt;
        let (state, after) = start(ctx, after, Role::Staff, "follow the vehicle board").await?;
        Ok(tail(&state, after, |e| {
            e.aggregate_type == "Vehicle" || e.event_type == "VehicleAssigned"
        })
        .map(BoardChange::from))
    }
}

/// `GET /graphql/ws`: upgrades to a GraphQL WebSocket; the principal comes
/// from `connection_init`'s `Authorization` (or `authorization`/`token`).
pub async fn websocket(
    State((schema, state)): State<(CrmSchema, AppState)>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let token = ["Authorization", "authorization", "token"]
                        .iter()
                        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))
                        .map(|t| {
                            if t.starts_with("Bearer ") {
                                t.to_string()
                            } else {
                                format!("Bearer {t}")
                            }
                        });
                    let mut headers = HeaderMap::new();
                    if let Some(v) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
                        headers.insert(axum::http::header::AUTHORIZATION, v);
                    }
                    let rc = context::from_headers(&state, &headers, addr).await;
                    let mut data = Data::default();
                    data.insert(rc);
                    Ok(data)
                })
                .serve()
        })
}

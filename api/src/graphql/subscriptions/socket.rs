//! The WebSocket transport of `/graphql/ws`, spoken here rather than by
//! async-graphql-axum because a hostile client must meet limits the library
//! has no hook for: a deadline for `connection_init`, pings that find dead
//! peers, caps per user and per address, an `error` message for a refused
//! `subscribe`, and a session that is asked again while the socket is open.
//!
//! `graphql-transport-ws` and the older `graphql-ws` (subscriptions-transport-ws)
//! differ, as far as this server goes, in message names only: `subscribe`/`start`,
//! `complete`/`stop`, `next`/`data`, `ping`/`ka`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::Response;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::stream::{AbortHandle, BoxStream, SelectAll};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::graphql::context::{self, Principal, RequestCtx};
use crate::graphql::CrmSchema;
use crate::state::AppState;

/// A socket must send `connection_init` this soon after opening, or it is closed (4408).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server pings every socket this often (WebSocket pings, and `ka` on `graphql-ws`); a
/// socket that has sent nothing, not even a pong, since the previous ping is closed.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// How often an open socket asks again whom its session speaks for: twice a second, so
/// that a session ended by anyone stops its subscriptions within one second.
pub const RECHECK_EVERY: Duration = Duration::from_millis(500);
/// Largest message (and frame) a client may send; a GraphQL document with its variables
/// fits easily, and a larger one closes the socket (1009).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Open sockets per signed-in user (staff user or portal customer), across the server.
pub const MAX_SOCKETS_PER_USER: usize = 10;
/// Running operations (subscriptions, and queries or mutations sent over a socket) per
/// signed-in user across their sockets; for sockets not signed in, per client address.
pub const MAX_OPERATIONS_PER_USER: usize = 20;
/// Sockets per client address (IPv6: per /64) that are not signed in, counting those that
/// have not sent `connection_init` yet; more are refused with HTTP 429 before the upgrade.
pub const MAX_ANONYMOUS_SOCKETS_PER_ADDRESS: usize = 10;
/// A write the peer does not take within this long drops the socket (a dead peer whose
/// window is full would otherwise hold the connection's task forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session check may take before the socket keeps what it knew and asks again
/// at the next tick (the connection's pings and reads wait while it runs).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Once its session has ended, how long a socket waits for its operations to end before
/// it closes anyway (subscriptions end at once; a query or mutation may still be running).
const END_GRACE: Duration = Duration::from_secs(1);
/// What a subscription or a refused `subscribe` says once the session is over.
pub const SESSION_ENDED: &str =
    "the session has ended (signed out, expired or deactivated): sign in again";

/// The `graphql-transport-ws` close codes this server sends.
mod close {
    pub const INVALID_MESSAGE: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY: u16 = 4429;
    /// RFC 6455: a message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// RFC 6455: the peer broke the WebSocket protocol.
    pub const PROTOCOL: u16 = 1002;
    /// RFC 6455: going away (here: the peer stopped answering pings).
    pub const GOING_AWAY: u16 = 1001;
    /// RFC 6455: the server met a condition that kept it from going on (here: the store
    /// could not say whom the session speaks for). The session did not end: reconnect.
    pub const SERVER_ERROR: u16 = 1011;
}

/// The reason of a [`close::SERVER_ERROR`] close.
const CHECK_FAILED: &str = "the session could not be checked (server error): reconnect";

/// The socket's session as last asked, for its subscriptions: each watches it and ends
/// when it no longer admits it (see `subscriptions::Audience`).
#[derive(Debug, Clone)]
pub struct Caller(pub watch::Receiver<Option<Principal>>);

/// The dialect a client chose in `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws` (graphql-ws, GraphiQL, Apollo Client 3.5+).
    TransportWs,
    /// `graphql-ws`: the older subscriptions-transport-ws.
    LegacyWs,
}

impl Protocol {
    /// The first of the client's subprotocols that the server speaks.
    fn offered(headers: &HeaderMap) -> Option<Self> {
        headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)?
            .to_str()
            .ok()?
            .split(',')
            .map(str::trim)
            .find_map(|p| {
                if p.eq_ignore_ascii_case("graphql-transport-ws") {
                    Some(Protocol::TransportWs)
                } else if p.eq_ignore_ascii_case("graphql-ws") {
                    Some(Protocol::LegacyWs)
                } else {
                    None
                }
            })
    }

    fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }
}

/// A message from the client (both dialects' names).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    #[serde(alias = "start")]
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    #[serde(alias = "stop")]
    Complete {
        id: String,
    },
    ConnectionTerminate,
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {},
}

// ------------------------------------------------------------------ caps

/// Whom a socket and its operations count against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    /// A signed-in staff user or portal customer (`staff:<id>`, `customer:<id>`).
    User(String),
    /// A client's network, for sockets not signed in: see [`network`].
    Address(IpAddr),
}

/// The network a client address counts against, as for the sign-in limits: an IPv4
/// address, or the /64 an IPv6 address is in (one subscriber's allocation, whose 2^64
/// addresses a client may rotate through at will).
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

impl Holder {
    fn of(p: &Principal) -> Self {
        Holder::User(match p {
            Principal::Staff { id, .. } => format!("staff:{id}"),
            Principal::Customer { id } => format!("customer:{id}"),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Socket,
    Operation,
}

#[derive(Debug, Default)]
struct Held {
    sockets: usize,
    operations: usize,
}

/// What every open socket holds, in this process. A static rather than a field of
/// `AppState` because only this module counts, and a count is only ever taken by a
/// [`Slot`] that gives it back when dropped, however its socket ends.
static HELD: LazyLock<Mutex<HashMap<Holder, Held>>> = LazyLock::new(Default::default);

/// One socket or operation counted against its holder until dropped.
#[derive(Debug)]
struct Slot {
    holder: Holder,
    kind: Kind,
}

impl Slot {
    /// A slot, unless the holder already has `max` of this kind.
    fn take(holder: Holder, kind: Kind, max: usize) -> Option<Slot> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        let h = held.entry(holder.clone()).or_default();
        let n = match kind {
            Kind::Socket => &mut h.sockets,
            Kind::Operation => &mut h.operations,
        };
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { holder, kind })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.get_mut(&self.holder) {
            match self.kind {
                Kind::Socket => h.sockets = h.sockets.saturating_sub(1),
                Kind::Operation => h.operations = h.operations.saturating_sub(1),
            }
            if h.sockets == 0 && h.operations == 0 {
                held.remove(&self.holder);
            }
        }
    }
}

// ---------------------------------------------------------------- upgrade

/// Headers of the upgrade request that [`context::from_headers`] reads besides the token.
const KEPT_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-request-id"),
];

/// Upgrades `GET /graphql/ws`, unless the client offers neither dialect (400) or its
/// network already has [`MAX_ANONYMOUS_SOCKETS_PER_ADDRESS`] sockets not signed in (429).
/// The address follows the HTTP rule ([`context::client_ip`], `TRUSTED_PROXIES`).
pub fn accept(
    schema: CrmSchema,
    state: AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let Some(protocol) = Protocol::offered(headers) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "offer the graphql-transport-ws (or graphql-ws) subprotocol".into(),
        );
    };
    let address = context::client_ip(
        peer.ip(),
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        &state.config.trusted_proxies,
    );
    let Some(slot) = Slot::take(
        Holder::Address(network(address)),
        Kind::Socket,
        MAX_ANONYMOUS_SOCKETS_PER_ADDRESS,
    ) else {
        tracing::info!(client_ip = %address, "websocket refused: too many sockets not signed in");
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "{MAX_ANONYMOUS_SOCKETS_PER_ADDRESS} sockets from this address have not signed in yet"
            ),
        );
    };
    let mut kept = HeaderMap::new();
    for name in KEPT_HEADERS {
        if let Some(v) = headers.get(&name) {
            kept.insert(name, v.clone());
        }
    }
    upgrade
        .protocols([protocol.name()])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |ws| {
            Connection {
                ws,
                protocol,
                schema,
                state,
                peer,
                headers: kept,
                slot,
                session: None,
                running: SelectAll::new(),
                last_heard: Instant::now(),
                last_ping: None,
            }
            .serve()
        })
}

/// A GraphQL-shaped error for an upgrade that is refused.
fn refusal(status: StatusCode, code: &str, message: String) -> HttpResponse {
    let body = json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }],
    });
    (status, axum::Json(body)).into_response()
}

// ------------------------------------------------------------- connection

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// With a close frame.
    Close(u16, String),
    /// The peer left (or is past talking to).
    Gone,
}

/// A close frame's reason is at most 123 bytes.
fn closing(code: u16, reason: &str) -> End {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    End::Close(code, reason[..end].to_string())
}

/// The signed-in state of a socket, from `connection_init` on.
struct Session {
    /// As at `connection_init`; the principal is kept current in `caller`.
    rc: RequestCtx,
    caller: watch::Sender<Option<Principal>>,
    /// Running operations by the client's id, each holding its slot.
    operations: HashMap<String, (AbortHandle, Slot)>,
    /// When the session was found over: operations are ending, then the socket closes.
    ended_at: Option<Instant>,
}

impl Session {
    /// Takes in whom the session speaks for now.
    fn learn(&mut self, now: Option<Principal>) {
        if now.is_none() && self.rc.token_hash.is_some() && self.ended_at.is_none() {
            self.ended_at = Some(Instant::now());
        }
        self.caller.send_if_modified(|p| {
            let changed = *p != now;
            *p = now;
            changed
        });
    }
}

/// Something the connection's loop woke up for.
enum Wake {
    Frame(Option<Result<Message, axum::Error>>),
    Output(String, Option<Response>),
    InitTimeout,
    Ping,
    Recheck,
}

type Outputs = SelectAll<BoxStream<'static, (String, Option<Response>)>>;

struct Connection {
    ws: WebSocket,
    protocol: Protocol,
    schema: CrmSchema,
    state: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
    /// The address's socket slot until `connection_init` signs in, then the user's.
    slot: Slot,
    session: Option<Session>,
    /// Every operation's responses, tagged with its id; `None` when it has ended.
    running: Outputs,
    last_heard: Instant,
    last_ping: Option<Instant>,
}

impl Connection {
    async fn serve(mut self) {
        let opened = Instant::now();
        let mut ping = tokio::time::interval_at(opened + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut recheck = tokio::time::interval(RECHECK_EVERY);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let end = loop {
            let asks_again = self
                .session
                .as_ref()
                .is_some_and(|s| s.rc.token_hash.is_some());
            // Timers first: a client that never stops sending must not starve its deadline,
            // its pings or its session checks (it may starve only its own outputs).
            let wake = tokio::select! {
                biased;
                () = tokio::time::sleep_until(opened + INIT_TIMEOUT), if self.session.is_none() => {
                    Wake::InitTimeout
                }
                _ = recheck.tick(), if asks_again => Wake::Recheck,
                _ = ping.tick() => Wake::Ping,
                frame = self.ws.recv() => Wake::Frame(frame),
                Some((id, out)) = self.running.next(), if !self.running.is_empty() => {
                    Wake::Output(id, out)
                }
            };
            let step = match wake {
                Wake::Frame(frame) => self.on_frame(frame).await,
                Wake::Output(id, out) => self.on_output(id, out).await,
                Wake::InitTimeout => Err(closing(
                    close::INIT_TIMEOUT,
                    "Connection initialisation timeout",
                )),
                Wake::Ping => self.on_ping().await,
                Wake::Recheck => self.on_recheck().await,
            };
            if let Err(end) = step.and_then(|()| self.session_over()) {
                break end;
            }
        };
        if let End::Close(code, reason) = end {
            tracing::debug!(peer = %self.peer, code, reason, "websocket closed by the server");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ =
                tokio::time::timeout(SEND_TIMEOUT, self.ws.send(Message::Close(Some(frame)))).await;
        }
        // Dropping the connection aborts its operations and gives back its slots.
    }

    /// Closes the socket once a session that ended has no operations left (or waited long
    /// enough for them): the client must sign in again, on a new socket.
    fn session_over(&self) -> Result<(), End> {
        match self.session.as_ref().and_then(|s| Some((s, s.ended_at?))) {
            Some((s, at)) if s.operations.is_empty() || at.elapsed() >= END_GRACE => {
                Err(closing(close::UNAUTHORIZED, SESSION_ENDED))
            }
            _ => Ok(()),
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        let msg = match frame {
            None => return Err(End::Gone),
            Some(Err(e)) => return Err(unreadable(&e)),
            Some(Ok(m)) => m,
        };
        self.last_heard = Instant::now();
        match msg {
            Message::Text(t) => self.on_message(t.as_str().as_bytes()).await,
            Message::Binary(b) => self.on_message(&b).await,
            Message::Ping(_) | Message::Pong(_) => Ok(()),
            Message::Close(_) => Err(End::Gone),
        }
    }

    async fn on_message(&mut self, bytes: &[u8]) -> Result<(), End> {
        let msg: ClientMessage = serde_json::from_slice(bytes)
            .map_err(|e| closing(close::INVALID_MESSAGE, &format!("invalid message: {e}")))?;
        match msg {
            ClientMessage::ConnectionInit { payload } => self.on_init(payload).await,
            ClientMessage::Subscribe { id, payload } => self.on_subscribe(id, *payload).await,
            ClientMessage::Complete { id } => {
                if let Some((running, _slot)) =
                    self.session.as_mut().and_then(|s| s.operations.remove(&id))
                {
                    running.abort();
                }
                Ok(())
            }
            ClientMessage::ConnectionTerminate => Err(End::Gone),
            ClientMessage::Ping { payload } => {
                let mut pong = json!({ "type": "pong" });
                if let Some(p) = payload {
                    pong["payload"] = p;
                }
                self.send(&pong).await
            }
            ClientMessage::Pong {} => Ok(()),
        }
    }

    /// Signs the socket in with the token in the payload (`Authorization`, `authorization`
    /// or `token`, with or without `Bearer `); without a valid one it stays anonymous.
    async fn on_init(&mut self, payload: Option<Value>) -> Result<(), End> {
        if self.session.is_some() {
            return Err(closing(close::TOO_MANY, "Too many initialisation requests"));
        }
        let payload = payload.unwrap_or_default();
        let token = ["Authorization", "authorization", "token"]
            .iter()
            .find_map(|k| payload.get(*k).and_then(Value::as_str))
            .map(|t| {
                if t.starts_with("Bearer ") {
                    t.to_string()
                } else {
                    format!("Bearer {t}")
                }
            });
        let mut headers = self.headers.clone();
        if let Some(v) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
            headers.insert(header::AUTHORIZATION, v);
        }
        let rc = context::from_headers(&self.state, &headers, self.peer).await;
        // A token that finds nobody: an unknown or ended session stays anonymous, but a store
        // that could not answer must not pass for one (the client would think it signed out).
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let (None, Some(token)) = (&rc.principal, presented) {
            if matches!(
                ask(&self.state, &context::token_hash(token)).await,
                Asked::Failed
            ) {
                return Err(closing(close::SERVER_ERROR, CHECK_FAILED));
            }
        }
        if let Some(p) = &rc.principal {
            let Some(slot) = Slot::take(Holder::of(p), Kind::Socket, MAX_SOCKETS_PER_USER) else {
                tracing::info!(request_id = %rc.request_id, "websocket refused: too many sockets for one user");
                return Err(closing(
                    close::TOO_MANY,
                    &format!("this user already has {MAX_SOCKETS_PER_USER} sockets open"),
                ));
            };
            // Gives back the address's slot: a signed-in socket counts against its user.
            self.slot = slot;
        }
        let (caller, _) = watch::channel(rc.principal.clone());
        self.session = Some(Session {
            rc,
            caller,
            operations: HashMap::new(),
            ended_at: None,
        });
        self.send(&json!({ "type": "connection_ack" })).await?;
        if self.protocol == Protocol::LegacyWs {
            self.send(&json!({ "type": "ka" })).await?;
        }
        Ok(())
    }

    /// Runs an operation for whom the session speaks for now, within the holder's cap.
    async fn on_subscribe(
        &mut self,
        id: String,
        request: async_graphql::Request,
    ) -> Result<(), End> {
        let Some(session) = self.session.as_mut() else {
            return Err(closing(close::UNAUTHORIZED, "Unauthorized"));
        };
        if session.operations.contains_key(&id) {
            return Err(closing(
                close::DUPLICATE_ID,
                &format!("Subscriber for {id} already exists"),
            ));
        }
        // Asked again here, so that an operation never runs on a role the user has lost.
        if let (Some(hash), None) = (session.rc.token_hash.clone(), session.ended_at) {
            match ask(&self.state, &hash).await {
                Asked::Now(now) => session.learn(now),
                Asked::Slow => {}
                Asked::Failed => return Err(closing(close::SERVER_ERROR, CHECK_FAILED)),
            }
        }
        if session.ended_at.is_some() {
            return self.error(&id, "UNAUTHENTICATED", SESSION_ENDED).await;
        }
        let Some(slot) = Slot::take(
            self.slot.holder.clone(),
            Kind::Operation,
            MAX_OPERATIONS_PER_USER,
        ) else {
            tracing::info!(request_id = %session.rc.request_id, "subscription refused: too many for one user");
            let message = format!(
                "at most {MAX_OPERATIONS_PER_USER} subscriptions may run at once for one user; complete one first"
            );
            return self.error(&id, "RATE_LIMITED", &message).await;
        };
        let mut rc = session.rc.clone();
        rc.principal = session.caller.borrow().clone();
        let request = request.data(rc).data(Caller(session.caller.subscribe()));
        let tag = id.clone();
        let ended = id.clone();
        let (outputs, running) = futures::stream::abortable(
            self.schema
                .execute_stream(request)
                .map(move |r| (tag.clone(), Some(r)))
                .chain(futures::stream::once(async move { (ended, None) })),
        );
        self.running.push(outputs.boxed());
        session.operations.insert(id, (running, slot));
        Ok(())
    }

    /// Forwards a response, or `complete` when the operation has ended by itself.
    async fn on_output(&mut self, id: String, out: Option<Response>) -> Result<(), End> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        match out {
            Some(response) if session.operations.contains_key(&id) => {
                let kind = match self.protocol {
                    Protocol::TransportWs => "next",
                    Protocol::LegacyWs => "data",
                };
                self.send(&json!({ "id": id, "type": kind, "payload": response }))
                    .await
            }
            None if session.operations.remove(&id).is_some() => {
                self.send(&json!({ "id": id, "type": "complete" })).await
            }
            _ => Ok(()),
        }
    }

    /// Drops a socket that has not been heard from since the previous ping, else pings.
    async fn on_ping(&mut self) -> Result<(), End> {
        if self.last_ping.is_some_and(|p| self.last_heard < p) {
            tracing::debug!(peer = %self.peer, "websocket peer stopped answering pings");
            return Err(closing(close::GOING_AWAY, "no answer to ping"));
        }
        self.raw(Message::Ping(Default::default())).await?;
        if self.protocol == Protocol::LegacyWs && self.session.is_some() {
            self.send(&json!({ "type": "ka" })).await?;
        }
        self.last_ping = Some(Instant::now());
        Ok(())
    }

    /// Asks whom the session speaks for now; closes the socket (1011) when the store cannot
    /// say: it fails closed, but does not tell the client that its session ended.
    async fn on_recheck(&mut self) -> Result<(), End> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        let Some(hash) = session.rc.token_hash.clone() else {
            return Ok(());
        };
        if session.ended_at.is_none() {
            match ask(&self.state, &hash).await {
                Asked::Now(now) => session.learn(now),
                Asked::Slow => {}
                Asked::Failed => return Err(closing(close::SERVER_ERROR, CHECK_FAILED)),
            }
        }
        Ok(())
    }

    /// Refuses an operation with an `error` message (it never ran).
    async fn error(&mut self, id: &str, code: &str, message: &str) -> Result<(), End> {
        let error = json!({ "message": message, "extensions": { "code": code } });
        let payload = match self.protocol {
            Protocol::TransportWs => json!([error]),
            Protocol::LegacyWs => error,
        };
        self.send(&json!({ "id": id, "type": "error", "payload": payload }))
            .await
    }

    async fn send(&mut self, msg: &Value) -> Result<(), End> {
        self.raw(Message::Text(msg.to_string().into())).await
    }

    async fn raw(&mut self, msg: Message) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(End::Gone),
        }
    }
}

/// What asking whom a session speaks for found.
#[derive(Debug)]
enum Asked {
    /// Whom it speaks for now (`None`: the session is over).
    Now(Option<Principal>),
    /// The answer took longer than [`CHECK_TIMEOUT`]: the socket keeps what it knew and asks
    /// at the next tick.
    Slow,
    /// The store failed: nobody can say whether the session goes on.
    Failed,
}

/// Whom the session with `token_hash` speaks for now; [`Asked::Failed`] when the store
/// cannot say (the client must not be told its session ended).
async fn ask(state: &AppState, token_hash: &str) -> Asked {
    match tokio::time::timeout(
        CHECK_TIMEOUT,
        context::principal_of_session(state, token_hash),
    )
    .await
    {
        Ok(Ok(principal)) => Asked::Now(principal),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a session check failed; closing the socket (1011)");
            Asked::Failed
        }
        Err(_) => {
            tracing::warn!("a session check took over {CHECK_TIMEOUT:?}; asking again");
            Asked::Slow
        }
    }
}

/// How to close after a frame could not be read. axum hides tungstenite's error type, so
/// an oversized message is told by its text ("Space limit exceeded: Message too long").
fn unreadable(e: &axum::Error) -> End {
    let text = e.to_string();
    tracing::debug!(error = %text, "unreadable websocket frame");
    if text.contains("Space limit exceeded") || text.contains("too long") {
        closing(
            close::TOO_BIG,
            &format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
        )
    } else {
        closing(close::PROTOCOL, "unreadable frame")
    }
}

#[cfg(test)]
mod tests {
    use super::{closing, network, End};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_an_ipv4_client_by_its_address() {
        assert_eq!(network(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            network(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            network(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            network(ip("2001:db8:1:3::1")),
            network(ip("2001:db8:1:2::1"))
        );
        assert_eq!(network(ip("203.0.113.7")), ip("203.0.113.7"));
        // An IPv4-mapped address is its IPv4 address, not the /64 of every mapped one.
        assert_eq!(network(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn a_close_reason_is_cut_to_123_bytes_on_a_character_boundary() {
        let End::Close(_, reason) = closing(4400, &"é".repeat(100)) else {
            panic!("not a close");
        };
        assert_eq!(reason.len(), 122);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}

//! Hostile WebSocket clients (issue #14) against the server process on PostgreSQL and
//! SQLite, over real sockets: a socket that never says `connection_init`, one that stops
//! answering pings, too many sockets or subscriptions, a 2 MiB message, a session that
//! ends under an open subscription, a resume from too far back, and the client address
//! behind a proxy. The limits are documented in docs/api.md (Subscriptions).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tests::{Engine, TestDb};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Server = tests::ServerProcess;

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");
/// The server's limits, as docs/api.md states them.
const INIT_TIMEOUT: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(10);
const SOCKETS_PER_USER: usize = 10;
const SUBSCRIPTIONS_PER_USER: usize = 20;
const ANONYMOUS_SOCKETS_PER_ADDRESS: usize = 10;
const MAX_RESUME_BEHIND: usize = 1_000;
/// How soon a subscription must stop after its session ends.
const SESSION_BOUND: Duration = Duration::from_secs(1);

tests::on_both_engines!(
    sockets_that_never_send_connection_init_are_closed_within_five_seconds,
    a_socket_that_stops_answering_pings_is_dropped_while_a_live_one_stays,
    the_21st_subscription_of_one_user_is_refused_across_sockets,
    the_11th_socket_of_one_user_is_closed_until_another_closes,
    sockets_not_signed_in_are_capped_per_address_whatever_x_forwarded_for_says,
    behind_a_trusted_proxy_the_cap_counts_the_forwarded_address,
    a_2_mib_message_closes_the_socket_and_the_server_keeps_serving,
    a_signed_out_admin_stops_receiving_events_within_a_second,
    a_deactivated_admin_stops_receiving_events_within_a_second,
    a_demoted_admin_loses_the_event_feed_but_keeps_the_job_board,
    staff_may_not_resume_more_than_1000_events_back_but_admins_may,
    staff_may_not_resume_from_the_start_even_of_a_short_log,
    the_older_graphql_ws_protocol_is_still_spoken,
    a_store_that_cannot_check_the_session_closes_the_socket_with_1011_not_4401,
);

// ------------------------------------------------------------------ client

/// The server on a fresh database with an admin and `envs`.
async fn start(db: &TestDb, envs: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_EMAIL", ADMIN.0),
        ("ADMIN_PASSWORD", ADMIN.1),
        ("DEMO_SEED", "off"),
        ("RUST_LOG", "warn"),
    ];
    all.extend_from_slice(envs);
    Server::start_hermetic(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &all,
        Duration::from_secs(120),
    )
    .await
}

async fn gql(s: &Server, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut req = reqwest::Client::new()
        .post(&s.url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send").json().await.expect("json")
}

fn data<'a>(v: &'a Value, path: &str) -> &'a Value {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
    v.pointer(path)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn text(v: &Value, path: &str) -> String {
    data(v, path).as_str().expect("a string").to_string()
}

async fn login(s: &Server, email: &str, password: &str) -> String {
    let r = gql(
        s,
        None,
        "mutation($i: LoginInput!) { login(input: $i) { token } }",
        json!({"i": {"email": email, "password": password}}),
    )
    .await;
    text(&r, "/data/login/token")
}

/// Creates a staff user with `role` and signs them in: (id, token).
async fn staff_user(s: &Server, admin: &str, email: &str, role: &str) -> (String, String) {
    let r = gql(
        s,
        Some(admin),
        "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } } }",
        json!({"i": {"email": email, "name": "Sam Socket", "role": role, "password": "socket-password-42"}}),
    )
    .await;
    let id = text(&r, "/data/createStaffUser/staffUser/id");
    (id, login(s, email, "socket-password-42").await)
}

/// Creates a customer: its log position.
async fn customer(s: &Server, token: &str, name: &str) -> String {
    let r = gql(
        s,
        Some(token),
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
        json!({"i": {"name": name}}),
    )
    .await;
    text(&r, "/data/createCustomer/position")
}

/// What a socket said next.
#[derive(Debug)]
enum Got {
    /// A protocol message (WebSocket pings and pongs skipped).
    Message(Value),
    /// Closed, with the close code when the server sent a close frame.
    Closed(Option<u16>),
    /// Nothing within the time given.
    Silent,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` in `protocol`, sending `X-Forwarded-For: forwarded_for` when given;
/// the HTTP status when the server refuses the upgrade.
async fn connect(s: &Server, protocol: &str, forwarded_for: Option<&str>) -> Result<Ws, u16> {
    let url = s.url.replace("http://", "ws://") + "/ws";
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    if let Some(f) = forwarded_for {
        req.headers_mut()
            .insert("x-forwarded-for", f.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("cannot open the socket: {e}"),
    }
}

/// A GraphQL WebSocket client that, like a browser, answers the server's pings whatever
/// the test is doing: a task reads the socket all the time (tungstenite sends a pong as
/// it reads a ping) and hands every frame over, `None` once the socket has ended.
struct Socket {
    sink: futures::stream::SplitSink<Ws, Message>,
    frames: tokio::sync::mpsc::UnboundedReceiver<Option<Message>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Socket {
    fn reading(ws: Ws) -> Socket {
        let (sink, mut stream) = ws.split();
        let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if tx.send(Some(frame)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        Socket {
            sink,
            frames,
            reader,
        }
    }

    /// Opens `/graphql/ws` in `graphql-transport-ws` (see [`connect`]).
    async fn open(s: &Server, forwarded_for: Option<&str>) -> Result<Socket, u16> {
        Socket::open_speaking(s, "graphql-transport-ws", forwarded_for).await
    }

    /// As [`Socket::open`], in the given subprotocol.
    async fn open_speaking(
        s: &Server,
        protocol: &str,
        forwarded_for: Option<&str>,
    ) -> Result<Socket, u16> {
        connect(s, protocol, forwarded_for)
            .await
            .map(Socket::reading)
    }

    /// Opens and signs in with `token` (anonymous without), expecting `connection_ack`.
    async fn signed_in(s: &Server, token: Option<&str>) -> Socket {
        let mut socket = Socket::open(s, None).await.expect("upgrade");
        let ack = socket.init(token).await;
        assert!(
            matches!(&ack, Got::Message(m) if m["type"] == "connection_ack"),
            "{ack:?}"
        );
        socket
    }

    /// Sends `connection_init` with `token` and returns the answer.
    async fn init(&mut self, token: Option<&str>) -> Got {
        let payload = token.map_or(
            json!({}),
            |t| json!({ "Authorization": format!("Bearer {t}") }),
        );
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        self.next(Duration::from_secs(15)).await
    }

    async fn send(&mut self, msg: Value) {
        self.sink
            .send(Message::text(msg.to_string()))
            .await
            .expect("send");
    }

    async fn subscribe(&mut self, id: &str, query: &str) {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query}}))
            .await;
    }

    /// The next protocol message, a close, or silence after `within`.
    async fn next(&mut self, within: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(frame) = tokio::time::timeout_at(deadline, self.frames.recv()).await else {
                return Got::Silent;
            };
            match frame.flatten() {
                Some(Message::Text(t)) => {
                    return Got::Message(serde_json::from_str(t.as_str()).expect("json"))
                }
                Some(Message::Close(frame)) => {
                    return Got::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(_) => {}
                None => return Got::Closed(None),
            }
        }
    }

    /// Whether a WebSocket ping comes within `within`.
    async fn pinged(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(Some(Message::Ping(_)))) => return true,
                Ok(Some(Some(_))) => {}
                Ok(Some(None) | None) | Err(_) => return false,
            }
        }
    }

    /// The next protocol message, which must come within 15 s.
    async fn message(&mut self) -> Value {
        match self.next(Duration::from_secs(15)).await {
            Got::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// A `next` carrying data (not errors).
fn is_data(m: &Value) -> bool {
    m["type"] == "next" && !m["payload"]["data"].is_null()
}

/// The first error code a message carries: a `next` with errors or an `error`.
fn error_code(m: &Value) -> Option<&str> {
    let errors = match m["type"].as_str() {
        Some("next") => &m["payload"]["errors"],
        Some("error") => &m["payload"],
        _ => return None,
    };
    errors[0]["extensions"]["code"].as_str()
}

/// Customers created after `position` (a subscription without `after` starts wherever the
/// head is when it first runs, which may be after a customer created just then).
fn customer_feed_after(position: &str) -> String {
    format!(
        "subscription {{ events(eventTypes: [\"CustomerCreated\"], after: \"{position}\") {{ eventType aggregateId }} }}"
    )
}

// --------------------------------------------------------------- timeouts

async fn sockets_that_never_send_connection_init_are_closed_within_five_seconds(engine: Engine) {
    let db = TestDb::new(engine).await;
    // Through a trusted proxy, from twenty addresses: the per-address cap stays out of it.
    let s = start(&db, &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let mut silent = Vec::new();
    for i in 1..=20 {
        let opened = Instant::now();
        let socket = Socket::open(&s, Some(&format!("198.51.100.{i}")))
            .await
            .expect("upgrade");
        silent.push((opened, socket));
    }
    let closes =
        futures::future::join_all(silent.into_iter().map(|(opened, mut socket)| async move {
            let got = socket.next(INIT_TIMEOUT + Duration::from_secs(3)).await;
            (got, opened.elapsed())
        }))
        .await;
    for (got, after) in closes {
        assert!(
            matches!(got, Got::Closed(Some(4408))),
            "{got:?} after {after:?}"
        );
        assert!(
            after >= INIT_TIMEOUT - Duration::from_millis(500)
                && after <= INIT_TIMEOUT + Duration::from_millis(1_500),
            "closed after {after:?}"
        );
    }
    tests::health::assert_no_failures(&s.base).await;
}

async fn a_socket_that_stops_answering_pings_is_dropped_while_a_live_one_stays(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let from = customer(&s, &admin, "Before Pinging").await;
    // The dead one is signed in, then never read again: it answers no ping.
    let mut dead = connect(&s, "graphql-transport-ws", None)
        .await
        .expect("upgrade");
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {admin}")}});
    dead.send(Message::text(init.to_string()))
        .await
        .expect("init");
    let ack = tokio::time::timeout(Duration::from_secs(15), dead.next()).await;
    assert!(
        matches!(&ack, Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("connection_ack")),
        "{ack:?}"
    );
    let silent_from = Instant::now();
    // The live one answers every ping, as a browser does.
    let mut live = Socket::signed_in(&s, Some(&admin)).await;
    assert!(
        live.pinged(PING_EVERY + Duration::from_secs(2)).await,
        "no ping within {PING_EVERY:?}"
    );
    // Two ping intervals (and a little) later, the dead one has been closed: what it reads
    // now is at most the pings it never answered and the close.
    tokio::time::sleep_until((silent_from + 2 * PING_EVERY + Duration::from_secs(2)).into()).await;
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match dead.next().await {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(frame))) => return Some(frame.map(|f| u16::from(f.code))),
                _ => return None,
            }
        }
    })
    .await;
    assert!(
        matches!(closed, Ok(None | Some(Some(1001)))),
        "a socket that answers no ping is still open: {closed:?}"
    );
    assert!(
        matches!(live.next(Duration::from_millis(200)).await, Got::Silent),
        "the live socket ended"
    );
    live.subscribe("still", &customer_feed_after(&from)).await;
    customer(&s, &admin, "Pinged Patron").await;
    assert!(is_data(&live.message().await));
    tests::health::assert_no_failures(&s.base).await;
}

// -------------------------------------------------------------------- caps

async fn the_21st_subscription_of_one_user_is_refused_across_sockets(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let from = customer(&s, &admin, "First Feed").await;
    let feed = customer_feed_after(&from);
    let mut a = Socket::signed_in(&s, Some(&admin)).await;
    let mut b = Socket::signed_in(&s, Some(&admin)).await;
    for i in 0..SUBSCRIPTIONS_PER_USER / 2 {
        a.subscribe(&format!("a{i}"), &feed).await;
        b.subscribe(&format!("b{i}"), &feed).await;
    }
    // All twenty run: each sees the next customer.
    let next = customer(&s, &admin, "Twenty Watchers").await;
    for socket in [&mut a, &mut b] {
        for _ in 0..SUBSCRIPTIONS_PER_USER / 2 {
            let m = socket.message().await;
            assert!(is_data(&m), "{m}");
        }
    }
    // The 21st, on a third socket, is refused with an `error` message.
    let mut c = Socket::signed_in(&s, Some(&admin)).await;
    c.subscribe("c0", &customer_feed_after(&next)).await;
    let refused = c.message().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "c0");
    assert_eq!(error_code(&refused), Some("RATE_LIMITED"), "{refused}");
    // Completing one frees its place.
    a.send(json!({"id": "a0", "type": "complete"})).await;
    let mut admitted = false;
    for attempt in 0..20 {
        let id = format!("c{}", attempt + 1);
        c.subscribe(&id, &customer_feed_after(&next)).await;
        customer(&s, &admin, &format!("Freed Place {attempt}")).await;
        let m = c.message().await;
        if is_data(&m) {
            admitted = true;
            break;
        }
        assert_eq!(error_code(&m), Some("RATE_LIMITED"), "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "a completed subscription did not free its place");
    tests::health::assert_no_failures(&s.base).await;
}

async fn the_11th_socket_of_one_user_is_closed_until_another_closes(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let mut open = Vec::new();
    for _ in 0..SOCKETS_PER_USER {
        open.push(Socket::signed_in(&s, Some(&admin)).await);
    }
    let mut eleventh = Socket::open(&s, None).await.expect("upgrade");
    let got = eleventh.init(Some(&admin)).await;
    assert!(matches!(got, Got::Closed(Some(4429))), "{got:?}");
    // Another user is not affected.
    let (_, desk) = staff_user(&s, &admin, "desk@dirtfree.example", "STAFF").await;
    Socket::signed_in(&s, Some(&desk)).await;
    // Once one closes, the user may open another.
    let mut first = open.remove(0);
    first.sink.close().await.expect("close");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Socket::open(&s, None).await.expect("upgrade");
        match again.init(Some(&admin)).await {
            Got::Message(m) if m["type"] == "connection_ack" => break,
            Got::Closed(Some(4429)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("a closed socket did not free its place: {other:?}"),
        }
    }
    tests::health::assert_no_failures(&s.base).await;
}

async fn sockets_not_signed_in_are_capped_per_address_whatever_x_forwarded_for_says(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    // No trusted proxy: X-Forwarded-For is the client's own claim and is ignored.
    let s = start(&db, &[]).await;
    let mut anonymous = Vec::new();
    for i in 0..ANONYMOUS_SOCKETS_PER_ADDRESS {
        let forged = format!("203.0.113.{i}");
        anonymous.push(Socket::open(&s, Some(&forged)).await.expect("upgrade"));
    }
    assert_eq!(
        Socket::open(&s, Some("203.0.113.200")).await.err(),
        Some(429)
    );
    assert_eq!(Socket::open(&s, None).await.err(), Some(429));
    // A socket that signs in counts against its user instead, and frees the address's place.
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let ack = anonymous[0].init(Some(&admin)).await;
    assert!(
        matches!(&ack, Got::Message(m) if m["type"] == "connection_ack"),
        "{ack:?}"
    );
    // Signed-in sockets are not held to the address's cap (this one counts against it only
    // until its `connection_init`).
    Socket::signed_in(&s, Some(&admin)).await;
    let mut one_more = Socket::open(&s, None).await.expect("a freed place");
    assert_eq!(Socket::open(&s, None).await.err(), Some(429));
    // Still serving; anonymous sockets do not get past UNAUTHENTICATED.
    let ack = one_more.init(None).await;
    assert!(
        matches!(&ack, Got::Message(m) if m["type"] == "connection_ack"),
        "{ack:?}"
    );
    one_more
        .subscribe("x", "subscription { jobBoard { id } }")
        .await;
    assert_eq!(
        error_code(&one_more.message().await),
        Some("UNAUTHENTICATED")
    );
    tests::health::assert_no_failures(&s.base).await;
}

async fn behind_a_trusted_proxy_the_cap_counts_the_forwarded_address(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let mut held = Vec::new();
    for _ in 0..ANONYMOUS_SOCKETS_PER_ADDRESS {
        held.push(
            Socket::open(&s, Some("203.0.113.7"))
                .await
                .expect("upgrade"),
        );
    }
    assert_eq!(Socket::open(&s, Some("203.0.113.7")).await.err(), Some(429));
    // A client that writes its own entry to the left does not choose its address: the
    // proxy appended the real one.
    assert_eq!(
        Socket::open(&s, Some("203.0.113.8, 203.0.113.7"))
            .await
            .err(),
        Some(429)
    );
    // Another client behind the same proxy is not held to the first one's cap.
    held.push(
        Socket::open(&s, Some("203.0.113.8"))
            .await
            .expect("another address"),
    );
    // An IPv6 client counts by its /64, whichever of its addresses it uses.
    for i in 0..ANONYMOUS_SOCKETS_PER_ADDRESS {
        let rotated = format!("2001:db8:1:2::{:x}", i + 1);
        held.push(Socket::open(&s, Some(&rotated)).await.expect("upgrade"));
    }
    assert_eq!(
        Socket::open(&s, Some("2001:db8:1:2:ffff::1")).await.err(),
        Some(429)
    );
    held.push(
        Socket::open(&s, Some("2001:db8:1:3::1"))
            .await
            .expect("another /64"),
    );
    tests::health::assert_no_failures(&s.base).await;
}

// ---------------------------------------------------------------- messages

async fn a_2_mib_message_closes_the_socket_and_the_server_keeps_serving(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let from = customer(&s, &admin, "Before The Flood").await;
    let feed = customer_feed_after(&from);
    // Up to the limit is fine: a subscription padded to 60 KiB runs.
    let mut fine = Socket::signed_in(&s, Some(&admin)).await;
    let padded = format!("{feed}{}", " ".repeat(60 * 1024));
    fine.subscribe("padded", &padded).await;

    let mut big = Socket::signed_in(&s, Some(&admin)).await;
    let huge = json!({"id": "huge", "type": "subscribe", "payload": {"query": feed,
        "variables": {"pad": "x".repeat(2 * 1024 * 1024)}}});
    // The server may close while the message is still being written.
    let _ = big.sink.send(Message::text(huge.to_string())).await;
    let got = big.next(Duration::from_secs(10)).await;
    assert!(
        matches!(got, Got::Closed(None | Some(1009))),
        "a 2 MiB message was not refused: {got:?}"
    );

    // Still serving, over HTTP and over sockets old and new.
    customer(&s, &admin, "After The Flood").await;
    let m = fine.message().await;
    assert!(is_data(&m), "{m}");
    let mut fresh = Socket::signed_in(&s, Some(&admin)).await;
    fresh.subscribe("fresh", &feed).await;
    customer(&s, &admin, "Fresh Socket").await;
    let m = fresh.message().await;
    assert!(is_data(&m), "{m}");
    tests::health::assert_no_failures(&s.base).await;
}

// ---------------------------------------------------------------- sessions

/// What a subscribed socket received after its session was ended at `ended`, while
/// customers kept being created: `(since ended, message or close)` in order.
async fn after_the_end(
    s: &Server,
    socket: &mut Socket,
    control: &mut Socket,
    creator: &str,
    ended: Instant,
) -> Vec<(Duration, Result<Value, Option<u16>>)> {
    let base = s.url.clone();
    let creator = creator.to_string();
    // One customer every 100 ms for 2.5 s after the end.
    let making = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut made = Vec::new();
        for i in 0..25 {
            let r: Value = client
                .post(&base)
                .bearer_auth(&creator)
                .json(&json!({"query": "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
                    "variables": {"i": {"name": format!("Later Customer {i}")}}}))
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            made.push((
                ended.elapsed(),
                r["data"]["createCustomer"]["customer"]["id"].clone(),
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        made
    });
    let mut seen = Vec::new();
    let until = ended + Duration::from_secs(3);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match socket.next(left).await {
            Got::Message(m) => seen.push((ended.elapsed(), Ok(m))),
            Got::Closed(code) => {
                seen.push((ended.elapsed(), Err(code)));
                break;
            }
            Got::Silent => break,
        }
    }
    let made = making.await.expect("creator");
    // The events were made, and someone still signed in saw those made after the bound.
    let late: Vec<&Value> = made
        .iter()
        .filter(|(at, _)| *at > SESSION_BOUND + Duration::from_millis(200))
        .map(|(_, id)| id)
        .collect();
    assert!(
        late.len() >= 10,
        "too few customers created after the bound: {made:?}"
    );
    let mut watched = Vec::new();
    while watched.len() < made.len() {
        let m = control.message().await;
        assert!(is_data(&m), "{m}");
        watched.push(m["payload"]["data"]["events"]["aggregateId"].clone());
    }
    for id in late {
        assert!(watched.contains(id), "the control socket missed {id}");
    }
    seen
}

/// The session's subscription stopped within [`SESSION_BOUND`]: an error or a close came
/// by then, and no data after it.
fn stopped_within_the_bound(seen: &[(Duration, Result<Value, Option<u16>>)]) {
    let refusal = seen.iter().position(|(_, m)| match m {
        Ok(m) => matches!(error_code(m), Some("UNAUTHENTICATED" | "FORBIDDEN")),
        Err(_) => true,
    });
    let Some(refusal) = refusal else {
        panic!("no error or close after the session ended: {seen:?}");
    };
    assert!(
        seen[refusal].0 <= SESSION_BOUND,
        "the subscription ended only after {:?}: {seen:?}",
        seen[refusal].0
    );
    let data_after: Vec<_> = seen[refusal..]
        .iter()
        .filter(|(_, m)| m.as_ref().is_ok_and(is_data))
        .collect();
    assert!(
        data_after.is_empty(),
        "events after the end: {data_after:?}"
    );
    let data_late: Vec<_> = seen
        .iter()
        .filter(|(at, m)| *at > SESSION_BOUND && m.as_ref().is_ok_and(is_data))
        .collect();
    assert!(
        data_late.is_empty(),
        "events after {SESSION_BOUND:?}: {data_late:?}"
    );
}

async fn a_signed_out_admin_stops_receiving_events_within_a_second(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let owner = login(&s, ADMIN.0, ADMIN.1).await;
    let leaving = login(&s, ADMIN.0, ADMIN.1).await;
    let from = customer(&s, &owner, "Before Signing Out").await;
    let mut socket = Socket::signed_in(&s, Some(&leaving)).await;
    socket.subscribe("feed", &customer_feed_after(&from)).await;
    let mut control = Socket::signed_in(&s, Some(&owner)).await;
    control
        .subscribe("control", &customer_feed_after(&from))
        .await;
    // Subscribed and receiving.
    customer(&s, &owner, "While Signed In").await;
    assert!(is_data(&socket.message().await));
    assert!(is_data(&control.message().await));

    let out = gql(&s, Some(&leaving), "mutation { logout }", json!({})).await;
    let ended = Instant::now();
    assert_eq!(data(&out, "/data/logout"), true);
    let seen = after_the_end(&s, &mut socket, &mut control, &owner, ended).await;
    stopped_within_the_bound(&seen);
    // The socket closes with 4401: the client must sign in again.
    assert!(
        seen.iter().any(|(_, m)| matches!(m, Err(Some(4401)))),
        "{seen:?}"
    );
    tests::health::assert_no_failures(&s.base).await;
}

async fn a_deactivated_admin_stops_receiving_events_within_a_second(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let owner = login(&s, ADMIN.0, ADMIN.1).await;
    let (other_id, other) = staff_user(&s, &owner, "second.admin@dirtfree.example", "ADMIN").await;
    let from = customer(&s, &owner, "Before Deactivation").await;
    let mut socket = Socket::signed_in(&s, Some(&other)).await;
    socket.subscribe("feed", &customer_feed_after(&from)).await;
    let mut control = Socket::signed_in(&s, Some(&owner)).await;
    control
        .subscribe("control", &customer_feed_after(&from))
        .await;
    customer(&s, &owner, "While Active").await;
    assert!(is_data(&socket.message().await));
    assert!(is_data(&control.message().await));

    let r = gql(
        &s,
        Some(&owner),
        "mutation($i: DeactivateStaffUserInput!) { deactivateStaffUser(input: $i) { staffUser { active } } }",
        json!({"i": {"staffUserId": other_id}}),
    )
    .await;
    let ended = Instant::now();
    assert_eq!(
        data(&r, "/data/deactivateStaffUser/staffUser/active"),
        false
    );
    let seen = after_the_end(&s, &mut socket, &mut control, &owner, ended).await;
    stopped_within_the_bound(&seen);
    tests::health::assert_no_failures(&s.base).await;
}

async fn a_demoted_admin_loses_the_event_feed_but_keeps_the_job_board(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let owner = login(&s, ADMIN.0, ADMIN.1).await;
    let (other_id, other) = staff_user(&s, &owner, "demoted@dirtfree.example", "ADMIN").await;
    let from = customer(&s, &owner, "Board Customer").await;
    let mut socket = Socket::signed_in(&s, Some(&other)).await;
    socket.subscribe("feed", &customer_feed_after(&from)).await;
    socket
        .subscribe(
            "board",
            &format!("subscription {{ jobBoard(after: \"{from}\") {{ eventType id }} }}"),
        )
        .await;
    let mut control = Socket::signed_in(&s, Some(&owner)).await;
    control
        .subscribe("control", &customer_feed_after(&from))
        .await;

    let r = gql(
        &s,
        Some(&owner),
        "mutation($i: ChangeStaffRoleInput!) { changeStaffRole(input: $i) { staffUser { role } } }",
        json!({"i": {"staffUserId": other_id, "role": "MANAGER"}}),
    )
    .await;
    let ended = Instant::now();
    assert_eq!(data(&r, "/data/changeStaffRole/staffUser/role"), "MANAGER");
    let seen = after_the_end(&s, &mut socket, &mut control, &owner, ended).await;
    stopped_within_the_bound(&seen);
    let forbidden = seen.iter().find_map(|(_, m)| {
        m.as_ref()
            .ok()
            .filter(|m| error_code(m) == Some("FORBIDDEN"))
    });
    assert_eq!(
        forbidden.map(|m| m["id"].clone()),
        Some(json!("feed")),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, m)| m.is_ok()),
        "the socket closed: {seen:?}"
    );
    // The job board goes on for a manager.
    let c = gql(
        &s,
        Some(&owner),
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({"i": {"name": "Job Owner"}}),
    )
    .await;
    let job = gql(
        &s,
        Some(&owner),
        "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"i": {"customerId": text(&c, "/data/createCustomer/customer/id"), "services": ["rug cleaning"]}}),
    )
    .await;
    let job = text(&job, "/data/bookJob/job/id");
    let m = socket.message().await;
    assert_eq!(m["id"], "board", "{m}");
    assert_eq!(m["payload"]["data"]["jobBoard"]["id"], json!(job), "{m}");
    tests::health::assert_no_failures(&s.base).await;
}

// ------------------------------------------------------------------ resume

async fn staff_may_not_resume_more_than_1000_events_back_but_admins_may(engine: Engine) {
    let db = TestDb::new(engine).await;
    // 1,150 customers written before the server starts.
    {
        let log = db.log().await;
        let crm = tests::app_support::crm(log.clone());
        futures::stream::iter(0..1_150u128)
            .for_each_concurrent(8, |n| {
                let crm = crm.clone();
                async move {
                    let id = commands::domain::ids::CustomerId(uuid::Uuid::from_u128(n + 1));
                    let create = commands::domain::customer::CustomerCommand::Create {
                        customer_id: id,
                        name: format!("History {n}"),
                        email: None,
                        phone: None,
                        birthday: None,
                        customer_since: None,
                    };
                    crm.customers()
                        .execute(
                            id,
                            tests::app_support::staff(),
                            create,
                            &tests::app_support::meta(),
                        )
                        .await
                        .expect("create customer");
                }
            })
            .await;
        log.close().await;
    }
    let s = start(&db, &[]).await;
    // The read models take in the history first (creating a user waits for them).
    tests::health::assert_no_failures(&s.base).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let (_, desk) = staff_user(&s, &admin, "resume@dirtfree.example", "STAFF").await;
    let log = db.log().await;
    let positions: Vec<String> = tests::app_support::all_events(&log)
        .await
        .iter()
        .map(|e| e.position.to_string())
        .collect();
    let behind = |n: usize| positions[positions.len() - 1 - n].clone();
    let board =
        |after: &str| format!("subscription {{ jobBoard(after: \"{after}\") {{ eventType id }} }}");

    let mut socket = Socket::signed_in(&s, Some(&desk)).await;
    for (id, after) in [
        ("start", "0.0".to_string()),
        ("far", behind(MAX_RESUME_BEHIND + 100)),
    ] {
        socket.subscribe(id, &board(&after)).await;
        let refused = socket.message().await;
        assert_eq!(refused["id"], id);
        let error = &refused["payload"]["errors"][0]["extensions"];
        assert_eq!(
            (&error["code"], &error["rule"], &error["field"]),
            (
                &json!("RULE_VIOLATION"),
                &json!("RESUME_TOO_FAR_BACK"),
                &json!("after")
            ),
            "{refused}"
        );
        assert_eq!(socket.message().await["type"], "complete");
    }
    // Within reach: it runs, and sees a job booked now.
    socket
        .subscribe("near", &board(&behind(MAX_RESUME_BEHIND - 100)))
        .await;
    let job = gql(
        &s,
        Some(&desk),
        "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"i": {"customerId": uuid::Uuid::from_u128(1).to_string(), "services": ["rug cleaning"]}}),
    )
    .await;
    let m = socket.message().await;
    assert_eq!(m["id"], "near", "{m}");
    assert_eq!(
        m["payload"]["data"]["jobBoard"]["id"],
        *data(&job, "/data/bookJob/job/id"),
        "{m}"
    );
    // An admin may replay the whole log.
    let mut feed = Socket::signed_in(&s, Some(&admin)).await;
    feed.subscribe("all", &customer_feed_after("0.0")).await;
    let first = feed.message().await;
    let replayed = first["payload"]["data"]["events"]["aggregateId"]
        .as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(|id| id.as_u128());
    assert!(
        replayed.is_some_and(|n| (1..=1_150).contains(&n)),
        "not one of the first customers: {first}"
    );
    log.close().await;
    tests::health::assert_no_failures(&s.base).await;
}

async fn staff_may_not_resume_from_the_start_even_of_a_short_log(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let (_, desk) = staff_user(&s, &admin, "short@dirtfree.example", "STAFF").await;
    let mut socket = Socket::signed_in(&s, Some(&desk)).await;
    socket
        .subscribe("start", "subscription { jobBoard(after: \"0.0\") { id } }")
        .await;
    let refused = socket.message().await;
    let error = &refused["payload"]["errors"][0]["extensions"];
    assert_eq!(
        (&error["code"], &error["rule"]),
        (&json!("RULE_VIOLATION"), &json!("RESUME_TOO_FAR_BACK")),
        "{refused}"
    );
    // An admin may.
    let mut feed = Socket::signed_in(&s, Some(&admin)).await;
    feed.subscribe(
        "all",
        "subscription { events(after: \"0.0\") { eventType } }",
    )
    .await;
    let first = feed.message().await;
    assert!(is_data(&first), "{first}");
    tests::health::assert_no_failures(&s.base).await;
}

async fn the_older_graphql_ws_protocol_is_still_spoken(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let from = customer(&s, &admin, "Before Legacy").await;
    let mut socket = Socket::open_speaking(&s, "graphql-ws", None)
        .await
        .expect("upgrade");
    let ack = socket.init(Some(&admin)).await;
    assert!(
        matches!(&ack, Got::Message(m) if m["type"] == "connection_ack"),
        "{ack:?}"
    );
    assert_eq!(socket.message().await["type"], "ka");
    socket
        .send(json!({"id": "1", "type": "start", "payload": {"query": customer_feed_after(&from)}}))
        .await;
    customer(&s, &admin, "Legacy Client").await;
    let m = socket.message().await;
    assert_eq!((&m["type"], &m["id"]), (&json!("data"), &json!("1")), "{m}");
    assert_eq!(
        m["payload"]["data"]["events"]["eventType"],
        "CustomerCreated"
    );
    socket.send(json!({"id": "1", "type": "stop"})).await;
    customer(&s, &admin, "After Stop").await;
    let got = socket.next(Duration::from_secs(2)).await;
    assert!(
        matches!(&got, Got::Silent) || matches!(&got, Got::Message(m) if m["type"] == "ka"),
        "{got:?}"
    );
    tests::health::assert_no_failures(&s.base).await;
}

// ------------------------------------------------------------ server errors

/// Runs `sql` on the test database, beside the server.
async fn execute(db: &TestDb, engine: Engine, sql: &str) {
    use sqlx::{Connection, Executor};
    match engine {
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            c.execute(sql).await.expect(sql);
        }
        Engine::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("connect");
            c.execute(sql).await.expect(sql);
        }
    }
}

async fn a_store_that_cannot_check_the_session_closes_the_socket_with_1011_not_4401(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    let s = start(&db, &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let from = customer(&s, &admin, "Before The Outage").await;
    let mut socket = Socket::signed_in(&s, Some(&admin)).await;
    socket.subscribe("feed", &customer_feed_after(&from)).await;
    customer(&s, &admin, "While Checked").await;
    assert!(is_data(&socket.message().await));

    // The sessions table cannot be read: the next check fails with a database error.
    execute(&db, engine, "ALTER TABLE sessions RENAME TO sessions_away").await;
    let mut seen = Vec::new();
    let closed = loop {
        match socket.next(Duration::from_secs(5)).await {
            Got::Message(m) => seen.push(m),
            Got::Closed(code) => break code,
            Got::Silent => {
                panic!("the socket stayed open while its session could not be checked: {seen:?}")
            }
        }
    };
    execute(&db, engine, "ALTER TABLE sessions_away RENAME TO sessions").await;
    // A server error, not "your session ended": the subscription was not told UNAUTHENTICATED.
    assert_eq!(closed, Some(1011), "{seen:?}");
    assert!(
        seen.iter().all(|m| error_code(m).is_none()),
        "the client was told its session ended: {seen:?}"
    );
    // And it had not: the same token signs a new socket in, and the admin's feed runs.
    // (The feed replays the customer created after `from`: only a signed-in admin gets it.)
    let mut again = Socket::signed_in(&s, Some(&admin)).await;
    again.subscribe("again", &customer_feed_after(&from)).await;
    let m = again.message().await;
    assert!(is_data(&m), "{m}");
    tests::health::assert_no_failures(&s.base).await;
}

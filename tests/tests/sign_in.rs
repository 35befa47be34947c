//! Hostile clients at the door (issue #14): sign-in is limited per network (an IPv4 address,
//! an IPv6 /64) and per account, sign-up per network, for `login` and `portalLogin` alike, and a
//! limited answer is `RATE_LIMITED` whether or not the account exists. Staff sign-in decides
//! on the event log's state of the user, not on a read model that may lag it, and an open
//! session takes a demotion on its next request.
//!
//! The limits are in the server's memory, the same on every engine: their scenarios run
//! against one server on SQLite. The scenarios that read staff users from the log run on both
//! engines. Each server trusts 127.0.0.1 as its proxy, so the test chooses every request's
//! client address with `X-Forwarded-For`, as a reverse proxy would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use commands::domain::ids::StaffUserId;
use commands::domain::staff::StaffUserCommand;
use commands::domain::{Actor as DomainActor, Role};
use commands::{Actor, EventMetadata};
use serde_json::{json, Value};
use tests::{Engine, TestDb};
use uuid::Uuid;

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");
const LOGIN: &str = "mutation($i: LoginInput!) { login(input: $i) { token role } }";
const PORTAL_LOGIN: &str = "mutation($i: LoginInput!) { portalLogin(input: $i) { token } }";
const REGISTER: &str =
    "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token } }";
/// An operation only staff (any role) may call.
const STAFF_ONLY: &str = "{ customers(first: 1) { totalCount } }";
/// An operation only an admin may call.
const ADMIN_ONLY: &str = "{ staffUsers(first: 1) { totalCount } }";

// ------------------------------------------------------------------ the client

/// A server behind a "proxy" (this test) and a client that speaks from any address.
struct Api {
    server: tests::ServerProcess,
    http: reqwest::Client,
    /// Where sign-up codes go.
    mailbox: tests::standins::Mailbox,
    /// Sign-up codes asked for so far (each from its own network, see `sign_up`).
    codes_asked: std::sync::atomic::AtomicU32,
}

async fn start(db: &TestDb) -> Api {
    let (mailbox, resend) = tests::standins::Mailbox::start().await;
    let [key, from, base] = tests::standins::Mailbox::env(&resend);
    let server = tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[
            key,
            from,
            base,
            ("ADMIN_EMAIL", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("DEMO_SEED", "off"),
            ("DATABASE_URL", &db.url),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
        Duration::from_secs(120),
    )
    .await;
    Api {
        server,
        http: reqwest::Client::new(),
        mailbox,
        codes_asked: std::sync::atomic::AtomicU32::new(0),
    }
}

/// What a sign-in or sign-up answered: the token, or the error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Token(String),
    Refused { code: String, message: String },
}

impl Answer {
    fn code(&self) -> &str {
        match self {
            Answer::Token(_) => "",
            Answer::Refused { code, .. } => code,
        }
    }

    fn token(&self) -> &str {
        match self {
            Answer::Token(t) => t,
            Answer::Refused { code, message } => panic!("no token: {code}: {message}"),
        }
    }

    fn limited(&self) -> bool {
        self.code() == "RATE_LIMITED"
    }
}

impl Api {
    /// One GraphQL request from client address `from`.
    async fn gql(&self, from: &str, token: Option<&str>, query: &str, variables: Value) -> Value {
        gql_at(&self.http, &self.server.url, from, token, query, variables).await
    }

    /// `mutation` (`login`, `portalLogin`) with these credentials, from `from`.
    async fn sign_in(&self, from: &str, mutation: &str, email: &str, password: &str) -> Answer {
        let query = if mutation == "login" {
            LOGIN
        } else {
            PORTAL_LOGIN
        };
        let r = self
            .gql(
                from,
                None,
                query,
                json!({"i": {"email": email, "password": password}}),
            )
            .await;
        answer(&r, mutation)
    }

    /// A portal sign-up from `from`, with the code for `email` (asked for from a network of
    /// its own, so that what is limited here is the sign-up itself).
    async fn sign_up(&self, from: &str, email: &str) -> Answer {
        let n = self
            .codes_asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let asker = format!("198.18.{}.{}", n / 250, n % 250 + 1);
        let started = self
            .gql(
                &asker,
                None,
                tests::standins::START_SIGN_UP,
                json!({"i": {"email": email}}),
            )
            .await;
        assert_eq!(
            started["data"]["startPortalSignUp"]["accepted"], true,
            "{started}"
        );
        let code = self.mailbox.code_for(email).await;
        let r = self
            .gql(
                from,
                None,
                REGISTER,
                json!({"i": {"name": "Pat Portal", "email": email, "password": "portal-password-1",
                    "code": code}}),
            )
            .await;
        answer(&r, "registerPortalAccount")
    }

    /// Creates a staff user (as the admin, from `from`) and waits until they can sign in.
    async fn create_staff(
        &self,
        from: &str,
        admin: &str,
        email: &str,
        password: &str,
        role: &str,
    ) -> String {
        let r = self
            .gql(
                from,
                Some(admin),
                "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } position } }",
                json!({"i": {"email": email, "name": "Sam Staff", "role": role, "password": password}}),
            )
            .await;
        let position = at(&r, "/data/createStaffUser/position").clone();
        let synced = self
            .gql(
                from,
                Some(admin),
                "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
                json!({"p": position}),
            )
            .await;
        assert_eq!(at(&synced, "/data/sync"), true, "{synced}");
        at(&r, "/data/createStaffUser/staffUser/id")
            .as_str()
            .expect("id")
            .to_string()
    }
}

async fn gql_at(
    http: &reqwest::Client,
    url: &str,
    from: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = http
        .post(url)
        .header("x-forwarded-for", from)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("HTTP {status} without JSON: {body}"))
}

fn answer(r: &Value, mutation: &str) -> Answer {
    match r
        .pointer(&format!("/data/{mutation}/token"))
        .and_then(Value::as_str)
    {
        Some(t) => Answer::Token(t.to_string()),
        None => Answer::Refused {
            code: r["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_else(|| panic!("an answer without a token or a code: {r}"))
                .to_string(),
            message: r["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        },
    }
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
    v.pointer(path)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

/// How many answers got past the limits (anything but `RATE_LIMITED`).
fn admitted(answers: &[Answer]) -> usize {
    answers.iter().filter(|a| !a.limited()).count()
}

/// The most a limit of `burst`, refilled over `period`, lets through in `elapsed`.
fn allowance(burst: u32, period: Duration, elapsed: Duration) -> usize {
    let refill = elapsed.as_secs_f64() / (period.as_secs_f64() / f64::from(burst));
    burst as usize + refill.ceil() as usize
}

// ------------------------------------------------------------- the limits

async fn password_guessing_from_a_thousand_addresses_of_one_ipv6_64_is_limited() {
    let db = TestDb::new(Engine::Sqlite).await;
    let api = start(&db).await;
    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0u32..1000 {
        // Every guess from another address of 2001:db8:bad:1::/64, at another account, by
        // `login` and `portalLogin` in turn: only the network has anything in common.
        let from = format!(
            "2001:db8:bad:1:{:x}:{:x}::{:x}",
            i >> 8,
            i & 0xff,
            i * 7 + 1
        );
        let mutation = if i % 2 == 0 { "login" } else { "portalLogin" };
        let a = api
            .sign_in(
                &from,
                mutation,
                &format!("guess-{i}@sign-in.example"),
                "wrong-password-1",
            )
            .await;
        assert!(
            matches!(a.code(), "UNAUTHENTICATED" | "RATE_LIMITED"),
            "{a:?}"
        );
        answers.push(a);
    }
    let through = admitted(&answers);
    let most = allowance(10, Duration::from_secs(60), started.elapsed());
    assert!(
        (10..=most).contains(&through),
        "{through} of 1,000 guesses from one /64 were answered (10 at once, then one per 6 s: at most {most})"
    );
    // Another /64 of the same /48 is another network.
    let next_door = api
        .sign_in(
            "2001:db8:bad:2::1",
            "login",
            "guess-0@sign-in.example",
            "wrong-password-1",
        )
        .await;
    assert_eq!(next_door.code(), "UNAUTHENTICATED", "{next_door:?}");
    tests::health::assert_no_failures(&api.server.base).await;
}

async fn guessing_one_account_from_two_hundred_networks_is_limited_the_same_whether_it_exists_or_not(
) {
    let db = TestDb::new(Engine::Sqlite).await;
    let api = start(&db).await;
    let portal = api.sign_up("192.0.2.200", "pat@sign-in.example").await;
    portal.token();
    // 200 guesses from 200 IPv4 addresses each, at: the admin, an email nobody has, and a
    // portal customer (portalLogin).
    let targets = [
        ("login", ADMIN.0, "198.51.100"),
        ("login", "nobody@sign-in.example", "203.0.113"),
        ("portalLogin", "pat@sign-in.example", "192.0.2"),
    ];
    let started = Instant::now();
    let mut runs = Vec::new();
    for (mutation, email, net) in targets {
        let mut answers = Vec::new();
        for i in 0..200 {
            answers.push(
                api.sign_in(
                    &format!("{net}.{i}"),
                    mutation,
                    email,
                    &format!("guess-{i}-pw"),
                )
                .await,
            );
        }
        runs.push(answers);
        // The owner waits too, right after the guessing (a failure comes back every 9 s): a
        // right password that got past the limit would tell the guesser which guess was right.
        if email == ADMIN.0 {
            let owner = api
                .sign_in("198.51.100.250", "login", ADMIN.0, ADMIN.1)
                .await;
            assert!(owner.limited(), "{owner:?}");
        }
    }
    let most = allowance(100, Duration::from_secs(15 * 60), started.elapsed());
    for ((mutation, email, _), answers) in targets.iter().zip(&runs) {
        let through = admitted(answers);
        assert!(
            (100..=most).contains(&through),
            "{mutation} {email}: {through} of 200 guesses from 200 networks were answered (at most {most})"
        );
    }
    // The same answers for the admin and for nobody: the limit tells nothing about who
    // exists. The same kinds of answer, and the limit starting at the same guess — up to
    // the attempts that came back while the runs took (one every 9 s: on a loaded machine a
    // run takes long enough for one to land at a different guess in each).
    let kinds = |answers: &[Answer]| {
        let mut k: Vec<Answer> = answers.to_vec();
        k.sort_by_key(|a| format!("{a:?}"));
        k.dedup();
        k
    };
    assert_eq!(
        kinds(&runs[0]),
        kinds(&runs[1]),
        "an existing and an unknown account got different answers"
    );
    let first_limited = |answers: &[Answer]| answers.iter().position(Answer::limited);
    let (a, b) = (first_limited(&runs[0]), first_limited(&runs[1]));
    let (Some(a), Some(b)) = (a, b) else {
        panic!("an account was never limited: {a:?} {b:?}");
    };
    let refills = most - 100;
    assert!(
        a.abs_diff(b) <= refills,
        "an existing and an unknown account were limited from guess {a} and {b} (refills in the time: {refills})"
    );
    tests::health::assert_no_failures(&api.server.base).await;
}

async fn a_user_from_another_network_signs_in_to_another_account_while_one_is_under_attack() {
    let db = TestDb::new(Engine::Sqlite).await;
    let api = start(&db).await;
    let admin = api.sign_in("192.0.2.1", "login", ADMIN.0, ADMIN.1).await;
    let password = "kims-password-1";
    api.create_staff(
        "192.0.2.1",
        admin.token(),
        "kim@sign-in.example",
        password,
        "STAFF",
    )
    .await;
    // The admin's account is guessed at from one network, and everything is guessed at from
    // a /64, until both are limited.
    for _ in 0..40 {
        let _ = api
            .sign_in("198.51.100.7", "login", ADMIN.0, "wrong-password-1")
            .await;
    }
    for i in 0..40 {
        let _ = api
            .sign_in(
                &format!("2001:db8:bad:1::{i:x}"),
                "login",
                "kim@sign-in.example",
                "wrong-password-1",
            )
            .await;
    }
    assert!(api
        .sign_in("198.51.100.7", "login", ADMIN.0, ADMIN.1)
        .await
        .limited());
    // The admin, from their own network: one attacking network cannot lock them out.
    let own = api.sign_in("192.0.2.77", "login", ADMIN.0, ADMIN.1).await;
    own.token();
    // Kim, from her own network, with her password: signed in, and the token works.
    let kim = api
        .sign_in("203.0.113.5", "login", "kim@sign-in.example", password)
        .await;
    let r = api
        .gql("203.0.113.5", Some(kim.token()), STAFF_ONLY, json!({}))
        .await;
    at(&r, "/data/customers/totalCount");
    // From inside the attacked /64 she waits like everyone there.
    let inside = api
        .sign_in(
            "2001:db8:bad:1::beef",
            "login",
            "kim@sign-in.example",
            password,
        )
        .await;
    assert!(inside.limited(), "{inside:?}");
    tests::health::assert_no_failures(&api.server.base).await;
}

async fn sign_ups_are_limited_per_network_before_the_email_is_looked_up() {
    let db = TestDb::new(Engine::Sqlite).await;
    let api = start(&db).await;
    let mut answers = Vec::new();
    for i in 0..12 {
        let from = format!("2001:db8:5:6::{:x}", i + 1);
        answers.push(
            api.sign_up(&from, &format!("new-{i}@sign-in.example"))
                .await,
        );
    }
    let codes: Vec<&str> = answers.iter().map(Answer::code).collect();
    assert_eq!(codes[..10], [""; 10], "{answers:?}");
    assert_eq!(codes[10..], ["RATE_LIMITED"; 2], "{answers:?}");
    // A taken email from the limited network is limited, not "already registered".
    let taken = api
        .sign_up("2001:db8:5:6::99", "new-0@sign-in.example")
        .await;
    assert!(taken.limited(), "{taken:?}");
    // Another network signs up, and the limited sign-ups made nothing.
    api.sign_up("192.0.2.77", "elsewhere@sign-in.example")
        .await
        .token();
    let never = api
        .sign_in(
            "192.0.2.78",
            "portalLogin",
            "new-10@sign-in.example",
            "portal-password-1",
        )
        .await;
    assert_eq!(never.code(), "UNAUTHENTICATED", "{never:?}");
    tests::health::assert_no_failures(&api.server.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_password_guessing_from_a_thousand_addresses_of_one_ipv6_64_is_limited() {
    password_guessing_from_a_thousand_addresses_of_one_ipv6_64_is_limited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_guessing_one_account_from_two_hundred_networks_is_limited_the_same_whether_it_exists_or_not(
) {
    guessing_one_account_from_two_hundred_networks_is_limited_the_same_whether_it_exists_or_not()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_user_from_another_network_signs_in_to_another_account_while_one_is_under_attack()
{
    a_user_from_another_network_signs_in_to_another_account_while_one_is_under_attack().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sign_ups_are_limited_per_network_before_the_email_is_looked_up() {
    sign_ups_are_limited_per_network_before_the_email_is_looked_up().await;
}

// ------------------------------------------------ sessions follow the staff user

async fn a_demoted_admins_open_session_loses_admin_rights_on_its_next_request(engine: Engine) {
    let db = TestDb::new(engine).await;
    let api = start(&db).await;
    let owner = api.sign_in("192.0.2.1", "login", ADMIN.0, ADMIN.1).await;
    let id = api
        .create_staff(
            "192.0.2.1",
            owner.token(),
            "second@sign-in.example",
            "second-admin-pw",
            "ADMIN",
        )
        .await;
    let second = api
        .sign_in(
            "192.0.2.2",
            "login",
            "second@sign-in.example",
            "second-admin-pw",
        )
        .await;
    let r = api
        .gql("192.0.2.2", Some(second.token()), ADMIN_ONLY, json!({}))
        .await;
    at(&r, "/data/staffUsers/totalCount");

    let demoted = api
        .gql(
            "192.0.2.1",
            Some(owner.token()),
            "mutation($i: ChangeStaffRoleInput!) { changeStaffRole(input: $i) { staffUser { role } } }",
            json!({"i": {"staffUserId": id, "role": "STAFF"}}),
        )
        .await;
    assert_eq!(
        at(&demoted, "/data/changeStaffRole/staffUser/role"),
        "STAFF"
    );
    // The same token, the very next request: staff rights, no admin rights.
    let r = api
        .gql("192.0.2.2", Some(second.token()), ADMIN_ONLY, json!({}))
        .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let r = api
        .gql("192.0.2.2", Some(second.token()), STAFF_ONLY, json!({}))
        .await;
    at(&r, "/data/customers/totalCount");
    tests::health::assert_no_failures(&api.server.base).await;
}

/// The real server in this process without its read-model workers: the read model moves only
/// when the test calls `catch_up`, so "the log has it, the read model not yet" is a state the
/// test holds, not a race it hopes to win.
struct Paused {
    state: api::AppState,
    base: String,
    url: String,
    http: reqwest::Client,
}

impl Paused {
    async fn start(db: &TestDb) -> Self {
        let mut config = api::Config::defaults();
        config.database_url = Some(db.url.clone());
        let state = api::build_state(config, db.log().await)
            .await
            .expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app =
            api::http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Paused {
            url: format!("{base}/graphql"),
            base,
            state,
            http: reqwest::Client::new(),
        }
    }

    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        gql_at(&self.http, &self.url, "127.0.0.1", token, query, variables).await
    }

    async fn login(&self, email: &str, password: &str) -> Answer {
        let r = self
            .gql(
                None,
                LOGIN,
                json!({"i": {"email": email, "password": password}}),
            )
            .await;
        answer(&r, "login")
    }

    /// Runs a staff-user command on the log as the system; the read model is not told.
    async fn staff_command(&self, id: StaffUserId, cmd: StaffUserCommand) {
        let meta = EventMetadata::new(Actor::System("sign-in-test".into()), chrono::Utc::now());
        self.state
            .crm
            .staff_users()
            .execute(id, DomainActor::System, cmd, &meta)
            .await
            .expect("staff command");
    }

    /// A staff user with `password` and `role`, seen by the read model.
    async fn staff_user(&self, email: &str, password: &str, role: Role) -> StaffUserId {
        let id = StaffUserId(Uuid::new_v4());
        let hash = worker::accounts::passwords::hash(password).expect("hash");
        self.staff_command(
            id,
            StaffUserCommand::Invite {
                staff_user_id: id,
                email: email.into(),
                name: "Sam Staff".into(),
                role,
                password_hash: Some(hash),
            },
        )
        .await;
        self.catch_up().await;
        id
    }

    async fn catch_up(&self) {
        self.state
            .projections
            .catch_up("accounts")
            .await
            .expect("read model catches up");
    }

    /// The read model's row of staff user `id` (active, role).
    async fn read_model(&self, id: StaffUserId) -> (i64, String) {
        let rows = self
            .state
            .projections
            .query(
                "SELECT active, role FROM rm_staff_users WHERE staff_user_id = $1",
                &[projections::Param::from(id.to_string())],
            )
            .await
            .expect("read model");
        let r = rows.first().expect("a row");
        (
            r["active"].as_i64().expect("active"),
            r["role"].as_str().expect("role").to_string(),
        )
    }

    /// Sessions of staff user `id`.
    async fn sessions(&self, id: StaffUserId) -> usize {
        self.state
            .projections
            .query(
                "SELECT token_hash FROM sessions WHERE principal_kind = 'staff' AND principal_id = $1",
                &[projections::Param::from(id.to_string())],
            )
            .await
            .expect("sessions")
            .len()
    }

    /// Starts the read-model workers and the policies, then checks health as every scenario does.
    async fn assert_no_failures(self) {
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let _workers = self.state.projections.clone().spawn(stop_rx);
        self.state
            .policies
            .run_until_caught_up()
            .await
            .expect("policies catch up");
        tests::health::assert_no_failures(&self.base).await;
    }
}

async fn a_login_after_a_deactivation_the_read_model_has_not_seen_gets_no_session(engine: Engine) {
    let db = TestDb::new(engine).await;
    let server = Paused::start(&db).await;
    let (email, password) = ("leaving@sign-in.example", "leaving-password-1");
    let id = server.staff_user(email, password, Role::Staff).await;
    let before = server.login(email, password).await;
    let r = server
        .gql(Some(before.token()), STAFF_ONLY, json!({}))
        .await;
    at(&r, "/data/customers/totalCount");

    // The deactivation is in the log; the read model still shows an active user.
    server.staff_command(id, StaffUserCommand::Deactivate).await;
    assert_eq!(
        server.read_model(id).await.0,
        1,
        "the read model was meant to lag"
    );
    let after = server.login(email, password).await;
    assert_eq!(after.code(), "UNAUTHENTICATED", "{after:?}");
    assert_eq!(server.sessions(id).await, 1, "only the session from before");

    // Once the read model has the deactivation, the earlier session ends too.
    server.catch_up().await;
    let r = server
        .gql(Some(before.token()), STAFF_ONLY, json!({}))
        .await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    server.assert_no_failures().await;
}

async fn a_login_checks_the_password_and_role_the_log_has_now(engine: Engine) {
    let db = TestDb::new(engine).await;
    let server = Paused::start(&db).await;
    let email = "moving@sign-in.example";
    let id = server
        .staff_user(email, "first-password-1", Role::Staff)
        .await;
    // A new password and a promotion, in the log only.
    let hash = worker::accounts::passwords::hash("second-password-2").expect("hash");
    server
        .staff_command(
            id,
            StaffUserCommand::SetPasswordHash {
                password_hash: hash,
            },
        )
        .await;
    server
        .staff_command(
            id,
            StaffUserCommand::ChangeRole {
                role: Role::Manager,
            },
        )
        .await;
    assert_eq!(
        server.read_model(id).await.1,
        "staff",
        "the read model was meant to lag"
    );

    let old = server.login(email, "first-password-1").await;
    assert_eq!(old.code(), "UNAUTHENTICATED", "{old:?}");
    let r = server
        .gql(
            None,
            LOGIN,
            json!({"i": {"email": email, "password": "second-password-2"}}),
        )
        .await;
    assert_eq!(at(&r, "/data/login/role"), "MANAGER");
    server.catch_up().await;
    server.assert_no_failures().await;
}

tests::on_both_engines!(
    a_demoted_admins_open_session_loses_admin_rights_on_its_next_request,
    a_login_after_a_deactivation_the_read_model_has_not_seen_gets_no_session,
    a_login_checks_the_password_and_role_the_log_has_now,
);

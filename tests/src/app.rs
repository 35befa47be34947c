//! A client for scenario tests against the server process (as zero2prod's `TestApp`):
//! the server on a store with the first admin configured, GraphQL calls, sign-in and
//! read-your-writes, each written once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::standins::{Mailbox, START_SIGN_UP};
use crate::ServerProcess;

/// The first admin every [`TestApp`] is started with.
pub const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");

/// Whether a GraphQL error is a `RULE_VIOLATION` that does not name its `rule` (the errors
/// table in docs/api.md promises every refusal does).
pub fn rule_unnamed(error: &Value) -> bool {
    error["extensions"]["code"] == "RULE_VIOLATION"
        && error["extensions"]["rule"]
            .as_str()
            .is_none_or(str::is_empty)
}

/// Panics when an answer holds a `RULE_VIOLATION` without its `rule`: every test client
/// checks it on every answer.
///
/// # Panics
/// As said.
pub fn assert_rules_named(answer: &Value) {
    if let Some(errors) = answer["errors"].as_array() {
        assert!(
            !errors.iter().any(rule_unnamed),
            "a RULE_VIOLATION without its rule: {answer}"
        );
    }
}

/// The demo business's admin (published, like the whole demo).
pub const DEMO_ADMIN: (&str, &str) = ("admin@dirtfree.example", "dirtfree-demo");

/// The server process and an HTTP client for it.
#[derive(Debug)]
pub struct TestApp {
    /// The running server.
    pub server: ServerProcess,
    /// Where the server's email goes (a Resend stand-in), unless the test set its own.
    pub mailbox: Mailbox,
    client: reqwest::Client,
}

impl TestApp {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_dirtfree-api")`) on `database_url`
    /// with [`ADMIN`] as the first admin and no demo.
    ///
    /// # Panics
    /// When the server does not become healthy.
    pub async fn start(binary: &str, database_url: &str) -> Self {
        Self::start_with(binary, database_url, &[]).await
    }

    /// As [`TestApp::start`], with more settings (vendor stand-ins, secrets).
    ///
    /// # Panics
    /// When the server does not become healthy.
    pub async fn start_with(binary: &str, database_url: &str, envs: &[(&str, &str)]) -> Self {
        let base = [
            ("ADMIN_EMAIL", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("DEMO_SEED", "off"),
            ("DATABASE_URL", database_url),
        ];
        Self::launch(binary, &base, envs, Duration::from_secs(120)).await
    }

    /// As [`TestApp::start_with`] on a store seeded with the small demo business (history
    /// ending now); sign in with [`DEMO_ADMIN`].
    ///
    /// # Panics
    /// When the server does not become healthy.
    pub async fn start_demo(binary: &str, database_url: &str, envs: &[(&str, &str)]) -> Self {
        let base = [("DEMO_SEED", "on"), ("DATABASE_URL", database_url)];
        Self::launch(binary, &base, envs, Duration::from_secs(300)).await
    }

    async fn launch(
        binary: &str,
        base: &[(&str, &str)],
        envs: &[(&str, &str)],
        ready_within: Duration,
    ) -> Self {
        let (mailbox, resend) = Mailbox::start().await;
        let mut all = base.to_vec();
        // The test's own settings come later and win.
        all.extend_from_slice(&Mailbox::env(&resend));
        all.extend_from_slice(envs);
        let server = ServerProcess::start(binary, &all, ready_within).await;
        TestApp {
            server,
            mailbox,
            client: reqwest::Client::new(),
        }
    }

    /// Signs a customer up on the portal as a person does: asks for a code for `input.email`,
    /// reads it from [`TestApp::mailbox`], and registers with `input` and the code. Returns
    /// the `registerPortalAccount` answer (`token customerId`).
    ///
    /// # Panics
    /// When the code does not arrive.
    pub async fn sign_up(&self, input: Value) -> Value {
        let email = input["email"].as_str().expect("input.email").to_string();
        let r = self
            .gql(None, START_SIGN_UP, json!({"i": {"email": email}}))
            .await;
        assert_eq!(data(&r, "/data/startPortalSignUp/accepted"), true, "{r}");
        let code = self.mailbox.code_for(&email).await;
        let mut input = input;
        input["code"] = json!(code);
        self.gql(
            None,
            "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token customerId } }",
            json!({ "i": input }),
        )
        .await
    }

    /// Posts a GraphQL operation (as `token`, when given) and returns the JSON answer.
    ///
    /// # Panics
    /// When the server does not answer with JSON.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(&self.server.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let answer: Value = req.send().await.expect("send").json().await.expect("json");
        assert_rules_named(&answer);
        answer
    }

    /// Signs in as [`ADMIN`]; returns the token.
    ///
    /// # Panics
    /// When the sign-in fails.
    pub async fn login_admin(&self) -> String {
        self.login(ADMIN).await
    }

    /// Signs in as staff `(email, password)`; returns the token.
    ///
    /// # Panics
    /// When the sign-in fails.
    pub async fn login(&self, (email, password): (&str, &str)) -> String {
        let r = self
            .gql(
                None,
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                json!({"i": {"email": email, "password": password}}),
            )
            .await;
        text(&r, "/data/login/token")
    }

    /// `GET {base}{path}` as `token`, when given.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn get(&self, token: Option<&str>, path: &str) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.server.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("send")
    }

    /// Runs scheduled job `job` now through `POST /api/cron/execute/{job}` with the server's
    /// `CRON_SECRET` (`secret`), waiting out a run the scheduler itself holds (409).
    ///
    /// # Panics
    /// When the job does not run within 20 s or answers anything else.
    pub async fn run_job(&self, secret: &str, job: &str) {
        let url = format!("{}/api/cron/execute/{job}", self.server.base);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .client
                .post(&url)
                .bearer_auth(secret)
                .send()
                .await
                .expect("cron");
            match r.status().as_u16() {
                200 => return,
                409 if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                s => panic!("{job}: HTTP {s}: {}", r.text().await.unwrap_or_default()),
            }
        }
    }

    /// Waits (up to 10 s) until every read model includes `position`.
    ///
    /// # Panics
    /// When they do not.
    pub async fn sync(&self, token: &str, position: &str) {
        let r = self
            .gql(
                Some(token),
                "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
                json!({"p": position}),
            )
            .await;
        assert_eq!(
            data(&r, "/data/sync"),
            true,
            "read models did not catch up: {r}"
        );
    }
}

/// The value at `path` of an answer without errors.
///
/// # Panics
/// When the answer has errors or nothing at `path`.
pub fn data<'a>(v: &'a Value, path: &str) -> &'a Value {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
    v.pointer(path)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

/// The string at `path` (see [`data`]).
///
/// # Panics
/// As [`data`], or when the value is not a string.
pub fn text(v: &Value, path: &str) -> String {
    data(v, path).as_str().expect("a string").to_string()
}

//! Local stand-ins for vendors on the internet, for tests that start the server process:
//! Sentry's envelope endpoint and Resend's send API. Each keeps what it was sent.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// Serves `app` on a free loopback port for the rest of the test; returns the address.
///
/// # Panics
/// When no port can be bound.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stand-in");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Sentry's ingest (`POST /api/<project>/envelope/`), keeping every envelope.
#[derive(Clone, Default, Debug)]
pub struct SentryIngest(Arc<Mutex<Vec<String>>>);

impl SentryIngest {
    /// Starts it; returns it and the `SENTRY_DSN` that points at it.
    pub async fn start() -> (Self, String) {
        let ingest = SentryIngest::default();
        let app =
            axum::Router::new()
                .route(
                    "/api/{project}/envelope/",
                    axum::routing::post(
                        |axum::extract::State(i): axum::extract::State<SentryIngest>,
                         body: String| async move {
                            i.0.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                            axum::Json(json!({}))
                        },
                    ),
                )
                .with_state(ingest.clone());
        let addr = serve(app).await;
        (
            ingest,
            format!("http://0123456789abcdef0123456789abcdef@{addr}/42"),
        )
    }

    /// The envelopes received, as sent.
    pub fn bodies(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The events in the envelopes received so far.
    ///
    /// # Panics
    /// When an event item is not JSON.
    pub fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for body in self.bodies() {
            let lines: Vec<&str> = body.lines().collect();
            for pair in lines.windows(2) {
                let header: Value = serde_json::from_str(pair[0]).unwrap_or_default();
                if header["type"] == "event" {
                    out.push(serde_json::from_str(pair[1]).expect("an event is JSON"));
                }
            }
        }
        out
    }
}

/// Resend's send API (`POST /emails`), keeping every email's JSON.
#[derive(Clone, Default, Debug)]
pub struct Mailbox(Arc<Mutex<Vec<Value>>>);

impl Mailbox {
    /// Starts it; returns it and the `RESEND_API_BASE` that points at it.
    pub async fn start() -> (Self, String) {
        let mailbox = Mailbox::default();
        let app = axum::Router::new()
            .route(
                "/emails",
                axum::routing::post(
                    |axum::extract::State(m): axum::extract::State<Mailbox>,
                     axum::Json(body): axum::Json<Value>| async move {
                        let n = {
                            let mut sent = m.0.lock().unwrap_or_else(|e| e.into_inner());
                            sent.push(body);
                            sent.len()
                        };
                        axum::Json(json!({ "id": format!("email-{n}") }))
                    },
                ),
            )
            .with_state(mailbox.clone());
        let addr = serve(app).await;
        (mailbox, format!("http://{addr}"))
    }

    /// The emails sent so far.
    pub fn sent(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The settings that make the server send email here (`base` from [`Mailbox::start`]).
    pub fn env(base: &str) -> [(&'static str, &str); 3] {
        [
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_FROM_EMAIL", "Dirt Free <hello@dirtfree.example>"),
            ("RESEND_API_BASE", base),
        ]
    }

    /// The texts of the emails sent to `to` so far, oldest first.
    pub fn texts_to(&self, to: &str) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|t| t == to))
            })
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect()
    }

    /// The code (six or eight digits) in the latest email to `to` that has one, as its owner
    /// reads it;
    /// waits up to 30 s for it to arrive (the server mails it after answering).
    ///
    /// # Panics
    /// When none arrives.
    pub async fn code_for(&self, to: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let code = self.texts_to(to).iter().rev().find_map(|t| code_in(t));
            if let Some(c) = code {
                return c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no code reached {to}; mail sent: {:?}",
                self.sent()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` emails in all have been sent (up to 30 s).
    ///
    /// # Panics
    /// When they are not.
    pub async fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.sent().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} emails sent: {:?}",
                self.sent().len(),
                self.sent()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The first run of exactly six or eight digits in `text`.
fn code_in(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i - start == 6 || i - start == 8 {
            return Some(chars[start..i].iter().collect());
        }
        i = i.max(start + 1);
    }
    None
}

/// Starting a portal sign-up (`startPortalSignUp`); the code arrives by email.
pub const START_SIGN_UP: &str =
    "mutation($i: EmailCodeInput!) { startPortalSignUp(input: $i) { accepted expiresAt } }";

/// One SMS's form fields, as Twilio received them.
pub type SmsForm = Vec<(String, String)>;

/// Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`), keeping every
/// SMS's form fields.
#[derive(Clone, Default, Debug)]
pub struct Texts(Arc<Mutex<Vec<SmsForm>>>);

impl Texts {
    /// Starts it; returns it and the `TWILIO_API_BASE` that points at it.
    pub async fn start() -> (Self, String) {
        let texts = Texts::default();
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(
                    |axum::extract::State(t): axum::extract::State<Texts>,
                     axum::Form(form): axum::Form<SmsForm>| async move {
                        let n = {
                            let mut sent = t.0.lock().unwrap_or_else(|e| e.into_inner());
                            sent.push(form);
                            sent.len()
                        };
                        axum::Json(json!({ "sid": format!("SMstandin{n}"), "status": "queued" }))
                    },
                ),
            )
            .with_state(texts.clone());
        let addr = serve(app).await;
        (texts, format!("http://{addr}"))
    }

    /// The settings that make the server text here (`base` from [`Texts::start`]).
    pub fn env(base: &str) -> [(&'static str, &str); 4] {
        [
            ("TWILIO_ACCOUNT_SID", "ACtest"),
            ("TWILIO_AUTH_TOKEN", "twilio_auth_token_for_tests"),
            ("TWILIO_PHONE_NUMBER", "+15125550199"),
            ("TWILIO_API_BASE", base),
        ]
    }

    /// The bodies of the texts sent to `to` so far, oldest first.
    pub fn to(&self, to: &str) -> Vec<String> {
        let sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sent.iter()
            .filter(|f| f.iter().any(|(k, v)| k == "To" && v == to))
            .filter_map(|f| f.iter().find(|(k, _)| k == "Body").map(|(_, v)| v.clone()))
            .collect()
    }
}

//! Hostile input never stops the business (issue #13), on both engines.
//!
//! Every mutation of the served schema (by the standard introspection, as roles.rs) is
//! called once per hostile value for each String, ID, Int, Float and list field reachable
//! from its arguments (input objects walked recursively), one field at a time, on top of a
//! baseline request that works: the other required fields hold plausible values and ids
//! name real records made for the purpose (a customer, a job in the state the mutation
//! needs, an opportunity, ...), remade after every call that changed them. The values: a
//! NUL character, a lone surrogate (`\ud800`, written into the body by hand), control
//! characters, a 1 MB string, a 300,000-character idempotency key, emoji with right-to-left
//! text, -1, `i32::MAX`, 2^53 for floats, and a list of 10,000 items. Each is sent as the
//! principal the Roles table in docs/api.md names: an admin, the portal customer for
//! portal-only mutations, no token for the anonymous ones.
//!
//! The rule for every answer: HTTP 200 with data, or with errors that each carry an
//! `extensions.code` other than `INTERNAL`; or HTTP 400/413 for a body the server refuses to
//! parse or accept (counted and printed). Never a 5xx, an `INTERNAL`, an error without a
//! code, another status, or no answer; and never data for a NUL, control characters, a
//! 1 MB string or a 300,000-character key, which no field may hold (SQLite stores them
//! without complaint, so only this catches them there). Afterwards: no projection or policy
//! failed (`tests::health`), the live read models equal a clean rebuild (`replay-tools
//! rebuild --all --diff`, as `tests::rebuild`), and a job booked for a new customer reads
//! back. Every violation is collected and reported together at the end.
//! HOSTILE_INPUT_VERBOSE=1 prints every call's answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tests::{Engine, TestDb};

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");
const PORTAL: (&str, &str) = ("portal@hostile.example", "portal-password-1");
const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;
const CRON_SECRET: &str = "cron-secret-for-hostile-input-0123456789";

/// Stands for the lone surrogate in a value until the body is text (serde_json cannot
/// write one): private-use characters, which serde_json writes as they are.
const SURROGATE_MARK: &str = "\u{F8FF}lone-surrogate\u{F8FF}";

// ---------------------------------------------------------------- hostile values

/// One hostile value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    Nul,
    LoneSurrogate,
    Control,
    Megabyte,
    LongKey,
    EmojiRtl,
    MinusOne,
    I32Max,
    TwoPow53,
    LongList,
}

impl Hostile {
    fn label(self) -> &'static str {
        match self {
            Hostile::Nul => "NUL (\"a\\u0000b\")",
            Hostile::LoneSurrogate => "lone surrogate (\"a\\ud800b\")",
            Hostile::Control => "control characters (\"\\u0001\\u001b[31m\")",
            Hostile::Megabyte => "1 MB string",
            Hostile::LongKey => "300,000-character string",
            Hostile::EmojiRtl => "emoji and right-to-left text",
            Hostile::MinusOne => "-1",
            Hostile::I32Max => "i32::MAX",
            Hostile::TwoPow53 => "2^53 (Float)",
            Hostile::LongList => "list of 10,000 items",
        }
    }

    /// Text no field may hold, whatever the engine stores: the fix for issue #13 refuses it
    /// at the boundary. (Emoji and right-to-left text are ordinary text; numbers and long
    /// lists may be valid for some fields.)
    fn must_be_refused(self) -> bool {
        matches!(
            self,
            Hostile::Nul | Hostile::Control | Hostile::Megabyte | Hostile::LongKey
        )
    }

    /// The values for a text field (`String` or `ID`).
    fn for_text(field: &str) -> Vec<Hostile> {
        let mut v = vec![
            Hostile::Nul,
            Hostile::LoneSurrogate,
            Hostile::Control,
            Hostile::Megabyte,
            Hostile::EmojiRtl,
        ];
        if field == "idempotencyKey" {
            v.push(Hostile::LongKey);
        }
        v
    }

    /// The value as JSON. Idempotency keys are made unique per call (`n`) so that one
    /// accepted key does not answer for the next call.
    fn json(self, field: &str, n: u32) -> Value {
        let unique = |s: String| {
            if field == "idempotencyKey" {
                format!("{s}#{n}")
            } else {
                s
            }
        };
        match self {
            Hostile::Nul => json!(unique("a\u{0}b".into())),
            Hostile::LoneSurrogate => json!(unique(format!("a{SURROGATE_MARK}b"))),
            Hostile::Control => json!(unique("\u{1}\u{1b}[31m".into())),
            Hostile::Megabyte => json!(unique("x".repeat(1_000_000))),
            // Unique in its last eight characters, and exactly 300,000 long.
            Hostile::LongKey => json!("k".repeat(300_000 - 8) + &format!("{n:08}")),
            Hostile::EmojiRtl => json!(unique("👩‍👩‍👧 שלום مرحبا".into())),
            Hostile::MinusOne => json!(-1),
            Hostile::I32Max => json!(i32::MAX),
            Hostile::TwoPow53 => json!(9_007_199_254_740_992.0_f64),
            Hostile::LongList => unreachable!("a list is built from its item"),
        }
    }
}

// ------------------------------------------------------------------ the client

/// The server, and a client that plays many clients behind a trusted proxy.
struct Api {
    server: tests::ServerProcess,
    /// Where sign-up codes go.
    mailbox: tests::standins::Mailbox,
    http: reqwest::Client,
    next_client: AtomicU32,
}

/// What came back for one request.
struct Answer {
    status: u16,
    body: String,
}

/// A stand-in for Stripe's PaymentIntents endpoint on loopback (`requestJobPayment` asks it
/// for an intent, with the idempotency key): answers every create with a new intent.
async fn stripe_stand_in() -> String {
    let made = std::sync::Arc::new(AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/v1/payment_intents",
        axum::routing::post(move || {
            let n = made.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                axum::Json(json!({"id": format!("pi_hostile_{n}"), "client_secret": format!("pi_hostile_{n}_secret")}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn start(database_url: &str) -> Api {
    let stripe = stripe_stand_in().await;
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
            ("DATABASE_URL", database_url),
            ("BUSINESS_TIMEZONE", "America/Chicago"),
            // The test is the reverse proxy: see `Api::post`.
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("STRIPE_SECRET_KEY", "sk_test_hostile"),
            ("STRIPE_API_BASE", &stripe),
            // Delivers campaigns on demand (`Run::deliver`).
            ("CRON_SECRET", CRON_SECRET),
        ],
        Duration::from_secs(120),
    )
    .await;
    Api {
        server,
        mailbox,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client"),
        next_client: AtomicU32::new(0),
    }
}

impl Api {
    /// One request with a body written by the caller. Sign-in and sign-up are rate limited
    /// per client address: every request comes from its own address (198.18.0.0/15) in
    /// X-Forwarded-For, as distinct clients behind a proxy would, so no answer here is about
    /// the limit (it is tested in graphql.rs).
    async fn post(&self, token: Option<&str>, body: String) -> Result<Answer, String> {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        let client = format!("198.{}.{}.{}", 18 + (n >> 16) % 2, (n >> 8) & 255, n & 255);
        let mut req = self
            .http
            .post(&self.server.url)
            .header("content-type", "application/json")
            .header("x-forwarded-for", client)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("no answer: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("HTTP {status}, body cut off: {e}"))?;
        Ok(Answer { status, body })
    }

    /// A GraphQL request whose answer the test needs (set-up, not judged): an unreadable
    /// answer comes back as an error.
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables }).to_string();
        match self.post(token, body).await {
            Ok(a) => serde_json::from_str(&a.body).unwrap_or_else(
                |_| json!({"errors": [{"message": format!("HTTP {}: {}", a.status, clip(&a.body))}]}),
            ),
            Err(e) => json!({"errors": [{"message": e}]}),
        }
    }

    async fn alive(&self) -> bool {
        self.http
            .get(format!("{}/api/health", self.server.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// `path` of a set-up answer, or what went wrong.
fn at(v: &Value, path: &str) -> Result<Value, String> {
    if v.get("errors").is_some() {
        return Err(format!("errors: {}", clip(&v.to_string())));
    }
    v.pointer(path)
        .filter(|x| !x.is_null())
        .cloned()
        .ok_or_else(|| format!("{path} missing in {}", clip(&v.to_string())))
}

fn text_at(v: &Value, path: &str) -> Result<String, String> {
    at(v, path)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{path} is not text in {v}"))
}

/// Text cut to 400 characters for reports (answers may echo a megabyte).
fn clip(s: &str) -> String {
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}… ({} chars)", &s[..i], s.chars().count()),
        None => s.to_string(),
    }
}

// --------------------------------------------------------------- introspection

const INTROSPECTION: &str = r"
query {
  __schema {
    queryType { name }
    mutationType { name }
    types {
      kind name
      fields { name args { name defaultValue type { ...T } } type { ...T } }
      inputFields { name defaultValue type { ...T } }
      enumValues { name }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }
";

/// The served schema's types by name, and its mutations.
struct Schema {
    types: BTreeMap<String, Value>,
    mutations: Vec<Value>,
}

impl Schema {
    async fn introspect(api: &Api) -> Self {
        let r = api.gql(None, INTROSPECTION, json!({})).await;
        let s = at(&r, "/data/__schema").expect("introspection");
        let types: BTreeMap<String, Value> = s["types"]
            .as_array()
            .expect("types")
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or_default().to_string(),
                    t.clone(),
                )
            })
            .collect();
        let root = s["mutationType"]["name"].as_str().expect("mutation root");
        let mutations = types[root]["fields"].as_array().expect("fields").clone();
        Schema { types, mutations }
    }

    fn input_fields(&self, type_name: &str) -> &[Value] {
        self.types[type_name]["inputFields"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    /// Every field of `op` a hostile value goes into.
    fn targets(&self, op: &Value) -> Vec<Target> {
        let mut out = Vec::new();
        for a in op["args"].as_array().into_iter().flatten() {
            let name = a["name"].as_str().unwrap_or_default();
            self.walk(&a["type"], vec![name.to_string()], Vec::new(), &mut out);
        }
        out
    }

    fn walk(&self, t: &Value, path: Vec<String>, parents: Vec<String>, out: &mut Vec<Target>) {
        let t = strip_non_null(t);
        let field = path.last().cloned().unwrap_or_default();
        match t["kind"].as_str() {
            Some("LIST") => {
                let item = strip_non_null(&t["ofType"]);
                let mut values = vec![Hostile::LongList];
                match named(item).1 {
                    "String" | "ID" => values.extend(Hostile::for_text(&field)),
                    "Int" => values.extend([Hostile::MinusOne, Hostile::I32Max]),
                    "Float" => {
                        values.extend([Hostile::MinusOne, Hostile::I32Max, Hostile::TwoPow53])
                    }
                    _ => {}
                }
                // Lists of input objects get the long list; their fields are not walked
                // (the schema has none today).
                out.push(Target {
                    path,
                    parents,
                    list_item: Some(item.clone()),
                    values,
                });
            }
            Some("INPUT_OBJECT") => {
                // Input types may refer to themselves: five levels are plenty.
                if parents.len() >= 5 {
                    return;
                }
                let ty = t["name"].as_str().unwrap_or_default().to_string();
                for f in self.input_fields(&ty) {
                    let mut p = path.clone();
                    p.push(f["name"].as_str().unwrap_or_default().to_string());
                    let mut ps = parents.clone();
                    ps.push(ty.clone());
                    self.walk(&f["type"], p, ps, out);
                }
            }
            Some("SCALAR") => {
                let values = match t["name"].as_str().unwrap_or_default() {
                    "String" | "ID" => Hostile::for_text(&field),
                    "Int" => vec![Hostile::MinusOne, Hostile::I32Max],
                    "Float" => vec![Hostile::MinusOne, Hostile::I32Max, Hostile::TwoPow53],
                    // Boolean, DateTime, NaiveDate: outside issue #13's list.
                    _ => return,
                };
                out.push(Target {
                    path,
                    parents,
                    list_item: None,
                    values,
                });
            }
            _ => {}
        }
    }
}

/// A field hostile values go into.
struct Target {
    /// From the argument name down, e.g. `input.content.name`.
    path: Vec<String>,
    /// The input object type of each level above the field.
    parents: Vec<String>,
    /// For a list, the item type.
    list_item: Option<Value>,
    values: Vec<Hostile>,
}

impl Target {
    fn field(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }

    fn name(&self) -> String {
        self.path.join(".")
    }
}

fn strip_non_null(t: &Value) -> &Value {
    if t["kind"] == "NON_NULL" {
        strip_non_null(&t["ofType"])
    } else {
        t
    }
}

/// The named type under NON_NULL/LIST wrappers: (kind, name).
fn named(t: &Value) -> (&str, &str) {
    match t["kind"].as_str() {
        Some("NON_NULL" | "LIST") => named(&t["ofType"]),
        kind => (
            kind.unwrap_or_default(),
            t["name"].as_str().unwrap_or_default(),
        ),
    }
}

/// Non-null without a default.
fn required(field: &Value) -> bool {
    field["type"]["kind"] == "NON_NULL" && field["defaultValue"].is_null()
}

/// A type reference in GraphQL syntax, e.g. `[String!]!`.
fn render(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", render(&t["ofType"])),
        Some("LIST") => format!("[{}]", render(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or_default().to_string(),
    }
}

// ------------------------------------------------------------------ principals

/// Who sends a mutation's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Admin,
    Portal,
    Anonymous,
}

/// From docs/api.md's Roles table (the contract roles.rs checks against the server): no
/// token where anyone may call, else an admin where an admin may, else the portal
/// customer. An operation the table does not name is absent.
fn principals() -> HashMap<String, Who> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
    let text = std::fs::read_to_string(path).expect("read docs/api.md");
    let mut out = HashMap::new();
    let rows = text
        .lines()
        .skip_while(|l| l.trim() != "## Roles")
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .skip(2);
    for line in rows {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 6 || cells[0].starts_with("subscription") {
            continue;
        }
        let who = if cells[5] == "✓" {
            Who::Anonymous
        } else if cells[1] == "✓" {
            Who::Admin
        } else {
            Who::Portal
        };
        for op in cells[0].split('`').skip(1).step_by(2) {
            out.insert(op.to_string(), who);
        }
    }
    out
}

// -------------------------------------------------------------------- fixtures

/// A record a mutation's ids name, made for its calls. Declared in the order they are
/// made: later ones use earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Need {
    Customer,
    OtherCustomer,
    Staff,
    Vehicle,
    Job,
    Opportunity,
    Promotion,
    Conversation,
    Review,
    Report,
}

/// The record an ID field of `op` names, by the field's name (and for `id`, the
/// mutation's).
fn need(op: &str, field: &str) -> Option<Need> {
    Some(match field {
        "customerId" | "survivorId" => Need::Customer,
        "duplicateId" => Need::OtherCustomer,
        "jobId" => Need::Job,
        "technicianId" | "staffUserId" | "toStaffId" | "ownerId" => Need::Staff,
        "vehicleId" => Need::Vehicle,
        "conversationId" => Need::Conversation,
        "reviewId" => Need::Review,
        "promotionId" => Need::Promotion,
        "id" if op.contains("Opportunity") || op.contains("Offer") => Need::Opportunity,
        "id" if op.contains("Promotion") => Need::Promotion,
        "id" if op.contains("Report") => Need::Report,
        "id" => Need::Customer,
        _ => return None,
    })
}

/// What a need needs first.
fn depends(n: Need) -> &'static [Need] {
    match n {
        Need::Job => &[Need::Customer, Need::Staff],
        // The portal customer's own job, with a technician.
        Need::Review => &[Need::Staff],
        // A delivered promotion was delivered to the customer.
        Need::Opportunity | Need::Conversation | Need::Promotion => &[Need::Customer],
        _ => &[],
    }
}

/// The records of one mutation's calls: which state (`variant`: the first that makes the
/// baseline work) and their ids.
struct Fixture {
    variant: usize,
    ids: HashMap<Need, String>,
    /// A call was accepted: the records may have changed, make new ones first.
    stale: bool,
}

/// How many states the fixtures come in: 0 plain (a scheduled job with a technician, an
/// open opportunity, an available vehicle, a draft promotion); from 1 a customer with
/// consent, points and a "home" address, a vehicle in maintenance, a promotion delivered to
/// the customer; 1 an unscheduled job, an offer configured; 2 a completed job, an offer
/// sent; 3 a completed job, a lost opportunity.
const VARIANTS: usize = 4;

/// Optional fields a baseline needs all the same (input type, field): one of
/// `percentOff`/`amountOffCents` is required.
const BASELINE_EXTRAS: &[(&str, &str)] = &[("ConfigureAutoOfferInput", "percentOff")];

// --------------------------------------------------------------------- harness

/// The run: the server, the principals and everything found.
struct Run<'a> {
    api: &'a Api,
    schema: &'a Schema,
    admin: String,
    portal: String,
    portal_id: String,
    /// The principals' current passwords (`changePassword` is called with the real one).
    passwords: HashMap<Who, String>,
    n: u32,
    violations: Vec<String>,
    /// Answers by (HTTP status, code or "data"), for the summary.
    outcomes: BTreeMap<(u16, String), u32>,
    /// Which values were accepted, for the summary.
    accepted: BTreeMap<&'static str, u32>,
    /// Which values got 400/413, for the summary.
    refused_bodies: BTreeMap<(u16, &'static str), u32>,
    notes: Vec<String>,
    /// A read model stopped or parked events (see `settle`).
    read_side_stopped: bool,
    /// The hostile calls accepted since the read side last caught up (at most the last 20):
    /// the suspects when it stops.
    recent_accepted: Vec<String>,
    slowest: Vec<(Duration, String)>,
    calls: u32,
}

impl Run<'_> {
    fn next(&mut self) -> u32 {
        self.n += 1;
        self.n
    }

    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Admin => Some(&self.admin),
            Who::Portal => Some(&self.portal),
            Who::Anonymous => None,
        }
    }

    /// A plausible value of type `t` for `field` of mutation `op`.
    fn benign(&mut self, cx: &Cx<'_>, t: &Value, field: &str) -> Value {
        let t = strip_non_null(t);
        match t["kind"].as_str() {
            Some("LIST") => json!([self.benign(cx, &t["ofType"], field)]),
            Some("ENUM") => {
                let values =
                    &self.schema.types[t["name"].as_str().unwrap_or_default()]["enumValues"];
                // Email where a channel is asked: fixture customers consent to both.
                let email = values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == "EMAIL");
                email.unwrap_or(&values[0])["name"].clone()
            }
            Some("INPUT_OBJECT") => {
                Value::Object(self.benign_object(cx, t["name"].as_str().unwrap_or_default()))
            }
            _ => {
                let ty = t["name"].as_str().unwrap_or_default().to_string();
                self.scalar(cx, &ty, field)
            }
        }
    }

    /// An input object's required fields, its optional ids that name a record, and the
    /// optional fields of [`BASELINE_EXTRAS`].
    fn benign_object(&mut self, cx: &Cx<'_>, ty: &str) -> Map<String, Value> {
        let mut obj = Map::new();
        for f in self.schema.input_fields(ty).to_vec() {
            let name = f["name"].as_str().unwrap_or_default();
            let names_a_record = named(&f["type"]).1 == "ID" && need(cx.op, name).is_some();
            if required(&f) || names_a_record || BASELINE_EXTRAS.contains(&(ty, name)) {
                let v = self.benign(cx, &f["type"], name);
                obj.insert(name.to_string(), v);
            }
        }
        obj
    }

    fn scalar(&mut self, cx: &Cx<'_>, ty: &str, field: &str) -> Value {
        let n = self.next();
        let soon = |days: i64, hours: i64| {
            let day = chrono::Utc::now().date_naive() + chrono::Duration::days(days);
            let t =
                day.and_hms_opt(15, 0, 0).expect("time").and_utc() + chrono::Duration::hours(hours);
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        let lower = field.to_lowercase();
        match ty {
            "ID" => match need(cx.op, field).and_then(|k| cx.fx.ids.get(&k)) {
                Some(id) => json!(id),
                None => json!(uuid::Uuid::new_v4().to_string()),
            },
            "Int" | "Float" => json!(match lower.as_str() {
                "rating" => 5,
                "percentoff" => 10,
                "confidencepercent" => 80,
                "points" => 10,
                l if l.contains("cents") => 10_000,
                _ => 1,
            }),
            "Boolean" => json!(false),
            "DateTime" => match field {
                "end" => soon(2, 2),
                "startsAt" => soon(-1, 0),
                "endsAt" | "expiresAt" => soon(30, 0),
                _ => soon(2, 0),
            },
            "NaiveDate" => json!(match field {
                "birthday" => "1990-05-17",
                "customerSince" => "2020-01-15",
                _ => "2026-01-15",
            }),
            _ => json!(match lower.as_str() {
                "currentpassword" => self.passwords.get(&cx.who).cloned().unwrap_or_default(),
                l if l.contains("password") => "benign-password-123".to_string(),
                "email" | "recipients" => format!("fuzz-{n}@hostile.example"),
                "phone" => format!("+1512555{:04}", n % 10_000),
                "cron" => "0 7 * * 1".to_string(),
                "services" => "carpet cleaning".to_string(),
                "postalcode" => "78701".to_string(),
                "discountcode" => format!("SAVE{n}"),
                "template" => "Hello from Dirt Free".to_string(),
                // The fixtures' customers have an address under this label.
                "label" => "home".to_string(),
                "idempotencykey" => format!("key-{n}"),
                _ => format!("Benign {n}"),
            }),
        }
    }

    // --------------------------------------------------------------- making records

    /// Records for one mutation's calls in state `variant`.
    async fn fixture(&mut self, op: &Value, who: Who, variant: usize) -> Result<Fixture, String> {
        let name = op["name"].as_str().unwrap_or_default();
        let mut wanted = BTreeSet::new();
        self.needs(name, &op["args"], &mut wanted);
        let mut all = wanted.clone();
        for n in &wanted {
            all.extend(depends(*n).iter().copied());
        }
        let mut fx = Fixture {
            variant,
            ids: HashMap::new(),
            stale: false,
        };
        let mut last = None;
        for n in all {
            let (id, position) = self
                .make(n, who, &fx)
                .await
                .map_err(|e| format!("making {n:?}: {e}"))?;
            fx.ids.insert(n, id);
            last = position.or(last);
        }
        if let Some(p) = last {
            self.settle(&p).await;
        }
        Ok(fx)
    }

    /// Read-your-writes for the checks resolvers make on read models, unless the read side
    /// has stopped: that is reported at the end, and waiting for it would only slow the run.
    async fn settle(&mut self, position: &Value) {
        if self.read_side_stopped {
            return;
        }
        let q = "query($p: String!) { sync(position: $p, timeoutMs: 5000) }";
        let r = self
            .api
            .gql(Some(&self.admin), q, json!({"p": position}))
            .await;
        if r["data"]["sync"] == true {
            self.recent_accepted.clear();
            return;
        }
        let url = format!("{}/api/health/detailed", self.api.server.base);
        let health: Value = match self.api.http.get(&url).send().await {
            Ok(a) => a.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if health["status"] != "ok" {
            self.read_side_stopped = true;
            let stopped: Vec<String> = health["projections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["state"] != "running")
                .map(|p| format!("{} {}: {}", p["name"], p["state"], p["lastError"]))
                .collect();
            self.notes.push(format!(
                "the read side stopped following the log after {} calls (no more waiting for it); \
                 accepted since it last caught up: {:?}; {}",
                self.calls,
                self.recent_accepted,
                clip(&stopped.join("; "))
            ));
        }
    }

    /// The records the ID fields of these arguments (and their input objects) name.
    fn needs(&self, op: &str, fields: &Value, out: &mut BTreeSet<Need>) {
        for f in fields.as_array().into_iter().flatten() {
            let name = f["name"].as_str().unwrap_or_default();
            match named(&f["type"]) {
                ("SCALAR", "ID") => out.extend(need(op, name)),
                ("INPUT_OBJECT", ty) => {
                    let inner = self.schema.types[ty]["inputFields"].clone();
                    self.needs(op, &inner, out);
                }
                _ => {}
            }
        }
    }

    /// Makes one record; its id and the position of the last write.
    async fn make(
        &mut self,
        n: Need,
        who: Who,
        fx: &Fixture,
    ) -> Result<(String, Option<Value>), String> {
        let v = fx.variant;
        let k = self.next();
        let customer = fx.ids.get(&Need::Customer).cloned().unwrap_or_default();
        let staff = fx.ids.get(&Need::Staff).cloned().unwrap_or_default();
        match n {
            Need::Customer if who == Who::Portal => Ok((self.portal_id.clone(), None)),
            Need::Customer | Need::OtherCustomer => {
                let r = self.admin_call(
                    "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } position } }",
                    json!({"name": format!("Fixture {k}"), "email": format!("fixture-{k}@hostile.example"), "phone": format!("+1737555{:04}", k % 10_000)}),
                ).await;
                let id = text_at(&r, "/data/createCustomer/customer/id")?;
                let mut last = at(&r, "/data/createCustomer/position").ok();
                if v >= 1 && n == Need::Customer {
                    for channel in ["EMAIL", "SMS"] {
                        let r = self.admin_call(
                            "mutation($i: MarketingConsentInput!) { setMarketingConsent(input: $i) { position } }",
                            json!({"id": id, "channel": channel, "granted": true}),
                        ).await;
                        at(&r, "/data/setMarketingConsent/position")?;
                    }
                    let r = self.admin_call(
                        "mutation($i: AwardLoyaltyPointsInput!) { awardLoyaltyPoints(input: $i) { position } }",
                        json!({"customerId": id, "points": 1000, "reason": "fixture"}),
                    ).await;
                    at(&r, "/data/awardLoyaltyPoints/position")?;
                    let r = self.admin_call(
                        "mutation($i: AddCustomerAddressInput!) { addCustomerAddress(input: $i) { position } }",
                        json!({"id": id, "label": "home", "line1": "1 Main St", "city": "Austin", "region": "TX", "postalCode": "78701"}),
                    ).await;
                    last = Some(at(&r, "/data/addCustomerAddress/position")?);
                }
                Ok((id, last))
            }
            Need::Staff => {
                let r = self.admin_call(
                    "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } position } }",
                    json!({"email": format!("staff-{k}@hostile.example"), "name": format!("Staff {k}"), "role": "STAFF", "password": "staff-password-12"}),
                ).await;
                Ok((
                    text_at(&r, "/data/createStaffUser/staffUser/id")?,
                    at(&r, "/data/createStaffUser/position").ok(),
                ))
            }
            Need::Vehicle => {
                let r = self.admin_call(
                    "mutation($i: RegisterVehicleInput!) { registerVehicle(input: $i) { vehicleId position } }",
                    json!({"name": format!("Van {k}"), "plate": format!("HX-{k}")}),
                ).await;
                let id = text_at(&r, "/data/registerVehicle/vehicleId")?;
                let mut last = at(&r, "/data/registerVehicle/position").ok();
                if v >= 1 {
                    let r = self.admin_call(
                        "mutation($i: SendVehicleToMaintenanceInput!) { sendVehicleToMaintenance(input: $i) { position } }",
                        json!({"vehicleId": id, "reason": "fixture"}),
                    ).await;
                    last = Some(at(&r, "/data/sendVehicleToMaintenance/position")?);
                }
                Ok((id, last))
            }
            Need::Job => self.job(&customer, &staff, v == 1, v >= 2).await,
            Need::Review => {
                // The portal customer reviews a completed job of theirs.
                let portal_id = self.portal_id.clone();
                let (job, _) = self.job(&portal_id, &staff, false, true).await?;
                let r = self
                    .api
                    .gql(
                        Some(&self.portal.clone()),
                        "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { reviewId position } }",
                        json!({"i": {"jobId": job, "rating": 4, "comment": "fine"}}),
                    )
                    .await;
                Ok((
                    text_at(&r, "/data/submitReview/reviewId")?,
                    at(&r, "/data/submitReview/position").ok(),
                ))
            }
            Need::Opportunity => {
                let r = self.admin_call(
                    "mutation($i: CreateOpportunityInput!) { createOpportunity(input: $i) { opportunity { id } position } }",
                    json!({"customerId": customer, "title": format!("Opportunity {k}"), "valueCents": 9900}),
                ).await;
                let id = text_at(&r, "/data/createOpportunity/opportunity/id")?;
                let mut last = at(&r, "/data/createOpportunity/position").ok();
                let expires = (chrono::Utc::now() + chrono::Duration::days(30))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let configure = (
                    "configureAutoOffer",
                    "ConfigureAutoOfferInput",
                    json!({"id": id, "percentOff": 10, "expiresAt": expires}),
                );
                let send = (
                    "sendOffer",
                    "SendOfferInput",
                    json!({"id": id, "channel": "EMAIL"}),
                );
                let lose = (
                    "loseOpportunity",
                    "LoseOpportunityInput",
                    json!({"id": id, "reason": "fixture"}),
                );
                let steps = match v {
                    0 => vec![],
                    1 => vec![configure],
                    2 => vec![configure, send],
                    _ => vec![lose],
                };
                for (m, ty, input) in steps {
                    let r = self
                        .admin_call(
                            &format!("mutation($i: {ty}!) {{ {m}(input: $i) {{ position }} }}"),
                            input,
                        )
                        .await;
                    last = Some(at(&r, &format!("/data/{m}/position"))?);
                }
                Ok((id, last))
            }
            Need::Promotion => {
                let day = |d: i64| {
                    (chrono::Utc::now() + chrono::Duration::days(d))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                };
                let mut input = json!({"name": format!("Promotion {k}"), "channel": "EMAIL", "template": "Ten percent off", "discountCode": format!("FIX{k}"), "startsAt": day(-1), "endsAt": day(30)});
                if v >= 1 {
                    // Delivered to the fixture's customer alone: the campaign's audience is a tag
                    // only they have.
                    let tag = format!("promo{k}");
                    let r = self.admin_call(
                        "mutation($i: TagCustomerInput!) { tagCustomer(input: $i) { position } }",
                        json!({"id": customer, "tag": tag}),
                    ).await;
                    at(&r, "/data/tagCustomer/position")?;
                    input["tag"] = json!(tag);
                }
                let r = self.admin_call(
                    "mutation($i: CreatePromotionInput!) { createPromotion(input: $i) { promotionId position } }",
                    input,
                ).await;
                let id = text_at(&r, "/data/createPromotion/promotionId")?;
                let mut last = at(&r, "/data/createPromotion/position").ok();
                if v >= 1 {
                    last = Some(self.deliver(&id).await?);
                }
                Ok((id, last))
            }
            Need::Conversation => {
                let token = self.token(who).map(str::to_string);
                let input = if who == Who::Portal {
                    json!({"text": "Hello"})
                } else {
                    json!({"customerId": customer, "text": "Hello"})
                };
                let r = self
                    .api
                    .gql(
                        token.as_deref(),
                        "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } position } }",
                        json!({"i": input}),
                    )
                    .await;
                Ok((
                    text_at(&r, "/data/startConversation/conversation/id")?,
                    at(&r, "/data/startConversation/position").ok(),
                ))
            }
            Need::Report => {
                let metric = self.schema.types["Metric"]["enumValues"][0]["name"].clone();
                let period = self.schema.types["Period"]["enumValues"][0]["name"].clone();
                let r = self.admin_call(
                    "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { reportId position } }",
                    json!({"name": format!("Report {k}"), "metrics": [metric], "period": period, "recipients": ["boss@hostile.example"], "cron": "0 7 * * 1"}),
                ).await;
                Ok((
                    text_at(&r, "/data/defineScheduledReport/reportId")?,
                    at(&r, "/data/defineScheduledReport/position").ok(),
                ))
            }
        }
    }

    /// Schedules promotion `id` a second or two from now and runs the delivery job through
    /// the cron endpoint once that time has passed; the position of the scheduling.
    async fn deliver(&mut self, id: &str) -> Result<Value, String> {
        let send_at = chrono::Utc::now() + chrono::Duration::seconds(2);
        let send_at = send_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let r = self
            .admin_call(
                "mutation($i: SchedulePromotionInput!) { schedulePromotion(input: $i) { position } }",
                json!({"id": id, "sendAt": send_at}),
            )
            .await;
        let position = at(&r, "/data/schedulePromotion/position")?;
        // The job reads the campaign and its audience from the read models.
        self.settle(&position).await;
        let due = chrono::DateTime::parse_from_rfc3339(&send_at).map_err(|e| e.to_string())?;
        let wait = (due.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds() + 50;
        tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
        let url = format!(
            "{}/api/cron/execute/process-promotion-deliveries",
            self.api.server.base
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .api
                .http
                .post(&url)
                .bearer_auth(CRON_SECRET)
                .send()
                .await
                .map_err(|e| format!("cron: {e}"))?;
            match r.status().as_u16() {
                200 => return Ok(position),
                // Another run of the job holds it (the scheduler's own).
                409 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                s => {
                    return Err(format!(
                        "cron: HTTP {s}: {}",
                        r.text().await.unwrap_or_default()
                    ))
                }
            }
        }
    }

    /// A job for `customer`: scheduled with `staff` assigned, or `unscheduled`, or completed.
    async fn job(
        &mut self,
        customer: &str,
        staff: &str,
        unscheduled: bool,
        completed: bool,
    ) -> Result<(String, Option<Value>), String> {
        let day = chrono::Utc::now().date_naive() + chrono::Duration::days(1);
        let start = day.and_hms_opt(15, 0, 0).expect("time").and_utc();
        let mut input = json!({"customerId": customer, "services": ["carpet cleaning"]});
        if !unscheduled {
            input["start"] = json!(start.to_rfc3339());
            input["end"] = json!((start + chrono::Duration::hours(2)).to_rfc3339());
        }
        let r = self
            .admin_call(
                "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } position } }",
                input,
            )
            .await;
        let job = text_at(&r, "/data/bookJob/job/id")?;
        let mut last = at(&r, "/data/bookJob/position").ok();
        if unscheduled {
            return Ok((job, last));
        }
        let r = self
            .admin_call(
                "mutation($i: AssignTechnicianInput!) { assignTechnician(input: $i) { position } }",
                json!({"jobId": job, "technicianId": staff}),
            )
            .await;
        last = Some(at(&r, "/data/assignTechnician/position")?);
        if completed {
            let r = self
                .admin_call(
                    "mutation($i: CompleteJobInput!) { completeJob(input: $i) { position } }",
                    json!({"jobId": job, "amountCents": 15000, "services": ["carpet cleaning"]}),
                )
                .await;
            last = Some(at(&r, "/data/completeJob/position")?);
        }
        Ok((job, last))
    }

    async fn admin_call(&self, query: &str, input: Value) -> Value {
        self.api
            .gql(Some(&self.admin), query, json!({"i": input}))
            .await
    }

    // ------------------------------------------------------------------- calling

    /// The request for `cx.op` (`op` its field in the schema): the arguments' baseline,
    /// with `hostile` in its target when given.
    fn request(
        &mut self,
        op: &Value,
        cx: &Cx<'_>,
        hostile: Option<(&Target, Hostile)>,
    ) -> (String, Map<String, Value>) {
        let mut decls = Vec::new();
        let mut args = Vec::new();
        let mut vars = Map::new();
        for (i, a) in op["args"].as_array().into_iter().flatten().enumerate() {
            let arg = a["name"].as_str().unwrap_or_default();
            let targeted = hostile.filter(|(t, _)| t.path[0] == arg);
            if !required(a) && targeted.is_none() {
                continue;
            }
            decls.push(format!("$v{i}: {}", render(&a["type"])));
            args.push(format!("{arg}: $v{i}"));
            let mut v = self.benign(cx, &a["type"], arg);
            if let Some((t, h)) = targeted {
                let value = self.hostile_value(cx, t, h);
                self.put(cx, &mut v, t, 1, value);
            }
            vars.insert(format!("v{i}"), v);
        }
        let wrap = |xs: Vec<String>| {
            if xs.is_empty() {
                String::new()
            } else {
                format!("({})", xs.join(", "))
            }
        };
        let selection = match named(&op["type"]).0 {
            "OBJECT" | "INTERFACE" | "UNION" => " { __typename }",
            _ => "",
        };
        let query = format!(
            "mutation{} {{ {}{}{selection} }}",
            wrap(decls),
            cx.op,
            wrap(args)
        );
        (query, vars)
    }

    fn hostile_value(&mut self, cx: &Cx<'_>, t: &Target, h: Hostile) -> Value {
        let n = self.next();
        match (&t.list_item, h) {
            (Some(item), Hostile::LongList) => {
                let one = self.benign(cx, item, t.field());
                Value::Array(vec![one; 10_000])
            }
            (Some(_), h) => json!([h.json(t.field(), n)]),
            (None, h) => h.json(t.field(), n),
        }
    }

    /// Sets `value` at `t.path[depth..]` inside `v`, making missing input objects on the way.
    fn put(&mut self, cx: &Cx<'_>, v: &mut Value, t: &Target, depth: usize, value: Value) {
        if depth == t.path.len() {
            *v = value;
            return;
        }
        if !v.is_object() {
            *v = Value::Object(self.benign_object(cx, &t.parents[depth - 1]));
        }
        let key = t.path[depth].clone();
        let mut inner = v[&key].take();
        self.put(cx, &mut inner, t, depth + 1, value);
        v[&key] = inner;
    }

    /// Sends one call and judges the answer: whether it was accepted (data, no errors), or
    /// `None` when no answer came.
    async fn call(
        &mut self,
        cx: &Cx<'_>,
        h: Hostile,
        what: &str,
        query: &str,
        vars: &Map<String, Value>,
    ) -> Option<bool> {
        let body = json!({"query": query, "variables": vars})
            .to_string()
            .replace(SURROGATE_MARK, "\\ud800");
        let started = Instant::now();
        let answer = self.api.post(self.token(cx.who), body).await;
        self.calls += 1;
        self.slowest
            .push((started.elapsed(), format!("{} {what}", cx.op)));
        self.slowest.sort_by_key(|a| std::cmp::Reverse(a.0));
        self.slowest.truncate(5);
        let who = cx.who;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.violations
                    .push(format!("{} as {who:?}, {what}: {e}", cx.op));
                return None;
            }
        };
        let judged = judge(&answer);
        if std::env::var_os("HOSTILE_INPUT_VERBOSE").is_some() {
            eprintln!(
                "{} as {who:?}, {what}: HTTP {} {}",
                cx.op,
                answer.status,
                clip(&answer.body)
            );
        }
        let key = match &judged {
            Judged::Accepted => "data".to_string(),
            Judged::Refused(code) => code.clone(),
            Judged::Violation(_) => "violation".to_string(),
        };
        *self.outcomes.entry((answer.status, key)).or_default() += 1;
        if matches!(answer.status, 400 | 413) {
            *self
                .refused_bodies
                .entry((answer.status, h.label()))
                .or_default() += 1;
        }
        match judged {
            Judged::Accepted => {
                *self.accepted.entry(h.label()).or_default() += 1;
                if h.must_be_refused() {
                    self.violations.push(format!(
                        "{} as {who:?}, {what}: accepted (no field may hold it: expected a typed \
                         refusal such as VALIDATION naming the field); answer HTTP {}: {}",
                        cx.op,
                        answer.status,
                        clip(&answer.body)
                    ));
                }
                Some(true)
            }
            Judged::Refused(_) => Some(false),
            Judged::Violation(why) => {
                self.violations.push(format!(
                    "{} as {who:?}, {what}: {why}; answer HTTP {}: {}",
                    cx.op,
                    answer.status,
                    clip(&answer.body)
                ));
                Some(false)
            }
        }
    }

    /// Every hostile value into every field of `op`. `Err` when the server stopped answering.
    async fn barrage(&mut self, op: &Value, who: Who) -> Result<(), ()> {
        let name = op["name"].as_str().unwrap_or_default().to_string();
        let targets = self.schema.targets(op);
        if targets.is_empty() {
            self.notes.push(format!(
                "{name}: no String, ID, Int, Float or list argument, not called"
            ));
            return Ok(());
        }
        let Some(mut fx) = self.working_baseline(op, who).await else {
            return Ok(());
        };
        for t in &targets {
            for &h in &t.values {
                if fx.stale {
                    fx = match self.fixture(op, who, fx.variant).await {
                        Ok(f) => f,
                        Err(e) => {
                            self.violations.push(format!(
                                "{name}: the records for its calls could not be made any more ({e}); its remaining calls were skipped"
                            ));
                            return Ok(());
                        }
                    };
                }
                let cx = Cx {
                    op: &name,
                    who,
                    fx: &fx,
                };
                let (query, vars) = self.request(op, &cx, Some((t, h)));
                let what = format!("{} = {}", t.name(), h.label());
                match self.call(&cx, h, &what, &query, &vars).await {
                    Some(true) => {
                        fx.stale = true;
                        self.after_accepted(&name, who, &vars);
                        self.recent_accepted.push(format!("{name} {what}"));
                        let n = self.recent_accepted.len();
                        self.recent_accepted.drain(..n.saturating_sub(20));
                    }
                    Some(false) => {}
                    None if self.api.alive().await => {}
                    None => return Err(()),
                }
            }
        }
        Ok(())
    }

    /// The first fixture state in which the baseline request is accepted (noted when none
    /// is: the hostile calls then meet that refusal).
    async fn working_baseline(&mut self, op: &Value, who: Who) -> Option<Fixture> {
        let name = op["name"].as_str().unwrap_or_default().to_string();
        let mut refusals = Vec::new();
        for variant in 0..VARIANTS {
            let mut fx = match self.fixture(op, who, variant).await {
                Ok(f) => f,
                // Another state will not be made either when the read side has stopped.
                Err(e) if self.read_side_stopped => {
                    refusals.push(format!("state {variant}: {e}"));
                    break;
                }
                Err(e) => {
                    refusals.push(format!("state {variant}: {e}"));
                    continue;
                }
            };
            let cx = Cx {
                op: &name,
                who,
                fx: &fx,
            };
            let (query, vars) = self.request(op, &cx, None);
            let r = self
                .api
                .gql(self.token(who), &query, Value::Object(vars.clone()))
                .await;
            if r.get("errors").is_none() && r.get("data").is_some_and(|d| !d.is_null()) {
                fx.stale = true;
                self.after_accepted(&name, who, &vars);
                return Some(fx);
            }
            refusals.push(format!(
                "state {variant}: {}",
                clip(&r["errors"][0].to_string())
            ));
            // No records named: another state would not change the answer.
            if fx.ids.is_empty() {
                self.notes.push(format!(
                    "{name} as {who:?}: the baseline is refused ({})",
                    refusals.join("; ")
                ));
                return Some(fx);
            }
        }
        self.notes.push(format!(
            "{name} as {who:?}: no baseline accepted in any state ({})",
            refusals.join("; ")
        ));
        match self.fixture(op, who, VARIANTS - 1).await {
            Ok(fx) => Some(fx),
            Err(e) => {
                self.violations.push(format!(
                    "{name}: the records for its calls could not be made ({e}); not called"
                ));
                None
            }
        }
    }

    /// Keeps track of what an accepted call changed about the principals.
    fn after_accepted(&mut self, op: &str, who: Who, vars: &Map<String, Value>) {
        if op == "changePassword" {
            if let Some(p) = vars.values().find_map(|v| v["newPassword"].as_str()) {
                self.passwords.insert(who, p.to_string());
            }
        }
    }
}

/// One mutation's calls: its name, who sends them and the records they name.
struct Cx<'f> {
    op: &'f str,
    who: Who,
    fx: &'f Fixture,
}

/// How an answer measures up to the rule.
enum Judged {
    Accepted,
    /// A typed refusal (its code), or a refused body (400/413).
    Refused(String),
    Violation(String),
}

fn judge(a: &Answer) -> Judged {
    match a.status {
        400 | 413 => return Judged::Refused(format!("HTTP {}", a.status)),
        200 => {}
        s if s >= 500 => return Judged::Violation(format!("a {s}")),
        s => return Judged::Violation(format!("HTTP {s} (only 200, 400 and 413 are expected)")),
    }
    let Ok(v) = serde_json::from_str::<Value>(&a.body) else {
        return Judged::Violation("HTTP 200 without a JSON body".into());
    };
    match v.get("errors").and_then(Value::as_array) {
        None if v.get("data").is_some_and(|d| !d.is_null()) => Judged::Accepted,
        None => Judged::Violation("neither data nor errors".into()),
        Some(errors) => {
            let codes: Vec<Option<&str>> = errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str())
                .collect();
            if codes.contains(&Some("INTERNAL")) {
                Judged::Violation("INTERNAL".into())
            } else if codes.iter().any(Option::is_none) || codes.is_empty() {
                Judged::Violation("an error without extensions.code".into())
            } else if errors.iter().any(tests::app::rule_unnamed) {
                Judged::Violation("a RULE_VIOLATION without its rule".into())
            } else {
                Judged::Refused(codes[0].unwrap_or_default().to_string())
            }
        }
    }
}

// --------------------------------------------------------------------- the test

async fn hostile_input_never_stops_the_business(engine: Engine) {
    let started = Instant::now();
    let db = TestDb::new(engine).await;
    let api = start(&db.url).await;
    let schema = Schema::introspect(&api).await;
    let principals = principals();

    let signed_in = |r: &Value, m: &str| {
        text_at(r, &format!("/data/{m}/token")).unwrap_or_else(|e| panic!("{m}: {e}"))
    };
    let admin = signed_in(
        &api.gql(
            None,
            "mutation($i: LoginInput!) { login(input: $i) { token } }",
            json!({"i": {"email": ADMIN.0, "password": ADMIN.1}}),
        )
        .await,
        "login",
    );
    let asked = api
        .gql(
            None,
            tests::standins::START_SIGN_UP,
            json!({"i": {"email": PORTAL.0}}),
        )
        .await;
    assert_eq!(
        asked["data"]["startPortalSignUp"]["accepted"], true,
        "{asked}"
    );
    let code = api.mailbox.code_for(PORTAL.0).await;
    let registered = api
        .gql(
            None,
            "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token customerId } }",
            json!({"i": {"name": "Pat Portal", "email": PORTAL.0, "password": PORTAL.1, "code": code}}),
        )
        .await;
    let mut run = Run {
        api: &api,
        schema: &schema,
        admin,
        portal: signed_in(&registered, "registerPortalAccount"),
        portal_id: text_at(&registered, "/data/registerPortalAccount/customerId")
            .expect("customer id"),
        passwords: HashMap::from([
            (Who::Admin, ADMIN.1.to_string()),
            (Who::Portal, PORTAL.1.to_string()),
        ]),
        n: 0,
        violations: Vec::new(),
        outcomes: BTreeMap::new(),
        accepted: BTreeMap::new(),
        refused_bodies: BTreeMap::new(),
        notes: Vec::new(),
        read_side_stopped: false,
        recent_accepted: Vec::new(),
        slowest: Vec::new(),
        calls: 0,
    };

    // The barrage. `logout` has no arguments (and would end the admin's session).
    for op in &schema.mutations {
        let name = op["name"].as_str().unwrap_or_default();
        let Some(&who) = principals.get(name) else {
            run.violations.push(format!(
                "{name}: not in docs/api.md's Roles table, so not called (roles.rs reports it too)"
            ));
            continue;
        };
        let op_started = Instant::now();
        if run.barrage(op, who).await.is_err() {
            run.violations.push(format!(
                "the server stopped answering during {name}: the barrage ended there"
            ));
            break;
        }
        eprintln!(
            "{engine:?}: {name} as {who:?}: {:.1} s",
            op_started.elapsed().as_secs_f64()
        );
    }
    let barrage = started.elapsed();

    // The business goes on: a job booked for a new customer reads back.
    if let Err(e) = book_and_read_back(&run).await {
        run.violations.push(format!(
            "after the barrage, booking a job for a new customer: {e}"
        ));
    }
    // No projection or policy stopped on anything sent.
    for f in tests::health::failures(&api.server.base).await {
        run.violations
            .push(format!("after the barrage, /api/health/detailed: {f}"));
    }
    // The read models equal a clean rebuild, with nothing writing meanwhile.
    let Run {
        violations: mut problems,
        outcomes,
        refused_bodies,
        accepted,
        notes,
        slowest,
        calls,
        ..
    } = run;
    drop(api);
    let log = db.log().await;
    match tests::rebuild::differences_from_a_clean_rebuild(&log, TZ).await {
        Ok(diffs) => problems.extend(diffs.into_iter().map(|d| {
            format!("rebuild --all --diff: the live read model differs from a clean rebuild: {d}")
        })),
        Err(e) => problems.push(format!("rebuild --all --diff failed: {e}")),
    }
    log.close().await;

    eprintln!(
        "{engine:?}: {calls} hostile calls in {:.1} s, {:.1} s in all",
        barrage.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{engine:?}: answers by (HTTP status, code): {outcomes:?}");
    eprintln!("{engine:?}: bodies refused whole, by (HTTP status, value): {refused_bodies:?}");
    eprintln!("{engine:?}: accepted, by value: {accepted:?}");
    eprintln!("{engine:?}: slowest calls: {slowest:?}");
    for n in &notes {
        eprintln!("{engine:?}: note: {n}");
    }
    assert!(
        problems.is_empty(),
        "{} violation(s) of \"hostile input never stops the business\" ({engine:?}):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

/// Books a job for a new customer and reads it back through `job(id)`.
async fn book_and_read_back(run: &Run<'_>) -> Result<(), String> {
    let r = run
        .admin_call(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({"name": "After The Storm", "email": "after@hostile.example"}),
        )
        .await;
    let customer = text_at(&r, "/data/createCustomer/customer/id")?;
    let start = (chrono::Utc::now() + chrono::Duration::days(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end = (chrono::Utc::now() + chrono::Duration::days(3) + chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = run
        .admin_call(
            "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } position } }",
            json!({"customerId": customer, "services": ["carpet cleaning"], "start": start, "end": end}),
        )
        .await;
    let job = text_at(&r, "/data/bookJob/job/id")?;
    let position = at(&r, "/data/bookJob/position")?;
    let admin = Some(run.admin.as_str());
    let synced = run
        .api
        .gql(
            admin,
            "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
            json!({"p": position}),
        )
        .await;
    if at(&synced, "/data/sync")? != json!(true) {
        return Err(format!(
            "the read models did not catch up within 10 s: {synced}"
        ));
    }
    let r = run
        .api
        .gql(
            admin,
            "query($id: ID!) { job(id: $id) { id customerId status } }",
            json!({"id": job}),
        )
        .await;
    let read = at(&r, "/data/job")?;
    if read["id"] != json!(job) || read["customerId"] != json!(customer) {
        return Err(format!(
            "job {job} of customer {customer} reads back as {read}"
        ));
    }
    Ok(())
}

tests::on_both_engines!(hostile_input_never_stops_the_business);

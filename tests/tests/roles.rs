//! The role matrix: the "## Roles" table in docs/api.md is the contract, and
//! the running server is checked against it over HTTP, on both engines.
//!
//! - Every query and mutation field of the served schema (by introspection)
//!   has exactly one row in the table, and every name in the table exists.
//! - Every operation is called as every role (admin, manager, staff, portal
//!   customer, no token) with a request generated from introspection (only the
//!   required arguments, dummy values) and the error code is compared with the
//!   table's cell. All mismatches are collected and reported together.
//! - Portal isolation with real data: one portal customer cannot read or change
//!   another's customer, job, loyalty account or offer, and the other's data is
//!   unchanged afterwards.
//!
//! Subscriptions (WebSocket) are covered in graphql.rs and skipped here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tests::{Engine, TestDb};

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");
const MANAGER: (&str, &str) = ("manager@roles.example", "manager-password-1");
const STAFF: (&str, &str) = ("staff@roles.example", "staff-password-12");
const PORTAL: (&str, &str) = ("portal@roles.example", "portal-password-1");

/// The table's columns, in order.
const ROLES: [&str; 5] = ["admin", "manager", "staff", "portal customer", "no token"];

/// A cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// `✓`
    Allowed,
    /// `—`
    Denied,
    /// `own only`
    OwnOnly,
}

impl Cell {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "✓" => Some(Cell::Allowed),
            "—" => Some(Cell::Denied),
            "own only" => Some(Cell::OwnOnly),
            _ => None,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Cell::Allowed => "✓",
            Cell::Denied => "—",
            Cell::OwnOnly => "own only",
        }
    }
}

/// One row of the table: the operations it names and the five cells.
#[derive(Debug, Clone)]
struct Row {
    ops: Vec<String>,
    cells: [Cell; 5],
}

/// Parses the "## Roles" table of docs/api.md (subscription rows skipped).
fn roles_table() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
    let text = std::fs::read_to_string(path).expect("read docs/api.md");
    let mut lines = text.lines().skip_while(|l| l.trim() != "## Roles").skip(1);
    let table: Vec<&str> = lines
        .by_ref()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .collect();
    assert!(table.len() > 2, "no table under \"## Roles\" in {path}");
    let header: Vec<&str> = split_row(table[0]);
    assert_eq!(
        header.get(1..).map(<[&str]>::to_vec),
        Some(ROLES.to_vec()),
        "the Roles table's columns changed: {}",
        table[0]
    );
    let mut rows = Vec::new();
    // Skip the header and the |---| separator.
    for line in &table[2..] {
        let cells = split_row(line);
        assert_eq!(cells.len(), 6, "a Roles row without six cells: {line}");
        if cells[0].starts_with("subscription") {
            continue;
        }
        let ops: Vec<String> = cells[0]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert!(!ops.is_empty(), "a Roles row names no operation: {line}");
        let mut parsed = [Cell::Denied; 5];
        for (i, c) in cells[1..].iter().enumerate() {
            parsed[i] = Cell::parse(c)
                .unwrap_or_else(|| panic!("unknown cell {c:?} (✓, — or own only) in: {line}"));
        }
        rows.push(Row { ops, cells: parsed });
    }
    rows
}

fn split_row(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(str::trim).collect()
}

// ------------------------------------------------------------------ the client

/// The server, and a client that plays many clients behind a trusted proxy.
struct Api {
    server: tests::ServerProcess,
    /// Where sign-up codes go.
    mailbox: tests::standins::Mailbox,
    url: String,
    http: reqwest::Client,
    next_client: AtomicU32,
}

async fn start(database_url: &str) -> Api {
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
            // The test is the reverse proxy: its requests carry X-Forwarded-For (see `gql`).
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
        Duration::from_secs(120),
    )
    .await;
    Api {
        url: server.url.clone(),
        server,
        mailbox,
        http: reqwest::Client::new(),
        next_client: AtomicU32::new(0),
    }
}

impl Api {
    /// One GraphQL request. Sign-in (`login`, `portalLogin`, `requestPasswordReset`,
    /// `resetPassword`) is limited to 10 attempts a minute per client address, and this
    /// test makes a few dozen of them, most with dummy credentials. The server is started
    /// with TRUSTED_PROXIES=127.0.0.1, so every request here comes from its own client
    /// address (198.18.0.0/15, benchmark range) in X-Forwarded-For, as distinct clients
    /// behind a proxy would; the limit itself stays on and is tested in graphql.rs.
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed);
        let client = format!("198.{}.{}.{}", 18 + (n >> 16) % 2, (n >> 8) & 255, n & 255);
        let mut req = self
            .http
            .post(&self.url)
            .header("x-forwarded-for", client)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        let answer = serde_json::from_str(&body)
            .unwrap_or_else(|_| json!({"errors": [{"message": format!("HTTP {status}: {body}")}]}));
        tests::app::assert_rules_named(&answer);
        answer
    }

    /// Waits until the read models include `position`.
    async fn sync(&self, token: &str, position: &Value) {
        let r = self
            .gql(
                Some(token),
                "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
                json!({ "p": position }),
            )
            .await;
        assert_eq!(data(&r, "/data/sync"), true, "read models lag: {r}");
    }

    async fn login(&self, mutation: &str, email: &str, password: &str) -> String {
        let r = self
            .gql(
                None,
                &format!("mutation($i: LoginInput!) {{ {mutation}(input: $i) {{ token }} }}"),
                json!({"i": {"email": email, "password": password}}),
            )
            .await;
        str_at(&r, &format!("/data/{mutation}/token"))
    }

    /// Registers a portal customer: (token, customer id).
    async fn register(&self, name: &str, email: &str, password: &str) -> (String, String) {
        let started = self
            .gql(
                None,
                tests::standins::START_SIGN_UP,
                json!({"i": {"email": email}}),
            )
            .await;
        assert_eq!(data(&started, "/data/startPortalSignUp/accepted"), true);
        let code = self.mailbox.code_for(email).await;
        let r = self
            .gql(
                None,
                "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token customerId } }",
                json!({"i": {"name": name, "email": email, "password": password, "code": code}}),
            )
            .await;
        (
            str_at(&r, "/data/registerPortalAccount/token"),
            str_at(&r, "/data/registerPortalAccount/customerId"),
        )
    }

    async fn create_staff(&self, admin: &str, (email, password): (&str, &str), role: &str) {
        let r = self
            .gql(
                Some(admin),
                "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { position } }",
                json!({"i": {"email": email, "name": role, "role": role, "password": password}}),
            )
            .await;
        self.sync(admin, data(&r, "/data/createStaffUser/position"))
            .await;
    }
}

fn data<'a>(v: &'a Value, path: &str) -> &'a Value {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
    v.pointer(path)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn str_at(v: &Value, path: &str) -> String {
    data(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {v}"))
        .to_string()
}

fn code(v: &Value) -> Option<&str> {
    v["errors"][0]["extensions"]["code"].as_str()
}

/// What a response was, for reports: the code and message, or "no error".
fn outcome(v: &Value) -> String {
    match v.get("errors") {
        None => "no error".into(),
        Some(e) => format!(
            "{} ({})",
            code(v).unwrap_or("<no extensions.code>"),
            e[0]["message"].as_str().unwrap_or_default()
        ),
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

/// The served schema: every type by name, and the two roots.
struct Schema {
    types: BTreeMap<String, Value>,
    query: String,
    mutation: String,
}

impl Schema {
    async fn introspect(api: &Api) -> Self {
        let r = api.gql(None, INTROSPECTION, json!({})).await;
        let s = data(&r, "/data/__schema");
        let types = s["types"]
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
        Schema {
            types,
            query: s["queryType"]["name"].as_str().expect("query").to_string(),
            mutation: s["mutationType"]["name"]
                .as_str()
                .expect("mutation")
                .to_string(),
        }
    }

    /// The selection of `inner` on the list the query field `name` returns, and the JSON
    /// pointer suffix to its items: lists are plain or Relay connections, whichever is served.
    fn list(&self, name: &str, inner: &str) -> (String, &'static str) {
        let field = self.types[&self.query]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no query `{name}`"));
        let ty = &self.types[named(&field["type"]).1];
        if ty["fields"]
            .as_array()
            .is_some_and(|fs| fs.iter().any(|f| f["name"] == "nodes"))
        {
            (format!("{{ nodes {{ {inner} }} }}"), "/nodes")
        } else {
            (format!("{{ {inner} }}"), "")
        }
    }

    /// (root keyword, field) for every query and mutation field.
    fn operations(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        for (kw, root) in [("query", &self.query), ("mutation", &self.mutation)] {
            for f in self.types[root]["fields"].as_array().expect("fields") {
                out.push((kw, f.clone()));
            }
        }
        out
    }

    /// A dummy value of type `t` for a field or argument called `name`; input
    /// objects get their required fields, and their optional ID fields too when
    /// `optional_ids` (so that an `own only` call names somebody's id, not "mine").
    fn dummy(&self, t: &Value, name: &str, optional_ids: bool) -> Value {
        match t["kind"].as_str() {
            Some("NON_NULL") => self.dummy(&t["ofType"], name, optional_ids),
            Some("LIST") => json!([self.dummy(&t["ofType"], name, optional_ids)]),
            Some("ENUM") => {
                let ty = &self.types[t["name"].as_str().unwrap_or_default()];
                ty["enumValues"][0]["name"].clone()
            }
            Some("INPUT_OBJECT") => {
                let ty = &self.types[t["name"].as_str().unwrap_or_default()];
                let mut obj = Map::new();
                for f in ty["inputFields"].as_array().expect("input fields") {
                    if required(f) || (optional_ids && is_id(&f["type"])) {
                        let n = f["name"].as_str().unwrap_or_default();
                        obj.insert(n.to_string(), self.dummy(&f["type"], n, optional_ids));
                    }
                }
                Value::Object(obj)
            }
            _ => scalar(t["name"].as_str().unwrap_or_default(), name),
        }
    }

    /// A request for `op` with dummy arguments: (query text, variables).
    fn request(&self, kw: &str, op: &Value, optional_ids: bool) -> (String, Value) {
        let name = op["name"].as_str().unwrap_or_default();
        let mut decls = Vec::new();
        let mut args = Vec::new();
        let mut vars = Map::new();
        for (i, a) in op["args"].as_array().expect("args").iter().enumerate() {
            if !(required(a) || (optional_ids && is_id(&a["type"]))) {
                continue;
            }
            let arg = a["name"].as_str().unwrap_or_default();
            decls.push(format!("$v{i}: {}", render(&a["type"])));
            args.push(format!("{arg}: $v{i}"));
            vars.insert(format!("v{i}"), self.dummy(&a["type"], arg, optional_ids));
        }
        let decls = if decls.is_empty() {
            String::new()
        } else {
            format!("({})", decls.join(", "))
        };
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        let selection = match named(&op["type"]).0 {
            "OBJECT" | "INTERFACE" | "UNION" => " { __typename }",
            _ => "",
        };
        (
            format!("{kw}{decls} {{ {name}{args}{selection} }}"),
            Value::Object(vars),
        )
    }
}

/// Non-null without a default.
fn required(field: &Value) -> bool {
    field["type"]["kind"] == "NON_NULL" && field["defaultValue"].is_null()
}

/// A nullable `ID` (or list of them).
fn is_id(t: &Value) -> bool {
    t["kind"] != "NON_NULL" && named(t).1 == "ID"
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

/// A type reference in GraphQL syntax, e.g. `[String!]!`.
fn render(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", render(&t["ofType"])),
        Some("LIST") => format!("[{}]", render(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or_default().to_string(),
    }
}

/// A dummy scalar for a field called `field`.
fn scalar(ty: &str, field: &str) -> Value {
    let lower = field.to_lowercase();
    match ty {
        "ID" => json!(uuid::Uuid::new_v4().to_string()),
        "Int" => json!(1),
        "Float" => json!(1.0),
        "Boolean" => json!(false),
        "DateTime" => json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "NaiveDate" => json!("2026-01-15"),
        // String, JSON and any other custom scalar.
        _ if lower.contains("password") => json!("dummy-password-123"),
        _ if lower == "email" => json!("nobody@example.com"),
        _ => json!("x"),
    }
}

// ---------------------------------------------------------------- the matrix

/// Checks a response against a cell; `None` when it matches, else what was expected.
fn judge(op: &str, cell: Cell, role: usize, r: &Value) -> Option<String> {
    let got = code(r);
    if got == Some("INTERNAL") {
        return Some("never INTERNAL".into());
    }
    if got == Some("RATE_LIMITED") {
        // Not an answer about roles: every request here comes from its own client address.
        return Some("not RATE_LIMITED (the call was not judged)".into());
    }
    if r.get("errors").is_some() && got.is_none() {
        return Some("an error with extensions.code (is the generated request valid?)".into());
    }
    let signed_in = role < 4;
    match cell {
        Cell::Allowed if op == "login" || op == "portalLogin" => {
            // Dummy credentials are rightly UNAUTHENTICATED; only a refusal by role is wrong.
            (got == Some("FORBIDDEN")).then(|| "anything but FORBIDDEN".into())
        }
        Cell::Allowed => matches!(got, Some("UNAUTHENTICATED" | "FORBIDDEN"))
            .then(|| "neither UNAUTHENTICATED nor FORBIDDEN".into()),
        Cell::Denied if signed_in => (got != Some("FORBIDDEN")).then(|| "FORBIDDEN".into()),
        Cell::Denied => (got != Some("UNAUTHENTICATED")).then(|| "UNAUTHENTICATED".into()),
        Cell::OwnOnly => (!matches!(got, Some("FORBIDDEN" | "NOT_FOUND")))
            .then(|| "FORBIDDEN or NOT_FOUND (dummy ids belong to nobody)".into()),
    }
}

async fn role_matrix(engine: Engine) {
    let started = Instant::now();
    let db = TestDb::new(engine).await;
    let api = start(&db.url).await;
    let mut problems: Vec<String> = Vec::new();

    // The contract against the schema: each operation exactly once, and nothing unknown.
    let rows = roles_table();
    let schema = Schema::introspect(&api).await;
    let ops = schema.operations();
    let mut cells: BTreeMap<String, [Cell; 5]> = BTreeMap::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        for op in &row.ops {
            *seen.entry(op).or_default() += 1;
            cells.insert(op.clone(), row.cells);
        }
    }
    let served: BTreeSet<&str> = ops.iter().filter_map(|(_, f)| f["name"].as_str()).collect();
    for (kw, f) in &ops {
        let name = f["name"].as_str().unwrap_or_default();
        if !seen.contains_key(name) {
            problems.push(format!(
                "{kw} `{name}` is served but has no row in docs/api.md's Roles table"
            ));
        }
    }
    for (name, n) in &seen {
        if *n > 1 {
            problems.push(format!("`{name}` appears {n} times in the Roles table"));
        }
        if !served.contains(name) {
            problems.push(format!(
                "`{name}` is in the Roles table but the server has no such query or mutation"
            ));
        }
    }

    // The signed-in roles. The matrix's portal customer is its own (not A or B below).
    let admin = api.login("login", ADMIN.0, ADMIN.1).await;
    api.create_staff(&admin, MANAGER, "MANAGER").await;
    api.create_staff(&admin, STAFF, "STAFF").await;

    portal_isolation(&api, &schema, &admin, &mut problems).await;

    let manager = api.login("login", MANAGER.0, MANAGER.1).await;
    let staff = api.login("login", STAFF.0, STAFF.1).await;
    api.register("Pat Portal", PORTAL.0, PORTAL.1).await;
    let portal = api.login("portalLogin", PORTAL.0, PORTAL.1).await;
    let tokens = [
        Some(admin.as_str()),
        Some(manager.as_str()),
        Some(staff.as_str()),
        Some(portal.as_str()),
        None,
    ];

    // Every operation in the table × every role; `logout` last, as it ends the session.
    let mut matrix: Vec<&(&str, Value)> = ops
        .iter()
        .filter(|(_, f)| cells.contains_key(f["name"].as_str().unwrap_or_default()))
        .collect();
    matrix.sort_by_key(|(_, f)| f["name"] == "logout");
    let mut calls = 0;
    // ROLE_MATRIX_VERBOSE=1 prints every call's outcome.
    let verbose = std::env::var_os("ROLE_MATRIX_VERBOSE").is_some();
    for (role, token) in tokens.iter().enumerate() {
        for (kw, f) in &matrix {
            let name = f["name"].as_str().unwrap_or_default();
            let cell = cells[name];
            let (query, variables) = schema.request(kw, f, cell.contains(&Cell::OwnOnly));
            let r = api.gql(*token, &query, variables.clone()).await;
            calls += 1;
            if verbose {
                eprintln!("{name} as {}: {}", ROLES[role], outcome(&r));
            }
            if let Some(expected) = judge(name, cell[role], role, &r) {
                problems.push(format!(
                    "`{name}` as {}: table says {} so expected {expected}, got {}\n      request: {query} {variables}",
                    ROLES[role],
                    cell[role].symbol(),
                    outcome(&r)
                ));
            }
        }
    }
    // Nothing any role sent stopped a projection or a policy.
    problems.extend(
        tests::health::failures(&api.server.base)
            .await
            .into_iter()
            .map(|f| format!("/api/health/detailed after the matrix: {f}")),
    );
    eprintln!(
        "{engine:?}: {} operations in the table, {} served, {calls} calls ({} × {} roles), {:.1} s",
        seen.len(),
        served.len(),
        matrix.len(),
        ROLES.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} mismatch(es) between docs/api.md's Roles table and the server ({engine:?}):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------- portal isolation

/// Two portal customers, A and B, with real data; A is refused everything of B's.
async fn portal_isolation(api: &Api, schema: &Schema, admin: &str, problems: &mut Vec<String>) {
    let manager = api.login("login", MANAGER.0, MANAGER.1).await;
    let staff = api.login("login", STAFF.0, STAFF.1).await;
    let (a, a_id) = api
        .register("Ann Able", "ann@roles.example", "ann-password-12")
        .await;
    let (b, b_id) = api
        .register("Bob Baker", "bob@roles.example", "bob-password-123")
        .await;

    // Each books a job online; staff award both points.
    let book = "mutation { bookServiceOnline(input: {services: [\"upholstery\"]}) { job { id } } }";
    let a_job = str_at(
        &api.gql(Some(&a), book, json!({})).await,
        "/data/bookServiceOnline/job/id",
    );
    let b_job = str_at(
        &api.gql(Some(&b), book, json!({})).await,
        "/data/bookServiceOnline/job/id",
    );
    let award = "mutation($i: AwardLoyaltyPointsInput!) { awardLoyaltyPoints(input: $i) { account { balance } position } }";
    for (who, points) in [(&a_id, 10), (&b_id, 100)] {
        let r = api
            .gql(
                Some(&staff),
                award,
                json!({"i": {"customerId": who, "points": points, "reason": "welcome"}}),
            )
            .await;
        assert_eq!(data(&r, "/data/awardLoyaltyPoints/account/balance"), points);
    }

    // A manager makes B an offer by email (B consents to email first).
    let consent = api
        .gql(
            Some(&staff),
            "mutation($id: ID!) { setMarketingConsent(input: {id: $id, channel: EMAIL, granted: true}) { position } }",
            json!({"id": b_id}),
        )
        .await;
    data(&consent, "/data/setMarketingConsent/position");
    let opp = api
        .gql(
            Some(&manager),
            "mutation($i: CreateOpportunityInput!) { createOpportunity(input: $i) { opportunity { id } } }",
            json!({"i": {"customerId": b_id, "title": "Pet-odour treatment", "valueCents": 9900}}),
        )
        .await;
    let b_opp = str_at(&opp, "/data/createOpportunity/opportunity/id");
    for (m, ty, input) in [
        (
            "configureAutoOffer",
            "ConfigureAutoOfferInput",
            json!({"id": b_opp, "percentOff": 15, "expiresAt": "2030-01-01T00:00:00Z"}),
        ),
        (
            "sendOffer",
            "SendOfferInput",
            json!({"id": b_opp, "channel": "EMAIL"}),
        ),
    ] {
        let r = api
            .gql(
                Some(&manager),
                &format!("mutation($i: {ty}!) {{ {m}(input: $i) {{ position }} }}"),
                json!({"i": input}),
            )
            .await;
        let p = data(&r, &format!("/data/{m}/position")).clone();
        api.sync(&manager, &p).await;
    }

    // B's data as staff see it, before and after A's attempts.
    let theirs = TheirData {
        customer: b_id.clone(),
        job: b_job.clone(),
        opportunity: b_opp.clone(),
    };
    let before = b_state(api, schema, &staff, &manager, &theirs).await;
    assert_eq!(before["loyalty"]["balance"], 100, "{before}");
    assert_eq!(
        before["opportunity"]["offerStatus"], "sent",
        "B's offer was sent: {before}"
    );
    assert!(
        before["opportunityHistory"]
            .to_string()
            .contains("OfferSent"),
        "B's opportunity history: {before}"
    );

    let attempts = [
        (
            "customer(id: B)",
            "query($id: ID!) { customer(id: $id) { id name } }",
            json!({"id": b_id}),
        ),
        (
            "job(id: B's job)",
            "query($id: ID!) { job(id: $id) { id status } }",
            json!({"id": b_job}),
        ),
        (
            "loyaltyAccount(customerId: B)",
            "query($id: ID!) { loyaltyAccount(customerId: $id) { balance } }",
            json!({"id": b_id}),
        ),
        (
            "redeemLoyaltyPoints on B's account",
            "mutation($id: ID!) { redeemLoyaltyPoints(input: {customerId: $id, points: 50, reward: \"free deodorizer\"}) { account { balance } } }",
            json!({"id": b_id}),
        ),
        (
            "acceptOffer on B's opportunity",
            "mutation($id: ID!) { acceptOffer(input: {id: $id}) { opportunity { offerStatus } } }",
            json!({"id": b_opp}),
        ),
    ];
    for (what, query, vars) in attempts {
        let r = api.gql(Some(&a), query, vars).await;
        eprintln!("portal isolation: A's {what}: {}", outcome(&r));
        if !matches!(code(&r), Some("FORBIDDEN" | "NOT_FOUND")) {
            problems.push(format!(
                "portal isolation: A's {what}: expected FORBIDDEN or NOT_FOUND, got {}: {r}",
                outcome(&r)
            ));
        }
    }

    // A sees only A's own data, and may read its own customer, job and loyalty account.
    let (jobs, jobs_path) = schema.list("myJobs", "id customerId");
    let mine = api
        .gql(
            Some(&a),
            &format!("query($id: ID!, $j: ID!) {{ myProfile {{ id }} myJobs {jobs} customer(id: $id) {{ id }} job(id: $j) {{ id }} loyaltyAccount(customerId: $id) {{ customerId balance }} }}"),
            json!({"id": a_id, "j": a_job}),
        )
        .await;
    let expected = json!({
        "myProfile": {"id": a_id},
        "myJobs": [{"id": a_job, "customerId": a_id}],
        "customer": {"id": a_id},
        "job": {"id": a_job},
        "loyaltyAccount": {"customerId": a_id, "balance": 10},
    });
    let got = json!({
        "myProfile": mine["data"]["myProfile"],
        "myJobs": mine.pointer(&format!("/data/myJobs{jobs_path}")),
        "customer": mine["data"]["customer"],
        "job": mine["data"]["job"],
        "loyaltyAccount": mine["data"]["loyaltyAccount"],
    });
    if mine.get("errors").is_some() || got != expected {
        problems.push(format!(
            "portal isolation: A's own data: expected {expected}, got {mine}"
        ));
    }

    // B's data is unchanged. A write after A's attempts, and `sync` to it, make sure the
    // read models include anything those attempts could have written.
    let head = api
        .gql(
            Some(admin),
            "mutation { registerVehicle(input: {name: \"Van R\", plate: \"R-1\"}) { position } }",
            json!({}),
        )
        .await;
    api.sync(admin, data(&head, "/data/registerVehicle/position"))
        .await;
    let after = b_state(api, schema, &staff, &manager, &theirs).await;
    if after != before {
        problems.push(format!(
            "portal isolation: B's data changed after A's attempts: before {before}, after {after}"
        ));
    }
}

/// B's customer id, job and opportunity.
struct TheirData {
    customer: String,
    job: String,
    opportunity: String,
}

/// B's loyalty account, job and opportunity as the staff user sees them, and the
/// opportunity's history (managers read audit trails).
async fn b_state(api: &Api, schema: &Schema, staff: &str, manager: &str, b: &TheirData) -> Value {
    let (opps, opps_path) = schema.list("opportunities", "id status offerStatus");
    let (audit, audit_path) = schema.list("auditTrail", "sequence eventType");
    let r = api
        .gql(
            Some(staff),
            &format!("query($c: ID!, $j: ID!) {{ loyaltyAccount(customerId: $c) {{ balance redeemed }} job(id: $j) {{ status }} opportunities {opps} }}"),
            json!({"c": b.customer, "j": b.job}),
        )
        .await;
    let opp = data(&r, &format!("/data/opportunities{opps_path}"))
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["id"] == json!(b.opportunity))
        .cloned()
        .unwrap_or_else(|| panic!("B's opportunity is not listed: {r}"));
    let history = api
        .gql(
            Some(manager),
            &format!(
                "query($id: ID!) {{ auditTrail(aggregateType: \"Opportunity\", id: $id) {audit} }}"
            ),
            json!({"id": b.opportunity}),
        )
        .await;
    json!({
        "loyalty": data(&r, "/data/loyaltyAccount"),
        "job": data(&r, "/data/job"),
        "opportunity": opp,
        "opportunityHistory": data(&history, &format!("/data/auditTrail{audit_path}")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_role_table_in_the_docs_is_what_the_server_enforces() {
    role_matrix(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_role_table_in_the_docs_is_what_the_server_enforces() {
    role_matrix(Engine::Sqlite).await;
}

//! Portal views (issue #14), over HTTP against the server process on both engines: a
//! signed-in portal customer reads their own records, never what staff keep about them.
//!
//! Staff tag the customer, write notes, lose an offer with a reason and let the bot classify
//! a chat. Then the customer's session calls every portal query and mutation with a selection
//! of every field its answer can reach, generated from introspection (nested objects and
//! connections included). A field that answers `FORBIDDEN` is dropped and the call repeated
//! (mutations carry an idempotency key, so a repeat replays the first outcome) until it
//! answers without errors. The refused fields must be exactly the staff-only ones, and no
//! internal value (the tag, the note, the loss reason, the bot's intent) may appear in any
//! answer. The portal operations are those of docs/api.md's Roles table, so a new one cannot
//! escape the check.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::{Engine, TestDb};

/// What staff write about the customer: none of it may reach the portal.
const TAG: &str = "slow-payer-7f3a";
const NOTE: &str = "Haggles over every quote 4b2d";
const LOSS: &str = "Wants it free, do not discount 9c1e";

/// The fields only staff may read, as `Type.field` (docs/api.md, "Portal views").
const STAFF_ONLY: [&str; 13] = [
    "Conversation.assignedStaffId",
    "Conversation.intent",
    "Conversation.intentConfidence",
    "Customer.mergedIntoId",
    "Customer.noteCount",
    "Customer.tags",
    "Opportunity.archived",
    "Opportunity.lostReason",
    "Opportunity.ownerId",
    "Opportunity.stage",
    "Opportunity.stale",
    "Opportunity.status",
    "Opportunity.value",
];

/// Keys that must never carry a value in a portal answer (the staff-only fields whose names
/// are not also ordinary fields elsewhere, as `status` and `value` are).
const INTERNAL_KEYS: [&str; 9] = [
    "tags",
    "noteCount",
    "mergedIntoId",
    "lostReason",
    "ownerId",
    "stage",
    "intent",
    "intentConfidence",
    "assignedStaffId",
];

/// Portal operations of the Roles table whose answer is about signing in or confirming a
/// contact (a token, a flag, an expiry, a position), not a view of the customer's records.
/// The test checks that none of them can reach a type with staff-only fields.
const NOT_VIEWS: [&str; 13] = [
    "login",
    "portalLogin",
    "registerPortalAccount",
    "requestPasswordReset",
    "resetPassword",
    "logout",
    "changePassword",
    "sync",
    "requestContactCode",
    "confirmContact",
    "startPortalSignUp",
    "requestEmailChange",
    "confirmEmailChange",
];

/// Nesting below a root field (the server allows 12 levels in all).
const MAX_NESTING: usize = 9;

const INTROSPECTION: &str = "
{ __schema { queryType { name } mutationType { name }
    types { name fields { name args { name defaultValue type { ...T } } type { ...T } } } } }
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
";

// ------------------------------------------------------------------ schema

/// The served schema, by introspection.
struct Schema {
    types: BTreeMap<String, Value>,
    query: String,
    mutation: String,
}

impl Schema {
    async fn introspect(app: &TestApp, token: &str) -> Self {
        let r = app.gql(Some(token), INTROSPECTION, json!({})).await;
        let s = data(&r, "/data/__schema");
        Schema {
            types: s["types"]
                .as_array()
                .expect("types")
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_string(),
                        t.clone(),
                    )
                })
                .collect(),
            query: text(&r, "/data/__schema/queryType/name"),
            mutation: text(&r, "/data/__schema/mutationType/name"),
        }
    }

    fn fields(&self, ty: &str) -> &[Value] {
        self.types[ty]["fields"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    /// The named type a root field answers with.
    fn root_type(&self, keyword: &str, field: &str) -> String {
        let root = if keyword == "query" {
            &self.query
        } else {
            &self.mutation
        };
        let f = self
            .fields(root)
            .iter()
            .find(|f| f["name"] == field)
            .unwrap_or_else(|| panic!("no {keyword} field `{field}` is served"));
        named(&f["type"]).1.to_string()
    }

    /// The object types reachable from `ty` (itself included).
    fn reachable(&self, ty: &str, out: &mut BTreeSet<String>) {
        if !self.types[ty]["fields"].is_array() || !out.insert(ty.to_string()) {
            return;
        }
        for f in self.fields(ty) {
            self.reachable(named(&f["type"]).1, out);
        }
    }

    /// Every field of `ty` and, for object fields, of what they answer with: all but fields
    /// with a required argument, and a type already on the way down (no cycles). Lists that
    /// page are asked for five items.
    fn select(&self, ty: &str, trail: &mut Vec<String>) -> Vec<Sel> {
        let mut out = Vec::new();
        for f in self.fields(ty) {
            let args = f["args"].as_array().map_or(&[][..], Vec::as_slice);
            if args.iter().any(required) {
                continue;
            }
            let (kind, target) = named(&f["type"]);
            let children = match kind {
                "SCALAR" | "ENUM" => Vec::new(),
                "OBJECT" if trail.len() < MAX_NESTING && !trail.iter().any(|t| t == target) => {
                    trail.push(target.to_string());
                    let c = self.select(target, trail);
                    trail.pop();
                    if c.is_empty() {
                        continue;
                    }
                    c
                }
                _ => continue,
            };
            out.push(Sel {
                owner: ty.to_string(),
                name: f["name"].as_str().unwrap_or_default().to_string(),
                paged: args.iter().any(|a| a["name"] == "first"),
                children,
            });
        }
        out
    }
}

/// Non-null without a default.
fn required(arg: &Value) -> bool {
    arg["type"]["kind"] == "NON_NULL" && arg["defaultValue"].is_null()
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

/// One selected field.
#[derive(Debug, Clone)]
struct Sel {
    /// The type that declares it.
    owner: String,
    name: String,
    /// Takes `first` (asked with `first: 5`).
    paged: bool,
    children: Vec<Sel>,
}

fn render(sels: &[Sel]) -> String {
    let inner: Vec<String> = sels
        .iter()
        .map(|s| {
            let args = if s.paged { "(first: 5)" } else { "" };
            if s.children.is_empty() {
                format!("{}{args}", s.name)
            } else {
                format!("{}{args} {}", s.name, render(&s.children))
            }
        })
        .collect();
    format!("{{ {} }}", inner.join(" "))
}

/// Removes the field at `path` (field names, list indices left out): its `Type.field`.
fn remove(sels: &mut Vec<Sel>, path: &[&str]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let i = sels.iter().position(|s| s.name == *first)?;
    if rest.is_empty() {
        let s = sels.remove(i);
        return Some(format!("{}.{}", s.owner, s.name));
    }
    remove(&mut sels[i].children, rest)
}

/// Every `Type.field` in a selection.
fn answered(sels: &[Sel], out: &mut BTreeSet<String>) {
    for s in sels {
        out.insert(format!("{}.{}", s.owner, s.name));
        answered(&s.children, out);
    }
}

/// Object keys in `v` that carry a value, with where they were found.
fn keys_with_values(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if INTERNAL_KEYS.contains(&k.as_str()) && !x.is_null() {
                    out.push(format!("{at}/{k} = {x}"));
                }
                keys_with_values(x, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                keys_with_values(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

// ------------------------------------------------------------------ roles

/// The operations docs/api.md's Roles table lets a portal customer call (subscriptions
/// left out: they are WebSocket, and `conversation` carries chat messages only).
fn portal_operations() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
    let doc = std::fs::read_to_string(path).expect("read docs/api.md");
    let rows: Vec<&str> = doc
        .lines()
        .skip_while(|l| l.trim() != "## Roles")
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .skip(2)
        .collect();
    assert!(!rows.is_empty(), "no Roles table in {path}");
    let mut ops = BTreeSet::new();
    for row in rows {
        let cells: Vec<&str> = row
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(cells.len(), 6, "a Roles row without six cells: {row}");
        if cells[0].starts_with("subscription") || !matches!(cells[4], "✓" | "own only") {
            continue;
        }
        ops.extend(cells[0].split('`').skip(1).step_by(2).map(str::to_string));
    }
    ops
}

// ------------------------------------------------------------------ roots

/// A portal operation as the customer calls it.
struct Root {
    keyword: &'static str,
    field: &'static str,
    /// Arguments, e.g. `(id: $id)`.
    call: String,
    /// Variable declarations, e.g. `($id: ID!)`.
    decls: String,
    vars: Value,
}

fn query(field: &'static str, call: &str, decls: &str, vars: Value) -> Root {
    Root {
        keyword: "query",
        field,
        call: call.into(),
        decls: decls.into(),
        vars,
    }
}

/// A mutation taking `input: {ty}!`; the input gets an idempotency key of its own.
fn mutation(field: &'static str, ty: &str, mut input: Value) -> Root {
    input["idempotencyKey"] = json!(format!("portal-views-{field}"));
    Root {
        keyword: "mutation",
        field,
        call: "(input: $i)".into(),
        decls: format!("($i: {ty}!)"),
        vars: json!({ "i": input }),
    }
}

/// What the customer's session saw of one operation.
#[derive(Default)]
struct Seen {
    refused: BTreeSet<String>,
    answered: BTreeSet<String>,
    problems: Vec<String>,
}

/// Calls `root` with every reachable field, dropping refused ones, until it answers cleanly.
async fn view(app: &TestApp, token: &str, schema: &Schema, root: &Root, seen: &mut Seen) {
    let ty = schema.root_type(root.keyword, root.field);
    // An object answer gets every field; a scalar one (none today) no selection.
    let mut sels = if schema.types[&ty]["fields"].is_array() {
        schema.select(&ty, &mut vec![ty.clone()])
    } else {
        Vec::new()
    };
    for _ in 0..8 {
        let selection = if sels.is_empty() {
            String::new()
        } else {
            render(&sels)
        };
        let q = format!(
            "{}{} {{ {}{} {selection} }}",
            root.keyword, root.decls, root.field, root.call
        );
        let r = app.gql(Some(token), &q, root.vars.clone()).await;
        let raw = r.to_string();
        for secret in [TAG, NOTE, LOSS] {
            if raw.contains(secret) {
                seen.problems.push(format!(
                    "{}: the answer holds {secret:?}: {raw}",
                    root.field
                ));
            }
        }
        let mut leaked = Vec::new();
        keys_with_values(&r["data"], "data", &mut leaked);
        if !leaked.is_empty() {
            seen.problems
                .push(format!("{}: internal values {leaked:?}", root.field));
        }
        let errors = r["errors"].as_array().cloned().unwrap_or_default();
        if errors.is_empty() {
            assert!(
                !r["data"][root.field].is_null(),
                "{} answered nothing: {r}",
                root.field
            );
            answered(&sels, &mut seen.answered);
            return;
        }
        for e in &errors {
            let path: Vec<&str> = e["path"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .skip(1)
                .collect();
            assert!(
                e["extensions"]["code"] == "FORBIDDEN" && !path.is_empty(),
                "{} as the portal customer: {e}\nquery: {q}",
                root.field
            );
            // The same field in several list items (or under `edges` and `nodes`) is
            // refused once per place; it is removed the first time.
            if let Some(field) = remove(&mut sels, &path) {
                seen.refused.insert(field);
            }
        }
    }
    panic!("{} kept refusing fields", root.field);
}

// ------------------------------------------------------------------ setup

async fn staff(app: &TestApp, admin: &str, mutation: &str, ty: &str, input: Value) -> Value {
    let r = app
        .gql(
            Some(admin),
            &format!("mutation($i: {ty}!) {{ {mutation} }}"),
            json!({ "i": input }),
        )
        .await;
    assert!(r.get("errors").is_none(), "{mutation}: {r}");
    r
}

/// An opportunity for `customer` whose offer was sent; its id.
async fn sent_offer(app: &TestApp, admin: &str, customer: &str, title: &str) -> String {
    let o = staff(
        app,
        admin,
        "createOpportunity(input: $i) { opportunity { id } }",
        "CreateOpportunityInput",
        json!({"customerId": customer, "title": title, "valueCents": 98_765}),
    )
    .await;
    let id = text(&o, "/data/createOpportunity/opportunity/id");
    staff(
        app,
        admin,
        "configureAutoOffer(input: $i) { position }",
        "ConfigureAutoOfferInput",
        json!({"id": id, "percentOff": 15, "expiresAt": "2030-01-01T00:00:00Z"}),
    )
    .await;
    staff(
        app,
        admin,
        "sendOffer(input: $i) { position }",
        "SendOfferInput",
        json!({"id": id, "channel": "EMAIL"}),
    )
    .await;
    id
}

async fn booked_job(app: &TestApp, admin: &str, customer: &str, day: u32) -> String {
    let j = staff(
        app,
        admin,
        "bookJob(input: $i) { job { id } }",
        "BookJobInput",
        json!({"customerId": customer, "services": ["carpet cleaning"],
            "start": format!("2030-02-{day:02}T15:00:00Z"), "end": format!("2030-02-{day:02}T17:00:00Z")}),
    )
    .await;
    text(&j, "/data/bookJob/job/id")
}

async fn a_portal_customer_sees_none_of_what_staff_keep_about_them(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let reg = app
        .sign_up(json!({"name": "Ada Lovelace", "email": "ada@example.com", "password": "a-long-portal-pass"}))
        .await;
    let ada = text(&reg, "/data/registerPortalAccount/token");
    let me = text(
        &app.gql(Some(&ada), "{ viewer { id } }", json!({})).await,
        "/data/viewer/id",
    );

    // What staff keep about Ada.
    staff(
        &app,
        &admin,
        "tagCustomer(input: $i) { position }",
        "TagCustomerInput",
        json!({"id": me, "tag": TAG}),
    )
    .await;
    for _ in 0..3 {
        staff(
            &app,
            &admin,
            "addCustomerNote(input: $i) { position }",
            "AddCustomerNoteInput",
            json!({"id": me, "text": NOTE}),
        )
        .await;
    }
    staff(
        &app,
        &admin,
        "setMarketingConsent(input: $i) { position }",
        "MarketingConsentInput",
        json!({"id": me, "channel": "EMAIL", "granted": true}),
    )
    .await;
    let lost = sent_offer(&app, &admin, &me, "Sofa refresh").await;
    staff(
        &app,
        &admin,
        "loseOpportunity(input: $i) { position }",
        "LoseOpportunityInput",
        json!({"id": lost, "reason": LOSS}),
    )
    .await;
    let open = sent_offer(&app, &admin, &me, "Rug rescue").await;
    let moved = booked_job(&app, &admin, &me, 1).await;
    let cancelled = booked_job(&app, &admin, &me, 2).await;
    staff(
        &app,
        &admin,
        "awardLoyaltyPoints(input: $i) { position }",
        "AwardLoyaltyPointsInput",
        json!({"customerId": me, "points": 100, "reason": "welcome"}),
    )
    .await;
    let chat = app.gql(Some(&ada),
        "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } } }",
        json!({"i": {"text": "Can you clean a wool rug?"}}),
    )
    .await;
    let chat = text(&chat, "/data/startConversation/conversation/id");
    staff(
        &app,
        &admin,
        "detectConversationIntent(input: $i) { position }",
        "DetectConversationIntentInput",
        json!({"conversationId": chat, "intent": "BOOK", "confidencePercent": 87}),
    )
    .await;
    staff(
        &app,
        &admin,
        "addConversationMessage(input: $i) { position }",
        "AddConversationMessageInput",
        json!({"conversationId": chat, "text": "Yes, we can."}),
    )
    .await;
    // Staff still read all of it.
    let r = app
        .gql(
            Some(&admin),
            "query($id: ID!) { customer(id: $id) { tags noteCount } }",
            json!({"id": me}),
        )
        .await;
    assert_eq!(
        data(&r, "/data/customer"),
        &json!({"tags": [TAG], "noteCount": 3})
    );

    // Every portal operation, as Ada.
    let id = |v: &str| json!({ "id": v });
    let roots = [
        query("viewer", "", "", json!({})),
        query("health", "", "", json!({})),
        query("version", "", "", json!({})),
        query("myProfile", "", "", json!({})),
        query("myJobs", "(first: 5)", "", json!({})),
        query("myConversations", "(first: 5)", "", json!({})),
        query("customer", "(id: $id)", "($id: ID!)", id(&me)),
        query("job", "(id: $id)", "($id: ID!)", id(&moved)),
        query("loyaltyAccount", "(customerId: $id)", "($id: ID!)", id(&me)),
        query("conversation", "(id: $id)", "($id: ID!)", id(&chat)),
        mutation(
            "updateMyProfile",
            "UpdateMyProfileInput",
            json!({"name": "Ada Lovelace"}),
        ),
        mutation(
            "setMyMarketingConsent",
            "MyMarketingConsentInput",
            json!({"channel": "EMAIL", "granted": true}),
        ),
        Root {
            keyword: "mutation",
            field: "myReferralCode",
            call: String::new(),
            decls: String::new(),
            vars: json!({}),
        },
        mutation(
            "redeemLoyaltyPoints",
            "RedeemLoyaltyPointsInput",
            json!({"points": 10, "reward": "free deodorizer"}),
        ),
        mutation(
            "bookServiceOnline",
            "BookServiceOnlineInput",
            json!({"services": ["upholstery"]}),
        ),
        mutation(
            "rescheduleMyBooking",
            "RescheduleJobInput",
            json!({"jobId": moved, "start": "2030-03-01T15:00:00Z", "end": "2030-03-01T17:00:00Z"}),
        ),
        mutation(
            "cancelMyBooking",
            "CancelJobInput",
            json!({"jobId": cancelled, "reason": "moving house"}),
        ),
        mutation("recordOfferViewed", "OpportunityRefInput", id(&lost)),
        mutation("acceptOffer", "OpportunityRefInput", id(&open)),
        mutation(
            "submitReview",
            "SubmitReviewInput",
            json!({"rating": 5, "comment": "Spotless"}),
        ),
        mutation(
            "startConversation",
            "StartConversationInput",
            json!({"text": "And a sofa?"}),
        ),
        mutation(
            "addConversationMessage",
            "AddConversationMessageInput",
            json!({"conversationId": chat, "text": "Thanks!"}),
        ),
        mutation(
            "handOffConversation",
            "ConversationRefInput",
            json!({"conversationId": chat}),
        ),
        mutation(
            "closeConversation",
            "ConversationRefInput",
            json!({"conversationId": chat}),
        ),
    ];

    // Every portal operation of the Roles table is here, or answers about the sign-in only.
    let called: BTreeSet<String> = roots.iter().map(|r| r.field.to_string()).collect();
    let missing: Vec<String> = portal_operations()
        .into_iter()
        .filter(|op| !called.contains(op) && !NOT_VIEWS.contains(&op.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "portal operations of docs/api.md's Roles table that this test does not call: {missing:?}"
    );

    let schema = Schema::introspect(&app, &ada).await;
    let guarded: BTreeSet<&str> = STAFF_ONLY
        .iter()
        .filter_map(|f| f.split('.').next())
        .collect();
    for op in NOT_VIEWS {
        let Some(keyword) = ["query", "mutation"].into_iter().find(|kw| {
            let root = if *kw == "query" {
                &schema.query
            } else {
                &schema.mutation
            };
            schema.fields(root).iter().any(|f| f["name"] == op)
        }) else {
            continue;
        };
        let mut types = BTreeSet::new();
        schema.reachable(&schema.root_type(keyword, op), &mut types);
        assert!(
            types.iter().all(|t| !guarded.contains(t.as_str())),
            "{op} is not checked as a portal view but reaches {types:?}"
        );
    }
    let mut seen = Seen::default();
    for root in &roots {
        view(&app, &ada, &schema, root, &mut seen).await;
    }
    assert!(seen.problems.is_empty(), "{}", seen.problems.join("\n"));
    let expected: BTreeSet<String> = STAFF_ONLY.iter().map(|s| (*s).to_string()).collect();
    assert_eq!(
        seen.refused, expected,
        "the fields refused to the portal are not exactly the staff-only ones"
    );
    let both: Vec<&String> = seen.answered.intersection(&expected).collect();
    assert!(both.is_empty(), "staff-only fields answered: {both:?}");
    // The portal's own fields did answer (a sample of each type).
    for f in [
        "Customer.name",
        "Customer.loyaltyPoints",
        "Job.status",
        "Opportunity.offerStatus",
        "Opportunity.title",
        "Conversation.status",
        "ChatMessage.text",
        "LoyaltyAccount.balance",
    ] {
        assert!(seen.answered.contains(f), "{f} did not answer the portal");
    }
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(a_portal_customer_sees_none_of_what_staff_keep_about_them);

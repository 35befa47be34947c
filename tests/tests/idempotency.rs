//! Concurrent retries with one idempotency key get the first outcome, for
//! every create that takes a key, over HTTP on both engines.
//!
//! A client that times out and retries, or a double-clicked button, sends the
//! same create several times at once. Ids of creates derive from the key and
//! its sender, so all the copies address one aggregate: one creates it, the
//! others find its outcome. All 50 answers must be that outcome (the same
//! position), none an error, and exactly one aggregate must exist.

use serde_json::{json, Value};
use tests::app::{data, TestApp};
use tests::{Engine, TestDb};

const COPIES: usize = 50;

async fn gql(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send").json().await.expect("json")
}

/// How many events of `event_type` the log holds (admins' event log).
async fn count(client: &reqwest::Client, url: &str, admin: &str, event_type: &str) -> usize {
    let r = gql(
        client,
        url,
        Some(admin),
        "query($t: [String!]) { eventLog(eventTypes: $t, first: 500) { nodes { aggregateId } } }",
        json!({"t": [event_type]}),
    )
    .await;
    data(&r, "/data/eventLog/nodes")
        .as_array()
        .expect("nodes")
        .len()
}

async fn concurrent_retries_with_one_key_get_the_first_outcome(engine: Engine) {
    let db = TestDb::new(engine).await;
    // Behind a proxy on this machine: each sign-up copy below comes from its own address.
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    let admin = app.login_admin().await;
    // The concurrent copies below each need their own handle on the client.
    let client = reqwest::Client::new();
    let url = app.server.url.clone();
    let c = gql(
        &client,
        &url,
        Some(&admin),
        "mutation { createCustomer(input: {name: \"Ada Lovelace\"}) { customer { id } } }",
        json!({}),
    )
    .await;
    let customer = data(&c, "/data/createCustomer/customer/id")
        .as_str()
        .expect("id")
        .to_string();
    let reg = app
        .sign_up(json!({"name": "Grace Hopper", "email": "grace@example.com", "password": "cobol-forever-59"}))
        .await;
    let portal = data(&reg, "/data/registerPortalAccount/token")
        .as_str()
        .expect("token")
        .to_string();

    // (mutation, its input without the key, who sends it, the event that creates).
    let creates: Vec<(&str, Value, &str, &str)> = vec![
        (
            "createCustomer",
            json!({"name": "Concurrent Carl"}),
            &admin,
            "CustomerCreated",
        ),
        (
            "bookJob",
            json!({"customerId": customer, "services": ["Carpet cleaning"]}),
            &admin,
            "JobBooked",
        ),
        (
            "registerVehicle",
            json!({"name": "Van 2", "plate": "ABC-123"}),
            &admin,
            "VehicleRegistered",
        ),
        (
            "createOpportunity",
            json!({"customerId": customer, "title": "Whole house", "valueCents": 45000}),
            &admin,
            "OpportunityCreated",
        ),
        (
            "createPromotion",
            json!({"name": "Spring", "channel": "EMAIL", "template": "Spring is here",
            "startsAt": "2027-03-01T00:00:00Z", "endsAt": "2027-03-31T00:00:00Z"}),
            &admin,
            "PromotionCreated",
        ),
        (
            "defineScheduledReport",
            json!({"name": "Monday figures", "metrics": ["REVENUE"], "period": "WEEKLY",
            "recipients": ["owner@dirtfree.example"], "cron": "0 8 * * 1"}),
            &admin,
            "ScheduledReportDefined",
        ),
        (
            "startConversation",
            json!({"customerId": customer, "text": "Hello from the office"}),
            &admin,
            "ConversationStarted",
        ),
        (
            "createStaffUser",
            json!({"email": "tech@dirtfree.example", "name": "Terry Tech", "role": "STAFF",
            "password": "steam-cleaner-42"}),
            &admin,
            "StaffUserInvited",
        ),
        (
            "bookServiceOnline",
            json!({"services": ["Upholstery"]}),
            &portal,
            "JobBooked",
        ),
        (
            "submitReview",
            json!({"rating": 5, "comment": "Spotless"}),
            &portal,
            "ReviewReceived",
        ),
    ];
    let mut problems = Vec::new();
    for (mutation, input, token, event_type) in creates {
        let before = count(&client, &url, &admin, event_type).await;
        let mut input = input;
        input["idempotencyKey"] = json!(format!("double-click-{mutation}"));
        let query = format!(
            "mutation($i: {}Input!) {{ {mutation}(input: $i) {{ position }} }}",
            upper_first(mutation)
        );
        let answers = futures::future::join_all((0..COPIES).map(|_| {
            let (client, url, query, input, token) = (
                client.clone(),
                url.clone(),
                query.clone(),
                input.clone(),
                token.to_string(),
            );
            tokio::spawn(async move {
                gql(&client, &url, Some(&token), &query, json!({"i": input})).await
            })
        }))
        .await;
        // The answer itself: `extensions.cost` counts each copy's own work.
        let answers: Vec<Value> = answers
            .into_iter()
            .map(|a| {
                let a = a.expect("request task");
                json!({"data": a["data"], "errors": a["errors"]})
            })
            .collect();
        let first = &answers[0];
        let differing: Vec<&Value> = answers.iter().filter(|a| *a != first).collect();
        if !first["errors"].is_null() || !differing.is_empty() {
            problems.push(format!(
                "{mutation}: {} of {COPIES} answers differ from the first ({first}), e.g. {:?}",
                differing.len(),
                differing.first()
            ));
        }
        let created = count(&client, &url, &admin, event_type).await - before;
        if created != 1 {
            problems.push(format!("{mutation}: {created} {event_type} events, not 1"));
        }
    }

    // A sign-up answers a session: each copy its own token, all for one customer.
    let before = (
        count(&client, &url, &admin, "CustomerCreated").await,
        count(&client, &url, &admin, "PortalAccountRegistered").await,
    );
    let register = "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { customerId token } }";
    let started = app
        .gql(
            None,
            tests::standins::START_SIGN_UP,
            json!({"i": {"email": "Kay@Example.com"}}),
        )
        .await;
    assert_eq!(data(&started, "/data/startPortalSignUp/accepted"), true);
    let code = app.mailbox.code_for("kay@example.com").await;
    let input = json!({"name": "Kay Keyed", "email": "Kay@Example.com", "password": "keyed-password-1",
        "code": code, "idempotencyKey": "double-click-registerPortalAccount"});
    // A replay is a sign-in (limited per network like portalLogin): a double-click from one
    // network is a few copies; fifty come from fifty.
    let answers = futures::future::join_all((0..COPIES).map(|i| {
        let (client, url, input) = (client.clone(), url.clone(), input.clone());
        tokio::spawn(async move {
            client
                .post(&url)
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .json(&json!({ "query": register, "variables": {"i": input} }))
                .send()
                .await
                .expect("send")
                .json::<Value>()
                .await
                .expect("json")
        })
    }))
    .await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|a| {
            let a = a.as_ref().expect("request task");
            match a["data"]["registerPortalAccount"]["customerId"].as_str() {
                Some(id) if a["errors"].is_null() => id.to_string(),
                _ => format!("error: {a}"),
            }
        })
        .collect();
    if ids.len() != 1 {
        problems.push(format!("registerPortalAccount: answers {ids:?}"));
    }
    let after = (
        count(&client, &url, &admin, "CustomerCreated").await,
        count(&client, &url, &admin, "PortalAccountRegistered").await,
    );
    if (after.0 - before.0, after.1 - before.1) != (1, 1) {
        problems.push(format!(
            "registerPortalAccount: {before:?} customers and accounts before, {after:?} after"
        ));
    }
    // The key with another password is another request: no session.
    let mut other = input.clone();
    other["password"] = json!("someone-elses-password");
    let r = gql(&client, &url, None, register, json!({"i": other})).await;
    if r["errors"][0]["extensions"]["code"] != "IDEMPOTENCY_KEY_REUSED" {
        problems.push(format!("registerPortalAccount, other password: {r}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    tests::health::assert_no_failures(&app.server.base).await;
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

tests::on_both_engines!(concurrent_retries_with_one_key_get_the_first_outcome);

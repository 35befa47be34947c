//! Dispatch (issue #18), over HTTP against the server process on both engines: staff read
//! what was written about a customer, and a manager sees whom a job can be assigned to.

use serde_json::{json, Value};
use tests::app::{data, text, TestApp, ADMIN};
use tests::{Engine, TestDb};

const NOTES: &str = "query($c: ID!, $first: Int, $after: String) {
    customerNotes(customerId: $c, first: $first, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } nodes { text author authorId at } } }";

fn code(v: &Value) -> &str {
    v.pointer("/errors/0/extensions/code")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Creates a staff user; returns (id, token).
async fn staff_user(
    app: &TestApp,
    admin: &str,
    email: &str,
    name: &str,
    role: &str,
) -> (String, String) {
    let password = "a long enough password";
    let r = app
        .gql(
            Some(admin),
            "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } position } }",
            json!({"i": {"email": email, "name": name, "role": role, "password": password}}),
        )
        .await;
    app.sync(admin, &text(&r, "/data/createStaffUser/position"))
        .await;
    let id = text(&r, "/data/createStaffUser/staffUser/id");
    (id, app.login((email, password)).await)
}

async fn notes(
    app: &TestApp,
    token: &str,
    customer: &str,
    first: i64,
    after: Option<&str>,
) -> Value {
    app.gql(
        Some(token),
        NOTES,
        json!({"c": customer, "first": first, "after": after}),
    )
    .await
}

async fn staff_read_a_customers_notes_newest_first_until_the_customer_is_erased(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let (tech, tech_token) =
        staff_user(&app, &admin, "tech@dirtfree.example", "Tess Tech", "STAFF").await;
    let r = app
        .gql(
            Some(&tech_token),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({"i": {"name": "Nora Notes", "email": "nora@example.com"}}),
        )
        .await;
    let customer = text(&r, "/data/createCustomer/customer/id");
    // Notes as people write them: quotes, markup, other scripts, a line break, the longest allowed.
    let written = [
        "Has a dog; use the side door.".to_string(),
        "Said \"don't call before 9\" <b>twice</b> — ☎️ 日本語\nSecond line".to_string(),
        "x".repeat(5_000),
    ];
    let mut position = String::new();
    for note in &written {
        let r = app
            .gql(
                Some(&tech_token),
                "mutation($i: AddCustomerNoteInput!) { addCustomerNote(input: $i) { position } }",
                json!({"i": {"id": customer, "text": note}}),
            )
            .await;
        position = text(&r, "/data/addCustomerNote/position");
    }
    app.sync(&tech_token, &position).await;

    // Newest first, a page at a time, each with who wrote it and when.
    let first = notes(&app, &tech_token, &customer, 2, None).await;
    assert_eq!(data(&first, "/data/customerNotes/totalCount"), 3, "{first}");
    assert_eq!(
        data(&first, "/data/customerNotes/pageInfo/hasNextPage"),
        true
    );
    let nodes = data(&first, "/data/customerNotes/nodes")
        .as_array()
        .expect("nodes");
    assert_eq!(nodes[0]["text"], written[2].as_str());
    assert_eq!(nodes[1]["text"], written[1].as_str());
    for n in nodes {
        assert_eq!(n["author"], "STAFF", "{n}");
        assert_eq!(n["authorId"], tech.as_str(), "{n}");
        let at = n["at"].as_str().expect("at");
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    }
    let cursor = text(&first, "/data/customerNotes/pageInfo/endCursor");
    let rest = notes(&app, &tech_token, &customer, 2, Some(&cursor)).await;
    let nodes = data(&rest, "/data/customerNotes/nodes")
        .as_array()
        .expect("nodes");
    assert_eq!(nodes.len(), 1, "{rest}");
    assert_eq!(nodes[0]["text"], written[0].as_str());
    // A malformed id is a clear error naming the argument.
    let bad = notes(&app, &tech_token, "not-an-id", 5, None).await;
    assert_eq!(code(&bad), "VALIDATION", "{bad}");
    assert_eq!(
        bad.pointer("/errors/0/extensions/field")
            .and_then(Value::as_str),
        Some("customerId"),
        "{bad}"
    );

    // Erased: nothing of what was written stays readable.
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: EraseCustomerInput!) { eraseCustomer(input: $i) { position } }",
            json!({"i": {"id": customer, "reason": "customer asked"}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/eraseCustomer/position"))
        .await;
    let gone = notes(&app, &tech_token, &customer, 10, None).await;
    assert_eq!(data(&gone, "/data/customerNotes/totalCount"), 0, "{gone}");
    tests::health::assert_no_failures(&app.server.base).await;
}

async fn a_manager_lists_the_active_staff_to_assign_and_staff_may_not(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let (_, manager) = staff_user(
        &app,
        &admin,
        "mia@dirtfree.example",
        "Mia Manager",
        "MANAGER",
    )
    .await;
    let (tech, tech_token) =
        staff_user(&app, &admin, "ted@dirtfree.example", "Ted Tech", "STAFF").await;
    let (gone, _) = staff_user(&app, &admin, "gus@dirtfree.example", "Gus Gone", "STAFF").await;
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: DeactivateStaffUserInput!) { deactivateStaffUser(input: $i) { position } }",
            json!({"i": {"staffUserId": gone}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/deactivateStaffUser/position"))
        .await;

    let query = "{ activeStaff(first: 50) { totalCount nodes { id name role } } }";
    let r = app.gql(Some(&manager), query, json!({})).await;
    let listed: Vec<(String, String)> = data(&r, "/data/activeStaff/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let owner_name = data(
        &app.gql(
            Some(&admin),
            "{ staffUsers { nodes { email name } } }",
            json!({}),
        )
        .await,
        "/data/staffUsers/nodes",
    )
    .as_array()
    .expect("staff")
    .iter()
    .find(|u| u["email"] == ADMIN.0)
    .map(|u| u["name"].as_str().unwrap_or("").to_string())
    .expect("the owner is a staff user");
    let mut expected = vec![
        ("Mia Manager".to_string(), "MANAGER".to_string()),
        ("Ted Tech".to_string(), "STAFF".to_string()),
        (owner_name, "ADMIN".to_string()),
    ];
    expected.sort();
    assert_eq!(
        listed, expected,
        "active staff by name, the deactivated one left out: {r}"
    );
    assert_eq!(data(&r, "/data/activeStaff/totalCount"), 3);
    let ids: Vec<&str> = data(&r, "/data/activeStaff/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert!(
        ids.contains(&tech.as_str()) && !ids.contains(&gone.as_str()),
        "{r}"
    );

    let refused = app.gql(Some(&tech_token), query, json!({})).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    staff_read_a_customers_notes_newest_first_until_the_customer_is_erased,
    a_manager_lists_the_active_staff_to_assign_and_staff_may_not,
);

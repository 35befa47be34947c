//! What one request may cost, over HTTP against the server process on both engines:
//! hostile shapes are refused before any work with their cost named, the server's
//! memory stays flat, and a page of customers with their jobs is a handful of
//! read-model statements (`extensions.cost.statements`), not one per customer.

use serde_json::json;
use tests::app::{data, TestApp};
use tests::{Engine, TestDb};

async fn hostile_shapes_are_refused_before_any_work_and_pages_cost_a_handful_of_statements(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;

    // 50 customers with two jobs each.
    let mut last = String::new();
    for i in 0..50 {
        let c = app.gql(Some(&admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({"i": {"name": format!("Customer {i:02}")}}),
        )
        .await;
        let id = data(&c, "/data/createCustomer/customer/id")
            .as_str()
            .expect("id")
            .to_string();
        for service in ["Carpet", "Upholstery"] {
            let j = app
                .gql(
                    Some(&admin),
                    "mutation($i: BookJobInput!) { bookJob(input: $i) { position } }",
                    json!({"i": {"customerId": id, "services": [service]}}),
                )
                .await;
            last = data(&j, "/data/bookJob/position")
                .as_str()
                .expect("position")
                .to_string();
        }
    }
    let synced = app
        .gql(
            Some(&admin),
            "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
            json!({"p": last}),
        )
        .await;
    assert_eq!(data(&synced, "/data/sync"), true);

    // A page of 50 customers with their jobs: a handful of statements, whatever the page size.
    let page = app.gql(Some(&admin),
        "{ customers(first: 50) { nodes { id jobs(first: 10) { totalCount nodes { id services } } } } }",
        json!({}),
    )
    .await;
    let nodes = data(&page, "/data/customers/nodes")
        .as_array()
        .expect("nodes");
    assert_eq!(nodes.len(), 50);
    assert!(nodes.iter().all(|n| n["jobs"]["totalCount"] == 2), "{page}");
    let statements = page["extensions"]["cost"]["statements"]
        .as_u64()
        .expect("cost.statements");
    println!("a page of 50 customers with their jobs: {statements} read-model statements");
    // The session, the count, the page and the loader's batch (a busy machine may split
    // the batch in a few): a bound that does not grow with the page, where one query per
    // customer was 102.
    assert!(
        statements <= 10,
        "{statements} statements for one page: {page}"
    );

    // Staff: customers × jobs × aliases is refused before any work, with its cost.
    let aliases: String = (0..20)
        .map(|i| format!("a{i}: customers(first: 100) {{ nodes {{ jobs(first: 100) {{ nodes {{ id }} }} }} }} "))
        .collect();
    let costly_query = format!("{{ {aliases} }}");
    let costly = app.gql(Some(&admin), &costly_query, json!({})).await;
    assert_eq!(
        costly["errors"][0]["extensions"]["code"], "QUERY_TOO_COSTLY",
        "{costly}"
    );
    assert!(
        costly["errors"][0]["extensions"]["value"].as_u64() > Some(10_000),
        "{costly}"
    );
    assert_eq!(
        costly["extensions"]["cost"]["statements"], 0,
        "work was done: {costly}"
    );

    // A portal customer: 125 aliases of every conversation with every message.
    let reg = app.gql(None, "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token } }",
        json!({"i": {"name": "Mallory", "email": "mallory@example.com", "password": "not-a-real-pass-1"}})).await;
    let portal = data(&reg, "/data/registerPortalAccount/token")
        .as_str()
        .expect("token")
        .to_string();
    for _ in 0..3 {
        let c = app.gql(Some(&portal),
            "mutation($i: StartConversationInput!) { startConversation(input: $i) { position } }",
            json!({"i": {"text": "hello"}}),
        )
        .await;
        data(&c, "/data/startConversation/position");
    }
    let aliases: String = (0..125)
        .map(|i| format!("c{i}: myConversations(first: 100) {{ nodes {{ messages {{ nodes {{ text }} }} }} }} "))
        .collect();
    // Memory, measured around 20 more of each once both were seen (sign-up's argon2 and
    // the first parse allocate what the allocator keeps).
    let conversations = format!("{{ {aliases} }}");
    let r = app.gql(Some(&portal), &conversations, json!({})).await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "QUERY_TOO_COSTLY",
        "{r}"
    );
    let before = app.server.rss_kib();
    for _ in 0..20 {
        let again = app.gql(Some(&admin), &costly_query, json!({})).await;
        assert_eq!(
            again["errors"][0]["extensions"]["code"], "QUERY_TOO_COSTLY",
            "{again}"
        );
        let r = app.gql(Some(&portal), &conversations, json!({})).await;
        assert_eq!(
            r["errors"][0]["extensions"]["code"], "QUERY_TOO_COSTLY",
            "{r}"
        );
        assert_eq!(
            r["extensions"]["cost"]["statements"], 0,
            "work was done: {r}"
        );
    }
    let after = app.server.rss_kib();
    println!("server memory before the hostile queries {before} KiB, after {after} KiB");
    assert!(before > 0, "cannot read the server's memory");
    assert!(
        after < before + 10 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    hostile_shapes_are_refused_before_any_work_and_pages_cost_a_handful_of_statements
);

//! What one request may cost, over HTTP against the server process on both engines:
//! hostile shapes are refused before any work with their cost named, the server's
//! memory stays flat, and a page of customers with their jobs is a handful of
//! read-model statements (`extensions.cost.statements`), not one per customer.

use serde_json::{json, Value};
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
    let reg = app
        .sign_up(json!({"name": "Mallory", "email": "mallory@example.com", "password": "not-a-real-pass-1"}))
        .await;
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

/// Jobs of the customer with many.
const MANY: usize = 1_000;
/// Aliases of one page in the memory check (5 fields each, within the 500-field limit).
const ALIASES: usize = 90;

/// The server's peak resident memory so far, KiB (Linux `/proc/<pid>/status`, `VmHWM`).
fn peak_kib(app: &TestApp) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", app.server.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// `customers(first: 1)` (the customer with many jobs sorts first by name) with one page of
/// their jobs: (the page's ids, totalCount, hasNextPage, hasPreviousPage, the edge cursors).
async fn page_of_jobs(app: &TestApp, admin: &str, args: &str) -> (Vec<String>, Value) {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("({args})")
    };
    let r = app
        .gql(
            Some(admin),
            &format!("{{ customers(first: 1) {{ nodes {{ jobs{args} {{ totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} edges {{ cursor node {{ id }} }} }} }} }} }}"),
            json!({}),
        )
        .await;
    let jobs = data(&r, "/data/customers/nodes/0/jobs").clone();
    let ids = jobs["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("id").to_string())
        .collect();
    (ids, jobs)
}

async fn a_page_of_jobs_reads_its_page_however_many_jobs_the_customer_has(engine: Engine) {
    let db = TestDb::new(engine).await;
    // Before the server starts: a customer with 1,000 jobs, and three with a few.
    {
        use commands::domain::customer::CustomerCommand;
        use commands::domain::ids::{CustomerId, JobId};
        use commands::domain::job::{BookingSource, JobCommand};
        use futures::StreamExt;
        let log = db.log().await;
        let crm = tests::app_support::crm(log.clone());
        let (staff, meta) = (tests::app_support::staff(), tests::app_support::meta());
        for (n, name) in [
            (1u128, "Aaron Many"),
            (2, "Bea Few"),
            (3, "Cy Few"),
            (4, "Di None"),
        ] {
            let id = CustomerId(uuid::Uuid::from_u128(n));
            let create = CustomerCommand::Create {
                customer_id: id,
                name: name.into(),
                email: None,
                phone: None,
                birthday: None,
                customer_since: None,
            };
            crm.customers()
                .execute(id, staff, create, &meta)
                .await
                .expect("create customer");
        }
        let owners = std::iter::repeat_n(1u128, MANY).chain([2, 2, 2, 3, 3]);
        futures::stream::iter(owners.enumerate())
            .for_each_concurrent(8, |(i, owner)| {
                let (crm, meta) = (crm.clone(), meta.clone());
                async move {
                    let job = JobId(uuid::Uuid::from_u128(1_000_000 + i as u128));
                    let book = JobCommand::Book {
                        job_id: job,
                        customer_id: CustomerId(uuid::Uuid::from_u128(owner)),
                        source: BookingSource::Staff,
                        services: vec![format!("service {i}")],
                        window: None,
                    };
                    crm.jobs()
                        .execute(job, staff, book, &meta)
                        .await
                        .expect("book");
                }
            })
            .await;
        log.close().await;
    }
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    // The read models take in the history first.
    tests::health::assert_no_failures(&app.server.base).await;
    let admin = app.login_admin().await;

    // Forwards with first/after, then backwards with last/before: every job once, in one
    // order, each page the size asked, and the page info right.
    let mut forwards = Vec::new();
    let mut after = String::new();
    loop {
        let args = if after.is_empty() {
            "first: 70".to_string()
        } else {
            format!("first: 70, after: \"{after}\"")
        };
        let (ids, page) = page_of_jobs(&app, &admin, &args).await;
        assert_eq!(page["totalCount"], MANY, "{page}");
        let left = MANY - forwards.len();
        assert_eq!(ids.len(), left.min(70), "{args}: {page}");
        assert_eq!(page["pageInfo"]["hasNextPage"], left > 70, "{args}: {page}");
        assert_eq!(
            page["pageInfo"]["hasPreviousPage"],
            !forwards.is_empty(),
            "{args}: {page}"
        );
        forwards.extend(ids);
        if left <= 70 {
            break;
        }
        after = page["pageInfo"]["endCursor"]
            .as_str()
            .expect("cursor")
            .to_string();
    }
    let distinct: std::collections::BTreeSet<&String> = forwards.iter().collect();
    assert_eq!(distinct.len(), MANY, "a job came twice");
    let mut backwards: Vec<String> = Vec::new();
    let mut before = String::new();
    while backwards.len() < MANY {
        let args = if before.is_empty() {
            "last: 45".to_string()
        } else {
            format!("last: 45, before: \"{before}\"")
        };
        let (mut ids, page) = page_of_jobs(&app, &admin, &args).await;
        assert_eq!(
            ids.len(),
            (MANY - backwards.len()).min(45),
            "{args}: {page}"
        );
        ids.extend(backwards);
        backwards = ids;
        before = page["pageInfo"]["startCursor"]
            .as_str()
            .expect("cursor")
            .to_string();
    }
    assert_eq!(backwards, forwards, "backwards and forwards disagree");
    // A page in the middle, and the 50 without first or last.
    let (ids, _) = page_of_jobs(&app, &admin, "first: 3, after: \"499\"").await;
    assert_eq!(ids, forwards[500..503].to_vec());
    let (ids, _) = page_of_jobs(&app, &admin, "").await;
    assert_eq!(ids, forwards[..50].to_vec());
    let (ids, page) = page_of_jobs(&app, &admin, "last: 2, before: \"10\"").await;
    assert_eq!(ids, forwards[8..10].to_vec(), "{page}");

    // The other customers of a page keep their own jobs and counts, the one without any too.
    let r = app
        .gql(
            Some(&admin),
            "{ customers(first: 10) { nodes { name jobs(first: 2) { totalCount nodes { id } } } } }",
            json!({}),
        )
        .await;
    let counts: Vec<(Value, Value, usize)> = data(&r, "/data/customers/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let jobs = n["jobs"]["nodes"].as_array().map_or(0, Vec::len);
            (n["name"].clone(), n["jobs"]["totalCount"].clone(), jobs)
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            (json!("Aaron Many"), json!(MANY), 2),
            (json!("Bea Few"), json!(3), 2),
            (json!("Cy Few"), json!(2), 2),
            (json!("Di None"), json!(0), 0),
        ],
        "{r}"
    );

    // One job of the first customer, asked 90 times in one request: the server reads that
    // page, not the customer's 1,000 jobs once per alias (its peak memory says which: it
    // grew by about 100 MiB when the loader read every job).
    let aliases: String = (0..ALIASES)
        .map(|i| {
            format!(
                "a{i}: customers(first: 1) {{ nodes {{ jobs(first: 1) {{ nodes {{ id }} }} }} }} "
            )
        })
        .collect();
    let query = format!("{{ {aliases} }}");
    let before = peak_kib(&app);
    for _ in 0..3 {
        let r = app.gql(Some(&admin), &query, json!({})).await;
        assert_eq!(
            data(&r, "/data/a89/nodes/0/jobs/nodes/0/id"),
            &json!(forwards[0]),
            "{r}"
        );
    }
    let after = peak_kib(&app);
    println!(
        "{ALIASES} aliases of one job of a customer with {MANY}: peak memory {before} KiB before, {after} KiB after"
    );
    assert!(before > 0, "cannot read the server's memory");
    assert!(
        after < before + 32 * 1024,
        "peak memory grew from {before} KiB to {after} KiB: the jobs were read whole"
    );
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    hostile_shapes_are_refused_before_any_work_and_pages_cost_a_handful_of_statements,
    a_page_of_jobs_reads_its_page_however_many_jobs_the_customer_has,
);

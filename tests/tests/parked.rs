//! A poison event never takes a read model away (sequenced dead letters), over
//! HTTP against the server process, on both engines.
//!
//! The poison is a read-model constraint that refuses one customer's name, as
//! a bug in a projection would: the customers projection cannot apply that
//! customer's events. They are parked (the creation and every later event of
//! that customer, in order), other customers keep appearing in the same read
//! model, and health answers 200 `degraded` with the count, position and
//! error. After the fix, a retry applies the parked events in order; a
//! discard instead drops them, is on record in the audit trail, and a rebuild
//! leaves them out as the live read model does.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::app::{data, TestApp};
use tests::{Engine, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

/// Creates a customer; returns its id and the position of its event.
async fn create_customer(app: &TestApp, token: &str, name: &str) -> (String, String) {
    let r = app.gql(Some(token),
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position customer { id } } }",
        json!({"i": {"name": name, "idempotencyKey": uuid::Uuid::new_v4().to_string()}}),
    )
    .await;
    let position = data(&r, "/data/createCustomer/position")
        .as_str()
        .expect("position")
        .to_string();
    // The payload's customer is read back from the read model: absent when parked.
    let id = r["data"]["createCustomer"]["customer"]["id"]
        .as_str()
        .map(str::to_string);
    let id = match id {
        Some(id) => id,
        None => {
            // Not in the read model: the admins' event log has the newest creation.
            let log = app.gql(Some(token),
                "{ eventLog(eventTypes: [\"CustomerCreated\"], first: 100) { nodes { aggregateId } } }",
                json!({}),
            )
            .await;
            let nodes = data(&log, "/data/eventLog/nodes")
                .as_array()
                .expect("nodes");
            nodes
                .last()
                .and_then(|n| n["aggregateId"].as_str())
                .expect("id")
                .to_string()
        }
    };
    (id, position)
}

async fn customer(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app
        .gql(
            Some(token),
            "query($id: ID!) { customer(id: $id) { name tags } }",
            json!({"id": id}),
        )
        .await;
    r["data"]["customer"].clone()
}

async fn health(app: &TestApp) -> (u16, Value) {
    let r = reqwest::get(format!("{}/api/health/detailed", app.server.base))
        .await
        .expect("health");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

fn customers_status(body: &Value) -> Value {
    body["projections"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "customers"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A read-model rule that refuses one name: the stand-in for a projection bug.
async fn poison(db: &TestDb, engine: Engine, on: bool) {
    let sql: &[&str] = match (engine, on) {
        (Engine::Postgres, true) => &["ALTER TABLE rm_customers ADD CONSTRAINT poison_pill CHECK (name <> 'Poison Pill') NOT VALID"],
        (Engine::Postgres, false) => &["ALTER TABLE rm_customers DROP CONSTRAINT poison_pill"],
        (Engine::Sqlite, true) => &[
            "CREATE TRIGGER poison_pill BEFORE INSERT ON rm_customers WHEN NEW.name = 'Poison Pill' \
             BEGIN SELECT RAISE(ABORT, 'poison pill'); END",
        ],
        (Engine::Sqlite, false) => &["DROP TRIGGER poison_pill"],
    };
    match engine {
        Engine::Postgres => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .expect("connect");
            for q in sql {
                sqlx::Executor::execute(&mut c, *q).await.expect("poison");
            }
        }
        Engine::Sqlite => {
            let opts: sqlx::sqlite::SqliteConnectOptions = db.url.parse().expect("url");
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
                &opts.busy_timeout(Duration::from_secs(10)),
            )
            .await
            .expect("connect");
            for q in sql {
                sqlx::Executor::execute(&mut c, *q).await.expect("poison");
            }
        }
    }
}

async fn tag(app: &TestApp, token: &str, id: &str, tag: &str) -> String {
    let r = app
        .gql(
            Some(token),
            "mutation($i: TagCustomerInput!) { tagCustomer(input: $i) { position } }",
            json!({"i": {"id": id, "tag": tag}}),
        )
        .await;
    data(&r, "/data/tagCustomer/position")
        .as_str()
        .expect("position")
        .to_string()
}

async fn a_poison_event_is_parked_while_the_read_model_goes_on(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    poison(&db, engine, true).await;

    // The poisoned customer's creation and a later event of theirs are parked, in order.
    let (pill, _) = create_customer(&app, &admin, "Poison Pill").await;
    let tagged = tag(&app, &admin, &pill, "vip").await;
    app.sync(&admin, &tagged).await;
    assert_eq!(customer(&app, &admin, &pill).await, Value::Null);

    // Others keep appearing in the same read model.
    let (grace, at) = create_customer(&app, &admin, "Grace Hopper").await;
    app.sync(&admin, &at).await;
    assert_eq!(customer(&app, &admin, &grace).await["name"], "Grace Hopper");

    // Health: 200, degraded, with the count, the position and the error.
    let (code, body) = health(&app).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let c = customers_status(&body);
    assert_eq!(c["state"], "degraded", "{c}");
    assert_eq!(c["parked"], 2, "{c}");
    assert!(c["parkedPosition"].is_string(), "{c}");
    assert!(
        c["parkedError"]
            .as_str()
            .unwrap_or_default()
            .contains("poison"),
        "{c}"
    );
    assert!(
        body["reasons"].to_string().contains("customers parked 2"),
        "{body}"
    );

    // The fix, then the retry (as `replay-tools parked retry` runs it): in order.
    poison(&db, engine, false).await;
    let runner = projections::ProjectionRunner::new(db.log().await, TZ);
    let retried = runner.retry_parked(Some("customers")).await.expect("retry");
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0].outcome, Ok(2), "{retried:?}");
    let back = customer(&app, &admin, &pill).await;
    assert_eq!(back["name"], "Poison Pill", "{back}");
    assert_eq!(back["tags"], json!(["vip"]), "{back}");
    let (code, body) = health(&app).await;
    assert_eq!((code, body["status"].clone()), (200, json!("ok")), "{body}");
    assert_eq!(customers_status(&body)["parked"], 0);

    // A discard instead: dropped without applying, and on record.
    poison(&db, engine, true).await;
    let (second, at) = create_customer(&app, &admin, "Poison Pill").await;
    assert_ne!(second, pill);
    app.sync(&admin, &at).await;
    let meta = commands::EventMetadata::new(
        commands::Actor::System("replay-tools".into()),
        chrono::Utc::now(),
    );
    let dropped = runner
        .discard_parked(
            "customers",
            "Customer",
            &second,
            "duplicate of an existing record",
            &meta,
        )
        .await
        .expect("discard");
    assert_eq!(dropped.len(), 1);
    let trail = app.gql(Some(&admin),
        "{ auditTrail(aggregateType: \"ReadModel\", id: \"customers\") { nodes { eventType actor payload } } }",
        json!({}),
    )
    .await;
    let entry = &data(&trail, "/data/auditTrail/nodes")[0];
    assert_eq!(entry["eventType"], "ParkedEventsDiscarded", "{trail}");
    assert!(entry["payload"].to_string().contains(&second), "{trail}");
    assert!(
        entry["payload"]
            .to_string()
            .contains("duplicate of an existing record"),
        "{trail}"
    );
    poison(&db, engine, false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = health(&app).await;
        if body["status"] == "ok" || Instant::now() > deadline {
            assert_eq!(body["status"], "ok", "{body}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(customer(&app, &admin, &second).await.is_null());
    tests::health::assert_no_failures(&app.server.base).await;
    // A rebuild leaves out what was discarded, as the live read model does (it would
    // otherwise bring the dropped customer back, or fail on a poison still there).
    // The server stops first: its cron jobs would append meanwhile.
    drop(app);
    let differences = tests::rebuild::differences_from_a_clean_rebuild(&db.log().await, TZ)
        .await
        .expect("rebuild");
    assert!(differences.is_empty(), "{differences:#?}");
}

async fn an_old_event_with_a_nul_is_applied_by_every_projection(engine: Engine) {
    let db = TestDb::new(engine).await;
    // As an old version might have written it: a NUL in the (sealed) name and, on
    // SQLite, which stores JSON as text, in a plain field too.
    let log = db.log().await;
    let id = uuid::Uuid::new_v4().to_string();
    let payload = json!({"CustomerCreated": {
        "customer_id": id, "name": "Nul\u{0}Name", "email": null, "phone": null,
        "birthday": null, "customer_since": "2026-12-01", "at": "2026-12-01T10:00:00Z"
    }});
    let meta = commands::EventMetadata::new(
        commands::Actor::System("old-version".into()),
        chrono::Utc::now(),
    );
    log.append(commands::store::AppendRequest {
        aggregate_type: "Customer".into(),
        aggregate_id: id.clone(),
        expected_sequence: 0,
        events: vec![commands::store::NewEvent {
            event_type: "CustomerCreated".into(),
            event_version: "1.0".into(),
            payload,
            metadata: serde_json::to_value(meta.to_map()).expect("meta"),
        }],
        snapshot: None,
        idempotency: None,
    })
    .await
    .expect("append an old event");
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let head = log.head().await.expect("head").to_string();
    app.sync(&admin, &head).await;
    let c = customer(&app, &admin, &id).await;
    assert_eq!(c["name"], "Nul\u{FFFD}Name", "{c}");
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    a_poison_event_is_parked_while_the_read_model_goes_on,
    an_old_event_with_a_nul_is_applied_by_every_projection,
);

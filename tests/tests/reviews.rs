//! Portal reviews, over HTTP against the server process on both engines: a
//! customer reviews their own completed job, once; someone else's job reads as
//! forbidden, an unfinished one is refused with its rule.

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

fn text(v: &Value, path: &str) -> String {
    data(v, path).as_str().expect("string").to_string()
}

fn code(v: &Value) -> (Value, Value) {
    let e = &v["errors"][0]["extensions"];
    (e["code"].clone(), e["rule"].clone())
}

/// Registers a portal customer; returns their token and customer id.
async fn portal(s: &tests::ServerProcess, name: &str, email: &str) -> (String, String) {
    let r = gql(
        s,
        None,
        "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token } }",
        json!({"i": {"name": name, "email": email, "password": "a-long-portal-pass"}}),
    )
    .await;
    let token = text(&r, "/data/registerPortalAccount/token");
    let me = gql(s, Some(&token), "{ viewer { id } }", json!({})).await;
    (token, text(&me, "/data/viewer/id"))
}

/// Books a job for `customer`; completes it when asked. Returns its id.
async fn job(
    s: &tests::ServerProcess,
    admin: &str,
    tech: &str,
    customer: &str,
    complete: bool,
) -> String {
    let j = gql(s, Some(admin), "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"i": {"customerId": customer, "services": ["carpet cleaning"], "start": "2026-11-25T15:00:00Z", "end": "2026-11-25T17:00:00Z"}})).await;
    let id = text(&j, "/data/bookJob/job/id");
    if complete {
        for (m, input) in [
            (
                "mutation($i: AssignTechnicianInput!) { assignTechnician(input: $i) { position } }",
                json!({"jobId": id, "technicianId": tech}),
            ),
            (
                "mutation($i: StartJobInput!) { startJob(input: $i) { position } }",
                json!({"jobId": id}),
            ),
            (
                "mutation($i: CompleteJobInput!) { completeJob(input: $i) { position } }",
                json!({"jobId": id, "amountCents": 12000, "services": ["carpet cleaning"]}),
            ),
        ] {
            let r = gql(s, Some(admin), m, json!({"i": input})).await;
            assert!(r.get("errors").is_none(), "{r}");
        }
    }
    id
}

async fn a_customer_reviews_their_own_completed_job_once(engine: Engine) {
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
    let admin = text(&r, "/data/login/token");
    let t = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } } }",
        json!({"i": {"email": "tech@dirtfree.example", "name": "Terry Tech", "role": "STAFF", "password": "steam-cleaner-42"}})).await;
    let tech = text(&t, "/data/createStaffUser/staffUser/id");
    let (ada, ada_id) = portal(&s, "Ada", "ada@example.com").await;
    let (_, bob_id) = portal(&s, "Bob", "bob@example.com").await;
    let done = job(&s, &admin, &tech, &ada_id, true).await;
    let booked = job(&s, &admin, &tech, &ada_id, false).await;
    let bobs = job(&s, &admin, &tech, &bob_id, true).await;

    let review = |job: &str| json!({"i": {"jobId": job, "rating": 5, "comment": "Spotless"}});
    let submit = "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { reviewId } }";
    let first = gql(&s, Some(&ada), submit, review(&done)).await;
    data(&first, "/data/submitReview/reviewId");
    let again = gql(&s, Some(&ada), submit, review(&done)).await;
    assert_eq!(
        code(&again),
        (json!("RULE_VIOLATION"), json!("ALREADY_EXISTS")),
        "{again}"
    );
    let unfinished = gql(&s, Some(&ada), submit, review(&booked)).await;
    assert_eq!(
        code(&unfinished),
        (json!("RULE_VIOLATION"), json!("JOB_NOT_COMPLETED")),
        "{unfinished}"
    );
    let others = gql(&s, Some(&ada), submit, review(&bobs)).await;
    assert_eq!(code(&others).0, "FORBIDDEN", "{others}");
    let unknown = gql(
        &s,
        Some(&ada),
        submit,
        review("00000000-0000-4000-8000-000000000042"),
    )
    .await;
    assert_eq!(code(&unknown).0, "FORBIDDEN", "{unknown}");
    tests::health::assert_no_failures(&s.base).await;
}

tests::on_both_engines!(a_customer_reviews_their_own_completed_job_once);

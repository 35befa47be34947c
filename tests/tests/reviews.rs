//! Portal reviews, over HTTP against the server process on both engines: a
//! customer reviews their own completed job, once; someone else's job reads as
//! forbidden, an unfinished one is refused with its rule.

use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::{Engine, TestDb};

fn code(v: &Value) -> (Value, Value) {
    let e = &v["errors"][0]["extensions"];
    (e["code"].clone(), e["rule"].clone())
}

/// Registers a portal customer; returns their token and customer id.
async fn portal(app: &TestApp, name: &str, email: &str) -> (String, String) {
    let r = app
        .sign_up(json!({"name": name, "email": email, "password": "a-long-portal-pass"}))
        .await;
    let token = text(&r, "/data/registerPortalAccount/token");
    let me = app.gql(Some(&token), "{ viewer { id } }", json!({})).await;
    (token, text(&me, "/data/viewer/id"))
}

/// Books a job for `customer`; completes it when asked. Returns its id.
async fn job(app: &TestApp, admin: &str, tech: &str, customer: &str, complete: bool) -> String {
    let j = app.gql(Some(admin), "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
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
            let r = app.gql(Some(admin), m, json!({"i": input})).await;
            assert!(r.get("errors").is_none(), "{r}");
        }
    }
    id
}

async fn a_customer_reviews_their_own_completed_job_once(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let t = app.gql(Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } } }",
        json!({"i": {"email": "tech@dirtfree.example", "name": "Terry Tech", "role": "STAFF", "password": "steam-cleaner-42"}})).await;
    let tech = text(&t, "/data/createStaffUser/staffUser/id");
    let (ada, ada_id) = portal(&app, "Ada", "ada@example.com").await;
    let (_, bob_id) = portal(&app, "Bob", "bob@example.com").await;
    let done = job(&app, &admin, &tech, &ada_id, true).await;
    let booked = job(&app, &admin, &tech, &ada_id, false).await;
    let bobs = job(&app, &admin, &tech, &bob_id, true).await;

    let review = |job: &str| json!({"i": {"jobId": job, "rating": 5, "comment": "Spotless"}});
    let submit = "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { reviewId } }";
    let first = app.gql(Some(&ada), submit, review(&done)).await;
    data(&first, "/data/submitReview/reviewId");
    let again = app.gql(Some(&ada), submit, review(&done)).await;
    assert_eq!(
        code(&again),
        (json!("RULE_VIOLATION"), json!("ALREADY_EXISTS")),
        "{again}"
    );
    let unfinished = app.gql(Some(&ada), submit, review(&booked)).await;
    assert_eq!(
        code(&unfinished),
        (json!("RULE_VIOLATION"), json!("JOB_NOT_COMPLETED")),
        "{unfinished}"
    );
    let others = app.gql(Some(&ada), submit, review(&bobs)).await;
    assert_eq!(code(&others).0, "FORBIDDEN", "{others}");
    let unknown = app
        .gql(
            Some(&ada),
            submit,
            review("00000000-0000-4000-8000-000000000042"),
        )
        .await;
    assert_eq!(code(&unknown).0, "FORBIDDEN", "{unknown}");
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(a_customer_reviews_their_own_completed_job_once);

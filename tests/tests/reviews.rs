//! Portal reviews, over HTTP against the server process on both engines: a
//! customer reviews their own completed job, once; someone else's job reads as
//! forbidden, an unfinished one is refused with its rule; the review fulfils the job's
//! review request (listed by `reviewRequests`).

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

/// The review requests of `job`, read until `until` holds of them (the policy runs after
/// the job's events, then the read model): the last answer.
async fn requests_of(
    app: &TestApp,
    token: &str,
    job: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let query = "query($j: ID) { reviewRequests(jobId: $j) { totalCount nodes { jobId customerId channel status reminders reviewId requestedAt } } }";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = app.gql(Some(token), query, json!({"j": job})).await;
        let nodes = data(&r, "/data/reviewRequests/nodes").clone();
        if until(&nodes) || std::time::Instant::now() > deadline {
            return nodes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn a_review_of_a_requested_job_fulfils_its_request(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    let t = app.gql(Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } } }",
        json!({"i": {"email": "tech@dirtfree.example", "name": "Terry Tech", "role": "STAFF", "password": "steam-cleaner-42"}})).await;
    let tech = text(&t, "/data/createStaffUser/staffUser/id");
    let (ada, ada_id) = portal(&app, "Ada", "ada@example.com").await;
    // Email is the channel Ada can be asked on: her address is confirmed, she consents.
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: MarketingConsentInput!) { setMarketingConsent(input: $i) { position } }",
            json!({"i": {"id": ada_id, "channel": "EMAIL", "granted": true}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/setMarketingConsent/position"))
        .await;
    let done = job(&app, &admin, &tech, &ada_id, true).await;
    let other = job(&app, &admin, &tech, &ada_id, true).await;

    // The policy asked for a review of each completed job.
    let asked = requests_of(&app, &admin, &done, |n| {
        n.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(asked.as_array().map(Vec::len), Some(1), "{asked}");
    assert_eq!(asked[0]["status"], "REQUESTED", "{asked}");
    assert_eq!(asked[0]["customerId"], ada_id.as_str());
    assert_eq!(asked[0]["channel"], "EMAIL");
    assert_eq!(asked[0]["reviewId"], Value::Null);
    let other_asked = requests_of(&app, &admin, &other, |n| {
        n.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(other_asked[0]["status"], "REQUESTED", "{other_asked}");

    // Ada reviews one job: that request is fulfilled by her review, the other stays open.
    let r = app
        .gql(
            Some(&ada),
            "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { reviewId } }",
            json!({"i": {"jobId": done, "rating": 4, "comment": "Good"}}),
        )
        .await;
    let review = text(&r, "/data/submitReview/reviewId");
    let fulfilled = requests_of(&app, &admin, &done, |n| n[0]["status"] == "FULFILLED").await;
    assert_eq!(fulfilled[0]["status"], "FULFILLED", "{fulfilled}");
    assert_eq!(fulfilled[0]["reviewId"], review.as_str());
    let open = app
        .gql(
            Some(&admin),
            "{ reviewRequests(status: REQUESTED) { nodes { jobId } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&open, "/data/reviewRequests/nodes"),
        &json!([{"jobId": other}]),
        "{open}"
    );
    // Staff only; a malformed filter is a clear error naming it.
    let portal_asks = app
        .gql(Some(&ada), "{ reviewRequests { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&portal_asks).0, "FORBIDDEN", "{portal_asks}");
    let bad = app
        .gql(
            Some(&admin),
            "{ reviewRequests(jobId: \"job-1\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad).0, "VALIDATION", "{bad}");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "jobId", "{bad}");
    tests::health::assert_no_failures(&app.server.base).await;
}

const ASK: &str =
    "mutation($i: RequestReviewInput!) { requestReview(input: $i) { reviewRequestId position } }";

/// Waits until the server's start-up run of send-review-requests has ended: that run asks
/// for reviews of recent jobs too, and one that came after a consent would make the test's
/// own ask a reminder.
async fn start_up_review_requests_ended(app: &TestApp, manager: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = app
            .gql(
                Some(manager),
                "{ jobRuns(job: \"send-review-requests\") { nodes { outcome endedAt } } }",
                json!({}),
            )
            .await;
        let ended = r["data"]["jobRuns"]["nodes"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|run| !run["endedAt"].is_null()));
        if ended {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the start-up run of send-review-requests never ended: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The emails to `to` that ask for a review, waiting (up to 20 s) until there are `n`.
async fn review_emails(app: &TestApp, to: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let asks: Vec<String> = app
            .mailbox
            .texts_to(to)
            .into_iter()
            .filter(|t| t.to_lowercase().contains("review"))
            .collect();
        if asks.len() >= n || std::time::Instant::now() > deadline {
            return asks;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn staff_ask_for_a_review_by_hand_then_remind_twice_at_most(engine: Engine) {
    use chrono::Timelike as _;
    let db = TestDb::new(engine).await;
    // send-review-requests also runs on its timer at 00, 06, 12 and 18 o'clock in the
    // business's zone, and could ask first: the business lives where it is three hours from
    // either (a fixed-offset zone, UTC+0 to UTC+5).
    let offset = (9 - chrono::Utc::now().hour() % 6) % 6;
    let zone = if offset == 0 {
        "UTC".to_string()
    } else {
        format!("Etc/GMT-{offset}")
    };
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[("BUSINESS_TIMEZONE", zone.as_str())],
    )
    .await;
    let admin = app.login_admin().await;
    let t = app.gql(Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } } }",
        json!({"i": {"email": "tech@dirtfree.example", "name": "Terry Tech", "role": "STAFF", "password": "steam-cleaner-42"}})).await;
    let tech = text(&t, "/data/createStaffUser/staffUser/id");
    let tech_token = app
        .login(("tech@dirtfree.example", "steam-cleaner-42"))
        .await;
    let (ada, ada_id) = portal(&app, "Ada", "ada@example.com").await;
    let (_, bob_id) = portal(&app, "Bob", "bob@example.com").await;
    // Before consent nobody may be asked; the completed job is asked for by hand.
    let done = job(&app, &admin, &tech, &ada_id, true).await;
    // The policies have passed the job's completion, and the scheduler's start-up run of
    // send-review-requests has ended (neither could ask her): from here the asks are the
    // test's alone.
    tests::health::assert_no_failures(&app.server.base).await;
    start_up_review_requests_ended(&app, &admin).await;
    let r = app
        .gql(Some(&tech_token), ASK, json!({"i": {"jobId": done}}))
        .await;
    assert_eq!(
        code(&r),
        (json!("RULE_VIOLATION"), json!("CUSTOMER_NOT_REACHABLE")),
        "{r}"
    );
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: MarketingConsentInput!) { setMarketingConsent(input: $i) { position } }",
            json!({"i": {"id": ada_id, "channel": "EMAIL", "granted": true}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/setMarketingConsent/position"))
        .await;

    // The ask, then two reminders on the same channel, each one email; a third is refused.
    // A retry with the first ask's key is that ask again, not a reminder.
    let first = app
        .gql(
            Some(&tech_token),
            ASK,
            json!({"i": {"jobId": done, "idempotencyKey": "ask-ada-1"}}),
        )
        .await;
    let again = app
        .gql(
            Some(&tech_token),
            ASK,
            json!({"i": {"jobId": done, "idempotencyKey": "ask-ada-1"}}),
        )
        .await;
    assert_eq!(
        data(&again, "/data/requestReview"),
        data(&first, "/data/requestReview")
    );
    for _ in 0..2 {
        let r = app
            .gql(Some(&tech_token), ASK, json!({"i": {"jobId": done}}))
            .await;
        app.sync(&tech_token, &text(&r, "/data/requestReview/position"))
            .await;
    }
    let r = app
        .gql(Some(&tech_token), ASK, json!({"i": {"jobId": done}}))
        .await;
    assert_eq!(
        code(&r),
        (json!("RULE_VIOLATION"), json!("NO_REMINDERS_LEFT")),
        "{r}"
    );
    let listed = requests_of(&app, &tech_token, &done, |n| n[0]["reminders"] == 2).await;
    assert_eq!(listed[0]["reminders"], 2, "{listed}");
    assert_eq!(listed[0]["channel"], "EMAIL", "{listed}");
    let emails = review_emails(&app, "ada@example.com", 3).await;
    assert_eq!(emails.len(), 3, "the ask and two reminders: {emails:?}");
    let request = text(&first, "/data/requestReview/reviewRequestId");
    for e in &emails {
        assert!(
            !e.contains('{') && !e.contains('}'),
            "a placeholder reached Ada: {e}"
        );
        assert!(
            e.contains(&format!("/review/{request}")),
            "the link of this request: {e}"
        );
    }
    let reminders = emails.iter().filter(|e| e.contains("reminder")).count();
    assert_eq!(reminders, 2, "one ask and two reminders: {emails:?}");

    // Reviewed: nothing more to ask. Unfinished, unknown and malformed jobs are refused.
    let r = app
        .gql(
            Some(&ada),
            "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { position } }",
            json!({"i": {"jobId": done, "rating": 5}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/submitReview/position"))
        .await;
    // Reviewed since: a retry of the first ask still answers as the first ask did.
    let late = app
        .gql(
            Some(&tech_token),
            ASK,
            json!({"i": {"jobId": done, "idempotencyKey": "ask-ada-1"}}),
        )
        .await;
    assert_eq!(
        data(&late, "/data/requestReview"),
        data(&first, "/data/requestReview")
    );
    let reviewed_first = job(&app, &admin, &tech, &ada_id, true).await;
    let r = app
        .gql(
            Some(&ada),
            "mutation($i: SubmitReviewInput!) { submitReview(input: $i) { position } }",
            json!({"i": {"jobId": reviewed_first, "rating": 4}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/submitReview/position"))
        .await;
    let r = app
        .gql(
            Some(&tech_token),
            ASK,
            json!({"i": {"jobId": reviewed_first}}),
        )
        .await;
    assert_eq!(
        code(&r),
        (json!("RULE_VIOLATION"), json!("ALREADY_FULFILLED")),
        "{r}"
    );
    let booked = job(&app, &admin, &tech, &bob_id, false).await;
    let r = app
        .gql(Some(&tech_token), ASK, json!({"i": {"jobId": booked}}))
        .await;
    assert_eq!(
        code(&r),
        (json!("RULE_VIOLATION"), json!("JOB_NOT_COMPLETED")),
        "{r}"
    );
    let r = app
        .gql(
            Some(&tech_token),
            ASK,
            json!({"i": {"jobId": "00000000-0000-4000-8000-000000000042"}}),
        )
        .await;
    assert_eq!(code(&r).0, "NOT_FOUND", "{r}");
    let r = app
        .gql(Some(&tech_token), ASK, json!({"i": {"jobId": "job-1"}}))
        .await;
    assert_eq!(code(&r).0, "VALIDATION", "{r}");
    let r = app
        .gql(Some(&ada), ASK, json!({"i": {"jobId": done}}))
        .await;
    assert_eq!(code(&r).0, "FORBIDDEN", "{r}");
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    a_customer_reviews_their_own_completed_job_once,
    a_review_of_a_requested_job_fulfils_its_request,
    staff_ask_for_a_review_by_hand_then_remind_twice_at_most,
);

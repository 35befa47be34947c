//! The GraphQL API over real HTTP, as the admin UI and the portal use it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{Engine, TestDb};

/// The server process, and where its email goes unless a test sets its own (a Resend
/// stand-in: sign-up codes arrive there).
struct Server {
    process: tests::ServerProcess,
    mailbox: tests::standins::Mailbox,
}

impl std::ops::Deref for Server {
    type Target = tests::ServerProcess;
    fn deref(&self) -> &Self::Target {
        &self.process
    }
}

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");

async fn start(database_url: Option<&str>, envs: &[(&str, &str)]) -> Server {
    let (mailbox, resend) = tests::standins::Mailbox::start().await;
    let mut all = vec![
        ("ADMIN_EMAIL", ADMIN.0),
        ("ADMIN_PASSWORD", ADMIN.1),
        ("DEMO_SEED", "off"),
    ];
    if let Some(u) = database_url {
        all.push(("DATABASE_URL", u));
    }
    all.extend_from_slice(&tests::standins::Mailbox::env(&resend));
    all.extend_from_slice(envs);
    let process = tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &all,
        Duration::from_secs(120),
    )
    .await;
    Server { process, mailbox }
}

async fn gql(s: &Server, token: Option<&str>, query: &str, variables: Value) -> Value {
    let mut req = reqwest::Client::new()
        .post(&s.url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let answer: Value = req.send().await.expect("send").json().await.expect("json");
    tests::app::assert_rules_named(&answer);
    answer
}

fn data<'a>(v: &'a Value, path: &str) -> &'a Value {
    assert!(v.get("errors").is_none(), "unexpected errors: {v}");
    v.pointer(path)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn code(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The field an error names (`extensions.field`), Null when none.
fn field(v: &Value) -> Value {
    v["errors"][0]["extensions"]["field"].clone()
}

/// Asks `query` until `done` holds of the answer or `secs` pass, and returns the last
/// answer: what policies and the outbox do follows the mutation that caused it.
async fn eventually(
    s: &Server,
    token: &str,
    query: &str,
    variables: Value,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = gql(s, Some(token), query, variables.clone()).await;
        if done(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Read-your-writes as a client does it: wait until the read models include `position`.
async fn sync(s: &Server, token: &str, position: &Value) {
    let r = gql(
        s,
        Some(token),
        "query($p: String!) { sync(position: $p, timeoutMs: 10000) }",
        json!({"p": position}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/sync"),
        true,
        "read models did not catch up: {r}"
    );
}

async fn login(s: &Server, email: &str, password: &str) -> String {
    let r = gql(
        s,
        None,
        "mutation($i: LoginInput!) { login(input: $i) { token role } }",
        json!({"i": {"email": email, "password": password}}),
    )
    .await;
    data(&r, "/data/login/token")
        .as_str()
        .expect("token")
        .to_string()
}

async fn a_business_day(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(Some(&db.url), &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;

    let staff = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id role } position } }",
        json!({"i": {"email": "tech@dirtfree.example", "name": "Terry Tech", "role": "STAFF", "password": "steam-cleaner-42"}})).await;
    let tech_id = data(&staff, "/data/createStaffUser/staffUser/id")
        .as_str()
        .expect("id")
        .to_string();
    let tech = login(&s, "tech@dirtfree.example", "steam-cleaner-42").await;

    let c = gql(&s, Some(&tech), "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id name } position } }",
        json!({"i": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+15125550100", "idempotencyKey": "create-ada"}})).await;
    let customer = data(&c, "/data/createCustomer/customer/id")
        .as_str()
        .expect("id")
        .to_string();
    // A retried create is the same customer.
    let again = gql(&s, Some(&tech), "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({"i": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+15125550100", "idempotencyKey": "create-ada"}})).await;
    assert_eq!(
        data(&again, "/data/createCustomer/customer/id"),
        &json!(customer)
    );

    let consent = gql(&s, Some(&tech), "mutation($id: ID!) { setMarketingConsent(input: {id: $id, channel: SMS, granted: true}) { customer { smsConsent } } }", json!({"id": customer})).await;
    assert_eq!(
        data(&consent, "/data/setMarketingConsent/customer/smsConsent"),
        true
    );
    let van = gql(
        &s,
        Some(&admin),
        "mutation { registerVehicle(input: {name: \"Van 1\", plate: \"TX-1\"}) { vehicleId } }",
        json!({}),
    )
    .await;
    let van = data(&van, "/data/registerVehicle/vehicleId")
        .as_str()
        .expect("van")
        .to_string();

    let job = gql(&s, Some(&tech), "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id status } } }",
        json!({"i": {"customerId": customer, "services": ["carpet cleaning"], "start": "2026-11-25T15:00:00Z", "end": "2026-11-25T17:00:00Z"}})).await;
    let job_id = data(&job, "/data/bookJob/job/id")
        .as_str()
        .expect("job")
        .to_string();
    assert_eq!(data(&job, "/data/bookJob/job/status"), "scheduled");
    for (m, input) in [
        (
            "assignVehicle(input: $i) { job { vehicleId } }",
            json!({"jobId": job_id, "vehicleId": van}),
        ),
        (
            "assignTechnician(input: $i) { job { technicianId } }",
            json!({"jobId": job_id, "technicianId": tech_id}),
        ),
    ] {
        let ty = if m.starts_with("assignVehicle") {
            "AssignVehicleInput"
        } else {
            "AssignTechnicianInput"
        };
        let r = gql(
            &s,
            Some(&tech),
            &format!("mutation($i: {ty}!) {{ {m} }}"),
            json!({"i": input}),
        )
        .await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let start_r = gql(
        &s,
        Some(&tech),
        "mutation($i: StartJobInput!) { startJob(input: $i) { job { status } } }",
        json!({"i": {"jobId": job_id}}),
    )
    .await;
    assert_eq!(data(&start_r, "/data/startJob/job/status"), "in_progress");
    let done = gql(&s, Some(&tech), "mutation($i: CompleteJobInput!) { completeJob(input: $i) { job { status amount { amountCents currency } } position } }",
        json!({"i": {"jobId": job_id, "amountCents": 25000, "services": ["carpet cleaning"]}})).await;
    assert_eq!(
        data(&done, "/data/completeJob/job/amount/amountCents"),
        25000
    );

    // Loyalty points and the review request follow through policies.
    let points = |r: &Value| {
        data(r, "/data/customer/loyaltyPoints")
            .as_i64()
            .unwrap_or(0)
    };
    let r = eventually(&s, &tech, "query($id: ID!) { customer(id: $id) { loyaltyPoints jobsCompleted totalSpent { amountCents } } }", json!({"id": customer}), 30, |r| points(r) > 0).await;
    assert!(points(&r) > 0, "no loyalty points after completion: {r}");
    assert_eq!(data(&r, "/data/customer/jobsCompleted"), 1);
    let audit = gql(
        &s,
        Some(&admin),
        "query($id: ID!) { auditTrail(aggregateType: \"ReviewRequest\", id: $id) { nodes { eventType } } }",
        json!({"id": review_request_id(&job_id)}),
    )
    .await;
    assert!(
        data(&audit, "/data/auditTrail/nodes")
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "review request: {audit}"
    );

    // A portal customer registers, books online and sees only their own data.
    let reg = sign_up(&s, json!({"name": "Grace Hopper", "email": "grace@example.com", "password": "cobol-forever-1"})).await;
    let portal = data(&reg, "/data/registerPortalAccount/token")
        .as_str()
        .expect("token")
        .to_string();
    let booked = gql(&s, Some(&portal), "mutation { bookServiceOnline(input: {services: [\"upholstery\"]}) { job { status source } } }", json!({})).await;
    assert_eq!(
        data(&booked, "/data/bookServiceOnline/job/source"),
        "online"
    );
    // Grace shares her referral code; Linus registers with it; staff see the referral.
    let issued = gql(
        &s,
        Some(&portal),
        "mutation { myReferralCode { code position } }",
        json!({}),
    )
    .await;
    let grace_code = data(&issued, "/data/myReferralCode/code")
        .as_str()
        .expect("code")
        .to_string();
    let grace_id = data(&reg, "/data/registerPortalAccount/customerId")
        .as_str()
        .expect("id")
        .to_string();
    let linus = sign_up(&s, json!({"name": "Linus Torvalds", "email": "linus@example.com", "password": "kernel-panic-99", "referralCode": grace_code})).await;
    let linus_id = data(&linus, "/data/registerPortalAccount/customerId")
        .as_str()
        .expect("id")
        .to_string();
    let referrals = eventually(&s, &tech, "query($id: ID) { referrals(referrerId: $id) { nodes { referrerId refereeId code rewardedAt } } }", json!({"id": grace_id}), 10, |r| {
        data(r, "/data/referrals/nodes").as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(
        data(&referrals, "/data/referrals/nodes"),
        &json!([{"referrerId": grace_id, "refereeId": linus_id, "code": grace_code, "rewardedAt": null}]),
        "rewarded only on the referee's first completed job"
    );
    let none = gql(
        &s,
        Some(&tech),
        "query($id: ID) { referrals(referrerId: $id) { nodes { code } } }",
        json!({"id": customer}),
    )
    .await;
    assert_eq!(data(&none, "/data/referrals/nodes"), &json!([]));

    let mine = gql(
        &s,
        Some(&portal),
        "{ myJobs { nodes { services } } myProfile { name } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&mine, "/data/myJobs/nodes").as_array().map(Vec::len),
        Some(1)
    );
    let other = gql(
        &s,
        Some(&portal),
        "query($id: ID!) { customer(id: $id) { name } }",
        json!({"id": customer}),
    )
    .await;
    assert_eq!(code(&other), "FORBIDDEN", "{other}");

    // A manager runs an opportunity with an auto-offer, and a campaign.
    let opp = gql(&s, Some(&admin), "mutation($i: CreateOpportunityInput!) { createOpportunity(input: $i) { opportunity { id stage status } } }",
        json!({"i": {"customerId": customer, "title": "Pet-odour treatment", "valueCents": 9900}})).await;
    let opp_id = data(&opp, "/data/createOpportunity/opportunity/id")
        .as_str()
        .expect("id")
        .to_string();
    for (m, ty, input) in [
        (
            "moveOpportunityStage(input: $i) { opportunity { stage } }",
            "MoveOpportunityStageInput",
            json!({"id": opp_id, "stage": "QUOTED"}),
        ),
        (
            "configureAutoOffer(input: $i) { opportunity { offerStatus } }",
            "ConfigureAutoOfferInput",
            json!({"id": opp_id, "percentOff": 15, "expiresAt": "2030-01-01T00:00:00Z"}),
        ),
        (
            "sendOffer(input: $i) { opportunity { offerStatus } }",
            "SendOfferInput",
            json!({"id": opp_id, "channel": "SMS"}),
        ),
        (
            "acceptOffer(input: $i) { opportunity { offerStatus } }",
            "OpportunityRefInput",
            json!({"id": opp_id}),
        ),
        (
            "winOpportunity(input: $i) { opportunity { status wonJobId } }",
            "WinOpportunityInput",
            json!({"id": opp_id, "services": ["pet-odour treatment"]}),
        ),
    ] {
        let r = gql(
            &s,
            Some(&admin),
            &format!("mutation($i: {ty}!) {{ {m} }}"),
            json!({"i": input}),
        )
        .await;
        assert!(r.get("errors").is_none(), "{m}: {r}");
    }
    let again = gql(
        &s,
        Some(&admin),
        "mutation($i: OpportunityRefInput!) { acceptOffer(input: $i) { position } }",
        json!({"i": {"id": opp_id}}),
    )
    .await;
    assert_eq!(
        code(&again),
        "RULE_VIOLATION",
        "an accepted offer cannot be accepted twice: {again}"
    );
    let promo = gql(&s, Some(&admin), "mutation($i: CreatePromotionInput!) { createPromotion(input: $i) { promotionId } }",
        json!({"i": {"name": "Spring clean", "channel": "SMS", "template": "15% off with SPRING", "discountCode": "SPRING", "startsAt": "2030-03-01T00:00:00Z", "endsAt": "2030-04-01T00:00:00Z"}})).await;
    let promo_id = data(&promo, "/data/createPromotion/promotionId")
        .as_str()
        .expect("id")
        .to_string();
    let sched = gql(
        &s,
        Some(&admin),
        "mutation($i: SchedulePromotionInput!) { schedulePromotion(input: $i) { position } }",
        json!({"i": {"id": promo_id, "sendAt": "2030-03-01T15:00:00Z"}}),
    )
    .await;
    assert!(sched.get("errors").is_none(), "{sched}");
    let past = gql(
        &s,
        Some(&admin),
        "mutation($i: SchedulePromotionInput!) { schedulePromotion(input: $i) { position } }",
        json!({"i": {"id": promo_id, "sendAt": "2020-03-01T15:00:00Z"}}),
    )
    .await;
    assert!(
        past.get("errors").is_some(),
        "a campaign cannot be scheduled in the past: {past}"
    );
    let promos = gql(
        &s,
        Some(&admin),
        "{ promotions { nodes { name status } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&promos, "/data/promotions/nodes/0/status"),
        "scheduled"
    );
    let kpis = gql(&s, Some(&admin), "{ kpis(from: \"2020-01-01\", to: \"2030-12-31\") { opportunityConversionBp jobsCompleted newCustomers } }", json!({})).await;
    assert_eq!(data(&kpis, "/data/kpis/opportunityConversionBp"), 10000);
    // A weekly report for the owner, defined by the admin; staff may not; it is listed.
    let report = gql(&s, Some(&admin), "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { reportId position } }",
        json!({"i": {"name": "Monday numbers", "metrics": ["REVENUE", "REVIEWS"], "period": "WEEKLY", "recipients": ["owner@dirtfree.example"], "cron": "0 7 * * 1"}})).await;
    let report_id = data(&report, "/data/defineScheduledReport/reportId")
        .as_str()
        .expect("id")
        .to_string();
    sync(
        &s,
        &admin,
        data(&report, "/data/defineScheduledReport/position"),
    )
    .await;
    let denied = gql(&s, Some(&tech), "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { reportId } }",
        json!({"i": {"name": "Mine", "metrics": ["REVENUE"], "period": "DAILY", "recipients": [], "cron": "0 7 * * *"}})).await;
    assert_eq!(code(&denied), "FORBIDDEN", "{denied}");
    let bad_cron = gql(&s, Some(&admin), "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { reportId } }",
        json!({"i": {"name": "Broken", "metrics": ["REVENUE"], "period": "DAILY", "recipients": [], "cron": "every monday"}})).await;
    assert_eq!(code(&bad_cron), "VALIDATION", "{bad_cron}");
    // Five fields of the right shape, but no minute 99: the scheduler could never run it.
    let never = gql(&s, Some(&admin), "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { reportId } }",
        json!({"i": {"name": "Never", "metrics": ["REVENUE"], "period": "DAILY", "recipients": [], "cron": "99 * * * *"}})).await;
    assert_eq!(
        (code(&never), field(&never)),
        ("VALIDATION".to_string(), json!("cron")),
        "{never}"
    );
    let reports = gql(&s, Some(&admin), "{ scheduledReports { nodes { id name metrics period recipients cron deleted runs { periodStart } } } }", json!({})).await;
    assert_eq!(
        data(&reports, "/data/scheduledReports/nodes"),
        &json!([{"id": report_id, "name": "Monday numbers", "metrics": ["revenue", "reviews"], "period": "weekly",
                 "recipients": ["owner@dirtfree.example"], "cron": "0 7 * * 1", "deleted": false, "runs": []}])
    );

    // Analytics show the day's revenue (business time zone: America/Chicago).
    let rev = gql(&s, Some(&admin), "{ revenue(from: \"2026-01-01\", to: \"2030-12-31\", groupBy: MONTH) { key revenue { amountCents } jobs } }", json!({})).await;
    let total: i64 = data(&rev, "/data/revenue")
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["revenue"]["amountCents"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(total, 25000);
    let csv = gql(
        &s,
        Some(&admin),
        "{ exportCsv(report: REVENUE_BY_SERVICE) customers: exportCsv(report: CUSTOMERS) }",
        json!({}),
    )
    .await;
    let by_service = data(&csv, "/data/exportCsv").as_str().expect("csv");
    assert!(
        by_service.starts_with("service,jobs,revenue_cents\n"),
        "{by_service}"
    );
    assert!(
        by_service.contains("carpet cleaning,1,25000"),
        "{by_service}"
    );
    let customers = data(&csv, "/data/customers").as_str().expect("csv");
    assert!(
        customers.contains("Ada Lovelace") && customers.contains("Grace Hopper"),
        "{customers}"
    );
    // The audit trail per actor: what the technician did, from which request.
    let by_actor = gql(
        &s,
        Some(&admin),
        "query($a: String!) { auditByActor(actor: $a, first: 100) { nodes { aggregateType eventType requestId } } }",
        json!({"a": format!("staff:{tech_id}")}),
    )
    .await;
    let done: Vec<&str> = data(&by_actor, "/data/auditByActor/nodes")
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["eventType"].as_str())
        .collect();
    assert!(
        done.contains(&"JobCompleted") && done.contains(&"CustomerCreated"),
        "{by_actor}"
    );
    // The scheduler's start-up runs show in the job-run log.
    let runs = gql(
        &s,
        Some(&admin),
        "{ jobRuns { nodes { job outcome trigger } } }",
        json!({}),
    )
    .await;
    assert!(data(&runs, "/data/jobRuns/nodes").is_array(), "{runs}");
    let refused = gql(
        &s,
        Some(&tech),
        "{ exportCsv(report: CUSTOMERS) }",
        json!({}),
    )
    .await;
    assert_eq!(code(&refused), "FORBIDDEN");
    tests::health::assert_no_failures(&s.base).await;
}

fn review_request_id(job: &str) -> String {
    let job = uuid::Uuid::parse_str(job).expect("uuid");
    commands::domain::ids::ReviewRequestId::for_job(commands::domain::ids::JobId::from_uuid(job))
        .to_string()
}

async fn roles_and_bad_input(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(Some(&db.url), &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let created = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } position } }",
        json!({"i": {"email": "s@x.example", "name": "S", "role": "STAFF", "password": "long-enough-pw"}})).await;
    sync(&s, &admin, data(&created, "/data/createStaffUser/position")).await;
    let staff_id = data(&created, "/data/createStaffUser/staffUser/id").clone();
    let staff = login(&s, "s@x.example", "long-enough-pw").await;

    let create_staff = "mutation { createStaffUser(input: {email: \"z@x.example\", name: \"Z\", role: ADMIN, password: \"long-enough-pw\"}) { position } }";
    assert_eq!(
        code(&gql(&s, None, create_staff, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(&gql(&s, Some(&staff), create_staff, json!({})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(
            &gql(
                &s,
                Some(&staff),
                "{ revenue(from: \"2026-01-01\", to: \"2026-01-02\", groupBy: DAY) { key } }",
                json!({})
            )
            .await
        ),
        "FORBIDDEN"
    );
    assert_eq!(
        code(
            &gql(
                &s,
                Some("not-a-token"),
                "{ customers { totalCount } }",
                json!({})
            )
            .await
        ),
        "UNAUTHENTICATED"
    );
    assert_eq!(code(&gql(&s, None, "mutation { login(input: {email: \"s@x.example\", password: \"wrong-password\"}) { token } }", json!({})).await), "UNAUTHENTICATED");

    // Sign-in attempts are rate limited per client.
    let mut limited = false;
    for _ in 0..15 {
        let r = gql(&s, None, "mutation { login(input: {email: \"nobody@x.example\", password: \"wrong-password\"}) { token } }", json!({})).await;
        if code(&r) == "RATE_LIMITED" {
            limited = true;
            break;
        }
    }
    assert!(limited, "15 quick sign-in attempts were never rate limited");

    // A real job to complete with a bad amount (a job that does not exist would fail on
    // that instead).
    let customer = gql(
        &s,
        Some(&staff),
        "mutation { createCustomer(input: {name: \"Neg Amount\"}) { customer { id } } }",
        json!({}),
    )
    .await;
    let customer_id = data(&customer, "/data/createCustomer/customer/id").clone();
    let booked = gql(&s, Some(&staff), "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id status } position } }",
        json!({"i": {"customerId": customer_id, "services": ["carpet cleaning"], "start": "2026-11-25T15:00:00Z", "end": "2026-11-25T17:00:00Z"}})).await;
    assert_eq!(
        data(&booked, "/data/bookJob/job/status"),
        "scheduled",
        "{booked}"
    );
    let job_id = data(&booked, "/data/bookJob/job/id").clone();
    sync(&s, &staff, data(&booked, "/data/bookJob/position")).await;
    let job = job_id.as_str().expect("job id").to_string();
    // What a job's history and record are, to show that a refusal changed neither.
    let history = |id: String| {
        let db = &db;
        async move { tests::app_support::stream_types(&db.log().await, "Job", &id).await }
    };
    let record = |id: Value| {
        let s = &s;
        let staff = staff.clone();
        async move {
            let r = gql(
                s,
                Some(&staff),
                "query($id: ID!) { job(id: $id) { status amount { amountCents } paid } }",
                json!({ "id": id }),
            )
            .await;
            data(&r, "/data/job").clone()
        }
    };
    let booked_history = history(job.clone()).await;

    // Bad input: each a clear error, nothing appended.
    // Business events only: the scheduler may record job runs meanwhile.
    let count = || async { tests::business_event_count(&db.log().await).await };
    let before = count().await;
    let bad_phone = gql(
        &s,
        Some(&staff),
        "mutation { createCustomer(input: {name: \"X\", phone: \"12\"}) { position } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (code(&bad_phone), field(&bad_phone)),
        ("VALIDATION".into(), json!("phone")),
        "{bad_phone}"
    );
    let negative = gql(&s, Some(&staff), "mutation($j: ID!) { completeJob(input: {jobId: $j, amountCents: -5, services: [\"carpet cleaning\"]}) { position } }", json!({"j": job_id})).await;
    assert_eq!(
        (code(&negative), field(&negative)),
        ("VALIDATION".into(), json!("amountCents")),
        "{negative}"
    );
    // Nothing of it was applied: the job is as booked, not completed, with no amount.
    assert_eq!(history(job.clone()).await, booked_history);
    assert_eq!(
        record(job_id.clone()).await,
        json!({"status": "scheduled", "amount": null, "paid": false})
    );
    let long = "x".repeat(5_000);
    let oversized = gql(
        &s,
        Some(&staff),
        "mutation($n: String!) { createCustomer(input: {name: $n}) { position } }",
        json!({"n": long}),
    )
    .await;
    assert_eq!(field(&oversized), "name", "{oversized}");
    assert!(gql(
        &s,
        Some(&staff),
        "mutation { createCustomer(input: {name: 42}) { position } }",
        json!({})
    )
    .await
    .get("errors")
    .is_some());
    assert!(gql(
        &s,
        Some(&staff),
        "mutation { createCustomer(input: {}) { position } }",
        json!({})
    )
    .await
    .get("errors")
    .is_some());
    assert!(gql(
        &s,
        Some(&admin),
        "{ revenue(from: \"2026-01-01\", to: \"2026-01-02\", groupBy: HOURLY) { key } }",
        json!({})
    )
    .await
    .get("errors")
    .is_some());
    let aliases: String = (0..1000)
        .map(|i| format!("a{i}: version {{ version }} "))
        .collect();
    let many = gql(&s, None, &format!("{{ {aliases} }}"), json!({})).await;
    assert!(
        many.get("errors").is_some(),
        "1,000 aliases must be refused"
    );
    let malformed = reqwest::Client::new()
        .post(&s.url)
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .expect("send");
    assert!(malformed.status().is_client_error());
    assert_eq!(count().await, before, "nothing was appended by bad input");

    // A negative payment for a real job, completed and unpaid: refused naming the amount; the
    // job stays unpaid and no payment is recorded. (Completing it sets the policies to work,
    // so this comes after the count above.) Staff send it: a negative amount is bad input,
    // judged before the managers-only rule on recording less than a job costs.
    let second = gql(&s, Some(&staff), "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"i": {"customerId": customer_id, "services": ["carpet cleaning"], "start": "2026-11-26T15:00:00Z", "end": "2026-11-26T17:00:00Z"}})).await;
    let done_id = data(&second, "/data/bookJob/job/id").clone();
    let done = done_id.as_str().expect("job id").to_string();
    let completed = gql(&s, Some(&staff), "mutation($i: CompleteJobInput!) { completeJob(input: $i) { position } }",
        json!({"i": {"jobId": done_id, "amountCents": 5000, "services": ["carpet cleaning"], "technicianId": staff_id}})).await;
    sync(&s, &staff, data(&completed, "/data/completeJob/position")).await;
    let unpaid = json!({"status": "completed", "amount": {"amountCents": 5000}, "paid": false});
    assert_eq!(record(done_id.clone()).await, unpaid);
    let completed_history = history(done.clone()).await;
    // As staff: a negative amount is bad input, not "less than due" (a manager's call).
    let payment = gql(
        &s,
        Some(&staff),
        "mutation($i: RecordJobPaymentInput!) { recordJobPayment(input: $i) { paymentId } }",
        json!({"i": {"jobId": done_id, "method": "CASH", "amountCents": -5}}),
    )
    .await;
    assert_eq!(
        (code(&payment), field(&payment)),
        ("VALIDATION".into(), json!("amountCents")),
        "{payment}"
    );
    assert_eq!(history(done.clone()).await, completed_history);
    assert_eq!(
        record(done_id.clone()).await,
        unpaid,
        "the job stays unpaid"
    );
    let paid = gql(
        &s,
        Some(&admin),
        "{ eventLog(eventTypes: [\"PaymentReceived\", \"JobPaid\"], first: 10) { nodes { eventType } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&paid, "/data/eventLog/nodes"),
        &json!([]),
        "no payment was recorded: {paid}"
    );
    // Still serving.
    assert_eq!(
        data(
            &gql(&s, None, "{ version { version } }", json!({})).await,
            "/data/version/version"
        ),
        env!("CARGO_PKG_VERSION")
    );
    tests::health::assert_no_failures(&s.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_business_day_through_graphql_alone() {
    a_business_day(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_business_day_through_graphql_alone() {
    a_business_day(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_roles_are_enforced_and_bad_input_is_a_clear_error() {
    roles_and_bad_input(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_roles_are_enforced_and_bad_input_is_a_clear_error() {
    roles_and_bad_input(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_default_serves_the_demo_business_with_working_logins() {
    // As the README's first command runs it: no database, no admin configured.
    let s = Server {
        process: tests::ServerProcess::start(
            env!("CARGO_BIN_EXE_dirtfree-api"),
            &[("DEMO_SEED", "auto")],
            Duration::from_secs(120),
        )
        .await,
        mailbox: tests::standins::Mailbox::default(),
    };
    let token = login(&s, "manager@dirtfree.example", "dirtfree-demo").await;
    let r = gql(
        &s,
        Some(&token),
        "{ customers(first: 5) { totalCount nodes { name } } }",
        json!({}),
    )
    .await;
    assert!(
        data(&r, "/data/customers/totalCount").as_i64().unwrap_or(0) >= 30,
        "{r}"
    );
    tests::health::assert_no_failures(&s.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configured_first_admin_on_the_embedded_default_comes_without_the_demo_admin() {
    // ADMIN_EMAIL set, no DATABASE_URL, DEMO_SEED left at auto.
    let s = Server {
        process: tests::ServerProcess::start(
            env!("CARGO_BIN_EXE_dirtfree-api"),
            &[("ADMIN_EMAIL", ADMIN.0), ("ADMIN_PASSWORD", ADMIN.1)],
            Duration::from_secs(120),
        )
        .await,
        mailbox: tests::standins::Mailbox::default(),
    };
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let me = gql(&s, Some(&admin), "{ viewer { role } }", json!({})).await;
    assert_eq!(data(&me, "/data/viewer/role"), "ADMIN", "{me}");
    let demo = gql(
        &s,
        None,
        "mutation { login(input: {email: \"admin@dirtfree.example\", password: \"dirtfree-demo\"}) { token } }",
        json!({}),
    )
    .await;
    assert_eq!(
        code(&demo),
        "UNAUTHENTICATED",
        "the demo admin signs in: {demo}"
    );
    let customers = gql(&s, Some(&admin), "{ customers { totalCount } }", json!({})).await;
    assert_eq!(
        data(&customers, "/data/customers/totalCount"),
        0,
        "{customers}"
    );
    tests::health::assert_no_failures(&s.base).await;
}

#[test]
fn the_schema_sdl_in_docs_is_in_sync() {
    let sdl = api::graphql::sdl();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.graphql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == sdl, "docs/schema.graphql is stale: run `UPDATE_SCHEMA=1 cargo test -p tests --test graphql the_schema_sdl`");
}

// ------------------------------------------------------------- subscriptions

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` with `graphql-transport-ws` and sends `connection_init` with `token`.
async fn ws_connect(s: &Server, token: Option<&str>) -> Ws {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = s.url.replace("http://", "ws://") + "/ws";
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let payload = token.map_or(
        json!({}),
        |t| json!({ "Authorization": format!("Bearer {t}") }),
    );
    ws.send(
        json!({"type": "connection_init", "payload": payload})
            .to_string()
            .into(),
    )
    .await
    .expect("init");
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws
}

async fn ws_subscribe(ws: &mut Ws, id: &str, query: &str) {
    use futures::SinkExt;
    ws.send(
        json!({"id": id, "type": "subscribe", "payload": {"query": query}})
            .to_string()
            .into(),
    )
    .await
    .expect("subscribe");
}

/// The next protocol message (pings answered by the library are skipped), within 15 s.
async fn ws_next(ws: &mut Ws) -> Value {
    use futures::StreamExt;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("json");
            if v["type"] != "ping" && v["type"] != "pong" {
                return v;
            }
        }
    }
}

async fn subscriptions(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(Some(&db.url), &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let staff = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { position } }",
        json!({"i": {"email": "desk@dirtfree.example", "name": "Dee Desk", "role": "STAFF", "password": "front-desk-4242"}})).await;
    // Subscriptions resume after this position, so nothing committed later can be missed.
    let from = data(&staff, "/data/createStaffUser/position")
        .as_str()
        .expect("position")
        .to_string();
    let desk = login(&s, "desk@dirtfree.example", "front-desk-4242").await;

    // The admin follows customer creations; staff follow the job board.
    let mut feed = ws_connect(&s, Some(&admin)).await;
    ws_subscribe(&mut feed, "feed", &format!(
        "subscription {{ events(eventTypes: [\"CustomerCreated\"], after: \"{from}\") {{ eventType aggregateType aggregateId position actor payload }} }}"
    )).await;
    let mut board = ws_connect(&s, Some(&desk)).await;
    ws_subscribe(
        &mut board,
        "board",
        &format!(
        "subscription {{ jobBoard(after: \"{from}\") {{ aggregateType id eventType position }} }}"
    ),
    )
    .await;

    let c = gql(
        &s,
        Some(&desk),
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({"i": {"name": "Sub Scriber", "email": "sub@example.com"}}),
    )
    .await;
    let customer = data(&c, "/data/createCustomer/customer/id")
        .as_str()
        .expect("id")
        .to_string();
    let job = gql(
        &s,
        Some(&desk),
        "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"i": {"customerId": customer, "services": ["rug cleaning"]}}),
    )
    .await;
    let job = data(&job, "/data/bookJob/job/id")
        .as_str()
        .expect("job")
        .to_string();

    let next = ws_next(&mut feed).await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "feed");
    let e = &next["payload"]["data"]["events"];
    assert_eq!(e["eventType"], "CustomerCreated", "{next}");
    assert_eq!(e["aggregateId"], json!(customer));
    assert_eq!(e["payload"]["CustomerCreated"]["name"], "Sub Scriber");
    assert!(
        e["actor"].as_str().is_some_and(|a| a.starts_with("staff:")),
        "{e}"
    );

    let next = ws_next(&mut board).await;
    let change = &next["payload"]["data"]["jobBoard"];
    assert_eq!(
        (change["aggregateType"].as_str(), change["id"].as_str()),
        (Some("Job"), Some(job.as_str())),
        "{next}"
    );
    assert_eq!(change["eventType"], "JobBooked");
    // Read-your-writes from the pushed position.
    sync(&s, &desk, &change["position"]).await;

    // Staff may not follow the whole event feed; without a token nothing is served.
    let mut nosy = ws_connect(&s, Some(&desk)).await;
    ws_subscribe(&mut nosy, "x", "subscription { events { eventType } }").await;
    // Resolver errors come as a `next` whose payload carries `errors`, as over HTTP.
    let refused = ws_next(&mut nosy).await;
    assert_eq!(refused["payload"]["data"], Value::Null, "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let mut anonymous = ws_connect(&s, None).await;
    ws_subscribe(&mut anonymous, "y", "subscription { jobBoard { id } }").await;
    let refused = ws_next(&mut anonymous).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    // A bad resume position is a validation error naming the argument.
    ws_subscribe(
        &mut board,
        "bad",
        "subscription { jobBoard(after: \"yesterday\") { id } }",
    )
    .await;
    let bad = ws_next(&mut board).await;
    assert_eq!(
        bad["payload"]["errors"][0]["extensions"]["code"], "VALIDATION",
        "{bad}"
    );
    assert_eq!(
        bad["payload"]["errors"][0]["extensions"]["field"], "after",
        "{bad}"
    );

    // Chat, live: the desk follows the inbox, the customer their own conversation; another
    // customer may not follow it.
    let (ann, _) = register(&s, "Ann Live", "ann.live@example.com").await;
    let (bob, _) = register(&s, "Bob Live", "bob.live@example.com").await;
    let started = gql(
        &s,
        Some(&ann),
        "mutation { startConversation(input: {}) { conversation { id } position } }",
        json!({}),
    )
    .await;
    let chat = text(&started, "/data/startConversation/conversation/id");
    let from = text(&started, "/data/startConversation/position");
    let mut inbox = ws_connect(&s, Some(&desk)).await;
    ws_subscribe(&mut inbox, "inbox", &format!(
        "subscription {{ conversations(after: \"{from}\") {{ conversationId eventType message {{ sender text }} }} }}"
    )).await;
    let mut mine = ws_connect(&s, Some(&ann)).await;
    ws_subscribe(&mut mine, "mine", &format!(
        "subscription {{ conversation(id: \"{chat}\", after: \"{from}\") {{ eventType message {{ sender staffId text }} position }} }}"
    )).await;
    let mut theirs = ws_connect(&s, Some(&bob)).await;
    ws_subscribe(
        &mut theirs,
        "theirs",
        &format!("subscription {{ conversation(id: \"{chat}\") {{ eventType }} }}"),
    )
    .await;
    let refused = ws_next(&mut theirs).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let say = "mutation($i: AddConversationMessageInput!) { addConversationMessage(input: $i) { position } }";
    gql(
        &s,
        Some(&ann),
        say,
        json!({"i": {"conversationId": chat, "text": "Is Tuesday free?"}}),
    )
    .await;
    gql(
        &s,
        Some(&desk),
        say,
        json!({"i": {"conversationId": chat, "text": "Yes, 9am."}}),
    )
    .await;
    for (ws, field) in [(&mut inbox, "conversations"), (&mut mine, "conversation")] {
        let first = ws_next(ws).await;
        let second = ws_next(ws).await;
        let texts: Vec<Value> = [first, second]
            .iter()
            .map(|m| m["payload"]["data"][field]["message"]["text"].clone())
            .collect();
        assert_eq!(
            texts,
            vec![json!("Is Tuesday free?"), json!("Yes, 9am.")],
            "{field}"
        );
    }
    tests::health::assert_no_failures(&s.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_subscriptions_push_new_events_to_who_may_see_them() {
    subscriptions(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_subscriptions_push_new_events_to_who_may_see_them() {
    subscriptions(Engine::Sqlite).await;
}

// ------------------------------------------------- password reset and role changes

/// Every event's payload and metadata as text, and the rows left in `password_reset_tokens`.
async fn log_text_and_waiting_tokens(db: &TestDb) -> (String, i64) {
    let log = db.log().await;
    let all = "SELECT CAST(payload AS TEXT) || ' ' || CAST(metadata AS TEXT) FROM events";
    let waiting = "SELECT COUNT(*) FROM password_reset_tokens";
    let (rows, n): (Vec<String>, i64) = match &log {
        commands::EventLog::Postgres(pg) => (
            sqlx::query_scalar(all)
                .fetch_all(pg.pool())
                .await
                .expect("events"),
            sqlx::query_scalar(waiting)
                .fetch_one(pg.pool())
                .await
                .expect("tokens"),
        ),
        commands::EventLog::Sqlite(s) => (
            sqlx::query_scalar(all)
                .fetch_all(s.reader())
                .await
                .expect("events"),
            sqlx::query_scalar(waiting)
                .fetch_one(s.reader())
                .await
                .expect("tokens"),
        ),
        #[allow(unreachable_patterns)]
        _ => panic!("PostgreSQL and SQLite only"),
    };
    (rows.join("\n"), n)
}

async fn password_reset(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (inbox, resend) = tests::standins::Mailbox::start().await;
    let s = start(
        Some(&db.url),
        &[
            ("PUBLIC_URL", "https://crm.example.com"),
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_FROM_EMAIL", "Dirt Free <hello@dirtfree.example>"),
            ("RESEND_API_BASE", &resend),
            ("OUTBOX_POLL_MS", "100"),
        ],
    )
    .await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let created = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { position } }",
        json!({"i": {"email": "tech@x.example", "name": "Tess Tech", "role": "STAFF", "password": "first-password-1"}})).await;
    sync(&s, &admin, data(&created, "/data/createStaffUser/position")).await;
    let before = login(&s, "tech@x.example", "first-password-1").await;

    let request = "mutation($e: String!) { requestPasswordReset(input: {email: $e}) { accepted } }";
    let asked = gql(&s, None, request, json!({"e": "Tech@X.example"})).await;
    assert_eq!(data(&asked, "/data/requestPasswordReset/accepted"), true);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Only what went to the technician: other mail (a report to the admin) is not this test's.
    let to_tech = || {
        inbox
            .sent()
            .into_iter()
            .filter(|m| m["to"] == json!(["tech@x.example"]))
            .collect::<Vec<_>>()
    };
    while to_tech().is_empty() {
        assert!(Instant::now() < deadline, "no reset email was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mail = to_tech()[0].clone();
    assert_eq!(mail["to"], json!(["tech@x.example"]), "{mail}");
    let text = mail["text"].as_str().expect("text");
    let link = "https://crm.example.com/reset-password?token=";
    let token = text
        .split_once(link)
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
        .expect("a reset link in the email")
        .to_string();
    assert_eq!(token.len(), 43, "32 bytes, URL-safe base64: {token}");

    let reset = "mutation($t: String!, $p: String!) { resetPassword(input: {token: $t, newPassword: $p}) { staffUser { email } position } }";
    let done = gql(
        &s,
        None,
        reset,
        json!({"t": token, "p": "second-password-2"}),
    )
    .await;
    assert_eq!(
        data(&done, "/data/resetPassword/staffUser/email"),
        "tech@x.example"
    );
    login(&s, "tech@x.example", "second-password-2").await;
    let old = gql(
        &s,
        None,
        "mutation { login(input: {email: \"tech@x.example\", password: \"first-password-1\"}) { token } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&old), "UNAUTHENTICATED", "{old}");
    // The session opened with the old password has ended.
    let stale = gql(
        &s,
        Some(&before),
        "{ customers(first: 1) { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&stale), "UNAUTHENTICATED", "{stale}");
    // A token works once.
    let again = gql(
        &s,
        None,
        reset,
        json!({"t": token, "p": "third-password-3"}),
    )
    .await;
    assert_eq!(code(&again), "VALIDATION", "{again}");
    assert_eq!(field(&again), "token");
    assert!(!again.to_string().contains(&token), "{again}");

    // An unknown address is answered exactly the same, and nothing is sent.
    let unknown = gql(&s, None, request, json!({"e": "nobody@x.example"})).await;
    assert_eq!(unknown, asked);
    let wrong = gql(
        &s,
        None,
        reset,
        json!({"t": "not-a-token", "p": "third-password-3"}),
    )
    .await;
    assert_eq!(code(&wrong), "VALIDATION", "{wrong}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(to_tech().len(), 1, "{:?}", inbox.sent());
    assert!(
        !inbox
            .sent()
            .iter()
            .any(|m| m["to"] == json!(["nobody@x.example"])),
        "an unknown address was sent something: {:?}",
        inbox.sent()
    );

    // The log has the email (with a placeholder where the token goes) but never the token,
    // and the token's waiting row is gone once the email went out.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (log, waiting) = log_text_and_waiting_tokens(&db).await;
        assert!(!log.contains(&token), "the reset token is in the event log");
        assert!(
            log.contains("reset-password?token={reset_token}"),
            "no reset email in the log"
        );
        if waiting == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the sent token was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tests::health::assert_no_failures(&s.base).await;
}

async fn role_changes(engine: Engine) {
    let db = TestDb::new(engine).await;
    let s = start(Some(&db.url), &[]).await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let created = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } position } }",
        json!({"i": {"email": "rise@x.example", "name": "Ray Rise", "role": "STAFF", "password": "long-enough-pw"}})).await;
    sync(&s, &admin, data(&created, "/data/createStaffUser/position")).await;
    let id = data(&created, "/data/createStaffUser/staffUser/id").clone();
    let user = login(&s, "rise@x.example", "long-enough-pw").await;
    let revenue = "{ revenue(from: \"2026-01-01\", to: \"2026-01-02\", groupBy: DAY) { key } }";
    assert_eq!(
        code(&gql(&s, Some(&user), revenue, json!({})).await),
        "FORBIDDEN"
    );

    let change = "mutation($id: ID!, $r: StaffRole!) { changeStaffRole(input: {staffUserId: $id, role: $r}) { staffUser { id role } position } }";
    let promoted = gql(&s, Some(&admin), change, json!({"id": id, "r": "MANAGER"})).await;
    assert_eq!(
        data(&promoted, "/data/changeStaffRole/staffUser/role"),
        "MANAGER"
    );
    assert!(!data(&promoted, "/data/changeStaffRole/position")
        .as_str()
        .unwrap_or_default()
        .is_empty());
    // The open session has the new role at once.
    let r = gql(&s, Some(&user), revenue, json!({})).await;
    data(&r, "/data/revenue");

    // A manager may not change roles, not even their own.
    let own = gql(&s, Some(&user), change, json!({"id": id, "r": "ADMIN"})).await;
    assert_eq!(code(&own), "FORBIDDEN", "{own}");

    // An admin cannot demote themselves.
    let me = gql(&s, Some(&admin), "{ viewer { id } }", json!({})).await;
    let me = data(&me, "/data/viewer/id").clone();
    let demote = gql(&s, Some(&admin), change, json!({"id": me, "r": "STAFF"})).await;
    assert_eq!(code(&demote), "RULE_VIOLATION", "{demote}");
    assert_eq!(
        demote["errors"][0]["extensions"]["rule"],
        "CANNOT_DEMOTE_SELF"
    );
    let still = gql(
        &s,
        Some(&admin),
        "{ staffUsers { nodes { email role } } }",
        json!({}),
    )
    .await;
    assert!(
        data(&still, "/data/staffUsers/nodes")
            .to_string()
            .contains("\"ADMIN\""),
        "{still}"
    );

    let bad = gql(
        &s,
        Some(&admin),
        change,
        json!({"id": "nope", "r": "STAFF"}),
    )
    .await;
    assert_eq!(code(&bad), "VALIDATION", "{bad}");
    assert_eq!(field(&bad), "staffUserId");
    tests::health::assert_no_failures(&s.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_staff_user_resets_a_forgotten_password_with_an_emailed_link() {
    password_reset(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_staff_user_resets_a_forgotten_password_with_an_emailed_link() {
    password_reset(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_only_an_admin_changes_roles_and_never_their_own_down() {
    role_changes(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_only_an_admin_changes_roles_and_never_their_own_down() {
    role_changes(Engine::Sqlite).await;
}

/// A failed sign-in from `forwarded_for` (sent as `X-Forwarded-For`); the error code.
async fn failed_login_from(s: &Server, forwarded_for: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(&s.url)
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"query": "mutation { login(input: {email: \"nobody@x.example\", password: \"wrong-password\"}) { token } }"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    code(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sign_in_limit_follows_the_client_behind_a_trusted_proxy_only() {
    // Behind a trusted proxy (this test's client, 127.0.0.1), each forwarded client has its own limit.
    let s = start(None, &[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let mut limited = false;
    for _ in 0..15 {
        if failed_login_from(&s, "203.0.113.1").await == "RATE_LIMITED" {
            limited = true;
            break;
        }
    }
    assert!(limited, "one forwarded client was never limited");
    assert_eq!(
        failed_login_from(&s, "203.0.113.2").await,
        "UNAUTHENTICATED",
        "another client is not"
    );
    tests::health::assert_no_failures(&s.base).await;
    drop(s);
    // Without it, X-Forwarded-For is the client's own claim: changing it does not escape the limit.
    let s = start(None, &[]).await;
    let mut codes = Vec::new();
    for i in 0..15 {
        codes.push(failed_login_from(&s, &format!("198.51.100.{i}")).await);
    }
    assert!(codes.iter().any(|c| c == "RATE_LIMITED"), "{codes:?}");
    tests::health::assert_no_failures(&s.base).await;
}

// ------------------------------------------------------------ the rest of the operations

/// What the Stripe stand-in was asked.
#[derive(Default)]
struct StripeCalls {
    /// Each request's `Idempotency-Key`, in order.
    keys: Vec<Option<String>>,
    /// The intent made for each key.
    intents: std::collections::HashMap<String, String>,
    /// Intents made.
    made: usize,
}

/// A stand-in for Stripe's PaymentIntents endpoint. As Stripe does, it makes an intent for
/// each new `Idempotency-Key` and answers a repeated key with that key's intent; it keeps
/// every request's key.
#[derive(Clone, Default)]
struct StripeStandIn(std::sync::Arc<std::sync::Mutex<StripeCalls>>);

impl StripeStandIn {
    /// The `Idempotency-Key` of each request so far, in order.
    fn keys(&self) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .clone()
    }
}

async fn stripe_stand_in() -> (String, StripeStandIn) {
    let stand_in = StripeStandIn::default();
    let calls = stand_in.clone();
    let app = axum::Router::new().route(
        "/v1/payment_intents",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let id = {
                let mut c = calls.0.lock().unwrap_or_else(|e| e.into_inner());
                c.keys.push(key.clone());
                let known = key.as_ref().and_then(|k| c.intents.get(k).cloned());
                match known {
                    Some(id) => id,
                    None => {
                        c.made += 1;
                        let id = format!("pi_test_{}", c.made);
                        if let Some(k) = key {
                            c.intents.insert(k, id.clone());
                        }
                        id
                    }
                }
            };
            async move {
                axum::Json(json!({"id": id, "client_secret": format!("{id}_secret_abc")}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, stand_in)
}

/// The cron endpoint's secret in the scenarios that run scheduled jobs by hand.
const CRON_SECRET: &str = "cron-secret-for-the-graphql-scenarios-0123456789";

/// Runs scheduled job `job` now through `POST /api/cron/execute/{job}`, waiting out a run
/// the scheduler itself holds (409).
async fn run_job(s: &Server, job: &str) {
    let url = format!("{}/api/cron/execute/{job}", s.base);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = reqwest::Client::new()
            .post(&url)
            .bearer_auth(CRON_SECRET)
            .send()
            .await
            .expect("cron");
        match r.status().as_u16() {
            200 => return,
            409 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            status => panic!(
                "{job}: HTTP {status}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
}

/// The link of an email's `List-Unsubscribe` header.
fn unsubscribe_link(mail: &Value) -> String {
    mail["headers"]["List-Unsubscribe"]
        .as_str()
        .unwrap_or_else(|| panic!("no List-Unsubscribe: {mail}"))
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// A portal sign-up as a person makes it: a code asked for, read from the mailbox, typed in.
/// Returns the `registerPortalAccount` answer.
async fn sign_up(s: &Server, input: Value) -> Value {
    let email = input["email"].as_str().expect("email").to_string();
    let r = gql(
        s,
        None,
        tests::standins::START_SIGN_UP,
        json!({"i": {"email": email}}),
    )
    .await;
    assert_eq!(data(&r, "/data/startPortalSignUp/accepted"), true);
    let mut input = input;
    input["code"] = json!(s.mailbox.code_for(&email).await);
    gql(s, None, "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token customerId } }",
        json!({ "i": input })).await
}

async fn register(s: &Server, name: &str, email: &str) -> (String, String) {
    let r = sign_up(
        s,
        json!({"name": name, "email": email, "password": "portal-password-1"}),
    )
    .await;
    (
        data(&r, "/data/registerPortalAccount/token")
            .as_str()
            .expect("token")
            .to_string(),
        data(&r, "/data/registerPortalAccount/customerId")
            .as_str()
            .expect("id")
            .to_string(),
    )
}

fn text(v: &Value, path: &str) -> String {
    data(v, path).as_str().expect("string").to_string()
}

async fn the_rest_of_the_api(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (stripe_base, stripe) = stripe_stand_in().await;
    let s = start(
        Some(&db.url),
        &[
            ("STRIPE_SECRET_KEY", "sk_test_graphql"),
            ("STRIPE_API_BASE", stripe_base.as_str()),
            ("CRON_SECRET", CRON_SECRET),
        ],
    )
    .await;
    let admin = login(&s, ADMIN.0, ADMIN.1).await;
    let mk = gql(&s, Some(&admin), "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { staffUser { id } position } }",
        json!({"i": {"email": "kim@x.example", "name": "Kim", "role": "STAFF", "password": "kims-password-1"}})).await;
    sync(&s, &admin, data(&mk, "/data/createStaffUser/position")).await;
    let kim_id = text(&mk, "/data/createStaffUser/staffUser/id");
    let kim = login(&s, "kim@x.example", "kims-password-1").await;

    // --- Customers: addresses, birthday, notes, tags, merge.
    let (ann_token, ann) = register(&s, "Ann Able", "ann@example.com").await;
    let (bob_token, bob) = register(&s, "Bob Baker", "bob@example.com").await;
    let edit = |q: &'static str, i: Value| {
        let s = &s;
        let kim = kim.clone();
        async move { gql(s, Some(&kim), q, json!({ "i": i })).await }
    };
    let r = edit("mutation($i: AddCustomerAddressInput!) { addCustomerAddress(input: $i) { customer { addresses { label line1 city postalCode } } } }",
        json!({"id": ann, "label": "home", "line1": "1 Main St", "city": "Austin", "region": "TX", "postalCode": "78701"})).await;
    assert_eq!(
        data(&r, "/data/addCustomerAddress/customer/addresses"),
        &json!([{"label": "home", "line1": "1 Main St", "city": "Austin", "postalCode": "78701"}])
    );
    let r = edit("mutation($i: AddCustomerAddressInput!) { addCustomerAddress(input: $i) { position } }",
        json!({"id": ann, "label": "rental", "line1": "", "city": "Austin", "region": "TX", "postalCode": "78701"})).await;
    assert_eq!(
        (code(&r), field(&r)),
        ("VALIDATION".to_string(), json!("address.line1")),
        "{r}"
    );
    let r = edit("mutation($i: RemoveCustomerAddressInput!) { removeCustomerAddress(input: $i) { customer { addresses { label } } } }",
        json!({"id": ann, "label": "home"})).await;
    assert_eq!(
        data(&r, "/data/removeCustomerAddress/customer/addresses"),
        &json!([])
    );
    let r = edit("mutation($i: SetCustomerBirthdayInput!) { setCustomerBirthday(input: $i) { customer { birthday } } }",
        json!({"id": ann, "birthday": "1990-03-08"})).await;
    assert_eq!(
        data(&r, "/data/setCustomerBirthday/customer/birthday"),
        "1990-03-08"
    );
    let r = edit("mutation($i: AddCustomerNoteInput!) { addCustomerNote(input: $i) { customer { noteCount } } }",
        json!({"id": ann, "text": "Has a dog; use the side door."})).await;
    assert_eq!(data(&r, "/data/addCustomerNote/customer/noteCount"), 1);
    edit(
        "mutation($i: TagCustomerInput!) { tagCustomer(input: $i) { position } }",
        json!({"id": ann, "tag": "vip"}),
    )
    .await;
    let r = edit(
        "mutation($i: TagCustomerInput!) { untagCustomer(input: $i) { customer { tags } } }",
        json!({"id": ann, "tag": "vip"}),
    )
    .await;
    assert_eq!(data(&r, "/data/untagCustomer/customer/tags"), &json!([]));
    // A duplicate of Ann, merged into her by a manager (staff may not).
    let dup = edit(
        "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
        json!({"name": "Ann Able (dup)"}),
    )
    .await;
    let dup = text(&dup, "/data/createCustomer/customer/id");
    let merge = "mutation($i: MergeCustomersInput!) { mergeCustomers(input: $i) { customer { id } position } }";
    let r = gql(
        &s,
        Some(&kim),
        merge,
        json!({"i": {"duplicateId": dup, "survivorId": ann}}),
    )
    .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let r = gql(
        &s,
        Some(&admin),
        merge,
        json!({"i": {"duplicateId": ann, "survivorId": ann}}),
    )
    .await;
    assert_eq!(code(&r), "VALIDATION", "{r}");
    let r = gql(
        &s,
        Some(&admin),
        merge,
        json!({"i": {"duplicateId": dup, "survivorId": ann}}),
    )
    .await;
    assert_eq!(data(&r, "/data/mergeCustomers/customer/id"), &json!(ann));
    let r = gql(
        &s,
        Some(&admin),
        "query($id: ID!) { customer(id: $id) { mergedIntoId } }",
        json!({"id": dup}),
    )
    .await;
    assert_eq!(data(&r, "/data/customer/mergedIntoId"), &json!(ann));
    let r = gql(
        &s,
        Some(&admin),
        "{ customers(search: \"Ann Able\") { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/customers/totalCount"),
        1,
        "the duplicate left the list"
    );

    // --- Ann keeps her own record in the portal: contact details and marketing choices.
    let mine = "mutation($i: UpdateMyProfileInput!) { updateMyProfile(input: $i) { customer { id name email phone } } }";
    let r = gql(
        &s,
        Some(&ann_token),
        mine,
        json!({"i": {"name": "Ann Able", "email": "BOB@example.com"}}),
    )
    .await;
    // Refused as any other address is (the answer does not tell it is Bob's).
    assert_eq!(
        (code(&r), field(&r)),
        ("VALIDATION".to_string(), json!("email")),
        "the sign-in moves only with a code: {r}"
    );
    let r = gql(
        &s,
        Some(&ann_token),
        mine,
        json!({"i": {"name": "Ann Able", "email": "ann@example.com", "phone": "+15125550142"}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/updateMyProfile/customer"),
        &json!({"id": ann, "name": "Ann Able", "email": "ann@example.com", "phone": "+15125550142"})
    );
    // A form that leaves the email out does not take Ann's sign-in away.
    let r = gql(
        &s,
        Some(&ann_token),
        mine,
        json!({"i": {"name": "Ann Able"}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/updateMyProfile/customer"),
        &json!({"id": ann, "name": "Ann Able", "email": "ann@example.com", "phone": "+15125550142"})
    );
    let consent = "mutation($i: MyMarketingConsentInput!) { setMyMarketingConsent(input: $i) { customer { smsConsent } } }";
    // A number Ann typed in is not provably hers (contact_confirmation.rs confirms one by code).
    let r = gql(
        &s,
        Some(&ann_token),
        consent,
        json!({"i": {"channel": "SMS", "granted": true}}),
    )
    .await;
    assert_eq!(
        r["errors"][0]["extensions"]["rule"], "CONTACT_NOT_CONFIRMED",
        "{r}"
    );
    // Staff entering her number vouch for it.
    let r = gql(
        &s,
        Some(&admin),
        "mutation($i: UpdateCustomerContactInput!) { updateCustomerContact(input: $i) { customer { phone } } }",
        json!({"i": {"id": ann, "name": "Ann Able", "email": "ann@example.com", "phone": "+15125550143"}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/updateCustomerContact/customer/phone"),
        "+15125550143"
    );
    let r = gql(
        &s,
        Some(&ann_token),
        consent,
        json!({"i": {"channel": "SMS", "granted": true}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/setMyMarketingConsent/customer/smsConsent"),
        true
    );
    let r = gql(
        &s,
        Some(&ann_token),
        consent,
        json!({"i": {"channel": "SMS", "granted": false}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/setMyMarketingConsent/customer/smsConsent"),
        false
    );
    assert_eq!(
        code(
            &gql(
                &s,
                Some(&kim),
                consent,
                json!({"i": {"channel": "SMS", "granted": true}})
            )
            .await
        ),
        "FORBIDDEN"
    );
    let types = tests::app_support::stream_types(&db.log().await, "Customer", &ann).await;
    assert!(
        types.contains(&"SmsConsentRevoked".to_string()),
        "{types:?}"
    );

    // --- Ann moves, then cancels, her own online booking; Bob can do neither to it.
    let online = gql(
        &s,
        Some(&ann_token),
        "mutation { bookServiceOnline(input: {services: [\"stairs\"]}) { job { id } } }",
        json!({}),
    )
    .await;
    let online = text(&online, "/data/bookServiceOnline/job/id");
    let mv = "mutation($i: RescheduleJobInput!) { rescheduleMyBooking(input: $i) { job { status scheduledStart } } }";
    // A week from now, on the hour: always in the future, whenever the suite runs.
    let hour = |h: i64| {
        let t = chrono::Utc::now() + chrono::Duration::days(7) + chrono::Duration::hours(h);
        t.format("%Y-%m-%dT%H:00:00Z").to_string()
    };
    let (start, end) = (hour(0), hour(1));
    let window = json!({"jobId": online, "start": start, "end": end});
    assert_eq!(
        code(&gql(&s, Some(&bob_token), mv, json!({"i": window})).await),
        "FORBIDDEN"
    );
    let past =
        json!({"jobId": online, "start": "2020-01-01T15:00:00Z", "end": "2020-01-01T16:00:00Z"});
    let r = gql(&s, Some(&ann_token), mv, json!({"i": past})).await;
    assert_eq!(field(&r), "start", "{r}");
    let r = gql(&s, Some(&ann_token), mv, json!({"i": window})).await;
    assert_eq!(
        data(&r, "/data/rescheduleMyBooking/job"),
        &json!({"status": "scheduled", "scheduledStart": start})
    );
    let cancel = "mutation($i: CancelJobInput!) { cancelMyBooking(input: $i) { job { status } } }";
    let r = gql(
        &s,
        Some(&bob_token),
        cancel,
        json!({"i": {"jobId": online, "reason": "not mine"}}),
    )
    .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    // An id that belongs to nobody answers the same as someone else's.
    let nobody = json!({"i": {"jobId": "00000000-0000-4000-8000-000000000042", "reason": "x"}});
    assert_eq!(
        code(&gql(&s, Some(&bob_token), cancel, nobody).await),
        "FORBIDDEN"
    );
    let r = gql(
        &s,
        Some(&ann_token),
        cancel,
        json!({"i": {"jobId": online, "reason": "away that week"}}),
    )
    .await;
    assert_eq!(data(&r, "/data/cancelMyBooking/job/status"), "cancelled");

    // --- Jobs: reschedule, card payment, the van to the workshop.
    let booked = edit("mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"customerId": ann, "services": ["rug cleaning"], "start": "2026-12-01T15:00:00Z", "end": "2026-12-01T16:00:00Z"})).await;
    let job = text(&booked, "/data/bookJob/job/id");
    let r = edit("mutation($i: RescheduleJobInput!) { rescheduleJob(input: $i) { job { scheduledStart rescheduleCount } } }",
        json!({"jobId": job, "start": "2026-12-02T15:00:00Z", "end": "2026-12-02T16:00:00Z", "reason": "customer away"})).await;
    assert_eq!(
        data(&r, "/data/rescheduleJob/job"),
        &json!({"scheduledStart": "2026-12-02T15:00:00Z", "rescheduleCount": 1})
    );
    let pay = "mutation($i: RequestJobPaymentInput!) { requestJobPayment(input: $i) { paymentId providerIntentId clientSecret amount { amountCents } position } }";
    let r = gql(&s, Some(&kim), pay, json!({"i": {"jobId": job}})).await;
    assert_eq!(code(&r), "RULE_VIOLATION", "not completed yet: {r}");
    for (m, i) in [
        (
            "mutation($i: StartJobInput!) { startJob(input: $i) { position } }",
            json!({"jobId": job}),
        ),
        (
            "mutation($i: CompleteJobInput!) { completeJob(input: $i) { position } }",
            json!({"jobId": job, "amountCents": 15000, "services": ["rug cleaning"], "technicianId": kim_id}),
        ),
    ] {
        let r = edit(m, i).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let first = gql(
        &s,
        Some(&kim),
        pay,
        json!({"i": {"jobId": job, "idempotencyKey": "pay-ann-1"}}),
    )
    .await;
    assert_eq!(
        data(&first, "/data/requestJobPayment/amount/amountCents"),
        15000
    );
    assert_eq!(
        data(&first, "/data/requestJobPayment/providerIntentId"),
        "pi_test_1"
    );
    assert_eq!(
        data(&first, "/data/requestJobPayment/clientSecret"),
        "pi_test_1_secret_abc"
    );
    // A retry with the key is the same payment, recorded once.
    let again = gql(
        &s,
        Some(&kim),
        pay,
        json!({"i": {"jobId": job, "idempotencyKey": "pay-ann-1"}}),
    )
    .await;
    assert_eq!(
        data(&again, "/data/requestJobPayment/paymentId"),
        data(&first, "/data/requestJobPayment/paymentId")
    );
    let payment = text(&first, "/data/requestJobPayment/paymentId");
    let types = tests::app_support::stream_types(&db.log().await, "Payment", &payment).await;
    assert_eq!(types, vec!["PaymentIntentCreated".to_string()]);
    // Stripe was asked twice (the API keeps no intent to answer a retry from), both times
    // under the payment's own key, so it made one intent and the retry shows that one.
    assert_eq!(
        stripe.keys(),
        vec![Some(format!("dirtfree-pi-{payment}")); 2],
        "the refused ask before completion never reached Stripe"
    );
    assert_eq!(
        data(&again, "/data/requestJobPayment/providerIntentId"),
        "pi_test_1"
    );

    let van = gql(
        &s,
        Some(&admin),
        "mutation { registerVehicle(input: {name: \"Van 9\"}) { vehicleId } }",
        json!({}),
    )
    .await;
    let van = text(&van, "/data/registerVehicle/vehicleId");
    let shop = "mutation($i: SendVehicleToMaintenanceInput!) { sendVehicleToMaintenance(input: $i) { position } }";
    let r = gql(
        &s,
        Some(&kim),
        shop,
        json!({"i": {"vehicleId": van, "reason": "brakes"}}),
    )
    .await;
    assert_eq!(code(&r), "FORBIDDEN");
    let r = gql(
        &s,
        Some(&admin),
        shop,
        json!({"i": {"vehicleId": van, "reason": "x".repeat(201)}}),
    )
    .await;
    assert_eq!(field(&r), "reason", "{r}");
    let r = gql(
        &s,
        Some(&admin),
        shop,
        json!({"i": {"vehicleId": van, "reason": "brakes"}}),
    )
    .await;
    sync(
        &s,
        &admin,
        data(&r, "/data/sendVehicleToMaintenance/position"),
    )
    .await;
    let board = gql(
        &s,
        Some(&kim),
        "{ vehicles { nodes { id status } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&board, "/data/vehicles/nodes"),
        &json!([{"id": van, "status": "maintenance"}])
    );
    let r = gql(
        &s,
        Some(&admin),
        "mutation($i: VehicleRefInput!) { returnVehicleFromMaintenance(input: $i) { position vehicle { status } } }",
        json!({"i": {"vehicleId": van}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/returnVehicleFromMaintenance/vehicle/status"),
        "available",
        "the payload shows the van as the board does"
    );
    sync(
        &s,
        &admin,
        data(&r, "/data/returnVehicleFromMaintenance/position"),
    )
    .await;
    let board = gql(
        &s,
        Some(&kim),
        "{ vehicles { nodes { status } } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&board, "/data/vehicles/nodes/0/status"), "available");

    // --- The fleet follows the jobs: a started job's van is out, back when the job ends.
    let booked = edit("mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } } }",
        json!({"customerId": ann, "services": ["tile cleaning"], "start": "2026-12-03T15:00:00Z", "end": "2026-12-03T16:00:00Z"})).await;
    let job2 = text(&booked, "/data/bookJob/job/id");
    edit(
        "mutation($i: AssignVehicleInput!) { assignVehicle(input: $i) { position } }",
        json!({"jobId": job2, "vehicleId": van}),
    )
    .await;
    edit(
        "mutation($i: StartJobInput!) { startJob(input: $i) { position } }",
        json!({"jobId": job2}),
    )
    .await;
    let board_is = |want: Value| {
        let s = &s;
        let kim = kim.clone();
        async move {
            let first = |b: &Value| data(b, "/data/vehicles/nodes/0").clone();
            let b = eventually(
                s,
                &kim,
                "{ vehicles { nodes { status currentJobId } } }",
                json!({}),
                20,
                |b| first(b) == want,
            )
            .await;
            assert_eq!(first(&b), want);
        }
    };
    board_is(json!({"status": "on_job", "currentJobId": job2})).await;
    edit("mutation($i: CompleteJobInput!) { completeJob(input: $i) { position } }", json!({"jobId": job2, "amountCents": 5000, "services": ["tile cleaning"], "technicianId": kim_id})).await;
    board_is(json!({"status": "available", "currentJobId": null})).await;

    // --- A cheque for that job: recorded once even when retried; the job shows paid.
    let cheque = "mutation($i: RecordJobPaymentInput!) { recordJobPayment(input: $i) { paymentId amount { amountCents } position } }";
    // Staff cannot mark it paid with a cent: less than the job costs is a manager's call.
    let cent = gql(
        &s,
        Some(&kim),
        cheque,
        json!({"i": {"jobId": job2, "method": "CASH", "amountCents": 1}}),
    )
    .await;
    assert_eq!(
        (code(&cent), cent["errors"][0]["extensions"]["rule"].clone()),
        ("RULE_VIOLATION".to_string(), json!("AMOUNT_BELOW_DUE")),
        "{cent}"
    );
    let i = json!({"i": {"jobId": job2, "method": "CHECK", "reference": "1042", "idempotencyKey": "cheque-1042"}});
    // Two screens at once (different people, different keys) record the money once.
    let cash = json!({"i": {"jobId": job2, "method": "CASH", "idempotencyKey": "cash-at-door"}});
    let (a, b) = tokio::join!(
        gql(&s, Some(&kim), cheque, i.clone()),
        gql(&s, Some(&admin), cheque, cash.clone())
    );
    let ((token, input, first), loser) = if a.get("errors").is_none() {
        ((kim.clone(), i, a), b)
    } else {
        ((admin.clone(), cash, b), a)
    };
    assert!(
        ["RULE_VIOLATION", "CONFLICT"].contains(&code(&loser).as_str()),
        "{loser}"
    );
    assert_eq!(
        data(&first, "/data/recordJobPayment/amount/amountCents"),
        5000
    );
    // The winner's retry with its key is the first outcome.
    let again = gql(&s, Some(&token), cheque, input).await;
    assert_eq!(
        data(&again, "/data/recordJobPayment/paymentId"),
        data(&first, "/data/recordJobPayment/paymentId")
    );
    let payment = text(&first, "/data/recordJobPayment/paymentId");
    let types = tests::app_support::stream_types(&db.log().await, "Payment", &payment).await;
    assert_eq!(types, vec!["PaymentReceived".to_string()]);
    let j = eventually(
        &s,
        &kim,
        "query($id: ID!) { job(id: $id) { paid } }",
        json!({"id": job2}),
        20,
        |j| data(j, "/data/job/paid") == true,
    )
    .await;
    assert!(
        data(&j, "/data/job/paid") == true,
        "the job was never marked paid: {j}"
    );
    let twice = gql(
        &s,
        Some(&kim),
        cheque,
        json!({"i": {"jobId": job2, "method": "CASH"}}),
    )
    .await;
    assert_eq!(
        (
            code(&twice),
            twice["errors"][0]["extensions"]["rule"].clone()
        ),
        ("RULE_VIOLATION".into(), json!("JOB_ALREADY_PAID")),
        "{twice}"
    );

    // --- The offer page: viewed, then accepted, by its customer only; archive after the win.
    gql(&s, Some(&kim), "mutation($id: ID!) { setMarketingConsent(input: {id: $id, channel: EMAIL, granted: true}) { position } }", json!({"id": bob})).await;
    let opp = gql(&s, Some(&admin), "mutation($i: CreateOpportunityInput!) { createOpportunity(input: $i) { opportunity { id } } }",
        json!({"i": {"customerId": bob, "title": "Sofa", "valueCents": 20000}})).await;
    let opp = text(&opp, "/data/createOpportunity/opportunity/id");
    for (m, i) in [
        (
            "mutation($i: ConfigureAutoOfferInput!) { configureAutoOffer(input: $i) { position } }",
            json!({"id": opp, "percentOff": 10, "expiresAt": "2030-01-01T00:00:00Z"}),
        ),
        (
            "mutation($i: SendOfferInput!) { sendOffer(input: $i) { position } }",
            json!({"id": opp, "channel": "EMAIL"}),
        ),
    ] {
        let r = gql(&s, Some(&admin), m, json!({ "i": i })).await;
        assert!(r.get("errors").is_none(), "{r}");
    }
    let viewed = "mutation($i: OpportunityRefInput!) { recordOfferViewed(input: $i) { opportunity { offerStatus } } }";
    let r = gql(&s, Some(&ann_token), viewed, json!({"i": {"id": opp}})).await;
    assert_eq!(code(&r), "FORBIDDEN", "Ann cannot touch Bob's offer: {r}");
    let r = gql(&s, Some(&bob_token), viewed, json!({"i": {"id": opp}})).await;
    assert_eq!(
        data(&r, "/data/recordOfferViewed/opportunity/offerStatus"),
        "viewed"
    );
    let r = gql(
        &s,
        Some(&admin),
        "mutation($i: OpportunityRefInput!) { archiveOpportunity(input: $i) { position } }",
        json!({"i": {"id": opp}}),
    )
    .await;
    assert_eq!(
        code(&r),
        "RULE_VIOLATION",
        "an open opportunity is not archived: {r}"
    );
    let r = gql(
        &s,
        Some(&admin),
        "mutation($i: LoseOpportunityInput!) { loseOpportunity(input: $i) { position } }",
        json!({"i": {"id": opp, "reason": "price"}}),
    )
    .await;
    assert!(r.get("errors").is_none(), "{r}");
    let r = gql(&s, Some(&admin), "mutation($i: OpportunityRefInput!) { archiveOpportunity(input: $i) { opportunity { archived } } }", json!({"i": {"id": opp}})).await;
    assert_eq!(
        data(&r, "/data/archiveOpportunity/opportunity/archived"),
        true
    );
    let listed = gql(&s, Some(&kim), "query($c: ID) { a: opportunities(customerId: $c) { totalCount } b: opportunities(customerId: $c, includeArchived: true) { totalCount } }", json!({"c": bob})).await;
    assert_eq!(
        (
            data(&listed, "/data/a/totalCount"),
            data(&listed, "/data/b/totalCount")
        ),
        (&json!(0), &json!(1))
    );

    // --- A campaign's content is replaced before it goes out.
    let created = gql(&s, Some(&admin), "mutation($i: CreatePromotionInput!) { createPromotion(input: $i) { promotionId position } }",
        json!({"i": {"name": "Spring", "channel": "EMAIL", "template": "Hi", "startsAt": "2030-03-01T00:00:00Z", "endsAt": "2030-04-01T00:00:00Z"}})).await;
    let promo = text(&created, "/data/createPromotion/promotionId");
    sync(&s, &admin, data(&created, "/data/createPromotion/position")).await;
    // Without a discount code the code is null (it once read as the text "null").
    let r = gql(
        &s,
        Some(&admin),
        "{ promotions { nodes { id discountCode } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/promotions/nodes"),
        &json!([{"id": promo, "discountCode": null}])
    );
    // The new content runs from now for thirty days (its last day as the business's zone,
    // the default, writes it), its template naming the customer.
    let ends = chrono::Utc::now() + chrono::Duration::days(30);
    let ends_on = ends
        .with_timezone(&chrono_tz::America::Chicago)
        .format("%B %-d, %Y")
        .to_string();
    let starts = chrono::Utc::now() - chrono::Duration::minutes(1);
    let template =
        "Hi {{ first_name }} ({{ name }}): {{ code }} takes 10% off until {{ ends_on }}.";
    let r = gql(&s, Some(&admin), "mutation($i: UpdatePromotionInput!) { updatePromotion(input: $i) { position promotion { name } } }",
        json!({"i": {"id": promo, "content": {"name": "Spring clean", "channel": "EMAIL", "template": template, "discountCode": "SPRING10", "startsAt": starts.to_rfc3339(), "endsAt": ends.to_rfc3339()}}})).await;
    assert_eq!(
        data(&r, "/data/updatePromotion/promotion/name"),
        "Spring clean"
    );
    sync(&s, &admin, data(&r, "/data/updatePromotion/position")).await;
    let r = gql(
        &s,
        Some(&admin),
        "{ promotions { nodes { id name discountCode } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/promotions/nodes"),
        &json!([{"id": promo, "name": "Spring clean", "discountCode": "SPRING10"}])
    );
    // It goes out with the new content, rendered for each customer. Bob is the only one with
    // email consent: he reads his first name, his name, the code and the last day, no
    // placeholder, in one email.
    // Far enough ahead that a slow machine still schedules it in the future (the domain
    // refuses a past sendAt); the test then waits until it has come.
    let send_at = chrono::Utc::now() + chrono::Duration::seconds(5);
    let r = gql(
        &s,
        Some(&admin),
        "mutation($i: SchedulePromotionInput!) { schedulePromotion(input: $i) { position } }",
        json!({"i": {"id": promo, "sendAt": send_at.to_rfc3339()}}),
    )
    .await;
    sync(&s, &admin, data(&r, "/data/schedulePromotion/position")).await;
    let until_due = (send_at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until_due + Duration::from_millis(100)).await;
    run_job(&s, "process-promotion-deliveries").await;
    let log = eventually(&s, &admin, "query($c: ID) { outboundMessages(customerId: $c, kind: \"promotion\") { nodes { kind channel customerId status notSentReason } } }", json!({"c": bob}), 20, |r| {
        r.pointer("/data/outboundMessages/nodes/0/status") == Some(&json!("sent"))
    })
    .await;
    assert_eq!(
        data(&log, "/data/outboundMessages/nodes"),
        &json!([{"kind": "promotion", "channel": "email", "customerId": bob, "status": "sent", "notSentReason": null}])
    );
    // Bob's emails with a subject, as the Resend stand-in received them.
    let mail_to_bob = |subject: &str| -> Vec<Value> {
        s.mailbox
            .sent()
            .into_iter()
            .filter(|m| m["to"] == json!(["bob@example.com"]) && m["subject"] == subject)
            .collect()
    };
    let spring = mail_to_bob("Spring clean");
    assert_eq!(spring.len(), 1, "{spring:?}");
    let body = spring[0]["text"].as_str().unwrap_or_default();
    assert_eq!(
        body,
        format!(
            "Hi Bob (Bob Baker): SPRING10 takes 10% off until {ends_on}.\n\nUnsubscribe: {}",
            unsubscribe_link(&spring[0])
        )
    );
    assert!(
        !body.contains('{') && !body.contains('}'),
        "a placeholder reached Bob: {body}"
    );

    // --- A scheduled report is deleted (managers), once even when retried; it stays listed
    // only on request.
    let report = gql(&s, Some(&admin), "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { reportId } }",
        json!({"i": {"name": "Daily", "metrics": ["REVENUE"], "period": "DAILY", "recipients": ["owner@dirtfree.example"], "cron": "0 7 * * *"}})).await;
    let report = text(&report, "/data/defineScheduledReport/reportId");
    let delete = "mutation($i: DeleteScheduledReportInput!) { deleteScheduledReport(input: $i) { reportId position report { deleted } } }";
    let i = json!({"i": {"id": report, "idempotencyKey": "delete-daily"}});
    assert_eq!(
        code(&gql(&s, Some(&kim), delete, i.clone()).await),
        "FORBIDDEN"
    );
    let first = gql(&s, Some(&admin), delete, i.clone()).await;
    let again = gql(&s, Some(&admin), delete, i).await;
    assert_eq!(
        data(&again, "/data/deleteScheduledReport/position"),
        data(&first, "/data/deleteScheduledReport/position"),
        "a retried delete is the first outcome"
    );
    assert_eq!(
        data(&first, "/data/deleteScheduledReport/report/deleted"),
        true
    );
    let listed = gql(&s, Some(&admin), "{ a: scheduledReports { totalCount } b: scheduledReports(includeDeleted: true) { nodes { id deleted } } }", json!({})).await;
    assert_eq!(data(&listed, "/data/a/totalCount"), 0);
    assert_eq!(
        data(&listed, "/data/b/nodes"),
        &json!([{"id": report, "deleted": true}])
    );

    // --- The outbound message log shows the offer email, sent to the Resend stand-in.
    let log = eventually(&s, &admin, "query($c: ID) { outboundMessages(customerId: $c, kind: \"offer\") { totalCount nodes { kind channel customerId status notSentReason } } }", json!({"c": bob}), 20, |r| {
        data(r, "/data/outboundMessages/nodes/0/status") == "sent"
    })
    .await;
    assert_eq!(
        data(&log, "/data/outboundMessages/nodes"),
        &json!([{"kind": "offer", "channel": "email", "customerId": bob, "status": "sent", "notSentReason": null}])
    );
    // One email, its text the offer's (the discount, the expiry as the business's zone
    // writes it), then his unsubscribe link.
    let offers = mail_to_bob("A special offer from Dirt Free");
    assert_eq!(
        offers.len(),
        1,
        "the offer reached Bob's mailbox once: {:?}",
        s.mailbox.sent()
    );
    assert_eq!(
        offers[0]["text"],
        json!(format!(
            "Dirt Free Carpet Cleaning: a special offer for you, 10% off your next cleaning, valid until December 31, 2029.\n\nUnsubscribe: {}",
            unsubscribe_link(&offers[0])
        ))
    );
    assert_eq!(
        code(
            &gql(
                &s,
                Some(&kim),
                "{ outboundMessages { totalCount } }",
                json!({})
            )
            .await
        ),
        "FORBIDDEN"
    );

    // --- A chat: Ann opens it, the bot answers and classifies, she asks for a person,
    // Kim answers under her own name and closes it. Bob sees none of it.
    let started = gql(&s, Some(&ann_token), "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id customerId status messageCount } } }",
        json!({"i": {"text": "Can you clean a wool rug?"}})).await;
    let chat = text(&started, "/data/startConversation/conversation/id");
    assert_eq!(
        data(&started, "/data/startConversation/conversation"),
        &json!({"id": chat, "customerId": ann, "status": "open", "messageCount": 1})
    );
    let r = gql(
        &s,
        Some(&ann_token),
        "mutation($i: StartConversationInput!) { startConversation(input: $i) { position } }",
        json!({"i": {"customerId": bob}}),
    )
    .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let say = "mutation($i: AddConversationMessageInput!) { addConversationMessage(input: $i) { conversation { messageCount } } }";
    let r = gql(
        &s,
        Some(&kim),
        say,
        json!({"i": {"conversationId": chat, "text": "Yes! Want to book?", "asBot": true}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/addConversationMessage/conversation/messageCount"),
        2
    );
    let r = gql(
        &s,
        Some(&ann_token),
        say,
        json!({"i": {"conversationId": chat, "text": "I am the bot", "asBot": true}}),
    )
    .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let r = gql(
        &s,
        Some(&bob_token),
        say,
        json!({"i": {"conversationId": chat, "text": "hijack"}}),
    )
    .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let r = gql(&s, Some(&ann_token), "mutation($i: DetectConversationIntentInput!) { detectConversationIntent(input: $i) { position } }",
        json!({"i": {"conversationId": chat, "intent": "BOOK", "confidencePercent": 80}})).await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let r = gql(&s, Some(&kim), "mutation($i: DetectConversationIntentInput!) { detectConversationIntent(input: $i) { conversation { intent intentConfidence } } }",
        json!({"i": {"conversationId": chat, "intent": "BOOK", "confidencePercent": 101}})).await;
    assert_eq!(field(&r), "confidencePercent", "{r}");
    let r = gql(&s, Some(&kim), "mutation($i: DetectConversationIntentInput!) { detectConversationIntent(input: $i) { conversation { intent intentConfidence } } }",
        json!({"i": {"conversationId": chat, "intent": "BOOK", "confidencePercent": 80}})).await;
    assert_eq!(
        data(&r, "/data/detectConversationIntent/conversation"),
        &json!({"intent": "book", "intentConfidence": 80})
    );
    let r = gql(&s, Some(&ann_token), "mutation($i: HandOffConversationInput!) { handOffConversation(input: $i) { conversation { status } } }", json!({"i": {"conversationId": chat}})).await;
    assert_eq!(
        data(&r, "/data/handOffConversation/conversation/status"),
        "handed_off"
    );
    gql(
        &s,
        Some(&kim),
        say,
        json!({"i": {"conversationId": chat, "text": "Hi Ann, Kim here."}}),
    )
    .await;
    let r = gql(&s, Some(&kim), "mutation($i: ConversationRefInput!) { closeConversation(input: $i) { conversation { status } } }", json!({"i": {"conversationId": chat}})).await;
    assert_eq!(
        data(&r, "/data/closeConversation/conversation/status"),
        "closed"
    );
    let r = gql(
        &s,
        Some(&ann_token),
        say,
        json!({"i": {"conversationId": chat, "text": "one more thing"}}),
    )
    .await;
    assert_eq!(
        (code(&r), r["errors"][0]["extensions"]["rule"].clone()),
        ("RULE_VIOLATION".into(), json!("CONVERSATION_CLOSED")),
        "{r}"
    );
    let thread =
        "query($id: ID!) { conversation(id: $id) { status messages { nodes { sender staffId text } } } }";
    let r = gql(&s, Some(&ann_token), thread, json!({"id": chat})).await;
    assert_eq!(
        data(&r, "/data/conversation/messages/nodes"),
        &json!([
            {"sender": "customer", "staffId": null, "text": "Can you clean a wool rug?"},
            {"sender": "bot", "staffId": null, "text": "Yes! Want to book?"},
            {"sender": "staff", "staffId": kim_id, "text": "Hi Ann, Kim here."},
        ])
    );
    assert_eq!(
        code(&gql(&s, Some(&bob_token), thread, json!({"id": chat})).await),
        "FORBIDDEN"
    );
    let mine = gql(
        &s,
        Some(&bob_token),
        "{ myConversations { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&mine, "/data/myConversations/totalCount"), 0);
    let inbox = gql(
        &s,
        Some(&kim),
        "{ conversations(status: \"closed\") { totalCount nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(&inbox, "/data/conversations/nodes"),
        &json!([{"id": chat}])
    );

    // --- Idempotency keys belong to whoever sent them: Bob reusing Ann's key gets a
    // conversation of his own, never hers.
    let open = "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id customerId } } }";
    let key = json!({"i": {"idempotencyKey": "widget-1"}});
    let a1 = gql(&s, Some(&ann_token), open, key.clone()).await;
    let a2 = gql(&s, Some(&ann_token), open, key.clone()).await;
    let b1 = gql(&s, Some(&bob_token), open, key).await;
    assert_eq!(
        data(&a1, "/data/startConversation/conversation"),
        data(&a2, "/data/startConversation/conversation")
    );
    assert_eq!(
        data(&b1, "/data/startConversation/conversation/customerId"),
        &json!(bob)
    );
    assert_ne!(
        data(&b1, "/data/startConversation/conversation/id"),
        data(&a1, "/data/startConversation/conversation/id")
    );

    // --- Chat text is the customer's personal data: sealed with their key, unreadable
    // once they are erased, while the conversation's facts stay.
    let secret = "call me on +15125550999";
    let r = gql(&s, Some(&bob_token), "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } } }", json!({"i": {"text": secret}})).await;
    let bobs_chat = text(&r, "/data/startConversation/conversation/id");
    let stored = |log: commands::EventLog| async move {
        log.read_all_stored(commands::LogPosition::START, 100_000)
            .await
            .expect("read")
            .iter()
            .map(|e| e.payload.to_string())
            .collect::<String>()
    };
    assert!(
        !stored(db.log().await).await.contains("5550999"),
        "stored sealed"
    );
    let thread =
        "query($id: ID!) { conversation(id: $id) { messageCount messages { nodes { text } } } }";
    let r = gql(&s, Some(&admin), thread, json!({"id": bobs_chat})).await;
    assert_eq!(data(&r, "/data/conversation/messages/nodes/0/text"), secret);
    let r = gql(
        &s,
        Some(&admin),
        "mutation($i: EraseCustomerInput!) { eraseCustomer(input: $i) { position } }",
        json!({"i": {"id": bob, "reason": "customer request"}}),
    )
    .await;
    sync(&s, &admin, data(&r, "/data/eraseCustomer/position")).await;
    let r = gql(&s, Some(&admin), thread, json!({"id": bobs_chat})).await;
    assert_eq!(
        data(&r, "/data/conversation"),
        &json!({"messageCount": 1, "messages": {"nodes": [{"text": "[erased]"}]}})
    );

    // --- Paging: walk the customers forwards two at a time, then backwards; no gaps.
    for k in 0..5 {
        edit(
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
            json!({"name": format!("Zed {k}")}),
        )
        .await;
    }
    let page = "query($a: String, $b: String, $f: Int, $l: Int) { customers(search: \"Zed\", after: $a, before: $b, first: $f, last: $l) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor startCursor } nodes { name } } }";
    let mut names = vec![];
    let mut after = Value::Null;
    loop {
        let r = gql(&s, Some(&kim), page, json!({"a": after, "f": 2})).await;
        assert_eq!(data(&r, "/data/customers/totalCount"), 5);
        names.extend(
            data(&r, "/data/customers/nodes")
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| n["name"].as_str().unwrap_or_default().to_string()),
        );
        if data(&r, "/data/customers/pageInfo/hasNextPage") == false {
            break;
        }
        after = data(&r, "/data/customers/pageInfo/endCursor").clone();
    }
    assert_eq!(
        names,
        (0..5).map(|k| format!("Zed {k}")).collect::<Vec<_>>()
    );
    let last = gql(&s, Some(&kim), page, json!({"l": 2})).await;
    assert_eq!(
        data(&last, "/data/customers/nodes"),
        &json!([{"name": "Zed 3"}, {"name": "Zed 4"}])
    );
    let before = data(&last, "/data/customers/pageInfo/startCursor").clone();
    let prev = gql(&s, Some(&kim), page, json!({"b": before, "l": 2})).await;
    assert_eq!(
        data(&prev, "/data/customers/nodes"),
        &json!([{"name": "Zed 1"}, {"name": "Zed 2"}])
    );
    assert_eq!(
        data(&prev, "/data/customers/pageInfo/hasPreviousPage"),
        true
    );
    let bad = gql(&s, Some(&kim), page, json!({"a": "not-a-cursor"})).await;
    assert_eq!(
        (code(&bad), field(&bad)),
        ("VALIDATION".into(), json!("after")),
        "{bad}"
    );

    // --- Sorting: the biggest spender first (Ann paid for two jobs).
    let r = gql(
        &s,
        Some(&kim),
        "{ customers(sort: TOTAL_SPENT, first: 1) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&r, "/data/customers/nodes/0/id"), &json!(ann));

    // --- The admin's event log: filtered, then paged by position without gaps.
    let feed = "query($a: String, $t: [String!], $f: Int!) { eventLog(after: $a, eventTypes: $t, first: $f) { scannedTo pageInfo { hasNextPage endCursor } edges { cursor node { position eventType aggregateId } } } }";
    assert_eq!(
        code(&gql(&s, Some(&kim), feed, json!({"f": 1})).await),
        "FORBIDDEN"
    );
    let closed = gql(
        &s,
        Some(&admin),
        feed,
        json!({"t": ["ConversationClosed"], "f": 10}),
    )
    .await;
    assert_eq!(
        data(&closed, "/data/eventLog/edges/0/node/aggregateId"),
        &json!(chat)
    );
    assert_eq!(
        data(&closed, "/data/eventLog/edges")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(data(&closed, "/data/eventLog/pageInfo/hasNextPage"), false);
    // Password hashes stay in the log, never in an answer, not even an admin's.
    let set = gql(
        &s,
        Some(&admin),
        "{ eventLog(eventTypes: [\"StaffPasswordSet\"], first: 5) { nodes { payload } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data(
            &set,
            "/data/eventLog/nodes/0/payload/StaffPasswordSet/password_hash"
        ),
        "[redacted]"
    );
    let trail = gql(&s, Some(&admin), "query($id: ID!) { auditTrail(aggregateType: \"StaffUser\", id: $id) { nodes { payload } } }", json!({"id": kim_id})).await;
    let trail = data(&trail, "/data/auditTrail/nodes").to_string();
    assert!(
        trail.contains("[redacted]") && !trail.contains("$argon2"),
        "{trail}"
    );
    let whole = gql(&s, Some(&admin), feed, json!({"f": 500})).await;
    let all: Vec<Value> = data(&whole, "/data/eventLog/edges")
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["cursor"].clone())
        .collect();
    let mut paged = vec![];
    let mut after = Value::Null;
    for _ in 0..200 {
        let r = gql(&s, Some(&admin), feed, json!({"a": after, "f": 7})).await;
        paged.extend(
            data(&r, "/data/eventLog/edges")
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["cursor"].clone()),
        );
        if data(&r, "/data/eventLog/pageInfo/hasNextPage") == false || paged.len() >= all.len() {
            break;
        }
        after = data(&r, "/data/eventLog/pageInfo/endCursor").clone();
    }
    assert!(all.len() > 50, "a busy log: {}", all.len());
    assert!(paged.len() >= all.len(), "{} of {}", paged.len(), all.len());
    assert_eq!(
        paged[..all.len()],
        all[..],
        "pages of 7 walk the log in order without gaps"
    );
    let bad = gql(&s, Some(&admin), feed, json!({"a": "yesterday", "f": 1})).await;
    assert_eq!(field(&bad), "after", "{bad}");

    // --- Passwords: Kim changes hers; the old one stops working, her other session ends,
    // this one stays. Then the admin deactivates her: every session ends, sign-in refused.
    let other_session = login(&s, "kim@x.example", "kims-password-1").await;
    let change = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { position } }";
    let r = gql(
        &s,
        Some(&kim),
        change,
        json!({"i": {"currentPassword": "wrong-password-1", "newPassword": "kims-new-password"}}),
    )
    .await;
    assert_eq!(
        (code(&r), field(&r)),
        ("VALIDATION".into(), json!("currentPassword")),
        "{r}"
    );
    let r = gql(
        &s,
        Some(&kim),
        change,
        json!({"i": {"currentPassword": "kims-password-1", "newPassword": "kims-new-password"}}),
    )
    .await;
    assert!(r.get("errors").is_none(), "{r}");
    let viewer = "{ viewer { id } }";
    assert_eq!(
        data(
            &gql(&s, Some(&kim), viewer, json!({})).await,
            "/data/viewer/id"
        ),
        &json!(kim_id)
    );
    assert_eq!(
        data(
            &gql(&s, Some(&other_session), viewer, json!({})).await,
            "/data/viewer"
        ),
        &Value::Null
    );
    let old = gql(&s, None, "mutation { login(input: {email: \"kim@x.example\", password: \"kims-password-1\"}) { token } }", json!({})).await;
    assert_eq!(code(&old), "UNAUTHENTICATED");
    let kim2 = login(&s, "kim@x.example", "kims-new-password").await;
    // Portal customers change theirs the same way.
    let r = gql(
        &s,
        Some(&ann_token),
        change,
        json!({"i": {"currentPassword": "portal-password-1", "newPassword": "ann-new-password"}}),
    )
    .await;
    assert!(r.get("errors").is_none(), "{r}");
    let r = gql(&s, None, "mutation { portalLogin(input: {email: \"ann@example.com\", password: \"ann-new-password\"}) { customerId } }", json!({})).await;
    assert_eq!(data(&r, "/data/portalLogin/customerId"), &json!(ann));

    let deactivate = "mutation($i: DeactivateStaffUserInput!) { deactivateStaffUser(input: $i) { staffUser { active } position } }";
    assert_eq!(
        code(
            &gql(
                &s,
                Some(&kim2),
                deactivate,
                json!({"i": {"staffUserId": kim_id}})
            )
            .await
        ),
        "FORBIDDEN"
    );
    let admin_id = text(
        &gql(&s, Some(&admin), viewer, json!({})).await,
        "/data/viewer/id",
    );
    let r = gql(
        &s,
        Some(&admin),
        deactivate,
        json!({"i": {"staffUserId": admin_id}}),
    )
    .await;
    assert_eq!(
        r["errors"][0]["extensions"]["rule"], "CANNOT_DEACTIVATE_SELF",
        "{r}"
    );
    let r = gql(
        &s,
        Some(&admin),
        deactivate,
        json!({"i": {"staffUserId": kim_id}}),
    )
    .await;
    assert_eq!(
        data(&r, "/data/deactivateStaffUser/staffUser/active"),
        false
    );
    assert_eq!(
        data(
            &gql(&s, Some(&kim2), viewer, json!({})).await,
            "/data/viewer"
        ),
        &Value::Null
    );
    assert_eq!(
        data(
            &gql(&s, Some(&kim), viewer, json!({})).await,
            "/data/viewer"
        ),
        &Value::Null
    );
    let r = gql(&s, None, "mutation { login(input: {email: \"kim@x.example\", password: \"kims-new-password\"}) { token } }", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    tests::health::assert_no_failures(&s.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_rest_of_the_api_works_over_http() {
    the_rest_of_the_api(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_the_rest_of_the_api_works_over_http() {
    the_rest_of_the_api(Engine::Sqlite).await;
}

//! What customers receive from a campaign (issue #16), over HTTP against the server process,
//! on both engines, with stand-ins for Twilio and Resend: templates rendered per customer, an
//! unknown variable refused, the opt-out sentence once per SMS, a working one-click
//! unsubscribe (RFC 8058), previews, proofs and an admin's test sends.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::standins::Texts;
use tests::{Engine, TestDb};

const CRON_SECRET: &str = "cron-secret-for-campaign-messages-0123456789";

async fn start(db: &TestDb) -> (TestApp, Texts) {
    let (texts, twilio) = Texts::start().await;
    let mut envs = Texts::env(&twilio).to_vec();
    envs.push(("CRON_SECRET", CRON_SECRET));
    envs.push(("BUSINESS_TIMEZONE", "America/Chicago"));
    // Links point at the public https address (one-click needs https); the test follows
    // their paths on the server itself.
    envs.push(("PUBLIC_URL", "https://crm.example.com"));
    let app = TestApp::start_with(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url, &envs).await;
    (app, texts)
}

/// A customer with marketing consent on their channels (staff recorded it).
async fn customer(app: &TestApp, admin: &str, name: &str, email: &str, phone: &str) -> String {
    let c = app
        .gql(
            Some(admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({"i": {"name": name, "email": email, "phone": phone}}),
        )
        .await;
    let id = text(&c, "/data/createCustomer/customer/id");
    for channel in ["EMAIL", "SMS"] {
        let r = app
            .gql(
                Some(admin),
                "mutation($i: MarketingConsentInput!) { setMarketingConsent(input: $i) { position } }",
                json!({"i": {"id": id, "channel": channel, "granted": true}}),
            )
            .await;
        app.sync(admin, &text(&r, "/data/setMarketingConsent/position"))
            .await;
    }
    id
}

async fn create_campaign(app: &TestApp, admin: &str, input: Value) -> Value {
    app.gql(
        Some(admin),
        "mutation($i: CreatePromotionInput!) { createPromotion(input: $i) { promotionId position } }",
        json!({ "i": input }),
    )
    .await
}

fn campaign_input(name: &str, channel: &str, template: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "name": name, "channel": channel, "template": template,
        "discount": "20%", "discountCode": "SPRING20",
        "startsAt": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "endsAt": (now + chrono::Duration::days(30)).to_rfc3339(),
    })
}

/// Schedules the campaign and runs the delivery job until it has run.
async fn deliver(app: &TestApp, admin: &str, id: &str) {
    let send_at = chrono::Utc::now() + chrono::Duration::seconds(1);
    let r = app
        .gql(
            Some(admin),
            "mutation($i: SchedulePromotionInput!) { schedulePromotion(input: $i) { position } }",
            json!({"i": {"id": id, "sendAt": send_at.to_rfc3339()}}),
        )
        .await;
    app.sync(admin, &text(&r, "/data/schedulePromotion/position"))
        .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
}

/// Waits until `done` holds (up to 20 s).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn emails_to<'a>(sent: &'a [Value], to: &str) -> Vec<&'a Value> {
    sent.iter()
        .filter(|m| {
            m["to"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t == to))
        })
        .collect()
}

async fn campaigns_reach_customers_rendered_and_unsubscribe_works(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (app, texts) = start(&db).await;
    let admin = app.login_admin().await;
    let people = [
        ("Ada Lovelace", "ada@example.com", "+15125550101"),
        ("Grace Hopper", "grace@example.com", "+15125550102"),
        ("Linus Torvalds", "linus@example.com", "+15125550103"),
    ];
    let mut ids = Vec::new();
    for (name, email, phone) in people {
        ids.push(customer(&app, &admin, name, email, phone).await);
    }

    // An unknown variable is refused before anything is sent.
    let typo = create_campaign(
        &app,
        &admin,
        campaign_input("Typo", "EMAIL", "Hi {{ frist_name }}"),
    )
    .await;
    assert_eq!(
        typo["errors"][0]["extensions"]["code"], "VALIDATION",
        "{typo}"
    );
    assert_eq!(
        typo["errors"][0]["extensions"]["field"], "template",
        "{typo}"
    );

    // An email campaign with variables reaches each customer rendered.
    let r = create_campaign(
        &app,
        &admin,
        campaign_input(
            "Spring refresh",
            "EMAIL",
            "Hi {{ first_name }}, {{ discount }} off with {{ code }} until {{ ends_on }}. You are {{ tier }}.",
        ),
    )
    .await;
    let spring = text(&r, "/data/createPromotion/promotionId");
    app.sync(&admin, &text(&r, "/data/createPromotion/position"))
        .await;

    // A manager previews it for Grace before it goes out.
    let preview = app
        .gql(
            Some(&admin),
            "query($id: ID!, $c: ID!) { promotionPreview(id: $id, customerId: $c) { channel subject text } }",
            json!({"id": spring, "c": ids[1]}),
        )
        .await;
    let shown = text(&preview, "/data/promotionPreview/text");
    assert!(
        shown.starts_with("Hi Grace, 20% off with SPRING20 until "),
        "{shown}"
    );
    assert!(shown.contains("You are Bronze."), "{shown}");

    deliver(&app, &admin, &spring).await;
    until("three campaign emails", || {
        people
            .iter()
            .all(|(_, email, _)| !emails_to(&app.mailbox.sent(), email).is_empty())
    })
    .await;
    let sent = app.mailbox.sent();
    for (name, email, _) in people {
        let mail = emails_to(&sent, email)[0];
        let body = mail["text"].as_str().expect("text");
        let first = name.split(' ').next().expect("first name");
        assert!(
            body.starts_with(&format!("Hi {first}, 20% off with SPRING20 until ")),
            "{body}"
        );
        assert!(
            !body.contains('{') && !body.contains('}'),
            "a placeholder: {body}"
        );
        assert_eq!(
            mail["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click",
            "{mail}"
        );
    }

    // Ada unsubscribes as her mail client does: GET shows a page and changes nothing,
    // POST withdraws her email consent.
    let ada_mail = emails_to(&sent, "ada@example.com")[0].clone();
    let header = ada_mail["headers"]["List-Unsubscribe"]
        .as_str()
        .expect("List-Unsubscribe");
    let link = header.trim_start_matches('<').trim_end_matches('>');
    let path = &link[link.find("/api/unsubscribe/").expect("path")..];
    assert!(
        ada_mail["text"].as_str().unwrap_or_default().contains(link),
        "the body carries the link too"
    );
    let url = format!("{}{path}", app.server.base);
    let http = reqwest::Client::new();
    // Consent as the read models show it after every write so far: a throwaway write, then
    // a sync to it.
    let consent = |id: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let mark = app
                .gql(
                    Some(&admin),
                    "mutation { createCustomer(input: {name: \"Sync Mark\"}) { position } }",
                    json!({}),
                )
                .await;
            app.sync(&admin, &text(&mark, "/data/createCustomer/position"))
                .await;
            let r = app
                .gql(
                    Some(&admin),
                    "query($id: ID!) { customer(id: $id) { emailConsent } }",
                    json!({"id": id}),
                )
                .await;
            data(&r, "/data/customer/emailConsent").clone()
        }
    };
    let page = http.get(&url).send().await.expect("get");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap_or_default()
        .contains("<form method=\"post\""));
    assert_eq!(consent(ids[0].clone()).await, true, "a GET changed consent");
    let post = |url: String| {
        let http = http.clone();
        async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(url.clone()).await, 200);
    assert_eq!(
        consent(ids[0].clone()).await,
        false,
        "the one-click POST did not withdraw consent"
    );
    // A forged token changes nothing.
    let forged = format!("{}/api/unsubscribe/forged-token-0000", app.server.base);
    assert_eq!(post(forged).await, 404);

    // Ada opts in again (staff record it); her old link, reused, does not undo that.
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: MarketingConsentInput!) { setMarketingConsent(input: $i) { position } }",
            json!({"i": {"id": ids[0], "channel": "EMAIL", "granted": true}}),
        )
        .await;
    app.sync(&admin, &text(&r, "/data/setMarketingConsent/position"))
        .await;
    assert_eq!(post(url).await, 200);
    assert_eq!(
        consent(ids[0].clone()).await,
        true,
        "a reused link withdrew again"
    );

    // Linus unsubscribes; the next campaign skips him.
    let linus_mail = emails_to(&sent, "linus@example.com")[0].clone();
    let linus_link = linus_mail["headers"]["List-Unsubscribe"]
        .as_str()
        .expect("header")
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    let linus_path = &linus_link[linus_link.find("/api/unsubscribe/").expect("path")..];
    assert_eq!(post(format!("{}{linus_path}", app.server.base)).await, 200);
    assert_eq!(consent(ids[2].clone()).await, false, "Linus unsubscribed");
    let r = create_campaign(
        &app,
        &admin,
        campaign_input("Second", "EMAIL", "Hello again {{ first_name }}"),
    )
    .await;
    let second = text(&r, "/data/createPromotion/promotionId");
    app.sync(&admin, &text(&r, "/data/createPromotion/position"))
        .await;
    deliver(&app, &admin, &second).await;
    until("the second campaign to Ada and Grace", || {
        let sent = app.mailbox.sent();
        ["ada@example.com", "grace@example.com"]
            .iter()
            .all(|e| emails_to(&sent, e).len() == 2)
    })
    .await;
    consent(ids[0].clone()).await;
    let r = app
        .gql(
            Some(&admin),
            "{ promotions(first: 10) { nodes { id delivered skipped } } }",
            json!({}),
        )
        .await;
    let counted = data(&r, "/data/promotions/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == second.as_str())
        .cloned()
        .expect("the second campaign");
    // Delivered to Ada and Grace only; Linus (and the sync marks, who never consented)
    // are counted as skipped.
    assert_eq!(counted["delivered"], 2, "{counted}");
    assert_eq!(
        emails_to(&app.mailbox.sent(), "linus@example.com").len(),
        1,
        "Linus unsubscribed"
    );

    // An SMS campaign: rendered, and the opt-out sentence exactly once.
    let r = create_campaign(
        &app,
        &admin,
        campaign_input(
            "Texts",
            "SMS",
            "Hi {{ first_name }}, {{ discount }} off: {{ code }}.",
        ),
    )
    .await;
    let sms = text(&r, "/data/createPromotion/promotionId");
    app.sync(&admin, &text(&r, "/data/createPromotion/position"))
        .await;
    deliver(&app, &admin, &sms).await;
    until("three campaign texts", || {
        people
            .iter()
            .all(|(_, _, phone)| !texts.to(phone).is_empty())
    })
    .await;
    let ada_text = texts.to("+15125550101")[0].clone();
    assert_eq!(
        ada_text, "Hi Ada, 20% off: SPRING20. Reply STOP to opt out.",
        "{ada_text}"
    );

    // A proof of the campaign in the admin's own inbox.
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: SendPromotionProofInput!) { sendPromotionProof(input: $i) { messageId } }",
            json!({"i": {"id": spring}}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let owner = tests::app::ADMIN.0;
    // (A report to the admin is not this test's mail.)
    let not_report = |m: &&Value| {
        !m["subject"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Weekly report: ")
    };
    until("the proof", || {
        emails_to(&app.mailbox.sent(), owner).iter().any(not_report)
    })
    .await;
    let proof = emails_to(&app.mailbox.sent(), owner)
        .into_iter()
        .find(not_report)
        .expect("the proof")
        .clone();
    assert!(
        proof["subject"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[Proof] "),
        "{proof}"
    );
    assert!(!proof["text"].as_str().unwrap_or_default().contains("{{"));
    tests::health::assert_no_failures(&app.server.base).await;
}

async fn an_admin_test_send_needs_the_admin_token_and_reaches_the_vendor(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (app, texts) = start(&db).await;
    let admin = app.login_admin().await;
    let http = reqwest::Client::new();
    let sms = format!("{}/api/test/send-sms", app.server.base);
    let anonymous = http
        .post(&sms)
        .json(&json!({"to": "+15125550177"}))
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);
    let bad = http
        .post(&sms)
        .bearer_auth(&admin)
        .json(&json!({"to": "not a phone"}))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["field"], "to", "{body}");
    let ok = http
        .post(&sms)
        .bearer_auth(&admin)
        .json(&json!({"to": "+15125550177"}))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 202);
    until("the test SMS", || !texts.to("+15125550177").is_empty()).await;
    let email = http
        .post(format!("{}/api/test/send-email", app.server.base))
        .bearer_auth(&admin)
        .json(&json!({"to": "ops@example.com"}))
        .send()
        .await
        .expect("send");
    assert_eq!(email.status(), 202);
    until("the test email", || {
        !emails_to(&app.mailbox.sent(), "ops@example.com").is_empty()
    })
    .await;
    // The mutation does the same; a manager may not.
    let c = app
        .gql(
            Some(&admin),
            "mutation($i: CreateStaffUserInput!) { createStaffUser(input: $i) { position } }",
            json!({"i": {"email": "mia@dirtfree.example", "name": "Mia Manager", "role": "MANAGER", "password": "managers-pass-1"}}),
        )
        .await;
    app.sync(&admin, &text(&c, "/data/createStaffUser/position"))
        .await;
    let manager = app
        .gql(
            None,
            "mutation { login(input: {email: \"mia@dirtfree.example\", password: \"managers-pass-1\"}) { token } }",
            json!({}),
        )
        .await;
    let manager = text(&manager, "/data/login/token");
    let refused = http
        .post(&sms)
        .bearer_auth(&manager)
        .json(&json!({"to": "+15125550177"}))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 403);
    tests::health::assert_no_failures(&app.server.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_campaigns_render_for_a_demo_customer() {
    // The README's first command: the embedded store with the demo business.
    let server = tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[("DEMO_SEED", "auto")],
        Duration::from_secs(120),
    )
    .await;
    let gql = |token: Option<String>, query: &'static str, variables: Value| {
        let url = server.url.clone();
        async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .json(&json!({"query": query, "variables": variables}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
                .await
                .expect("send")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let login = gql(
        None,
        "mutation { login(input: {email: \"manager@dirtfree.example\", password: \"dirtfree-demo\"}) { token } }",
        json!({}),
    )
    .await;
    let manager = text(&login, "/data/login/token");
    let listed = gql(
        Some(manager.clone()),
        "{ promotions(first: 20) { nodes { id name channel } } customers(first: 1) { nodes { id name } } }",
        json!({}),
    )
    .await;
    let customer = data(&listed, "/data/customers/nodes/0").clone();
    let first = customer["name"]
        .as_str()
        .and_then(|n| n.split_whitespace().next())
        .expect("a name")
        .to_string();
    let promotions = data(&listed, "/data/promotions/nodes")
        .as_array()
        .expect("promotions")
        .clone();
    assert!(!promotions.is_empty(), "the demo has campaigns");
    for p in promotions {
        let r = gql(
            Some(manager.clone()),
            "query($id: ID!, $c: ID!) { promotionPreview(id: $id, customerId: $c) { text } }",
            json!({"id": p["id"], "c": customer["id"]}),
        )
        .await;
        let shown = text(&r, "/data/promotionPreview/text");
        assert!(
            shown.starts_with(&format!("Hi {first}, get 15% off")),
            "{}: {shown}",
            p["name"]
        );
        assert!(!shown.contains('{'), "{}: {shown}", p["name"]);
        let stops = shown.matches("STOP").count();
        assert_eq!(stops, usize::from(p["channel"] == "sms"), "{shown}");
    }
    tests::health::assert_no_failures(&server.base).await;
}

/// With the business's quiet hours around now, a campaign's SMS is held (recorded, not sent)
/// while an admin's test SMS goes at once.
async fn in_quiet_hours_marketing_waits_and_a_test_send_does_not(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (texts, twilio) = Texts::start().await;
    let local = chrono::Utc::now().with_timezone(&chrono_tz::America::Chicago);
    let window = format!(
        "{}-{}",
        (local - chrono::Duration::hours(1)).format("%H:%M"),
        (local + chrono::Duration::hours(1)).format("%H:%M")
    );
    let mut envs = Texts::env(&twilio).to_vec();
    envs.push(("CRON_SECRET", CRON_SECRET));
    envs.push(("BUSINESS_TIMEZONE", "America/Chicago"));
    envs.push(("QUIET_HOURS", window.as_str()));
    let app = TestApp::start_with(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url, &envs).await;
    let admin = app.login_admin().await;
    let ada = customer(
        &app,
        &admin,
        "Ada Lovelace",
        "ada@example.com",
        "+15125550101",
    )
    .await;
    let r = create_campaign(
        &app,
        &admin,
        campaign_input("Night", "SMS", "Hi {{ first_name }}"),
    )
    .await;
    let night = text(&r, "/data/createPromotion/promotionId");
    app.sync(&admin, &text(&r, "/data/createPromotion/position"))
        .await;
    deliver(&app, &admin, &night).await;
    let test_send = app
        .gql(
            Some(&admin),
            "mutation($i: SendTestMessageInput!) { sendTestMessage(input: $i) { messageId } }",
            json!({"i": {"channel": "SMS", "to": "+15125550177"}}),
        )
        .await;
    assert!(test_send["errors"].is_null(), "{test_send}");
    until("the test SMS", || !texts.to("+15125550177").is_empty()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .gql(
                Some(&admin),
                "query($c: ID) { outboundMessages(customerId: $c, kind: \"promotion\") { nodes { status } } }",
                json!({"c": ada}),
            )
            .await;
        if data(&r, "/data/outboundMessages/nodes/0/status") == "held" {
            break;
        }
        assert!(Instant::now() < deadline, "never held: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(texts.to("+15125550101").is_empty(), "sent in quiet hours");
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    in_quiet_hours_marketing_waits_and_a_test_send_does_not,
    campaigns_reach_customers_rendered_and_unsubscribe_works,
    an_admin_test_send_needs_the_admin_token_and_reaches_the_vendor
);

//! A phone a portal customer typed in counts as theirs only after they confirm the code sent
//! to it (issue #14), over HTTP against the server process, on both engines.
//!
//! Mallory registers with a number that is really Vic's. Vic's texts must not appear in
//! Mallory's conversations, and Mallory cannot opt the number into marketing, until the code
//! texted to that number is typed back. Then the test plays the number's owner: it reads the
//! code from the Twilio stand-in and confirms it, and the number's next text is the
//! customer's.

use std::time::{Duration, Instant};

use api::webhooks::signature::signing;
use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::standins::Texts;
use tests::{Engine, TestDb};

const TWILIO_TOKEN: &str = "twilio_auth_token_for_tests";
const PUBLIC_URL: &str = "https://crm.example.com";
const PHONE: &str = "+15125550142";

/// An inbound SMS from `from`, signed as Twilio signs it.
async fn inbound_sms(app: &TestApp, sid: &str, from: &str, body: &str) {
    let params: Vec<(String, String)> = [
        ("MessageSid", sid),
        ("From", from),
        ("To", "+15125550199"),
        ("Body", body),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let path = "/api/webhooks/twilio";
    let sig = signing::twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), &params);
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.server.base))
        .header("x-twilio-signature", sig)
        .form(&params)
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Conversations (as staff see them) of the number's texts: customer id and message count.
async fn sms_conversations(app: &TestApp, admin: &str) -> Vec<Value> {
    let r = app
        .gql(
            Some(admin),
            "{ conversations(first: 50) { nodes { id customerId messageCount } } }",
            json!({}),
        )
        .await;
    data(&r, "/data/conversations/nodes")
        .as_array()
        .expect("nodes")
        .clone()
}

async fn my_texts(app: &TestApp, token: &str) -> Vec<String> {
    let r = app
        .gql(
            Some(token),
            "{ myConversations(first: 10) { nodes { messages(first: 20) { nodes { text } } } } }",
            json!({}),
        )
        .await;
    let mut out = Vec::new();
    for c in data(&r, "/data/myConversations/nodes")
        .as_array()
        .expect("nodes")
    {
        for m in c["messages"]["nodes"].as_array().expect("messages") {
            out.push(m["text"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

async fn sms_consent(app: &TestApp, admin: &str, id: &str) -> Value {
    let r = app
        .gql(
            Some(admin),
            "query($id: ID!) { customer(id: $id) { smsConsent } }",
            json!({"id": id}),
        )
        .await;
    data(&r, "/data/customer/smsConsent").clone()
}

/// Waits until the server has taken the inbound texts in (the staff see `n` messages).
async fn until_staff_see(app: &TestApp, admin: &str, n: i64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cs = sms_conversations(app, admin).await;
        let total: i64 = cs.iter().filter_map(|c| c["messageCount"].as_i64()).sum();
        if total >= n {
            return cs;
        }
        assert!(Instant::now() < deadline, "the texts never arrived: {cs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_number_counts_as_the_customers_only_once_they_confirm_the_code(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (texts, twilio) = Texts::start().await;
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[
            ("PUBLIC_URL", PUBLIC_URL),
            ("TWILIO_ACCOUNT_SID", "ACtest"),
            ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
            ("TWILIO_PHONE_NUMBER", "+15125550199"),
            ("TWILIO_API_BASE", &twilio),
            ("OUTBOX_POLL_MS", "100"),
        ],
    )
    .await;
    let admin = app.login_admin().await;
    let r = app
        .sign_up(
            json!({"name": "Mallory Mask", "email": "mallory@example.com", "phone": PHONE,
            "password": "not-my-number-1"}),
        )
        .await;
    let mallory = text(&r, "/data/registerPortalAccount/token");
    let mallory_id = text(&r, "/data/registerPortalAccount/customerId");

    // Vic texts the business from their own phone.
    inbound_sms(&app, "SMvic1", PHONE, "Hi, it's Vic: can you come Tuesday?").await;
    let cs = until_staff_see(&app, &admin, 1).await;
    assert!(
        cs.iter().all(|c| c["customerId"].is_null()),
        "the text was attached to the unconfirmed customer: {cs:?}"
    );
    assert_eq!(my_texts(&app, &mallory).await, Vec::<String>::new());
    // START from the number opts nobody in; nor may Mallory.
    inbound_sms(&app, "SMvic2", PHONE, "START").await;
    let consent =
        "mutation($i: MyMarketingConsentInput!) { setMyMarketingConsent(input: $i) { position } }";
    let r = app
        .gql(
            Some(&mallory),
            consent,
            json!({"i": {"channel": "SMS", "granted": true}}),
        )
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["rule"], "CONTACT_NOT_CONFIRMED",
        "{r}"
    );
    assert_eq!(sms_consent(&app, &admin, &mallory_id).await, false);
    // Staff answer Vic and close the thread; the number's next text opens a new one.
    let thread = cs[0]["id"].as_str().expect("id").to_string();
    let r = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { closeConversation(input: {conversationId: $id}) { position } }",
            json!({"id": thread}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");

    // The code goes to the number (its real owner), never into the log.
    let r = app
        .gql(
            Some(&mallory),
            "mutation { requestContactCode(input: {channel: SMS}) { expiresAt position } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let sms = loop {
        if let Some(body) = texts.to(PHONE).first() {
            break body.clone();
        }
        assert!(Instant::now() < deadline, "no code was texted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let code: String = sms
        .split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit())
        })
        .map(|w| w.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("no six-digit code in {sms:?}"));
    let confirm = "mutation($i: ConfirmContactInput!) { confirmContact(input: $i) { position } }";
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let r = app
        .gql(
            Some(&mallory),
            confirm,
            json!({"i": {"channel": "SMS", "code": wrong}}),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "VALIDATION", "{r}");
    assert_eq!(r["errors"][0]["extensions"]["field"], "code", "{r}");
    let r = app
        .gql(
            Some(&mallory),
            confirm,
            json!({"i": {"channel": "SMS", "code": code}}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    app.sync(&admin, &text(&r, "/data/confirmContact/position"))
        .await;

    // Confirmed: the number's next text is this customer's, and so is the opt-in.
    inbound_sms(&app, "SMvic3", PHONE, "Tuesday at 10 works").await;
    let cs = until_staff_see(&app, &admin, 2).await;
    assert!(
        cs.iter().any(|c| c["customerId"] == json!(mallory_id)),
        "the confirmed number's text is not the customer's: {cs:?}"
    );
    assert_eq!(my_texts(&app, &mallory).await, vec!["Tuesday at 10 works"]);
    let r = app
        .gql(
            Some(&mallory),
            consent,
            json!({"i": {"channel": "SMS", "granted": true}}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    app.sync(&admin, &text(&r, "/data/setMyMarketingConsent/position"))
        .await;
    assert_eq!(sms_consent(&app, &admin, &mallory_id).await, true);

    let log = app
        .gql(
            Some(&admin),
            "{ eventLog(first: 500) { nodes { payload } } }",
            json!({}),
        )
        .await;
    assert!(
        !data(&log, "/data/eventLog/nodes")
            .to_string()
            .contains(&code),
        "the code is in the event log"
    );
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(a_number_counts_as_the_customers_only_once_they_confirm_the_code);

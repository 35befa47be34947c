//! Portal sign-up and email changes tell nobody whether an address belongs to a customer
//! (issue #14), over HTTP against the server process, on both engines, with a Resend
//! stand-in as the mailboxes.
//!
//! Someone probing addresses gets the same answer for a customer's address as for a
//! stranger's; only the mailbox's owner learns which it was (a code, or a note that the
//! account exists). The code proves the address, so a sign-up for an address staff entered
//! claims that customer, and the address is confirmed for marketing. The address of a
//! sign-up code never enters the event log.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::standins::START_SIGN_UP;
use tests::{Engine, TestDb};

const REGISTER: &str =
    "mutation($i: RegisterPortalAccountInput!) { registerPortalAccount(input: $i) { token customerId } }";
const CHANGE: &str =
    "mutation($i: EmailCodeInput!) { requestEmailChange(input: $i) { accepted expiresAt } }";

/// An answer without the field that differs by the second it was given in.
fn without_expiry(mut v: Value) -> Value {
    for m in ["startPortalSignUp", "requestEmailChange"] {
        if let Some(d) = v.pointer_mut(&format!("/data/{m}")) {
            d.as_object_mut().map(|o| o.remove("expiresAt"));
        }
    }
    v
}

/// The error's code, field and message (the parts a prober reads).
fn refusal(v: &Value) -> Value {
    let e = &v["errors"][0];
    json!([
        e["extensions"]["code"],
        e["extensions"]["field"],
        e["message"]
    ])
}

async fn a_sign_up_tells_nobody_whether_an_email_is_a_customer(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    // Sam is in the CRM (staff typed his email in); Ada has a portal account.
    let sam = app
        .gql(
            Some(&admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } position } }",
            json!({"i": {"name": "Sam Staffentered", "email": "sam@example.com"}}),
        )
        .await;
    app.sync(&admin, &text(&sam, "/data/createCustomer/position"))
        .await;
    let sam_id = text(&sam, "/data/createCustomer/customer/id");
    let ada = app
        .sign_up(json!({"name": "Ada Lovelace", "email": "ada@example.com", "password": "analytical-engine-1"}))
        .await;
    let ada_token = text(&ada, "/data/registerPortalAccount/token");
    let before = app.mailbox.sent().len();

    // The same answer for an account's address, a customer's and a stranger's.
    let mut answers = Vec::new();
    for email in ["ada@example.com", "sam@example.com", "new@example.com"] {
        let r = app
            .gql(None, START_SIGN_UP, json!({"i": {"email": email}}))
            .await;
        assert_eq!(data(&r, "/data/startPortalSignUp/accepted"), true, "{r}");
        answers.push(without_expiry(r));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "answers differ: {answers:?}"
    );
    app.mailbox.wait_for(before + 3).await;
    // Only the mailboxes learn which it was.
    let ada_mail = app.mailbox.texts_to("ada@example.com");
    let note = ada_mail.last().expect("a note to Ada");
    assert!(note.contains("already have one"), "{note}");
    let sam_code = app.mailbox.code_for("sam@example.com").await;
    let new_code = app.mailbox.code_for("new@example.com").await;

    // Guessing a code for the account's address reads as a wrong code for a stranger's.
    let guess = |email: &str| json!({"i": {"name": "Eve", "email": email, "password": "eve-guesses-1", "code": "00000000"}});
    let at_account = app.gql(None, REGISTER, guess("ada@example.com")).await;
    let at_stranger = app.gql(None, REGISTER, guess("new@example.com")).await;
    assert_eq!(refusal(&at_account), refusal(&at_stranger));
    assert_eq!(refusal(&at_account)[0], "VALIDATION", "{at_account}");
    assert_eq!(refusal(&at_account)[1], "code", "{at_account}");

    // Sam's code gives the customer staff entered his account (no second customer).
    let r = app
        .gql(
            None,
            REGISTER,
            json!({"i": {"name": "Sam S.", "email": "SAM@example.com", "password": "sams-password-1",
                "code": sam_code}}),
        )
        .await;
    assert_eq!(text(&r, "/data/registerPortalAccount/customerId"), sam_id);
    let sam_token = text(&r, "/data/registerPortalAccount/token");
    let login = app
        .gql(
            None,
            "mutation($i: LoginInput!) { portalLogin(input: $i) { customerId } }",
            json!({"i": {"email": "sam@example.com", "password": "sams-password-1"}}),
        )
        .await;
    assert_eq!(text(&login, "/data/portalLogin/customerId"), sam_id);
    let again = app
        .gql(
            None,
            REGISTER,
            json!({"i": {"name": "Sam S.", "email": "sam@example.com", "password": "another-password-1",
                "code": sam_code}}),
        )
        .await;
    assert_eq!(refusal(&again)[0], "RULE_VIOLATION", "a used code: {again}");
    let _ = sam_token;

    // The stranger signs up; the code proved the address, so it may receive marketing.
    let r = app
        .gql(
            None,
            REGISTER,
            json!({"i": {"name": "Nell New", "email": "new@example.com", "password": "nells-password-1",
                "code": new_code}}),
        )
        .await;
    let nell = text(&r, "/data/registerPortalAccount/token");
    let consent = app
        .gql(
            Some(&nell),
            "mutation { setMyMarketingConsent(input: {channel: EMAIL, granted: true}) { customer { emailConsent } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(
            &consent,
            "/data/setMyMarketingConsent/customer/emailConsent"
        ),
        true,
        "{consent}"
    );

    // The code's message names no address in the log.
    let log = app
        .gql(
            Some(&admin),
            "{ eventLog(eventTypes: [\"MessageQueued\"], first: 100) { nodes { payload } } }",
            json!({}),
        )
        .await;
    let queued = data(&log, "/data/eventLog/nodes").to_string();
    assert!(queued.contains("withheld"), "{queued}");
    assert!(!queued.contains("new@example.com"), "{queued}");
    let hashed = worker::address_codes::address_hash("new@example.com");
    assert!(
        !queued.contains(&hashed[..12]),
        "a hash of the address: {queued}"
    );

    // The profile page cannot tell a taken address from a free one either.
    let profile = |email: &str| json!({"i": {"name": "Ada Lovelace", "email": email}});
    let update =
        "mutation($i: UpdateMyProfileInput!) { updateMyProfile(input: $i) { customer { id } } }";
    let taken = app
        .gql(Some(&ada_token), update, profile("sam@example.com"))
        .await;
    let free = app
        .gql(Some(&ada_token), update, profile("free@example.com"))
        .await;
    assert_eq!(refusal(&taken), refusal(&free));
    assert_eq!(refusal(&taken)[0], "VALIDATION", "{taken}");

    // Moving Ada's sign-in: the same answer for Sam's address and a free one; only the free
    // one is mailed a code, and it moves her sign-in there.
    let sam_mail = app.mailbox.texts_to("sam@example.com").len();
    let to_taken = app
        .gql(
            Some(&ada_token),
            CHANGE,
            json!({"i": {"email": "sam@example.com"}}),
        )
        .await;
    let to_free = app
        .gql(
            Some(&ada_token),
            CHANGE,
            json!({"i": {"email": "ada.l@example.com"}}),
        )
        .await;
    assert_eq!(without_expiry(to_taken.clone()), without_expiry(to_free));
    assert_eq!(data(&to_taken, "/data/requestEmailChange/accepted"), true);
    let code = app.mailbox.code_for("ada.l@example.com").await;
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        assert_eq!(
            app.mailbox.texts_to("sam@example.com").len(),
            sam_mail,
            "a taken address was mailed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = app
        .gql(
            Some(&ada_token),
            "mutation($i: ConfirmEmailChangeInput!) { confirmEmailChange(input: $i) { email position } }",
            json!({"i": {"email": "ada.l@example.com", "code": code}}),
        )
        .await;
    assert_eq!(
        text(&moved, "/data/confirmEmailChange/email"),
        "ada.l@example.com"
    );
    let portal_login =
        |email: &str| json!({"i": {"email": email, "password": "analytical-engine-1"}});
    let login = "mutation($i: LoginInput!) { portalLogin(input: $i) { token } }";
    let new_address = app
        .gql(None, login, portal_login("ada.l@example.com"))
        .await;
    assert!(new_address["errors"].is_null(), "{new_address}");
    let old_address = app.gql(None, login, portal_login("ada@example.com")).await;
    assert!(!old_address["errors"].is_null(), "{old_address}");

    tests::health::assert_no_failures(&app.server.base).await;
}

async fn wrong_codes_are_limited_per_address(engine: Engine) {
    let db = TestDb::new(engine).await;
    // Each request from its own network: what is limited here is the address.
    let app = TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    let http = reqwest::Client::new();
    let from = |n: u32| format!("198.18.7.{n}");
    let post = |n: u32, query: &'static str, variables: Value| {
        let http = http.clone();
        let url = app.server.url.clone();
        async move {
            http.post(url)
                .header("x-forwarded-for", from(n))
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .expect("send")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let r = post(
        1,
        START_SIGN_UP,
        json!({"i": {"email": "guess@example.com"}}),
    )
    .await;
    assert_eq!(data(&r, "/data/startPortalSignUp/accepted"), true);
    let code = app.mailbox.code_for("guess@example.com").await;
    assert_eq!(code.len(), 8, "sign-up codes have eight digits");
    let wrong = if code == "99999999" {
        "99999998"
    } else {
        "99999999"
    };
    let attempt = |n: u32, code: &str| {
        post(
            n,
            REGISTER,
            json!({"i": {"name": "Gus", "email": "guess@example.com", "password": "guessing-pass-1",
                "code": code}}),
        )
    };
    let mut codes = Vec::new();
    for n in 2..8 {
        codes.push(refusal(&attempt(n, wrong).await)[0].clone());
    }
    assert_eq!(
        codes,
        [
            "VALIDATION",
            "VALIDATION",
            "VALIDATION",
            "VALIDATION",
            "VALIDATION",
            "RATE_LIMITED"
        ]
    );
    // Limited, even with the right code: guesses cannot outrun the limit.
    let right = attempt(9, &code).await;
    assert_eq!(refusal(&right)[0], "RATE_LIMITED", "{right}");
    tests::health::assert_no_failures(&app.server.base).await;
}

async fn a_retried_request_mails_one_code_and_a_refused_sign_up_can_be_finished(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    // A double-click: two copies of one keyed request at once.
    let start = json!({"i": {"email": "kim@example.com", "idempotencyKey": "double-click-1"}});
    let (a, b) = tokio::join!(
        app.gql(None, START_SIGN_UP, start.clone()),
        app.gql(None, START_SIGN_UP, start.clone())
    );
    assert_eq!(without_expiry(a), without_expiry(b));
    let code = app.mailbox.code_for("kim@example.com").await;
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        assert_eq!(
            app.mailbox.texts_to("kim@example.com").len(),
            1,
            "a retried request mailed a second code"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Refused for its referral code: the code still works for the corrected sign-up.
    let sign_up = |referral: Option<&str>| {
        json!({"i": {"name": "Kim Kay", "email": "kim@example.com", "password": "kims-password-1",
            "code": code, "referralCode": referral}})
    };
    let refused = app.gql(None, REGISTER, sign_up(Some("NOSUCHCODE"))).await;
    assert_eq!(refusal(&refused)[0], "VALIDATION", "{refused}");
    assert_eq!(refusal(&refused)[1], "referralCode", "{refused}");
    let r = app.gql(None, REGISTER, sign_up(None)).await;
    assert!(r["errors"].is_null(), "{r}");
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    a_sign_up_tells_nobody_whether_an_email_is_a_customer,
    wrong_codes_are_limited_per_address,
    a_retried_request_mails_one_code_and_a_refused_sign_up_can_be_finished
);

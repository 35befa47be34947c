//! Who a promotion goes to, and stopping one (issue #16), over HTTP against the server
//! process, on both engines, with a Resend stand-in: birthday and anniversary promotions
//! created through GraphQL reach exactly the customers whose day it is (in the business's
//! zone) when their jobs run; a birthday-this-week/month campaign; a tier audience; one
//! audience at a time; pause, resume and cancel as documented.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::app::{data, text, TestApp};
use tests::{Engine, TestDb};

const CRON_SECRET: &str = "cron-secret-for-promotion-audiences-0123456";
const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

async fn start(db: &TestDb) -> TestApp {
    TestApp::start_with(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &db.url,
        &[
            ("CRON_SECRET", CRON_SECRET),
            ("BUSINESS_TIMEZONE", "America/Chicago"),
        ],
    )
    .await
}

/// A customer with email consent (recorded by staff).
async fn customer(app: &TestApp, admin: &str, input: Value) -> String {
    let c = app
        .gql(
            Some(admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
            json!({ "i": input }),
        )
        .await;
    let id = text(&c, "/data/createCustomer/customer/id");
    let r = app
        .gql(
            Some(admin),
            "mutation($i: MarketingConsentInput!) { setMarketingConsent(input: $i) { position } }",
            json!({"i": {"id": id, "channel": "EMAIL", "granted": true}}),
        )
        .await;
    app.sync(admin, &text(&r, "/data/setMarketingConsent/position"))
        .await;
    id
}

async fn create(app: &TestApp, admin: &str, extra: Value) -> Value {
    let now = chrono::Utc::now();
    let mut input = json!({
        "name": "Promotion", "channel": "EMAIL", "template": "Hi {{ first_name }}",
        "startsAt": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "endsAt": (now + chrono::Duration::days(30)).to_rfc3339(),
    });
    for (k, v) in extra.as_object().expect("object") {
        input[k] = v.clone();
    }
    app.gql(
        Some(admin),
        "mutation($i: CreatePromotionInput!) { createPromotion(input: $i) { promotionId position } }",
        json!({ "i": input }),
    )
    .await
}

async fn created(app: &TestApp, admin: &str, extra: Value) -> String {
    let r = create(app, admin, extra).await;
    app.sync(admin, &text(&r, "/data/createPromotion/position"))
        .await;
    text(&r, "/data/createPromotion/promotionId")
}

async fn mutate(app: &TestApp, admin: &str, name: &str, input: Value) -> Value {
    let input_type = match name {
        "schedulePromotion" => "SchedulePromotionInput",
        _ => "PromotionRefInput",
    };
    let r = app
        .gql(
            Some(admin),
            &format!("mutation($i: {input_type}!) {{ {name}(input: $i) {{ position }} }}"),
            json!({ "i": input }),
        )
        .await;
    if let Some(p) = r.pointer(&format!("/data/{name}/position")) {
        app.sync(admin, p.as_str().unwrap_or_default()).await;
    }
    r
}

async fn schedule_now(app: &TestApp, admin: &str, id: &str) {
    schedule_in(app, admin, id, 1).await;
}

/// Schedules the promotion `secs` seconds from now and waits until it is due.
async fn schedule_in(app: &TestApp, admin: &str, id: &str, secs: i64) {
    let at = chrono::Utc::now() + chrono::Duration::seconds(secs);
    let r = mutate(
        app,
        admin,
        "schedulePromotion",
        json!({"id": id, "sendAt": at.to_rfc3339()}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let wait = (at - chrono::Utc::now()).num_milliseconds() + 100;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
}

/// The promotion's counts and status, once the read models include everything so far.
async fn counts(app: &TestApp, admin: &str, id: &str) -> (i64, i64, String) {
    // A write after the job's, then a sync to it: the job's events are projected too.
    let mark = app
        .gql(
            Some(admin),
            "mutation { createCustomer(input: {name: \"Sync Mark\"}) { position } }",
            json!({}),
        )
        .await;
    app.sync(admin, &text(&mark, "/data/createCustomer/position"))
        .await;
    let r = app
        .gql(
            Some(admin),
            "{ promotions(first: 50) { nodes { id delivered skipped status } } }",
            json!({}),
        )
        .await;
    let node = data(&r, "/data/promotions/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
        .expect("the promotion");
    (
        node["delivered"].as_i64().unwrap_or(-1),
        node["skipped"].as_i64().unwrap_or(-1),
        node["status"].as_str().unwrap_or_default().to_string(),
    )
}

async fn until_mail(app: &TestApp, to: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.mailbox.texts_to(to).len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} emails to {to}: {:?}",
            app.mailbox.sent()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn birthday_and_anniversary_promotions_reach_the_customers_whose_day_it_is(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = start(&db).await;
    let admin = app.login_admin().await;
    let today = chrono::Utc::now().with_timezone(&TZ).date_naive();
    let years_ago = |n: i32, d: chrono::NaiveDate| {
        d.with_year(d.year() - n)
            .unwrap_or_else(|| {
                d.pred_opt()
                    .expect("day")
                    .with_year(d.year() - n)
                    .expect("y")
            })
            .to_string()
    };
    use chrono::Datelike;
    let tomorrow = today.succ_opt().expect("tomorrow");
    let weeks_ago = (today - chrono::Duration::days(40)).to_string();
    customer(
        &app,
        &admin,
        json!({"name": "Bea Birthday", "email": "bea@example.com",
        "birthday": years_ago(30, today), "customerSince": weeks_ago}),
    )
    .await;
    customer(
        &app,
        &admin,
        json!({"name": "Nick Tomorrow", "email": "nick@example.com",
        "birthday": years_ago(30, tomorrow), "customerSince": years_ago(2, tomorrow)}),
    )
    .await;
    customer(
        &app,
        &admin,
        json!({"name": "Ann Anniversary", "email": "ann@example.com",
        "customerSince": years_ago(3, today)}),
    )
    .await;

    // Birthday and anniversary promotions take no other audience.
    let both = create(&app, &admin, json!({"kind": "BIRTHDAY", "tag": "vip"})).await;
    assert_eq!(
        both["errors"][0]["extensions"]["field"], "audience",
        "{both}"
    );

    let birthday = created(
        &app,
        &admin,
        json!({"kind": "BIRTHDAY", "name": "Birthday treat", "template": "Happy birthday {{ first_name }}!"}),
    )
    .await;
    // An edit that leaves out `kind` keeps it a birthday promotion.
    let now = chrono::Utc::now();
    let edited = app
        .gql(
            Some(&admin),
            "mutation($i: UpdatePromotionInput!) { updatePromotion(input: $i) { position } }",
            json!({"i": {"id": birthday, "content": {"name": "Birthday treat", "channel": "EMAIL",
                "template": "Happy birthday {{ first_name }}!",
                "startsAt": (now - chrono::Duration::minutes(1)).to_rfc3339(),
                "endsAt": (now + chrono::Duration::days(30)).to_rfc3339()}}}),
        )
        .await;
    app.sync(&admin, &text(&edited, "/data/updatePromotion/position"))
        .await;
    let listed = app
        .gql(
            Some(&admin),
            "{ promotions(first: 10) { nodes { id kind } } }",
            json!({}),
        )
        .await;
    let kind = data(&listed, "/data/promotions/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == birthday.as_str())
        .map(|n| n["kind"].clone());
    assert_eq!(kind, Some(json!("birthday")), "{listed}");
    let anniversary = created(
        &app,
        &admin,
        json!({"kind": "ANNIVERSARY", "name": "Thank you", "template": "Thanks for the years, {{ first_name }}!"}),
    )
    .await;
    schedule_now(&app, &admin, &birthday).await;
    schedule_now(&app, &admin, &anniversary).await;
    app.run_job(CRON_SECRET, "schedule-birthday-promotions")
        .await;
    app.run_job(CRON_SECRET, "schedule-anniversary-promotions")
        .await;
    until_mail(&app, "bea@example.com", 1).await;
    until_mail(&app, "ann@example.com", 1).await;
    assert_eq!(
        counts(&app, &admin, &birthday).await.0,
        1,
        "one birthday today"
    );
    assert_eq!(
        counts(&app, &admin, &anniversary).await.0,
        1,
        "one anniversary today"
    );
    let bea = app.mailbox.texts_to("bea@example.com");
    assert_eq!(bea.len(), 1, "{bea:?}");
    assert!(
        bea[0].starts_with("Happy birthday Bea!\n\nUnsubscribe: "),
        "{bea:?}"
    );
    assert!(app.mailbox.texts_to("nick@example.com").is_empty());
    assert!(app.mailbox.texts_to("ann@example.com")[0].starts_with("Thanks for the years, Ann!"));
    // The job again the same day sends nothing more.
    app.run_job(CRON_SECRET, "schedule-birthday-promotions")
        .await;
    assert_eq!(counts(&app, &admin, &birthday).await.0, 1);
    tests::health::assert_no_failures(&app.server.base).await;
}

async fn a_promotion_can_be_paused_resumed_and_cancelled(engine: Engine) {
    let db = TestDb::new(engine).await;
    let app = start(&db).await;
    let admin = app.login_admin().await;
    for (name, email) in [
        ("Ada Lovelace", "ada@example.com"),
        ("Grace Hopper", "grace@example.com"),
    ] {
        customer(&app, &admin, json!({"name": name, "email": email})).await;
    }
    // One audience at a time, within bounds.
    let two = create(&app, &admin, json!({"tag": "vip", "tier": "GOLD"})).await;
    assert_eq!(two["errors"][0]["extensions"]["field"], "audience", "{two}");
    let zero = create(&app, &admin, json!({"lapsedDays": 0})).await;
    assert_eq!(
        zero["errors"][0]["extensions"]["field"], "lapsedDays",
        "{zero}"
    );
    // Everyone starts at Bronze: a Gold campaign reaches nobody.
    let gold = created(&app, &admin, json!({"tier": "GOLD", "name": "Gold only"})).await;
    schedule_now(&app, &admin, &gold).await;
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
    assert_eq!(counts(&app, &admin, &gold).await.0, 0, "nobody is Gold");

    let spring = created(
        &app,
        &admin,
        json!({"name": "Spring", "template": "Spring, {{ first_name }}"}),
    )
    .await;
    // Paused before it is due (so the scheduler's own run cannot deliver it first), then
    // scheduled: it stays paused.
    let paused = mutate(&app, &admin, "pausePromotion", json!({"id": spring})).await;
    assert!(paused["errors"].is_null(), "{paused}");
    schedule_now(&app, &admin, &spring).await;
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
    let (delivered, _, status) = counts(&app, &admin, &spring).await;
    assert_eq!((delivered, status.as_str()), (0, "paused"));
    let resumed = mutate(&app, &admin, "resumePromotion", json!({"id": spring})).await;
    assert!(resumed["errors"].is_null(), "{resumed}");
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
    assert_eq!(counts(&app, &admin, &spring).await.0, 2);
    until_mail(&app, "ada@example.com", 1).await;
    until_mail(&app, "grace@example.com", 1).await;

    // Cancelled between being scheduled and being due: nothing is sent.
    let autumn = created(&app, &admin, json!({"name": "Autumn"})).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = mutate(
        &app,
        &admin,
        "schedulePromotion",
        json!({"id": autumn, "sendAt": at.to_rfc3339()}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let cancelled = mutate(&app, &admin, "cancelPromotion", json!({"id": autumn})).await;
    assert!(cancelled["errors"].is_null(), "{cancelled}");
    let wait = (at - chrono::Utc::now()).num_milliseconds() + 100;
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
    let (delivered, _, status) = counts(&app, &admin, &autumn).await;
    assert_eq!((delivered, status.as_str()), (0, "cancelled"));
    let again = mutate(&app, &admin, "resumePromotion", json!({"id": autumn})).await;
    assert_eq!(
        again["errors"][0]["extensions"]["rule"], "PROMOTION_CANCELLED",
        "{again}"
    );
    // The cancelled one sent nothing; the resumed one still counts what it sent.
    assert_eq!(app.mailbox.texts_to("ada@example.com").len(), 1);
    assert_eq!(counts(&app, &admin, &spring).await.0, 2);
    tests::health::assert_no_failures(&app.server.base).await;
}

/// Born `n` years before `d` (the day before, when `d` is a 29 February the year lacks).
fn years_before(n: i32, d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    d.with_year(d.year() - n)
        .or_else(|| d.pred_opt().and_then(|p| p.with_year(d.year() - n)))
        .expect("a date")
        .to_string()
}

async fn a_birthday_week_campaign_reaches_the_customers_born_this_week_only(engine: Engine) {
    use chrono::Datelike;
    let db = TestDb::new(engine).await;
    let app = start(&db).await;
    let admin = app.login_admin().await;
    let today = chrono::Utc::now().with_timezone(&TZ).date_naive();
    let monday = today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let sunday = monday + chrono::Duration::days(6);
    let people = [
        ("mon@example.com", Some(monday)),
        ("sun@example.com", Some(sunday)),
        ("lastweek@example.com", monday.pred_opt()),
        ("nextweek@example.com", sunday.succ_opt()),
        ("nobirthday@example.com", None),
    ];
    for (email, birthday) in people {
        let mut input = json!({"name": format!("Born {email}"), "email": email});
        if let Some(b) = birthday {
            input["birthday"] = json!(years_before(30, b));
        }
        customer(&app, &admin, input).await;
    }
    let both = create(
        &app,
        &admin,
        json!({"birthdayIn": "THIS_WEEK", "tag": "vip"}),
    )
    .await;
    assert_eq!(
        both["errors"][0]["extensions"]["field"], "audience",
        "{both}"
    );

    let week = created(
        &app,
        &admin,
        json!({"name": "Birthday week", "birthdayIn": "THIS_WEEK", "template": "Happy birthday week, {{ first_name }}"}),
    )
    .await;
    schedule_now(&app, &admin, &week).await;
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
    assert_eq!(counts(&app, &admin, &week).await.0, 2);
    until_mail(&app, "mon@example.com", 1).await;
    until_mail(&app, "sun@example.com", 1).await;
    for other in [
        "lastweek@example.com",
        "nextweek@example.com",
        "nobirthday@example.com",
    ] {
        assert!(app.mailbox.texts_to(other).is_empty(), "{other}");
    }

    // This month: whoever of them was born in today's month.
    let month = created(
        &app,
        &admin,
        json!({"name": "Birthday month", "birthdayIn": "THIS_MONTH"}),
    )
    .await;
    schedule_now(&app, &admin, &month).await;
    app.run_job(CRON_SECRET, "process-promotion-deliveries")
        .await;
    let born_this_month = people
        .iter()
        .filter(|(_, b)| b.is_some_and(|b| b.month() == today.month()))
        .count();
    assert_eq!(counts(&app, &admin, &month).await.0, born_this_month as i64);
    tests::health::assert_no_failures(&app.server.base).await;
}

tests::on_both_engines!(
    a_birthday_week_campaign_reaches_the_customers_born_this_week_only,
    birthday_and_anniversary_promotions_reach_the_customers_whose_day_it_is,
    a_promotion_can_be_paused_resumed_and_cancelled
);

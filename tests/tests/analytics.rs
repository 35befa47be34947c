//! Analytics over HTTP against numbers computed by hand from a small business
//! seeded through the commands (then served by the server process).

use std::time::{Duration, Instant};

use commands::domain::consent::{Channel, MarketingEligibility};
use commands::domain::ids::PromotionId;
use commands::domain::ports::Role;
use commands::domain::promotion::{
    AudienceSegment, PromotionCommand, PromotionDraft, PromotionKind,
};
use commands::domain::review::{google_review_id, ReviewCommand, ReviewSource};
use commands::domain::staff::StaffUserCommand;
use commands::domain::testing::test_now;
use serde_json::{json, Value};
use tests::app_support::{complete, crm, customer, meta, scheduled_job, staff, technician};
use tests::{Engine, TestDb};
use uuid::Uuid;

const ADMIN: (&str, &str) = ("owner@dirtfree.example", "correct horse battery");

async fn start(database_url: &str) -> tests::ServerProcess {
    let envs = [
        ("DATABASE_URL", database_url),
        ("ADMIN_EMAIL", ADMIN.0),
        ("ADMIN_PASSWORD", ADMIN.1),
        ("DEMO_SEED", "off"),
        ("BUSINESS_TIMEZONE", "America/Chicago"),
    ];
    tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &envs,
        Duration::from_secs(60),
    )
    .await
}

async fn gql(s: &tests::ServerProcess, token: Option<&str>, query: &str) -> Value {
    let mut req = reqwest::Client::new()
        .post(&s.url)
        .json(&json!({ "query": query }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("send").json().await.expect("json")
}

const KPIS: &str = "promotionAttributedRevenue { amountCents } reviewAverageCenti reviewDistribution \
                    activeCustomers lapsedCustomers tierDistribution { tier accounts } revenue { amountCents }";

/// Customers A ($600 job) and B ($100 job, on which B redeemed a campaign), C without jobs, all
/// on 2025-06-15; Google reviews of 5, 4 and 2 stars that day.
async fn kpis_match_hand_computed_figures(engine: Engine) {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let crm = crm(log.clone());
    let tech = technician(&crm).await;
    let (a, b, _c) = (
        customer(&crm, 1).await,
        customer(&crm, 2).await,
        customer(&crm, 3).await,
    );
    let ja = scheduled_job(&crm, 101, a, tech).await;
    complete(&crm, ja, 60_000).await;
    let jb = scheduled_job(&crm, 102, b, tech).await;
    complete(&crm, jb, 10_000).await;
    for (i, rating) in [5, 4, 2].into_iter().enumerate() {
        let external_id = format!("g-review-{i}");
        let id = google_review_id(&external_id);
        crm.reviews()
            .execute(
                id,
                staff(),
                ReviewCommand::Receive {
                    review_id: id,
                    source: ReviewSource::Google { external_id },
                    customer_id: None,
                    rating,
                    comment: None,
                },
                &meta(),
            )
            .await
            .expect("review");
    }
    let promo = PromotionId(Uuid::from_u128(77));
    let draft = PromotionDraft {
        name: "Spring rugs".into(),
        kind: PromotionKind::Campaign,
        audience: AudienceSegment::AllCustomers,
        channel: Channel::Email,
        template: "20% off rugs".into(),
        discount_code: Some("RUGS20".into()),
        discount: None,
        starts_at: test_now(),
        ends_at: test_now() + chrono::Duration::days(30),
    };
    // Scheduled an hour ahead, delivered and redeemed two hours later (a later clock).
    let later = commands::Crm::new(
        log.clone(),
        commands::domain::testing::services_at(test_now() + chrono::Duration::hours(2)),
    );
    for (crm, cmd) in [
        (
            &crm,
            PromotionCommand::Create {
                promotion_id: promo,
                draft,
            },
        ),
        (
            &crm,
            PromotionCommand::Schedule {
                send_at: test_now() + chrono::Duration::hours(1),
            },
        ),
        (
            &later,
            PromotionCommand::RecordDelivery {
                customer_id: b,
                eligibility: MarketingEligibility::Eligible,
            },
        ),
        (
            &later,
            PromotionCommand::RecordRedeemed {
                customer_id: b,
                job_id: Some(jb),
            },
        ),
    ] {
        crm.promotions()
            .execute(promo, staff(), cmd, &meta())
            .await
            .expect("promotion");
    }
    // The store is not empty, so the server creates no first admin: invite one here.
    let admin = commands::domain::ids::StaffUserId(Uuid::from_u128(9_999));
    for cmd in [
        StaffUserCommand::Invite {
            staff_user_id: admin,
            email: ADMIN.0.into(),
            name: "Owner".into(),
            role: Role::Admin,
            password_hash: None,
        },
        StaffUserCommand::SetPasswordHash {
            password_hash: worker::accounts::passwords::hash(ADMIN.1).expect("hash"),
        },
    ] {
        crm.staff_users()
            .execute(admin, commands::domain::Actor::System, cmd, &meta())
            .await
            .expect("admin");
    }
    log.close().await;

    let s = start(&db.url).await;
    let login = gql(
        &s,
        None,
        &format!(
            "mutation {{ login(input: {{email: \"{}\", password: \"{}\"}}) {{ token }} }}",
            ADMIN.0, ADMIN.1
        ),
    )
    .await;
    let token = login["data"]["login"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let kpis = |from: &'static str, to: &'static str| {
        let (s, token) = (&s, token.clone());
        async move {
            let q = format!("{{ kpis(from: \"{from}\", to: \"{to}\") {{ {KPIS} }} }}");
            let r = gql(s, Some(&token), &q).await;
            assert!(r.get("errors").is_none(), "{r}");
            r["data"]["kpis"].clone()
        }
    };
    // The policies award loyalty points (1 per dollar) in the server: A reaches silver (500)
    // and B is enrolled at bronze. The two happen in either order, so wait for both.
    let tiers = json!([{"tier": "bronze", "accounts": 1}, {"tier": "silver", "accounts": 1},
                       {"tier": "gold", "accounts": 0}, {"tier": "platinum", "accounts": 0}]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let year = loop {
        let k = kpis("2025-01-01", "2025-12-31").await;
        if k["tierDistribution"] == tiers || Instant::now() > deadline {
            break k;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(year["revenue"]["amountCents"], 70_000, "{year}");
    assert_eq!(
        year["promotionAttributedRevenue"]["amountCents"], 10_000,
        "B's job carried the campaign"
    );
    // (5 + 4 + 2) / 3 = 3.666… → 366 hundredths.
    assert_eq!(year["reviewAverageCenti"], 366);
    assert_eq!(year["reviewDistribution"], json!([0, 1, 0, 1, 1]));
    assert_eq!(year["tierDistribution"], tiers);
    // Both customers with jobs were active in 2025; a year after the end of 2026 both lapsed.
    assert_eq!(
        (
            year["activeCustomers"].as_i64(),
            year["lapsedCustomers"].as_i64()
        ),
        (Some(2), Some(0))
    );
    let later = kpis("2026-07-01", "2026-12-31").await;
    assert_eq!(
        (
            later["activeCustomers"].as_i64(),
            later["lapsedCustomers"].as_i64()
        ),
        (Some(0), Some(2))
    );
    assert_eq!(
        later["reviewAverageCenti"],
        Value::Null,
        "no reviews in that range"
    );
    assert_eq!(later["reviewDistribution"], json!([0, 0, 0, 0, 0]));
    // The reviews arrived at 10:00 in Chicago on 2025-06-15: that local day counts them, the
    // day before does not (the range is in the business's time zone, not UTC).
    assert_eq!(
        kpis("2025-06-15", "2025-06-15").await["reviewDistribution"],
        json!([0, 1, 0, 1, 1])
    );
    assert_eq!(
        kpis("2025-06-14", "2025-06-14").await["reviewDistribution"],
        json!([0, 0, 0, 0, 0])
    );
    tests::health::assert_no_failures(&s.base).await;
}

tests::on_both_engines!(kpis_match_hand_computed_figures);

//! The application layer on both engines: cross-aggregate checks, typed
//! errors, the policies (with their crash-safe checkpoints) and the demo seed.

use std::collections::BTreeSet;

use commands::domain::customer::CustomerCommand;
use commands::domain::ids::{CustomerId, JobId, LoyaltyAccountId, ReferralId, ReviewRequestId};
use commands::domain::job::{BookingSource, JobCommand};
use commands::domain::testing;
use commands::policies::{load_checkpoint, save_checkpoint};
use commands::{LogPosition, Policy, PolicyRunner};
use demo_data::Scale;
use tests::app_support::{self as support, meta, staff};
use tests::{Engine, TestDb};
use uuid::Uuid;

tests::on_both_engines!(
    completing_a_job_awards_loyalty_points_and_requests_a_review,
    a_referral_rewards_both_sides_once_on_the_first_completed_job,
    policies_resume_from_their_checkpoint_after_a_crash_without_double_effects,
    a_payment_that_succeeds_marks_its_job_paid,
    booking_a_job_for_an_unknown_customer_is_not_found_naming_customer_id,
    bad_commands_append_nothing,
    the_demo_seed_is_deterministic,
    the_small_demo_seed_makes_customers_jobs_loyalty_and_reviews,
);

async fn completing_a_job_awards_loyalty_points_and_requests_a_review(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let tech = support::technician(&crm).await;
    let customer = support::customer(&crm, 1).await;
    let job = support::scheduled_job(&crm, 100, customer, tech).await;
    support::complete(&crm, job, 25_000).await;

    let runner = PolicyRunner::new(crm.clone());
    runner.run_until_caught_up().await.expect("policies");

    let account = crm
        .loyalty_accounts()
        .load(LoyaltyAccountId::for_customer(customer))
        .await
        .expect("load");
    assert_eq!(account.aggregate.balance(), 250, "$250.00 earns 250 points");
    let request = ReviewRequestId::for_job(job).to_string();
    assert_eq!(
        support::stream_types(crm.log(), "ReviewRequest", &request).await,
        vec!["ReviewRequested"]
    );
    // The policy's events say what caused them.
    let earned = crm
        .log()
        .load_stream(
            "LoyaltyAccount",
            &LoyaltyAccountId::for_customer(customer).to_string(),
            0,
        )
        .await
        .expect("stream");
    let cause = format!("Job:{job}:{}", 4);
    assert!(
        earned
            .iter()
            .all(|e| e.metadata["causation_id"] == cause.as_str()),
        "{:?}",
        earned[0].metadata
    );
    assert!(earned
        .iter()
        .all(|e| e.metadata["actor"] == "system:policy:loyalty-points"));
    assert!(runner
        .status()
        .iter()
        .all(|s| s.last_error.is_none() && s.checkpoint > LogPosition::START));
}

async fn a_referral_rewards_both_sides_once_on_the_first_completed_job(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let tech = support::technician(&crm).await;
    let referrer = support::customer(&crm, 1).await;
    let referee = support::customer(&crm, 2).await;
    crm.issue_referral_code(referrer, staff(), &meta())
        .await
        .expect("code");
    let code = crm
        .customers()
        .load(referrer)
        .await
        .expect("load")
        .aggregate
        .referral_code()
        .cloned()
        .expect("has a code");
    assert_eq!(
        crm.referral_code_owner(code.as_str())
            .await
            .expect("lookup"),
        Some(referrer)
    );
    crm.record_referral(referee, &code.as_str().to_lowercase(), staff(), &meta())
        .await
        .expect("referral");

    let first = support::scheduled_job(&crm, 100, referee, tech).await;
    let second = support::scheduled_job(&crm, 101, referee, tech).await;
    support::complete(&crm, first, 10_000).await;
    support::complete(&crm, second, 10_000).await;
    PolicyRunner::new(crm.clone())
        .run_until_caught_up()
        .await
        .expect("policies");

    let referral = ReferralId::for_referee(referee).to_string();
    assert_eq!(
        support::stream_types(crm.log(), "Referral", &referral).await,
        vec!["ReferralRecorded", "ReferralRewarded"]
    );
    let crm_ref = &crm;
    let bonus = |c: CustomerId| async move {
        let crm = crm_ref;
        let types = support::stream_types(
            crm.log(),
            "LoyaltyAccount",
            &LoyaltyAccountId::for_customer(c).to_string(),
        )
        .await;
        types
            .iter()
            .filter(|t| *t == "ReferralBonusAwarded")
            .count()
    };
    assert_eq!(bonus(referrer).await, 1);
    assert_eq!(bonus(referee).await, 1);
    let balance = |c: CustomerId| async move {
        let crm = crm_ref;
        crm.loyalty_accounts()
            .load(LoyaltyAccountId::for_customer(c))
            .await
            .expect("load")
            .aggregate
            .balance()
    };
    assert_eq!(balance(referrer).await, 250);
    assert_eq!(balance(referee).await, 100 + 100 + 250);
}

async fn policies_resume_from_their_checkpoint_after_a_crash_without_double_effects(
    engine: Engine,
) {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let tech = support::technician(&crm).await;
    let referrer = support::customer(&crm, 1).await;
    let referee = support::customer(&crm, 2).await;
    crm.issue_referral_code(referrer, staff(), &meta())
        .await
        .expect("code");
    let code = crm
        .customers()
        .load(referrer)
        .await
        .expect("load")
        .aggregate
        .referral_code()
        .cloned()
        .expect("code");
    crm.record_referral(referee, code.as_str(), staff(), &meta())
        .await
        .expect("referral");
    for n in 0..3 {
        let job = support::scheduled_job(&crm, 100 + n, referee, tech).await;
        support::complete(&crm, job, 12_345).await;
    }
    PolicyRunner::new(crm.clone())
        .run_until_caught_up()
        .await
        .expect("first run");
    let before = support::all_events(crm.log()).await;

    // A crash after the commands but before any checkpoint write.
    for p in Policy::ALL {
        save_checkpoint(crm.log(), p.name(), LogPosition::START)
            .await
            .expect("rewind");
    }
    let restarted = PolicyRunner::new(crm.clone());
    restarted.run_until_caught_up().await.expect("second run");
    let after = support::all_events(crm.log()).await;
    assert_eq!(
        after.len(),
        before.len(),
        "re-handled events appended nothing"
    );
    let head = crm.log().committed_head().await.expect("head");
    for p in Policy::ALL {
        assert_eq!(
            load_checkpoint(crm.log(), p.name())
                .await
                .expect("checkpoint"),
            head
        );
    }
}

async fn a_payment_that_succeeds_marks_its_job_paid(engine: Engine) {
    use commands::domain::ids::PaymentId;
    use commands::domain::payment::PaymentCommand;
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let tech = support::technician(&crm).await;
    let customer = support::customer(&crm, 1).await;
    let job = support::scheduled_job(&crm, 100, customer, tech).await;
    support::complete(&crm, job, 9_900).await;
    let payment = PaymentId(Uuid::from_u128(500));
    let intent = PaymentCommand::CreateIntent {
        payment_id: payment,
        job_id: job,
        customer_id: customer,
        amount_cents: 9_900,
        provider_intent_id: "pi_1".into(),
    };
    crm.payments()
        .execute(payment, staff(), intent, &meta())
        .await
        .expect("intent");
    let ok = PaymentCommand::RecordSucceeded {
        provider_event_id: "evt_1".into(),
    };
    crm.payments()
        .execute(payment, staff(), ok.clone(), &meta())
        .await
        .expect("succeeded");
    crm.payments()
        .execute(payment, staff(), ok, &meta())
        .await
        .expect("redelivered webhook");
    PolicyRunner::new(crm.clone())
        .run_until_caught_up()
        .await
        .expect("policies");
    let types = support::stream_types(crm.log(), "Job", &job.to_string()).await;
    assert_eq!(
        types.iter().filter(|t| *t == "JobPaid").count(),
        1,
        "{types:?}"
    );
}

async fn booking_a_job_for_an_unknown_customer_is_not_found_naming_customer_id(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let job = JobId(Uuid::from_u128(100));
    let book = JobCommand::Book {
        job_id: job,
        customer_id: CustomerId(Uuid::from_u128(404)),
        source: BookingSource::Staff,
        services: vec!["carpet cleaning".into()],
        window: None,
    };
    let err = crm
        .jobs()
        .execute(job, staff(), book, &meta())
        .await
        .expect_err("unknown customer");
    assert_eq!(err.code(), "NOT_FOUND");
    assert_eq!(err.field(), Some("customerId"));
    assert!(
        matches!(
            err,
            commands::AppError::NotFound {
                entity: "customer",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(crm.log().count().await.expect("count"), 0);
}

async fn bad_commands_append_nothing(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let tech = support::technician(&crm).await;
    let customer = support::customer(&crm, 1).await;
    let job = support::scheduled_job(&crm, 100, customer, tech).await;
    let count = crm.log().count().await.expect("count");

    let negative = JobCommand::Complete {
        amount_cents: -500,
        services: vec!["carpet cleaning".into()],
        technician_id: None,
    };
    let err = crm
        .jobs()
        .execute(job, staff(), negative, &meta())
        .await
        .expect_err("negative amount");
    assert_eq!(
        (err.code(), err.field()),
        ("VALIDATION", Some("amountCents"))
    );

    let err = crm
        .jobs()
        .execute(
            job,
            staff(),
            JobCommand::Cancel {
                reason: "  ".into(),
            },
            &meta(),
        )
        .await
        .expect_err("empty reason");
    assert_eq!((err.code(), err.field()), ("VALIDATION", Some("reason")));

    let id = CustomerId(Uuid::from_u128(2));
    let create = CustomerCommand::Create {
        customer_id: id,
        name: "Jane".into(),
        email: None,
        phone: Some("call me maybe".into()),
        birthday: None,
        customer_since: None,
    };
    let err = crm
        .customers()
        .execute(id, staff(), create, &meta())
        .await
        .expect_err("invalid phone");
    assert_eq!((err.code(), err.field()), ("VALIDATION", Some("phone")));

    let err = crm
        .record_referral(id, "ABCD-EFGH", staff(), &meta())
        .await
        .expect_err("unknown code");
    assert_eq!(
        (err.code(), err.field()),
        ("NOT_FOUND", Some("referralCode"))
    );

    assert_eq!(
        crm.log().count().await.expect("count"),
        count,
        "refused commands appended nothing"
    );
}

type Fact = (String, String, u64, String, String);

async fn seeded_facts(engine: Engine, seed: u64) -> BTreeSet<Fact> {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    demo_data::seed(&crm, seed, Scale::Small)
        .await
        .expect("seed");
    support::all_events(crm.log())
        .await
        .into_iter()
        .map(|e| {
            (
                e.aggregate_type,
                e.aggregate_id,
                e.sequence,
                e.event_type,
                e.payload.to_string(),
            )
        })
        .collect()
}

async fn the_demo_seed_is_deterministic(engine: Engine) {
    let (a, b) = tokio::join!(seeded_facts(engine, 7), seeded_facts(engine, 7));
    assert!(!a.is_empty());
    let only_a: Vec<_> = a.difference(&b).take(3).collect();
    let only_b: Vec<_> = b.difference(&a).take(3).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "first run only: {only_a:?}\nsecond run only: {only_b:?}"
    );
}

async fn the_small_demo_seed_makes_customers_jobs_loyalty_and_reviews(engine: Engine) {
    let db = TestDb::new(engine).await;
    let crm = support::crm(db.log().await);
    let started = std::time::Instant::now();
    let summary = demo_data::seed(&crm, 42, Scale::Small).await.expect("seed");
    eprintln!(
        "small seed on {engine:?}: {summary:?} in {:?}",
        started.elapsed()
    );
    let events = support::all_events(crm.log()).await;
    let count = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count("CustomerCreated"), summary.customers);
    assert_eq!(count("JobBooked"), summary.jobs);
    assert!(
        summary.customers >= 30 && summary.jobs >= 150,
        "{summary:?}"
    );
    assert_eq!(count("JobCompleted"), summary.completed_jobs);
    assert!(summary.completed_jobs > summary.jobs / 2, "{summary:?}");
    assert!(count("JobCancelled") > 0);
    assert!(count("PointsEarned") > 0 && count("LoyaltyAccountEnrolled") > 0);
    assert!(count("ReviewRequested") > 0 && count("ReviewReceived") > 0);
    assert!(count("VehicleRegistered") > 0 && count("StaffUserInvited") >= 3);
    assert!(count("OpportunityCreated") > 0 && count("PromotionDelivered") > 0);
    assert_eq!(count("ReferralRecorded"), summary.referrals);
    // The seed refuses to run twice.
    let err = demo_data::seed(&crm, 42, Scale::Small)
        .await
        .expect_err("not empty");
    assert_eq!(err.rule(), Some("STORE_NOT_EMPTY"));
    // Every payload timestamp is inside the demo's two years.
    let end = demo_data::default_end();
    let _ = testing::test_now();
    for e in &events {
        let inner = e
            .payload
            .as_object()
            .and_then(|o| o.values().next())
            .expect("tagged payload");
        if let Some(at) = inner.get("at").and_then(|v| v.as_str()) {
            let at: chrono::DateTime<chrono::Utc> = at.parse().expect("rfc3339");
            assert!(
                at <= end && at >= end - chrono::Duration::days(731),
                "{} at {at}",
                e.event_type
            );
        }
    }
}

/// The full demo (500 customers, 3,000 jobs): slow, run by hand with
/// `cargo test -p tests --test application -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "takes a while; run by hand to time the full demo seed"]
async fn the_full_demo_seed_fills_two_years_of_business() {
    for engine in [Engine::Postgres, Engine::Sqlite] {
        let db = TestDb::new(engine).await;
        let crm = support::crm(db.log().await);
        let started = std::time::Instant::now();
        let summary = demo_data::seed(&crm, 1, Scale::Full).await.expect("seed");
        eprintln!(
            "full seed on {engine:?}: {summary:?} in {:?}",
            started.elapsed()
        );
        assert!(
            summary.customers >= 500 && summary.jobs >= 3_000,
            "{summary:?}"
        );
    }
}

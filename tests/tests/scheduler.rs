//! The scheduler: each of the 18 jobs over a fresh database with a clock the test moves, the
//! time-zone edge cases, two instances sharing one PostgreSQL, catch-up after a stop, and the
//! cron endpoint over HTTP against the server binary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::America::Chicago;
use commands::app::Crm;
use commands::domain::consent::{Channel, ConsentSource, MarketingEligibility};
use commands::domain::customer::CustomerCommand;
use commands::domain::ids::{
    CustomerId, JobId, LoyaltyAccountId, OpportunityId, OutboundMessageId, PromotionId,
    ScheduledReportId, StaffUserId,
};
use commands::domain::loyalty::{LoyaltyCommand, LoyaltyRules, TierThresholds};
use commands::domain::message::{MessageCommand, MessageKind, Provider, Recipient};
use commands::domain::opportunity::OpportunityCommand;
use commands::domain::ports::{DomainServices, FixedClock, RandomIds};
use commands::domain::promotion::{
    AudienceSegment, PromotionCommand, PromotionDraft, PromotionKind,
};
use commands::domain::scheduled_report::{ReportMetric, ReportPeriod, ScheduledReportCommand};
use commands::domain::values::Discount;
use commands::domain::Actor as DomainActor;
use commands::EventLog;
use commands::RecordedEvent;
use commands::StoreError;
use projections::ProjectionRunner;
use serde_json::Value;
use sqlx::Row;
use tests::app_support::{all_events, complete, meta, scheduled_job, staff, technician};
use tests::{Engine, TestDb};
use uuid::Uuid;
use worker::scheduler::{
    list_runs, GoogleReview, GoogleReviews, GoogleReviewsResult, JobName, Scheduler,
    SchedulerOptions,
};

// ------------------------------------------------------------------ harness

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("valid instant")
}

fn chicago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Chicago
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .expect("valid local time")
        .with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// One stored event of some aggregate type, undecoded (read from the events table
/// directly: a test helper, not the application's way in).
#[derive(Debug, Clone, PartialEq)]
struct StoredEvent {
    /// Aggregate id.
    aggregate_id: String,
    /// Sequence in the stream.
    sequence: i64,
    /// Event type.
    event_type: String,
    /// Payload (externally tagged JSON).
    payload: Value,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Every event of `aggregate_type` (of streams started at or after `started_since`, by the
/// database's clock), ordered by stream and sequence.
///
/// # Errors
/// [`StoreError::Database`].
async fn events_of_type(
    log: &EventLog,
    aggregate_type: &str,
    started_since: Option<DateTime<Utc>>,
) -> Result<Vec<StoredEvent>, StoreError> {
    // The filter is on the stream's first event so a run is never cut in half.
    match log {
        EventLog::Postgres(pg) => {
            let rows = sqlx::query(
                "SELECT aggregate_id, sequence, event_type, payload FROM events
                  WHERE aggregate_type = $1
                    AND ($2::timestamptz IS NULL OR aggregate_id IN (
                        SELECT aggregate_id FROM events
                         WHERE aggregate_type = $1 AND sequence = 1 AND recorded_at >= $2))
                  ORDER BY aggregate_id, sequence",
            )
            .bind(aggregate_type)
            .bind(started_since)
            .fetch_all(pg.pool())
            .await
            .map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(StoredEvent {
                        aggregate_id: r.try_get("aggregate_id").map_err(db)?,
                        sequence: r.try_get("sequence").map_err(db)?,
                        event_type: r.try_get("event_type").map_err(db)?,
                        payload: r.try_get("payload").map_err(db)?,
                    })
                })
                .collect()
        }
        EventLog::Sqlite(s) => {
            let since = started_since.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            let rows = sqlx::query(
                "SELECT aggregate_id, sequence, event_type, payload FROM events
                  WHERE aggregate_type = ?1
                    AND (?2 IS NULL OR aggregate_id IN (
                        SELECT aggregate_id FROM events
                         WHERE aggregate_type = ?1 AND sequence = 1 AND recorded_at >= ?2))
                  ORDER BY aggregate_id, sequence",
            )
            .bind(aggregate_type)
            .bind(since)
            .fetch_all(s.reader())
            .await
            .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let payload: String = r.try_get("payload").map_err(db)?;
                    Ok(StoredEvent {
                        aggregate_id: r.try_get("aggregate_id").map_err(db)?,
                        sequence: r.try_get("sequence").map_err(db)?,
                        event_type: r.try_get("event_type").map_err(db)?,
                        payload: serde_json::from_str(&payload).map_err(|e| {
                            StoreError::Database(format!("unreadable payload: {e}"))
                        })?,
                    })
                })
                .collect()
        }
        #[cfg(feature = "esdb")]
        EventLog::Esdb(_) => unreachable!("the scheduler tests run on the SQL engines"),
    }
}

async fn stored(log: &EventLog, event_type: &str) -> Vec<StoredEvent> {
    let aggregate = commands::domain::all_event_types()
        .into_iter()
        .find(|(_, e)| *e == event_type)
        .map(|(a, _)| a)
        .expect("a known event type");
    events_of_type(log, aggregate, None)
        .await
        .expect("read events")
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn options() -> SchedulerOptions {
    SchedulerOptions {
        retry_backoff: StdDuration::from_millis(5),
        ..SchedulerOptions::default()
    }
}

struct Env {
    _db: TestDb,
    log: EventLog,
    clock: Arc<FixedClock>,
    crm: Crm,
    projections: ProjectionRunner,
    scheduler: Scheduler,
}

fn services(clock: &Arc<FixedClock>, loyalty: LoyaltyRules) -> DomainServices {
    DomainServices {
        clock: Arc::clone(clock) as _,
        ids: Arc::new(RandomIds),
        tz: Chicago,
        loyalty,
    }
}

async fn env_on(engine: Engine, now: DateTime<Utc>) -> Env {
    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let clock = Arc::new(FixedClock::new(now));
    let crm = Crm::new(log.clone(), services(&clock, LoyaltyRules::default()));
    let projections = ProjectionRunner::new(log.clone(), Chicago);
    projections.prepare().await.expect("read models");
    let scheduler = Scheduler::new(crm.clone(), projections.clone(), options());
    Env {
        _db: db,
        log,
        clock,
        crm,
        projections,
        scheduler,
    }
}

/// Job tests run on SQLite: each database is its own file, so no other test's open
/// transaction can hold back its commit-ordered reader (as one can within one PostgreSQL
/// cluster). The PostgreSQL runs are the birthday test and the two-instance test.
async fn env(now: DateTime<Utc>) -> Env {
    env_on(Engine::Sqlite, now).await
}

impl Env {
    /// A customer created with metadata saying it happened at `at` (the history's own
    /// time, as a seeded store has it), as the store's first event.
    async fn first_event_at(&self, n: u128, at: DateTime<Utc>) {
        let id = CustomerId(Uuid::from_u128(n));
        let create = CustomerCommand::Create {
            customer_id: id,
            name: "First Customer".into(),
            email: None,
            phone: None,
            birthday: None,
            customer_since: None,
        };
        let meta = commands::EventMetadata::new(commands::Actor::Staff("test".into()), at);
        self.crm
            .customers()
            .execute(id, DomainActor::System, create, &meta)
            .await
            .expect("the first event");
    }

    /// Moves the clock to `t` and ticks `job` only.
    async fn run_at(&self, job: JobName, t: DateTime<Utc>) -> Vec<worker::scheduler::RunSummary> {
        self.clock.set(t);
        self.scheduler.tick_only(&[job]).await.expect("tick")
    }

    /// Events of one type, read from the events table directly (stream order per aggregate,
    /// aggregates by id), so assertions do not wait for the commit-ordered reader.
    async fn events(&self, event_type: &str) -> Vec<StoredEvent> {
        stored(&self.log, event_type).await
    }

    async fn rows(&self, sql: &str) -> Vec<projections::JsonRow> {
        self.projections.catch_up_all().await.expect("catch up");
        self.projections.query(sql, &[]).await.expect("query")
    }

    async fn customer(&self, n: u128, birthday: Option<NaiveDate>, since: NaiveDate) -> CustomerId {
        let id = CustomerId(Uuid::from_u128(n));
        let create = CustomerCommand::Create {
            customer_id: id,
            name: format!("Customer {n}"),
            email: Some(format!("c{n}@example.com")),
            phone: Some(format!("+1512555{:04}", n % 10_000)),
            birthday,
            customer_since: Some(since),
        };
        self.crm
            .customers()
            .execute(id, staff(), create, &meta())
            .await
            .expect("create customer");
        let consent = CustomerCommand::GrantMarketingConsent {
            channel: Channel::Sms,
            source: ConsentSource::Staff,
        };
        self.crm
            .customers()
            .execute(id, staff(), consent, &meta())
            .await
            .expect("consent");
        id
    }

    async fn enrol(&self, c: CustomerId) -> LoyaltyAccountId {
        let acc = LoyaltyAccountId::for_customer(c);
        self.crm
            .loyalty_accounts()
            .execute(
                acc,
                staff(),
                LoyaltyCommand::Enrol { customer_id: c },
                &meta(),
            )
            .await
            .expect("enrol");
        acc
    }

    async fn opportunity(&self, n: u128, c: CustomerId, owner: StaffUserId) -> OpportunityId {
        let id = OpportunityId(Uuid::from_u128(n));
        let cmd = OpportunityCommand::Create {
            opportunity_id: id,
            customer_id: c,
            title: "pet-odour treatment".into(),
            value_cents: 12_000,
            owner,
        };
        self.crm
            .opportunities()
            .execute(id, staff(), cmd, &meta())
            .await
            .expect("create opportunity");
        id
    }

    async fn promotion(
        &self,
        n: u128,
        kind: PromotionKind,
        audience: AudienceSegment,
    ) -> PromotionId {
        let id = PromotionId(Uuid::from_u128(n));
        let now = self.clock_now();
        let draft = PromotionDraft {
            name: format!("promotion {n}"),
            kind,
            audience,
            channel: Channel::Sms,
            template: "Hello from Dirt Free".into(),
            discount_code: Some("CLEAN10".into()),
            discount: None,
            starts_at: now,
            ends_at: now + Duration::days(400),
        };
        let p = self.crm.promotions();
        p.execute(
            id,
            staff(),
            PromotionCommand::Create {
                promotion_id: id,
                draft,
            },
            &meta(),
        )
        .await
        .expect("create promotion");
        p.execute(
            id,
            staff(),
            PromotionCommand::Schedule { send_at: now },
            &meta(),
        )
        .await
        .expect("schedule promotion");
        id
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use commands::domain::Clock as _;
        self.clock.now()
    }
}

// ------------------------------------------------------------------ loyalty points

#[tokio::test]
async fn award_birthday_points_gives_the_bonus_once_a_year() {
    let e = env_on(Engine::Postgres, chicago(2026, 6, 1, 12, 0)).await;
    let c = e
        .customer(1, Some(date(1990, 6, 2)), date(2020, 1, 1))
        .await;
    e.enrol(c).await;
    let other = e
        .customer(2, Some(date(1990, 7, 9)), date(2020, 1, 1))
        .await;
    e.enrol(other).await;

    // Midnight of the birthday, then a manual run the same day: one bonus.
    e.run_at(JobName::AwardBirthdayPoints, chicago(2026, 6, 2, 0, 0))
        .await;
    e.clock.set(chicago(2026, 6, 2, 9, 0));
    e.scheduler
        .trigger(JobName::AwardBirthdayPoints)
        .await
        .expect("manual run");
    assert_eq!(e.events("BirthdayBonusAwarded").await.len(), 1);
    // The next year: a second one.
    e.run_at(JobName::AwardBirthdayPoints, chicago(2027, 6, 2, 0, 0))
        .await;
    let bonuses = e.events("BirthdayBonusAwarded").await;
    assert_eq!(bonuses.len(), 2);
    assert!(bonuses
        .iter()
        .all(|b| b.aggregate_id == LoyaltyAccountId::for_customer(c).to_string()));
}

#[tokio::test]
async fn a_customer_born_on_29_february_gets_birthday_points_once_every_year() {
    let e = env(chicago(2027, 2, 1, 12, 0)).await;
    let c = e
        .customer(1, Some(date(2000, 2, 29)), date(2020, 1, 1))
        .await;
    e.enrol(c).await;
    // Every midnight from 27 Feb to 2 Mar in a common year and in a leap year.
    for year in [2027, 2028] {
        for (m, d) in [(2, 27), (2, 28), (2, 29), (3, 1), (3, 2)] {
            if let chrono::LocalResult::Single(t) = Chicago.with_ymd_and_hms(year, m, d, 0, 0, 0) {
                e.run_at(JobName::AwardBirthdayPoints, t.with_timezone(&Utc))
                    .await;
            }
        }
    }
    let years: Vec<i64> = e
        .events("BirthdayBonusAwarded")
        .await
        .iter()
        .map(|b| {
            b.payload["BirthdayBonusAwarded"]["year"]
                .as_i64()
                .expect("year")
        })
        .collect();
    assert_eq!(years, vec![2027, 2028]);
}

#[tokio::test]
async fn award_anniversary_points_on_the_customer_since_day_from_the_first_anniversary() {
    let e = env(chicago(2026, 3, 1, 12, 0)).await;
    let old = e.customer(1, None, date(2024, 3, 10)).await;
    e.enrol(old).await;
    let new = e.customer(2, None, date(2026, 3, 1)).await;
    e.enrol(new).await;
    e.run_at(JobName::AwardAnniversaryPoints, chicago(2026, 3, 10, 0, 0))
        .await;
    e.run_at(JobName::AwardAnniversaryPoints, chicago(2026, 3, 11, 0, 0))
        .await;
    let bonuses = e.events("AnniversaryBonusAwarded").await;
    assert_eq!(bonuses.len(), 1);
    assert_eq!(
        bonuses[0].aggregate_id,
        LoyaltyAccountId::for_customer(old).to_string()
    );
}

#[tokio::test]
async fn tiers_are_downgraded_when_points_leave_the_window_and_upgraded_at_a_new_threshold() {
    let e = env(chicago(2026, 1, 5, 12, 0)).await;
    let gold = e.customer(1, None, date(2020, 1, 1)).await;
    let acc = e.enrol(gold).await;
    let earn = LoyaltyCommand::EarnForJob {
        job_id: JobId(Uuid::from_u128(77)),
        amount_cents: 60_000,
    };
    e.crm
        .loyalty_accounts()
        .execute(acc, DomainActor::System, earn, &meta())
        .await
        .expect("earn");
    let near = e.customer(2, None, date(2020, 1, 1)).await;
    let near_acc = e.enrol(near).await;
    let earn = LoyaltyCommand::EarnForJob {
        job_id: JobId(Uuid::from_u128(78)),
        amount_cents: 40_000,
    };
    e.crm
        .loyalty_accounts()
        .execute(near_acc, DomainActor::System, earn, &meta())
        .await
        .expect("earn");
    assert_eq!(
        e.events("TierChanged").await.len(),
        1,
        "600 points made Silver at once"
    );

    // A year and a day later the 600 points left the 365-day window: back to Bronze.
    e.run_at(
        JobName::ProcessLoyaltyTierUpgrades,
        chicago(2027, 1, 7, 3, 0),
    )
    .await;
    let changes = e.events("TierChanged").await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[1].payload["TierChanged"]["to"], "bronze");
    assert_eq!(changes[1].payload["TierChanged"]["from"], "silver");

    // The programme lowers Silver to 300 points: the next nightly run upgrades the customer
    // with 400 points in the window (earned 2027-01-06, inside it).
    let earn = LoyaltyCommand::EarnForJob {
        job_id: JobId(Uuid::from_u128(79)),
        amount_cents: 40_000,
    };
    e.clock.set(chicago(2027, 1, 7, 10, 0));
    e.crm
        .loyalty_accounts()
        .execute(near_acc, DomainActor::System, earn, &meta())
        .await
        .expect("earn again");
    let rules = LoyaltyRules {
        tiers: TierThresholds::new(300, 1_000, 2_000).expect("thresholds"),
        ..LoyaltyRules::default()
    };
    let crm = e.crm.with_services(services(&e.clock, rules));
    let scheduler = Scheduler::new(crm, e.projections.clone(), options());
    e.clock.set(chicago(2027, 1, 8, 3, 0));
    scheduler
        .tick_only(&[JobName::ProcessLoyaltyTierUpgrades])
        .await
        .expect("tick");
    let changes = e.events("TierChanged").await;
    let last = &changes.last().expect("a change").payload["TierChanged"];
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("bronze"), Some("silver"))
    );
    assert_eq!(
        changes.last().expect("change").aggregate_id,
        near_acc.to_string()
    );
}

// ------------------------------------------------------------------ opportunities

#[tokio::test]
async fn stale_opportunities_are_flagged_after_n_days_without_activity_and_old_closed_ones_archived(
) {
    let e = env(chicago(2026, 4, 1, 10, 0)).await;
    let owner = technician(&e.crm).await;
    let c = e.customer(1, None, date(2020, 1, 1)).await;
    let idle = e.opportunity(101, c, owner).await;
    let closed = e.opportunity(102, c, owner).await;
    e.crm
        .opportunities()
        .execute(
            closed,
            staff(),
            OpportunityCommand::Lose {
                reason: "price".into(),
            },
            &meta(),
        )
        .await
        .expect("lose");
    e.clock.set(chicago(2026, 4, 10, 10, 0));
    let busy = e.opportunity(103, c, owner).await;

    // Day 13: nothing is 14 days idle yet.
    e.run_at(JobName::CheckStaleOpportunities, chicago(2026, 4, 14, 9, 0))
        .await;
    assert!(e.events("OpportunityFlaggedStale").await.is_empty());
    // Day 15: only the idle open one; the next day's run flags nothing new.
    e.run_at(JobName::CheckStaleOpportunities, chicago(2026, 4, 16, 9, 0))
        .await;
    e.run_at(JobName::CheckStaleOpportunities, chicago(2026, 4, 17, 9, 0))
        .await;
    let flagged = e.events("OpportunityFlaggedStale").await;
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].aggregate_id, idle.to_string());
    let _ = busy;

    // Archive: the closed one, 90+ days after closing, on a Sunday 05:00.
    e.run_at(JobName::ArchiveOldOpportunities, chicago(2026, 6, 28, 5, 0))
        .await;
    assert!(
        e.events("OpportunityArchived").await.is_empty(),
        "88 days: not yet"
    );
    e.run_at(JobName::ArchiveOldOpportunities, chicago(2026, 7, 5, 5, 0))
        .await;
    let archived = e.events("OpportunityArchived").await;
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].aggregate_id, closed.to_string());
}

#[tokio::test]
async fn process_opportunity_offers_sends_configured_offers_and_expires_lapsed_ones() {
    let e = env(chicago(2026, 5, 4, 10, 0)).await;
    let owner = technician(&e.crm).await;
    let c = e.customer(1, None, date(2020, 1, 1)).await;
    let opp = e.opportunity(201, c, owner).await;
    let offer = OpportunityCommand::ConfigureAutoOffer {
        discount: Discount::Percent(15),
        expires_at: chicago(2026, 5, 8, 0, 0),
    };
    e.crm
        .opportunities()
        .execute(opp, staff(), offer, &meta())
        .await
        .expect("configure offer");

    e.run_at(JobName::ProcessOpportunityOffers, chicago(2026, 5, 5, 8, 0))
        .await;
    let sent = e.events("OfferSent").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload["OfferSent"]["channel"], "sms");
    e.run_at(JobName::ProcessOpportunityOffers, chicago(2026, 5, 6, 8, 0))
        .await;
    assert_eq!(e.events("OfferSent").await.len(), 1, "sent once");
    assert!(e.events("OfferExpired").await.is_empty());
    e.run_at(JobName::ProcessOpportunityOffers, chicago(2026, 5, 8, 8, 0))
        .await;
    assert_eq!(e.events("OfferExpired").await.len(), 1);
}

// ------------------------------------------------------------------ promotions

#[tokio::test]
async fn a_campaign_is_delivered_in_batches_every_30_minutes() {
    let db_env = env(chicago(2026, 9, 1, 8, 55)).await;
    let e = Env {
        scheduler: Scheduler::new(
            db_env.crm.clone(),
            db_env.projections.clone(),
            SchedulerOptions {
                promotion_batch_size: 2,
                ..options()
            },
        ),
        ..db_env
    };
    for n in 1..=5 {
        e.customer(n, None, date(2020, 1, 1)).await;
    }
    let p = e
        .promotion(301, PromotionKind::Campaign, AudienceSegment::AllCustomers)
        .await;
    let mut per_slot = Vec::new();
    for (h, m) in [(9, 0), (9, 30), (10, 0), (10, 30)] {
        let runs = e
            .run_at(
                JobName::ProcessPromotionDeliveries,
                chicago(2026, 9, 1, h, m),
            )
            .await;
        assert_eq!(runs.len(), 1);
        per_slot.push(runs[0].counts.changed);
    }
    assert_eq!(per_slot, vec![2, 2, 1, 0]);
    let rows = e
        .rows(&format!(
            "SELECT delivered FROM rm_promotions WHERE promotion_id = '{p}'"
        ))
        .await;
    assert_eq!(rows[0]["delivered"], 5);
}

#[tokio::test]
async fn birthday_and_anniversary_promotions_go_to_the_customers_whose_day_it_is() {
    let e = env(chicago(2026, 8, 1, 12, 0)).await;
    let birthday = e
        .customer(1, Some(date(1985, 8, 3)), date(2020, 1, 1))
        .await;
    let anniversary = e
        .customer(2, Some(date(1985, 1, 1)), date(2023, 8, 3))
        .await;
    e.customer(3, Some(date(1985, 8, 4)), date(2023, 8, 4))
        .await;
    let b = e
        .promotion(401, PromotionKind::Birthday, AudienceSegment::BirthdayToday)
        .await;
    let a = e
        .promotion(
            402,
            PromotionKind::Anniversary,
            AudienceSegment::AnniversaryToday,
        )
        .await;
    for job in [
        JobName::ScheduleBirthdayPromotions,
        JobName::ScheduleAnniversaryPromotions,
    ] {
        e.run_at(job, chicago(2026, 8, 3, 6, 0)).await;
        e.clock.set(chicago(2026, 8, 3, 7, 0));
        e.scheduler.trigger(job).await.expect("manual re-run");
    }
    let delivered: Vec<(String, String)> = e
        .events("PromotionDelivered")
        .await
        .iter()
        .map(|d| {
            (
                d.aggregate_id.clone(),
                d.payload["PromotionDelivered"]["customer_id"]
                    .as_str()
                    .expect("id")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        delivered,
        vec![
            (b.to_string(), birthday.to_string()),
            (a.to_string(), anniversary.to_string())
        ]
    );
}

// ------------------------------------------------------------------ reviews

#[tokio::test]
async fn review_requests_follow_completed_jobs_and_reminders_follow_every_three_days() {
    let e = env(chicago(2026, 10, 5, 9, 0)).await;
    let tech = technician(&e.crm).await;
    let c = e.customer(1, None, date(2020, 1, 1)).await;
    let job = scheduled_job(&e.crm, 501, c, tech).await;
    let before = e
        .run_at(JobName::SendReviewRequests, chicago(2026, 10, 5, 12, 0))
        .await;
    assert_eq!(before[0].counts.processed, 0, "nothing completed yet");
    complete(&e.crm, job, 25_000).await;
    // (The review-requests policy is not running here: the job is the safety net.)
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 5, 18, 0))
        .await;
    assert_eq!(e.events("ReviewRequested").await.len(), 1);
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 6, 0, 0))
        .await;
    assert_eq!(
        e.events("ReviewRequested").await.len(),
        1,
        "one request per job"
    );
    assert!(e.events("ReviewReminderSent").await.is_empty());
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 9, 0, 0))
        .await;
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 9, 6, 0))
        .await;
    assert_eq!(e.events("ReviewReminderSent").await.len(), 1);
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 12, 0, 0))
        .await;
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 20, 0, 0))
        .await;
    assert_eq!(
        e.events("ReviewReminderSent").await.len(),
        2,
        "at most two reminders"
    );
}

#[tokio::test]
async fn a_review_left_for_the_job_fulfils_its_request_and_no_reminder_follows() {
    use commands::domain::ids::{ReviewId, ReviewRequestId};
    use commands::domain::review::{ReviewCommand, ReviewSource};
    use commands::policies::{Policy, PolicyRunner};
    let e = env(chicago(2026, 10, 5, 9, 0)).await;
    let tech = technician(&e.crm).await;
    let c = e.customer(1, None, date(2020, 1, 1)).await;
    let job = scheduled_job(&e.crm, 502, c, tech).await;
    complete(&e.crm, job, 25_000).await;
    e.run_at(JobName::SendReviewRequests, chicago(2026, 10, 5, 18, 0))
        .await;
    assert_eq!(e.events("ReviewRequested").await.len(), 1);
    // The next day the customer reviews the job from the portal.
    e.clock.set(chicago(2026, 10, 6, 10, 0));
    let review = ReviewId::for_portal_job(job);
    e.crm
        .reviews()
        .execute(
            review,
            DomainActor::Customer { id: c },
            ReviewCommand::Receive {
                review_id: review,
                source: ReviewSource::Portal { job_id: Some(job) },
                customer_id: Some(c),
                rating: 5,
                comment: Some("Spotless".into()),
            },
            &meta(),
        )
        .await
        .expect("review");
    let policies = PolicyRunner::with_policies(e.crm.clone(), vec![Policy::ReviewRequests]);
    policies.run_until_caught_up().await.expect("policy");
    // Handled twice (a restart), it still fulfils once.
    PolicyRunner::with_policies(e.crm.clone(), vec![Policy::ReviewRequests])
        .run_until_caught_up()
        .await
        .expect("policy again");
    let fulfilled = e.events("ReviewRequestFulfilled").await;
    assert_eq!(fulfilled.len(), 1);
    assert_eq!(
        fulfilled[0].aggregate_id,
        ReviewRequestId::for_job(job).to_string()
    );
    // The days reminders would go out on: none does.
    for day in [9, 12, 20] {
        e.run_at(JobName::SendReviewRequests, chicago(2026, 10, day, 0, 0))
            .await;
    }
    assert!(e.events("ReviewReminderSent").await.is_empty());

    // A job reviewed before anyone asked (the policy was down) is never asked about.
    let second = scheduled_job(&e.crm, 503, c, tech).await;
    complete(&e.crm, second, 9_000).await;
    let review = ReviewId::for_portal_job(second);
    e.crm
        .reviews()
        .execute(
            review,
            DomainActor::Customer { id: c },
            ReviewCommand::Receive {
                review_id: review,
                source: ReviewSource::Portal {
                    job_id: Some(second),
                },
                customer_id: Some(c),
                rating: 4,
                comment: None,
            },
            &meta(),
        )
        .await
        .expect("review");
    // Neither the policy catching up on its completion nor the job's catch-up asks.
    PolicyRunner::with_policies(e.crm.clone(), vec![Policy::ReviewRequests])
        .run_until_caught_up()
        .await
        .expect("policy");
    let runs = e
        .run_at(JobName::SendReviewRequests, chicago(2026, 10, 21, 0, 0))
        .await;
    assert_eq!(runs[0].status, "finished");
    assert_eq!(
        e.events("ReviewRequested").await.len(),
        1,
        "the reviewed job was asked about"
    );
}

struct FakeGoogle {
    failures_left: AtomicU32,
}

impl GoogleReviews for FakeGoogle {
    fn recent_reviews(&self) -> Pin<Box<dyn Future<Output = GoogleReviewsResult> + Send + '_>> {
        Box::pin(async move {
            if self.failures_left.load(Ordering::SeqCst) > 0 {
                self.failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err("Google answered 503".to_string());
            }
            Ok(Some(vec![
                GoogleReview {
                    external_id: "g-1".into(),
                    rating: 5,
                    comment: Some("Spotless".into()),
                    customer_id: None,
                },
                GoogleReview {
                    external_id: "g-2".into(),
                    rating: 4,
                    comment: None,
                    customer_id: None,
                },
            ]))
        })
    }
}

#[tokio::test]
async fn sync_google_reviews_imports_each_review_once_and_retries_a_failing_provider() {
    let e = env(chicago(2026, 7, 1, 12, 0)).await;
    let google = Arc::new(FakeGoogle {
        failures_left: AtomicU32::new(1),
    });
    let scheduler = e.scheduler.clone().with_google_reviews(google.clone());
    e.clock.set(chicago(2026, 7, 2, 2, 0));
    let run = scheduler
        .tick_only(&[JobName::SyncGoogleReviews])
        .await
        .expect("tick");
    assert_eq!(
        (run[0].status, run[0].attempts, run[0].counts.changed),
        ("finished", 2, 2)
    );
    e.clock.set(chicago(2026, 7, 3, 2, 0));
    let run = scheduler
        .tick_only(&[JobName::SyncGoogleReviews])
        .await
        .expect("tick");
    assert_eq!((run[0].counts.changed, run[0].counts.skipped), (0, 2));
    assert_eq!(e.events("ReviewReceived").await.len(), 2);

    // A provider that keeps failing: three attempts, then the run is reported failed.
    google.failures_left.store(10, Ordering::SeqCst);
    e.clock.set(chicago(2026, 7, 4, 2, 0));
    let run = scheduler
        .tick_only(&[JobName::SyncGoogleReviews])
        .await
        .expect("tick");
    assert_eq!((run[0].status, run[0].attempts), ("failed", 3));
    let failures = e.events("JobRunFailed").await;
    let mut retry: Vec<bool> = failures
        .iter()
        .map(|f| {
            f.payload["JobRunFailed"]["will_retry"]
                .as_bool()
                .expect("bool")
        })
        .collect();
    retry.sort_unstable();
    // One retried failure in the first run, then two retried and one final in the third.
    assert_eq!(retry, vec![false, true, true, true]);
    let status = worker::scheduler::status_of(
        list_runs(&e.projections, None, StdDuration::from_secs(10))
            .await
            .expect("runs"),
        Chicago,
        chicago(2026, 7, 4, 3, 0),
    );
    assert_eq!(status.status, "degraded");
    let sync = status
        .jobs
        .iter()
        .find(|j| j.job == "sync-google-reviews")
        .expect("job");
    assert_eq!(sync.recent_failures.len(), 1);
    assert_eq!(
        sync.last_success.as_ref().map(|r| r.slot),
        Some(chicago(2026, 7, 3, 2, 0))
    );
    // Without a configured account the job says so and does nothing.
    e.clock.set(chicago(2026, 7, 5, 2, 0));
    let run = e
        .scheduler
        .tick_only(&[JobName::SyncGoogleReviews])
        .await
        .expect("tick");
    assert!(run[0].note.as_deref().unwrap_or("").contains("no Google"));
}

// ------------------------------------------------------------------ analytics and reports

#[tokio::test]
async fn daily_metrics_close_yesterday_and_the_weekly_report_sums_last_week_on_monday() {
    let e = env(chicago(2026, 11, 18, 10, 0)).await;
    // The business's first event happened on the 2nd (its weeks since are reported).
    e.clock.set(chicago(2026, 11, 2, 9, 0));
    e.first_event_at(99, chicago(2026, 11, 2, 9, 0)).await;
    e.clock.set(chicago(2026, 11, 18, 10, 0));
    let tech = technician(&e.crm).await;
    for n in 1..=3u128 {
        let c = e.customer(n, None, date(2020, 1, 1)).await;
        let job = scheduled_job(&e.crm, 600 + n, c, tech).await;
        complete(&e.crm, job, 10_000 * n as i64).await;
    }
    let daily = e
        .run_at(JobName::CalculateDailyMetrics, chicago(2026, 11, 19, 1, 0))
        .await;
    assert_eq!(daily[0].figures.get("revenue_cents"), Some(&60_000));
    assert_eq!(daily[0].figures.get("jobs_completed"), Some(&3));
    assert_eq!(daily[0].figures.get("new_customers"), Some(&3));
    assert!(daily[0]
        .note
        .as_deref()
        .unwrap_or("")
        .contains("2026-11-18"));

    // Thursday: the weekly report's latest slot (last Monday) is older than the window.
    assert!(e
        .run_at(JobName::GenerateWeeklyReport, chicago(2026, 11, 19, 4, 0))
        .await
        .is_empty());
    let weekly = e
        .run_at(JobName::GenerateWeeklyReport, chicago(2026, 11, 23, 4, 0))
        .await;
    assert_eq!(weekly[0].figures.get("revenue_cents"), Some(&60_000));
    let note = weekly[0].note.as_deref().unwrap_or("");
    assert!(note.contains("2026-11-16..2026-11-22"), "{note}");
    // Reported (no one here to email it to), not skipped as before the first event.
    assert!(note.contains("no active manager or admin"), "{note}");
}

#[tokio::test]
async fn the_weekly_report_skips_a_week_that_ended_before_the_first_event() {
    let e = env(chicago(2026, 11, 23, 3, 0)).await;
    // A store whose first event happened on the 23rd, after the week.
    e.first_event_at(98, chicago(2026, 11, 23, 2, 0)).await;
    let weekly = e
        .run_at(JobName::GenerateWeeklyReport, chicago(2026, 11, 23, 4, 0))
        .await;
    assert_eq!(weekly[0].status, "finished");
    let note = weekly[0].note.as_deref().unwrap_or("");
    assert!(note.contains("not reported"), "{note}");
    assert!(e.events("ScheduledReportDefined").await.is_empty());
}

#[tokio::test]
async fn generate_scheduled_reports_generates_each_due_report_once_per_period() {
    let e = env(chicago(2026, 11, 20, 10, 0)).await;
    let weekly = ScheduledReportId(Uuid::from_u128(701));
    let daily = ScheduledReportId(Uuid::from_u128(702));
    for (id, period, cron) in [
        (weekly, ReportPeriod::Weekly, "0 6 * * 1"),
        (daily, ReportPeriod::Daily, "0 6 * * *"),
    ] {
        let cmd = ScheduledReportCommand::Define {
            report_id: id,
            name: "Revenue".into(),
            metrics: vec![ReportMetric::Revenue],
            period,
            recipients: vec!["manager@example.com".into()],
            cron: cron.into(),
        };
        e.crm
            .scheduled_reports()
            .execute(id, DomainActor::System, cmd, &meta())
            .await
            .expect("define");
    }
    // Saturday: only the daily one; Monday: both; a manual re-run changes nothing.
    e.run_at(
        JobName::GenerateScheduledReports,
        chicago(2026, 11, 21, 6, 0),
    )
    .await;
    e.run_at(
        JobName::GenerateScheduledReports,
        chicago(2026, 11, 23, 6, 0),
    )
    .await;
    e.clock.set(chicago(2026, 11, 23, 6, 30));
    e.scheduler
        .trigger(JobName::GenerateScheduledReports)
        .await
        .expect("manual");
    let generated: Vec<(String, String)> = e
        .events("ScheduledReportGenerated")
        .await
        .iter()
        .map(|g| {
            (
                g.aggregate_id.clone(),
                g.payload["ScheduledReportGenerated"]["period_start"]
                    .as_str()
                    .expect("date")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        generated,
        vec![
            (weekly.to_string(), "2026-11-16".into()),
            (daily.to_string(), "2026-11-20".into()),
            (daily.to_string(), "2026-11-22".into()),
        ]
    );
}

// ------------------------------------------------------------------ operations

#[tokio::test]
async fn check_system_health_runs_every_15_minutes_and_reports_what_it_checked() {
    let e = env_on(Engine::Sqlite, chicago(2026, 5, 1, 10, 0)).await;
    let c = e.customer(1, None, date(2020, 1, 1)).await;
    let mut runs = Vec::new();
    for i in 0..4 {
        let t = chicago(2026, 5, 1, 10, 0) + Duration::minutes(15 * i + 7);
        runs.extend(e.run_at(JobName::CheckSystemHealth, t).await);
    }
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert_eq!(runs[3].slot, "2026-05-01T15:45:00Z");
    // A healthy system: each run says so, and its figures are what it looked at — every read
    // model (none failed), the log, and no message whose sending is in doubt.
    let read_models = i64::try_from(
        e.projections
            .status()
            .await
            .expect("projection status")
            .len(),
    )
    .expect("a count");
    assert!(read_models > 0, "the read models are known");
    for run in &runs {
        assert_eq!(run.status, "finished", "{run:?}");
        assert_eq!(
            run.note.as_deref(),
            Some("database and projections healthy (policies not checked here)"),
            "{run:?}"
        );
        assert_eq!(
            run.figures.get("projections"),
            Some(&read_models),
            "{run:?}"
        );
        assert_eq!(run.figures.get("projections_failed"), Some(&0), "{run:?}");
        assert_eq!(run.figures.get("events_parked"), Some(&0), "{run:?}");
        assert_eq!(
            run.figures.get("messages_outcome_unknown"),
            Some(&0),
            "{run:?}"
        );
        assert!(run.figures.get("events").is_some_and(|n| *n > 0), "{run:?}");
    }

    // An SMS whose worker died after claiming it (Twilio cannot deduplicate a repeat): it may
    // or may not have gone out. The system is up, so the run finishes, but it counts the
    // message and its note tells someone to look.
    let cause = "test:health:outcome-unknown";
    let message = OutboundMessageId::for_cause(cause);
    for cmd in [
        MessageCommand::Queue {
            kind: MessageKind::Offer,
            channel: Channel::Sms,
            recipient: Recipient::Customer { customer_id: c },
            cause: cause.into(),
            subject: None,
            body: "15% off your next cleaning".into(),
        },
        MessageCommand::StartAttempt {
            provider: Some(Provider::Twilio),
            eligibility: MarketingEligibility::Eligible,
            claim_lease: Duration::seconds(120),
            idempotency_window: Duration::hours(23),
            quiet_until: None,
        },
        MessageCommand::RecordOutcomeUnknown,
    ] {
        e.crm
            .messages()
            .execute(message, DomainActor::System, cmd, &meta())
            .await
            .expect("a message step");
    }
    let doubt = e
        .run_at(JobName::CheckSystemHealth, chicago(2026, 5, 1, 11, 7))
        .await;
    assert_eq!(doubt.len(), 1, "{doubt:?}");
    assert_eq!(doubt[0].status, "finished", "{doubt:?}");
    assert_eq!(
        doubt[0].figures.get("messages_outcome_unknown"),
        Some(&1),
        "{doubt:?}"
    );
    let note = doubt[0].note.as_deref().unwrap_or_default();
    assert!(
        note.contains("1 outbound message(s) may or may not have been sent"),
        "the note says someone must look: {note}"
    );

    // An event a read model refused is parked: the system is up, but that read model misses
    // it until an operator acts, so the run fails naming the read model and the count.
    e.projections
        .db()
        .execute(
            "CREATE TRIGGER poison_pill BEFORE INSERT ON rm_customers WHEN NEW.name = 'Customer 3' \
             BEGIN SELECT RAISE(ABORT, 'poison pill'); END",
            &[],
        )
        .await
        .expect("a read-model rule that refuses one customer");
    e.customer(3, None, date(2020, 1, 1)).await;
    let _ = e.projections.catch_up("customers").await;
    let parked = e
        .run_at(JobName::CheckSystemHealth, chicago(2026, 5, 1, 11, 17))
        .await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].status, "failed", "{parked:?}");
    let error = parked[0].error.as_deref().unwrap_or_default();
    // Two: the refused creation and the consent after it (a later event of a parked stream
    // waits behind it).
    assert!(
        error.contains("events parked in: customers (2)"),
        "the run names the read model with parked events: {error}"
    );
    e.projections
        .db()
        .execute("DROP TRIGGER poison_pill", &[])
        .await
        .expect("drop the rule");

    // A read model that stops is what the check is for: the next run fails naming it.
    e.customer(2, None, date(2020, 1, 1)).await;
    e.projections
        .db()
        .execute("DROP TABLE rm_customers", &[])
        .await
        .expect("drop a read-model table");
    assert!(
        e.projections.catch_up("customers").await.is_err(),
        "the customers read model stops on its missing table"
    );
    let runs = e
        .run_at(JobName::CheckSystemHealth, chicago(2026, 5, 1, 11, 37))
        .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "failed", "{runs:?}");
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("projections failed: customers"),
        "the failed run names the read model: {error}"
    );
    // And that failure is what the scheduler's health shows operators.
    let status = worker::scheduler::status_of(
        list_runs(&e.projections, None, StdDuration::from_secs(10))
            .await
            .expect("runs"),
        Chicago,
        chicago(2026, 5, 1, 11, 45),
    );
    assert_eq!(status.status, "degraded");
    let health = status
        .jobs
        .iter()
        .find(|j| j.job == "check-system-health")
        .expect("job");
    let last = health.last_run.as_ref().expect("a last run");
    assert_eq!(last.slot, chicago(2026, 5, 1, 11, 30));
    assert!(
        last.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("projections failed: customers"),
        "{last:?}"
    );
}

/// Panics unless every event of `before` is in `after` at the same place and unchanged
/// (position, stream, sequence, type, payload, metadata, time recorded), and `after` holds
/// more (the run's own record).
fn assert_kept(what: &str, before: &[RecordedEvent], after: &[RecordedEvent]) {
    assert!(
        after.len() > before.len(),
        "{what}: the log went from {} to {} events",
        before.len(),
        after.len()
    );
    for (was, is) in before.iter().zip(after) {
        assert_eq!(
            is, was,
            "{what} changed or removed an event that was in the log"
        );
    }
}

/// The values of `column` in the rows `sql` selects, sorted.
async fn column_of(db: &projections::ReadDb, sql: &str, column: &str) -> Vec<String> {
    let mut out: Vec<String> = db
        .query(sql, &[])
        .await
        .expect("rows")
        .iter()
        .filter_map(|r| r.get(column).and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn cleanup_jobs_delete_what_is_past_retention_and_never_an_event() {
    let start = chicago(2026, 2, 1, 10, 0);
    let e = env_on(Engine::Sqlite, start).await;
    // Events well past every retention by the time the jobs run: a customer, an opportunity
    // closed that day (the archive job's), and a month of job runs (cleanup-old-logs').
    let c = e
        .customer(1, Some(date(1990, 2, 2)), date(2020, 1, 1))
        .await;
    let owner = technician(&e.crm).await;
    let closed = e.opportunity(101, c, owner).await;
    e.crm
        .opportunities()
        .execute(
            closed,
            staff(),
            OpportunityCommand::Lose {
                reason: "price".into(),
            },
            &meta(),
        )
        .await
        .expect("lose");
    for day in 1..=28 {
        e.run_at(JobName::CheckSystemHealth, chicago(2026, 2, day, 10, 7))
            .await;
    }

    // What the cleanup jobs delete is kept beside the log, not in it. For each kind, a row
    // past its retention when the jobs run (Sunday 7 June, 02:00 to 05:00) and a row that is
    // not: without the first the test would prove nothing, without the second a job that
    // empties its table would pass.
    let sunday = |h: u32| chicago(2026, 6, 7, h, 0);
    let db = e.projections.db();
    // cleanup-old-notifications: a reset link and a sign-up code that expired unsent, and an
    // unsubscribe link older than 400 days.
    for (n, expires) in [
        (1u128, sunday(2) - Duration::minutes(5)),
        (2, sunday(2) + Duration::days(1)),
    ] {
        db.execute(
            "INSERT INTO password_reset_tokens (message_id, token, expires_at_ms) VALUES ($1, $2, $3)",
            &[
                Uuid::from_u128(n).to_string().into(),
                "one-time-secret".into(),
                expires.timestamp_millis().into(),
            ],
        )
        .await
        .expect("a waiting secret");
        db.execute(
            "INSERT INTO address_codes (purpose, address_hash, requested_by, code_hash, expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[
                "sign_up".into(),
                format!("address-{n}").into(),
                "".into(),
                "code-hash".into(),
                expires.timestamp_millis().into(),
            ],
        )
        .await
        .expect("a sign-up code");
    }
    for (n, created) in [
        (3u128, sunday(2) - Duration::days(401)),
        (4, sunday(2) - Duration::days(10)),
    ] {
        db.execute(
            "INSERT INTO unsubscribe_tokens (message_id, token, customer_id, created_at_ms) VALUES ($1, $2, $3, $4)",
            &[
                Uuid::from_u128(n).to_string().into(),
                format!("unsubscribe-{n}").into(),
                c.to_string().into(),
                created.timestamp_millis().into(),
            ],
        )
        .await
        .expect("an unsubscribe link");
    }
    // cleanup-old-logs: webhook deliveries processed 100 and 10 days before, and one never
    // processed (kept for a redelivery to finish).
    for (delivery, processed) in [
        ("processed-long-ago", sunday(3) - Duration::days(100)),
        ("processed-recently", sunday(3) - Duration::days(10)),
    ] {
        db.execute(
            "INSERT INTO webhook_deliveries (provider, delivery_id, event_type, received_at, payload, claimed_at, processed_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, $4, $6, $7)",
            &[
                "twilio".into(),
                delivery.into(),
                "sms.status".into(),
                processed.into(),
                projections::Param::Json(serde_json::json!({})),
                processed.into(),
                "applied".into(),
            ],
        )
        .await
        .expect("a processed delivery");
    }
    db.execute(
        "INSERT INTO webhook_deliveries (provider, delivery_id, event_type, received_at, payload, claimed_at) \
         VALUES ($1, $2, $3, $4, $5, $4)",
        &[
            "twilio".into(),
            "never-processed".into(),
            "sms.status".into(),
            (sunday(3) - Duration::days(100)).into(),
            projections::Param::Json(serde_json::json!({})),
        ],
    )
    .await
    .expect("an unprocessed delivery");
    // cleanup-expired-sessions: an expired session, a revoked one, and a live one.
    for (hash, expires) in [
        ("expired", sunday(4) - Duration::hours(1)),
        ("revoked", sunday(4) + Duration::days(30)),
        ("live", sunday(4) + Duration::days(30)),
    ] {
        worker::sessions::open(
            db,
            &worker::sessions::NewSession {
                token_hash: hash,
                kind: worker::sessions::PrincipalKind::Staff,
                principal_id: "staff-1",
                role: Some("manager"),
                created_at: start,
                expires_at: expires,
                client_ip: "127.0.0.1",
            },
        )
        .await
        .expect("a session");
    }
    worker::sessions::revoke(db, "revoked", start)
        .await
        .expect("revoke a session");

    let from_the_start = all_events(&e.log).await;
    let mut before = from_the_start.clone();

    // Each cleanup job on its slot: it deletes what is past retention (its figures count it,
    // and the rows are gone), keeps the rest, and every event there was before it ran is
    // still there after, unchanged and in place.
    let runs = e.run_at(JobName::CleanupOldNotifications, sunday(2)).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "finished", "{runs:?}");
    assert!(runs[0].note.is_some(), "it says what it did");
    assert_eq!(
        runs[0].figures.get("expired_secrets_dropped"),
        Some(&3),
        "the expired reset link, the expired code and the old unsubscribe link: {runs:?}"
    );
    assert_eq!(
        column_of(
            db,
            "SELECT message_id FROM password_reset_tokens",
            "message_id"
        )
        .await,
        vec![Uuid::from_u128(2).to_string()]
    );
    assert_eq!(
        column_of(db, "SELECT address_hash FROM address_codes", "address_hash").await,
        vec!["address-2".to_string()]
    );
    assert_eq!(
        column_of(
            db,
            "SELECT message_id FROM unsubscribe_tokens",
            "message_id"
        )
        .await,
        vec![Uuid::from_u128(4).to_string()]
    );
    let after = all_events(&e.log).await;
    assert_kept("cleanup-old-notifications", &before, &after);
    before = after;

    let runs = e.run_at(JobName::CleanupOldLogs, sunday(3)).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "finished", "{runs:?}");
    assert!(runs[0].note.is_some(), "it says what it did");
    assert_eq!(
        runs[0].figures.get("runs_past_retention"),
        Some(&28),
        "February's 28 health checks are past the 90 days: {runs:?}"
    );
    assert_eq!(
        runs[0].figures.get("webhook_deliveries_dropped"),
        Some(&1),
        "{runs:?}"
    );
    assert_eq!(
        column_of(
            db,
            "SELECT delivery_id FROM webhook_deliveries",
            "delivery_id"
        )
        .await,
        vec![
            "never-processed".to_string(),
            "processed-recently".to_string()
        ]
    );
    let after = all_events(&e.log).await;
    assert_kept("cleanup-old-logs", &before, &after);
    // The runs past retention are still events, and still listed (their read model is
    // built from the log).
    let health_runs = list_runs(&e.projections, None, StdDuration::from_secs(10))
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.job == "check-system-health")
        .count();
    assert_eq!(health_runs, 28);
    before = after;

    let runs = e.run_at(JobName::CleanupExpiredSessions, sunday(4)).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "finished", "{runs:?}");
    assert!(runs[0].note.is_some(), "it says what it did");
    assert_eq!(runs[0].figures.get("sessions_ended"), Some(&2), "{runs:?}");
    assert_eq!(
        column_of(db, "SELECT token_hash FROM sessions", "token_hash").await,
        vec!["live".to_string()]
    );
    let after = all_events(&e.log).await;
    assert_kept("cleanup-expired-sessions", &before, &after);
    before = after;

    // Archiving is an event of its own, added: the opportunity's history stays.
    let runs = e.run_at(JobName::ArchiveOldOpportunities, sunday(5)).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "finished", "{runs:?}");
    assert_eq!(runs[0].counts.changed, 1, "{runs:?}");
    let archived = e.events("OpportunityArchived").await;
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].aggregate_id, closed.to_string());
    let after = all_events(&e.log).await;
    assert_kept("archive-old-opportunities", &before, &after);
    before = after;

    // Then every other job due that morning, on top of what the cleanups left.
    e.clock.set(sunday(5) + Duration::minutes(30));
    e.scheduler.tick().await.expect("tick all");
    let after = all_events(&e.log).await;
    assert_kept("the jobs due on Sunday morning", &before, &after);
    assert_kept("the cleanup jobs", &from_the_start, &after);
}

#[tokio::test]
async fn cleanup_old_notifications_drops_one_time_secrets_that_expired_unsent() {
    let e = env_on(Engine::Sqlite, chicago(2026, 2, 27, 10, 0)).await;
    let db = projections::ReadDb::of(&e.log);
    let sunday = chicago(2026, 3, 1, 2, 0);
    for (message, expires) in [
        (uuid::Uuid::from_u128(1), sunday - Duration::minutes(5)),
        (uuid::Uuid::from_u128(2), sunday + Duration::minutes(30)),
    ] {
        db.execute(
            "INSERT INTO password_reset_tokens (message_id, token, expires_at_ms) VALUES ($1, $2, $3)",
            &[
                message.to_string().into(),
                "one-time-secret".into(),
                expires.timestamp_millis().into(),
            ],
        )
        .await
        .expect("a waiting secret");
    }
    let runs = e.run_at(JobName::CleanupOldNotifications, sunday).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].figures.get("expired_secrets_dropped"), Some(&1));
    let left = db
        .query("SELECT message_id FROM password_reset_tokens", &[])
        .await
        .expect("rows");
    assert_eq!(left.len(), 1, "the unexpired secret stays: {left:?}");
}

// ------------------------------------------------------------------ time zones

/// Ticks `jobs` every 15 minutes over `(from, to]`; returns the slots run per job.
async fn simulate(
    e: &Env,
    jobs: &[JobName],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<&'static str, Vec<String>> {
    let mut t = from;
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    while t < to {
        t += Duration::minutes(15);
        e.clock.set(t);
        for run in e.scheduler.tick_only(jobs).await.expect("tick") {
            // The first tick also catches up each job's slot from before `from`: not ours.
            if run.slot.as_str()
                <= from
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    .as_str()
            {
                continue;
            }
            let job = JobName::ALL
                .iter()
                .find(|j| j.as_str() == run.job)
                .expect("job")
                .as_str();
            out.entry(job).or_default().push(run.slot);
        }
    }
    out
}

#[tokio::test]
async fn on_the_spring_forward_day_a_2am_job_runs_once_at_3am_cdt() {
    let e = env_on(Engine::Sqlite, at(2026, 3, 7, 12, 0)).await;
    let runs = simulate(
        &e,
        &[
            JobName::SyncGoogleReviews,
            JobName::CleanupOldNotifications,
            JobName::CalculateDailyMetrics,
        ],
        at(2026, 3, 7, 12, 0),
        at(2026, 3, 9, 12, 0),
    )
    .await;
    // 02:00 CST on the 8th does not exist: 03:00 CDT (08:00 UTC) instead; 02:00 CDT on the 9th.
    assert_eq!(
        runs["sync-google-reviews"],
        vec!["2026-03-08T08:00:00Z", "2026-03-09T07:00:00Z"]
    );
    // The Sunday 02:00 job too, once.
    assert_eq!(
        runs["cleanup-old-notifications"],
        vec!["2026-03-08T08:00:00Z"]
    );
    assert_eq!(
        runs["calculate-daily-metrics"],
        vec!["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"]
    );
}

#[tokio::test]
async fn on_the_fall_back_day_2am_and_1am_jobs_run_once_and_interval_jobs_keep_running() {
    let e = env_on(Engine::Sqlite, at(2026, 10, 31, 12, 0)).await;
    let runs = simulate(
        &e,
        &[
            JobName::SyncGoogleReviews,
            JobName::CalculateDailyMetrics,
            JobName::ProcessPromotionDeliveries,
        ],
        at(2026, 10, 31, 12, 0),
        at(2026, 11, 2, 12, 0),
    )
    .await;
    assert_eq!(
        runs["sync-google-reviews"],
        vec!["2026-11-01T08:00:00Z", "2026-11-02T08:00:00Z"]
    );
    // 01:00 happens twice on 1 November: the job runs at the first (CDT) only.
    assert_eq!(
        runs["calculate-daily-metrics"],
        vec!["2026-11-01T06:00:00Z", "2026-11-02T07:00:00Z"]
    );
    // 25 hours on the 1st: 50 half-hour slots that day, both passes through 01:00-02:00.
    let nov1 = runs["process-promotion-deliveries"]
        .iter()
        .filter(|s| (s.as_str() >= "2026-11-01T05:00:00Z") && (s.as_str() < "2026-11-02T06:00:00Z"))
        .count();
    assert_eq!(nov1, 50);
}

// ------------------------------------------------------------------ instances and downtime

async fn started_per_slot(log: &EventLog) -> HashMap<(String, String), usize> {
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for e in stored(log, "JobRunStarted").await {
        let p = &e.payload["JobRunStarted"];
        let key = (
            p["job"].as_str().expect("job").to_string(),
            p["slot"].as_str().expect("slot").to_string(),
        );
        *per.entry(key).or_default() += 1;
    }
    per
}

#[tokio::test]
async fn two_instances_over_three_days_run_every_slot_exactly_once_then_catch_up_after_a_stop() {
    let start = chicago(2026, 6, 1, 0, 0);
    let e = env_on(Engine::Postgres, start).await;
    let c = e
        .customer(1, Some(date(1990, 6, 2)), date(2020, 6, 3))
        .await;
    e.enrol(c).await;
    let other_log = EventLog::connect(
        &commands::DatabaseUrl::parse(Some(&e._db.url)).expect("url"),
        &commands::LogOptions::default(),
    )
    .await
    .expect("second connection pool");
    let other_crm = Crm::new(
        other_log.clone(),
        services(&e.clock, LoyaltyRules::default()),
    );
    let other_projections = ProjectionRunner::new(other_log.clone(), Chicago);
    let a = e.scheduler.clone();
    let b = Scheduler::new(other_crm, other_projections, options());

    let end = start + Duration::days(3);
    let mut t = start;
    while t < end {
        t += Duration::minutes(15);
        e.clock.set(t);
        let (ra, rb) = tokio::join!(a.tick(), b.tick());
        ra.expect("instance a");
        rb.expect("instance b");
    }
    let per = started_per_slot(&e.log).await;
    assert!(per.values().all(|n| *n == 1), "a slot started twice");
    // Every slot in (start, end] ran, plus each job's latest slot at or before the first tick.
    for job in JobName::ALL {
        let schedule = a.schedule(*job);
        let mut expected = schedule.slots_between(start, end, 10_000).expect("slots");
        let first = schedule
            .latest_at_or_before(start + Duration::minutes(15))
            .expect("slot");
        if !expected.contains(&first)
            && start + Duration::minutes(15) - first <= Duration::hours(24)
        {
            expected.insert(0, first);
        }
        let mut got: Vec<DateTime<Utc>> = per
            .keys()
            .filter(|(j, _)| j == job.as_str())
            .map(|(_, s)| {
                DateTime::parse_from_rfc3339(s)
                    .expect("slot")
                    .with_timezone(&Utc)
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "{job}");
    }
    assert_eq!(e.events("BirthdayBonusAwarded").await.len(), 1);
    assert_eq!(e.events("AnniversaryBonusAwarded").await.len(), 1);
    let finished = e.events("JobRunFinished").await.len();
    assert_eq!(finished, per.len(), "every run finished");

    // Five hours down, then one instance restarts: each job's latest missed slot runs once,
    // as a catch-up; the 20 missed quarter-hours of the health check are not replayed.
    let stopped = end;
    let restart = stopped + Duration::hours(5);
    e.clock.set(restart);
    let caught = Scheduler::new(e.crm.clone(), e.projections.clone(), options())
        .catch_up()
        .await
        .expect("catch up");
    assert!(caught.iter().all(|r| r.trigger == "catch_up"));
    let per_job: BTreeMap<&str, Vec<&str>> = caught.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.job.as_str()).or_default().push(r.slot.as_str());
        m
    });
    assert_eq!(per_job["check-system-health"], vec!["2026-06-04T10:00:00Z"]);
    assert_eq!(
        per_job["process-promotion-deliveries"],
        vec!["2026-06-04T10:00:00Z"]
    );
    // (00:00, 05:00] CDT on Thursday June 4: the 01:00 to 04:00 daily jobs, once each (the
    // midnight ones ran at the last tick before the stop).
    let expected: BTreeMap<&str, usize> = [
        "calculate-daily-metrics",
        "check-system-health",
        "cleanup-expired-sessions",
        "process-loyalty-tier-upgrades",
        "process-promotion-deliveries",
        "sync-google-reviews",
    ]
    .into_iter()
    .map(|j| (j, 1))
    .collect();
    let got: BTreeMap<&str, usize> = per_job.iter().map(|(j, s)| (*j, s.len())).collect();
    assert_eq!(got, expected);
    assert!(
        !per_job.contains_key("process-opportunity-offers"),
        "already ran for June 3 08:00"
    );
    // A second catch-up (another instance starting) finds nothing left.
    let again = b.catch_up().await.expect("catch up");
    assert!(again.is_empty());
    assert!(started_per_slot(&e.log).await.values().all(|n| *n == 1));
    other_log.close().await;
}

// ------------------------------------------------------------------ the endpoint over HTTP

const SECRET: &str = "cron-secret-for-tests-0123456789abcdef";

/// The server on its embedded default, with `CRON_SECRET` only when given.
async fn start_server(cron_secret: Option<&str>) -> tests::ServerProcess {
    start_server_with(cron_secret, &[]).await
}

/// As [`start_server`], with more settings (a database, vendor stand-ins).
async fn start_server_with(
    cron_secret: Option<&str>,
    more: &[(&str, &str)],
) -> tests::ServerProcess {
    // The embedded default without the demo: these tests need no business data.
    let mut envs = vec![("LOG_FORMAT", "json"), ("DEMO_SEED", "off")];
    if let Some(s) = cron_secret {
        envs.push(("CRON_SECRET", s));
    }
    envs.extend_from_slice(more);
    tests::ServerProcess::start_hermetic(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &envs,
        StdDuration::from_secs(30),
    )
    .await
}

async fn execute(base: &str, job: &str, auth: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(format!("{base}/api/cron/execute/{job}"));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    r.send().await.expect("request")
}

/// Google's token and reviews endpoints (no reviews) for the server's sync-google-reviews,
/// whose token endpoint holds every request while `held` is set: a run of the job then stays
/// inside its run, holding the job, until the test lets it go. `calls` counts the token
/// requests that arrived (one per run).
#[derive(Debug, Clone, Default)]
struct HeldGoogle {
    held: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

impl HeldGoogle {
    /// Starts it (not holding); returns it and its base URL.
    async fn start() -> (Self, String) {
        let google = HeldGoogle::default();
        let g = google.clone();
        let app = axum::Router::new()
            .route(
                "/token",
                axum::routing::post(move || {
                    let g = g.clone();
                    async move {
                        g.calls.fetch_add(1, Ordering::SeqCst);
                        while g.held.load(Ordering::SeqCst) {
                            tokio::time::sleep(StdDuration::from_millis(10)).await;
                        }
                        axum::Json(serde_json::json!({"access_token": "t", "expires_in": 3600}))
                    }
                }),
            )
            .route(
                "/v4/accounts/{account}/locations/{location}/reviews",
                axum::routing::get(|| async { axum::Json(serde_json::json!({"reviews": []})) }),
            );
        let base = format!("http://{}", tests::standins::serve(app).await);
        (google, base)
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The runs of `job` recorded in the log, as (run id, trigger), read from the events table.
async fn runs_of(log: &EventLog, job: &str) -> Vec<(String, String)> {
    stored(log, "JobRunStarted")
        .await
        .into_iter()
        .filter(|e| e.payload["JobRunStarted"]["job"] == job)
        .map(|e| {
            let trigger = e.payload["JobRunStarted"]["trigger"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (e.aggregate_id, trigger)
        })
        .collect()
}

/// The runs that ended (finished, or failed for good), by run id.
async fn ended_runs(log: &EventLog) -> BTreeSet<String> {
    let mut ended: BTreeSet<String> = stored(log, "JobRunFinished")
        .await
        .into_iter()
        .map(|e| e.aggregate_id)
        .collect();
    ended.extend(
        stored(log, "JobRunFailed")
            .await
            .into_iter()
            .filter(|e| e.payload["JobRunFailed"]["will_retry"] == false)
            .map(|e| e.aggregate_id),
    );
    ended
}

#[tokio::test]
async fn the_cron_endpoint_answers_401_404_409_and_200_over_http() {
    use chrono::Timelike as _;
    let (google, google_base) = HeldGoogle::start().await;
    let token_url = format!("{google_base}/token");
    let db = TestDb::new(Engine::Sqlite).await;
    // sync-google-reviews runs daily at 02:00 in the business's zone; the start-up catch-up
    // claims the latest 02:00, so the timer does not run it again during the test unless
    // the test crosses 02:00: then the business lives where it is afternoon.
    let zone = if (1..3).contains(&Utc::now().with_timezone(&Chicago).hour()) {
        "Asia/Tokyo"
    } else {
        "America/Chicago"
    };
    let server = start_server_with(
        Some(SECRET),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("BUSINESS_TIMEZONE", zone),
            ("GOOGLE_REVIEWS_API_BASE", google_base.as_str()),
            ("GOOGLE_OAUTH_TOKEN_URL", token_url.as_str()),
            ("GOOGLE_BUSINESS_ACCOUNT_ID", "acct"),
            ("GOOGLE_BUSINESS_LOCATION_ID", "loc"),
            ("GOOGLE_OAUTH_CLIENT_ID", "client"),
            ("GOOGLE_OAUTH_CLIENT_SECRET", "client-secret"),
            ("GOOGLE_OAUTH_REFRESH_TOKEN", "refresh"),
        ],
    )
    .await;
    let bearer = format!("Bearer {SECRET}");
    let job = "check-system-health";

    assert_eq!(execute(&server.base, job, None).await.status(), 401);
    assert_eq!(
        execute(
            &server.base,
            job,
            Some("Bearer not-the-secret-not-the-secret-xx")
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        execute(&server.base, job, Some(SECRET)).await.status(),
        401,
        "no Bearer prefix"
    );
    assert_eq!(
        execute(&server.base, "no-such-job", None).await.status(),
        401,
        "no probing"
    );
    assert_eq!(
        execute(&server.base, "no-such-job", Some(&bearer))
            .await
            .status(),
        404
    );

    // The start-up catch-up may hold the job for a moment: 409 then, 200 once it is done.
    let deadline = Instant::now() + StdDuration::from_secs(20);
    let body: serde_json::Value = loop {
        let r = execute(&server.base, "award-birthday-points", Some(&bearer)).await;
        if r.status() == 200 {
            break r.json().await.expect("json");
        }
        assert_eq!(r.status(), 409);
        assert!(Instant::now() < deadline, "job stayed busy");
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    assert_eq!(body["job"], "award-birthday-points");
    assert_eq!(body["trigger"], "manual");
    assert_eq!(body["status"], "finished");
    assert_eq!(body["counts"]["processed"], 0);

    // sync-google-reviews calls Google inside its run, so the stand-in decides how long a run
    // lasts. First the server's own start-up catch-up of the job (its daily slot is always
    // within the window on a fresh store) must have ended, or it could hold the job below.
    let log = db.log().await;
    let sync = "sync-google-reviews";
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        let runs = runs_of(&log, sync).await;
        let ended = ended_runs(&log).await;
        if runs.iter().any(|(_, trigger)| trigger == "catch_up")
            && runs.iter().all(|(id, _)| ended.contains(id))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the start-up catch-up of {sync} did not end: {runs:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    // A manual run with Google answering at once. (The catch-up lets the job go just after
    // recording its end: 409 until then.) After this 200 nothing else holds the job.
    let deadline = Instant::now() + StdDuration::from_secs(20);
    let first: serde_json::Value = loop {
        let r = execute(&server.base, sync, Some(&bearer)).await;
        if r.status() == 200 {
            break r.json().await.expect("json");
        }
        assert_eq!(r.status(), 409);
        assert!(Instant::now() < deadline, "{sync} stayed busy");
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    assert_eq!(first["status"], "finished", "{first}");
    assert_eq!(first["trigger"], "manual", "{first}");
    let first_run = first["runId"].as_str().expect("runId").to_string();
    // A manual run's slot is its second: the next one must fall in a later second, or it
    // would be refused as a slot that already ran rather than for being busy.
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;

    // Four requests at once while Google keeps the run waiting: exactly one gets the job,
    // and it is provably still inside its run (its token request is held, its answer not
    // given) when the other three are answered 409 "already running", none of them having
    // reached Google.
    google.held.store(true, Ordering::SeqCst);
    let calls_before = google.calls();
    let burst: Vec<tokio::task::JoinHandle<(u16, serde_json::Value)>> = (0..4)
        .map(|_| {
            let base = server.base.clone();
            let bearer = bearer.clone();
            tokio::spawn(async move {
                let r = execute(&base, sync, Some(&bearer)).await;
                let status = r.status().as_u16();
                (
                    status,
                    r.json::<serde_json::Value>().await.unwrap_or_default(),
                )
            })
        })
        .collect();
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        let answered = burst.iter().filter(|h| h.is_finished()).count();
        if google.calls() > calls_before && answered >= 3 {
            break;
        }
        assert!(
            answered < 4,
            "all four were answered while Google was held: none ran"
        );
        assert!(
            Instant::now() < deadline,
            "{} Google call(s) and {answered} answer(s) while Google was held",
            google.calls() - calls_before
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert_eq!(
        burst.iter().filter(|h| h.is_finished()).count(),
        3,
        "the run that got the job is still inside it"
    );
    assert_eq!(
        google.calls(),
        calls_before + 1,
        "only the run that got the job reached Google"
    );
    google.held.store(false, Ordering::SeqCst);
    let mut answers = Vec::new();
    for h in burst {
        answers.push(h.await.expect("request task"));
    }
    let ok: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok.len(), 1, "exactly one of four ran: {answers:?}");
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 409).count(),
        3,
        "the others are refused: {answers:?}"
    );
    for (status, body) in &answers {
        if *status == 409 {
            assert_eq!(body["error"]["code"], "JOB_RUNNING", "{body}");
            assert_eq!(
                body["error"]["message"],
                format!("{sync} is already running"),
                "refused because the job is running, not as a slot that ran: {body}"
            );
        }
    }
    let ran = ok[0];
    assert_eq!(ran["job"], sync, "{ran}");
    assert_eq!(ran["trigger"], "manual", "{ran}");
    assert_eq!(ran["status"], "finished", "{ran}");
    assert_eq!(ran["attempts"], 1, "{ran}");
    let ran_run = ran["runId"].as_str().expect("runId").to_string();
    assert_ne!(ran_run, first_run);

    // The log agrees: besides the start-up catch-up, the job ran exactly twice — the first
    // manual run and the one of the four — and both ended.
    let runs = runs_of(&log, sync).await;
    let by_hand: BTreeSet<String> = runs
        .iter()
        .filter(|(_, trigger)| trigger != "catch_up")
        .map(|(id, _)| id.clone())
        .collect();
    let expected: BTreeSet<String> = [first_run.clone(), ran_run.clone()].into_iter().collect();
    assert_eq!(by_hand, expected, "{runs:?}");
    assert!(
        runs.iter()
            .filter(|(id, _)| by_hand.contains(id))
            .all(|(_, trigger)| trigger == "manual"),
        "{runs:?}"
    );
    assert_eq!(
        runs.iter().filter(|(id, _)| *id == ran_run).count(),
        1,
        "one JobRun started for the four requests: {runs:?}"
    );
    let ended = ended_runs(&log).await;
    assert!(ended.contains(&first_run) && ended.contains(&ran_run));
    log.close().await;
    tests::health::assert_no_failures(&server.base).await;
}

#[tokio::test]
async fn without_a_cron_secret_the_endpoint_is_off() {
    let server = start_server(None).await;
    let r = execute(
        &server.base,
        "check-system-health",
        Some(&format!("Bearer {SECRET}")),
    )
    .await;
    assert_eq!(r.status(), 404);
    tests::health::assert_no_failures(&server.base).await;
}

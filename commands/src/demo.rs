//! Demo data: a realistic two-year history of a carpet-cleaning business,
//! generated deterministically from a seed number and written through the
//! same commands a user would issue (and the policies, which award points,
//! request reviews and reward referrals as they would in production).
//!
//! Determinism: the plan comes from a ChaCha PRNG; every event's `at` comes
//! from a clock set per command (a task-local instant, so commands can run
//! concurrently); commands touching shared streams (job completions, vans,
//! campaigns) run in one deterministic order. Same seed → same aggregate ids,
//! sequences and payloads. Metadata (request ids, recording times) differs.
//!
//! Staff logins: `admin@dirtfree.example`, `manager@dirtfree.example`,
//! `staff@dirtfree.example`, with the placeholder password hash
//! [`DEMO_PASSWORD_HASH`]: the API layer owns password hashing and replaces it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use domain::consent::{Channel, ConsentSource};
use domain::conversation::{ConversationCommand, Intent, Sender};
use domain::customer::CustomerCommand;
use domain::ids::{
    ConversationId, CustomerId, JobId, LoyaltyAccountId, OpportunityId, PaymentId, PortalAccountId,
    PromotionId, ReviewId, ReviewRequestId, ScheduledReportId, StaffUserId, VehicleId,
};
use domain::job::{BookingSource, JobCommand, ScheduleWindow};
use domain::loyalty::LoyaltyCommand;
use domain::opportunity::{OfferStatus, OpportunityCommand, PipelineStage};
use domain::payment::PaymentCommand;
use domain::portal::{PortalAccountCommand, PortalActivity};
use domain::ports::{Clock, FixedClock};
use domain::promotion::{AudienceSegment, PromotionCommand, PromotionDraft, PromotionKind};
use domain::review::{google_review_id, ReviewCommand, ReviewRequestCommand, ReviewSource};
use domain::scheduled_report::{ReportMetric, ReportPeriod, ScheduledReportCommand};
use domain::staff::StaffUserCommand;
use domain::values::{AddressInput, Discount};
use domain::vehicle::{VehicleCommand, VehicleStatus};
use domain::{Actor as DomainActor, DomainServices, Role};

use crate::app::{AppError, Crm};
use crate::metadata::{Actor, EventMetadata};
use crate::policies::PolicyRunner;

/// The password hash stored for demo staff and portal logins. Not a hash:
/// the API layer hashes passwords and must set real ones.
pub const DEMO_PASSWORD_HASH: &str = "demo-not-hashed";

/// The demo's staff logins: (email, name, role).
pub const DEMO_LOGINS: [(&str, &str, Role); 3] = [
    ("admin@dirtfree.example", "Avery Admin", Role::Admin),
    ("manager@dirtfree.example", "Morgan Manager", Role::Manager),
    ("staff@dirtfree.example", "Sam Staff", Role::Staff),
];

/// Commands run at once where order does not matter.
const CONCURRENCY: usize = 16;

/// How much data to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// 30 customers, 150 jobs: for tests.
    Small,
    /// 500 customers, 3,000 jobs: the demo.
    Full,
}

struct Sizes {
    customers: usize,
    jobs: usize,
    technicians: usize,
    vans: usize,
    opportunities: usize,
    campaigns: usize,
    conversations: usize,
    google_reviews: usize,
    duplicates: usize,
}

impl Scale {
    fn sizes(self) -> Sizes {
        match self {
            Scale::Small => Sizes {
                customers: 30,
                jobs: 150,
                technicians: 3,
                vans: 3,
                opportunities: 10,
                campaigns: 2,
                conversations: 5,
                google_reviews: 3,
                duplicates: 1,
            },
            Scale::Full => Sizes {
                customers: 500,
                jobs: 3_000,
                technicians: 8,
                vans: 8,
                opportunities: 150,
                campaigns: 8,
                conversations: 60,
                google_reviews: 40,
                duplicates: 3,
            },
        }
    }
}

/// What [`seed`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedSummary {
    /// Customers created (duplicates included).
    pub customers: usize,
    /// Jobs booked.
    pub jobs: usize,
    /// Jobs completed.
    pub completed_jobs: usize,
    /// Jobs cancelled.
    pub cancelled_jobs: usize,
    /// Staff users.
    pub staff_users: usize,
    /// Vans.
    pub vehicles: usize,
    /// Opportunities.
    pub opportunities: usize,
    /// Campaigns.
    pub promotions: usize,
    /// Referrals recorded.
    pub referrals: usize,
    /// Portal accounts.
    pub portal_accounts: usize,
    /// Events in the log afterwards.
    pub events: u64,
}

/// The last instant of the default demo history.
pub fn default_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 23, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Fills an empty store with two years of business ending at [`default_end`].
///
/// # Errors
/// [`AppError::Rule`] `STORE_NOT_EMPTY` when the log has events; any command
/// error (a bug in the seed).
pub async fn seed(crm: &Crm, seed: u64, scale: Scale) -> Result<SeedSummary, AppError> {
    seed_until(crm, seed, scale, default_end()).await
}

/// As [`seed`], with the history ending at `end` (e.g. now, for a live demo).
///
/// # Errors
/// As [`seed`].
pub async fn seed_until(
    crm: &Crm,
    seed: u64,
    scale: Scale,
    end: DateTime<Utc>,
) -> Result<SeedSummary, AppError> {
    if crm.log().count().await? > 0 {
        return Err(AppError::Rule {
            code: "STORE_NOT_EMPTY",
            message: "the demo seed needs an empty store".into(),
        });
    }
    let start = end - Duration::days(730);
    let base = Arc::new(FixedClock::new(start));
    let services = DomainServices {
        clock: Arc::new(DemoClock {
            base: Arc::clone(&base),
        }),
        ..crm.services().clone()
    };
    let plan = Plan::generate(seed, scale, start, end, services.tz);
    let ctx = Ctx {
        crm: crm.with_services(services),
        end,
        manager: plan.manager,
    };
    let policies = PolicyRunner::new(ctx.crm.clone());

    for step in &plan.setup {
        ctx.run(step).await?;
    }
    // Week by week: customers' own commands concurrently, then the shared
    // streams in one order, then the policies as of the week's end.
    let mut week_start = start;
    while week_start <= end + Duration::days(15) {
        let week_end = week_start + Duration::days(7);
        let in_week = |s: &&Timed| s.at >= week_start && s.at < week_end;
        let mut lanes: BTreeMap<usize, Vec<&Timed>> = BTreeMap::new();
        for s in plan.customer_steps.iter().filter(in_week) {
            lanes.entry(s.lane).or_default().push(s);
        }
        ctx.run_lanes(lanes.into_values().collect()).await?;
        let mut campaigns: BTreeMap<usize, Vec<&Timed>> = BTreeMap::new();
        for s in plan.campaign_steps.iter().filter(in_week) {
            campaigns.entry(s.lane).or_default().push(s);
        }
        ctx.run_lanes(campaigns.into_values().collect()).await?;
        for s in plan.shared_steps.iter().filter(in_week) {
            ctx.run(s).await?;
        }
        base.set(week_end.min(end));
        policies.run_until_caught_up().await.map_err(|e| e.error)?;
        week_start = week_end;
    }
    base.set(end);
    let mut lanes: BTreeMap<usize, Vec<&Timed>> = BTreeMap::new();
    for s in &plan.closing_steps {
        lanes.entry(s.lane).or_default().push(s);
    }
    ctx.run_lanes(lanes.into_values().collect()).await?;
    policies.run_until_caught_up().await.map_err(|e| e.error)?;

    let mut summary = plan.summary.clone();
    summary.events = crm.log().count().await?;
    Ok(summary)
}

tokio::task_local! {
    /// The instant commands of the current seeding task are decided at.
    static NOW: DateTime<Utc>;
}

/// The task-local instant when set, else the base clock (policies).
struct DemoClock {
    base: Arc<FixedClock>,
}

impl Clock for DemoClock {
    fn now(&self) -> DateTime<Utc> {
        NOW.try_with(|t| *t).unwrap_or_else(|_| self.base.now())
    }
}

async fn at<F: Future>(t: DateTime<Utc>, f: F) -> F::Output {
    NOW.scope(t, f).await
}

// ------------------------------------------------------------------ the plan

/// One planned action at an instant; `lane` groups actions that must run in order.
#[derive(Debug, Clone)]
struct Timed {
    at: DateTime<Utc>,
    lane: usize,
    step: Step,
}

#[derive(Debug, Clone)]
enum Step {
    InviteStaff {
        id: StaffUserId,
        email: String,
        name: String,
        role: Role,
        login: bool,
    },
    RegisterVan {
        id: VehicleId,
        name: String,
        plate: String,
    },
    DefineReport {
        id: ScheduledReportId,
        name: String,
        metrics: Vec<ReportMetric>,
        period: ReportPeriod,
        cron: String,
    },
    CreateCustomer(Box<NewCustomer>),
    Refer {
        referee: CustomerId,
        referrer: CustomerId,
    },
    RegisterPortal {
        customer: CustomerId,
    },
    PortalVisit {
        customer: CustomerId,
    },
    TextStop {
        customer: CustomerId,
    },
    Book(Box<BookJob>),
    Reschedule {
        job: JobId,
        window: ScheduleWindow,
    },
    Cancel {
        job: JobId,
        reason: &'static str,
    },
    Pay {
        payment: PaymentId,
        job: JobId,
        customer: CustomerId,
        amount_cents: i64,
        fails: bool,
    },
    Complete {
        job: JobId,
        van: Option<VehicleId>,
        window: ScheduleWindow,
        amount_cents: i64,
        services: Vec<String>,
    },
    Maintenance {
        van: VehicleId,
        reason: &'static str,
    },
    ReturnVan {
        van: VehicleId,
    },
    Opportunity(Box<NewOpportunity>),
    OfferFollowUp {
        opportunity: OpportunityId,
        viewed: bool,
        accepted: bool,
    },
    CloseOpportunity {
        opportunity: OpportunityId,
        lost: Option<&'static str>,
    },
    ExpireOffer {
        opportunity: OpportunityId,
    },
    Conversation {
        id: ConversationId,
        customer: CustomerId,
        hand_off: bool,
    },
    Campaign(Box<NewCampaign>),
    Review {
        job: JobId,
        customer: CustomerId,
        review: ReviewId,
        rating: i64,
        comment: Option<&'static str>,
        respond: bool,
    },
    GoogleReview {
        external_id: String,
        rating: i64,
        comment: Option<&'static str>,
    },
    Loyalty {
        customer: CustomerId,
        redeem: bool,
        award: bool,
    },
    Duplicate {
        duplicate: CustomerId,
        of: CustomerId,
        name: String,
        phone: String,
    },
}

#[derive(Debug, Clone)]
struct NewCustomer {
    id: CustomerId,
    name: String,
    email: Option<String>,
    phone: Option<String>,
    birthday: Option<NaiveDate>,
    customer_since: Option<NaiveDate>,
    address: AddressInput,
    sms: bool,
    email_ok: bool,
    tag: Option<&'static str>,
    imported: bool,
}

#[derive(Debug, Clone)]
struct BookJob {
    job: JobId,
    customer: CustomerId,
    online: bool,
    services: Vec<String>,
    window: Option<ScheduleWindow>,
    technician: StaffUserId,
    van: VehicleId,
    wins: Option<OpportunityId>,
}

#[derive(Debug, Clone)]
struct NewOpportunity {
    id: OpportunityId,
    customer: CustomerId,
    title: &'static str,
    value_cents: i64,
    owner: StaffUserId,
    quoted: bool,
    offer: Option<u8>,
}

#[derive(Debug, Clone)]
struct NewCampaign {
    id: PromotionId,
    name: String,
    channel: Channel,
    template: &'static str,
    code: String,
    audience: Vec<CustomerId>,
    seed: u64,
}

/// A job to book: customer, booking instant, day of the work, opportunity it wins.
type JobSpec = (
    CustomerId,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<OpportunityId>,
);

struct Plan {
    manager: StaffUserId,
    setup: Vec<Timed>,
    customer_steps: Vec<Timed>,
    campaign_steps: Vec<Timed>,
    shared_steps: Vec<Timed>,
    closing_steps: Vec<Timed>,
    summary: SeedSummary,
}

const FIRST: [&str; 32] = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Benjamin", "Harper", "Levi", "Evelyn", "Henry", "Abigail", "Jack",
    "Emily", "Daniel", "Ella", "Michael", "Camila", "Owen", "Luna", "Samuel", "Sofia", "Diego",
    "Grace", "Wyatt",
];
const LAST: [&str; 32] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Nguyen",
];
const STREETS: [&str; 10] = [
    "Oak St",
    "Maple Ave",
    "Cedar Ln",
    "Elm Dr",
    "Pecan St",
    "Lamar Blvd",
    "Bluebonnet Way",
    "Mesquite Trl",
    "Riverside Dr",
    "Congress Ave",
];
const CITIES: [(&str, &str); 5] = [
    ("Austin", "787"),
    ("Round Rock", "786"),
    ("Cedar Park", "786"),
    ("Pflugerville", "786"),
    ("Georgetown", "786"),
];
const SERVICES: [(&str, i64); 6] = [
    ("carpet cleaning", 18_900),
    ("upholstery cleaning", 14_900),
    ("tile and grout cleaning", 22_900),
    ("pet odour treatment", 8_900),
    ("rug cleaning", 9_900),
    ("stain protection", 6_900),
];
const OPPORTUNITY_TITLES: [&str; 5] = [
    "Upsell pet-odour treatment",
    "Whole-house carpet package",
    "Quarterly office cleaning contract",
    "Stain protection add-on",
    "Move-out deep clean",
];
const TAGS: [&str; 3] = ["vip", "pet-owner", "commercial"];

fn uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

fn between(rng: &mut ChaCha8Rng, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = (to - from).num_minutes().max(1);
    from + Duration::minutes(rng.gen_range(0..span))
}

impl Plan {
    fn generate(
        seed: u64,
        scale: Scale,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Plan {
        let sizes = scale.sizes();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut setup = Vec::new();
        let mut customer_steps = Vec::new();
        let mut campaign_steps = Vec::new();
        let mut shared_steps = Vec::new();
        let mut closing_steps = Vec::new();
        let mut summary = SeedSummary::default();
        let setup_at = |m: i64| start + Duration::minutes(m);

        // Staff: the three demo logins, then technicians.
        let mut staff = Vec::new();
        for (i, (email, name, role)) in DEMO_LOGINS.iter().enumerate() {
            let id = StaffUserId(uuid(&mut rng));
            staff.push(id);
            let step = Step::InviteStaff {
                id,
                email: (*email).into(),
                name: (*name).into(),
                role: *role,
                login: true,
            };
            setup.push(Timed {
                at: setup_at(i as i64),
                lane: 0,
                step,
            });
        }
        let mut technicians = vec![staff[2]];
        for i in 0..sizes.technicians {
            let id = StaffUserId(uuid(&mut rng));
            technicians.push(id);
            let name = format!(
                "{} {}",
                FIRST[(i * 7 + 3) % FIRST.len()],
                LAST[(i * 5 + 11) % LAST.len()]
            );
            let email = format!("tech{}@dirtfree.example", i + 1);
            let step = Step::InviteStaff {
                id,
                email,
                name,
                role: Role::Staff,
                login: false,
            };
            setup.push(Timed {
                at: setup_at(10 + i as i64),
                lane: 0,
                step,
            });
        }
        summary.staff_users = staff.len() + sizes.technicians;
        let mut vans = Vec::new();
        for i in 0..sizes.vans {
            let id = VehicleId(uuid(&mut rng));
            vans.push(id);
            let plate = format!("DFC-{:04}", rng.gen_range(1000..9999));
            setup.push(Timed {
                at: setup_at(30 + i as i64),
                lane: 0,
                step: Step::RegisterVan {
                    id,
                    name: format!("Van {}", i + 1),
                    plate,
                },
            });
            // One workshop visit per van, at a random time.
            let t = between(
                &mut rng,
                start + Duration::days(30),
                end - Duration::days(10),
            );
            shared_steps.push(Timed {
                at: t,
                lane: 0,
                step: Step::Maintenance {
                    van: id,
                    reason: "scheduled service",
                },
            });
            shared_steps.push(Timed {
                at: t + Duration::days(2),
                lane: 0,
                step: Step::ReturnVan { van: id },
            });
        }
        summary.vehicles = vans.len();
        for (i, (name, metrics, period, cron)) in [
            (
                "Weekly revenue",
                vec![ReportMetric::Revenue, ReportMetric::Customers],
                ReportPeriod::Weekly,
                "0 7 * * 1",
            ),
            (
                "Monthly marketing",
                vec![
                    ReportMetric::PromotionEffectiveness,
                    ReportMetric::Reviews,
                    ReportMetric::Loyalty,
                ],
                ReportPeriod::Monthly,
                "0 7 1 * *",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let id = ScheduledReportId(uuid(&mut rng));
            let step = Step::DefineReport {
                id,
                name: name.into(),
                metrics,
                period,
                cron: cron.into(),
            };
            setup.push(Timed {
                at: setup_at(60 + i as i64),
                lane: 0,
                step,
            });
        }

        // Customers, sorted by the time they joined; a third are imported on day one.
        let mut joins: Vec<(DateTime<Utc>, bool)> = (0..sizes.customers)
            .map(|i| {
                if i * 3 < sizes.customers {
                    (
                        start + Duration::hours(2) + Duration::minutes(i as i64),
                        true,
                    )
                } else {
                    (
                        between(&mut rng, start + Duration::days(1), end - Duration::days(2)),
                        false,
                    )
                }
            })
            .collect();
        joins.sort();
        let mut customers: Vec<(CustomerId, DateTime<Utc>, bool)> = Vec::new();
        for (lane, (joined, imported)) in joins.into_iter().enumerate() {
            let id = CustomerId(uuid(&mut rng));
            let first = *FIRST.choose(&mut rng).unwrap_or(&"Alex");
            let last = *LAST.choose(&mut rng).unwrap_or(&"Doe");
            let phone = rng
                .gen_bool(0.85)
                .then(|| format!("+1512555{:04}", rng.gen_range(0..10_000)));
            let email = rng.gen_bool(0.9).then(|| {
                format!(
                    "{}.{}{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    lane
                )
            });
            let birthday = rng.gen_bool(0.6).then(|| {
                NaiveDate::from_ymd_opt(
                    rng.gen_range(1950..2002),
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28),
                )
                .unwrap_or_default()
            });
            let since = imported.then(|| {
                let days = rng.gen_range(60..3000);
                (start - Duration::days(days))
                    .with_timezone(&tz)
                    .date_naive()
            });
            let (city, zip) = CITIES[rng.gen_range(0..CITIES.len())];
            let address = AddressInput {
                line1: format!(
                    "{} {}",
                    rng.gen_range(100..9999),
                    STREETS[rng.gen_range(0..STREETS.len())]
                ),
                line2: None,
                city: city.into(),
                region: "TX".into(),
                postal_code: format!("{zip}{:02}", rng.gen_range(0..100)),
            };
            let sms = phone.is_some() && rng.gen_bool(0.7);
            let email_ok = email.is_some() && rng.gen_bool(0.75);
            let tag = rng
                .gen_bool(0.3)
                .then(|| TAGS[rng.gen_range(0..TAGS.len())]);
            let new = NewCustomer {
                id,
                name: format!("{first} {last}"),
                email,
                phone,
                birthday,
                customer_since: since,
                address,
                sms,
                email_ok,
                tag,
                imported,
            };
            customer_steps.push(Timed {
                at: joined,
                lane,
                step: Step::CreateCustomer(Box::new(new)),
            });
            // Referred by an earlier customer (one who joined at least a week before).
            if !imported && rng.gen_bool(0.15) {
                let earlier: Vec<_> = customers
                    .iter()
                    .filter(|c| c.1 < joined - Duration::days(8))
                    .collect();
                if let Some(referrer) = earlier.choose(&mut rng) {
                    let step = Step::Refer {
                        referee: id,
                        referrer: referrer.0,
                    };
                    customer_steps.push(Timed {
                        at: joined + Duration::minutes(5),
                        lane,
                        step,
                    });
                    summary.referrals += 1;
                }
            }
            if rng.gen_bool(0.4) {
                let t = joined + Duration::days(rng.gen_range(1..60));
                if t < end {
                    customer_steps.push(Timed {
                        at: t,
                        lane,
                        step: Step::RegisterPortal { customer: id },
                    });
                    summary.portal_accounts += 1;
                    for _ in 0..rng.gen_range(0..4) {
                        let v = between(&mut rng, t + Duration::hours(1), end);
                        customer_steps.push(Timed {
                            at: v,
                            lane,
                            step: Step::PortalVisit { customer: id },
                        });
                    }
                }
            }
            if sms && rng.gen_bool(0.06) {
                let t = between(&mut rng, joined + Duration::days(1), end);
                customer_steps.push(Timed {
                    at: t,
                    lane,
                    step: Step::TextStop { customer: id },
                });
            }
            customers.push((id, joined, imported));
        }
        summary.customers = customers.len() + sizes.duplicates;
        let lane_of = |c: CustomerId, cs: &[(CustomerId, DateTime<Utc>, bool)]| {
            cs.iter().position(|x| x.0 == c).unwrap_or(0)
        };
        let local = |d: NaiveDate, hour: u32| {
            tz.from_local_datetime(&d.and_hms_opt(hour, 0, 0).unwrap_or_default())
                .earliest()
                .map_or(start, |t| t.with_timezone(&Utc))
        };

        // Opportunities; a won one books the job it converts into.
        let mut extra_jobs: Vec<(CustomerId, DateTime<Utc>, OpportunityId)> = Vec::new();
        for _ in 0..sizes.opportunities {
            let (cid, joined, _) = customers[rng.gen_range(0..customers.len())];
            let t = between(
                &mut rng,
                joined + Duration::days(1),
                end - Duration::days(1),
            );
            let id = OpportunityId(uuid(&mut rng));
            let lane = lane_of(cid, &customers);
            let offer = rng
                .gen_bool(0.4)
                .then(|| [10u8, 15, 20][rng.gen_range(0..3)]);
            let new = NewOpportunity {
                id,
                customer: cid,
                title: OPPORTUNITY_TITLES[rng.gen_range(0..OPPORTUNITY_TITLES.len())],
                value_cents: rng.gen_range(50..500) * 100,
                owner: if rng.gen_bool(0.5) {
                    staff[1]
                } else {
                    staff[2]
                },
                quoted: rng.gen_bool(0.6),
                offer,
            };
            customer_steps.push(Timed {
                at: t,
                lane,
                step: Step::Opportunity(Box::new(new)),
            });
            if offer.is_some() {
                let step = Step::OfferFollowUp {
                    opportunity: id,
                    viewed: rng.gen_bool(0.6),
                    accepted: rng.gen_bool(0.3),
                };
                customer_steps.push(Timed {
                    at: t + Duration::days(4),
                    lane,
                    step,
                });
            }
            let close = t + Duration::days(10);
            let r: f64 = rng.gen();
            if close < end && r < 0.3 {
                extra_jobs.push((cid, close, id));
            } else if close < end && r < 0.65 {
                let reason = [
                    "price too high",
                    "went with a competitor",
                    "no longer needed",
                ][rng.gen_range(0..3)];
                let step = Step::CloseOpportunity {
                    opportunity: id,
                    lost: Some(reason),
                };
                customer_steps.push(Timed {
                    at: close,
                    lane,
                    step,
                });
            } else if offer.is_some() && t + Duration::days(14) < end {
                customer_steps.push(Timed {
                    at: t + Duration::days(14),
                    lane,
                    step: Step::ExpireOffer { opportunity: id },
                });
            }
        }
        summary.opportunities = sizes.opportunities;

        // Jobs over the two years and the next two weeks.
        let mut completed: Vec<(JobId, CustomerId, DateTime<Utc>)> = Vec::new();
        let job_count = sizes.jobs.saturating_sub(extra_jobs.len());
        let mut job_specs: Vec<JobSpec> = Vec::new();
        for (cid, booked, opp) in extra_jobs {
            job_specs.push((
                cid,
                booked,
                booked + Duration::days(rng.gen_range(3..14)),
                Some(opp),
            ));
        }
        for _ in 0..job_count {
            let day = between(
                &mut rng,
                start + Duration::days(3),
                end + Duration::days(14),
            );
            let eligible = customers
                .partition_point(|c| c.1 < day - Duration::days(2))
                .max(1);
            let (cid, joined, _) = customers[rng.gen_range(0..eligible)];
            let booked = (day - Duration::days(rng.gen_range(1..14)))
                .max(joined + Duration::hours(1))
                .min(end);
            job_specs.push((cid, booked, day, None));
        }
        summary.jobs = job_specs.len();
        for (cid, booked, day, wins) in job_specs {
            let lane = lane_of(cid, &customers);
            let job = JobId(uuid(&mut rng));
            let hour = [8u32, 10, 13, 15][rng.gen_range(0..4)];
            let date = day.with_timezone(&tz).date_naive();
            let window_start = local(date, hour).max(booked + Duration::hours(2));
            let window = ScheduleWindow::new(window_start, window_start + Duration::hours(2)).ok();
            let n = rng.gen_range(1..=3);
            let services: Vec<(&str, i64)> =
                SERVICES.choose_multiple(&mut rng, n).copied().collect();
            let future = window_start > end;
            let unscheduled = future && rng.gen_bool(0.2);
            let technician = technicians[rng.gen_range(0..technicians.len())];
            let van = vans[rng.gen_range(0..vans.len())];
            let book = BookJob {
                job,
                customer: cid,
                online: rng.gen_bool(0.3),
                services: services.iter().map(|s| s.0.to_string()).collect(),
                window: if unscheduled { None } else { window },
                technician,
                van,
                wins,
            };
            customer_steps.push(Timed {
                at: booked,
                lane,
                step: Step::Book(Box::new(book)),
            });
            let Some(mut window) = window.filter(|_| !unscheduled) else {
                continue;
            };
            if rng.gen_bool(0.05) && window.start - booked > Duration::days(2) {
                let moved = window.start + Duration::days(rng.gen_range(1..3));
                if let Ok(w) = ScheduleWindow::new(moved, moved + Duration::hours(2)) {
                    let step = Step::Reschedule { job, window: w };
                    customer_steps.push(Timed {
                        at: booked + Duration::days(1),
                        lane,
                        step,
                    });
                    window = w;
                }
            }
            if window.end >= end {
                continue;
            }
            if rng.gen_bool(0.07) {
                let reason = [
                    "customer unavailable",
                    "weather",
                    "customer asked to cancel",
                ][rng.gen_range(0..3)];
                let t = (window.start - Duration::days(1))
                    .max(booked + Duration::hours(1))
                    .min(window.start);
                customer_steps.push(Timed {
                    at: t,
                    lane,
                    step: Step::Cancel { job, reason },
                });
                summary.cancelled_jobs += 1;
                continue;
            }
            let base: i64 = services.iter().map(|s| s.1).sum();
            let amount_cents = base * rng.gen_range(90..120) / 100 / 100 * 100;
            let dispatched = window.start > end - Duration::days(30);
            let step = Step::Complete {
                job,
                van: dispatched.then_some(van),
                window,
                amount_cents,
                services: services.iter().map(|s| s.0.to_string()).collect(),
            };
            shared_steps.push(Timed {
                at: window.start,
                lane: 0,
                step,
            });
            summary.completed_jobs += 1;
            completed.push((job, cid, window.end));
            if rng.gen_bool(0.65) {
                let step = Step::Pay {
                    payment: PaymentId(uuid(&mut rng)),
                    job,
                    customer: cid,
                    amount_cents,
                    fails: rng.gen_bool(0.04),
                };
                customer_steps.push(Timed {
                    at: window.end + Duration::minutes(5),
                    lane,
                    step,
                });
            }
        }

        // Conversations from the chat widget.
        for _ in 0..sizes.conversations {
            let (cid, joined, _) = customers[rng.gen_range(0..customers.len())];
            let t = between(&mut rng, joined + Duration::hours(1), end);
            let step = Step::Conversation {
                id: ConversationId(uuid(&mut rng)),
                customer: cid,
                hand_off: rng.gen_bool(0.3),
            };
            customer_steps.push(Timed {
                at: t,
                lane: lane_of(cid, &customers),
                step,
            });
        }

        // Campaigns to about half the customers there at the time.
        for k in 0..sizes.campaigns {
            let t = between(
                &mut rng,
                start + Duration::days(20),
                end - Duration::days(3),
            );
            let present = customers.partition_point(|c| c.1 < t - Duration::days(1));
            let audience: Vec<CustomerId> = customers[..present]
                .iter()
                .filter(|_| rng.gen_bool(0.5))
                .map(|c| c.0)
                .collect();
            let sms = rng.gen_bool(0.5);
            let new = NewCampaign {
                id: PromotionId(uuid(&mut rng)),
                name: ["Spring refresh", "Holiday ready", "Pet season", "Back to school", "Summer sale"][k % 5].to_string()
                    + &format!(" {}", t.with_timezone(&tz).format("%Y")),
                channel: if sms { Channel::Sms } else { Channel::Email },
                template: "Hi {{ first_name }}, get {{ discount }} off your next cleaning with code {{ code }}.",
                code: format!("DEMO{}", rng.gen_range(10..99)),
                audience,
                seed: rng.gen(),
            };
            campaign_steps.push(Timed {
                at: t,
                lane: k,
                step: Step::Campaign(Box::new(new)),
            });
        }
        summary.promotions = sizes.campaigns;

        // After the history: reviews, redemptions, Google reviews, duplicates.
        let last = end - Duration::minutes(30);
        for (job, cid, done) in &completed {
            if rng.gen_bool(0.25) {
                let rating = [5, 5, 5, 4, 4, 3, 2][rng.gen_range(0..7)];
                let comment = [
                    Some("Great job, carpets look new!"),
                    Some("On time and friendly."),
                    None,
                ][rng.gen_range(0..3)];
                let step = Step::Review {
                    job: *job,
                    customer: *cid,
                    review: ReviewId(uuid(&mut rng)),
                    rating,
                    comment,
                    respond: rng.gen_bool(0.5),
                };
                let t = (*done + Duration::days(2)).min(last);
                closing_steps.push(Timed {
                    at: t,
                    lane: lane_of(*cid, &customers),
                    step,
                });
            }
        }
        for (lane, c) in customers.iter().enumerate() {
            let (redeem, award) = (rng.gen_bool(0.3), rng.gen_bool(0.05));
            if redeem || award {
                let step = Step::Loyalty {
                    customer: c.0,
                    redeem,
                    award,
                };
                closing_steps.push(Timed {
                    at: last - Duration::minutes(10),
                    lane,
                    step,
                });
            }
        }
        for i in 0..sizes.google_reviews {
            let t = between(&mut rng, start + Duration::days(10), last);
            let rating = [5, 5, 4, 4, 3, 1][rng.gen_range(0..6)];
            let step = Step::GoogleReview {
                external_id: format!("demo-google-{i}"),
                rating,
                comment: Some("Would recommend."),
            };
            closing_steps.push(Timed {
                at: t,
                lane: customers.len() + 1 + i,
                step,
            });
        }
        for i in 0..sizes.duplicates {
            let of = customers[i * 2 % customers.len()].0;
            let name = format!("{} {}", FIRST[i % FIRST.len()], LAST[(i + 3) % LAST.len()]);
            let step = Step::Duplicate {
                duplicate: CustomerId(uuid(&mut rng)),
                of,
                name,
                phone: format!("+1737555{:04}", rng.gen_range(0..10_000)),
            };
            closing_steps.push(Timed {
                at: last,
                lane: i * 2 % customers.len(),
                step,
            });
        }

        for steps in [
            &mut customer_steps,
            &mut campaign_steps,
            &mut shared_steps,
            &mut closing_steps,
        ] {
            // Stable: equal instants keep their planning order.
            steps.sort_by_key(|s| s.at);
        }
        Plan {
            manager: staff[1],
            setup,
            customer_steps,
            campaign_steps,
            shared_steps,
            closing_steps,
            summary,
        }
    }
}

// ------------------------------------------------------------------ running it

struct Ctx {
    crm: Crm,
    end: DateTime<Utc>,
    /// The demo manager, who books, assigns and responds.
    manager: StaffUserId,
}

fn meta(t: DateTime<Utc>) -> EventMetadata {
    EventMetadata::new(Actor::System("demo-seed".into()), t)
}

impl Ctx {
    fn manager(&self) -> DomainActor {
        DomainActor::Staff {
            id: self.manager,
            role: Role::Manager,
        }
    }

    async fn run_lanes(&self, lanes: Vec<Vec<&Timed>>) -> Result<(), AppError> {
        futures::stream::iter(lanes.into_iter().map(|steps| async move {
            for s in steps {
                self.run(s).await?;
            }
            Ok::<(), AppError>(())
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
    }

    async fn run(&self, s: &Timed) -> Result<(), AppError> {
        at(s.at, self.step(s.at, &s.step)).await
    }

    /// Runs `f` with the clock at `t`.
    async fn later<F: Future<Output = Result<T, AppError>>, T>(
        &self,
        t: DateTime<Utc>,
        f: F,
    ) -> Result<T, AppError> {
        at(t.min(self.end), f).await
    }

    async fn step(&self, t: DateTime<Utc>, step: &Step) -> Result<(), AppError> {
        let crm = &self.crm;
        let sys = DomainActor::System;
        let m = meta(t);
        match step {
            Step::InviteStaff {
                id,
                email,
                name,
                role,
                login,
            } => {
                let cmd = StaffUserCommand::Invite {
                    staff_user_id: *id,
                    email: email.clone(),
                    name: name.clone(),
                    role: *role,
                    password_hash: Some(DEMO_PASSWORD_HASH.into()),
                };
                crm.staff_users().execute(*id, sys, cmd, &m).await?;
                if *login {
                    let actor = DomainActor::Staff {
                        id: *id,
                        role: *role,
                    };
                    crm.staff_users()
                        .execute(*id, actor, StaffUserCommand::RecordLogin, &m)
                        .await?;
                }
            }
            Step::RegisterVan { id, name, plate } => {
                let cmd = VehicleCommand::Register {
                    vehicle_id: *id,
                    name: name.clone(),
                    plate: Some(plate.clone()),
                };
                crm.vehicles().execute(*id, sys, cmd, &m).await?;
            }
            Step::DefineReport {
                id,
                name,
                metrics,
                period,
                cron,
            } => {
                let cmd = ScheduledReportCommand::Define {
                    report_id: *id,
                    name: name.clone(),
                    metrics: metrics.clone(),
                    period: *period,
                    recipients: vec![DEMO_LOGINS[1].0.into(), DEMO_LOGINS[0].0.into()],
                    cron: cron.clone(),
                };
                crm.scheduled_reports()
                    .execute(*id, self.manager(), cmd, &m)
                    .await?;
            }
            Step::CreateCustomer(c) => {
                let cmd = CustomerCommand::Create {
                    customer_id: c.id,
                    name: c.name.clone(),
                    email: c.email.clone(),
                    phone: c.phone.clone(),
                    birthday: c.birthday,
                    customer_since: c.customer_since,
                };
                let customers = crm.customers();
                customers.execute(c.id, sys, cmd, &m).await?;
                let addr = CustomerCommand::AddAddress {
                    label: "home".into(),
                    address: c.address.clone(),
                };
                customers.execute(c.id, sys, addr, &m).await?;
                let source = if c.imported {
                    ConsentSource::Import
                } else {
                    ConsentSource::Staff
                };
                for (wanted, channel) in [(c.sms, Channel::Sms), (c.email_ok, Channel::Email)] {
                    if wanted {
                        let cmd = CustomerCommand::GrantMarketingConsent {
                            channel,
                            source: source.clone(),
                        };
                        customers.execute(c.id, sys, cmd, &m).await?;
                    }
                }
                if let Some(tag) = c.tag {
                    customers
                        .execute(c.id, sys, CustomerCommand::AddTag { tag: tag.into() }, &m)
                        .await?;
                }
                crm.issue_referral_code(c.id, sys, &m).await?;
            }
            Step::Refer { referee, referrer } => {
                let owner = crm.customers().load(*referrer).await?.aggregate;
                if let Some(code) = owner.referral_code() {
                    crm.record_referral(
                        *referee,
                        code.as_str(),
                        DomainActor::Customer { id: *referee },
                        &m,
                    )
                    .await?;
                }
            }
            Step::RegisterPortal { customer } => {
                let id = PortalAccountId::for_customer(*customer);
                let cmd = PortalAccountCommand::Register {
                    customer_id: *customer,
                    password_hash: DEMO_PASSWORD_HASH.into(),
                };
                crm.portal_accounts()
                    .execute(id, DomainActor::Customer { id: *customer }, cmd, &m)
                    .await?;
                crm.portal_accounts()
                    .execute(
                        id,
                        DomainActor::Customer { id: *customer },
                        PortalAccountCommand::RecordLogin,
                        &m,
                    )
                    .await?;
            }
            Step::PortalVisit { customer } => {
                let id = PortalAccountId::for_customer(*customer);
                let actor = DomainActor::Customer { id: *customer };
                crm.portal_accounts()
                    .execute(id, actor, PortalAccountCommand::RecordLogin, &m)
                    .await?;
                let cmd = PortalAccountCommand::RecordActivity {
                    activity: PortalActivity::ViewedLoyalty,
                };
                crm.portal_accounts().execute(id, actor, cmd, &m).await?;
            }
            Step::TextStop { customer } => {
                crm.customers()
                    .execute(
                        *customer,
                        sys,
                        CustomerCommand::ApplyInboundSms {
                            body: "STOP".into(),
                        },
                        &m,
                    )
                    .await?;
            }
            Step::Book(b) => {
                let has_portal = crm
                    .portal_accounts()
                    .load(PortalAccountId::for_customer(b.customer))
                    .await?
                    .sequence
                    > 0;
                let (actor, source) = if b.online && has_portal {
                    (
                        DomainActor::Customer { id: b.customer },
                        BookingSource::Online,
                    )
                } else {
                    (self.manager(), BookingSource::Staff)
                };
                let cmd = JobCommand::Book {
                    job_id: b.job,
                    customer_id: b.customer,
                    source,
                    services: b.services.clone(),
                    window: b.window,
                };
                crm.jobs().execute(b.job, actor, cmd, &m).await?;
                if let Some(opportunity) = b.wins {
                    let cmd = OpportunityCommand::Win { job_id: b.job };
                    crm.opportunities()
                        .execute(opportunity, self.manager(), cmd, &m)
                        .await?;
                }
                if b.window.is_some() {
                    let tech = JobCommand::AssignTechnician {
                        technician_id: b.technician,
                    };
                    self.later(
                        t + Duration::minutes(5),
                        crm.jobs().execute(b.job, self.manager(), tech, &m),
                    )
                    .await?;
                    let van = JobCommand::AssignVehicle { vehicle_id: b.van };
                    self.later(
                        t + Duration::minutes(6),
                        crm.jobs().execute(b.job, self.manager(), van, &m),
                    )
                    .await?;
                }
            }
            Step::Reschedule { job, window } => {
                let cmd = JobCommand::Reschedule {
                    window: *window,
                    reason: Some("customer asked for another day".into()),
                };
                crm.jobs().execute(*job, self.manager(), cmd, &m).await?;
            }
            Step::Cancel { job, reason } => {
                crm.jobs()
                    .execute(
                        *job,
                        self.manager(),
                        JobCommand::Cancel {
                            reason: (*reason).into(),
                        },
                        &m,
                    )
                    .await?;
            }
            Step::Pay {
                payment,
                job,
                customer,
                amount_cents,
                fails,
            } => {
                let cmd = PaymentCommand::CreateIntent {
                    payment_id: *payment,
                    job_id: *job,
                    customer_id: *customer,
                    amount_cents: *amount_cents,
                    provider_intent_id: format!("pi_demo_{}", payment.0.simple()),
                };
                crm.payments().execute(*payment, sys, cmd, &m).await?;
                let evt = format!("evt_demo_{}", &payment.0.simple().to_string()[..16]);
                let cmd = if *fails {
                    PaymentCommand::RecordFailed {
                        provider_event_id: evt,
                        reason: "card_declined".into(),
                    }
                } else {
                    PaymentCommand::RecordSucceeded {
                        provider_event_id: evt,
                    }
                };
                self.later(
                    t + Duration::minutes(1),
                    crm.payments().execute(*payment, sys, cmd, &m),
                )
                .await?;
            }
            Step::Complete {
                job,
                van,
                window,
                amount_cents,
                services,
            } => {
                let jobs = crm.jobs();
                let mut dispatched = None;
                if let Some(van) = van {
                    if crm.vehicles().load(*van).await?.aggregate.status()
                        == VehicleStatus::Available
                    {
                        crm.vehicles()
                            .execute(*van, sys, VehicleCommand::Dispatch { job_id: *job }, &m)
                            .await?;
                        dispatched = Some(*van);
                    }
                }
                jobs.execute(*job, self.manager(), JobCommand::Start, &m)
                    .await?;
                let cmd = JobCommand::Complete {
                    amount_cents: *amount_cents,
                    services: services.clone(),
                    technician_id: None,
                };
                self.later(window.end, jobs.execute(*job, self.manager(), cmd, &m))
                    .await?;
                if let Some(van) = dispatched {
                    self.later(
                        window.end,
                        crm.vehicles().execute(
                            van,
                            sys,
                            VehicleCommand::Release { job_id: *job },
                            &m,
                        ),
                    )
                    .await?;
                }
            }
            Step::Maintenance { van, reason } => {
                if crm.vehicles().load(*van).await?.aggregate.status() == VehicleStatus::Available {
                    let cmd = VehicleCommand::SendToMaintenance {
                        reason: (*reason).into(),
                    };
                    crm.vehicles().execute(*van, sys, cmd, &m).await?;
                }
            }
            Step::ReturnVan { van } => {
                if crm.vehicles().load(*van).await?.aggregate.status() == VehicleStatus::Maintenance
                {
                    crm.vehicles()
                        .execute(*van, sys, VehicleCommand::ReturnFromMaintenance, &m)
                        .await?;
                }
            }
            Step::Opportunity(o) => self.opportunity(t, o).await?,
            Step::OfferFollowUp {
                opportunity,
                viewed,
                accepted,
            } => {
                let opp = crm.opportunities().load(*opportunity).await?.aggregate;
                if opp.offer() == OfferStatus::Sent
                    && opp.status() == domain::opportunity::OpportunityStatus::Open
                {
                    let actor = self.manager();
                    if *viewed || *accepted {
                        crm.opportunities()
                            .execute(
                                *opportunity,
                                actor,
                                OpportunityCommand::RecordOfferViewed,
                                &m,
                            )
                            .await?;
                    }
                    if *accepted {
                        let opportunities = crm.opportunities();
                        let accept = opportunities.execute(
                            *opportunity,
                            actor,
                            OpportunityCommand::AcceptOffer,
                            &m,
                        );
                        self.later(t + Duration::hours(2), accept).await?;
                    }
                }
            }
            Step::CloseOpportunity { opportunity, lost } => {
                if let Some(reason) = lost {
                    let cmd = OpportunityCommand::Lose {
                        reason: (*reason).into(),
                    };
                    crm.opportunities()
                        .execute(*opportunity, self.manager(), cmd, &m)
                        .await?;
                }
            }
            Step::ExpireOffer { opportunity } => {
                let opp = crm.opportunities().load(*opportunity).await?.aggregate;
                if matches!(opp.offer(), OfferStatus::Configured | OfferStatus::Sent) {
                    crm.opportunities()
                        .execute(*opportunity, sys, OpportunityCommand::ExpireOffer, &m)
                        .await?;
                }
            }
            Step::Conversation {
                id,
                customer,
                hand_off,
            } => {
                let conv = crm.conversations();
                conv.execute(
                    *id,
                    sys,
                    ConversationCommand::Start {
                        conversation_id: *id,
                        customer_id: Some(*customer),
                    },
                    &m,
                )
                .await?;
                let msg = |sender, text: &str| ConversationCommand::AddMessage {
                    sender,
                    text: text.into(),
                };
                conv.execute(
                    *id,
                    sys,
                    msg(
                        Sender::Customer,
                        "Hi, can I book a carpet cleaning next week?",
                    ),
                    &m,
                )
                .await?;
                let intent = ConversationCommand::DetectIntent {
                    intent: Intent::Book,
                    confidence_percent: 87,
                };
                conv.execute(*id, sys, intent, &m).await?;
                let reply = msg(Sender::Bot, "Sure! Which day works best for you?");
                self.later(t + Duration::seconds(5), conv.execute(*id, sys, reply, &m))
                    .await?;
                if *hand_off {
                    let cmd = ConversationCommand::HandOff { to_staff: None };
                    self.later(t + Duration::minutes(2), conv.execute(*id, sys, cmd, &m))
                        .await?;
                }
                self.later(
                    t + Duration::minutes(10),
                    conv.execute(*id, sys, ConversationCommand::Close, &m),
                )
                .await?;
            }
            Step::Campaign(c) => self.campaign(t, c).await?,
            Step::Review {
                job,
                customer,
                review,
                rating,
                comment,
                respond,
            } => {
                let request = ReviewRequestId::for_job(*job);
                if crm.review_requests().load(request).await?.sequence == 0 {
                    return Ok(());
                }
                let cmd = ReviewCommand::Receive {
                    review_id: *review,
                    source: ReviewSource::Portal { job_id: Some(*job) },
                    customer_id: Some(*customer),
                    rating: *rating,
                    comment: comment.map(str::to_string),
                };
                crm.reviews()
                    .execute(*review, DomainActor::Customer { id: *customer }, cmd, &m)
                    .await?;
                crm.review_requests()
                    .execute(
                        request,
                        sys,
                        ReviewRequestCommand::MarkFulfilled { review_id: *review },
                        &m,
                    )
                    .await?;
                if *respond {
                    let text = if *rating >= 4 {
                        "Thank you for the kind words!"
                    } else {
                        "Sorry to hear that; we will call you."
                    };
                    let cmd = ReviewCommand::Respond { text: text.into() };
                    crm.reviews()
                        .execute(*review, self.manager(), cmd, &m)
                        .await?;
                }
            }
            Step::GoogleReview {
                external_id,
                rating,
                comment,
            } => {
                let id = google_review_id(external_id);
                let cmd = ReviewCommand::Receive {
                    review_id: id,
                    source: ReviewSource::Google {
                        external_id: external_id.clone(),
                    },
                    customer_id: None,
                    rating: *rating,
                    comment: comment.map(str::to_string),
                };
                crm.reviews().execute(id, sys, cmd, &m).await?;
            }
            Step::Loyalty {
                customer,
                redeem,
                award,
            } => {
                let id = LoyaltyAccountId::for_customer(*customer);
                let account = crm.loyalty_accounts().load(id).await?.aggregate;
                if account.customer_id().is_none() {
                    return Ok(());
                }
                if *award {
                    let cmd = LoyaltyCommand::Award {
                        points: 50,
                        reason: "Apology for a late arrival".into(),
                    };
                    crm.loyalty_accounts()
                        .execute(id, self.manager(), cmd, &m)
                        .await?;
                }
                if *redeem && account.balance() >= 150 {
                    let cmd = LoyaltyCommand::Redeem {
                        points: 100,
                        reward: "$10 off the next cleaning".into(),
                    };
                    crm.loyalty_accounts()
                        .execute(id, DomainActor::Customer { id: *customer }, cmd, &m)
                        .await?;
                }
            }
            Step::Duplicate {
                duplicate,
                of,
                name,
                phone,
            } => {
                let customers = crm.customers();
                let cmd = CustomerCommand::Create {
                    customer_id: *duplicate,
                    name: name.clone(),
                    email: None,
                    phone: Some(phone.clone()),
                    birthday: None,
                    customer_since: None,
                };
                customers.execute(*duplicate, sys, cmd, &m).await?;
                let grant = CustomerCommand::GrantMarketingConsent {
                    channel: Channel::Sms,
                    source: ConsentSource::Staff,
                };
                customers.execute(*duplicate, sys, grant, &m).await?;
                customers
                    .execute(
                        *duplicate,
                        sys,
                        CustomerCommand::ApplyInboundSms {
                            body: "STOP".into(),
                        },
                        &m,
                    )
                    .await?;
                customers
                    .execute(
                        *duplicate,
                        self.manager(),
                        CustomerCommand::MergeInto { target: *of },
                        &m,
                    )
                    .await?;
                customers
                    .execute(
                        *of,
                        self.manager(),
                        CustomerCommand::AbsorbDuplicate { source: *duplicate },
                        &m,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn opportunity(&self, t: DateTime<Utc>, o: &NewOpportunity) -> Result<(), AppError> {
        let crm = &self.crm;
        let (m, actor) = (meta(t), self.manager());
        let cmd = OpportunityCommand::Create {
            opportunity_id: o.id,
            customer_id: o.customer,
            title: o.title.into(),
            value_cents: o.value_cents,
            owner: o.owner,
        };
        crm.opportunities().execute(o.id, actor, cmd, &m).await?;
        let contacted = OpportunityCommand::MoveStage {
            stage: PipelineStage::Contacted,
        };
        self.later(
            t + Duration::days(1),
            crm.opportunities().execute(o.id, actor, contacted, &m),
        )
        .await?;
        if o.quoted {
            let quoted = OpportunityCommand::MoveStage {
                stage: PipelineStage::Quoted,
            };
            self.later(
                t + Duration::days(2),
                crm.opportunities().execute(o.id, actor, quoted, &m),
            )
            .await?;
        }
        if let Some(percent) = o.offer {
            let configure = OpportunityCommand::ConfigureAutoOffer {
                discount: Discount::Percent(percent),
                expires_at: t + Duration::days(14),
            };
            self.later(
                t + Duration::days(2),
                crm.opportunities().execute(o.id, actor, configure, &m),
            )
            .await?;
            let customer = crm.customers().load(o.customer).await?.aggregate;
            let reachable = [Channel::Sms, Channel::Email]
                .into_iter()
                .map(|c| (c, customer.marketing_eligibility(c)))
                .find(|(_, e)| e.is_eligible());
            if let Some((channel, eligibility)) = reachable {
                let send = OpportunityCommand::SendOffer {
                    channel,
                    eligibility,
                };
                let at_send = t + Duration::days(2) + Duration::hours(1);
                self.later(
                    at_send,
                    crm.opportunities()
                        .execute(o.id, DomainActor::System, send, &m),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn campaign(&self, t: DateTime<Utc>, c: &NewCampaign) -> Result<(), AppError> {
        let crm = &self.crm;
        let (m, promotions) = (meta(t), crm.promotions());
        let draft = PromotionDraft {
            name: c.name.clone(),
            kind: PromotionKind::Campaign,
            audience: AudienceSegment::AllCustomers,
            channel: c.channel,
            template: c.template.into(),
            discount_code: Some(c.code.clone()),
            discount: Some("15%".into()),
            starts_at: t,
            ends_at: t + Duration::days(21),
        };
        promotions
            .execute(
                c.id,
                self.manager(),
                PromotionCommand::Create {
                    promotion_id: c.id,
                    draft,
                },
                &m,
            )
            .await?;
        let send_at = t + Duration::hours(1);
        promotions
            .execute(
                c.id,
                self.manager(),
                PromotionCommand::Schedule { send_at },
                &m,
            )
            .await?;
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        for (i, customer) in c.audience.iter().enumerate() {
            let eligibility = crm
                .customers()
                .load(*customer)
                .await?
                .aggregate
                .marketing_eligibility(c.channel);
            let when = send_at + Duration::seconds(i as i64);
            let cmd = PromotionCommand::RecordDelivery {
                customer_id: *customer,
                eligibility,
            };
            self.later(when, promotions.execute(c.id, DomainActor::System, cmd, &m))
                .await?;
            let (opened, redeemed) = (rng.gen_bool(0.35), rng.gen_bool(0.1));
            if !eligibility.is_eligible() {
                continue;
            }
            if opened || redeemed {
                let cmd = PromotionCommand::RecordOpened {
                    customer_id: *customer,
                };
                self.later(
                    when + Duration::hours(3),
                    promotions.execute(c.id, DomainActor::System, cmd, &m),
                )
                .await?;
            }
            if redeemed {
                let cmd = PromotionCommand::RecordRedeemed {
                    customer_id: *customer,
                    job_id: None,
                };
                self.later(
                    when + Duration::days(2),
                    promotions.execute(c.id, DomainActor::System, cmd, &m),
                )
                .await?;
            }
        }
        Ok(())
    }
}

//! The plan: every action of the two years, drawn up front from one seeded
//! random stream. The order of the draws is the seed's meaning: the same seed
//! gives the same business only while every draw stays where it is, so the
//! aggregates' planners run in one fixed order ([`Plan::generate`]).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use domain::ids::{CustomerId, JobId, OpportunityId, StaffUserId, VehicleId};
use domain::job::ScheduleWindow;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::campaigns::NewCampaign;
use crate::conversations::Chat;
use crate::customers::{Duplicate, NewCustomer};
use crate::jobs::{BookJob, Completion};
use crate::loyalty::LoyaltyTouch;
use crate::opportunities::{NewOpportunity, OfferFollowUp};
use crate::payments::Payment;
use crate::reports::NewReport;
use crate::reviews::{GoogleReview, PortalReview};
use crate::staff::Invite;
use crate::vans::NewVan;
use crate::{Scale, SeedSummary};

/// One planned action at an instant; `lane` groups actions that must run in order.
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    pub(crate) at: DateTime<Utc>,
    pub(crate) lane: usize,
    pub(crate) step: Step,
}

/// What to do; each aggregate's module says what its steps carry and runs them.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    InviteStaff(Invite),
    RegisterVan(NewVan),
    DefineReport(NewReport),
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
    Pay(Payment),
    Complete(Completion),
    Maintenance {
        van: VehicleId,
        reason: &'static str,
    },
    ReturnVan {
        van: VehicleId,
    },
    Opportunity(Box<NewOpportunity>),
    OfferFollowUp(OfferFollowUp),
    CloseOpportunity {
        opportunity: OpportunityId,
        lost: Option<&'static str>,
    },
    ExpireOffer {
        opportunity: OpportunityId,
    },
    Conversation(Chat),
    Campaign(Box<NewCampaign>),
    Review(PortalReview),
    GoogleReview(GoogleReview),
    Loyalty(LoyaltyTouch),
    Duplicate(Duplicate),
}

/// How many of each thing a [`Scale`] makes.
pub(crate) struct Sizes {
    pub(crate) customers: usize,
    pub(crate) jobs: usize,
    pub(crate) technicians: usize,
    pub(crate) vans: usize,
    pub(crate) opportunities: usize,
    pub(crate) campaigns: usize,
    pub(crate) conversations: usize,
    pub(crate) google_reviews: usize,
    pub(crate) duplicates: usize,
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

/// The whole history, in the groups the run replays them by.
pub(crate) struct Plan {
    pub(crate) manager: StaffUserId,
    /// Staff, vans, reports: before anything else, in order.
    pub(crate) setup: Vec<Timed>,
    /// What concerns one customer: their lane runs in order, lanes concurrently.
    pub(crate) customer_steps: Vec<Timed>,
    /// One lane per campaign.
    pub(crate) campaign_steps: Vec<Timed>,
    /// Job completions and vans: one order for all.
    pub(crate) shared_steps: Vec<Timed>,
    /// Reviews, redemptions, duplicates: after the history.
    pub(crate) closing_steps: Vec<Timed>,
    pub(crate) summary: SeedSummary,
}

/// A customer as planned: id, when they joined, whether imported on day one.
pub(crate) type Joined = (CustomerId, DateTime<Utc>, bool);

/// The plan being drawn, and what later planners need of earlier ones.
pub(crate) struct Planner {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) sizes: Sizes,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) tz: chrono_tz::Tz,
    pub(crate) setup: Vec<Timed>,
    pub(crate) customer_steps: Vec<Timed>,
    pub(crate) campaign_steps: Vec<Timed>,
    pub(crate) shared_steps: Vec<Timed>,
    pub(crate) closing_steps: Vec<Timed>,
    pub(crate) summary: SeedSummary,
    /// The three demo logins (admin, manager, staff).
    pub(crate) staff: Vec<StaffUserId>,
    /// The staff login and the technicians: who jobs are assigned to.
    pub(crate) technicians: Vec<StaffUserId>,
    pub(crate) vans: Vec<VehicleId>,
    /// Sorted by the time they joined; a customer's index is their lane.
    pub(crate) customers: Vec<Joined>,
    /// Completed jobs: job, customer, end of the work.
    pub(crate) completed: Vec<(JobId, CustomerId, DateTime<Utc>)>,
}

/// A random id from the plan's stream.
pub(crate) fn uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

/// A random minute in `[from, to)` (`from` when the span is under a minute).
pub(crate) fn between(
    rng: &mut ChaCha8Rng,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> DateTime<Utc> {
    let span = (to - from).num_minutes().max(1);
    from + Duration::minutes(rng.gen_range(0..span))
}

impl Planner {
    /// The instant `m` minutes into the history: setup steps, one a minute.
    pub(crate) fn setup_at(&self, m: i64) -> DateTime<Utc> {
        self.start + Duration::minutes(m)
    }

    /// The lane of a planned customer.
    pub(crate) fn lane_of(&self, c: CustomerId) -> usize {
        self.customers.iter().position(|x| x.0 == c).unwrap_or(0)
    }

    /// `hour` o'clock on `d` in the business's time zone.
    pub(crate) fn local(&self, d: NaiveDate, hour: u32) -> DateTime<Utc> {
        self.tz
            .from_local_datetime(&d.and_hms_opt(hour, 0, 0).unwrap_or_default())
            .earliest()
            .map_or(self.start, |t| t.with_timezone(&Utc))
    }

    /// The closing steps' latest instant: just before the history ends.
    pub(crate) fn last(&self) -> DateTime<Utc> {
        self.end - Duration::minutes(30)
    }
}

impl Plan {
    /// Draws the plan. The planners run in this order because each draws from
    /// the one stream: reordering them would change every later draw.
    pub(crate) fn generate(
        seed: u64,
        scale: Scale,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Plan {
        let mut p = Planner {
            rng: ChaCha8Rng::seed_from_u64(seed),
            sizes: scale.sizes(),
            start,
            end,
            tz,
            setup: Vec::new(),
            customer_steps: Vec::new(),
            campaign_steps: Vec::new(),
            shared_steps: Vec::new(),
            closing_steps: Vec::new(),
            summary: SeedSummary::default(),
            staff: Vec::new(),
            technicians: Vec::new(),
            vans: Vec::new(),
            customers: Vec::new(),
            completed: Vec::new(),
        };
        crate::staff::plan(&mut p);
        crate::vans::plan(&mut p);
        crate::reports::plan(&mut p);
        crate::customers::plan(&mut p);
        let won = crate::opportunities::plan(&mut p);
        crate::jobs::plan(&mut p, won);
        crate::conversations::plan(&mut p);
        crate::campaigns::plan(&mut p);
        // After the history: reviews, redemptions, Google reviews, duplicates.
        crate::reviews::plan_portal(&mut p);
        crate::loyalty::plan(&mut p);
        crate::reviews::plan_google(&mut p);
        crate::customers::plan_duplicates(&mut p);
        p.finish()
    }
}

impl Planner {
    fn finish(mut self) -> Plan {
        for steps in [
            &mut self.customer_steps,
            &mut self.campaign_steps,
            &mut self.shared_steps,
            &mut self.closing_steps,
        ] {
            // Stable: equal instants keep their planning order.
            steps.sort_by_key(|s| s.at);
        }
        Plan {
            manager: self.staff[1],
            setup: self.setup,
            customer_steps: self.customer_steps,
            campaign_steps: self.campaign_steps,
            shared_steps: self.shared_steps,
            closing_steps: self.closing_steps,
            summary: self.summary,
        }
    }
}

//! Carrying the plan out: week by week, each step through the application's
//! commands with the clock at its instant, the policies catching up as of
//! each week's end.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use commands::app::{AppError, Crm};
use commands::policies::PolicyRunner;
use commands::{Actor, EventMetadata};
use domain::ids::StaffUserId;
use domain::ports::FixedClock;
use domain::{Actor as DomainActor, Role};
use futures::{StreamExt, TryStreamExt};

use crate::clock::at;
use crate::plan::{Plan, Step, Timed};
use crate::{campaigns, conversations, customers, jobs, loyalty, opportunities, payments};
use crate::{portal, reports, reviews, staff, vans};

/// Commands run at once where order does not matter.
const CONCURRENCY: usize = 16;

/// What running a step needs.
pub(crate) struct Ctx {
    pub(crate) crm: Crm,
    end: DateTime<Utc>,
    /// The demo manager, who books, assigns and responds.
    manager: StaffUserId,
}

/// The seed's metadata for a command decided at `t`.
pub(crate) fn meta(t: DateTime<Utc>) -> EventMetadata {
    EventMetadata::new(Actor::System("demo-seed".into()), t)
}

impl Ctx {
    pub(crate) fn new(crm: Crm, end: DateTime<Utc>, manager: StaffUserId) -> Self {
        Ctx { crm, end, manager }
    }

    pub(crate) fn manager(&self) -> DomainActor {
        DomainActor::Staff {
            id: self.manager,
            role: Role::Manager,
        }
    }

    /// Runs `f` with the clock at `t` (not past the end of the history).
    pub(crate) async fn later<F: Future<Output = Result<T, AppError>>, T>(
        &self,
        t: DateTime<Utc>,
        f: F,
    ) -> Result<T, AppError> {
        at(t.min(self.end), f).await
    }

    /// The setup in order; then week by week: customers' own commands
    /// concurrently, then the shared streams in one order, then the policies as
    /// of the week's end; last the closing steps. `base` is the policies' clock.
    pub(crate) async fn play(
        &self,
        plan: &Plan,
        start: DateTime<Utc>,
        base: &FixedClock,
    ) -> Result<(), AppError> {
        let policies = PolicyRunner::new(self.crm.clone());
        for step in &plan.setup {
            self.run(step).await?;
        }
        let mut week_start = start;
        while week_start <= self.end + Duration::days(15) {
            let week_end = week_start + Duration::days(7);
            let in_week = |s: &&Timed| s.at >= week_start && s.at < week_end;
            self.run_lanes(by_lane(plan.customer_steps.iter().filter(in_week)))
                .await?;
            self.run_lanes(by_lane(plan.campaign_steps.iter().filter(in_week)))
                .await?;
            for s in plan.shared_steps.iter().filter(in_week) {
                self.run(s).await?;
            }
            base.set(week_end.min(self.end));
            policies.run_until_caught_up().await.map_err(|e| e.error)?;
            week_start = week_end;
        }
        base.set(self.end);
        self.run_lanes(by_lane(plan.closing_steps.iter())).await?;
        policies.run_until_caught_up().await.map_err(|e| e.error)?;
        Ok(())
    }

    /// Each lane's steps in order, up to [`CONCURRENCY`] lanes at once.
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

    async fn step(&self, t: DateTime<Utc>, step: &Step) -> Result<(), AppError> {
        match step {
            Step::InviteStaff(s) => staff::invite(self, t, s).await,
            Step::RegisterVan(v) => vans::register(self, t, v).await,
            Step::DefineReport(r) => reports::define(self, t, r).await,
            Step::CreateCustomer(c) => customers::create(self, t, c).await,
            Step::Refer { referee, referrer } => {
                customers::refer(self, t, *referee, *referrer).await
            }
            Step::RegisterPortal { customer } => portal::register(self, t, *customer).await,
            Step::PortalVisit { customer } => portal::visit(self, t, *customer).await,
            Step::TextStop { customer } => customers::text_stop(self, t, *customer).await,
            Step::Book(b) => jobs::book(self, t, b).await,
            Step::Reschedule { job, window } => jobs::reschedule(self, t, *job, *window).await,
            Step::Cancel { job, reason } => jobs::cancel(self, t, *job, reason).await,
            Step::Pay(p) => payments::pay(self, t, p).await,
            Step::Complete(c) => jobs::complete(self, t, c).await,
            Step::Maintenance { van, reason } => vans::maintenance(self, t, *van, reason).await,
            Step::ReturnVan { van } => vans::return_van(self, t, *van).await,
            Step::Opportunity(o) => opportunities::create(self, t, o).await,
            Step::OfferFollowUp(f) => opportunities::follow_up(self, t, f).await,
            Step::CloseOpportunity { opportunity, lost } => {
                opportunities::close(self, t, *opportunity, *lost).await
            }
            Step::ExpireOffer { opportunity } => opportunities::expire(self, t, *opportunity).await,
            Step::Conversation(c) => conversations::converse(self, t, c).await,
            Step::Campaign(c) => campaigns::run(self, t, c).await,
            Step::Review(r) => reviews::receive(self, t, r).await,
            Step::GoogleReview(g) => reviews::receive_google(self, t, g).await,
            Step::Loyalty(l) => loyalty::touch(self, t, l).await,
            Step::Duplicate(d) => customers::duplicate(self, t, d).await,
        }
    }
}

/// Steps grouped by lane, lanes in their number's order, each in plan order.
fn by_lane<'a>(steps: impl Iterator<Item = &'a Timed>) -> Vec<Vec<&'a Timed>> {
    let mut lanes: BTreeMap<usize, Vec<&Timed>> = BTreeMap::new();
    for s in steps {
        lanes.entry(s.lane).or_default().push(s);
    }
    lanes.into_values().collect()
}

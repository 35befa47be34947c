//! Ports the domain needs from the outside world, and the services handed to cqrs-es.
//!
//! Decisions never read the clock themselves: `handle` asks the [`Clock`] once and passes the
//! instant inside a [`CommandContext`], so `decide` stays a pure function.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{CustomerId, StaffUserId};
use crate::loyalty::LoyaltyRules;

/// The current time.
pub trait Clock: Send + Sync {
    /// Now, in UTC. Infallible: a clock that cannot tell the time is a startup failure.
    fn now(&self) -> DateTime<Utc>;
}

/// New unique ids.
pub trait IdGenerator: Send + Sync {
    /// A fresh UUID, never returned before by this generator.
    fn new_uuid(&self) -> Uuid;
}

/// The system clock (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that returns a set instant until moved (tests, replays, demos).
#[derive(Debug)]
pub struct FixedClock {
    at: RwLock<DateTime<Utc>>,
}

impl FixedClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at: RwLock::new(at),
        }
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        // A poisoned lock only means a test panicked mid-write; the value is still usable.
        let mut guard = self.at.write().unwrap_or_else(|e| e.into_inner());
        *guard = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut guard = self.at.write().unwrap_or_else(|e| e.into_inner());
        *guard += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.at.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Random (v4) UUIDs (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn new_uuid(&self) -> Uuid {
        Uuid::new_v4()
    }
}

/// UUIDs 1, 2, 3... (as `u128`), for tests that need predictable ids.
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: AtomicU64,
}

impl SequentialIds {
    /// Starts at `Uuid::from_u128(first)`.
    pub fn starting_at(first: u64) -> Self {
        Self {
            next: AtomicU64::new(first),
        }
    }
}

impl IdGenerator for SequentialIds {
    fn new_uuid(&self) -> Uuid {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Uuid::from_u128(u128::from(n).max(1))
    }
}

/// Staff roles, most powerful first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including staff management.
    Admin,
    /// Reports, promotions, pipeline management.
    Manager,
    /// Day-to-day work: customers, jobs.
    Staff,
}

impl Role {
    /// Whether this role is at least a manager.
    pub fn is_manager_or_above(self) -> bool {
        matches!(self, Role::Admin | Role::Manager)
    }
}

/// Who issued a command. Recorded in events where the business needs it (e.g. who awarded
/// points); the full audit trail lives in event metadata, outside the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in staff user.
    Staff {
        /// The user.
        id: StaffUserId,
        /// Their role at the time of the command.
        role: Role,
    },
    /// A customer through the portal.
    Customer {
        /// The customer.
        id: CustomerId,
    },
    /// The system itself: policies, scheduled jobs, webhooks.
    System,
}

impl Actor {
    /// The staff user behind the command, if any.
    pub fn staff_id(&self) -> Option<StaffUserId> {
        match self {
            Actor::Staff { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Everything a decision may know besides state and command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommandContext {
    /// The instant of the decision (from the [`Clock`]).
    pub now: DateTime<Utc>,
    /// The business's time zone: "today", birthdays and calendar years are local.
    pub tz: Tz,
    /// Who asked.
    pub actor: Actor,
}

impl CommandContext {
    /// Today's date in the business's time zone.
    pub fn today(&self) -> NaiveDate {
        self.now.with_timezone(&self.tz).date_naive()
    }
}

/// The cqrs-es command type of every aggregate: the aggregate's own command plus its actor.
///
/// cqrs-es gives `handle` only the command and the services, so the actor travels here.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandEnvelope<C> {
    /// Who issues the command.
    pub actor: Actor,
    /// The command.
    pub command: C,
}

impl<C> CommandEnvelope<C> {
    /// A command issued by `actor`.
    pub fn new(actor: Actor, command: C) -> Self {
        Self { actor, command }
    }

    /// A command issued by the system (policies, schedules, webhooks).
    pub fn system(command: C) -> Self {
        Self::new(Actor::System, command)
    }
}

/// The cqrs-es `Services` of every aggregate.
#[derive(Clone)]
pub struct DomainServices {
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// Source of fresh ids (for the commands layer; decisions get ids in commands).
    pub ids: Arc<dyn IdGenerator>,
    /// The business's time zone (`BUSINESS_TIMEZONE`).
    pub tz: Tz,
    /// Loyalty programme configuration.
    pub loyalty: LoyaltyRules,
}

impl fmt::Debug for DomainServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainServices")
            .field("now", &self.clock.now())
            .field("tz", &self.tz)
            .field("loyalty", &self.loyalty)
            .finish_non_exhaustive()
    }
}

impl DomainServices {
    /// Production services: system clock, random ids.
    pub fn new(tz: Tz, loyalty: LoyaltyRules) -> Self {
        Self {
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            tz,
            loyalty,
        }
    }

    /// Services with a clock stopped at `now` and sequential ids, default loyalty rules.
    pub fn fixed(now: DateTime<Utc>, tz: Tz) -> Self {
        Self {
            clock: Arc::new(FixedClock::new(now)),
            ids: Arc::new(SequentialIds::starting_at(1)),
            tz,
            loyalty: LoyaltyRules::default(),
        }
    }

    /// The context for one command by `actor`, reading the clock once.
    pub fn context(&self, actor: Actor) -> CommandContext {
        CommandContext {
            now: self.clock.now(),
            tz: self.tz,
            actor,
        }
    }
}

/// Applies decided events through the cqrs-es sink, in order.
pub(crate) async fn write_all<A: cqrs_es::Aggregate>(
    aggregate: &mut A,
    sink: &cqrs_es::event_sink::EventSink<A>,
    events: Vec<A::Event>,
) {
    for event in events {
        sink.write(event, aggregate).await;
    }
}

/// Implements `cqrs_es::Aggregate` by delegating to `decide` and `apply_event`.
macro_rules! cqrs_aggregate {
    ($agg:ty, $type:expr, $cmd:ty, $event:ty, $error:ty) => {
        impl cqrs_es::Aggregate for $agg {
            const TYPE: &'static str = $type;
            type Command = $crate::ports::CommandEnvelope<$cmd>;
            type Event = $event;
            type Error = $error;
            type Services = $crate::ports::DomainServices;

            async fn handle(
                &mut self,
                command: Self::Command,
                services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                let ctx = services.context(command.actor);
                let events = self.decide(command.command, &ctx)?;
                $crate::ports::write_all(self, sink, events).await;
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.apply_event(event);
            }
        }
    };
}
pub(crate) use cqrs_aggregate;

//! Helpers for given/when/then tests, here and in other crates: fixed services and a runner
//! over `cqrs_es::test::TestFramework` (so tests go through the real `handle`).

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

use crate::ids::{CustomerId, StaffUserId};
use crate::ports::{Actor, CommandEnvelope, DomainServices, Role};

/// The business time zone used by tests.
pub const TEST_TZ: Tz = chrono_tz::America::Chicago;

/// The instant tests run at: 2025-06-15 15:00 UTC (10:00 in Chicago).
pub fn test_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 15, 15, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Services fixed at [`test_now`] in [`TEST_TZ`] with default loyalty rules.
pub fn test_services() -> DomainServices {
    DomainServices::fixed(test_now(), TEST_TZ)
}

/// Services fixed at `now` in [`TEST_TZ`].
pub fn services_at(now: DateTime<Utc>) -> DomainServices {
    DomainServices::fixed(now, TEST_TZ)
}

/// A staff user (role staff), id 1001.
pub fn staff() -> Actor {
    Actor::Staff {
        id: StaffUserId(Uuid::from_u128(1001)),
        role: Role::Staff,
    }
}

/// A manager, id 1002.
pub fn manager() -> Actor {
    Actor::Staff {
        id: StaffUserId(Uuid::from_u128(1002)),
        role: Role::Manager,
    }
}

/// The customer with id `n` acting through the portal.
pub fn customer_actor(n: u128) -> Actor {
    Actor::Customer {
        id: CustomerId(Uuid::from_u128(n)),
    }
}

/// Given `given` events, when `actor` issues `command` through cqrs-es `handle`, the result.
pub fn run<A, C>(
    services: DomainServices,
    given: Vec<A::Event>,
    actor: Actor,
    command: C,
) -> Result<Vec<A::Event>, A::Error>
where
    A: Aggregate<Services = DomainServices, Command = CommandEnvelope<C>>,
{
    TestFramework::<A>::with(services)
        .given(given)
        .when(CommandEnvelope::new(actor, command))
        .inspect_result()
}

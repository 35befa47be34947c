//! Customers: a third imported on day one, the rest joining over the two
//! years; some referred by an earlier customer, some texting STOP, and a few
//! duplicates merged at the end.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use commands::app::AppError;
use domain::consent::{Channel, ConsentSource};
use domain::customer::CustomerCommand;
use domain::ids::CustomerId;
use domain::values::AddressInput;
use domain::Actor as DomainActor;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::names::{CITIES, FIRST, LAST, STREETS, TAGS};
use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A customer to create, with their address, consents and tag.
#[derive(Debug, Clone)]
pub(crate) struct NewCustomer {
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

/// A second record of an existing customer, found and merged at the end.
#[derive(Debug, Clone)]
pub(crate) struct Duplicate {
    duplicate: CustomerId,
    of: CustomerId,
    name: String,
    phone: String,
}

/// The customers, sorted by the time they joined (their index is their lane),
/// with what happens to each: a referral, a portal account, a STOP.
pub(crate) fn plan(p: &mut Planner) {
    let (start, end) = (p.start, p.end);
    let rng = &mut p.rng;
    let mut joins: Vec<(DateTime<Utc>, bool)> = (0..p.sizes.customers)
        .map(|i| {
            if i * 3 < p.sizes.customers {
                (
                    start + Duration::hours(2) + Duration::minutes(i as i64),
                    true,
                )
            } else {
                (
                    between(rng, start + Duration::days(1), end - Duration::days(2)),
                    false,
                )
            }
        })
        .collect();
    joins.sort();
    for (lane, (joined, imported)) in joins.into_iter().enumerate() {
        let new = draw(p, lane, imported);
        let (id, sms) = (new.id, new.sms);
        p.customer_steps.push(Timed {
            at: joined,
            lane,
            step: Step::CreateCustomer(Box::new(new)),
        });
        if !imported && p.rng.gen_bool(0.15) {
            plan_referral(p, lane, id, joined);
        }
        crate::portal::plan(p, lane, id, joined);
        if sms && p.rng.gen_bool(0.06) {
            let t = between(&mut p.rng, joined + Duration::days(1), p.end);
            p.customer_steps.push(Timed {
                at: t,
                lane,
                step: Step::TextStop { customer: id },
            });
        }
        p.customers.push((id, joined, imported));
    }
    p.summary.customers = p.customers.len() + p.sizes.duplicates;
}

/// Who the customer is: every draw in the order the seed has always made them.
fn draw(p: &mut Planner, lane: usize, imported: bool) -> NewCustomer {
    let (start, tz, rng) = (p.start, p.tz, &mut p.rng);
    let id = CustomerId(uuid(rng));
    let first = *FIRST.choose(rng).unwrap_or(&"Alex");
    let last = *LAST.choose(rng).unwrap_or(&"Doe");
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
    NewCustomer {
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
    }
}

/// Referred by an earlier customer (one who joined at least a week before).
fn plan_referral(p: &mut Planner, lane: usize, id: CustomerId, joined: DateTime<Utc>) {
    let earlier: Vec<_> = p
        .customers
        .iter()
        .filter(|c| c.1 < joined - Duration::days(8))
        .collect();
    if let Some(referrer) = earlier.choose(&mut p.rng) {
        let step = Step::Refer {
            referee: id,
            referrer: referrer.0,
        };
        p.customer_steps.push(Timed {
            at: joined + Duration::minutes(5),
            lane,
            step,
        });
        p.summary.referrals += 1;
    }
}

/// A few customers twice: a second record (SMS consent, then STOP), merged
/// into the first at the very end.
pub(crate) fn plan_duplicates(p: &mut Planner) {
    let last = p.last();
    for i in 0..p.sizes.duplicates {
        let of = p.customers[i * 2 % p.customers.len()].0;
        let name = format!("{} {}", FIRST[i % FIRST.len()], LAST[(i + 3) % LAST.len()]);
        let step = Step::Duplicate(Duplicate {
            duplicate: CustomerId(uuid(&mut p.rng)),
            of,
            name,
            phone: format!("+1737555{:04}", p.rng.gen_range(0..10_000)),
        });
        p.closing_steps.push(Timed {
            at: last,
            lane: i * 2 % p.customers.len(),
            step,
        });
    }
}

/// Creates the customer with an address, their consents and tag, and a referral code.
pub(crate) async fn create(ctx: &Ctx, t: DateTime<Utc>, c: &NewCustomer) -> Result<(), AppError> {
    let (crm, sys, m) = (&ctx.crm, DomainActor::System, meta(t));
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
    Ok(())
}

/// The referee enters the referrer's code.
pub(crate) async fn refer(
    ctx: &Ctx,
    t: DateTime<Utc>,
    referee: CustomerId,
    referrer: CustomerId,
) -> Result<(), AppError> {
    let crm = &ctx.crm;
    let owner = crm.customers().load(referrer).await?.aggregate;
    if let Some(code) = owner.referral_code() {
        let actor = DomainActor::Customer { id: referee };
        crm.record_referral(referee, code.as_str(), actor, &meta(t))
            .await?;
    }
    Ok(())
}

/// The customer answers a text with STOP.
pub(crate) async fn text_stop(
    ctx: &Ctx,
    t: DateTime<Utc>,
    customer: CustomerId,
) -> Result<(), AppError> {
    let stop = CustomerCommand::ApplyInboundSms {
        body: "STOP".into(),
    };
    ctx.crm
        .customers()
        .execute(customer, DomainActor::System, stop, &meta(t))
        .await?;
    Ok(())
}

/// Creates the duplicate (SMS consent, then STOP) and merges it into the original.
pub(crate) async fn duplicate(ctx: &Ctx, t: DateTime<Utc>, d: &Duplicate) -> Result<(), AppError> {
    let (customers, sys, m) = (ctx.crm.customers(), DomainActor::System, meta(t));
    let cmd = CustomerCommand::Create {
        customer_id: d.duplicate,
        name: d.name.clone(),
        email: None,
        phone: Some(d.phone.clone()),
        birthday: None,
        customer_since: None,
    };
    customers.execute(d.duplicate, sys, cmd, &m).await?;
    let grant = CustomerCommand::GrantMarketingConsent {
        channel: Channel::Sms,
        source: ConsentSource::Staff,
    };
    customers.execute(d.duplicate, sys, grant, &m).await?;
    let stop = CustomerCommand::ApplyInboundSms {
        body: "STOP".into(),
    };
    customers.execute(d.duplicate, sys, stop, &m).await?;
    let merge = CustomerCommand::MergeInto { target: d.of };
    customers
        .execute(d.duplicate, ctx.manager(), merge, &m)
        .await?;
    let absorb = CustomerCommand::AbsorbDuplicate {
        source: d.duplicate,
    };
    customers.execute(d.of, ctx.manager(), absorb, &m).await?;
    Ok(())
}

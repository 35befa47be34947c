//! Vans: registered at the start, each with one workshop visit; dispatched to
//! the last month's jobs ([`crate::jobs`]).

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::ids::VehicleId;
use domain::vehicle::{VehicleCommand, VehicleStatus};
use domain::Actor as DomainActor;
use rand::Rng;

use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A van to register.
#[derive(Debug, Clone)]
pub(crate) struct NewVan {
    id: VehicleId,
    name: String,
    plate: String,
}

/// The vans (from minute 30), and per van a workshop visit at a random time.
pub(crate) fn plan(p: &mut Planner) {
    for i in 0..p.sizes.vans {
        let id = VehicleId(uuid(&mut p.rng));
        p.vans.push(id);
        let plate = format!("DFC-{:04}", p.rng.gen_range(1000..9999));
        p.setup.push(Timed {
            at: p.setup_at(30 + i as i64),
            lane: 0,
            step: Step::RegisterVan(NewVan {
                id,
                name: format!("Van {}", i + 1),
                plate,
            }),
        });
        // One workshop visit per van, at a random time.
        let t = between(
            &mut p.rng,
            p.start + Duration::days(30),
            p.end - Duration::days(10),
        );
        p.shared_steps.push(Timed {
            at: t,
            lane: 0,
            step: Step::Maintenance {
                van: id,
                reason: "scheduled service",
            },
        });
        p.shared_steps.push(Timed {
            at: t + Duration::days(2),
            lane: 0,
            step: Step::ReturnVan { van: id },
        });
    }
    p.summary.vehicles = p.vans.len();
}

pub(crate) async fn register(ctx: &Ctx, t: DateTime<Utc>, v: &NewVan) -> Result<(), AppError> {
    let cmd = VehicleCommand::Register {
        vehicle_id: v.id,
        name: v.name.clone(),
        plate: Some(v.plate.clone()),
    };
    ctx.crm
        .vehicles()
        .execute(v.id, DomainActor::System, cmd, &meta(t))
        .await?;
    Ok(())
}

/// Sends an available van to the workshop (one out on a job stays out).
pub(crate) async fn maintenance(
    ctx: &Ctx,
    t: DateTime<Utc>,
    van: VehicleId,
    reason: &str,
) -> Result<(), AppError> {
    let vehicles = ctx.crm.vehicles();
    if vehicles.load(van).await?.aggregate.status() == VehicleStatus::Available {
        let cmd = VehicleCommand::SendToMaintenance {
            reason: reason.into(),
        };
        vehicles
            .execute(van, DomainActor::System, cmd, &meta(t))
            .await?;
    }
    Ok(())
}

/// Brings a van back from the workshop, if it went.
pub(crate) async fn return_van(
    ctx: &Ctx,
    t: DateTime<Utc>,
    van: VehicleId,
) -> Result<(), AppError> {
    let vehicles = ctx.crm.vehicles();
    if vehicles.load(van).await?.aggregate.status() == VehicleStatus::Maintenance {
        vehicles
            .execute(
                van,
                DomainActor::System,
                VehicleCommand::ReturnFromMaintenance,
                &meta(t),
            )
            .await?;
    }
    Ok(())
}

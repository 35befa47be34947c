//! The demo business: seeded into an empty embedded store so that the first
//! `cargo run -p api` shows something real, with working demo logins.

use chrono::Utc;
use commands::EventMetadata;
use demo_data::{Scale, DEMO_LOGINS};
use domain::staff::StaffUserCommand;
use projections::crm::accounts;

use crate::state::AppState;

/// The demo staff users' password.
pub const DEMO_PASSWORD: &str = "dirtfree-demo";

/// Seeds the demo when configured to and the store is empty. Never next to a
/// configured first admin (`ADMIN_EMAIL`): the demo's admin has a published
/// password, so a store with a real admin must not have it too — neither seeded
/// now nor left from an earlier run ([`refuse_a_demo_store`]).
///
/// # Errors
/// When seeding fails, `DEMO_SEED=on` is asked together with `ADMIN_EMAIL`, or
/// `ADMIN_EMAIL` (or `APP_ENV=production`) is set on a store that holds the demo.
pub async fn maybe_seed(state: &AppState) -> anyhow::Result<()> {
    let admin_configured = state.config.admin_email.is_some();
    let wanted = match state.config.demo_seed.as_str() {
        "on" if admin_configured => anyhow::bail!(
            "DEMO_SEED=on and ADMIN_EMAIL are exclusive: the demo's admin has a published \
             password (unset ADMIN_EMAIL for a demo store, or DEMO_SEED for a real one)"
        ),
        "on" => true,
        "off" => false,
        _ => state.config.database_url.is_none() && !admin_configured,
    };
    if admin_configured || state.config.is_production() {
        refuse_a_demo_store(state).await?;
    }
    if !wanted || state.log.count().await? > 0 {
        return Ok(());
    }
    tracing::info!("empty store: seeding the demo business (DEMO_SEED=off to skip)");
    let scale = if state.config.demo_scale == "full" {
        Scale::Full
    } else {
        Scale::Small
    };
    let summary = demo_data::seed_until(&state.crm, 42, scale, Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("demo seed: {e}"))?;
    commands::policies::PolicyRunner::new(state.crm.clone())
        .run_until_caught_up()
        .await
        .map_err(|e| anyhow::anyhow!("demo policies: {e:?}"))?;
    state.projections.catch_up("accounts").await?;
    // The seed stores placeholder hashes; give the demo logins real ones.
    let hash = worker::accounts::passwords::hash(DEMO_PASSWORD)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
    for (email, _, _) in DEMO_LOGINS {
        let found = accounts::staff_user_by_email(state.projections.db(), email).await?;
        let Some(row) = found else {
            continue;
        };
        let id = domain::ids::StaffUserId::parse(&row.staff_user_id)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let meta = EventMetadata::new(commands::Actor::System("demo".into()), Utc::now());
        state
            .crm
            .staff_users()
            .execute(
                id,
                domain::Actor::System,
                StaffUserCommand::SetPasswordHash {
                    password_hash: hash.clone(),
                },
                &meta,
            )
            .await
            .map_err(|e| anyhow::anyhow!("demo password: {e}"))?;
    }
    state.projections.catch_up_all().await?;
    tracing::info!(
        customers = summary.customers,
        jobs = summary.jobs,
        events = summary.events,
        "demo business ready"
    );
    for (email, _, role) in DEMO_LOGINS {
        tracing::info!(email, password = DEMO_PASSWORD, role = ?role, "demo login");
        eprintln!("demo login: {email} / {DEMO_PASSWORD} ({role:?})");
    }
    Ok(())
}

/// The demo's admin: the one login whose published password gives the whole store away.
fn demo_admin() -> &'static str {
    DEMO_LOGINS
        .iter()
        .find(|(_, _, role)| matches!(role, domain::ports::Role::Admin))
        .map_or("admin@dirtfree.example", |(email, _, _)| email)
}

/// Refuses to serve, with `ADMIN_EMAIL` set, a store the demo was seeded into (by an earlier
/// run without it): the first admin is created only on a store without staff, so the demo's
/// admin, with its published password, would stay the admin and `ADMIN_EMAIL` would never
/// exist. Refusing rather than deactivating it: the demo's other logins share the password,
/// and its invented customers and jobs do not belong in a real business's store either.
/// With `APP_ENV=production` such a store is refused whether `ADMIN_EMAIL` is set or not.
///
/// # Errors
/// One line naming the ways out, when the store holds the demo's admin.
pub async fn refuse_a_demo_store(state: &AppState) -> anyhow::Result<()> {
    state.projections.catch_up("accounts").await?;
    let found = accounts::staff_user_by_email(state.projections.db(), demo_admin()).await?;
    if found.is_none() {
        return Ok(());
    }
    if state.config.is_production() {
        anyhow::bail!(
            "APP_ENV=production, but the store DATABASE_URL names holds the demo business, whose \
             admin {} has a published password: point DATABASE_URL at an empty database (or \
             your real store); to keep the demo, unset APP_ENV",
            demo_admin()
        )
    }
    let store = if state.config.database_url.is_none() {
        "move ./data/ away for a new embedded store, or set DATABASE_URL to an empty database"
    } else {
        "point DATABASE_URL at an empty database"
    };
    anyhow::bail!(
        "ADMIN_EMAIL is set, but this store holds the demo business, whose admin {} has a \
         published password: to create your admin, start on an empty store ({store}); to keep \
         the demo, unset ADMIN_EMAIL",
        demo_admin()
    )
}

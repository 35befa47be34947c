//! The staff users and portal accounts read model.

use domain::portal::PortalAccountEvent;
use domain::staff::StaffUserEvent;

use super::prelude::*;

/// Staff users and portal accounts: who can log in, with which role.
/// Password hashes are argon2id strings (never plain text).
#[derive(Debug)]
pub struct Accounts;

const ACCOUNTS: &[&str] = &["staff_users", "portal_accounts"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[
    domain::staff::AGGREGATE_TYPE,
    domain::portal::AGGREGATE_TYPE,
];

impl Projection for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        ACCOUNTS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {staff_users} (
                staff_user_id TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                active BIGINT NOT NULL DEFAULT 1, password_hash TEXT, invited_at TEXT NOT NULL, last_login_at TEXT,
                reset_token_hash TEXT, reset_expires_at TEXT)",
            "CREATE INDEX {staff_users}_email_{gen} ON {staff_users} (email)",
            "CREATE TABLE {portal_accounts} (
                customer_id TEXT PRIMARY KEY, portal_account_id TEXT NOT NULL, password_hash TEXT NOT NULL,
                registered_at TEXT NOT NULL, last_login_at TEXT, logins BIGINT NOT NULL DEFAULT 0)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(event) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let id = e.aggregate_id.clone();
            match event {
                Event::StaffUser(event) => staff_user(tx, ctx, id, event).await?,
                Event::PortalAccount(event) => portal_account(tx, ctx, id, event).await?,
                _ => {}
            }
            Ok(())
        })
    }
}

/// A staff user's own events.
async fn staff_user(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &StaffUserEvent,
) -> Result<(), ProjectionError> {
    let t = ACCOUNTS;
    match event {
        StaffUserEvent::StaffUserInvited {
            email,
            name,
            role,
            at,
            ..
        } => {
            exec(tx, ctx, t, "INSERT INTO {staff_users} (staff_user_id, email, name, role, invited_at) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (staff_user_id) DO NOTHING",
                &[id.into(), email.to_string().into(), name.to_string().into(), text(role).into(), rfc3339(*at).into()]).await?;
        }
        StaffUserEvent::StaffPasswordSet { password_hash, .. }
        | StaffUserEvent::PasswordResetCompleted { password_hash, .. } => {
            exec(tx, ctx, t, "UPDATE {staff_users} SET password_hash = $2, reset_token_hash = NULL, reset_expires_at = NULL WHERE staff_user_id = $1",
                &[id.into(), text(password_hash).into()]).await?;
        }
        StaffUserEvent::PasswordResetRequested {
            token_hash,
            expires_at,
            ..
        } => {
            // `reset_expires_at` holds the timestamp as the event stores it (not re-formatted).
            exec(tx, ctx, t, "UPDATE {staff_users} SET reset_token_hash = $2, reset_expires_at = $3 WHERE staff_user_id = $1",
                &[id.into(), text(token_hash).into(), text(expires_at).into()]).await?;
        }
        StaffUserEvent::StaffRoleChanged { to, .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {staff_users} SET role = $2 WHERE staff_user_id = $1",
                &[id.into(), text(to).into()],
            )
            .await?;
        }
        StaffUserEvent::StaffUserDeactivated { .. } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {staff_users} SET active = 0 WHERE staff_user_id = $1",
                &[id.into()],
            )
            .await?;
        }
        StaffUserEvent::StaffLoginRecorded { at } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {staff_users} SET last_login_at = $2 WHERE staff_user_id = $1",
                &[id.into(), rfc3339(*at).into()],
            )
            .await?;
        }
        StaffUserEvent::StaffDataExported { .. } => {}
    }
    Ok(())
}

/// A portal account's own events (the table is keyed by customer).
async fn portal_account(
    tx: &mut ReadTx,
    ctx: ApplyContext,
    id: String,
    event: &PortalAccountEvent,
) -> Result<(), ProjectionError> {
    let t = ACCOUNTS;
    match event {
        PortalAccountEvent::PortalAccountRegistered {
            customer_id,
            password_hash,
            at,
            ..
        } => {
            exec(tx, ctx, t, "INSERT INTO {portal_accounts} (customer_id, portal_account_id, password_hash, registered_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (customer_id) DO NOTHING",
                &[customer_id.to_string().into(), id.into(), text(password_hash).into(), rfc3339(*at).into()]).await?;
        }
        PortalAccountEvent::PortalPasswordChanged {
            customer_id,
            password_hash,
            ..
        } => {
            exec(
                tx,
                ctx,
                t,
                "UPDATE {portal_accounts} SET password_hash = $2 WHERE customer_id = $1",
                &[customer_id.to_string().into(), text(password_hash).into()],
            )
            .await?;
        }
        PortalAccountEvent::PortalLoginRecorded { customer_id, at } => {
            exec(tx, ctx, t, "UPDATE {portal_accounts} SET last_login_at = $2, logins = logins + 1 WHERE customer_id = $1",
                &[customer_id.to_string().into(), rfc3339(*at).into()]).await?;
        }
        PortalAccountEvent::PortalActivityRecorded { .. } => {}
    }
    Ok(())
}

// ---------------------------------------------------------------- queries

/// A staff user who can sign in, as dispatch sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveStaffRow {
    /// Id.
    pub staff_user_id: String,
    /// Name.
    pub name: String,
    /// Role (`admin`, `manager`, `staff`).
    pub role: String,
}

/// How many staff users can sign in.
///
/// # Errors
/// When the read model cannot be read.
pub async fn active_staff_count(db: &crate::db::ReadDb) -> Result<i64, crate::db::DbError> {
    crate::row::count(db, "rm_staff_users WHERE active = 1", &[]).await
}

/// The staff users who can sign in, by name, `limit` of them from `offset`.
///
/// # Errors
/// When the read model cannot be read.
pub async fn active_staff(
    db: &crate::db::ReadDb,
    offset: i64,
    limit: i64,
) -> Result<Vec<ActiveStaffRow>, crate::db::DbError> {
    db.query(
        "SELECT staff_user_id, name, role FROM rm_staff_users WHERE active = 1
          ORDER BY name, staff_user_id LIMIT $1 OFFSET $2",
        &[limit.into(), offset.into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ActiveStaffRow {
            staff_user_id: crate::row::text(r, "staff_user_id")?,
            name: crate::row::text(r, "name")?,
            role: crate::row::text(r, "role")?,
        })
    })
    .collect()
}

// ---------------------------------------------------------------- queries

/// One staff user as the read model holds them (not their password hash or reset token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffUserRow {
    /// Their id.
    pub staff_user_id: String,
    /// Email (lower-cased): their login.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: domain::ports::Role,
    /// Whether they can sign in.
    pub active: bool,
}

impl crate::row::FromRow for StaffUserRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, named, text};
        Ok(StaffUserRow {
            staff_user_id: text(r, "staff_user_id")?,
            email: text(r, "email")?,
            name: text(r, "name")?,
            role: named(r, "role")?,
            active: int(r, "active")? == 1,
        })
    }
}

/// The staff user `id`, if the read model has them.
///
/// # Errors
/// [`crate::DbError`].
pub async fn staff_user_by_id(
    db: &crate::ReadDb,
    id: &str,
) -> Result<Option<StaffUserRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_staff_users", "staff_user_id", id).await
}

/// The staff user whose email is `email` (trimmed, lower-cased), if any.
///
/// # Errors
/// [`crate::DbError`].
pub async fn staff_user_by_email(
    db: &crate::ReadDb,
    email: &str,
) -> Result<Option<StaffUserRow>, crate::DbError> {
    crate::listing::by_key(db, "rm_staff_users", "email", &email.trim().to_lowercase()).await
}

/// The staff user a password-reset token with this hash was issued to, if any.
///
/// # Errors
/// [`crate::DbError`].
pub async fn staff_user_by_reset_token(
    db: &crate::ReadDb,
    token_hash: &str,
) -> Result<Option<String>, crate::DbError> {
    Ok(
        crate::listing::by_key::<StaffUserRow>(
            db,
            "rm_staff_users",
            "reset_token_hash",
            token_hash,
        )
        .await?
        .map(|r| r.staff_user_id),
    )
}

/// Whether any staff user exists.
///
/// # Errors
/// [`crate::DbError`].
pub async fn any_staff_user(db: &crate::ReadDb) -> Result<bool, crate::DbError> {
    Ok(!db
        .query("SELECT staff_user_id FROM rm_staff_users LIMIT 1", &[])
        .await?
        .is_empty())
}

/// Staff users by email.
pub fn staff_users() -> crate::Listing<StaffUserRow> {
    crate::Listing::new("rm_staff_users", "email, staff_user_id", vec![])
}

/// The password hash of staff user `id` (`None`: no such user, or no password set yet).
///
/// # Errors
/// [`crate::DbError`].
pub async fn staff_password_hash(
    db: &crate::ReadDb,
    id: &str,
) -> Result<Option<String>, crate::DbError> {
    password_hash(db, "rm_staff_users", "staff_user_id", id).await
}

/// The password hash of the portal account of customer `id`, if they have one.
///
/// # Errors
/// [`crate::DbError`].
pub async fn portal_password_hash(
    db: &crate::ReadDb,
    customer: &str,
) -> Result<Option<String>, crate::DbError> {
    password_hash(db, "rm_portal_accounts", "customer_id", customer).await
}

async fn password_hash(
    db: &crate::ReadDb,
    table: &str,
    key: &str,
    id: &str,
) -> Result<Option<String>, crate::DbError> {
    match crate::listing::by_key(db, table, key, id).await? {
        Some(r) => crate::row::opt_text(&r, "password_hash"),
        None => Ok(None),
    }
}

/// The portal account of the customer whose email is `email` (trimmed, lower-cased): their
/// id and password hash, if there is one.
///
/// # Errors
/// [`crate::DbError`].
pub async fn portal_account_by_email(
    db: &crate::ReadDb,
    email: &str,
) -> Result<Option<(String, Option<String>)>, crate::DbError> {
    let rows = db
        .query(
            "SELECT p.customer_id, p.password_hash FROM rm_portal_accounts p JOIN rm_customers c ON c.customer_id = p.customer_id WHERE c.email = $1",
            &[crate::Param::from(email.trim().to_lowercase())],
        )
        .await?;
    rows.first()
        .map(|r| {
            Ok((
                crate::row::text(r, "customer_id")?,
                crate::row::opt_text(r, "password_hash")?,
            ))
        })
        .transpose()
}

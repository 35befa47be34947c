//! Sign-in sessions (`sessions`; all its SQL is here): operational rows, not events (the
//! logins themselves are). A session is kept under the SHA-256 of its bearer token, never the
//! token; it speaks for its principal as they are *now* ([`principal_row`] joins the staff
//! user's current role and the customer's current state).

use chrono::{DateTime, Utc};
use projections::projection::rfc3339;
use projections::{DbError, JsonRow, Param, ReadDb};

/// Who a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A staff user.
    Staff,
    /// A portal customer.
    Customer,
}

impl PrincipalKind {
    /// As the table stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Customer => "customer",
        }
    }
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// SHA-256 of the bearer token, hex.
    pub token_hash: &'a str,
    /// Who it is for.
    pub kind: PrincipalKind,
    /// Their id.
    pub principal_id: &'a str,
    /// A staff user's role when signing in.
    pub role: Option<&'a str>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// The client's address.
    pub client_ip: &'a str,
}

/// Records a session.
///
/// # Errors
/// [`DbError`].
pub async fn open(db: &ReadDb, s: &NewSession<'_>) -> Result<(), DbError> {
    db.execute(
        "INSERT INTO sessions (token_hash, principal_kind, principal_id, role, created_at, expires_at, client_ip) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            Param::from(s.token_hash),
            s.kind.as_str().into(),
            s.principal_id.into(),
            s.role.into(),
            rfc3339(s.created_at).into(),
            rfc3339(s.expires_at).into(),
            s.client_ip.into(),
        ],
    )
    .await
    .map(|_| ())
}

/// Ends the session with this token hash (signing out).
///
/// # Errors
/// [`DbError`].
pub async fn revoke(db: &ReadDb, token_hash: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    db.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1",
        &[Param::from(token_hash), rfc3339(now).into()],
    )
    .await
    .map(|_| ())
}

/// Ends every open session of the principal except the one with token hash `keep` (a
/// password change keeps the session it was made in; a reset or deactivation keeps none).
///
/// # Errors
/// [`DbError`].
pub async fn revoke_all_of(
    db: &ReadDb,
    kind: PrincipalKind,
    principal_id: &str,
    keep: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    db.execute(
        "UPDATE sessions SET revoked_at = $3 WHERE principal_kind = $1 AND principal_id = $2 AND revoked_at IS NULL AND token_hash <> $4",
        &[
            Param::from(kind.as_str()),
            Param::from(principal_id),
            rfc3339(now).into(),
            Param::from(keep.unwrap_or_default()),
        ],
    )
    .await
    .map(|_| ())
}

/// Moves a staff user's sessions to their new role.
///
/// # Errors
/// [`DbError`].
pub async fn set_staff_role(db: &ReadDb, staff_user_id: &str, role: &str) -> Result<(), DbError> {
    db.execute(
        "UPDATE sessions SET role = $2 WHERE principal_kind = 'staff' AND principal_id = $1",
        &[Param::from(staff_user_id), role.into()],
    )
    .await
    .map(|_| ())
}

/// The open (not revoked, not expired at `now`) session with this token hash, with its
/// principal's current state: `principal_kind`, `principal_id`, and `staff_role`,
/// `staff_active` for staff or `customer`, `erased`, `merged_into` for customers.
///
/// # Errors
/// [`DbError`].
pub async fn principal_row(
    db: &ReadDb,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<JsonRow>, DbError> {
    Ok(db
        .query(
            "SELECT s.principal_kind, s.principal_id, u.role AS staff_role, u.active AS staff_active,
                    c.customer_id AS customer, c.erased, c.merged_into
             FROM sessions s
             LEFT JOIN rm_staff_users u
               ON s.principal_kind = 'staff' AND u.staff_user_id = s.principal_id
             LEFT JOIN rm_customers c
               ON s.principal_kind = 'customer' AND c.customer_id = s.principal_id
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
            &[Param::from(token_hash), rfc3339(now).into()],
        )
        .await?
        .into_iter()
        .next())
}

/// Deletes ended sessions (expired at `now`, or revoked); returns how many.
///
/// # Errors
/// [`DbError`].
pub async fn purge_ended(db: &ReadDb, now: DateTime<Utc>) -> Result<u64, DbError> {
    db.execute(
        "DELETE FROM sessions WHERE expires_at <= $1 OR revoked_at IS NOT NULL",
        &[rfc3339(now).into()],
    )
    .await
}

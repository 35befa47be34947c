//! One-time codes that prove an email address before it becomes a portal sign-in (issue #14).
//!
//! A sign-up or an email change first mails a code to the address; the answer to asking for
//! one is the same whether or not the address has an account, so nobody learns who is a
//! customer. Only the code's SHA-256 is kept, per purpose, address (its SHA-256 too) and the
//! customer asking (empty for a sign-up); a new code voids the last. The table is described
//! in `migrations/*/20261207000040_address_codes.sql`; all its SQL lives here.

use chrono::{DateTime, Utc};
use projections::{DbError, Param, ReadDb};
use sha2::{Digest, Sha256};

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A portal sign-up with this address.
    SignUp,
    /// A signed-in customer moving their sign-in to this address.
    EmailChange,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignUp => "sign_up",
            Purpose::EmailChange => "email_change",
        }
    }
}

/// The key of a code: what for, which address, asked by whom (empty for a sign-up).
#[derive(Debug, Clone)]
pub struct CodeKey {
    purpose: Purpose,
    address_hash: String,
    requested_by: String,
}

impl CodeKey {
    /// The code for `address` (compared trimmed and lower-cased), asked by `requested_by`.
    pub fn new(purpose: Purpose, address: &str, requested_by: Option<&str>) -> Self {
        CodeKey {
            purpose,
            address_hash: address_hash(address),
            requested_by: requested_by.unwrap_or_default().to_string(),
        }
    }

    /// What the code is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    fn params(&self) -> [Param; 3] {
        [
            Param::from(self.purpose.as_str()),
            Param::from(self.address_hash.clone()),
            Param::from(self.requested_by.clone()),
        ]
    }
}

/// The SHA-256 of an address, as the codes and their messages' causes name it (never the
/// address itself).
pub fn address_hash(address: &str) -> String {
    hex::encode(Sha256::digest(address.trim().to_lowercase().as_bytes()))
}

/// A code waiting to be typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The customer a sign-up with it made or claimed, once it did.
    pub claimed_by: Option<String>,
}

/// Keeps `code_hash` for `key` until `expires_at`, in place of any earlier code, for the
/// request named `request` (its idempotency key, hashed; none: every request is new).
/// False, and nothing changed, when a live code of that same request is there (a retry).
///
/// # Errors
/// [`DbError`].
pub async fn issue(
    db: &ReadDb,
    key: &CodeKey,
    request: Option<&str>,
    code_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool, DbError> {
    let now = Utc::now();
    purge_expired(db, now).await?;
    let request = request.map(|r| hex::encode(Sha256::digest(r.as_bytes())));
    let mut params = key.params().to_vec();
    params.push(code_hash.into());
    params.push(expires_at.timestamp_millis().into());
    params.push(request.into());
    params.push(now.timestamp_millis().into());
    // The update is skipped when the live code came from this very request.
    let n = db
        .execute(
            "INSERT INTO address_codes (purpose, address_hash, requested_by, code_hash, expires_at_ms, request_key) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (purpose, address_hash, requested_by) DO UPDATE \
             SET code_hash = excluded.code_hash, expires_at_ms = excluded.expires_at_ms, \
                 claimed_by = NULL, request_key = excluded.request_key \
             WHERE excluded.request_key IS NULL OR address_codes.request_key IS NULL \
                OR address_codes.request_key <> excluded.request_key OR address_codes.expires_at_ms <= $7",
            &params,
        )
        .await?;
    Ok(n == 1)
}

/// The unexpired code of `key`, if any.
///
/// # Errors
/// [`DbError`].
pub async fn find(
    db: &ReadDb,
    key: &CodeKey,
    now: DateTime<Utc>,
) -> Result<Option<Issued>, DbError> {
    let mut params = key.params().to_vec();
    params.push(now.timestamp_millis().into());
    let rows = db
        .query(
            "SELECT code_hash, claimed_by FROM address_codes \
             WHERE purpose = $1 AND address_hash = $2 AND requested_by = $3 AND expires_at_ms > $4",
            &params,
        )
        .await?;
    Ok(rows.first().map(|r| Issued {
        code_hash: r
            .get("code_hash")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        claimed_by: r
            .get("claimed_by")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    }))
}

/// Marks the code of `key` as used by `customer`. False when another customer used it first
/// (the same customer again is a retry and succeeds).
///
/// # Errors
/// [`DbError`].
pub async fn claim(db: &ReadDb, key: &CodeKey, customer: &str) -> Result<bool, DbError> {
    let mut params = key.params().to_vec();
    params.push(customer.into());
    let n = db
        .execute(
            "UPDATE address_codes SET claimed_by = $4 \
             WHERE purpose = $1 AND address_hash = $2 AND requested_by = $3 \
             AND (claimed_by IS NULL OR claimed_by = $4)",
            &params,
        )
        .await?;
    Ok(n == 1)
}

/// Forgets every code that expired before `now`.
///
/// # Errors
/// [`DbError`].
pub async fn purge_expired(db: &ReadDb, now: DateTime<Utc>) -> Result<u64, DbError> {
    db.execute(
        "DELETE FROM address_codes WHERE expires_at_ms <= $1",
        &[Param::from(now.timestamp_millis())],
    )
    .await
}

//! Accounts: passwords, and the portal's sign-up and email change by emailed code. The
//! GraphQL resolvers in `api` parse, call these and map their errors; sessions are
//! [`crate::sessions`]'s, limits [`crate::sign_in_limits`]'s.

pub mod passwords;
pub mod portal_sign_up;

use sha2::{Digest, Sha256};

/// SHA-256 of a token (a session's bearer token, a one-time code), hex: what is stored
/// instead of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

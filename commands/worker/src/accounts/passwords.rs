//! Passwords: argon2id hashes, computed off the async runtime and a few at a time.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes a password with argon2id (random salt).
///
/// # Errors
/// Only if the hasher is misconfigured.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// [`hash`] on a blocking thread: argon2 takes tens of milliseconds
/// of CPU, which on the async runtime's few threads would stall webhooks,
/// health checks and projections meanwhile.
///
/// # Errors
/// As [`hash`], or when the blocking task could not run.
pub async fn hash_off_the_runtime(password: String) -> Result<String, String> {
    let _permit = argon2_permit().await;
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Argon2 runs at most this many at once (each takes ~19 MiB and a core for tens of
/// milliseconds): a burst of sign-ins or sign-ups queues instead of exhausting memory and
/// the blocking pool.
const ARGON2_AT_ONCE: usize = 4;

async fn argon2_permit() -> tokio::sync::SemaphorePermit<'static> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);
    // Never closed, so acquiring cannot fail.
    PERMITS
        .acquire()
        .await
        .unwrap_or_else(|_| unreachable!("the Argon2 semaphore is never closed"))
}

/// Whether `password` matches `hash` (see `verify`), on a blocking thread, within [`ARGON2_AT_ONCE`]; `false` when it
/// could not run.
pub async fn verify_off_the_runtime(password: String, hash: Option<String>) -> bool {
    let _permit = argon2_permit().await;
    tokio::task::spawn_blocking(move || verify(&password, hash.as_deref()))
        .await
        .unwrap_or(false)
}

fn verify(password: &str, hash: Option<&str>) -> bool {
    // Verify against a fixed hash when there is none, so that an unknown
    // email costs as much time as a wrong password.
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1WzBl1Cn5d9bGvT2y6G1rcD2wE+Rj0GkgLJdGzHh1bA";
    let parsed = PasswordHash::new(hash.unwrap_or(DUMMY)).or_else(|_| PasswordHash::new(DUMMY));
    match parsed {
        Ok(p) => {
            Argon2::default()
                .verify_password(password.as_bytes(), &p)
                .is_ok()
                && hash.is_some()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{hash, hash_off_the_runtime};

    /// The longest the runtime's only thread went without running a 1 ms ticker while one
    /// password was hashed.
    async fn longest_stall_while_hashing() -> Duration {
        let mut hashing = std::pin::pin!(hash_off_the_runtime("tick-tock-12".into()));
        let (mut longest, mut last) = (Duration::ZERO, Instant::now());
        loop {
            tokio::select! {
                hashed = &mut hashing => {
                    hashed.expect("hash");
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(1)) => {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
            }
        }
        longest.max(last.elapsed())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn it_should_hash_passwords_without_holding_the_runtime_thread() {
        // The quickest of three hashes, as the stalls below take the least of three.
        let mut one_hash = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            hash("calibration-1").expect("hash");
            one_hash = one_hash.min(started.elapsed());
        }
        // A hash on the runtime thread stalls it for the whole hash, every time; off it, the
        // ticker runs throughout (the least of three tries, so that one descheduling of
        // this process does not count).
        let mut least = Duration::MAX;
        for _ in 0..3 {
            least = least.min(longest_stall_while_hashing().await);
        }
        assert!(
            least < one_hash / 2,
            "the runtime thread stalled {least:?} during a hash of {one_hash:?}"
        );
    }
}

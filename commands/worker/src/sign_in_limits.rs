//! Sign-in and sign-up limits (issue #14, "Hostile clients").
//!
//! Three questions are asked of every sign-in (`login`, `portalLogin`; password resets and
//! `changePassword` count as attempts of their network too):
//! - **Its network**: an IPv4 address, or the IPv6 /64 around the address (one subscriber's
//!   allocation: a client there can rotate through 2^64 addresses for free, so counting
//!   addresses would count nothing) may make [`Limits::attempts_per_network`] attempts.
//! - **Its account, from this network**: [`Limits::failures_per_account_network`] failed
//!   attempts at one account from one network. One network cannot use up the account's
//!   allowance below, so it cannot lock the account's owner out elsewhere.
//! - **Its account**: [`Limits::failures_per_account`] failed attempts per account, from
//!   any number of networks, so spreading guesses over a botnet does not help. The account is
//!   the email as typed (trimmed, lower-cased), hashed, whether or not anyone has it: a
//!   limited answer is the same for an unknown email and says nothing about who exists.
//! - Sign-ups (`registerPortalAccount`) per network and in total, the latter because a sign-up
//!   writes events and costs a password hash.
//! - One-time codes: sent per account (and, for sign-up and email-change codes, which go to
//!   addresses nobody has proven, per network), and wrong ones typed per account.
//!
//! Each bucket is a GCRA cell (one "theoretical arrival time" per key): a burst of `burst`
//! events, then one per `period / burst`. A key whose time has passed is indistinguishable from
//! a fresh one and is dropped when the buckets are pruned (every minute, or sooner when they
//! have doubled), so memory follows the clients of the last window, not every client ever seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A burst of `burst` events, refilled evenly over `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed at once.
    pub burst: u32,
    /// Time in which a spent burst is fully back.
    pub period: Duration,
}

impl Rate {
    /// The time one event costs.
    fn interval(self) -> Duration {
        self.period / self.burst.max(1)
    }
}

/// The numbers (documented in docs/api.md and docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sign-in attempts per network (IPv4 address, IPv6 /64), failed or not.
    pub attempts_per_network: Rate,
    /// Failed sign-ins at one account from one network.
    pub failures_per_account_network: Rate,
    /// Failed sign-ins per account, from all networks together: ten times the above, so it
    /// takes ten networks, not one, to lock the account's owner out.
    pub failures_per_account: Rate,
    /// Sign-ups per network.
    pub sign_ups_per_network: Rate,
    /// Wrong one-time codes (contact confirmation) per account, from all networks: a
    /// six-digit code must not be guessable in its lifetime.
    pub code_failures_per_account: Rate,
    /// One-time codes sent per account (each is an SMS or an email someone pays for).
    pub code_requests_per_account: Rate,
    /// Sign-up and email-change codes asked for per network (each mails an address nobody
    /// has proven yet, so a network must not be able to bomb many mailboxes).
    pub address_codes_per_network: Rate,
    /// Sign-ups from everyone together.
    pub sign_ups_total: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        Self {
            attempts_per_network: Rate {
                burst: 10,
                period: MINUTE,
            },
            failures_per_account_network: Rate {
                burst: 10,
                period: 15 * MINUTE,
            },
            failures_per_account: Rate {
                burst: 100,
                period: 15 * MINUTE,
            },
            sign_ups_per_network: Rate {
                burst: 10,
                period: 60 * MINUTE,
            },
            code_failures_per_account: Rate {
                burst: 5,
                period: 15 * MINUTE,
            },
            code_requests_per_account: Rate {
                burst: 5,
                period: 60 * MINUTE,
            },
            address_codes_per_network: Rate {
                burst: 10,
                period: 60 * MINUTE,
            },
            sign_ups_total: Rate {
                burst: 60,
                period: MINUTE,
            },
        }
    }
}

/// Monotonic time for the limits; tests drive their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary fixed start; never goes back.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told (for tests).
#[derive(Debug, Default)]
pub struct ManualClock(Mutex<Duration>);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The network a client address counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// An IPv4 address (a /32).
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl Network {
    /// The network of `ip`; an IPv4-mapped IPv6 address is its IPv4 address.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Network::V4(v4),
            IpAddr::V6(v6) => Network::V6((v6.to_bits() >> 64) as u64),
        }
    }

    /// The network of a client address as `api`'s `client_ip` wrote it.
    /// Text that is no address (it always is) shares one network, so it cannot escape a limit.
    pub fn of_client(client_ip: &str) -> Self {
        client_ip.parse().map_or(Network::V6(u64::MAX), Network::of)
    }
}

/// Whose accounts an email names: staff and portal customers sign in separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// `login`.
    Staff,
    /// `portalLogin`.
    Portal,
}

/// The answer when a limit is reached (`RATE_LIMITED`); it does not say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many attempts; wait a minute and try again")]
pub struct Limited;

type AccountKey = [u8; 32];

/// What the limits hold: one arrival time per key.
#[derive(Debug, Default)]
struct Buckets {
    attempts: HashMap<Network, Duration>,
    failures: HashMap<AccountKey, Duration>,
    /// Keyed by account and network together.
    failures_from: HashMap<AccountKey, Duration>,
    sign_ups: HashMap<Network, Duration>,
    sign_ups_total: Duration,
    /// Keyed sign-ups admitted, until when a retry of one is not counted again.
    sign_ups_admitted: HashMap<AccountKey, Duration>,
    code_failures: HashMap<AccountKey, Duration>,
    code_requests: HashMap<AccountKey, Duration>,
    address_codes: HashMap<Network, Duration>,
    last_prune: Duration,
    /// Prune early once the buckets hold this many keys (twice what the last prune kept).
    prune_at: usize,
}

/// The earliest a pruning runs before its minute is up, in keys held.
const PRUNE_AT_LEAST: usize = 4096;
/// How often the buckets are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Buckets {
    fn len(&self) -> usize {
        self.attempts.len()
            + self.failures.len()
            + self.failures_from.len()
            + self.sign_ups.len()
            + self.sign_ups_admitted.len()
            + self.code_failures.len()
            + self.code_requests.len()
            + self.address_codes.len()
    }

    /// Drops every key whose bucket is full again (as good as never seen).
    fn prune_if_due(&mut self, now: Duration) {
        if now.saturating_sub(self.last_prune) < PRUNE_EVERY && self.len() < self.prune_at {
            return;
        }
        self.attempts.retain(|_, tat| *tat > now);
        self.failures.retain(|_, tat| *tat > now);
        self.failures_from.retain(|_, tat| *tat > now);
        self.sign_ups.retain(|_, tat| *tat > now);
        self.sign_ups_admitted.retain(|_, until| *until > now);
        self.code_failures.retain(|_, tat| *tat > now);
        self.code_requests.retain(|_, tat| *tat > now);
        self.address_codes.retain(|_, tat| *tat > now);
        self.last_prune = now;
        self.prune_at = (2 * self.len()).max(PRUNE_AT_LEAST);
    }
}

/// The arrival time after one more event, if `rate` allows it (GCRA).
fn admit(tat: Option<&Duration>, now: Duration, rate: Rate) -> Option<Duration> {
    let next = tat.copied().unwrap_or_default().max(now) + rate.interval();
    (next <= now + rate.period).then_some(next)
}

/// The sign-in and sign-up limits of one server. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct SignInLimits {
    limits: Limits,
    clock: Arc<dyn Clock>,
    buckets: Mutex<Buckets>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self::new(Limits::default(), Arc::new(SystemClock::default()))
    }
}

/// A sign-in in progress: it holds one of its account's failures until it [`succeeded`].
///
/// [`succeeded`]: SignInAttempt::succeeded
#[derive(Debug)]
#[must_use = "a sign-in that succeeds must give its account's failure back"]
pub struct SignInAttempt<'a> {
    limits: &'a SignInLimits,
    account: AccountKey,
    account_from: AccountKey,
}

impl SignInAttempt<'_> {
    /// The password was right: the failure this attempt held goes back to its account.
    pub fn succeeded(self) {
        let limits = self.limits.limits;
        let mut b = self.limits.lock();
        if let Some(tat) = b.failures.get_mut(&self.account) {
            *tat = tat.saturating_sub(limits.failures_per_account.interval());
        }
        if let Some(tat) = b.failures_from.get_mut(&self.account_from) {
            *tat = tat.saturating_sub(limits.failures_per_account_network.interval());
        }
    }
}

/// A one-time code being checked: it holds one wrong code of its account until it
/// [`succeeded`](CodeAttempt::succeeded).
#[derive(Debug)]
#[must_use = "a right code must give its account's allowance back"]
pub struct CodeAttempt<'a> {
    limits: &'a SignInLimits,
    key: AccountKey,
}

impl CodeAttempt<'_> {
    /// The code was right.
    pub fn succeeded(self) {
        let interval = self.limits.limits.code_failures_per_account.interval();
        let mut b = self.limits.lock();
        if let Some(tat) = b.code_failures.get_mut(&self.key) {
            *tat = tat.saturating_sub(interval);
        }
    }
}

impl SignInLimits {
    /// Limits with these numbers on this clock.
    pub fn new(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        Self {
            limits,
            clock,
            buckets: Mutex::new(Buckets {
                prune_at: PRUNE_AT_LEAST,
                ..Buckets::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // The buckets are plain numbers, valid after any panic.
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sign-in to `account` (the email as typed) from `client_ip`: counts against its network
    /// and holds one of the account's failures until [`SignInAttempt::succeeded`]. Holding it
    /// before the password is checked means concurrent guesses cannot overrun the account's
    /// limit. Nothing is counted when either limit refuses.
    ///
    /// # Errors
    /// [`Limited`] when the network or the account has no attempts left.
    pub fn sign_in(
        &self,
        kind: AccountKind,
        account: &str,
        client_ip: &str,
    ) -> Result<SignInAttempt<'_>, Limited> {
        let network = Network::of_client(client_ip);
        let key = account_key(kind, account);
        let now = self.clock.now();
        let mut b = self.lock();
        b.prune_if_due(now);
        let by_network = admit(
            b.attempts.get(&network),
            now,
            self.limits.attempts_per_network,
        );
        let by_account = admit(b.failures.get(&key), now, self.limits.failures_per_account);
        let from = account_from(&key, network);
        let by_account_from = admit(
            b.failures_from.get(&from),
            now,
            self.limits.failures_per_account_network,
        );
        let (Some(n), Some(a), Some(f)) = (by_network, by_account, by_account_from) else {
            return Err(Limited);
        };
        b.attempts.insert(network, n);
        b.failures.insert(key, a);
        b.failures_from.insert(from, f);
        Ok(SignInAttempt {
            limits: self,
            account: key,
            account_from: from,
        })
    }

    /// An attempt from `client_ip` that names no account (a password reset, a password change
    /// checking the current one): counts against its network only.
    ///
    /// # Errors
    /// [`Limited`] when the network has no attempts left.
    pub fn attempt(&self, client_ip: &str) -> Result<(), Limited> {
        let network = Network::of_client(client_ip);
        let now = self.clock.now();
        let mut b = self.lock();
        b.prune_if_due(now);
        let n = admit(
            b.attempts.get(&network),
            now,
            self.limits.attempts_per_network,
        )
        .ok_or(Limited)?;
        b.attempts.insert(network, n);
        Ok(())
    }

    /// A sign-up from `client_ip`: counts against its network and the total. `once` names a
    /// keyed sign-up (its idempotency key and email): its retries, concurrent ones too, within
    /// the network's period are the same sign-up and are not counted again.
    ///
    /// # Errors
    /// [`Limited`] when either has no sign-ups left; nothing is counted then.
    pub fn sign_up(&self, client_ip: &str, once: Option<&str>) -> Result<(), Limited> {
        let network = Network::of_client(client_ip);
        let now = self.clock.now();
        let once = once.map(|o| <[u8; 32]>::from(Sha256::digest(o.as_bytes())));
        let mut b = self.lock();
        b.prune_if_due(now);
        if let Some(key) = once {
            if b.sign_ups_admitted
                .get(&key)
                .is_some_and(|until| *until > now)
            {
                return Ok(());
            }
        }
        let by_network = admit(
            b.sign_ups.get(&network),
            now,
            self.limits.sign_ups_per_network,
        );
        let total = admit(Some(&b.sign_ups_total), now, self.limits.sign_ups_total);
        let (Some(n), Some(t)) = (by_network, total) else {
            return Err(Limited);
        };
        b.sign_ups.insert(network, n);
        b.sign_ups_total = t;
        if let Some(key) = once {
            b.sign_ups_admitted
                .insert(key, now + self.limits.sign_ups_per_network.period);
        }
        Ok(())
    }

    /// A one-time code sent for `account` (e.g. `contact:<customer id>`).
    ///
    /// # Errors
    /// [`Limited`] when the account had its codes for the hour.
    pub fn code_request(&self, account: &str) -> Result<(), Limited> {
        let key = account_key(AccountKind::Portal, account);
        let now = self.clock.now();
        let mut b = self.lock();
        b.prune_if_due(now);
        let next = admit(
            b.code_requests.get(&key),
            now,
            self.limits.code_requests_per_account,
        )
        .ok_or(Limited)?;
        b.code_requests.insert(key, next);
        Ok(())
    }

    /// A sign-up or email-change code for `account` (the address, or the customer), asked
    /// for from `client_ip`: counts against the network and the account; nothing is counted
    /// when either refuses.
    ///
    /// # Errors
    /// [`Limited`] when the network or the account had its codes for the hour.
    pub fn address_code(&self, client_ip: &str, account: &str) -> Result<(), Limited> {
        let network = Network::of_client(client_ip);
        let key = account_key(AccountKind::Portal, account);
        let now = self.clock.now();
        let mut b = self.lock();
        b.prune_if_due(now);
        let by_network = admit(
            b.address_codes.get(&network),
            now,
            self.limits.address_codes_per_network,
        );
        let by_account = admit(
            b.code_requests.get(&key),
            now,
            self.limits.code_requests_per_account,
        );
        let (Some(n), Some(a)) = (by_network, by_account) else {
            return Err(Limited);
        };
        b.address_codes.insert(network, n);
        b.code_requests.insert(key, a);
        Ok(())
    }

    /// A one-time code typed for `account`: holds one of the account's wrong-code allowance
    /// until [`CodeAttempt::succeeded`] (so concurrent guesses cannot overrun it).
    ///
    /// # Errors
    /// [`Limited`] when the account has no wrong codes left.
    pub fn code_attempt(&self, account: &str) -> Result<CodeAttempt<'_>, Limited> {
        let key = account_key(AccountKind::Portal, account);
        let now = self.clock.now();
        let mut b = self.lock();
        b.prune_if_due(now);
        let next = admit(
            b.code_failures.get(&key),
            now,
            self.limits.code_failures_per_account,
        )
        .ok_or(Limited)?;
        b.code_failures.insert(key, next);
        Ok(CodeAttempt { limits: self, key })
    }

    /// How many networks and accounts the limits hold now (their memory).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// The account an email names, as stored: a hash, so neither memory nor a 1 MB "email" grows it.
/// An account seen from one network.
fn account_from(account: &AccountKey, network: Network) -> AccountKey {
    Sha256::new()
        .chain_update(account)
        .chain_update(format!("{network:?}").as_bytes())
        .finalize()
        .into()
}

fn account_key(kind: AccountKind, email: &str) -> AccountKey {
    let tag: &[u8] = match kind {
        AccountKind::Staff => b"staff:",
        AccountKind::Portal => b"portal:",
    };
    Sha256::new()
        .chain_update(tag)
        .chain_update(email.trim().to_lowercase().as_bytes())
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits() -> (SignInLimits, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (SignInLimits::new(Limits::default(), clock.clone()), clock)
    }

    /// How many of `n` sign-ins from `ip(i)` to `account(i)` get through.
    fn admitted(
        l: &SignInLimits,
        n: u32,
        ip: impl Fn(u32) -> String,
        account: impl Fn(u32) -> String,
    ) -> u32 {
        (0..n)
            .filter(|&i| l.sign_in(AccountKind::Staff, &account(i), &ip(i)).is_ok())
            .count() as u32
    }

    #[test]
    fn it_should_count_an_ipv6_64_as_one_network_and_an_ipv4_address_as_one() {
        let net = |s: &str| Network::of(s.parse().expect("ip"));
        assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:2:ffff:0:0:9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_ne!(net("198.51.100.1"), net("198.51.100.2"));
        assert_eq!(net("::ffff:198.51.100.1"), net("198.51.100.1"));
        assert_eq!(Network::of_client("junk"), Network::of_client("more junk"));
    }

    #[test]
    fn it_should_limit_a_64_however_many_addresses_it_uses() {
        let (l, _) = limits();
        let through = admitted(
            &l,
            1000,
            |i| format!("2001:db8:1:2:{:x}::{:x}", i % 7, i),
            |i| format!("user-{i}@x.example"),
        );
        assert_eq!(through, 10);
        assert!(l
            .sign_in(AccountKind::Staff, "someone@x.example", "2001:db8:1:3::1")
            .is_ok());
    }

    #[test]
    fn it_should_not_let_one_network_lock_an_account_out_of_every_other() {
        let (l, clock) = limits();
        // Ten guesses a minute for fifteen minutes (the network's own limit refills each
        // minute): the account's limit from that network stops them after ten.
        let mut through = 0;
        for _ in 0..15 {
            for _ in 0..10 {
                if l.sign_in(AccountKind::Staff, "owner@x.example", "198.51.100.7")
                    .is_ok()
                {
                    through += 1;
                }
            }
            clock.advance(60 * SECOND);
        }
        // Ten at once, then one per 90 s: at most twenty, a fifth of the account's hundred.
        assert!(
            (10..=20).contains(&through),
            "{through} guesses got through"
        );
        // The owner, from home, signs in.
        assert!(l
            .sign_in(AccountKind::Staff, "owner@x.example", "203.0.113.9")
            .is_ok());
    }

    #[test]
    fn it_should_limit_failures_on_one_account_from_any_number_of_networks() {
        let (l, _) = limits();
        let through = admitted(
            &l,
            200,
            |i| format!("198.51.{}.{}", i / 256, i % 256),
            |_| " Owner@X.example".to_string(),
        );
        assert_eq!(through, 100);
        // Another account from another network is not affected; a portal account of the
        // same email is another account.
        assert!(l
            .sign_in(AccountKind::Staff, "other@x.example", "203.0.113.7")
            .is_ok());
        assert!(l
            .sign_in(AccountKind::Portal, "owner@x.example", "203.0.113.8")
            .is_ok());
    }

    #[test]
    fn it_should_not_count_successful_sign_ins_against_the_account() {
        let (l, _) = limits();
        for i in 0..100 {
            l.sign_in(AccountKind::Staff, "me@x.example", &format!("10.0.0.{i}"))
                .expect("admitted")
                .succeeded();
        }
        assert!(l
            .sign_in(AccountKind::Staff, "me@x.example", "10.0.1.1")
            .is_ok());
    }

    #[test]
    fn it_should_give_a_network_its_attempts_back_as_time_passes() {
        let (l, clock) = limits();
        for _ in 0..10 {
            l.attempt("198.51.100.1").expect("within the burst");
        }
        assert_eq!(l.attempt("198.51.100.1"), Err(Limited));
        clock.advance(6 * SECOND);
        assert_eq!(l.attempt("198.51.100.1"), Ok(()));
        assert_eq!(l.attempt("198.51.100.1"), Err(Limited));
    }

    #[test]
    fn it_should_limit_sign_ups_per_network_and_in_total() {
        let (l, _) = limits();
        let from_one = (0..20)
            .filter(|i| l.sign_up(&format!("2001:db8::{i}"), None).is_ok())
            .count();
        assert_eq!(from_one, 10);
        let from_many = (0..200)
            .filter(|i| {
                l.sign_up(&format!("198.51.{}.{}", i / 256, i % 256), None)
                    .is_ok()
            })
            .count();
        assert_eq!(from_many, 50, "60 in total, 10 already taken");
    }

    #[test]
    fn it_should_allow_five_wrong_codes_and_five_codes_an_hour_per_account() {
        let (l, clock) = limits();
        let wrong = (0..20)
            .filter(|_| l.code_attempt("contact:c1").is_ok())
            .count();
        assert_eq!(wrong, 5);
        // A right code gives its allowance back; another account is not affected.
        assert!(l
            .code_attempt("contact:c2")
            .map(CodeAttempt::succeeded)
            .is_ok());
        let sent = (0..20)
            .filter(|_| l.code_request("contact:c1").is_ok())
            .count();
        assert_eq!(sent, 5);
        clock.advance(12 * 60 * SECOND);
        assert_eq!(
            l.code_request("contact:c1"),
            Ok(()),
            "one back after 12 minutes"
        );
    }

    #[test]
    fn it_should_limit_sign_up_codes_per_network_and_per_address() {
        let (l, _) = limits();
        // One network asking for many addresses: ten, however many /64 addresses it uses.
        let from_one = (0..30)
            .filter(|i| {
                l.address_code(&format!("2001:db8:1:2::{i:x}"), &format!("a{i}@x"))
                    .is_ok()
            })
            .count();
        assert_eq!(from_one, 10);
        // Many networks asking for one address: five.
        let for_one = (0..30)
            .filter(|i| l.address_code(&format!("192.0.2.{i}"), "victim@x").is_ok())
            .count();
        assert_eq!(for_one, 5);
    }

    #[test]
    fn it_should_count_the_retries_of_one_keyed_sign_up_once() {
        let (l, clock) = limits();
        for _ in 0..50 {
            l.sign_up("203.0.113.5", Some("key-1:ada@x.example"))
                .expect("the same sign-up");
        }
        let others = (0..20)
            .filter(|i| {
                l.sign_up("203.0.113.5", Some(&format!("key-{i}:x")))
                    .is_ok()
            })
            .count();
        assert_eq!(
            others, 9,
            "the network's burst of 10, one taken by the keyed sign-up"
        );
        // Once its period is over, the same key is a new sign-up (and the network is full).
        clock.advance(61 * 60 * SECOND);
        l.sign_up("203.0.113.5", Some("key-1:ada@x.example"))
            .expect("a fresh window");
    }

    #[test]
    fn it_should_forget_clients_whose_window_has_passed() {
        let (l, clock) = limits();
        // 10,000 guesses, each from a new /64 at a new account, and as many sign-ups from new
        // IPv4 addresses, one every 100 ms of the clock: 1,000 seconds of a rotating attacker.
        for i in 0..10_000u32 {
            let _ = l.sign_in(
                AccountKind::Portal,
                &format!("guess-{i}@x.example"),
                &format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff),
            );
            let _ = l.sign_up(&format!("10.{}.{}.1", i >> 8, i & 255), None);
            clock.advance(SECOND / 10);
        }
        // Over 20,000 keys were made; only those of the last windows are held (a network's
        // attempt is over in 6 s, a failure in 9 s (90 s for its network's share), a sign-up
        // in 6 min; pruned every minute).
        assert!(l.tracked() < 3_000, "{} keys held", l.tracked());
        // Once the longest window (a sign-up's hour) has passed, nothing is left.
        clock.advance(61 * 60 * SECOND);
        l.attempt("192.0.2.1").expect("a fresh network");
        assert_eq!(l.tracked(), 1, "only the network just seen");
        // An account with a full window of failures is kept until they are forgiven.
        for i in 0..100 {
            let _ = l.sign_in(
                AccountKind::Staff,
                "kept@x.example",
                &format!("192.0.2.{}", 10 + i),
            );
        }
        clock.advance(61 * SECOND);
        l.attempt("192.0.2.3").expect("a fresh network");
        assert_eq!(
            l.tracked(),
            102,
            "the account, its share from each of the 100 networks, and the network just seen"
        );
        // 61 s forgave six failures (one per 9 s), not all of them.
        let again = |ip: String| {
            l.sign_in(AccountKind::Staff, "kept@x.example", &ip)
                .map(|_| ())
        };
        let through = (0..10)
            .filter(|i| again(format!("198.51.100.{i}")).is_ok())
            .count();
        assert_eq!(through, 6, "pruning forgot a limited account");
    }
}

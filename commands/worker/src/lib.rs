//! The application's background work, behind the ports the domain and `commands` define:
//!
//! - [`outbox`]: sends queued messages through the vendor clients (Twilio, Resend), talks to
//!   Stripe for payment links, reads Google reviews;
//! - [`scheduler`]: the 18 cron jobs and their run log;
//! - [`inbound`]: what verified vendor webhooks do, each delivery once;
//! - [`alerts`]: incidents opened and closed as the business stops and starts working by
//!   itself, announced to Sentry ([`error_reporting`]) and by email;
//! - [`sign_in_limits`]: how many sign-ins, sign-ups and codes a network and an account get;
//! - the side tables those and the api use ([`unsubscribe`] tokens, [`address_codes`],
//!   password-reset tokens in [`outbox::reset_tokens`], sign-in [`sessions`]), each with all
//!   its SQL.
//!
//! The HTTP surface (routes, GraphQL, webhooks' wire formats) stays in `api`, which builds
//! these from its configuration.

pub mod accounts;
pub mod address_codes;
pub mod alerts;
pub mod error_reporting;
pub mod inbound;
pub mod outbox;
pub mod scheduler;
pub mod secret;
pub mod sessions;
pub mod sign_in_limits;
pub mod unsubscribe;

pub use secret::Secret;

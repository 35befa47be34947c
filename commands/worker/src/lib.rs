//! The application's background work, behind the ports the domain and `commands` define:
//!
//! - [`outbox`]: sends queued messages through the vendor clients (Twilio, Resend), talks to
//!   Stripe for payment links, reads Google reviews;
//! - [`scheduler`]: the 18 cron jobs and their run log;
//! - [`inbound`]: what verified vendor webhooks do, each delivery once;
//! - the side tables those and the api use ([`unsubscribe`] tokens, [`address_codes`],
//!   password-reset tokens in [`outbox::reset_tokens`], sign-in [`sessions`]), each with all
//!   its SQL.
//!
//! The HTTP surface (routes, GraphQL, webhooks' wire formats) stays in `api`, which builds
//! these from its configuration.

pub mod address_codes;
pub mod inbound;
pub mod outbox;
pub mod scheduler;
pub mod secret;
pub mod sessions;
pub mod unsubscribe;

pub use secret::Secret;

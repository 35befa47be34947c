//! The customer notes read model: what staff wrote about a customer, for staff to read.

use domain::customer::CustomerEvent;
use domain::ports::Actor;

use super::prelude::*;
use crate::db::{DbError, ReadDb};
use crate::row;

/// Staff notes on customers, newest first. A note's text is personal data: erasing the
/// customer removes their notes here (the log keeps them sealed with the customer's key).
#[derive(Debug)]
pub struct Notes;

const NOTES: &[&str] = &["customer_notes"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::customer::AGGREGATE_TYPE];

impl Projection for Notes {
    fn name(&self) -> &'static str {
        "customer_notes"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        NOTES
    }
    fn schema(&self) -> &'static [&'static str] {
        &["CREATE TABLE {customer_notes} (
                customer_id TEXT NOT NULL, sequence BIGINT NOT NULL, text TEXT NOT NULL,
                author_kind TEXT NOT NULL, author_id TEXT, at TEXT NOT NULL,
                PRIMARY KEY (customer_id, sequence))"]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(Event::Customer(event)) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let id = e.aggregate_id.clone();
            match event {
                CustomerEvent::CustomerNoteAdded { text, author, at } => {
                    let (kind, author_id) = match author {
                        Actor::Staff { id, .. } => ("staff", Some(id.to_string())),
                        Actor::Customer { id } => ("customer", Some(id.to_string())),
                        Actor::System => ("system", None),
                    };
                    exec(tx, ctx, NOTES, "INSERT INTO {customer_notes} (customer_id, sequence, text, author_kind, author_id, at)
                        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (customer_id, sequence) DO NOTHING",
                        &[id.into(), (e.sequence as i64).into(), text.as_str().into(), kind.into(), author_id.into(), rfc3339(*at).into()]).await?;
                }
                CustomerEvent::CustomerPersonalDataErased { .. } => {
                    exec(
                        tx,
                        ctx,
                        NOTES,
                        "DELETE FROM {customer_notes} WHERE customer_id = $1",
                        &[id.into()],
                    )
                    .await?;
                }
                CustomerEvent::CustomerCreated { .. }
                | CustomerEvent::CustomerContactUpdated { .. }
                | CustomerEvent::CustomerAddressAdded { .. }
                | CustomerEvent::CustomerAddressRemoved { .. }
                | CustomerEvent::CustomerBirthdaySet { .. }
                | CustomerEvent::CustomerSinceSet { .. }
                | CustomerEvent::SmsConsentGranted { .. }
                | CustomerEvent::SmsConsentRevoked { .. }
                | CustomerEvent::EmailConsentGranted { .. }
                | CustomerEvent::EmailConsentRevoked { .. }
                | CustomerEvent::EmailSuppressed { .. }
                | CustomerEvent::EmailSuppressionLifted { .. }
                | CustomerEvent::CustomerTagged { .. }
                | CustomerEvent::CustomerUntagged { .. }
                | CustomerEvent::CustomerMergedInto { .. }
                | CustomerEvent::DuplicateCustomerAbsorbed { .. }
                | CustomerEvent::StripeCustomerLinked { .. }
                | CustomerEvent::ContactConfirmationRequired { .. }
                | CustomerEvent::ContactCodeIssued { .. }
                | CustomerEvent::ContactConfirmed { .. }
                | CustomerEvent::ReferralCodeIssued { .. } => {}
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// Who wrote a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteAuthorKind {
    /// A staff user.
    Staff,
    /// The customer (through the portal).
    Customer,
    /// The system (an import, a policy).
    System,
}

/// One note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteRow {
    /// The note's place in the customer's stream (unique per customer).
    pub sequence: i64,
    /// What was written.
    pub text: String,
    /// Who wrote it.
    pub author_kind: NoteAuthorKind,
    /// The staff user or customer who wrote it (none for the system).
    pub author_id: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// How many notes a customer has.
///
/// # Errors
/// When the read model cannot be read.
pub async fn count(db: &ReadDb, customer_id: &str) -> Result<i64, DbError> {
    row::count(
        db,
        "rm_customer_notes WHERE customer_id = $1",
        &[customer_id.into()],
    )
    .await
}

/// A customer's notes, newest first, `limit` of them from `offset`.
///
/// # Errors
/// When the read model cannot be read, or a row does not read as a note.
pub async fn of_customer(
    db: &ReadDb,
    customer_id: &str,
    offset: i64,
    limit: i64,
) -> Result<Vec<NoteRow>, DbError> {
    db.query(
        "SELECT sequence, text, author_kind, author_id, at FROM rm_customer_notes
          WHERE customer_id = $1 ORDER BY sequence DESC LIMIT $2 OFFSET $3",
        &[customer_id.into(), limit.into(), offset.into()],
    )
    .await?
    .iter()
    .map(|r| {
        let author_kind = match row::text(r, "author_kind")?.as_str() {
            "staff" => NoteAuthorKind::Staff,
            "customer" => NoteAuthorKind::Customer,
            "system" => NoteAuthorKind::System,
            other => {
                return Err(DbError::new(format!(
                    "read-model column author_kind is not an author: {other}"
                )))
            }
        };
        Ok(NoteRow {
            sequence: row::int(r, "sequence")?,
            text: row::text(r, "text")?,
            author_kind,
            author_id: row::opt_text(r, "author_id")?,
            at: row::text(r, "at")?,
        })
    })
    .collect()
}

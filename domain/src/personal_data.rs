//! Which event fields hold a customer's personal data, whose data it is, and
//! what a reader sees once it has been erased.
//!
//! The store encrypts these fields with a key per customer (crypto-shredding);
//! erasing the customer destroys the key, so every copy of the ciphertext —
//! in the log, in backups, in an old export of the raw tables — becomes
//! unreadable, while the events themselves (and their non-personal facts:
//! consent changes, tags, amounts, times) stay and replay. This module is the
//! pure part: the list. The encryption is in `event_log::store::personal`.

use serde_json::Value;

/// Whose personal data a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The stream's own aggregate id (Customer events).
    AggregateId,
    /// The customer id held in another field of the same event.
    Field(&'static str),
}

/// What a field reads as once its key is destroyed. Chosen so that every
/// erased event still deserialises (deserialising does not re-validate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// JSON null (optional fields).
    Null,
    /// The text `[erased]` (required text fields).
    Text,
    /// An address whose every line is `[erased]`.
    Address,
}

/// The placeholder text of an erased field.
pub const ERASED_TEXT: &str = "[erased]";

impl Erased {
    /// The JSON value a reader gets instead of the erased field.
    pub fn value(self) -> Value {
        match self {
            Erased::Null => Value::Null,
            Erased::Text => Value::from(ERASED_TEXT),
            Erased::Address => serde_json::json!({
                "line1": ERASED_TEXT, "line2": null, "city": ERASED_TEXT,
                "region": ERASED_TEXT, "postal_code": ERASED_TEXT,
            }),
        }
    }
}

/// One personal field of one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    /// Aggregate type.
    pub aggregate_type: &'static str,
    /// Event type.
    pub event_type: &'static str,
    /// The field (top level of the event's body).
    pub field: &'static str,
    /// Whose data it is.
    pub subject: Subject,
    /// What it reads as once erased.
    pub erased: Erased,
}

const fn customer(event_type: &'static str, field: &'static str, erased: Erased) -> PersonalField {
    PersonalField {
        aggregate_type: "Customer",
        event_type,
        field,
        subject: Subject::AggregateId,
        erased,
    }
}

/// Every personal field. `docs/events.md` marks the same fields "(PII)"; a
/// test keeps the two in step.
pub const PERSONAL_FIELDS: &[PersonalField] = &[
    customer("CustomerCreated", "name", Erased::Text),
    customer("CustomerCreated", "email", Erased::Null),
    customer("CustomerCreated", "phone", Erased::Null),
    customer("CustomerCreated", "birthday", Erased::Null),
    customer("CustomerContactUpdated", "name", Erased::Text),
    customer("CustomerContactUpdated", "email", Erased::Null),
    customer("CustomerContactUpdated", "phone", Erased::Null),
    customer("CustomerAddressAdded", "address", Erased::Address),
    customer("CustomerBirthdaySet", "birthday", Erased::Null),
    customer("EmailSuppressed", "email", Erased::Text),
    customer("CustomerNoteAdded", "text", Erased::Text),
    PersonalField {
        aggregate_type: "Conversation",
        event_type: "MessageAdded",
        field: "text",
        subject: Subject::Field("customer_id"),
        erased: Erased::Text,
    },
];

/// The event whose append destroys its aggregate's key.
pub const ERASURE_EVENT: (&str, &str) = ("Customer", "CustomerPersonalDataErased");

/// The personal fields of one event type.
pub fn personal_fields<'a>(
    aggregate_type: &'a str,
    event_type: &'a str,
) -> impl Iterator<Item = &'static PersonalField> + 'a {
    PERSONAL_FIELDS
        .iter()
        .filter(move |f| f.aggregate_type == aggregate_type && f.event_type == event_type)
}

/// Whether any event of this aggregate type holds personal data.
pub fn holds_personal_data(aggregate_type: &str) -> bool {
    PERSONAL_FIELDS
        .iter()
        .any(|f| f.aggregate_type == aggregate_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::all_event_schemas;

    #[test]
    fn every_listed_field_exists_and_its_placeholder_fits_its_type() {
        for f in PERSONAL_FIELDS {
            let schema = all_event_schemas()
                .into_iter()
                .find(|s| s.aggregate == f.aggregate_type && s.name == f.event_type)
                .unwrap_or_else(|| panic!("no event {}.{}", f.aggregate_type, f.event_type));
            let field = schema
                .fields
                .iter()
                .find(|x| x.name == f.field)
                .unwrap_or_else(|| {
                    panic!(
                        "{}.{} has no field {}",
                        f.aggregate_type, f.event_type, f.field
                    )
                });
            let fits = match f.erased {
                Erased::Null => field.ty.starts_with("Option"),
                Erased::Text => ["NonEmptyText", "Email", "PhoneNumber"].contains(&field.ty),
                Erased::Address => field.ty == "Address",
            };
            assert!(
                fits,
                "{}.{}: {:?} cannot stand in for a {}",
                f.event_type, f.field, f.erased, field.ty
            );
        }
    }

    #[test]
    fn every_customer_field_documented_as_pii_is_encrypted() {
        for s in all_event_schemas()
            .into_iter()
            .filter(|s| s.aggregate == "Customer")
        {
            for field in s.fields.iter().filter(|f| f.description.contains("(PII")) {
                assert!(
                    personal_fields(s.aggregate, s.name).any(|p| p.field == field.name),
                    "Customer.{}.{} is documented as PII but not listed in PERSONAL_FIELDS",
                    s.name,
                    field.name
                );
            }
        }
    }

    #[test]
    fn the_note_text_is_personal_although_its_doc_says_may_contain() {
        assert!(personal_fields("Customer", "CustomerNoteAdded").any(|p| p.field == "text"));
        assert!(holds_personal_data("Customer") && !holds_personal_data("Job"));
    }
}

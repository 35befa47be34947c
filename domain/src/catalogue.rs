//! The event catalogue: every event type of every aggregate, generated from the event enums
//! themselves (see the `domain_events!` macro), so the list cannot drift from the code.
//!
//! Used by `docs/events.md` (checked by `tests/event_catalogue.rs`) and by the `verify` tool to
//! spot unknown event types in a store.

use std::collections::BTreeSet;

/// Version of every event shape today. Bump per event, with an upcaster, when a shape changes.
pub const EVENT_VERSION: &str = "1.0";

/// One field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSchema {
    /// Field name as serialised.
    pub name: &'static str,
    /// Rust type, as written in the source.
    pub ty: &'static str,
    /// The field's doc comment.
    pub description: &'static str,
}

/// One event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSchema {
    /// The aggregate type (`Aggregate::TYPE`).
    pub aggregate: &'static str,
    /// The event type (`DomainEvent::event_type`).
    pub name: &'static str,
    /// The event version (`DomainEvent::event_version`).
    pub version: &'static str,
    /// The variant's doc comment.
    pub description: &'static str,
    /// Its fields, in declaration order.
    pub fields: &'static [FieldSchema],
}

/// Declares an aggregate's event enum (externally tagged, struct variants only) together with
/// its `DomainEvent` impl and its `SCHEMAS` list. Doc comments are the only attributes allowed
/// on variants and fields: they become the catalogue's descriptions.
macro_rules! domain_events {
    (
        aggregate = $agg:expr;
        $(#[doc = $edoc:literal])*
        pub enum $name:ident {
            $(
                $(#[doc = $vdoc:literal])*
                $variant:ident {
                    $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[doc = $edoc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(
                $(#[doc = $vdoc])*
                $variant { $( $(#[doc = $fdoc])* $field : $fty ),* }
            ),*
        }

        impl $name {
            /// Catalogue entries of every variant of this enum.
            pub const SCHEMAS: &'static [$crate::catalogue::EventSchema] = &[
                $(
                    $crate::catalogue::EventSchema {
                        aggregate: $agg,
                        name: stringify!($variant),
                        version: $crate::catalogue::EVENT_VERSION,
                        description: concat!("" $(, $vdoc)*),
                        fields: &[
                            $(
                                $crate::catalogue::FieldSchema {
                                    name: stringify!($field),
                                    ty: stringify!($fty),
                                    description: concat!("" $(, $fdoc)*),
                                }
                            ),*
                        ],
                    }
                ),*
            ];
        }

        impl cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                match self {
                    $( Self::$variant { .. } => stringify!($variant).to_owned(), )*
                }
            }

            fn event_version(&self) -> String {
                $crate::catalogue::EVENT_VERSION.to_owned()
            }
        }
    };
}
pub(crate) use domain_events;

/// Every event schema of every aggregate, grouped by aggregate.
pub fn all_event_schemas() -> Vec<&'static EventSchema> {
    crate::event::SCHEMAS.iter().copied().flatten().collect()
}

/// `(aggregate type, event type)` of every event, in catalogue order.
pub fn all_event_types() -> Vec<(&'static str, &'static str)> {
    all_event_schemas()
        .into_iter()
        .map(|s| (s.aggregate, s.name))
        .collect()
}

/// The set of `(aggregate type, event type)` pairs this build understands; anything else in a
/// store is unknown (written by a newer build, or corrupt).
pub fn known_event_types() -> BTreeSet<(&'static str, &'static str)> {
    all_event_types().into_iter().collect()
}

/// Whether an event type (at a version) is one this build can read.
pub fn is_known_event_type(aggregate: &str, event_type: &str, version: &str) -> bool {
    // Asked for every event a projection reads: a set built once.
    static KNOWN: std::sync::OnceLock<BTreeSet<(&'static str, &'static str, &'static str)>> =
        std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            all_event_schemas()
                .into_iter()
                .map(|s| (s.aggregate, s.name, s.version))
                .collect()
        })
        .contains(&(aggregate, event_type, version))
}

/// The catalogue as Markdown tables, one section per aggregate (the generated part of
/// `docs/events.md`).
pub fn catalogue_markdown() -> String {
    let mut out = String::new();
    let mut current = "";
    for s in all_event_schemas() {
        if s.aggregate != current {
            current = s.aggregate;
            out.push_str(&format!("\n## {current}\n"));
        }
        out.push_str(&format!(
            "\n### `{}` (v{})\n\n{}\n\n",
            s.name,
            s.version,
            s.description.trim()
        ));
        if s.fields.is_empty() {
            out.push_str("_No fields._\n");
        } else {
            out.push_str("| field | type | meaning |\n|---|---|---|\n");
            for f in s.fields {
                out.push_str(&format!(
                    "| `{}` | `{}` | {} |\n",
                    f.name,
                    f.ty.replace(' ', ""),
                    f.description.trim()
                ));
            }
        }
    }
    out
}

//! What a projection is: a named, versioned set of tables and a handler that
//! applies one event to them inside the runner's transaction.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use domain::Event;
use event_log::RecordedEvent;
use serde_json::Value;

use crate::db::{DbError, ReadTx};

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database refused.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The event does not read as its aggregate's event (a field missing or of the wrong
    /// shape): the write side never accepts such an event, so it was written by hand or
    /// damaged.
    #[error(
        "{aggregate_type} {aggregate_id} #{sequence} ({event_type}) does not decode: {reason}"
    )]
    Undecodable {
        /// Aggregate type.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// Sequence in its stream.
        sequence: u64,
        /// Event type.
        event_type: String,
        /// What serde said.
        reason: String,
    },
}

impl ProjectionError {
    /// Whether this event will fail the same way every time (the event's data,
    /// not the database's state, is at fault): only such an event is parked.
    pub fn is_poison(&self) -> bool {
        match self {
            ProjectionError::Undecodable { .. } => true,
            ProjectionError::Db(db) => db.refused_the_data(),
        }
    }
}

/// Physical table names for one run: live (`rm_x`) or shadow (`rm_x__shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The tables queries read.
    Live,
    /// The copy a rebuild fills before the swap.
    Shadow,
}

impl Slot {
    /// The physical name of a logical table.
    pub fn table(self, logical: &str) -> String {
        match self {
            Slot::Live => format!("rm_{logical}"),
            Slot::Shadow => format!("rm_{logical}__shadow"),
        }
    }

    /// Replaces `{table}` placeholders in `sql` with physical names.
    pub fn sql(self, tables: &[&str], sql: &str) -> String {
        let mut out = sql.to_string();
        for t in tables {
            out = out.replace(&format!("{{{t}}}"), &self.table(t));
        }
        out
    }
}

/// What a handler gets besides the event.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext {
    /// The business's time zone, for local dates.
    pub tz: Tz,
    /// Which tables to write.
    pub slot: Slot,
}

impl ApplyContext {
    /// The local date (business zone) of a UTC instant.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }
}

/// A boxed future, for object-safe async handlers.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A read model.
pub trait Projection: Send + Sync {
    /// Stable name (checkpoint key, CLI argument).
    fn name(&self) -> &'static str;
    /// Bump when the tables or the handler change: the runner then rebuilds.
    fn version(&self) -> i64;
    /// Logical table names (each physical table is `rm_<name>`).
    fn tables(&self) -> &'static [&'static str];
    /// `CREATE TABLE`/`CREATE INDEX` statements with `{table}` placeholders;
    /// `{gen}` is replaced by a fresh suffix so index names never collide
    /// across rebuilds.
    fn schema(&self) -> &'static [&'static str];
    /// Applies one event (most projections ignore most events).
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>>;
}

/// A stored event with its typed form, decoded once per batch for every projection.
/// Derefs to the [`RecordedEvent`] for its position, stream and metadata.
#[derive(Debug, Clone)]
pub struct Decoded {
    record: RecordedEvent,
    event: Result<Option<Event>, String>,
}

impl Decoded {
    /// Decodes a stored event. An aggregate type, event type or version this build does
    /// not know (a newer build wrote it during a rolling deploy) decodes to nothing: every
    /// projection skips it, as before.
    pub fn new(record: RecordedEvent) -> Self {
        let known = domain::catalogue::is_known_event_type(
            &record.aggregate_type,
            &record.event_type,
            &record.event_version,
        );
        let event = if known {
            match Event::decode(&record.aggregate_type, &record.payload) {
                Some(Ok(event)) => Ok(Some(event)),
                Some(Err(e)) => Err(without_quoted_values(&e.to_string())),
                None => Ok(None),
            }
        } else {
            Ok(None)
        };
        Decoded { record, event }
    }

    /// Decodes a batch.
    pub fn all(records: Vec<RecordedEvent>) -> Vec<Decoded> {
        records.into_iter().map(Decoded::new).collect()
    }

    /// The typed event of an aggregate type in `followed` (the aggregates the asking read
    /// model reads); `None` for another aggregate's, or one this build does not know.
    ///
    /// # Errors
    /// [`ProjectionError::Undecodable`], naming the stored event, for an event of a
    /// followed aggregate that does not decode: only the read models that follow an
    /// aggregate refuse its damaged events.
    pub fn event_of(&self, followed: &[&str]) -> Result<Option<&Event>, ProjectionError> {
        if !followed.contains(&self.record.aggregate_type.as_str()) {
            return Ok(None);
        }
        match &self.event {
            Ok(event) => Ok(event.as_ref()),
            Err(reason) => Err(ProjectionError::Undecodable {
                aggregate_type: self.record.aggregate_type.clone(),
                aggregate_id: self.record.aggregate_id.clone(),
                sequence: self.record.sequence,
                event_type: self.record.event_type.clone(),
                reason: reason.clone(),
            }),
        }
    }
}

impl std::ops::Deref for Decoded {
    type Target = RecordedEvent;
    fn deref(&self) -> &RecordedEvent {
        &self.record
    }
}

/// `reason` with every quoted value left out: serde quotes what it could not read, which
/// may be personal data, and the reason is kept in `projection_parked` and shown in health.
pub fn without_quoted_values(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut chars = reason.chars();
    while let Some(c) = chars.next() {
        match c {
            // serde writes a string it could not read as `"…"` (escaped as Rust does).
            '"' => {
                out.push_str("\"…\"");
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            // A number or variant it could not read, in backticks (field names stay).
            '`' if ["integer ", "point ", "variant "]
                .iter()
                .any(|w| out.ends_with(w)) =>
            {
                out.push_str("`…`");
                for q in chars.by_ref() {
                    if q == '`' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A value as the event stores it, as text: a string as itself, `None` for null, anything
/// else as its JSON (so a read-model column holds exactly what the payload said).
pub fn text<T: serde::Serialize + ?Sized>(v: &T) -> Option<String> {
    match serde_json::to_value(v).unwrap_or(Value::Null) {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// A JSON column of the first row (`T::default()` when there is no row yet).
///
/// # Errors
/// [`ProjectionError::Db`] naming the column when it holds something else: the read
/// model was damaged (a rebuild repairs it), so the projection stops rather than guess.
pub fn json_column<T: serde::de::DeserializeOwned + Default>(
    rows: &[crate::db::JsonRow],
    column: &str,
) -> Result<T, ProjectionError> {
    let Some(value) = rows.first().and_then(|r| r.get(column)) else {
        return Ok(T::default());
    };
    let parsed = match value {
        Value::String(s) => serde_json::from_str(s),
        other => serde_json::from_value(other.clone()),
    };
    parsed.map_err(|e| {
        DbError::new(format!("read-model column {column} does not decode: {e}")).into()
    })
}

/// The `kind` tag an internally tagged value is stored with (its serde name, so it
/// cannot drift from the payload).
pub fn kind_tag<T: serde::Serialize + ?Sized>(v: &T) -> Option<String> {
    match serde_json::to_value(v) {
        Ok(Value::Object(mut fields)) => match fields.remove("kind") {
            Some(Value::String(kind)) => Some(kind),
            _ => None,
        },
        _ => None,
    }
}

/// A value as compact JSON (keys sorted), for JSON columns.
pub fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_value(v).unwrap_or(Value::Null).to_string()
}

/// RFC 3339 with seconds, UTC (`Z`): sortable as text.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_leave_quoted_values_out_of_a_reason() {
        let reason =
            r#"invalid type: string "12 Main St, Austin", expected struct Address at line 1"#;
        assert_eq!(
            without_quoted_values(reason),
            r#"invalid type: string "…", expected struct Address at line 1"#
        );
        assert_eq!(
            without_quoted_values("missing field `customer_id`"),
            "missing field `customer_id`"
        );
    }
}

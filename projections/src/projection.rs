//! What a projection is: a named, versioned set of tables and a handler that
//! applies one event to them inside the runner's transaction.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use event_log::RecordedEvent;
use serde_json::Value;

use crate::db::{DbError, ReadTx};

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database refused.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The event lacks a field the projection needs.
    #[error("{event_type} is missing {field}")]
    MissingField {
        /// Event type.
        event_type: String,
        /// The field.
        field: &'static str,
    },
}

impl ProjectionError {
    /// Whether this event will fail the same way every time (the event's data,
    /// not the database's state, is at fault): only such an event is parked.
    pub fn is_poison(&self) -> bool {
        match self {
            ProjectionError::MissingField { .. } => true,
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
        e: &'a RecordedEvent,
    ) -> BoxFut<'a, Result<(), ProjectionError>>;
}

/// Field access on an event payload: `{"EventType": {fields}}`.
#[derive(Debug)]
pub struct Fields<'a> {
    event_type: &'a str,
    body: &'a Value,
}

impl<'a> Fields<'a> {
    /// The fields of an event.
    pub fn of(e: &'a RecordedEvent) -> Self {
        Fields {
            event_type: &e.event_type,
            body: e.payload.get(&e.event_type).unwrap_or(&Value::Null),
        }
    }

    /// A field as a JSON value (Null when absent).
    pub fn value(&self, field: &str) -> &'a Value {
        self.body.get(field).unwrap_or(&Value::Null)
    }

    /// An optional string field.
    pub fn opt_str(&self, field: &str) -> Option<String> {
        match self.value(field) {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// A required string field.
    ///
    /// # Errors
    /// [`ProjectionError::MissingField`].
    pub fn str(&self, field: &'static str) -> Result<String, ProjectionError> {
        self.opt_str(field).ok_or(ProjectionError::MissingField {
            event_type: self.event_type.to_string(),
            field,
        })
    }

    /// An integer field (0 when absent).
    pub fn int(&self, field: &str) -> i64 {
        self.value(field).as_i64().unwrap_or(0)
    }

    /// A timestamp field (`at` by default), falling back to the epoch.
    pub fn time(&self, field: &str) -> DateTime<Utc> {
        self.value(field)
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    /// The event's `at` as RFC 3339.
    pub fn at(&self) -> String {
        rfc3339(self.time("at"))
    }
}

/// RFC 3339 with seconds, UTC (`Z`): sortable as text.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

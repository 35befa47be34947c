//! Health, version, read-your-writes and the audit trail.

use async_graphql::{Context, Object, SimpleObject, ID};
use domain::ports::Role;

use super::context::{parts, Allow};
use super::errors;
use super::paging::{self, Page, PageArgs};
use super::subscriptions::LogEvent;
use crate::state::{BUILD, VERSION};
use async_graphql::connection::{Connection, Edge, EmptyFields};

/// The server's health as GraphQL sees it.
#[derive(Debug, SimpleObject)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// Event store engine (`postgresql`, `sqlite`).
    pub engine: String,
    /// Position of the last event in the global log (opaque).
    pub head_position: Option<String>,
}

/// The running version.
#[derive(Debug, SimpleObject)]
pub struct VersionInfo {
    /// Semantic version of the server.
    pub version: String,
    /// Git commit it was built from.
    pub build: String,
}

/// One event in an aggregate's history.
#[derive(Debug, SimpleObject)]
pub struct AuditEntry {
    /// Sequence within the aggregate.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// Who: `staff:<id>`, `customer:<id>`, `webhook:<vendor>`, `system:<what>`.
    pub actor: Option<String>,
    /// The request that carried the command.
    pub request_id: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// When (RFC 3339, UTC).
    pub occurred_at: Option<String>,
    /// The event's data.
    pub payload: async_graphql::Json<serde_json::Value>,
}

/// One thing an actor did.
#[derive(Debug, SimpleObject)]
pub struct ActorAuditEntry {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: ID,
    /// Sequence within the aggregate.
    pub sequence: i64,
    /// Event type.
    pub event_type: String,
    /// The request that carried the command.
    pub request_id: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// When (RFC 3339, UTC).
    pub occurred_at: Option<String>,
}

/// System queries.
#[derive(Debug, Default)]
pub struct SystemQuery;

#[Object]
impl SystemQuery {
    /// Health of the server and its event store.
    async fn health(&self, ctx: &Context<'_>) -> async_graphql::Result<Health> {
        let (state, _) = parts(ctx)?;
        let head = state.log.head().await.ok();
        Ok(Health {
            status: if head.is_some() {
                "ok".into()
            } else {
                "degraded".into()
            },
            engine: state.log.engine().into(),
            head_position: head.map(|p| p.to_string()),
        })
    }

    /// The running version and build.
    async fn version(&self) -> VersionInfo {
        VersionInfo {
            version: VERSION.into(),
            build: BUILD.into(),
        }
    }

    /// Read-your-writes: waits (at most `timeoutMs`, ≤ 10 000) until the
    /// read models include `position` (from a mutation payload). True when they do.
    /// Signed-in callers only.
    // It holds a request open for up to 10 s: not for anonymous callers.
    #[graphql(guard = "Allow::SignedIn")]
    async fn sync(
        &self,
        ctx: &Context<'_>,
        position: String,
        #[graphql(default = 2000)] timeout_ms: i32,
    ) -> async_graphql::Result<bool> {
        let (state, rc) = parts(ctx)?;
        let p: commands::LogPosition = position
            .parse()
            .map_err(|_| errors::invalid("position", "not a position from a payload"))?;
        let t = std::time::Duration::from_millis(timeout_ms.clamp(0, 10_000) as u64);
        state
            .projections
            .wait_for(p, t)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))
    }

    /// What one actor did, newest first (managers and admins). `actor` is
    /// `staff:<id>`, `customer:<id>`, `webhook:<vendor>` or `system:<what>`.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn audit_by_actor(
        &self,
        ctx: &Context<'_>,
        actor: String,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<ActorAuditEntry>> {
        let (state, rc) = parts(ctx)?;
        let s = |r: &projections::JsonRow, k: &str| {
            r.get(k).and_then(|v| v.as_str()).map(str::to_string)
        };
        paging::of_listing(
            state,
            rc,
            projections::crm::activity::audit_of_actor(&actor),
            PageArgs::new(after, before, first, last),
            |r| ActorAuditEntry {
                aggregate_type: s(r, "aggregate_type").unwrap_or_default(),
                aggregate_id: ID(s(r, "aggregate_id").unwrap_or_default()),
                sequence: r
                    .get("sequence")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(0),
                event_type: s(r, "event_type").unwrap_or_default(),
                request_id: s(r, "request_id"),
                client_ip: s(r, "client_ip"),
                occurred_at: s(r, "occurred_at"),
            },
        )
        .await
    }

    /// The global event log in commit order, after `after` (a position from an earlier page
    /// or a mutation payload), optionally only some event or aggregate types (admins). Each
    /// edge's cursor is the event's position. At most 10,000 events are examined per
    /// request; `scannedTo` is where this page's scan stopped: pass it as `after` to go on
    /// when a filtered page came back short.
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn event_log(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        event_types: Option<Vec<String>>,
        aggregate_type: Option<String>,
        #[graphql(default = 100)] first: i32,
    ) -> async_graphql::Result<Connection<String, LogEvent, ScannedTo, EmptyFields>> {
        let (state, rc) = parts(ctx)?;
        const SCAN: usize = 10_000;
        let want = usize::try_from(first)
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| errors::invalid("first", "1 to 500"))?;
        let mut at = match &after {
            Some(a) => a
                .parse::<commands::LogPosition>()
                .map_err(|_| errors::invalid("after", "not a position from this log"))?,
            None => commands::LogPosition::START,
        };
        let keep = |e: &commands::RecordedEvent| {
            event_types
                .as_ref()
                .is_none_or(|t| t.contains(&e.event_type))
                && aggregate_type
                    .as_ref()
                    .is_none_or(|a| *a == e.aggregate_type)
        };
        let (mut found, mut scanned, mut end) = (Vec::new(), 0usize, false);
        'scan: loop {
            let batch = state
                .log
                .read_all(at, 1_000)
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?;
            if batch.is_empty() {
                end = true;
                break;
            }
            for e in batch {
                if found.len() == want && keep(&e) {
                    // The next page starts here: leave it unexamined.
                    break 'scan;
                }
                at = e.position;
                scanned += 1;
                if keep(&e) {
                    found.push(e);
                }
                if scanned >= SCAN {
                    break 'scan;
                }
            }
        }
        let more = !end;
        let mut c = Connection::with_additional_fields(
            after.is_some(),
            more,
            ScannedTo {
                scanned_to: at.to_string(),
            },
        );
        c.edges.extend(
            found
                .into_iter()
                .map(|e| Edge::new(e.position.to_string(), LogEvent::from(e))),
        );
        Ok(c)
    }

    /// The full history of one aggregate (managers and admins).
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn audit_trail(
        &self,
        ctx: &Context<'_>,
        aggregate_type: String,
        id: ID,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<AuditEntry>> {
        let (state, rc) = parts(ctx)?;
        let events = state
            .log
            .load_stream(&aggregate_type, &id, 0)
            .await
            .map_err(|e| errors::internal(&rc.request_id, &e))?;
        let entries = events
            .into_iter()
            .map(|e| {
                let m = |k: &str| {
                    e.metadata
                        .get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                // An erased customer's personal fields read as placeholders (the
                // key is destroyed); the non-personal facts stay visible.
                let payload = super::subscriptions::without_secrets(e.payload.clone());
                AuditEntry {
                    sequence: e.sequence as i64,
                    event_type: e.event_type.clone(),
                    actor: m("actor"),
                    request_id: m("request_id"),
                    client_ip: m("client_ip"),
                    occurred_at: m("occurred_at"),
                    payload: async_graphql::Json(payload),
                }
            })
            .collect();
        paging::of_vec(entries, PageArgs::new(after, before, first, last)).await
    }
}

/// Where an `eventLog` page's scan stopped.
#[derive(Debug, SimpleObject)]
pub struct ScannedTo {
    /// The last position examined: pass it as `after` for the next page.
    pub scanned_to: String,
}

/// One scheduled-job run.
#[derive(Debug, SimpleObject)]
pub struct JobRun {
    /// Run id.
    pub id: ID,
    /// Job name (`send-review-requests`…).
    pub job: String,
    /// The slot it ran for (RFC 3339, UTC).
    pub slot: String,
    /// `scheduled`, `manual` or `catch_up`.
    pub trigger: String,
    /// `running`, `finished` or `failed`.
    pub outcome: String,
    /// Started at.
    pub started_at: String,
    /// Ended at.
    pub ended_at: Option<String>,
    /// Failed attempts.
    pub failed_attempts: i64,
    /// The last error.
    pub last_error: Option<String>,
    /// Things examined.
    pub processed: Option<i64>,
    /// Things changed.
    pub changed: Option<i64>,
    /// Things skipped.
    pub skipped: Option<i64>,
    /// Job-specific figures.
    pub figures: async_graphql::Json<std::collections::BTreeMap<String, i64>>,
}

/// The scheduled-job run log.
#[derive(Debug, Default)]
pub struct JobRunQuery;

#[Object]
impl JobRunQuery {
    /// Runs started since `since` (default: the last 7 days), newest first (managers).
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn job_runs(
        &self,
        ctx: &Context<'_>,
        since: Option<chrono::DateTime<chrono::Utc>>,
        job: Option<String>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<JobRun>> {
        let (state, rc) = parts(ctx)?;
        let since = since.unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::days(7));
        let mut runs = worker::scheduler::list_runs(
            &state.projections,
            Some(since),
            std::time::Duration::from_secs(2),
        )
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
        runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        let text = |v: serde_json::Value| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        };
        let runs = runs
            .into_iter()
            .filter(|r| job.as_deref().is_none_or(|j| r.job == j))
            .map(|r| JobRun {
                id: ID(r.run_id.clone()),
                job: r.job.clone(),
                slot: super::auth::rfc3339(r.slot),
                trigger: text(serde_json::to_value(r.trigger).unwrap_or_default()),
                outcome: text(serde_json::to_value(r.outcome).unwrap_or_default()),
                started_at: super::auth::rfc3339(r.started_at),
                ended_at: r.ended_at.map(super::auth::rfc3339),
                failed_attempts: i64::from(r.failed_attempts),
                last_error: r.last_error.clone(),
                processed: r.counts.map(|c| c.processed as i64),
                changed: r.counts.map(|c| c.changed as i64),
                skipped: r.counts.map(|c| c.skipped as i64),
                figures: async_graphql::Json(r.figures.clone()),
            })
            .collect();
        paging::of_vec(runs, PageArgs::new(after, before, first, last)).await
    }
}

/// What `reportTestError` raises.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TestErrorKind {
    /// An error-level log event; the request succeeds.
    Error,
    /// A panic inside the request: the client gets `INTERNAL` (HTTP 500).
    Panic,
}

/// Result of `reportTestError`.
#[derive(Debug, SimpleObject)]
pub struct TestErrorReport {
    /// Whether an error reporter (Sentry) is installed to receive it.
    pub reported: bool,
    /// The request id the report carries (also the `x-request-id` header).
    pub request_id: String,
}

/// Checking error reporting after a deploy.
#[derive(Debug, Default)]
pub struct ErrorReportingMutation;

#[Object]
impl ErrorReportingMutation {
    /// Raises a test error so an admin can see it arrive in Sentry (`SENTRY_DSN`), with the
    /// release and this request's id. `note` is included as written, after the scrubbing
    /// every report gets (emails and phone numbers removed).
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn report_test_error(
        &self,
        ctx: &Context<'_>,
        kind: TestErrorKind,
        #[graphql(validator(max_length = 200))] note: Option<String>,
    ) -> async_graphql::Result<TestErrorReport> {
        let (_, rc) = parts(ctx)?;
        let note = note.unwrap_or_default();
        match kind {
            TestErrorKind::Panic => panic!("test panic requested by an admin: {note}"),
            TestErrorKind::Error => {
                tracing::error!(request_id = %rc.request_id, note = %note, "test error requested by an admin");
            }
        }
        Ok(TestErrorReport {
            reported: worker::error_reporting::active(),
            request_id: rc.request_id.clone(),
        })
    }
}

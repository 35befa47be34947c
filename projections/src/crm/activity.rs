//! The activity and audit read model.

use domain::job::{BookingSource, JobEvent};
use domain::portal::PortalAccountEvent;

use super::prelude::*;

/// Portal activity and the audit trail (who did what, when, from where).
#[derive(Debug)]
pub struct Activity;

const ACTIVITY: &[&str] = &["portal_activity", "audit_trail"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[domain::portal::AGGREGATE_TYPE, domain::job::AGGREGATE_TYPE];

impl Projection for Activity {
    fn name(&self) -> &'static str {
        "activity"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        ACTIVITY
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {portal_activity} (
                aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
                detail TEXT, at TEXT NOT NULL, local_date TEXT NOT NULL, PRIMARY KEY (aggregate_id, sequence))",
            "CREATE INDEX {portal_activity}_date_{gen} ON {portal_activity} (local_date)",
            // Keyed by stream and sequence, not log position, so that an
            // export/import or a rebuild yields the same rows.
            "CREATE TABLE {audit_trail} (
                aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, sequence BIGINT NOT NULL, event_type TEXT NOT NULL,
                actor TEXT, request_id TEXT, correlation_id TEXT, client_ip TEXT, occurred_at TEXT,
                PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
            "CREATE INDEX {audit_trail}_actor_{gen} ON {audit_trail} (actor, occurred_at)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let m = |k: &str| {
                e.metadata
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            exec(tx, ctx, ACTIVITY, "INSERT INTO {audit_trail} (aggregate_type, aggregate_id, sequence, event_type, actor, request_id, correlation_id, client_ip, occurred_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING",
                &[e.aggregate_type.clone().into(), e.aggregate_id.clone().into(), (e.sequence as i64).into(), e.event_type.clone().into(),
                  m("actor").into(), m("request_id").into(), m("correlation_id").into(), m("client_ip").into(), m("occurred_at").into()]).await?;
            // The audit trail above takes every stored event, one this build does not know
            // included; only the portal activity needs the typed event.
            let Some(event) = e.event_of(FOLLOWS)? else {
                return Ok(());
            };
            let portal_kind = match event {
                Event::PortalAccount(event) => match event {
                    PortalAccountEvent::PortalAccountRegistered {
                        customer_id, at, ..
                    } => Some((customer_id, Some("registered".to_owned()), None, *at)),
                    PortalAccountEvent::PortalLoginRecorded { customer_id, at } => {
                        Some((customer_id, Some("login".to_owned()), None, *at))
                    }
                    PortalAccountEvent::PortalActivityRecorded {
                        customer_id,
                        activity,
                        at,
                    } => Some((customer_id, kind_tag(activity), Some(json(activity)), *at)),
                    PortalAccountEvent::PortalPasswordChanged { .. } => None,
                },
                Event::Job(JobEvent::JobBooked {
                    customer_id,
                    source: BookingSource::Online,
                    at,
                    ..
                }) => Some((customer_id, Some("booking".to_owned()), None, *at)),
                _ => None,
            };
            if let Some((customer_id, kind, detail, at)) = portal_kind {
                exec(tx, ctx, ACTIVITY, "INSERT INTO {portal_activity} (aggregate_id, sequence, customer_id, kind, detail, at, local_date)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (aggregate_id, sequence) DO NOTHING",
                    &[e.aggregate_id.clone().into(), (e.sequence as i64).into(), customer_id.to_string().into(), kind.into(), detail.into(),
                      rfc3339(at).into(), ctx.local_date(at).to_string().into()]).await?;
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- queries

/// What `actor` did, newest first.
pub fn audit_of_actor(actor: &str) -> crate::Listing {
    crate::Listing::new(
        "rm_audit_trail WHERE actor = $1",
        "occurred_at DESC, aggregate_type, aggregate_id, sequence DESC",
        vec![actor.into()],
    )
}

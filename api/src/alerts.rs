//! Alerts (issue #15): someone is told when the business stops working by itself. A watcher
//! looks every [`CHECK_EVERY`] at what health reads — each job's latest run, each
//! projection and policy, the messages that gave up — and keeps one *incident* per thing
//! that is wrong (`job:<name>`, `projection:<name>`, `projection:<name>:parked`,
//! `policy:<name>@<host:port>`, `messages:<channel>`). An incident is announced once when it opens (not per retry
//! or per tick) and once when it is over: to Sentry (when `SENTRY_DSN` is set) and by email
//! to `ALERT_EMAIL` through the outbox. Incidents live in `alert_incidents`; opening and
//! closing are conditional writes, so of several instances exactly one announces each; an
//! email that could not be queued is tried again by later looks (for a day).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use domain::consent::Channel;
use domain::message::{MessageCommand, MessageKind, Recipient};
use domain::values::Email;
use projections::Param;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often the watcher looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why a message counts as given up (the vendor refused it, retries ran out, or nobody
/// knows whether it went): not a missing consent or a vendor left unconfigured on purpose.
const GAVE_UP: &str = "'rejected', 'retries_exhausted', 'outcome_unknown'";

/// What is wrong now: incident key → one line saying what (no personal data: names of
/// jobs, projections and policies, positions and counts only).
async fn wrong_now(state: &AppState) -> Result<BTreeMap<String, String>, String> {
    let mut wrong = BTreeMap::new();
    for p in state
        .projections
        .status()
        .await
        .map_err(|e| e.to_string())?
    {
        if p.state == "failed" {
            wrong.insert(
                format!("projection:{}", p.name),
                format!(
                    "projection {} stopped at position {}",
                    p.name,
                    p.error_position.as_deref().unwrap_or("?")
                ),
            );
        }
        if p.parked > 0 {
            wrong.insert(
                format!("projection:{}:parked", p.name),
                format!("projection {} parked {} event(s)", p.name, p.parked),
            );
        }
    }
    // A policy's failure is known to the instance it happened on only: its incident is
    // that instance's, and only that instance closes it.
    for p in state.policies.status() {
        if p.last_error.is_some() {
            wrong.insert(
                format!("policy:{}@{}", p.name, instance()),
                format!("policy {} failed on {}", p.name, instance()),
            );
        }
    }
    let scheduler = crate::scheduler::status(state)
        .await
        .map_err(|e| e.to_string())?;
    for j in scheduler.jobs {
        // The latest run that ended (one in progress neither opens nor closes anything).
        let failed = match (j.recent_failures.first(), j.last_success.as_ref()) {
            (Some(f), Some(s)) => (f.started_at > s.started_at).then_some(f),
            (f, _) => f,
        };
        if let Some(run) = failed {
            wrong.insert(
                format!("job:{}", j.job),
                format!(
                    "job {} failed after {} attempt(s)",
                    j.job, run.failed_attempts
                ),
            );
        }
    }
    // A channel is failing while two or more messages queued after the newest one it sent
    // (this week) gave up: one refused number is not an outage. Queue times, not update
    // times: a late delivery report on an old message says nothing about sending now.
    let week_ago =
        (Utc::now() - chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let rows = state
        .projections
        .query(
            &format!(
                "SELECT m.channel, COUNT(*) AS n FROM rm_messages m
                 WHERE m.kind <> 'alert' AND m.status = 'not_sent' AND m.not_sent_reason IN ({GAVE_UP})
                   AND m.queued_at > $1
                   AND m.queued_at > COALESCE((SELECT MAX(s.queued_at) FROM rm_messages s
                        WHERE s.channel = m.channel AND s.status = 'sent' AND s.kind <> 'alert'
                          AND s.queued_at > $1), '')
                 GROUP BY m.channel"
            ),
            &[Param::from(week_ago)],
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in rows {
        let channel = r
            .get("channel")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let n = r.get("n").and_then(serde_json::Value::as_i64).unwrap_or(0);
        if n >= 2 {
            wrong.insert(
                format!("messages:{channel}"),
                format!(
                    "{channel} messages are not going out: {n} gave up since the last one sent"
                ),
            );
        }
    }
    Ok(wrong)
}

/// One look: opens what is newly wrong, closes what is right again, and announces both.
///
/// # Errors
/// What could not be read or written, as text.
pub async fn check(state: &AppState) -> Result<(), String> {
    let db = state.projections.db();
    // Read before looking: an incident another instance opens meanwhile is not closed here.
    let now = Utc::now().timestamp_millis();
    let open = db
        .query(
            "SELECT incident, summary, opened_at_ms FROM alert_incidents WHERE closed_at_ms IS NULL",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let already: std::collections::BTreeSet<String> = open
        .iter()
        .filter_map(|r| {
            r.get("incident")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .collect();
    retry_announcements(state, now).await?;
    let wrong = wrong_now(state).await?;
    // Only what is not open already is written (the single writer of SQLite stays free).
    for (incident, summary) in wrong.iter().filter(|(k, _)| !already.contains(*k)) {
        let opened = db
            .execute(
                "INSERT INTO alert_incidents (incident, summary, opened_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (incident) DO UPDATE SET summary = excluded.summary,
                   opened_at_ms = excluded.opened_at_ms, closed_at_ms = NULL,
                   announced_open_at_ms = NULL, announced_over_at_ms = NULL
                 WHERE alert_incidents.closed_at_ms IS NOT NULL",
                &[
                    incident.as_str().into(),
                    summary.as_str().into(),
                    now.into(),
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
        if opened == 1 && announce(state, incident, summary, now, false, false).await {
            announced(state, incident, now, false).await?;
        }
    }
    for r in open {
        let Some(incident) = r.get("incident").and_then(|v| v.as_str()) else {
            continue;
        };
        if wrong.contains_key(incident) || !mine_to_judge(incident) {
            continue;
        }
        let opened_at = r
            .get("opened_at_ms")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(now);
        // The same opening that was read: one reopened since is left to the next look.
        let closed = db
            .execute(
                "UPDATE alert_incidents SET closed_at_ms = $2
                 WHERE incident = $1 AND closed_at_ms IS NULL AND opened_at_ms = $3",
                &[Param::from(incident), now.into(), opened_at.into()],
            )
            .await
            .map_err(|e| e.to_string())?;
        if closed == 1 {
            let summary = r
                .get("summary")
                .and_then(|v| v.as_str())
                .unwrap_or(incident);
            if announce(state, incident, summary, opened_at, true, false).await {
                announced(state, incident, opened_at, true).await?;
            }
        }
    }
    Ok(())
}

/// This instance, as policy incidents name it: the host and the listen port, the same
/// after a restart (which then closes what its predecessor opened).
fn instance() -> &'static str {
    INSTANCE.get().map_or("unknown", String::as_str)
}

static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether this instance may close `incident`: any shared one, and only its own policy ones.
fn mine_to_judge(incident: &str) -> bool {
    match incident.strip_prefix("policy:") {
        Some(rest) => rest
            .rsplit_once('@')
            .is_some_and(|(_, who)| who == instance()),
        None => true,
    }
}

/// Tells Sentry (unless `retry`) and `ALERT_EMAIL`; returns whether the email is queued (or
/// none is wanted). One not queued is tried again by a later look ([`retry_announcements`]).
async fn announce(
    state: &AppState,
    incident: &str,
    summary: &str,
    opened_at_ms: i64,
    over: bool,
    retry: bool,
) -> bool {
    let (subject, level) = if over {
        (format!("Resolved: {summary}"), sentry::Level::Info)
    } else {
        (format!("Alert: {summary}"), sentry::Level::Error)
    };
    if over {
        tracing::info!(incident, "alert resolved");
    } else {
        tracing::warn!(incident, "alert raised");
    }
    if crate::error_reporting::active() && !retry {
        sentry::with_scope(
            |scope| scope.set_tag("alert", incident),
            || sentry::capture_message(&subject, level),
        );
    }
    let Some(address) = state
        .config
        .alert_email
        .as_deref()
        .and_then(|a| Email::parse(a).ok())
    else {
        return true;
    };
    let public = state
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.bind_addr));
    let body = if over {
        format!("{summary}: this is over now.\n\nDetail: {public}/api/health/detailed")
    } else {
        format!(
            "{summary}.\n\nThe business may not be working by itself until this is fixed. \
             Detail: {public}/api/health/detailed (and docs/operations.md). You will get one \
             more email when it is over."
        )
    };
    // One message per incident and phase: a second instance addresses the same stream.
    let cause = format!(
        "Alert:{incident}:{opened_at_ms}:{}",
        if over { "over" } else { "open" }
    );
    let id = domain::ids::OutboundMessageId::for_cause(&cause);
    let meta = commands::EventMetadata::new(commands::Actor::System("alerts".into()), Utc::now());
    let queued = state
        .crm
        .messages()
        .execute(
            id,
            domain::Actor::System,
            MessageCommand::Queue {
                kind: MessageKind::Alert,
                channel: Channel::Email,
                recipient: Recipient::Email { address },
                cause,
                subject: Some(subject),
                body,
            },
            &meta,
        )
        .await;
    match queued {
        Ok(_) => true,
        // Queued by an earlier try whose answer was lost: the message exists.
        Err(error) => {
            let exists = state
                .crm
                .messages()
                .load(id)
                .await
                .is_ok_and(|m| m.aggregate.recipient().is_some());
            if !exists {
                tracing::warn!(incident, %error, "alert email not queued; trying again in a minute");
            }
            exists
        }
    }
}

/// Marks an announcement done.
async fn announced(
    state: &AppState,
    incident: &str,
    opened_at_ms: i64,
    over: bool,
) -> Result<(), String> {
    let column = if over {
        "announced_over_at_ms"
    } else {
        "announced_open_at_ms"
    };
    state
        .projections
        .db()
        .execute(
            &format!("UPDATE alert_incidents SET {column} = $3 WHERE incident = $1 AND opened_at_ms = $2"),
            &[Param::from(incident), opened_at_ms.into(), Utc::now().timestamp_millis().into()],
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Announcements whose email could not be queued (or whose instance died right after
/// opening or closing), a minute on: tried again, at most once a minute per incident and
/// phase, for a day.
async fn retry_announcements(state: &AppState, now: i64) -> Result<(), String> {
    static LAST_TRY: std::sync::Mutex<BTreeMap<(String, bool), i64>> =
        std::sync::Mutex::new(BTreeMap::new());
    let rows = state
        .projections
        .query(
            "SELECT incident, summary, opened_at_ms, closed_at_ms, announced_open_at_ms,
                    announced_over_at_ms FROM alert_incidents
             WHERE (announced_open_at_ms IS NULL AND opened_at_ms < $1 AND opened_at_ms > $2)
                OR (closed_at_ms IS NOT NULL AND announced_over_at_ms IS NULL
                    AND closed_at_ms < $1 AND closed_at_ms > $2)",
            &[(now - 60_000).into(), (now - 86_400_000).into()],
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in rows {
        let text = |k: &str| {
            r.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let missing = |k: &str| r.get(k).is_none_or(serde_json::Value::is_null);
        let (incident, summary) = (text("incident"), text("summary"));
        let opened_at = r
            .get("opened_at_ms")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(now);
        // Each phase on its own: the opening first, then the end once it is over.
        let mut phases = Vec::new();
        if missing("announced_open_at_ms") {
            phases.push(false);
        }
        if !missing("closed_at_ms") && missing("announced_over_at_ms") {
            phases.push(true);
        }
        for over in phases {
            let key = (incident.clone(), over);
            {
                let mut tried = LAST_TRY.lock().unwrap_or_else(|e| e.into_inner());
                if tried.get(&key).is_some_and(|at| now - at < 60_000) {
                    continue;
                }
                tried.insert(key, now);
            }
            if announce(state, &incident, &summary, opened_at, over, true).await {
                announced(state, &incident, opened_at, over).await?;
            }
        }
    }
    Ok(())
}

/// Runs [`check`] every [`CHECK_EVERY`] until `stop`.
pub fn spawn(state: AppState, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let _ = INSTANCE.set(format!("{host}:{}", state.config.bind_addr.port()));
    tokio::spawn(async move {
        loop {
            if let Err(error) = check(&state).await {
                tracing::warn!(%error, "alert check failed; trying again");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    })
}

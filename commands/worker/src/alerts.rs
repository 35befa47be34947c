//! Alerts (issue #15): someone is told when the business stops working by itself. A watcher
//! looks every [`CHECK_EVERY`] at what health reads — each job's latest run, each
//! projection and policy, the messages that gave up — and keeps one *incident* per thing
//! that is wrong (`job:<name>`, `projection:<name>`, `projection:<name>:parked`,
//! `policy:<name>@<host:port>`, `messages:<channel>`). An incident is announced once when it
//! opens (not per retry or per tick) and once when it is over: to Sentry (when a client is
//! installed) and by email to `ALERT_EMAIL` through the outbox. Incidents live in
//! `alert_incidents` (all of that table's SQL is here); opening and closing are conditional
//! writes, so of several instances exactly one announces each; an email that could not be
//! queued is tried again by later looks (for a day).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use commands::{Crm, PolicyRunner};
use domain::consent::Channel;
use domain::message::{MessageCommand, MessageKind, Recipient};
use domain::values::Email;
use projections::{row, JsonRow, Param, ProjectionRunner};
use tokio_util::sync::CancellationToken;

/// How often the watcher looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Where alerts go, and who this instance is.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// `ALERT_EMAIL`: who is emailed (none: Sentry and the log only).
    pub alert_email: Option<Email>,
    /// The server's public address, for the link to its detailed health.
    pub public_url: String,
    /// This instance as policy incidents name it: the host and the listen port, the same
    /// after a restart (which then closes what its predecessor opened).
    pub instance: String,
    /// The business's zone (the scheduler's runs are read in it).
    pub business_timezone: Tz,
}

impl AlertSettings {
    /// This machine's host name and `port`: [`AlertSettings::instance`].
    pub fn instance_on_port(port: u16) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!("{host}:{port}")
    }
}

/// The watcher: what it reads, and where it writes.
#[derive(Clone, Debug)]
pub struct Alerts {
    crm: Crm,
    projections: ProjectionRunner,
    policies: PolicyRunner,
    settings: Arc<AlertSettings>,
    /// When each incident's announcement (per phase) was last tried again.
    last_try: Arc<Mutex<BTreeMap<(String, bool), i64>>>,
}

/// One row of `alert_incidents` as the watcher reads it.
struct Incident {
    incident: String,
    summary: String,
    opened_at_ms: i64,
    closed_at_ms: Option<i64>,
    announced_open_at_ms: Option<i64>,
    announced_over_at_ms: Option<i64>,
}

impl Incident {
    fn of(r: &JsonRow) -> Result<Self, String> {
        let opt_int = |k: &str| match r.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(_) => row::int(r, k).map(Some),
        };
        (|| {
            Ok::<_, projections::DbError>(Incident {
                incident: row::text(r, "incident")?,
                summary: row::text(r, "summary")?,
                opened_at_ms: row::int(r, "opened_at_ms")?,
                closed_at_ms: opt_int("closed_at_ms")?,
                announced_open_at_ms: opt_int("announced_open_at_ms")?,
                announced_over_at_ms: opt_int("announced_over_at_ms")?,
            })
        })()
        .map_err(|e| e.to_string())
    }
}

impl Alerts {
    /// A watcher over the application's log, read models and policies.
    pub fn new(
        crm: Crm,
        projections: ProjectionRunner,
        policies: PolicyRunner,
        settings: AlertSettings,
    ) -> Self {
        Alerts {
            crm,
            projections,
            policies,
            settings: Arc::new(settings),
            last_try: Arc::default(),
        }
    }

    /// What is wrong now: incident key → one line saying what (no personal data: names of
    /// jobs, projections and policies, positions and counts only).
    async fn wrong_now(&self) -> Result<BTreeMap<String, String>, String> {
        let mut wrong = BTreeMap::new();
        for p in self.projections.status().await.map_err(|e| e.to_string())? {
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
        let instance = &self.settings.instance;
        for p in self.policies.status() {
            if p.last_error.is_some() {
                wrong.insert(
                    format!("policy:{}@{instance}", p.name),
                    format!("policy {} failed on {instance}", p.name),
                );
            }
        }
        let now = Utc::now();
        let since = now - chrono::Duration::days(15);
        // Read as they stand: the watcher must look even while readers are held back.
        let runs = crate::scheduler::list_runs(&self.projections, Some(since), Duration::ZERO)
            .await
            .map_err(|e| e.to_string())?;
        for j in crate::scheduler::status_of(runs, self.settings.business_timezone, now).jobs {
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
        // A channel is failing while two or more messages queued after the newest one it
        // sent (this week) gave up: one refused number is not an outage.
        let week_ago =
            (now - chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let given_up =
            projections::crm::messages::given_up_since_last_sent(self.projections.db(), &week_ago)
                .await
                .map_err(|e| e.to_string())?;
        for (channel, n) in given_up.into_iter().filter(|(_, n)| *n >= 2) {
            wrong.insert(
                format!("messages:{channel}"),
                format!(
                    "{channel} messages are not going out: {n} gave up since the last one sent"
                ),
            );
        }
        Ok(wrong)
    }

    /// One look: opens what is newly wrong, closes what is right again, and announces both.
    ///
    /// # Errors
    /// What could not be read or written, as text.
    pub async fn check(&self) -> Result<(), String> {
        let db = self.projections.db();
        // Read before looking: an incident another instance opens meanwhile is not closed here.
        let now = Utc::now().timestamp_millis();
        let open = db
            .query(
                "SELECT incident, summary, opened_at_ms, closed_at_ms, announced_open_at_ms,
                        announced_over_at_ms FROM alert_incidents WHERE closed_at_ms IS NULL",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(Incident::of)
            .collect::<Result<Vec<_>, _>>()?;
        let already: BTreeSet<&str> = open.iter().map(|i| i.incident.as_str()).collect();
        self.retry_announcements(now).await?;
        let wrong = self.wrong_now().await?;
        // Only what is not open already is written (the single writer of SQLite stays free).
        for (incident, summary) in wrong.iter().filter(|(k, _)| !already.contains(k.as_str())) {
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
            if opened == 1 && self.announce(incident, summary, now, false, false).await {
                self.announced(incident, now, false).await?;
            }
        }
        for i in &open {
            if wrong.contains_key(&i.incident) || !self.mine_to_judge(&i.incident) {
                continue;
            }
            // The same opening that was read: one reopened since is left to the next look.
            let closed = db
                .execute(
                    "UPDATE alert_incidents SET closed_at_ms = $2
                     WHERE incident = $1 AND closed_at_ms IS NULL AND opened_at_ms = $3",
                    &[
                        Param::from(i.incident.as_str()),
                        now.into(),
                        i.opened_at_ms.into(),
                    ],
                )
                .await
                .map_err(|e| e.to_string())?;
            if closed == 1
                && self
                    .announce(&i.incident, &i.summary, i.opened_at_ms, true, false)
                    .await
            {
                self.announced(&i.incident, i.opened_at_ms, true).await?;
            }
        }
        Ok(())
    }

    /// Whether this instance may close `incident`: any shared one, and only its own policy ones.
    fn mine_to_judge(&self, incident: &str) -> bool {
        match incident.strip_prefix("policy:") {
            Some(rest) => rest
                .rsplit_once('@')
                .is_some_and(|(_, who)| who == self.settings.instance),
            None => true,
        }
    }

    /// Tells Sentry (unless `retry`) and `ALERT_EMAIL`; returns whether the email is queued
    /// (or none is wanted). One not queued is tried again by a later look
    /// ([`Alerts::retry_announcements`]).
    async fn announce(
        &self,
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
        let Some(address) = self.settings.alert_email.clone() else {
            return true;
        };
        let public = &self.settings.public_url;
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
        let meta =
            commands::EventMetadata::new(commands::Actor::System("alerts".into()), Utc::now());
        let queued = self
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
                let exists = self
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
    async fn announced(&self, incident: &str, opened_at_ms: i64, over: bool) -> Result<(), String> {
        let column = if over {
            "announced_over_at_ms"
        } else {
            "announced_open_at_ms"
        };
        self.projections
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
    async fn retry_announcements(&self, now: i64) -> Result<(), String> {
        let rows = self
            .projections
            .db()
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
        for i in rows.iter().map(Incident::of) {
            let i = i?;
            // Each phase on its own: the opening first, then the end once it is over.
            let mut phases = Vec::new();
            if i.announced_open_at_ms.is_none() {
                phases.push(false);
            }
            if i.closed_at_ms.is_some() && i.announced_over_at_ms.is_none() {
                phases.push(true);
            }
            for over in phases {
                {
                    let mut tried = self.last_try.lock().unwrap_or_else(|e| e.into_inner());
                    let key = (i.incident.clone(), over);
                    if tried.get(&key).is_some_and(|at| now - at < 60_000) {
                        continue;
                    }
                    tried.insert(key, now);
                }
                if self
                    .announce(&i.incident, &i.summary, i.opened_at_ms, over, true)
                    .await
                {
                    self.announced(&i.incident, i.opened_at_ms, over).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs [`Alerts::check`] every [`CHECK_EVERY`] until `stop`.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.check().await {
                    tracing::warn!(%error, "alert check failed; trying again");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(CHECK_EVERY) => {}
                }
            }
        })
    }
}

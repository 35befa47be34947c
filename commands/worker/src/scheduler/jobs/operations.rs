//! Jobs of operations: system health and the clean-ups (which never delete an event).

// The jobs share their parent's imports and helpers.
use super::*;

pub(super) async fn system_health(ctx: &JobContext<'_>) -> JobResult {
    let mut problems = Vec::new();
    let mut t = Tally::default();
    t.counts.processed += 1;
    if let Err(e) = ctx.inner.crm.log().ping().await {
        problems.push(format!("database: {e}"));
    }
    let projections = ctx.inner.projections.status().await?;
    let failed: Vec<&str> = projections
        .iter()
        .filter(|p| p.state == "failed")
        .map(|p| p.name.as_str())
        .collect();
    t.counts.processed += projections.len() as u64;
    t.figures
        .insert("projections".into(), projections.len() as i64);
    t.figures
        .insert("projections_failed".into(), failed.len() as i64);
    t.figures.insert(
        "projections_behind".into(),
        projections.iter().filter(|p| !p.caught_up).count() as i64,
    );
    if !failed.is_empty() {
        problems.push(format!("projections failed: {}", failed.join(", ")));
    }
    // A parked event is one a read model could not apply: it stays missing from that read
    // model until an operator retries or discards it (docs/operations.md), as health says.
    let parked: Vec<String> = projections
        .iter()
        .filter(|p| p.parked > 0)
        .map(|p| format!("{} ({})", p.name, p.parked))
        .collect();
    t.figures.insert(
        "events_parked".into(),
        projections.iter().map(|p| p.parked).sum(),
    );
    if !parked.is_empty() {
        problems.push(format!("events parked in: {}", parked.join(", ")));
    }
    if let Some(policies) = &ctx.inner.policies {
        let status = policies.status();
        let failed: Vec<&str> = status
            .iter()
            .filter(|p| p.last_error.is_some())
            .map(|p| p.name)
            .collect();
        t.counts.processed += status.len() as u64;
        t.figures
            .insert("policies_failed".into(), failed.len() as i64);
        if !failed.is_empty() {
            problems.push(format!("policies failed: {}", failed.join(", ")));
        }
    }
    t.figures.insert(
        "events".into(),
        i64::try_from(ctx.inner.crm.log().count().await?).unwrap_or(i64::MAX),
    );
    // Not a failure of the system, but someone must look: see the message log
    // (`outboundMessages(status: "not_sent")`) and the vendor's own log.
    let unknown = crate::outbox::uncertain_sends(&ctx.inner.projections).await?;
    t.figures.insert("messages_outcome_unknown".into(), unknown);
    if unknown > 0 {
        tracing::warn!(
            messages = unknown,
            "outbound messages whose sending is uncertain: check the vendor's log"
        );
    }
    if problems.is_empty() {
        // Only what was checked is called healthy (a scheduler without policies checks none).
        let healthy = if ctx.inner.policies.is_some() {
            "database, projections and policies healthy"
        } else {
            "database and projections healthy (policies not checked here)"
        };
        t.note = Some(if unknown > 0 {
            format!("{healthy}; {unknown} outbound message(s) may or may not have been sent: check the vendor's log")
        } else {
            healthy.into()
        });
        Ok(t)
    } else {
        // A failed run is what `/api/health/detailed` and the operators look at.
        Err(JobFailure(problems.join("; ")))
    }
}

pub(super) async fn old_logs(ctx: &JobContext<'_>) -> JobResult {
    let cutoff = ctx.now - Duration::days(i64::from(ctx.inner.options.run_log_retention_days));
    let runs = list_runs(
        &ctx.inner.projections,
        None,
        std::time::Duration::from_secs(10),
    )
    .await?;
    let old = runs.iter().filter(|r| r.started_at < cutoff).count() as u64;
    // Processed vendor webhook deliveries are an operational log holding PII
    // (phone numbers, SMS text); past retention — far beyond any vendor's
    // retry window — they go. Unprocessed ones stay for a redelivery to finish.
    let dropped = ctx
        .inner
        .projections
        .db()
        .execute(
            "DELETE FROM webhook_deliveries WHERE processed_at IS NOT NULL AND processed_at < $1",
            &[cutoff.into()],
        )
        .await?;
    let mut t = Tally::default();
    t.counts.processed = runs.len() as u64;
    t.counts.skipped = old;
    t.counts.changed = dropped;
    t.figures.insert("runs_past_retention".into(), old as i64);
    t.figures
        .insert("webhook_deliveries_dropped".into(), dropped as i64);
    Ok(t.noted(
        "job runs are events and stay in the log (their read model is rebuilt from it); processed webhook deliveries past retention were dropped",
    ))
}

/// One-time secrets waiting for their message (reset links, contact codes: kept out of the
/// log, see `outbox::reset_tokens`) that expired unsent are dropped, and so are expired
/// sign-up and email-change codes (`address_codes`), and unsubscribe links older than 400 days.
/// The messages themselves are events and stay, for the audit trail.
pub(super) async fn expired_message_secrets(ctx: &JobContext<'_>) -> JobResult {
    let db = ctx.inner.projections.db();
    // Unsubscribe links must work long after the email (30 days at least, by law in the US).
    let dropped = crate::outbox::reset_tokens::purge_expired(db, ctx.now).await?
        + crate::address_codes::purge_expired(db, ctx.now).await?
        + crate::unsubscribe::purge_older_than(db, ctx.now, 400).await?;
    let mut t = Tally::default();
    t.counts.processed = dropped;
    t.counts.changed = dropped;
    t.figures.insert(
        "expired_secrets_dropped".into(),
        i64::try_from(dropped).unwrap_or(i64::MAX),
    );
    Ok(t.noted("outbound messages are events and are kept; expired one-time secrets dropped"))
}

pub(super) async fn expired_sessions(ctx: &JobContext<'_>) -> JobResult {
    // Sessions are operational rows (the logins themselves are events): ended
    // sessions — expired or revoked — are deleted; nothing in the log changes.
    let now = rfc(ctx.now);
    let ended = crate::sessions::purge_ended(ctx.inner.projections.db(), ctx.now).await?;
    let rows = ctx
        .rows(
            "SELECT COUNT(*) AS n FROM rm_staff_users WHERE reset_expires_at IS NOT NULL AND reset_expires_at <= $1",
            &[now.into()],
        )
        .await?;
    let tokens = rows.first().map_or(0, |r| int(r, "n"));
    let mut t = Tally::default();
    t.counts.processed = ended;
    t.counts.changed = ended;
    t.figures.insert(
        "sessions_ended".into(),
        i64::try_from(ended).unwrap_or(i64::MAX),
    );
    t.figures
        .insert("expired_password_reset_tokens".into(), tokens);
    Ok(t.noted(format!(
        "deleted {ended} ended session(s); the logins stay in the log as events"
    )))
}

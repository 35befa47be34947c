//! Jobs of reviews: requests and reminders, Google reviews.

// The jobs share their parent's imports and helpers.
use super::*;

pub(super) async fn review_requests(ctx: &JobContext<'_>) -> JobResult {
    let mut t = Tally::default();
    let since = ctx.now - Duration::days(i64::from(ctx.inner.options.review_request_window_days));
    // The review-requests policy asks on JobCompleted; this catches what it could not (the
    // policy was down, or the job was completed before the customer consented). A job the
    // customer already reviewed is not asked about.
    let rows = ctx
        .rows(
            "SELECT j.job_id, j.customer_id FROM rm_jobs j
              WHERE j.status = 'completed' AND j.completed_at >= $1
                AND NOT EXISTS (SELECT 1 FROM rm_review_requests r WHERE r.job_id = j.job_id)
                AND NOT EXISTS (SELECT 1 FROM rm_reviews v WHERE v.job_id = j.job_id)
              ORDER BY j.job_id",
            &[rfc(since).into()],
        )
        .await?;
    let requests = ctx.inner.crm.review_requests();
    for r in rows {
        let (Some(job), Some(customer)) = (
            id(&r, "job_id", JobId::parse),
            id(&r, "customer_id", CustomerId::parse),
        ) else {
            t.skip();
            continue;
        };
        let Some((channel, eligibility)) = ctx.preferred_channel(customer).await? else {
            t.skip();
            continue;
        };
        let cmd = ReviewRequestCommand::Request {
            job_id: job,
            customer_id: customer,
            channel,
            eligibility,
        };
        let rid = ReviewRequestId::for_job(job);
        t.command(
            requests
                .execute(
                    rid,
                    DomainActor::System,
                    cmd,
                    &ctx.meta(format!("request:{rid}")),
                )
                .await,
        )?;
    }
    // Reminder n is due n × interval days after the request, while unfulfilled.
    let every = i64::from(ctx.inner.options.review_reminder_every_days);
    let open = ctx
        .rows(
            "SELECT review_request_id, customer_id, channel, reminders, requested_at FROM rm_review_requests
              WHERE status = 'requested' AND reminders < $1 ORDER BY review_request_id",
            &[Param::Int(i64::from(MAX_REMINDERS))],
        )
        .await?;
    for r in open {
        let n = int(&r, "reminders") + 1;
        let due =
            time(&r, "requested_at").is_some_and(|at| at + Duration::days(every * n) <= ctx.now);
        let (Some(rid), Some(customer)) = (
            id(&r, "review_request_id", ReviewRequestId::parse),
            id(&r, "customer_id", CustomerId::parse),
        ) else {
            continue;
        };
        if !due {
            continue;
        }
        let channel = match text(&r, "channel").as_deref() {
            Some("email") => Channel::Email,
            _ => Channel::Sms,
        };
        let eligibility = ctx.customer(customer).await?.marketing_eligibility(channel);
        t.command(
            requests
                .execute(
                    rid,
                    DomainActor::System,
                    ReviewRequestCommand::SendReminder { eligibility },
                    &ctx.meta(format!("reminder-{n}:{rid}")),
                )
                .await,
        )?;
    }
    Ok(t)
}

pub(super) async fn google_reviews(ctx: &JobContext<'_>) -> JobResult {
    let Some(reviews) = ctx
        .inner
        .google
        .recent_reviews()
        .await
        .map_err(JobFailure)?
    else {
        return Ok(Tally::default().noted("no Google Business Profile account configured"));
    };
    let mut t = Tally::default();
    for g in reviews {
        // The id is derived from Google's, so a review seen again is refused as existing.
        let review_id = google_review_id(&g.external_id);
        let cmd = ReviewCommand::Receive {
            review_id,
            source: ReviewSource::Google {
                external_id: g.external_id.clone(),
            },
            customer_id: g.customer_id,
            rating: g.rating,
            comment: g.comment,
        };
        t.command(
            ctx.inner
                .crm
                .reviews()
                .execute(review_id, DomainActor::System, cmd, &ctx.meta(review_id))
                .await,
        )?;
    }
    Ok(t)
}

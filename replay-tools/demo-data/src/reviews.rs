//! Reviews: a quarter of completed jobs get a portal review answering the
//! review request the policies sent (some responded to), plus Google reviews.

use chrono::{DateTime, Duration, Utc};
use commands::app::AppError;
use domain::ids::{CustomerId, JobId, ReviewId, ReviewRequestId};
use domain::review::{google_review_id, ReviewCommand, ReviewRequestCommand, ReviewSource};
use domain::Actor as DomainActor;
use rand::Rng;

use crate::plan::{between, uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};

/// A customer's review of a completed job; `respond` when the manager answers it.
#[derive(Debug, Clone)]
pub(crate) struct PortalReview {
    job: JobId,
    customer: CustomerId,
    review: ReviewId,
    rating: i64,
    comment: Option<&'static str>,
    respond: bool,
}

/// A review left on Google, matched to no customer.
#[derive(Debug, Clone)]
pub(crate) struct GoogleReview {
    external_id: String,
    rating: i64,
    comment: Option<&'static str>,
}

/// Reviews two days after the work (or just before the end), in the closing steps.
pub(crate) fn plan_portal(p: &mut Planner) {
    let last = p.last();
    for i in 0..p.completed.len() {
        let (job, cid, done) = p.completed[i];
        if !p.rng.gen_bool(0.25) {
            continue;
        }
        let rating = [5, 5, 5, 4, 4, 3, 2][p.rng.gen_range(0..7)];
        let comment = [
            Some("Great job, carpets look new!"),
            Some("On time and friendly."),
            None,
        ][p.rng.gen_range(0..3)];
        let step = Step::Review(PortalReview {
            job,
            customer: cid,
            review: ReviewId(uuid(&mut p.rng)),
            rating,
            comment,
            respond: p.rng.gen_bool(0.5),
        });
        let t = (done + Duration::days(2)).min(last);
        p.closing_steps.push(Timed {
            at: t,
            lane: p.lane_of(cid),
            step,
        });
    }
}

/// Google reviews at random times, each in a lane of its own (after the customers').
pub(crate) fn plan_google(p: &mut Planner) {
    let last = p.last();
    for i in 0..p.sizes.google_reviews {
        let t = between(&mut p.rng, p.start + Duration::days(10), last);
        let rating = [5, 5, 4, 4, 3, 1][p.rng.gen_range(0..6)];
        let step = Step::GoogleReview(GoogleReview {
            external_id: format!("demo-google-{i}"),
            rating,
            comment: Some("Would recommend."),
        });
        p.closing_steps.push(Timed {
            at: t,
            lane: p.customers.len() + 1 + i,
            step,
        });
    }
}

/// Receives the review and fulfils the job's review request (none: no review),
/// then maybe the manager's response.
pub(crate) async fn receive(ctx: &Ctx, t: DateTime<Utc>, r: &PortalReview) -> Result<(), AppError> {
    let (crm, m) = (&ctx.crm, meta(t));
    let request = ReviewRequestId::for_job(r.job);
    if crm.review_requests().load(request).await?.sequence == 0 {
        return Ok(());
    }
    let cmd = ReviewCommand::Receive {
        review_id: r.review,
        source: ReviewSource::Portal {
            job_id: Some(r.job),
        },
        customer_id: Some(r.customer),
        rating: r.rating,
        comment: r.comment.map(str::to_string),
    };
    let customer = DomainActor::Customer { id: r.customer };
    crm.reviews().execute(r.review, customer, cmd, &m).await?;
    let fulfilled = ReviewRequestCommand::MarkFulfilled {
        review_id: r.review,
    };
    crm.review_requests()
        .execute(request, DomainActor::System, fulfilled, &m)
        .await?;
    if r.respond {
        let text = if r.rating >= 4 {
            "Thank you for the kind words!"
        } else {
            "Sorry to hear that; we will call you."
        };
        let cmd = ReviewCommand::Respond { text: text.into() };
        crm.reviews()
            .execute(r.review, ctx.manager(), cmd, &m)
            .await?;
    }
    Ok(())
}

pub(crate) async fn receive_google(
    ctx: &Ctx,
    t: DateTime<Utc>,
    g: &GoogleReview,
) -> Result<(), AppError> {
    let id = google_review_id(&g.external_id);
    let cmd = ReviewCommand::Receive {
        review_id: id,
        source: ReviewSource::Google {
            external_id: g.external_id.clone(),
        },
        customer_id: None,
        rating: g.rating,
        comment: g.comment.map(str::to_string),
    };
    ctx.crm
        .reviews()
        .execute(id, DomainActor::System, cmd, &meta(t))
        .await?;
    Ok(())
}

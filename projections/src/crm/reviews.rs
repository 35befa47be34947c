//! The reviews read model.

use domain::review::{ReviewEvent, ReviewRequestEvent, ReviewSource};

use super::prelude::*;

/// Review requests and reviews.
#[derive(Debug)]
pub struct Reviews;

const REVIEWS: &[&str] = &["review_requests", "reviews"];

impl Projection for Reviews {
    fn name(&self) -> &'static str {
        "reviews"
    }
    fn version(&self) -> i64 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        REVIEWS
    }
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE {review_requests} (
                review_request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, customer_id TEXT NOT NULL, channel TEXT,
                status TEXT NOT NULL, reminders BIGINT NOT NULL DEFAULT 0, review_id TEXT, requested_at TEXT NOT NULL)",
            "CREATE TABLE {reviews} (
                review_id TEXT PRIMARY KEY, source TEXT NOT NULL, customer_id TEXT, job_id TEXT, rating BIGINT NOT NULL,
                comment TEXT, response TEXT, responder_id TEXT, received_at TEXT NOT NULL, responded_at TEXT)",
        ]
    }
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        ctx: ApplyContext,
        e: &'a Decoded,
    ) -> BoxFut<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let Some(event) = e.event()? else {
                return Ok(());
            };
            let t = REVIEWS;
            let id = e.aggregate_id.clone();
            match event {
                Event::ReviewRequest(event) => match event {
                    ReviewRequestEvent::ReviewRequested {
                        job_id,
                        customer_id,
                        channel,
                        at,
                        ..
                    } => {
                        exec(tx, ctx, t, "INSERT INTO {review_requests} (review_request_id, job_id, customer_id, channel, status, requested_at)
                            VALUES ($1, $2, $3, $4, 'requested', $5) ON CONFLICT (review_request_id) DO NOTHING",
                            &[id.into(), job_id.to_string().into(), customer_id.to_string().into(), text(channel).into(), rfc3339(*at).into()]).await?;
                    }
                    ReviewRequestEvent::ReviewReminderSent { .. } => {
                        exec(tx, ctx, t, "UPDATE {review_requests} SET reminders = reminders + 1 WHERE review_request_id = $1", &[id.into()]).await?;
                    }
                    ReviewRequestEvent::ReviewRequestFulfilled { review_id, .. } => {
                        exec(tx, ctx, t, "UPDATE {review_requests} SET status = 'fulfilled', review_id = $2 WHERE review_request_id = $1",
                            &[id.into(), review_id.to_string().into()]).await?;
                    }
                },
                Event::Review(event) => match event {
                    ReviewEvent::ReviewReceived {
                        source,
                        customer_id,
                        rating,
                        comment,
                        at,
                        ..
                    } => {
                        // `source` is stored tagged by `kind`; a portal review may name its job.
                        let (kind, job_id) = match source {
                            ReviewSource::Portal { job_id } => {
                                ("portal", job_id.as_ref().map(ToString::to_string))
                            }
                            ReviewSource::Google { .. } => ("google", None),
                        };
                        exec(tx, ctx, t, "INSERT INTO {reviews} (review_id, source, customer_id, job_id, rating, comment, received_at)
                            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (review_id) DO NOTHING",
                            &[id.into(), kind.into(), customer_id.as_ref().map(ToString::to_string).into(),
                              job_id.into(), i64::from(rating.stars()).into(),
                              text(comment).into(), rfc3339(*at).into()]).await?;
                    }
                    ReviewEvent::ReviewResponded {
                        text: response,
                        responder,
                        at,
                        ..
                    } => {
                        exec(tx, ctx, t, "UPDATE {reviews} SET response = $2, responder_id = $3, responded_at = $4 WHERE review_id = $1",
                            &[id.into(), response.to_string().into(), responder.to_string().into(), rfc3339(*at).into()]).await?;
                    }
                },
                _ => {}
            }
            Ok(())
        })
    }
}

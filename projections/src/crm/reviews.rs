//! The reviews read model.

use domain::review::{ReviewEvent, ReviewRequestEvent, ReviewSource};

use super::prelude::*;

/// Review requests and reviews.
#[derive(Debug)]
pub struct Reviews;

const REVIEWS: &[&str] = &["review_requests", "reviews"];

/// The aggregates whose events this read model reads.
const FOLLOWS: &[&str] = &[
    domain::review::REVIEW_REQUEST_TYPE,
    domain::review::REVIEW_TYPE,
];

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
            let Some(event) = e.event_of(FOLLOWS)? else {
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

// ---------------------------------------------------------------- queries

/// How many reviews of each rating (index 0 = one star) were received in [start, end)
/// (RFC 3339 UTC instants).
///
/// # Errors
/// When the read model cannot be read.
pub async fn ratings_received(
    db: &crate::db::ReadDb,
    start: &str,
    end: &str,
) -> Result<[i64; 5], crate::db::DbError> {
    let mut stars = [0i64; 5];
    for r in db
        .query(
            "SELECT rating, CAST(COUNT(*) AS BIGINT) AS n FROM rm_reviews
              WHERE received_at >= $1 AND received_at < $2 GROUP BY rating",
            &[start.into(), end.into()],
        )
        .await?
    {
        let rating = crate::row::int(&r, "rating")?;
        // The domain keeps ratings within 1..=5 (`Rating`).
        if let Some(n) = usize::try_from(rating - 1)
            .ok()
            .and_then(|i| stars.get_mut(i))
        {
            *n += crate::row::int(&r, "n")?;
        }
    }
    Ok(stars)
}

/// Which review requests to list (each filter optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Of this job.
    pub job_id: Option<String>,
    /// Of this customer.
    pub customer_id: Option<String>,
    /// Only fulfilled (`true`) or only still open (`false`).
    pub fulfilled: Option<bool>,
}

impl RequestFilter {
    fn params(&self) -> [crate::db::Param; 3] {
        let status = match self.fulfilled {
            Some(true) => "fulfilled",
            Some(false) => "requested",
            None => "",
        };
        [
            self.job_id.clone().unwrap_or_default().into(),
            self.customer_id.clone().unwrap_or_default().into(),
            status.into(),
        ]
    }
}

const REQUESTS_WHERE: &str =
    "($1 = '' OR job_id = $1) AND ($2 = '' OR customer_id = $2) AND ($3 = '' OR status = $3)";

/// A review request: asked once per completed job, reminded at most twice, fulfilled by the
/// customer's review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Id.
    pub review_request_id: String,
    /// The job reviewed.
    pub job_id: String,
    /// The customer asked.
    pub customer_id: String,
    /// The channel asked on.
    pub channel: Option<domain::consent::Channel>,
    /// Whether the review came in.
    pub fulfilled: bool,
    /// Reminders sent.
    pub reminders: i64,
    /// The review that fulfilled it.
    pub review_id: Option<String>,
    /// When it was asked (RFC 3339, UTC).
    pub requested_at: String,
}

/// How many review requests `filter` matches.
///
/// # Errors
/// When the read model cannot be read.
pub async fn request_count(
    db: &crate::db::ReadDb,
    filter: &RequestFilter,
) -> Result<i64, crate::db::DbError> {
    crate::row::count(
        db,
        &format!("rm_review_requests WHERE {REQUESTS_WHERE}"),
        &filter.params(),
    )
    .await
}

/// The review requests `filter` matches, newest first, `limit` from `offset`.
///
/// # Errors
/// When the read model cannot be read, or a row does not read as a request.
pub async fn requests(
    db: &crate::db::ReadDb,
    filter: &RequestFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<RequestRow>, crate::db::DbError> {
    let mut params = filter.params().to_vec();
    params.extend([limit.into(), offset.into()]);
    db.query(
        &format!(
            "SELECT * FROM rm_review_requests WHERE {REQUESTS_WHERE}
              ORDER BY requested_at DESC, review_request_id LIMIT $4 OFFSET $5"
        ),
        &params,
    )
    .await?
    .iter()
    .map(|r| {
        use crate::row::{int, opt_named, opt_text, text};
        let status = text(r, "status")?;
        Ok(RequestRow {
            review_request_id: text(r, "review_request_id")?,
            job_id: text(r, "job_id")?,
            customer_id: text(r, "customer_id")?,
            channel: opt_named(r, "channel")?,
            fulfilled: match status.as_str() {
                "fulfilled" => true,
                "requested" => false,
                other => {
                    return Err(crate::db::DbError::new(format!(
                        "read-model column status is not a request status: {other}"
                    )))
                }
            },
            reminders: int(r, "reminders")?,
            review_id: opt_text(r, "review_id")?,
            requested_at: text(r, "requested_at")?,
        })
    })
    .collect()
}

// ---------------------------------------------------------------- queries

/// One review as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    /// Its id.
    pub review_id: String,
    /// `portal` or `google`.
    pub source: String,
    /// The customer, when known.
    pub customer_id: Option<String>,
    /// 1–5 stars.
    pub rating: i64,
    /// The text.
    pub comment: Option<String>,
    /// Staff response.
    pub response: Option<String>,
    /// Received (RFC 3339 UTC).
    pub received_at: String,
}

impl crate::row::FromRow for ReviewRow {
    fn from_row(r: &crate::JsonRow) -> Result<Self, crate::DbError> {
        use crate::row::{int, opt_text, text};
        Ok(ReviewRow {
            review_id: text(r, "review_id")?,
            source: text(r, "source")?,
            customer_id: opt_text(r, "customer_id")?,
            rating: int(r, "rating")?,
            comment: opt_text(r, "comment")?,
            response: opt_text(r, "response")?,
            received_at: text(r, "received_at")?,
        })
    }
}

/// Reviews, newest first; only those without a response when `unanswered`.
pub fn list(unanswered: bool) -> crate::Listing<ReviewRow> {
    crate::Listing::new(
        "rm_reviews WHERE ($1 = 0 OR response IS NULL)",
        "received_at DESC, review_id",
        vec![unanswered.into()],
    )
}

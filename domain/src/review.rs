//! ReviewRequest (one per job, by construction of its id) and Review (received from the portal
//! or Google, with one staff response tied to it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalogue::domain_events;
use crate::consent::{Channel, MarketingEligibility};
use crate::error::validation_error;
use crate::ids::{CustomerId, JobId, ReviewId, ReviewRequestId, StaffUserId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::{NonEmptyText, Rating};

/// `Aggregate::TYPE` of [`ReviewRequest`].
pub const REVIEW_REQUEST_TYPE: &str = "ReviewRequest";
/// `Aggregate::TYPE` of [`Review`].
pub const REVIEW_TYPE: &str = "Review";

/// Most reminders sent for one request.
pub const MAX_REMINDERS: u32 = 2;

// ------------------------------------------------------------------ ReviewRequest

/// What can be asked of a review request. Its aggregate id must be
/// [`ReviewRequestId::for_job`] of the job, which makes "one request per job" hold.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewRequestCommand {
    /// Ask the customer for a review of a completed job.
    Request {
        /// The job.
        job_id: JobId,
        /// The customer.
        customer_id: CustomerId,
        /// SMS or email.
        channel: Channel,
        /// The customer's eligibility on the channel (from the Customer aggregate).
        eligibility: MarketingEligibility,
    },
    /// Send a reminder.
    SendReminder {
        /// The customer's eligibility now (they may have opted out since).
        eligibility: MarketingEligibility,
    },
    /// The customer left the review.
    MarkFulfilled {
        /// The review received.
        review_id: ReviewId,
    },
}

domain_events! {
    aggregate = REVIEW_REQUEST_TYPE;
    /// Events of the [`ReviewRequest`] aggregate.
    pub enum ReviewRequestEvent {
        /// A review was requested for a job.
        ReviewRequested {
            /// The request (derived from the job id).
            review_request_id: ReviewRequestId,
            /// The job.
            job_id: JobId,
            /// The customer.
            customer_id: CustomerId,
            /// SMS or email.
            channel: Channel,
            /// When.
            at: DateTime<Utc>,
        },
        /// A reminder was sent.
        ReviewReminderSent {
            /// The customer.
            customer_id: CustomerId,
            /// 1 for the first reminder, 2 for the second...
            reminder_number: u32,
            /// When.
            at: DateTime<Utc>,
        },
        /// The customer left a review.
        ReviewRequestFulfilled {
            /// The customer.
            customer_id: CustomerId,
            /// The review.
            review_id: ReviewId,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a review-request command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRequestError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A request already exists for this job.
    #[error("a review was already requested for this job")]
    AlreadyRequested,
    /// No request for this job.
    #[error("unknown review request")]
    UnknownRequest,
    /// The customer may not be messaged (opted out, no consent, suppressed, no address).
    #[error("the customer cannot be asked for a review: {0:?}")]
    CustomerNotReachable(MarketingEligibility),
    /// All reminders were sent.
    #[error("all reminders were already sent")]
    NoRemindersLeft,
    /// The review came in already.
    #[error("the review was already received")]
    AlreadyFulfilled,
}
validation_error!(ReviewRequestError);

/// The channel to ask a customer for a review on: SMS where they can be texted (it is
/// answered more often), else email. When neither may be used, email with its
/// eligibility, which says why (a `Request` on it is refused naming the reason).
pub fn request_channel(
    eligibility: impl Fn(Channel) -> MarketingEligibility,
) -> (Channel, MarketingEligibility) {
    let sms = eligibility(Channel::Sms);
    if sms.is_eligible() {
        (Channel::Sms, sms)
    } else {
        (Channel::Email, eligibility(Channel::Email))
    }
}

/// The review request's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequest {
    customer_id: Option<CustomerId>,
    reminders: u32,
    fulfilled_by: Option<ReviewId>,
    /// The channel asked on (snapshots from before it was kept read as unknown).
    #[serde(default)]
    channel: Option<Channel>,
}

impl ReviewRequest {
    /// Whether the customer was asked (the request exists).
    pub fn is_requested(&self) -> bool {
        self.customer_id.is_some()
    }

    /// The channel the customer was asked on.
    pub fn channel(&self) -> Option<Channel> {
        self.channel
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`ReviewRequestError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: ReviewRequestCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ReviewRequestEvent>, ReviewRequestError> {
        use ReviewRequestError as E;
        let at = ctx.now;
        match cmd {
            ReviewRequestCommand::Request {
                job_id,
                customer_id,
                channel,
                eligibility,
            } => {
                if self.customer_id.is_some() {
                    return Err(E::AlreadyRequested);
                }
                if !eligibility.is_eligible() {
                    return Err(E::CustomerNotReachable(eligibility));
                }
                Ok(vec![ReviewRequestEvent::ReviewRequested {
                    review_request_id: ReviewRequestId::for_job(job_id),
                    job_id,
                    customer_id,
                    channel,
                    at,
                }])
            }
            ReviewRequestCommand::SendReminder { eligibility } => {
                let customer_id = self.customer_id.ok_or(E::UnknownRequest)?;
                if self.fulfilled_by.is_some() {
                    return Err(E::AlreadyFulfilled);
                }
                if self.reminders >= MAX_REMINDERS {
                    return Err(E::NoRemindersLeft);
                }
                if !eligibility.is_eligible() {
                    return Err(E::CustomerNotReachable(eligibility));
                }
                Ok(vec![ReviewRequestEvent::ReviewReminderSent {
                    customer_id,
                    reminder_number: self.reminders + 1,
                    at,
                }])
            }
            ReviewRequestCommand::MarkFulfilled { review_id } => {
                let customer_id = self.customer_id.ok_or(E::UnknownRequest)?;
                if self.fulfilled_by.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![ReviewRequestEvent::ReviewRequestFulfilled {
                    customer_id,
                    review_id,
                    at,
                }])
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: ReviewRequestEvent) {
        match event {
            ReviewRequestEvent::ReviewRequested {
                customer_id,
                channel,
                ..
            } => {
                self.customer_id = Some(customer_id);
                self.channel = Some(channel);
            }
            ReviewRequestEvent::ReviewReminderSent {
                reminder_number, ..
            } => self.reminders = reminder_number,
            ReviewRequestEvent::ReviewRequestFulfilled { review_id, .. } => {
                self.fulfilled_by = Some(review_id);
            }
        }
    }
}

cqrs_aggregate!(
    ReviewRequest,
    REVIEW_REQUEST_TYPE,
    ReviewRequestCommand,
    ReviewRequestEvent,
    ReviewRequestError
);

// ------------------------------------------------------------------ Review

/// Where a review came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReviewSource {
    /// Our own portal (linked to a job when left from a request).
    Portal {
        /// The job reviewed, if known.
        job_id: Option<JobId>,
    },
    /// Google Business reviews (synced daily).
    Google {
        /// Google's review id.
        external_id: String,
    },
}

/// The review id of a Google review: derived from Google's id so a daily sync never creates
/// the same review twice.
pub fn google_review_id(external_id: &str) -> ReviewId {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5c01);
    ReviewId(Uuid::new_v5(&NAMESPACE, external_id.as_bytes()))
}

/// What can be asked of a review.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewCommand {
    /// Record a review.
    Receive {
        /// The id (the aggregate id; see [`google_review_id`] for Google).
        review_id: ReviewId,
        /// Portal or Google.
        source: ReviewSource,
        /// The customer, when matched.
        customer_id: Option<CustomerId>,
        /// 1 to 5 stars.
        rating: i64,
        /// The text, if any.
        comment: Option<String>,
    },
    /// A staff user responds to this review.
    Respond {
        /// The response.
        text: String,
    },
}

domain_events! {
    aggregate = REVIEW_TYPE;
    /// Events of the [`Review`] aggregate.
    pub enum ReviewEvent {
        /// A review was received.
        ReviewReceived {
            /// The review.
            review_id: ReviewId,
            /// Portal or Google.
            source: ReviewSource,
            /// The customer, when matched.
            customer_id: Option<CustomerId>,
            /// Stars.
            rating: Rating,
            /// The text (may contain PII the reviewer chose to write).
            comment: Option<NonEmptyText>,
            /// When.
            at: DateTime<Utc>,
        },
        /// Staff responded; the response belongs to this review's stream.
        ReviewResponded {
            /// The review responded to.
            review_id: ReviewId,
            /// The response.
            text: NonEmptyText,
            /// Who responded.
            responder: StaffUserId,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a review command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already received.
    #[error("the review already exists")]
    AlreadyExists,
    /// Responding to a review that was never received.
    #[error("unknown review")]
    UnknownReview,
    /// Responses are written by staff.
    #[error("only staff can respond to reviews")]
    StaffActorRequired,
    /// One response per review.
    #[error("the review already has a response")]
    AlreadyResponded,
}
validation_error!(ReviewError);

/// The review's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    id: Option<ReviewId>,
    responded: bool,
}

impl Review {
    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`ReviewError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: ReviewCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ReviewEvent>, ReviewError> {
        let at = ctx.now;
        match cmd {
            ReviewCommand::Receive {
                review_id,
                source,
                customer_id,
                rating,
                comment,
            } => {
                if self.id.is_some() {
                    return Err(ReviewError::AlreadyExists);
                }
                let rating = Rating::parse(rating)?;
                let comment = match comment.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(c) => Some(NonEmptyText::parse("comment", c, 10_000)?),
                };
                Ok(vec![ReviewEvent::ReviewReceived {
                    review_id,
                    source,
                    customer_id,
                    rating,
                    comment,
                    at,
                }])
            }
            ReviewCommand::Respond { text } => {
                let review_id = self.id.ok_or(ReviewError::UnknownReview)?;
                let responder = ctx
                    .actor
                    .staff_id()
                    .ok_or(ReviewError::StaffActorRequired)?;
                if self.responded {
                    return Err(ReviewError::AlreadyResponded);
                }
                Ok(vec![ReviewEvent::ReviewResponded {
                    review_id,
                    text: NonEmptyText::parse("text", &text, 5_000)?,
                    responder,
                    at,
                }])
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: ReviewEvent) {
        match event {
            ReviewEvent::ReviewReceived { review_id, .. } => self.id = Some(review_id),
            ReviewEvent::ReviewResponded { .. } => self.responded = true,
        }
    }
}

cqrs_aggregate!(Review, REVIEW_TYPE, ReviewCommand, ReviewEvent, ReviewError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};

    fn job() -> JobId {
        JobId(Uuid::from_u128(10))
    }
    fn customer() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }
    fn requested() -> ReviewRequestEvent {
        ReviewRequestEvent::ReviewRequested {
            review_request_id: ReviewRequestId::for_job(job()),
            job_id: job(),
            customer_id: customer(),
            channel: Channel::Sms,
            at: test_now(),
        }
    }
    fn request(eligibility: MarketingEligibility) -> ReviewRequestCommand {
        ReviewRequestCommand::Request {
            job_id: job(),
            customer_id: customer(),
            channel: Channel::Sms,
            eligibility,
        }
    }
    fn when_request(
        given: Vec<ReviewRequestEvent>,
        cmd: ReviewRequestCommand,
    ) -> Result<Vec<ReviewRequestEvent>, ReviewRequestError> {
        testing::run::<ReviewRequest, _>(testing::test_services(), given, crate::Actor::System, cmd)
    }
    fn received() -> ReviewEvent {
        ReviewEvent::ReviewReceived {
            review_id: ReviewId(Uuid::from_u128(50)),
            source: ReviewSource::Portal {
                job_id: Some(job()),
            },
            customer_id: Some(customer()),
            rating: Rating::parse(5).expect("ok"),
            comment: Some(NonEmptyText::parse("comment", "Spotless!", 100).expect("ok")),
            at: test_now(),
        }
    }
    fn when_review(
        given: Vec<ReviewEvent>,
        actor: crate::Actor,
        cmd: ReviewCommand,
    ) -> Result<Vec<ReviewEvent>, ReviewError> {
        testing::run::<Review, _>(testing::test_services(), given, actor, cmd)
    }

    #[test]
    fn it_should_request_a_review_for_a_job() {
        assert_eq!(
            when_request(vec![], request(MarketingEligibility::Eligible)),
            Ok(vec![requested()])
        );
    }

    #[test]
    fn it_should_request_a_review_only_once_per_job() {
        assert_eq!(
            when_request(vec![requested()], request(MarketingEligibility::Eligible)),
            Err(ReviewRequestError::AlreadyRequested)
        );
    }

    #[test]
    fn it_should_not_request_a_review_from_a_customer_who_opted_out() {
        assert_eq!(
            when_request(vec![], request(MarketingEligibility::OptedOut)),
            Err(ReviewRequestError::CustomerNotReachable(
                MarketingEligibility::OptedOut
            ))
        );
    }

    #[test]
    fn it_should_send_at_most_two_reminders() {
        let reminder = |n| ReviewRequestEvent::ReviewReminderSent {
            customer_id: customer(),
            reminder_number: n,
            at: test_now(),
        };
        let cmd = ReviewRequestCommand::SendReminder {
            eligibility: MarketingEligibility::Eligible,
        };
        assert_eq!(
            when_request(vec![requested()], cmd.clone()),
            Ok(vec![reminder(1)])
        );
        assert_eq!(
            when_request(vec![requested(), reminder(1), reminder(2)], cmd),
            Err(ReviewRequestError::NoRemindersLeft)
        );
    }

    #[test]
    fn it_should_not_remind_after_the_review_came_in() {
        // What the product records, in order: the request after the job (the review-requests
        // policy), a first reminder, then the customer's review of the job through the portal
        // (`submitReview`, under the job's one portal review id), which the same policy turns
        // into the request's fulfilment naming that review.
        let remind = ReviewRequestCommand::SendReminder {
            eligibility: MarketingEligibility::Eligible,
        };
        let reminded = when_request(vec![requested()], remind.clone()).expect("first reminder");
        let mut history = vec![requested()];
        history.extend(reminded);
        let review = when_review(
            vec![],
            testing::customer_actor(1),
            ReviewCommand::Receive {
                review_id: ReviewId::for_portal_job(job()),
                source: ReviewSource::Portal {
                    job_id: Some(job()),
                },
                customer_id: Some(customer()),
                rating: 5,
                comment: Some("Spotless!".into()),
            },
        )
        .expect("review received");
        let [ReviewEvent::ReviewReceived { review_id, .. }] = review.as_slice() else {
            panic!("one ReviewReceived: {review:?}");
        };
        let fulfilled = when_request(
            history.clone(),
            ReviewRequestCommand::MarkFulfilled {
                review_id: *review_id,
            },
        )
        .expect("fulfilled");
        assert_eq!(
            fulfilled,
            vec![ReviewRequestEvent::ReviewRequestFulfilled {
                customer_id: customer(),
                review_id: ReviewId::for_portal_job(job()),
                at: test_now(),
            }]
        );
        // One reminder of two is left: without the review it would go.
        assert!(when_request(history.clone(), remind.clone()).is_ok());
        history.extend(fulfilled);
        assert_eq!(
            when_request(history, remind),
            Err(ReviewRequestError::AlreadyFulfilled)
        );
    }

    #[test]
    fn it_should_refuse_a_rating_outside_one_to_five_naming_the_field() {
        let cmd = ReviewCommand::Receive {
            review_id: ReviewId(Uuid::from_u128(50)),
            source: ReviewSource::Google {
                external_id: "g-1".into(),
            },
            customer_id: None,
            rating: 6,
            comment: None,
        };
        assert_eq!(
            when_review(vec![], crate::Actor::System, cmd)
                .expect_err("6")
                .field(),
            Some("rating")
        );
    }

    #[test]
    fn it_should_tie_a_staff_response_to_its_review() {
        let cmd = ReviewCommand::Respond {
            text: "Thank you!".into(),
        };
        assert_eq!(
            when_review(vec![received()], testing::staff(), cmd),
            Ok(vec![ReviewEvent::ReviewResponded {
                review_id: ReviewId(Uuid::from_u128(50)),
                text: NonEmptyText::parse("text", "Thank you!", 100).expect("ok"),
                responder: StaffUserId(Uuid::from_u128(1001)),
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_not_respond_to_an_unknown_review() {
        let cmd = ReviewCommand::Respond {
            text: "Thanks".into(),
        };
        assert_eq!(
            when_review(vec![], testing::staff(), cmd),
            Err(ReviewError::UnknownReview)
        );
    }

    #[test]
    fn it_should_not_respond_twice_or_without_a_staff_user() {
        let cmd = ReviewCommand::Respond {
            text: "Thanks".into(),
        };
        let responded = ReviewEvent::ReviewResponded {
            review_id: ReviewId(Uuid::from_u128(50)),
            text: NonEmptyText::parse("text", "Thanks", 100).expect("ok"),
            responder: StaffUserId(Uuid::from_u128(1001)),
            at: test_now(),
        };
        assert_eq!(
            when_review(vec![received(), responded], testing::staff(), cmd.clone()),
            Err(ReviewError::AlreadyResponded)
        );
        assert_eq!(
            when_review(vec![received()], crate::Actor::System, cmd),
            Err(ReviewError::StaffActorRequired)
        );
    }

    #[test]
    fn it_should_derive_a_stable_id_for_a_google_review() {
        assert_eq!(google_review_id("abc"), google_review_id("abc"));
        assert_ne!(google_review_id("abc"), google_review_id("abd"));
    }
}

//! What the `outbox` policy queues: one outbound message per trigger and recipient, its id
//! derived from the trigger (`Type:id:sequence[:part]`, see
//! [`OutboundMessageId::for_cause`]), so a trigger handled twice queues nothing new. Sending,
//! and the consent check at send time, are the API's outbox worker's.
//!
//! | trigger | message |
//! |---|---|
//! | `OfferSent` | the auto-offer (discount, expiry) to the opportunity's customer |
//! | `PromotionDelivered` | the promotion's template (rendered for the customer when sent) |
//! | `ReviewRequested`, `ReviewReminderSent` | a review link to the customer |
//! | `ScheduledReportGenerated` | the run's figures to each recipient of the report (HTML and the CSV attached when sent) |
//!
//! And back: a promotion's message that was not sent, or that the vendor reports undelivered,
//! failed or bounced, records `PromotionDeliveryFailed`; one reported opened or read,
//! `PromotionOpened` ([`promotion_feedback`]). A report email sent records
//! `ScheduledReportSent` for its period, once ([`report_sent`]).
//!
//! `PasswordResetRequested` is not a trigger: the event holds only the token's hash (by
//! design), so the reset mail must be queued by whoever holds the token.

use chrono::{Duration, NaiveDate};
use domain::consent::Channel;
use domain::ids::{CustomerId, OutboundMessageId, PromotionId, ReviewRequestId, ScheduledReportId};
use domain::message::{
    DeliveryStatus, MessageCommand, MessageEvent, MessageKind, NotSentReason, Recipient,
};
use domain::opportunity::OpportunityEvent;
use domain::promotion::PromotionCommand;
use domain::promotion::{PromotionContent, PromotionEvent};
use domain::review::ReviewRequestEvent;
use domain::scheduled_report::ScheduledReportEvent;
use domain::values::Discount;

use crate::app::{AppError, Crm};
use crate::store::RecordedEvent;

/// Placeholder in message bodies for the public base URL (`PUBLIC_URL`), filled at send time.
pub const PUBLIC_URL: &str = "{public_url}";

/// Triggers that happened longer ago than this are not messaged: deploying the outbox on an
/// old store (or replaying the demo's history) must not mail years of offers.
pub fn max_cause_age() -> Duration {
    Duration::hours(48)
}

/// One message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    /// `Type:id:sequence[:part]` of the trigger.
    pub cause: String,
    /// Why.
    pub kind: MessageKind,
    /// SMS or email.
    pub channel: Channel,
    /// To whom.
    pub recipient: Recipient,
    /// Email subject.
    pub subject: Option<String>,
    /// The text.
    pub body: String,
}

impl QueuedMessage {
    /// The id it is queued under.
    pub fn id(&self) -> OutboundMessageId {
        OutboundMessageId::for_cause(&self.cause)
    }

    /// The `Queue` command.
    pub fn command(&self) -> MessageCommand {
        MessageCommand::Queue {
            kind: self.kind,
            channel: self.channel,
            recipient: self.recipient.clone(),
            cause: self.cause.clone(),
            subject: self.subject.clone(),
            body: self.body.clone(),
        }
    }
}

/// Whether `e` is an event the outbox policy reacts to.
pub fn triggers(e: &RecordedEvent) -> bool {
    matches!(
        (e.aggregate_type.as_str(), e.event_type.as_str()),
        ("Opportunity", "OfferSent")
            | ("Promotion", "PromotionDelivered")
            | ("ReviewRequest", "ReviewRequested" | "ReviewReminderSent")
            | ("ScheduledReport", "ScheduledReportGenerated")
    )
}

/// Whether `e` is a message outcome the outbox policy reports back to a promotion.
pub fn reports_back(e: &RecordedEvent) -> bool {
    e.aggregate_type == domain::message::AGGREGATE_TYPE
        && matches!(
            e.event_type.as_str(),
            "MessageNotSent" | "MessageDeliveryStatusChanged" | "MessageSent"
        )
}

/// For a report email's `MessageSent`: the report and the period it was generated for.
///
/// # Errors
/// [`AppError::Store`] when the message or the report cannot be read.
pub async fn report_sent(
    crm: &Crm,
    e: &RecordedEvent,
) -> Result<Option<(ScheduledReportId, NaiveDate)>, AppError> {
    if e.event_type != "MessageSent" {
        return Ok(None);
    }
    let id = OutboundMessageId::parse(&e.aggregate_id)
        .map_err(|v| AppError::validation(v.field, v.message))?;
    let m = crm.messages().load(id).await?.aggregate;
    if m.kind() != Some(MessageKind::ScheduledReport) {
        return Ok(None);
    }
    let Some((report, sequence)) = crate::report_runs::of_message_cause(m.cause()) else {
        return Ok(None);
    };
    let store = crm.scheduled_reports();
    for h in crm
        .log()
        .load_stream(
            domain::scheduled_report::AGGREGATE_TYPE,
            &report.to_string(),
            sequence.saturating_sub(1),
        )
        .await?
        .into_iter()
        .take(1)
    {
        if let ScheduledReportEvent::ScheduledReportGenerated { period_start, .. } =
            store.store().decode(h)?
        {
            return Ok(Some((report, period_start)));
        }
    }
    Ok(None)
}

fn not_sent_text(r: &NotSentReason) -> String {
    match r {
        NotSentReason::NoProviderConfigured => "not sent: no provider configured".into(),
        NotSentReason::NotEligible { eligibility } => format!("not sent: {eligibility:?}"),
        NotSentReason::Rejected { status, error } => format!("refused ({status}): {error}"),
        NotSentReason::RetriesExhausted { last_error, .. } => {
            format!("gave up after retries: {last_error}")
        }
        NotSentReason::OutcomeUnknown { .. } => "outcome unknown after a crash".into(),
    }
}

/// What a promotion message's outcome `e` means for its promotion, if anything.
///
/// # Errors
/// [`AppError::Store`] when the message cannot be read.
pub async fn promotion_feedback(
    crm: &Crm,
    e: &RecordedEvent,
) -> Result<Option<(PromotionId, PromotionCommand)>, AppError> {
    let messages = crm.messages();
    let event = messages.store().decode(e.clone())?;
    let id = OutboundMessageId::parse(&e.aggregate_id)
        .map_err(|v| AppError::validation(v.field, v.message))?;
    let m = messages.load(id).await?.aggregate;
    let (Some(MessageKind::Promotion), Some(Recipient::Customer { customer_id })) =
        (m.kind(), m.recipient())
    else {
        return Ok(None);
    };
    let customer_id = *customer_id;
    // The cause is `Promotion:{promotion id}:{sequence}`.
    let Some(Ok(promotion)) = m
        .cause()
        .strip_prefix("Promotion:")
        .and_then(|rest| rest.split(':').next())
        .map(PromotionId::parse)
    else {
        return Ok(None);
    };
    let cmd = match event {
        MessageEvent::MessageNotSent { reason, .. } => PromotionCommand::RecordDeliveryFailed {
            customer_id,
            reason: not_sent_text(&reason),
        },
        MessageEvent::MessageDeliveryStatusChanged { to, .. } => match to {
            DeliveryStatus::Undelivered | DeliveryStatus::Failed | DeliveryStatus::Bounced => {
                PromotionCommand::RecordDeliveryFailed {
                    customer_id,
                    reason: format!("{to:?}").to_lowercase(),
                }
            }
            DeliveryStatus::Opened | DeliveryStatus::Read => {
                PromotionCommand::RecordOpened { customer_id }
            }
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok(Some((promotion, cmd)))
}

fn cause(e: &RecordedEvent) -> String {
    format!("{}:{}:{}", e.aggregate_type, e.aggregate_id, e.sequence)
}

fn discount_text(d: &Discount) -> String {
    match d {
        Discount::Percent(p) => format!("{p}% off"),
        Discount::Amount(m) => format!("{m} off"),
    }
}

/// The messages `e` causes (none for triggers older than [`max_cause_age`]).
///
/// # Errors
/// [`AppError::Store`] when the trigger's stream cannot be read or decoded.
pub async fn messages_for(crm: &Crm, e: &RecordedEvent) -> Result<Vec<QueuedMessage>, AppError> {
    let now = crm.services().clock.now();
    if now - e.occurred_at() > max_cause_age() {
        tracing::info!(cause = %cause(e), "not messaging a trigger older than the outbox's horizon");
        return Ok(vec![]);
    }
    let earlier: Vec<RecordedEvent> = crm
        .log()
        .load_stream(&e.aggregate_type, &e.aggregate_id, 0)
        .await?
        .into_iter()
        .filter(|h| h.sequence < e.sequence)
        .collect();
    match e.aggregate_type.as_str() {
        "Opportunity" => offer(crm, e, earlier),
        "Promotion" => promotion(crm, e, earlier),
        "ReviewRequest" => review_request(crm, e, &earlier),
        "ScheduledReport" => report(crm, e, earlier).await,
        _ => Ok(vec![]),
    }
}

/// A message to the customer, caused by `e`.
fn customer_message(
    e: &RecordedEvent,
    kind: MessageKind,
    channel: Channel,
    customer_id: CustomerId,
    subject: Option<String>,
    body: String,
) -> QueuedMessage {
    QueuedMessage {
        cause: cause(e),
        kind,
        channel,
        recipient: Recipient::Customer { customer_id },
        subject,
        // The opt-out sentence and unsubscribe link are the sender's (worker::outbox::compose),
        // as is rendering a promotion's template: the customer's details stay out of here.
        body,
    }
}

/// An offer sent: the offer's text, with the auto-offer's discount when one was set.
fn offer(
    crm: &Crm,
    e: &RecordedEvent,
    earlier: Vec<RecordedEvent>,
) -> Result<Vec<QueuedMessage>, AppError> {
    let store = crm.opportunities();
    let OpportunityEvent::OfferSent {
        customer_id,
        channel,
        ..
    } = store.store().decode(e.clone())?
    else {
        return Ok(vec![]);
    };
    let mut offer = None;
    for h in earlier {
        if let OpportunityEvent::AutoOfferConfigured {
            discount,
            expires_at,
            ..
        } = store.store().decode(h)?
        {
            offer = Some((discount, expires_at));
        }
    }
    let text = match offer {
        Some((d, until)) => format!(
            "Dirt Free Carpet Cleaning: a special offer for you, {} your next cleaning, valid until {}.",
            discount_text(&d),
            until.with_timezone(&crm.services().tz).format("%B %-d, %Y")
        ),
        None => "Dirt Free Carpet Cleaning: a special offer is waiting for you.".into(),
    };
    Ok(vec![customer_message(
        e,
        MessageKind::Offer,
        channel,
        customer_id,
        Some("A special offer from Dirt Free".into()),
        text,
    )])
}

/// A promotion delivered: its template as written (rendered for the customer when sent).
fn promotion(
    crm: &Crm,
    e: &RecordedEvent,
    earlier: Vec<RecordedEvent>,
) -> Result<Vec<QueuedMessage>, AppError> {
    let store = crm.promotions();
    let PromotionEvent::PromotionDelivered {
        customer_id,
        channel,
        ..
    } = store.store().decode(e.clone())?
    else {
        return Ok(vec![]);
    };
    let mut content: Option<PromotionContent> = None;
    for h in earlier {
        match store.store().decode(h)? {
            PromotionEvent::PromotionCreated { content: c, .. }
            | PromotionEvent::PromotionUpdated { content: c, .. } => content = Some(c),
            _ => {}
        }
    }
    let Some(c) = content else { return Ok(vec![]) };
    // The template as written: it is rendered for the customer when sent.
    Ok(vec![customer_message(
        e,
        MessageKind::Promotion,
        channel,
        customer_id,
        Some(c.name.to_string()),
        c.template.to_string(),
    )])
}

/// A review asked for or a reminder: the link to leave one, on the request's channel.
fn review_request(
    crm: &Crm,
    e: &RecordedEvent,
    earlier: &[RecordedEvent],
) -> Result<Vec<QueuedMessage>, AppError> {
    let store = crm.review_requests();
    let (kind, customer_id) = match store.store().decode(e.clone())? {
        ReviewRequestEvent::ReviewRequested { customer_id, .. } => {
            (MessageKind::ReviewRequest, customer_id)
        }
        ReviewRequestEvent::ReviewReminderSent { customer_id, .. } => {
            (MessageKind::ReviewReminder, customer_id)
        }
        ReviewRequestEvent::ReviewRequestFulfilled { .. } => return Ok(vec![]),
    };
    // The channel is the request's (reminders go the same way).
    let mut channel = None;
    for h in earlier.iter().chain([e]).cloned() {
        if let ReviewRequestEvent::ReviewRequested { channel: c, .. } = store.store().decode(h)? {
            channel = Some(c);
        }
    }
    let Some(channel) = channel else {
        return Ok(vec![]);
    };
    let request = ReviewRequestId::parse(&e.aggregate_id)
        .map_err(|v| AppError::validation(v.field, v.message))?;
    let lead = match kind {
        MessageKind::ReviewReminder => "A quick reminder from Dirt Free:",
        _ => "Thanks for choosing Dirt Free!",
    };
    Ok(vec![customer_message(
        e,
        kind,
        channel,
        customer_id,
        Some("How did we do?".into()),
        format!("{lead} How did we do? Leave a review: {PUBLIC_URL}/review/{request}"),
    )])
}

/// A scheduled report generated: one email per recipient, with the run's figures.
async fn report(
    crm: &Crm,
    e: &RecordedEvent,
    earlier: Vec<RecordedEvent>,
) -> Result<Vec<QueuedMessage>, AppError> {
    let Ok(report) = ScheduledReportId::parse(&e.aggregate_id) else {
        return Ok(vec![]);
    };
    let Some(run) = crate::report_runs::find(
        crm,
        report,
        crate::report_runs::Which::AtSequence(e.sequence),
    )
    .await?
    else {
        return Ok(vec![]);
    };
    let store = crm.scheduled_reports();
    let mut recipients = vec![];
    for h in earlier {
        match store.store().decode(h)? {
            ScheduledReportEvent::ScheduledReportDefined { recipients: r, .. }
            | ScheduledReportEvent::ScheduledReportRecipientsChanged { recipients: r, .. } => {
                recipients = r
            }
            _ => {}
        }
    }
    // The figures themselves: no personal data, so they may live in the message's
    // events; the HTML and the CSV attachment are made from the same run when sent.
    let download = format!(
        "{PUBLIC_URL}{}",
        crate::report_runs::download_path(report, run.period_start)
    );
    let body = run.text(&download);
    Ok(recipients
        .into_iter()
        .enumerate()
        .map(|(i, address)| QueuedMessage {
            cause: format!("{}:{i}", cause(e)),
            kind: MessageKind::ScheduledReport,
            channel: Channel::Email,
            recipient: Recipient::Email { address },
            subject: Some(run.subject()),
            body: body.clone(),
        })
        .collect())
}

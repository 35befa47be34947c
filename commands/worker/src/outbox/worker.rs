//! The outbox worker: finds due messages in the index, claims an attempt on the message
//! aggregate, calls the vendor, records the result. One message at a time per worker; several
//! workers (server instances) contend through the aggregate's optimistic concurrency.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use commands::{Actor, AppError, Crm, EventMetadata, StoreError};
use domain::consent::{Channel, MarketingEligibility};
use domain::customer::Customer;
use domain::ids::OutboundMessageId;
use domain::message::{
    backoff, idempotency_key, MessageCommand, MessageKind, MessageStatus, OutboundMessage,
    Provider, Recipient,
};
use domain::Actor as DomainActor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::reset_tokens;
use super::{compose, index, MessageSender, Outgoing, SendError};

/// How the worker retries and how long claims last.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// A claim older than this is a dead worker's; longer than a vendor request may take.
    pub claim_lease: Duration,
    /// How long vendors remember idempotency keys (Resend: 24 h), with a margin.
    pub idempotency_window: Duration,
    /// Attempts per message, the first included.
    pub max_attempts: u32,
    /// Back-off after the first failure; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_cap: Duration,
    /// Vendor request timeout.
    pub http_timeout: StdDuration,
    /// Idle re-check interval (new events wake the worker sooner).
    pub poll: StdDuration,
    /// Messages taken per round.
    pub batch: i64,
    /// Replaces `{public_url}` in message bodies.
    pub public_url: String,
    /// When marketing waits (in the CRM's business time zone); none: any hour.
    pub quiet_hours: Option<domain::quiet_hours::QuietHours>,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            claim_lease: Duration::seconds(120),
            idempotency_window: Duration::hours(23),
            max_attempts: 8,
            backoff_base: Duration::seconds(2),
            backoff_cap: Duration::hours(1),
            http_timeout: StdDuration::from_secs(30),
            poll: StdDuration::from_secs(1),
            batch: 50,
            public_url: "http://127.0.0.1:8080".into(),
            quiet_hours: None,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Messages looked at.
    pub processed: usize,
}

/// Sends queued messages. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboxWorker {
    crm: Crm,
    sms: Option<Arc<dyn MessageSender>>,
    email: Option<Arc<dyn MessageSender>>,
    settings: OutboxSettings,
}

/// Which integrations the configuration enables, for logs and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Providers {
    /// Twilio (SMS) configured.
    pub sms: bool,
    /// Resend (email) configured.
    pub email: bool,
}

impl OutboxWorker {
    /// A worker with no vendor: every message is recorded as not sent.
    pub fn new(crm: Crm, settings: OutboxSettings) -> Self {
        Self {
            crm,
            sms: None,
            email: None,
            settings,
        }
    }

    /// Sends SMS through `sender`.
    #[must_use]
    pub fn with_sms(mut self, sender: Arc<dyn MessageSender>) -> Self {
        self.sms = Some(sender);
        self
    }

    /// Sends email through `sender`.
    #[must_use]
    pub fn with_email(mut self, sender: Arc<dyn MessageSender>) -> Self {
        self.email = Some(sender);
        self
    }

    /// Which vendors are configured.
    pub fn providers(&self) -> Providers {
        Providers {
            sms: self.sms.is_some(),
            email: self.email.is_some(),
        }
    }

    /// Indexes new message events, then handles every message due now.
    ///
    /// # Errors
    /// [`AppError`] when the store fails; a message a vendor refused is not an error.
    pub async fn run_once(&self) -> Result<Round, AppError> {
        let log = self.crm.log();
        index::catch_up(log).await?;
        let mut round = Round::default();
        loop {
            let due = index::due(
                log,
                self.now(),
                self.settings.claim_lease,
                self.settings.batch,
            )
            .await?;
            let n = due.len();
            let mut failed = 0;
            for raw in due {
                let id = OutboundMessageId::parse(&raw)
                    .map_err(|e| AppError::Store(StoreError::Database(e.to_string())))?;
                match self.process(id).await {
                    Ok(()) => {}
                    // The store is down: end the round, the loop backs off.
                    Err(e @ AppError::Store(StoreError::Unavailable(_))) => return Err(e),
                    // One message's failure must not hold up the others; it stays due.
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(message_id = %id, error = %e, "outbox: message failed; will retry")
                    }
                }
                round.processed += 1;
            }
            index::catch_up(log).await?;
            // A batch that failed whole would be read again at once: wait for the next round.
            if (n as i64) < self.settings.batch || failed == n {
                return Ok(round);
            }
        }
    }

    /// Runs until `shutdown`, waking on new events and every `poll`.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let p = self.providers();
            tracing::info!(sms = p.sms, email = p.email, "outbox worker started");
            let mut commits = self.crm.log().commits();
            let mut pause = self.settings.poll;
            loop {
                match self.run_once().await {
                    Ok(_) => pause = self.settings.poll,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox round failed; retrying");
                        pause = (pause * 2).min(StdDuration::from_secs(30));
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = commits.changed() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    /// The CRM's clock: decisions (claim leases, due retries) use it too.
    fn now(&self) -> DateTime<Utc> {
        self.crm.services().clock.now()
    }

    fn meta(&self) -> EventMetadata {
        EventMetadata::new(Actor::System("outbox".into()), self.now())
    }

    /// Where to send and whether one may: marketing needs the customer's consent now;
    /// transactional messages an address.
    async fn resolve(
        &self,
        id: OutboundMessageId,
        m: &OutboundMessage,
        channel: Channel,
    ) -> Result<(Option<String>, MarketingEligibility), AppError> {
        match m.recipient() {
            Some(Recipient::Customer { customer_id }) => {
                let c = self.crm.customers().load(*customer_id).await?.aggregate;
                let address = customer_address(&c, channel);
                let marketing = m.kind().is_some_and(|k| k.is_marketing());
                let eligibility = if marketing {
                    c.marketing_eligibility(channel)
                } else if c.id().is_none() || c.is_erased() || c.merged_into().is_some() {
                    MarketingEligibility::NoAddress
                } else if address.is_some() {
                    MarketingEligibility::Eligible
                } else {
                    MarketingEligibility::NoAddress
                };
                Ok((address, eligibility))
            }
            Some(Recipient::Email { address }) => {
                Ok((Some(address.to_string()), MarketingEligibility::Eligible))
            }
            Some(Recipient::Phone { number }) => {
                Ok((Some(number.to_string()), MarketingEligibility::Eligible))
            }
            // Kept beside the message's code; gone (expired) means there is nowhere to send.
            Some(Recipient::Withheld) => {
                let db = projections::ReadDb::of(self.crm.log());
                match reset_tokens::address(&db, id, self.now()).await {
                    Ok(Some(a)) => Ok((Some(a), MarketingEligibility::Eligible)),
                    Ok(None) => Ok((None, MarketingEligibility::NoAddress)),
                    Err(e) => Err(AppError::Store(StoreError::Database(e.to_string()))),
                }
            }
            None => Ok((None, MarketingEligibility::NoAddress)),
        }
    }

    /// Takes one message as far as it can go now.
    ///
    /// # Errors
    /// [`AppError`] when the store fails.
    pub async fn process(&self, id: OutboundMessageId) -> Result<(), AppError> {
        let messages = self.crm.messages();
        let m = messages.load(id).await?.aggregate;
        if !matches!(m.status(), MessageStatus::Pending | MessageStatus::Sending) {
            return Ok(());
        }
        let Some(channel) = m.channel() else {
            return Ok(());
        };
        let sender = match channel {
            Channel::Sms => self.sms.clone(),
            Channel::Email => self.email.clone(),
        };
        let (address, eligibility) = self.resolve(id, &m, channel).await?;
        // The text is made before the claim: a store failure here leaves the message due,
        // not a claim that would end as "outcome unknown" though nothing went out.
        let with_url = |body: &str| {
            body.replace(
                commands::policies::outbox::PUBLIC_URL,
                &self.settings.public_url,
            )
        };
        let composed = if eligibility.is_eligible() && sender.is_some() {
            Some(self.compose(id, &m, channel, with_url(m.body())).await?)
        } else {
            None
        };
        if !self
            .start_attempt(id, sender.as_ref().map(|s| s.provider()), eligibility)
            .await?
        {
            return Ok(());
        }
        let claimed = messages.load(id).await?.aggregate;
        let Some(claim) = claimed.claim() else {
            return Ok(());
        };
        let resumed = claim.attempt <= m.attempts();
        let secret = self.reset_token_of(id, &claimed).await?;
        let cmd = match (&sender, address) {
            // The token expired (or was forgotten) before the link could go out.
            _ if secret == Some(None) => MessageCommand::RecordRejected {
                status: 0,
                error: "the password-reset token expired before it was sent".into(),
            },
            (Some(sender), Some(to)) if sender.provider() == claim.provider => {
                let composed = match composed {
                    Some(c) => c,
                    // A resumed claim of a message not eligible now: made here.
                    None => {
                        self.compose(id, &claimed, channel, with_url(claimed.body()))
                            .await?
                    }
                };
                match composed {
                    Ok(c) => {
                        let token = secret.as_ref().and_then(|s| s.as_deref());
                        let result = sender.send(&outgoing(id, to, &claimed, c, token)).await;
                        tracing::info!(message_id = %id, provider = claim.provider.as_str(), attempt = claim.attempt, resumed, ok = result.is_ok(), "outbox: vendor answered");
                        self.outcome_command(claim, result)
                    }
                    // A resumed claim's first attempt may have gone out before the text
                    // became impossible to make (a cancelled promotion): not known.
                    Err(_) if resumed => MessageCommand::RecordOutcomeUnknown,
                    // Nothing went out: the text could not be made.
                    Err(error) => MessageCommand::RecordRejected { status: 0, error },
                }
            }
            // The vendor of a resumed claim is no longer configured, or the address is gone:
            // whether the first attempt went out cannot be known.
            _ if resumed => MessageCommand::RecordOutcomeUnknown,
            _ => MessageCommand::RecordRejected {
                status: 0,
                error: "the recipient has no address on the channel".into(),
            },
        };
        // A failed attempt will be retried with the same token; any other outcome is final.
        let last = !matches!(cmd, MessageCommand::RecordAttemptFailed { .. });
        // If this fails the claim stays; it is resolved when its lease ends.
        messages
            .execute(id, DomainActor::System, cmd, &self.meta())
            .await?;
        if last && secret.is_some() {
            self.forget_secret(id).await;
        }
        Ok(())
    }

    /// Claims the message for an attempt now; false when there is nothing to send now (another
    /// worker has it, it is not due, it is done, held for quiet hours, or not sendable).
    async fn start_attempt(
        &self,
        id: OutboundMessageId,
        provider: Option<Provider>,
        eligibility: MarketingEligibility,
    ) -> Result<bool, AppError> {
        let now = self.now();
        let start = MessageCommand::StartAttempt {
            provider,
            eligibility,
            claim_lease: self.settings.claim_lease,
            idempotency_window: self.settings.idempotency_window,
            quiet_until: self
                .settings
                .quiet_hours
                .and_then(|q| q.until(now, self.crm.services().tz)),
        };
        let outcome = match self
            .crm
            .messages()
            .execute(id, DomainActor::System, start, &self.meta())
            .await
        {
            Ok(o) => o,
            // Someone else has it, it is not due, or it is done: nothing to do now.
            Err(AppError::Conflict { .. })
            | Err(AppError::Rule {
                code: "ATTEMPT_IN_PROGRESS" | "ATTEMPT_NOT_DUE" | "MESSAGE_FINISHED",
                ..
            }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if outcome
            .events
            .iter()
            .any(|e| e.event_type == "MessageSendStarted")
        {
            return Ok(true);
        }
        let types: Vec<&str> = outcome
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        if types == ["MessageHeld"] {
            tracing::info!(message_id = %id, "outbox: marketing held for quiet hours");
            return Ok(false);
        }
        tracing::info!(message_id = %id, events = ?types, "outbox: message not sent");
        self.forget_secret(id).await;
        Ok(false)
    }

    /// A password-reset link's token, which is not in the log but waits in its own table:
    /// None when the message carries none, `Some(None)` when it expired or was forgotten.
    async fn reset_token_of(
        &self,
        id: OutboundMessageId,
        claimed: &OutboundMessage,
    ) -> Result<Option<Option<String>>, AppError> {
        if !claimed.body().contains(reset_tokens::PLACEHOLDER) {
            return Ok(None);
        }
        let db = projections::ReadDb::of(self.crm.log());
        reset_tokens::token(&db, id, self.now())
            .await
            .map(Some)
            .map_err(|e| AppError::Store(StoreError::Database(e.to_string())))
    }

    /// What the recipient reads: a promotion's template rendered for them, every marketing
    /// message's opt-out (SMS) or unsubscribe link and headers (email), a report's figures as
    /// HTML with the CSV attached. `Ok(Err(reason))` when the text cannot be made (nothing is
    /// sent then).
    async fn compose(
        &self,
        id: OutboundMessageId,
        m: &OutboundMessage,
        channel: Channel,
        body: String,
    ) -> Result<Result<compose::Composed, String>, AppError> {
        if m.kind() == Some(MessageKind::ScheduledReport) {
            return compose::report(&self.crm, m.cause(), body).await.map(Ok);
        }
        let marketing = m.kind().is_some_and(|k| k.is_marketing());
        let Some(Recipient::Customer { customer_id }) = m.recipient() else {
            return Ok(Ok(compose::Composed::text(body)));
        };
        if !marketing {
            return Ok(Ok(compose::Composed::text(body)));
        }
        let db = projections::ReadDb::of(self.crm.log());
        let public_url = &self.settings.public_url;
        let link = match channel {
            Channel::Email => {
                Some(compose::unsubscribe_link(&db, public_url, *customer_id, id).await?)
            }
            Channel::Sms => None,
        };
        let mut text = body;
        if m.kind() == Some(MessageKind::Promotion) {
            let promotion = match compose::promotion_of(m.cause()) {
                Some(p) => self.crm.promotions().load(p).await?.aggregate,
                None => return Ok(Err("the promotion of this message is unknown".into())),
            };
            if promotion.is_cancelled() {
                return Ok(Err("the promotion was cancelled".into()));
            }
            let Some(content) = promotion.content().cloned() else {
                return Ok(Err("the promotion of this message is unknown".into()));
            };
            let customer = self.crm.customers().load(*customer_id).await?.aggregate;
            let values = compose::values(
                &db,
                self.crm.services().tz,
                public_url,
                &content,
                *customer_id,
                &customer,
                link.as_deref(),
            )
            .await?;
            text = match compose::promotion_text(&text, &content, &values) {
                Ok(t) => t,
                Err(reason) => return Ok(Err(reason)),
            };
        }
        let headers = link
            .as_deref()
            .map(compose::unsubscribe_headers)
            .unwrap_or_default();
        let text = compose::finish_marketing(text, channel, link.as_deref());
        let limit = domain::template::max_len(channel);
        if text.chars().count() > limit {
            return Ok(Err(format!(
                "the message is longer than the channel's {limit} characters"
            )));
        }
        Ok(Ok(compose::Composed {
            headers,
            ..compose::Composed::text(text)
        }))
    }

    /// Deletes a finished message's password-reset token, if it had one (a failure only
    /// leaves the row until it expires).
    async fn forget_secret(&self, id: OutboundMessageId) {
        let db = projections::ReadDb::of(self.crm.log());
        if let Err(e) = reset_tokens::forget(&db, id).await {
            tracing::warn!(message_id = %id, error = %e, "outbox: could not delete a reset token; it expires on its own");
        }
    }

    fn outcome_command(
        &self,
        claim: domain::message::Claim,
        result: Result<String, SendError>,
    ) -> MessageCommand {
        // A vendor's error text often quotes the recipient ("+1512… is not a valid
        // number"): events outlive erasure, so no address may go into one.
        let result = result.map_err(SendError::without_personal_data);
        let retry = |error: String, wait: Option<StdDuration>| {
            let delay = backoff(
                claim.attempt,
                self.settings.backoff_base,
                self.settings.backoff_cap,
            );
            let asked = wait
                .and_then(|w| Duration::from_std(w).ok())
                .unwrap_or_else(Duration::zero);
            MessageCommand::RecordAttemptFailed {
                error,
                retry_at: self.now() + delay.max(asked),
                max_attempts: self.settings.max_attempts,
            }
        };
        match result {
            Ok(provider_message_id) => MessageCommand::RecordSent {
                provider_message_id,
            },
            Err(SendError::Retryable { error, retry_after }) => retry(error, retry_after),
            Err(SendError::Ambiguous { error }) if claim.provider.dedupes_by_idempotency_key() => {
                retry(error, None)
            }
            Err(SendError::Ambiguous { .. }) => MessageCommand::RecordOutcomeUnknown,
            Err(SendError::Permanent { status, error }) => {
                MessageCommand::RecordRejected { status, error }
            }
        }
    }
}

/// The customer's phone or email on `channel`, if they have one.
fn customer_address(c: &Customer, channel: Channel) -> Option<String> {
    match channel {
        Channel::Sms => c.phone().map(|p| p.to_string()),
        Channel::Email => c.email().map(|e| e.to_string()),
    }
}

/// The vendor request for a claimed message, its reset token (if any) in place.
fn outgoing(
    id: OutboundMessageId,
    to: String,
    claimed: &OutboundMessage,
    c: compose::Composed,
    token: Option<&str>,
) -> Outgoing {
    let mut body = c.body;
    if let Some(token) = token {
        body = body.replace(reset_tokens::PLACEHOLDER, token);
    }
    Outgoing {
        to,
        subject: claimed.subject().map(str::to_string),
        body,
        idempotency_key: idempotency_key(id),
        headers: c.headers,
        html: c.html,
        attachments: c.attachments,
    }
}

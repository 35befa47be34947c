//! The outbox: sends the `OutboundMessage`s the `outbox` policy queues (offers, promotions,
//! review requests, reports) through Twilio (SMS) and Resend (email), with retries,
//! exponential back-off, consent checked at send time, and every result recorded as an event.
//! See docs/webhooks.md, "Outbound".
//!
//! At most one successful send per message: the worker records a claim
//! (`MessageSendStarted`) *before* calling the vendor; optimistic concurrency lets one worker
//! claim an attempt. A claim left without an outcome (the worker died between sending and
//! recording) is found when its lease ends; with Resend it is re-sent with the same
//! `Idempotency-Key` (the vendor answers with the first result instead of sending again),
//! with Twilio, which has no such key, it is recorded as `OutcomeUnknown` and not re-sent.
//!
//! Without vendor keys the worker still runs and records each message as not sent
//! (`NoProviderConfigured`), so the embedded default works offline.

pub mod compose;
pub mod google_reviews;
pub mod index;
pub mod resend;
pub mod reset_tokens;
pub mod stripe;
pub mod twilio;
pub mod worker;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use domain::message::Provider;

pub use worker::{OutboxSettings, OutboxWorker};

/// One message as a vendor receives it.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient's phone number (E.164) or email address.
    pub to: String,
    /// Email subject.
    pub subject: Option<String>,
    /// The text, placeholders filled.
    pub body: String,
    /// The same for every attempt of the message.
    pub idempotency_key: String,
    /// Extra email headers (`List-Unsubscribe` on marketing email).
    pub headers: Vec<(String, String)>,
    /// An HTML version of an email (a report's figures as a table).
    pub html: Option<String>,
    /// Files attached to an email (a report's CSV).
    pub attachments: Vec<Attachment>,
}

/// A file attached to an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file's name, e.g. `report-2026-11-30.csv`.
    pub filename: String,
    /// Its bytes.
    pub content: Vec<u8>,
}

impl fmt::Debug for Outgoing {
    // The recipient and text are personal data: not for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Nothing was done and a retry may succeed (429, 5xx, connection refused).
    #[error("{error}")]
    Retryable {
        /// What happened (status and vendor message; never a secret).
        error: String,
        /// The vendor's `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// The request may have been carried out (timeout or connection lost after sending).
    #[error("outcome unknown: {error}")]
    Ambiguous {
        /// What happened.
        error: String,
    },
    /// The vendor refused the message; retrying will not help.
    #[error("refused with {status}: {error}")]
    Permanent {
        /// HTTP status.
        status: u16,
        /// The vendor's error message.
        error: String,
    },
}

impl SendError {
    /// The same error with phone numbers and email addresses in its text
    /// replaced by `[phone]` and `[email]`, as it may be kept in an event.
    pub fn without_personal_data(self) -> Self {
        match self {
            SendError::Retryable { error, retry_after } => SendError::Retryable {
                error: scrub_personal_data(&error),
                retry_after,
            },
            SendError::Ambiguous { error } => SendError::Ambiguous {
                error: scrub_personal_data(&error),
            },
            SendError::Permanent { status, error } => SendError::Permanent {
                status,
                error: scrub_personal_data(&error),
            },
        }
    }
}

/// `text` with every word that looks like a phone number (seven or more digits
/// among `+ - . ( )`) or an email address (`@` with a dot after it) replaced;
/// punctuation around a word is kept.
pub fn scrub_personal_data(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| {
            matches!(c, ',' | ';' | ':' | '"' | '\'' | '!' | '?' | '<' | '>')
                || (c == '.' && !word.contains('@'))
        });
        let start = word.find(core).unwrap_or(0);
        let (before, rest) = word.split_at(start);
        let after = &rest[core.len()..];
        let digits = core.chars().filter(char::is_ascii_digit).count();
        let phone = digits >= 7
            && core
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | '(' | ')'));
        let email = core
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        out.push_str(before);
        out.push_str(if phone {
            "[phone]"
        } else if email {
            "[email]"
        } else {
            core
        });
        out.push_str(after);
    }
    out
}

/// A vendor API that sends messages of one channel.
#[async_trait]
pub trait MessageSender: Send + Sync + fmt::Debug {
    /// Which vendor this is.
    fn provider(&self) -> Provider;

    /// Sends `message`; returns the vendor's message id.
    ///
    /// # Errors
    /// [`SendError`], sorted into retryable, ambiguous and permanent.
    async fn send(&self, message: &Outgoing) -> Result<String, SendError>;
}

/// Sorts a vendor's HTTP answer: 429, 409 (a concurrent request with the same key) and 5xx
/// may be retried, any other 4xx is final.
pub(crate) fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    error: String,
) -> SendError {
    let code = status.as_u16();
    if code == 429 || code == 409 || status.is_server_error() {
        SendError::Retryable {
            error: format!("HTTP {code}: {error}"),
            retry_after,
        }
    } else {
        SendError::Permanent {
            status: code,
            error,
        }
    }
}

/// `Retry-After` in seconds, when the vendor sent one.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A transport failure: before the request left (connect) nothing happened; otherwise the
/// vendor may have acted on it.
pub(crate) fn transport_error(e: &reqwest::Error) -> SendError {
    // reqwest's Display includes the URL, which holds no secret (keys go in headers).
    let error = e.to_string();
    if e.is_connect() {
        SendError::Retryable {
            error,
            retry_after: None,
        }
    } else {
        SendError::Ambiguous { error }
    }
}

/// The first `max` characters of a vendor's error body.
pub(crate) fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// How many messages may or may not have gone out (`OutcomeUnknown`: the worker died between
/// calling a vendor that has no idempotency key and recording its answer). A person checks
/// the vendor's log; health and the `check-system-health` job report the count.
///
/// # Errors
/// When the read models cannot be read.
pub async fn uncertain_sends(
    projections: &projections::ProjectionRunner,
) -> Result<i64, projections::DbError> {
    Ok(projections
        .query(
            "SELECT count(*) AS n FROM rm_messages WHERE not_sent_reason = 'outcome_unknown'",
            &[],
        )
        .await?
        .first()
        .and_then(|r| r.get("n"))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_and_server_errors_are_retried_other_client_errors_are_final() {
        let retry = |s: u16| {
            matches!(
                classify(
                    reqwest::StatusCode::from_u16(s).expect("status"),
                    None,
                    "x".into()
                ),
                SendError::Retryable { .. }
            )
        };
        assert!(retry(429) && retry(500) && retry(503) && retry(409));
        assert!(!retry(400) && !retry(401) && !retry(422));
    }

    #[test]
    fn an_outgoing_message_does_not_print_its_recipient_or_text() {
        let m = Outgoing {
            to: "+15125550100".into(),
            subject: None,
            body: "secret offer".into(),
            idempotency_key: "k".into(),
            headers: vec![],
            html: None,
            attachments: vec![],
        };
        let dbg = format!("{m:?}");
        assert!(!dbg.contains("+1512") && !dbg.contains("secret"), "{dbg}");
    }
}

#[cfg(test)]
mod scrub_tests {
    use super::scrub_personal_data;

    #[test]
    fn phone_numbers_and_email_addresses_leave_a_vendors_error_text() {
        assert_eq!(
            scrub_personal_data("The 'To' number +15125550100 is not a valid phone number."),
            "The 'To' number [phone] is not a valid phone number."
        );
        assert_eq!(
            scrub_personal_data("Invalid `to` field: ada@example.com, (512) 555-0100"),
            "Invalid `to` field: [email], (512) [phone]"
        );
        assert_eq!(
            scrub_personal_data("429 Too Many Requests: retry in 30 s (code 20429)"),
            "429 Too Many Requests: retry in 30 s (code 20429)"
        );
    }
}

//! Twilio Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` (form:
//! `To`, `From`, `Body`, `StatusCallback`), HTTP basic auth with the account SID and auth
//! token; the answer's `sid` (`SM…`) is the message's id.
//!
//! Twilio has no idempotency key: a request that may have reached it (timeout, connection lost
//! after sending, a worker that died) is never repeated; see [`super`].

use std::time::Duration;

use async_trait::async_trait;
use domain::message::Provider;

use super::{classify, clip, retry_after, transport_error, MessageSender, Outgoing, SendError};
use crate::secret::Secret;

/// Twilio's SMS sender.
#[derive(Debug, Clone)]
pub struct TwilioSender {
    client: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: Secret,
    from: String,
    status_callback: Option<String>,
}

impl TwilioSender {
    /// A sender for the account; `status_callback` is the public URL of
    /// `/api/webhooks/twilio/status` (none without `PUBLIC_URL`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS roots missing).
    pub fn new(
        base: &str,
        account_sid: String,
        auth_token: Secret,
        from: String,
        status_callback: Option<String>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_string(),
            account_sid,
            auth_token,
            from,
            status_callback,
        })
    }
}

#[async_trait]
impl MessageSender for TwilioSender {
    fn provider(&self) -> Provider {
        Provider::Twilio
    }

    async fn send(&self, m: &Outgoing) -> Result<String, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.account_sid
        );
        let mut form = vec![
            ("To", m.to.as_str()),
            ("From", self.from.as_str()),
            ("Body", m.body.as_str()),
        ];
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.as_str()));
        }
        let response = self
            .client
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body: serde_json::Value = match response.json().await {
            Ok(v) => v,
            // The message was accepted or refused; only the answer got lost.
            Err(e) if status.is_success() => {
                return Err(SendError::Ambiguous {
                    error: format!("unreadable answer: {e}"),
                })
            }
            Err(_) => serde_json::Value::Null,
        };
        if status.is_success() {
            return body
                .get("sid")
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .ok_or_else(|| SendError::Ambiguous {
                    error: "answer without a sid".into(),
                });
        }
        let error = body
            .get("message")
            .and_then(|s| s.as_str())
            .map_or_else(|| status.to_string(), |s| clip(s, 500));
        Err(classify(status, wait, error))
    }
}

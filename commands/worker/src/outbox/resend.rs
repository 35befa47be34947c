//! Resend Emails API: `POST {base}/emails` with `Authorization: Bearer {key}`, an
//! `Idempotency-Key` header (the same for every attempt of a message: Resend answers a repeat
//! within 24 hours with the first result instead of sending again) and a JSON body
//! `{from, to, subject, text}` (with `html`, `headers` and base64 `attachments` when the
//! message has them); the answer's `id` is the email's id.

use std::time::Duration;

use async_trait::async_trait;
use domain::message::Provider;

use super::{classify, clip, retry_after, transport_error, MessageSender, Outgoing, SendError};
use crate::secret::Secret;

/// Resend's email sender.
#[derive(Debug, Clone)]
pub struct ResendSender {
    client: reqwest::Client,
    base: String,
    api_key: Secret,
    from: String,
}

impl ResendSender {
    /// A sender from `from` (`RESEND_FROM_EMAIL`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        base: &str,
        api_key: Secret,
        from: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            base: base.trim_end_matches('/').to_string(),
            api_key,
            from,
        })
    }
}

#[async_trait]
impl MessageSender for ResendSender {
    fn provider(&self) -> Provider {
        Provider::Resend
    }

    async fn send(&self, m: &Outgoing) -> Result<String, SendError> {
        let mut payload = serde_json::json!({
            "from": self.from,
            "to": [m.to],
            "subject": m.subject.as_deref().unwrap_or("Dirt Free Carpet Cleaning"),
            "text": m.body,
        });
        if let Some(html) = &m.html {
            payload["html"] = html.as_str().into();
        }
        if !m.attachments.is_empty() {
            use base64::Engine as _;
            payload["attachments"] = m
                .attachments
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "filename": a.filename,
                        "content": base64::engine::general_purpose::STANDARD.encode(&a.content),
                    })
                })
                .collect::<Vec<_>>()
                .into();
        }
        if !m.headers.is_empty() {
            payload["headers"] = m
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let response = self
            .client
            .post(format!("{}/emails", self.base))
            .bearer_auth(self.api_key.expose())
            .header("Idempotency-Key", &m.idempotency_key)
            .json(&payload)
            .send()
            .await
            // With the idempotency key a repeat is safe: an ambiguous failure is retried.
            .map_err(|e| match transport_error(&e) {
                SendError::Ambiguous { error } => SendError::Retryable {
                    error,
                    retry_after: None,
                },
                other => other,
            })?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status.is_success() {
            return body
                .get("id")
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .ok_or_else(|| SendError::Retryable {
                    error: "answer without an id".into(),
                    retry_after: None,
                });
        }
        let error = body
            .get("message")
            .and_then(|s| s.as_str())
            .map_or_else(|| status.to_string(), |s| clip(s, 500));
        // 409 is a concurrent request with the key (retry) or the key reused with another
        // payload (final).
        if status.as_u16() == 409
            && body.get("name").and_then(|n| n.as_str()) == Some("invalid_idempotent_request")
        {
            return Err(SendError::Permanent { status: 409, error });
        }
        Err(classify(status, wait, error))
    }
}

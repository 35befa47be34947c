//! The background workers built from the configuration (the settings are listed in the
//! README's Configuration table): the outbox with its vendors, the Google reviews source and
//! the alert watcher.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use commands::Crm;
use worker::alerts::AlertSettings;
use worker::outbox::google_reviews::GoogleReviewsConfig;
use worker::outbox::resend::ResendSender;
use worker::outbox::twilio::TwilioSender;
use worker::outbox::{OutboxSettings, OutboxWorker};

use crate::config::Config;

impl Config {
    /// Where alerts go (`ALERT_EMAIL`; the link in them is `PUBLIC_URL`'s), and this
    /// instance's name (host and listen port).
    pub fn alert_settings(&self) -> AlertSettings {
        AlertSettings {
            alert_email: self
                .alert_email
                .as_deref()
                .and_then(|a| domain::values::Email::parse(a).ok()),
            public_url: self.outbox_settings().public_url,
            instance: AlertSettings::instance_on_port(self.bind_addr.port()),
            business_timezone: self.business_timezone,
        }
    }

    /// The outbox's settings the configuration names.
    pub fn outbox_settings(&self) -> OutboxSettings {
        let ms = |n: u64| Duration::milliseconds(i64::try_from(n).unwrap_or(i64::MAX));
        OutboxSettings {
            claim_lease: ms(self.outbox_claim_lease_ms),
            max_attempts: self.outbox_max_attempts.max(1),
            backoff_base: ms(self.outbox_retry_base_ms),
            backoff_cap: ms(self.outbox_retry_max_ms),
            http_timeout: StdDuration::from_millis(self.outbox_http_timeout_ms),
            poll: StdDuration::from_millis(self.outbox_poll_ms.max(10)),
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.bind_addr))
                .trim_end_matches('/')
                .to_string(),
            quiet_hours: self.quiet_hours.0,
            ..OutboxSettings::default()
        }
    }

    /// The outbox worker the configuration describes: Twilio when `TWILIO_ACCOUNT_SID`,
    /// `TWILIO_AUTH_TOKEN` and `TWILIO_PHONE_NUMBER` are set, Resend when `RESEND_API_KEY`
    /// and `RESEND_FROM_EMAIL` are.
    ///
    /// # Errors
    /// When an HTTP client cannot be built.
    pub fn outbox_worker(&self, crm: Crm) -> Result<OutboxWorker, reqwest::Error> {
        let settings = self.outbox_settings();
        let timeout = settings.http_timeout;
        let callback = self
            .public_url
            .as_ref()
            .map(|u| format!("{}/api/webhooks/twilio/status", u.trim_end_matches('/')));
        let mut worker = OutboxWorker::new(crm, settings);
        if let (Some(sid), Some(token), Some(from)) = (
            &self.twilio_account_sid,
            &self.twilio_auth_token,
            &self.twilio_phone_number,
        ) {
            worker = worker.with_sms(Arc::new(TwilioSender::new(
                &self.twilio_api_base,
                sid.clone(),
                token.clone(),
                from.clone(),
                callback,
                timeout,
            )?));
        }
        if let (Some(key), Some(from)) = (&self.resend_api_key, &self.resend_from_email) {
            worker = worker.with_email(Arc::new(ResendSender::new(
                &self.resend_api_base,
                key.clone(),
                from.clone(),
                timeout,
            )?));
        }
        Ok(worker)
    }

    /// The Google Business Profile settings, when all are set.
    pub fn google_reviews(&self) -> Option<GoogleReviewsConfig> {
        Some(GoogleReviewsConfig {
            api_base: self.google_reviews_api_base.clone(),
            token_url: self.google_oauth_token_url.clone(),
            account_id: self.google_business_account_id.clone()?,
            location_id: self.google_business_location_id.clone()?,
            client_id: self.google_oauth_client_id.clone()?,
            client_secret: self.google_oauth_client_secret.clone()?,
            refresh_token: self.google_oauth_refresh_token.clone()?,
        })
    }
}

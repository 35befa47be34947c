//! The server's configuration: one typed struct, read once at start from
//! flags or the environment (the original product's variable names).

use std::net::SocketAddr;

use chrono_tz::Tz;
use clap::Parser;
use worker::secret::Secret;

/// Where the server runs (`APP_ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppEnv {
    /// The default: the embedded store, the demo business, introspection on.
    #[default]
    Development,
    /// The production checks on ([`Config::validate`]); introspection and GraphiQL off
    /// unless `GRAPHQL_INTROSPECTION` asks for them.
    Production,
}

/// Strict on purpose: a typo such as `prod` must not quietly mean development.
fn parse_app_env(s: &str) -> Result<AppEnv, String> {
    match s {
        "development" => Ok(AppEnv::Development),
        "production" => Ok(AppEnv::Production),
        _ => Err(format!(
            "APP_ENV must be `production` or `development` (unset means development), not {s:?}"
        )),
    }
}

/// Dirt Free CRM server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    version,
    about = "Dirt Free CRM backend: GraphQL, webhooks and scheduled jobs"
)]
pub struct Config {
    /// `production` refuses unsafe settings at start (the demo, a known or short admin
    /// password, an implicit or in-memory store, no https `PUBLIC_URL`) and turns
    /// introspection and GraphiQL off; `development` (the default) changes nothing.
    #[arg(long, env = "APP_ENV", default_value = "development", value_parser = parse_app_env)]
    pub app_env: AppEnv,

    /// `postgres://…` or `sqlite://…`; unset → embedded SQLite under ./data/.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 32)]
    pub database_max_connections: u32,

    /// Listen address.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Public base URL (links in messages; the URL Twilio signs over).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

    /// IANA zone for schedules and reports.
    #[arg(long, env = "BUSINESS_TIMEZONE", default_value = "America/Chicago", value_parser = parse_tz)]
    pub business_timezone: Tz,

    /// Local hours (`BUSINESS_TIMEZONE`) in which marketing SMS and email wait, `HH:MM-HH:MM`;
    /// `off` sends at any hour. Transactional messages are never held.
    #[arg(long, env = "QUIET_HOURS", default_value = "21:00-08:00", value_parser = parse_quiet_hours)]
    pub quiet_hours: QuietHoursSetting,

    /// Bearer secret for `POST /api/cron/execute/{job}` (at least 32 characters); unset → endpoint off.
    #[arg(long, env = "CRON_SECRET", hide_env_values = true)]
    pub cron_secret: Option<Secret>,

    /// Bearer token (at least 32 characters) that opens `GET /metrics` on the main port and
    /// `GET /api/health/detailed` to clients beyond this machine; unset → no `/metrics` on
    /// the main port, and the detail answers loopback clients only.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// A second listener that serves only `GET /metrics`, without a token: bind it where only
    /// the scraper reaches (`127.0.0.1:9090`, a private network). Unset → none.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// The first admin, created on an empty store.
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// The first admin's password.
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,

    /// Stripe API key.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,
    /// Stripe webhook signing secret (`whsec_…`).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,
    /// Twilio account SID.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token (also signs Twilio's webhooks).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<Secret>,
    /// Twilio sender number.
    #[arg(long, env = "TWILIO_PHONE_NUMBER")]
    pub twilio_phone_number: Option<String>,
    /// Resend API key.
    #[arg(long, env = "RESEND_API_KEY", hide_env_values = true)]
    pub resend_api_key: Option<Secret>,
    /// Resend sender address.
    #[arg(long, env = "RESEND_FROM_EMAIL")]
    pub resend_from_email: Option<String>,
    /// Where alerts go by email (through the outbox, so `RESEND_*` must be set): a job that
    /// failed after its retries, messages that gave up, a projection or policy that failed;
    /// once per incident, and once when it is over.
    #[arg(long, env = "ALERT_EMAIL")]
    pub alert_email: Option<String>,
    /// Resend (Svix) webhook secret (`whsec_…`).
    #[arg(long, env = "RESEND_WEBHOOK_SECRET", hide_env_values = true)]
    pub resend_webhook_secret: Option<Secret>,
    /// Optional error reporting.
    #[arg(long, env = "SENTRY_DSN", hide_env_values = true)]
    pub sentry_dsn: Option<Secret>,

    /// Stripe API base URL (tests point it at a local stand-in).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Twilio API base URL.
    #[arg(
        long,
        env = "TWILIO_API_BASE",
        default_value = "https://api.twilio.com"
    )]
    pub twilio_api_base: String,
    /// Resend API base URL.
    #[arg(
        long,
        env = "RESEND_API_BASE",
        default_value = "https://api.resend.com"
    )]
    pub resend_api_base: String,
    /// Google Business Profile reviews API base URL.
    #[arg(
        long,
        env = "GOOGLE_REVIEWS_API_BASE",
        default_value = "https://mybusiness.googleapis.com"
    )]
    pub google_reviews_api_base: String,

    /// Google OAuth token endpoint (tests point it at a local stand-in).
    #[arg(
        long,
        env = "GOOGLE_OAUTH_TOKEN_URL",
        default_value = "https://oauth2.googleapis.com/token"
    )]
    pub google_oauth_token_url: String,
    /// Google Business Profile account id (digits); with the location and OAuth settings it
    /// turns on sync-google-reviews.
    #[arg(long, env = "GOOGLE_BUSINESS_ACCOUNT_ID")]
    pub google_business_account_id: Option<String>,
    /// Google Business Profile location id (digits).
    #[arg(long, env = "GOOGLE_BUSINESS_LOCATION_ID")]
    pub google_business_location_id: Option<String>,
    /// Google OAuth client id.
    #[arg(long, env = "GOOGLE_OAUTH_CLIENT_ID")]
    pub google_oauth_client_id: Option<String>,
    /// Google OAuth client secret.
    #[arg(long, env = "GOOGLE_OAUTH_CLIENT_SECRET", hide_env_values = true)]
    pub google_oauth_client_secret: Option<Secret>,
    /// Google OAuth refresh token (scope `business.manage`).
    #[arg(long, env = "GOOGLE_OAUTH_REFRESH_TOKEN", hide_env_values = true)]
    pub google_oauth_refresh_token: Option<Secret>,

    /// A send claim older than this (ms) is taken to be a dead worker's; must exceed the
    /// vendor request timeout.
    #[arg(long, env = "OUTBOX_CLAIM_LEASE_MS", default_value_t = 120_000)]
    pub outbox_claim_lease_ms: u64,
    /// Vendor request timeout (ms).
    #[arg(long, env = "OUTBOX_HTTP_TIMEOUT_MS", default_value_t = 30_000)]
    pub outbox_http_timeout_ms: u64,
    /// Send attempts per message, the first included.
    #[arg(long, env = "OUTBOX_MAX_ATTEMPTS", default_value_t = 8)]
    pub outbox_max_attempts: u32,
    /// Back-off after a failed attempt (ms); doubles per attempt.
    #[arg(long, env = "OUTBOX_RETRY_BASE_MS", default_value_t = 2_000)]
    pub outbox_retry_base_ms: u64,
    /// Longest back-off (ms).
    #[arg(long, env = "OUTBOX_RETRY_MAX_MS", default_value_t = 3_600_000)]
    pub outbox_retry_max_ms: u64,
    /// How often the outbox looks for due messages when nothing wakes it (ms).
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 1_000)]
    pub outbox_poll_ms: u64,

    /// Addresses of reverse proxies in front of the server (comma-separated IPs). Only a
    /// request arriving from one of them has its client address taken from
    /// `X-Forwarded-For` (the rightmost entry that is not a trusted proxy); from anyone
    /// else the header is ignored, so it cannot be used to dodge the sign-in rate limit.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Origin of the admin UI allowed by CORS (e.g. `https://admin.example.com`).
    #[arg(long, env = "ADMIN_UI_ORIGIN")]
    pub admin_ui_origin: Option<String>,
    /// Serve GraphQL introspection and the GraphiQL page (`on`/`off`); unset → on in
    /// development, off with `APP_ENV=production` ([`Config::introspection`]).
    #[arg(
        long,
        env = "GRAPHQL_INTROSPECTION",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub graphql_introspection: Option<bool>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// Demo data: `auto` seeds the demo business into an empty embedded
    /// store (DATABASE_URL unset), `on` into any empty store, `off` never.
    #[arg(long, env = "DEMO_SEED", default_value = "auto")]
    pub demo_seed: String,
    /// Size of the demo: `small` (30 customers, 150 jobs) or `full` (500 customers, 3,000 jobs).
    #[arg(long, env = "DEMO_SCALE", default_value = "small")]
    pub demo_scale: String,
    /// Log format: `json` (default) or `pretty`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,
}

/// `QUIET_HOURS`: a window, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHoursSetting(pub Option<domain::quiet_hours::QuietHours>);

fn parse_quiet_hours(s: &str) -> Result<QuietHoursSetting, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(QuietHoursSetting(None));
    }
    domain::quiet_hours::QuietHours::parse(s)
        .map(|q| QuietHoursSetting(Some(q)))
        .map_err(|e| format!("{s:?}: {} (or `off`)", e.message))
}

fn parse_tz(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("{s:?} is not an IANA time zone (e.g. America/Chicago)"))
}

/// A configuration the server must not start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// CRON_SECRET too short to resist guessing.
    #[error("CRON_SECRET must be at least 32 characters (it has {0}); unset it to turn the endpoint off")]
    CronSecretTooShort(usize),
    /// METRICS_TOKEN too short to resist guessing.
    #[error("METRICS_TOKEN must be at least 32 characters (it has {0}); unset it to close /metrics on the main port and answer the health detail to this machine only")]
    MetricsTokenTooShort(usize),
    /// ALERT_EMAIL that is not an email address.
    #[error("ALERT_EMAIL is not an email address: {0}")]
    AlertEmailInvalid(String),
    /// ADMIN_EMAIL without ADMIN_PASSWORD or the reverse.
    #[error("ADMIN_EMAIL and ADMIN_PASSWORD must be set together")]
    AdminHalfSet,
    /// A vendor's API reached over plain http: its secret key would cross the network in clear.
    #[error(
        "{name} must be an https:// URL (plain http only to a stand-in on this machine): {url}"
    )]
    InsecureVendorBase {
        /// The setting.
        name: &'static str,
        /// Its value.
        url: String,
    },
    /// `APP_ENV=production` with `DEMO_SEED=on`.
    #[error(
        "APP_ENV=production refuses DEMO_SEED=on: the demo's logins have a published password; \
         unset DEMO_SEED (or set it to off)"
    )]
    ProductionDemoSeed,
    /// `APP_ENV=production` without `DATABASE_URL`: the embedded default, which seeds the demo.
    #[error(
        "APP_ENV=production needs DATABASE_URL: unset, the store is the embedded SQLite under \
         ./data/ and the demo business with its published password is seeded into it; set \
         DATABASE_URL to postgres://… (or to sqlite://… naming the file, to keep an embedded \
         store on purpose)"
    )]
    ProductionImplicitStore,
    /// `APP_ENV=production` with an in-memory SQLite store.
    #[error(
        "APP_ENV=production refuses an in-memory DATABASE_URL: every event would be lost when \
         the server stops; name a PostgreSQL database or an SQLite file"
    )]
    ProductionMemoryStore,
    /// `APP_ENV=production` with the demo logins' published password as the admin's.
    #[error(
        "APP_ENV=production refuses ADMIN_PASSWORD: it is the demo logins' published password; \
         choose another of at least {MIN_PRODUCTION_PASSWORD} characters"
    )]
    ProductionDemoPassword,
    /// `APP_ENV=production` with a short admin password.
    #[error(
        "APP_ENV=production needs an ADMIN_PASSWORD of at least {MIN_PRODUCTION_PASSWORD} \
         characters (it has {0}); choose a longer one"
    )]
    ProductionShortPassword(usize),
    /// `APP_ENV=production` without `PUBLIC_URL`: links in messages would name the listen address.
    #[error(
        "APP_ENV=production needs PUBLIC_URL, the https:// address clients reach the server at: \
         without it the links in messages point at BIND_ADDR and Twilio's webhooks are refused"
    )]
    ProductionPublicUrlUnset,
    /// `APP_ENV=production` with a `PUBLIC_URL` that is not https.
    #[error(
        "APP_ENV=production needs PUBLIC_URL to be an https:// URL: the review and report \
         links in messages lead to it, and must not send customers and staff over plain http \
         (it is {0})"
    )]
    ProductionPublicUrlNotHttps(String),
    /// A claim could expire while its request is still running, and the message be sent twice.
    #[error(
        "OUTBOX_CLAIM_LEASE_MS ({lease}) must be longer than OUTBOX_HTTP_TIMEOUT_MS ({timeout})"
    )]
    OutboxLeaseTooShort {
        /// The lease.
        lease: u64,
        /// The timeout.
        timeout: u64,
    },
}

/// https, or plain http to this machine (the tests' stand-ins for the vendors).
fn vendor_base_is_safe(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // `http://localhost:1@api.stripe.com` goes to api.stripe.com.
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Shortest `ADMIN_PASSWORD` production accepts (the API's own rule for staff is 10).
pub const MIN_PRODUCTION_PASSWORD: usize = 12;

impl Config {
    /// `production` or `development`, as `APP_ENV` spells it (error reports carry it).
    pub fn app_env_name(&self) -> &'static str {
        match self.app_env {
            AppEnv::Production => "production",
            AppEnv::Development => "development",
        }
    }

    /// Whether `APP_ENV=production`.
    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// Whether `GET /metrics` is served anywhere (`METRICS_TOKEN` on the main port,
    /// `METRICS_ADDR` on its own): without either the recorder is not even installed.
    pub fn metrics_on(&self) -> bool {
        self.metrics_token.is_some() || self.metrics_addr.is_some()
    }

    /// Whether introspection and the GraphiQL page are served: as `GRAPHQL_INTROSPECTION`
    /// says, else on in development and off in production.
    pub fn introspection(&self) -> bool {
        self.graphql_introspection
            .unwrap_or(self.app_env == AppEnv::Development)
    }

    /// Checks rules clap cannot express, and with `APP_ENV=production` the production
    /// checks ([`Config::validate_production`]).
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.cron_secret {
            let n = s.expose().chars().count();
            if n < 32 {
                return Err(ConfigError::CronSecretTooShort(n));
            }
        }
        if let Some(a) = &self.alert_email {
            if domain::values::Email::parse(a).is_err() {
                return Err(ConfigError::AlertEmailInvalid(a.clone()));
            }
        }
        if let Some(t) = &self.metrics_token {
            let n = t.expose().chars().count();
            if n < 32 {
                return Err(ConfigError::MetricsTokenTooShort(n));
            }
        }
        if self.admin_email.is_some() != self.admin_password.is_some() {
            return Err(ConfigError::AdminHalfSet);
        }
        for (name, url) in [
            ("STRIPE_API_BASE", &self.stripe_api_base),
            ("TWILIO_API_BASE", &self.twilio_api_base),
            ("RESEND_API_BASE", &self.resend_api_base),
            ("GOOGLE_REVIEWS_API_BASE", &self.google_reviews_api_base),
        ] {
            if !vendor_base_is_safe(url) {
                return Err(ConfigError::InsecureVendorBase {
                    name,
                    url: url.clone(),
                });
            }
        }
        if self.outbox_claim_lease_ms <= self.outbox_http_timeout_ms {
            return Err(ConfigError::OutboxLeaseTooShort {
                lease: self.outbox_claim_lease_ms,
                timeout: self.outbox_http_timeout_ms,
            });
        }
        if self.is_production() {
            self.validate_production()?;
        }
        Ok(())
    }

    /// The settings production refuses whatever the store holds (a store that already
    /// holds the demo is refused later, once open: `demo::maybe_seed`). `CRON_SECRET` and
    /// `METRICS_TOKEN` need no rule of their own here: [`Config::validate`] refuses them
    /// short everywhere.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate_production(&self) -> Result<(), ConfigError> {
        let Some(url) = self.database_url.as_deref() else {
            return Err(ConfigError::ProductionImplicitStore);
        };
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(ConfigError::ProductionMemoryStore);
        }
        if self.demo_seed == "on" {
            return Err(ConfigError::ProductionDemoSeed);
        }
        if let Some(p) = &self.admin_password {
            if p.expose() == crate::demo::DEMO_PASSWORD {
                return Err(ConfigError::ProductionDemoPassword);
            }
            let n = p.expose().chars().count();
            if n < MIN_PRODUCTION_PASSWORD {
                return Err(ConfigError::ProductionShortPassword(n));
            }
        }
        match self.public_url.as_deref().map(str::trim) {
            None | Some("") => return Err(ConfigError::ProductionPublicUrlUnset),
            Some(u) if !u.starts_with("https://") => {
                return Err(ConfigError::ProductionPublicUrlNotHttps(u.to_string()))
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A configuration with every default and no secrets (tests, tools).
    pub fn defaults() -> Self {
        Config::parse_from(["api"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn quiet_hours_default_to_nine_to_eight_and_can_be_turned_off_or_refused() {
        let default = Config::parse_from(["api"]);
        assert_eq!(
            default.quiet_hours.0,
            Some(domain::quiet_hours::QuietHours::parse("21:00-08:00").expect("valid"))
        );
        let off = Config::parse_from(["api", "--quiet-hours", "off"]);
        assert_eq!(off.quiet_hours.0, None);
        assert!(Config::try_parse_from(["api", "--quiet-hours", "9pm-8am"]).is_err());
    }

    #[test]
    fn verify_cli() {
        Config::command().debug_assert();
    }

    #[test]
    fn vendor_apis_are_reached_over_https_or_on_this_machine_only() {
        for ok in [
            "https://api.stripe.com",
            "http://127.0.0.1:4242",
            "http://localhost:9000/v1",
            "http://[::1]:8081",
        ] {
            assert!(vendor_base_is_safe(ok), "{ok}");
        }
        for bad in [
            "http://api.stripe.com",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example:80",
            "http://localhost:1@api.stripe.com",
            "http://127.0.0.1@api.stripe.com/v1",
            "ftp://api.twilio.com",
            "api.resend.com",
        ] {
            assert!(!vendor_base_is_safe(bad), "{bad}");
        }
        let c = Config::parse_from(["api", "--stripe-api-base", "http://api.stripe.com"]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::InsecureVendorBase {
                name: "STRIPE_API_BASE",
                ..
            })
        ));
    }

    #[test]
    fn a_short_cron_secret_is_refused() {
        let c = Config::parse_from(["api", "--cron-secret", "short"]);
        assert_eq!(c.validate(), Err(ConfigError::CronSecretTooShort(5)));
        let ok = Config::parse_from(["api", "--cron-secret", &"x".repeat(32)]);
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn a_short_metrics_token_is_refused() {
        let c = Config::parse_from(["api", "--metrics-token", "short"]);
        assert_eq!(c.validate(), Err(ConfigError::MetricsTokenTooShort(5)));
        let ok = Config::parse_from(["api", "--metrics-token", &"m".repeat(32)]);
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn metrics_are_on_with_a_token_or_an_address_and_off_without() {
        assert!(!Config::defaults().metrics_on());
        let token = Config::parse_from(["api", "--metrics-token", &"m".repeat(32)]);
        assert!(token.metrics_on());
        let addr = Config::parse_from(["api", "--metrics-addr", "127.0.0.1:9090"]);
        assert!(addr.metrics_on() && addr.metrics_token.is_none());
    }

    #[test]
    fn an_outbox_claim_lease_shorter_than_a_request_is_refused() {
        let c = Config::parse_from([
            "api",
            "--outbox-claim-lease-ms",
            "1000",
            "--outbox-http-timeout-ms",
            "1000",
        ]);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutboxLeaseTooShort { .. })
        ));
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_the_reason() {
        let e = Config::try_parse_from(["api", "--business-timezone", "Mars/Olympus"])
            .expect_err("refused");
        assert!(e.to_string().contains("IANA"), "{e}");
    }

    /// A production configuration with nothing unsafe in it.
    const SAFE_PRODUCTION: [&str; 13] = [
        "api",
        "--app-env",
        "production",
        "--database-url",
        "postgres://crm@db.internal/crm",
        "--admin-email",
        "owner@dirtfree.example",
        "--admin-password",
        "a-long-unguessed-passphrase",
        "--cron-secret",
        "cccccccccccccccccccccccccccccccccccccccc",
        "--public-url",
        "https://crm.dirtfree.example",
    ];

    /// [`SAFE_PRODUCTION`] with `flag` set to `value` (`None`: left out).
    fn production_with(flag: &str, value: Option<&str>) -> Config {
        let mut args: Vec<&str> = Vec::new();
        let mut it = SAFE_PRODUCTION.iter();
        args.push(it.next().copied().unwrap_or("api"));
        while let (Some(f), Some(v)) = (it.next(), it.next()) {
            if *f != flag {
                args.extend([*f, *v]);
            }
        }
        if let Some(v) = value {
            args.extend([flag, v]);
        }
        Config::parse_from(args)
    }

    #[test]
    fn a_safe_production_configuration_is_accepted_with_introspection_off() {
        let c = Config::parse_from(SAFE_PRODUCTION);
        assert_eq!(c.validate(), Ok(()));
        assert!(c.is_production());
        assert!(!c.introspection());
    }

    #[test]
    fn production_refuses_each_unsafe_setting_with_a_line_naming_it() {
        let short_cron = "c".repeat(31);
        let short_metrics = "m".repeat(20);
        let cases: [(&str, Option<&str>, ConfigError, &str); 9] = [
            (
                "--database-url",
                None,
                ConfigError::ProductionImplicitStore,
                "DATABASE_URL",
            ),
            (
                "--database-url",
                Some("sqlite::memory:"),
                ConfigError::ProductionMemoryStore,
                "DATABASE_URL",
            ),
            (
                "--demo-seed",
                Some("on"),
                ConfigError::ProductionDemoSeed,
                "DEMO_SEED",
            ),
            (
                "--admin-password",
                Some(crate::demo::DEMO_PASSWORD),
                ConfigError::ProductionDemoPassword,
                "ADMIN_PASSWORD",
            ),
            (
                "--admin-password",
                Some("eleven-char"),
                ConfigError::ProductionShortPassword(11),
                "ADMIN_PASSWORD",
            ),
            (
                "--cron-secret",
                Some(&short_cron),
                ConfigError::CronSecretTooShort(31),
                "CRON_SECRET",
            ),
            (
                "--metrics-token",
                Some(&short_metrics),
                ConfigError::MetricsTokenTooShort(20),
                "METRICS_TOKEN",
            ),
            (
                "--public-url",
                None,
                ConfigError::ProductionPublicUrlUnset,
                "PUBLIC_URL",
            ),
            (
                "--public-url",
                Some("http://crm.dirtfree.example"),
                ConfigError::ProductionPublicUrlNotHttps("http://crm.dirtfree.example".into()),
                "PUBLIC_URL",
            ),
        ];
        for (flag, value, expected, names) in cases {
            let got = production_with(flag, value).validate();
            assert_eq!(got, Err(expected), "{flag} {value:?}");
            let line = got.expect_err("refused").to_string();
            assert!(!line.contains('\n') && line.contains(names), "{line}");
            assert!(
                !line.contains(crate::demo::DEMO_PASSWORD)
                    && !line.contains(&short_cron)
                    && !line.contains(&short_metrics),
                "the reason prints a secret: {line}"
            );
        }
    }

    #[test]
    fn development_accepts_what_production_refuses() {
        for (flag, value) in [
            ("--database-url", None),
            ("--admin-password", Some(crate::demo::DEMO_PASSWORD)),
            ("--demo-seed", Some("on")),
            ("--public-url", Some("http://127.0.0.1:8080")),
        ] {
            let mut c = production_with(flag, value);
            c.app_env = AppEnv::Development;
            assert_eq!(c.validate(), Ok(()), "{flag} {value:?}");
        }
        let c = Config::defaults();
        assert_eq!(c.app_env, AppEnv::Development);
        assert!(c.introspection());
    }

    #[test]
    fn an_alert_email_that_is_not_an_address_is_refused_naming_it() {
        let bad =
            Config::try_parse_from(["api", "--alert-email", "owner at example"]).expect("parses");
        let e = bad.validate().expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("ALERT_EMAIL is not an email address"),
            "{e}"
        );
        let good =
            Config::try_parse_from(["api", "--alert-email", "owner@example.com"]).expect("parses");
        assert!(good.validate().is_ok());
    }

    #[test]
    fn an_unknown_app_env_is_refused_naming_the_setting() {
        for bad in ["prod", "Production", "staging", ""] {
            let e = Config::try_parse_from(["api", "--app-env", bad]).expect_err(bad);
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            assert!(
                first.contains("APP_ENV must be `production` or `development`"),
                "{first}"
            );
        }
    }

    #[test]
    fn introspection_follows_its_setting_before_app_env() {
        for (app_env, setting, on) in [
            ("development", None, true),
            ("development", Some("off"), false),
            ("development", Some("false"), false),
            ("production", None, false),
            ("production", Some("on"), true),
            ("production", Some("true"), true),
        ] {
            let mut args = vec!["api", "--app-env", app_env];
            if let Some(v) = setting {
                args.extend(["--graphql-introspection", v]);
            }
            assert_eq!(Config::parse_from(&args).introspection(), on, "{args:?}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = Config::parse_from([
            "api",
            "--stripe-secret-key",
            "sk_test_123",
            "--cron-secret",
            &"s".repeat(40),
        ]);
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("sk_test_123") && !dbg.contains(&"s".repeat(40)),
            "{dbg}"
        );
    }
}

//! Event metadata: who did what, when, and on behalf of which request.
//!
//! cqrs-es carries metadata as `HashMap<String, String>`; [`EventMetadata`] is
//! the typed view of that map, so every event in the log has the same keys.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who issued a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Actor {
    /// A staff user (admin, manager or staff), by id.
    Staff(String),
    /// A customer acting through the portal, by customer id.
    Customer(String),
    /// A vendor webhook (`stripe`, `twilio`, `resend`).
    Webhook(String),
    /// The server itself: scheduled jobs, policies, seeding.
    System(String),
}

impl Actor {
    /// The `kind:id` form stored in metadata.
    pub fn encode(&self) -> String {
        match self {
            Actor::Staff(id) => format!("staff:{id}"),
            Actor::Customer(id) => format!("customer:{id}"),
            Actor::Webhook(id) => format!("webhook:{id}"),
            Actor::System(id) => format!("system:{id}"),
        }
    }

    /// Parses the `kind:id` form; `None` when the kind is unknown.
    pub fn decode(s: &str) -> Option<Self> {
        let (kind, id) = s.split_once(':')?;
        let id = id.to_string();
        Some(match kind {
            "staff" => Actor::Staff(id),
            "customer" => Actor::Customer(id),
            "webhook" => Actor::Webhook(id),
            "system" => Actor::System(id),
            _ => return None,
        })
    }
}

/// Metadata recorded with every event of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Who issued the command.
    pub actor: Actor,
    /// The request that carried the command (HTTP request id, job run id…).
    pub request_id: String,
    /// The conversation this command belongs to: the first command's id.
    pub correlation_id: String,
    /// The command or event that caused this one.
    pub causation_id: String,
    /// When the command was decided, in UTC.
    pub occurred_at: DateTime<Utc>,
    /// Client address, when the command came over HTTP.
    pub client_ip: Option<String>,
    /// The client-supplied idempotency key, if any.
    pub idempotency_key: Option<String>,
}

impl EventMetadata {
    /// Metadata for a fresh command: correlation and causation start at the request id.
    pub fn new(actor: Actor, occurred_at: DateTime<Utc>) -> Self {
        let request_id = Uuid::new_v4().to_string();
        Self {
            actor,
            correlation_id: request_id.clone(),
            causation_id: request_id.clone(),
            request_id,
            occurred_at,
            client_ip: None,
            idempotency_key: None,
        }
    }

    /// Sets the request id (and correlation/causation when they were defaulted).
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        let request_id = request_id.into();
        if self.correlation_id == self.request_id {
            self.correlation_id = request_id.clone();
        }
        if self.causation_id == self.request_id {
            self.causation_id = request_id.clone();
        }
        self.request_id = request_id;
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets a client's idempotency key, if given, scoped to the actor who sent it: a key
    /// only ever replays its own sender's outcome, so guessing someone else's key reveals
    /// nothing.
    pub fn with_sender_key(self, key: Option<&str>) -> Self {
        match key {
            Some(k) => {
                let scoped = format!("{}:{k}", self.actor.encode());
                self.with_idempotency_key(scoped)
            }
            None => self,
        }
    }

    /// Sets the client address.
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> Self {
        self.client_ip = Some(ip.into());
        self
    }

    /// Metadata for a command caused by another event (policies): same
    /// correlation, causation = that event's id.
    pub fn caused_by(&self, actor: Actor, cause_id: impl Into<String>, at: DateTime<Utc>) -> Self {
        Self {
            actor,
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: cause_id.into(),
            occurred_at: at,
            client_ip: None,
            idempotency_key: None,
        }
    }

    /// The cqrs-es map form.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::with_capacity(7);
        m.insert("actor".into(), self.actor.encode());
        m.insert("request_id".into(), self.request_id.clone());
        m.insert("correlation_id".into(), self.correlation_id.clone());
        m.insert("causation_id".into(), self.causation_id.clone());
        m.insert(
            "occurred_at".into(),
            self.occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        if let Some(ip) = &self.client_ip {
            m.insert("client_ip".into(), ip.clone());
        }
        if let Some(k) = &self.idempotency_key {
            m.insert("idempotency_key".into(), k.clone());
        }
        m
    }

    /// Reads the map form back; `None` if a required key is missing or malformed.
    pub fn from_map(m: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            actor: Actor::decode(m.get("actor")?)?,
            request_id: m.get("request_id")?.clone(),
            correlation_id: m.get("correlation_id")?.clone(),
            causation_id: m.get("causation_id")?.clone(),
            occurred_at: DateTime::parse_from_rfc3339(m.get("occurred_at")?)
                .ok()?
                .with_timezone(&Utc),
            client_ip: m.get("client_ip").cloned(),
            idempotency_key: m.get("idempotency_key").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn metadata_survives_the_map_round_trip() {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 8, 8, 0, 0)
            .single()
            .expect("valid time");
        let m = EventMetadata::new(Actor::Staff("s-1".into()), at)
            .with_request_id("req-1")
            .with_client_ip("10.0.0.1")
            .with_idempotency_key("k-1");
        assert_eq!(m.correlation_id, "req-1");
        assert_eq!(EventMetadata::from_map(&m.to_map()), Some(m));
    }

    #[test]
    fn an_unknown_actor_kind_is_refused() {
        assert_eq!(Actor::decode("robot:1"), None);
        assert_eq!(Actor::decode("staff:1"), Some(Actor::Staff("1".into())));
    }
}

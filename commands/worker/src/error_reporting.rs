//! Error reporting to Sentry when `SENTRY_DSN` is set: panics (the panic integration) and
//! error-level log events (the server's tracing layer), tagged with the release and, inside
//! a request, the server's request id. Every event passes [`scrub`] before it leaves: no
//! email address or phone number reaches Sentry, and no request data is attached at all
//! (no headers, bodies or client addresses: `send_default_pii` stays off).

use std::sync::Arc;

use sentry::protocol::Event;
use serde_json::Value;

use crate::outbox::scrub_personal_data;

/// Starts the Sentry client for `dsn` (none: reporting stays off); keep the guard for the
/// process's life (dropping it flushes what is queued, for up to two seconds).
///
/// # Errors
/// A DSN that does not parse, named without its key.
pub fn init(
    dsn: Option<&str>,
    release: String,
    environment: &'static str,
) -> Result<Option<sentry::ClientInitGuard>, String> {
    let Some(dsn) = dsn else {
        return Ok(None);
    };
    let dsn: sentry::types::Dsn = dsn.parse().map_err(|_| {
        "SENTRY_DSN is not a Sentry DSN (https://<key>@<host>/<project>)".to_string()
    })?;
    let guard = sentry::init(sentry::ClientOptions {
        dsn: Some(dsn),
        release: Some(release.into()),
        environment: Some(environment.into()),
        send_default_pii: false,
        before_send: Some(Arc::new(scrub)),
        ..Default::default()
    });
    Ok(Some(guard))
}

/// Whether a client is installed and sending (what health reports as "configured").
pub fn active() -> bool {
    sentry::Hub::current()
        .client()
        .is_some_and(|c| c.is_enabled())
}

/// Parts of an event that are machine data, not text: left as they are.
const NOT_TEXT: &[&str] = &[
    "event_id",
    "timestamp",
    "start_timestamp",
    "stacktrace",
    "threads",
    "debug_meta",
    "sdk",
    "modules",
    "os",
    "device",
    "rust",
    "trace",
    "release",
    "environment",
    "platform",
    "level",
    "mechanism",
];

/// The event with every email address and phone number in its text replaced; an event
/// that cannot be read back after scrubbing is replaced by one that says so.
pub fn scrub(event: Event<'static>) -> Option<Event<'static>> {
    let Ok(mut value) = serde_json::to_value(&event) else {
        return Some(withheld(&event));
    };
    scrub_value(&mut value);
    tag_request_id(&mut value);
    Some(serde_json::from_value(value).unwrap_or_else(|_| withheld(&event)))
}

/// An error logged with a `request_id` field (every request's span and error line has one)
/// is tagged with it, as a panic during a request is by the server's per-request hub.
fn tag_request_id(event: &mut Value) {
    if event.pointer("/tags/request_id").is_some() {
        return;
    }
    let found = event
        .get("contexts")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|c| c.values())
        .chain(event.get("extra"))
        .find_map(|c| c.get("request_id").and_then(Value::as_str))
        .map(str::to_string);
    if let (Some(id), Some(fields)) = (found, event.as_object_mut()) {
        let tags = fields
            .entry("tags")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(tags) = tags.as_object_mut() {
            tags.insert("request_id".into(), Value::String(id));
        }
    }
}

fn scrub_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = scrub_personal_data(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(fields) => {
            for (k, field) in fields.iter_mut() {
                if !NOT_TEXT.contains(&k.as_str()) {
                    scrub_value(field);
                }
            }
        }
        _ => {}
    }
}

fn withheld(event: &Event<'static>) -> Event<'static> {
    Event {
        event_id: event.event_id,
        level: event.level,
        release: event.release.clone(),
        environment: event.environment.clone(),
        tags: event.tags.clone(),
        message: Some(
            "an error occurred (its details could not be scrubbed and were withheld)".into(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_loses_every_email_and_phone_but_keeps_its_ids() {
        let mut event = Event {
            message: Some(
                "no customer jane.doe@example.com at +1 512-555-0123 or 5125550123".into(),
            ),
            ..Default::default()
        };
        event.tags.insert(
            "request_id".into(),
            "3f2a9c1e-1111-2222-3333-444455556666".into(),
        );
        event
            .extra
            .insert("note".into(), "reply to bob@example.org".into());
        let id = event.event_id;
        let out = scrub(event).expect("kept");
        let text = serde_json::to_string(&out).expect("json");
        for secret in [
            "jane.doe@example.com",
            "bob@example.org",
            "5125550123",
            "555-0123",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(out.event_id, id);
        assert_eq!(
            out.tags.get("request_id").map(String::as_str),
            Some("3f2a9c1e-1111-2222-3333-444455556666")
        );
        assert!(out.message.unwrap_or_default().contains("[email]"));
    }

    #[test]
    fn a_logged_error_is_tagged_with_its_request_id_and_its_fields_are_scrubbed() {
        let mut event = Event::default();
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("request_id".to_string(), Value::from("req-1"));
        fields.insert(
            "note".to_string(),
            Value::from("call +1 (512) 555-0123 now"),
        );
        event.contexts.insert(
            "Rust Tracing Fields".into(),
            sentry::protocol::Context::Other(fields),
        );
        let out = scrub(event).expect("kept");
        assert_eq!(
            out.tags.get("request_id").map(String::as_str),
            Some("req-1")
        );
        let text = serde_json::to_string(&out).expect("json");
        assert!(!text.contains("555-0123"), "{text}");
    }
}

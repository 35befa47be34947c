//! Verified webhook bodies, parsed into what they ask of the CRM ([`Delivery`], whose
//! effects `worker::inbound` applies). Pure: no I/O, so every vendor shape is tested without
//! a server.

use serde_json::{Map, Value};
use worker::inbound::{Delivery, EmailStatus, Provider, SmsStatus, WebhookEvent};

use super::text::{
    self, MAX_EMAIL_CHARS, MAX_ID_CHARS, MAX_METADATA_CHARS, MAX_REASON_CHARS, MAX_SMS_BODY_CHARS,
};

/// A verified body that is not what its vendor sends: a client error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPayload(pub String);

fn bad(msg: impl Into<String>) -> BadPayload {
    BadPayload(msg.into())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The non-blank text at `path`, cleaned and cut to `max_chars`.
fn text_at(v: &Value, path: &[&str], max_chars: usize) -> Option<String> {
    str_at(v, path).map(|s| text::clean(s, max_chars))
}

/// The body as a JSON object, every string in it cleaned (see [`text`]).
fn json_body(body: &[u8]) -> Result<Value, BadPayload> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("body is not a JSON object"));
    }
    Ok(text::clean_json(v))
}

/// Parses a verified Stripe event body.
///
/// # Errors
/// [`BadPayload`] for non-JSON, or an event without `id`/`type`, or a known
/// type whose object lacks its id.
pub fn parse_stripe(body: &[u8]) -> Result<Delivery, BadPayload> {
    let v = json_body(body)?;
    let event_id = text_at(&v, &["id"], MAX_ID_CHARS).ok_or_else(|| bad("event has no id"))?;
    let event_type =
        text_at(&v, &["type"], MAX_ID_CHARS).ok_or_else(|| bad("event has no type"))?;
    let object = v
        .get("data")
        .and_then(|d| d.get("object"))
        .unwrap_or(&Value::Null);
    let object_id =
        || text_at(object, &["id"], MAX_ID_CHARS).ok_or_else(|| bad("data.object has no id"));
    let metadata = |key: &str| text_at(object, &["metadata", key], MAX_METADATA_CHARS);
    let event = match event_type.as_str() {
        "payment_intent.succeeded" => WebhookEvent::PaymentSucceeded {
            event_id: event_id.clone(),
            intent_id: object_id()?,
            job_id: metadata("job_id"),
        },
        "payment_intent.payment_failed" => {
            let reason = str_at(object, &["last_payment_error", "message"])
                .or_else(|| str_at(object, &["last_payment_error", "code"]))
                .map_or_else(
                    || "payment failed".to_string(),
                    |r| text::clean(r, MAX_REASON_CHARS),
                );
            WebhookEvent::PaymentFailed {
                event_id: event_id.clone(),
                intent_id: object_id()?,
                job_id: metadata("job_id"),
                reason,
            }
        }
        "customer.created" | "customer.updated" => WebhookEvent::StripeCustomer {
            event_id: event_id.clone(),
            stripe_customer_id: object_id()?,
            customer_id: metadata("customer_id"),
        },
        _ => WebhookEvent::Ignored,
    };
    Ok(Delivery {
        provider: Provider::Stripe,
        delivery_id: event_id,
        event_type,
        payload: v,
        event,
    })
}

/// Decodes an `application/x-www-form-urlencoded` body into its parameters,
/// in order, repeated names kept (the signature covers all of them).
///
/// # Errors
/// [`BadPayload`] when the body is not UTF-8 (Twilio always sends UTF-8).
pub fn form_params(body: &[u8]) -> Result<Vec<(String, String)>, BadPayload> {
    std::str::from_utf8(body).map_err(|_| bad("form body is not UTF-8"))?;
    Ok(form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// The parameters with names and values cleaned (see [`text`]), not cut:
/// the signature was checked over the raw ones before.
fn clean_params(params: &[(String, String)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (text::clean(k, usize::MAX), text::clean(v, usize::MAX)))
        .collect()
}

fn params_json(params: &[(String, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in params {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    Value::Object(m)
}

/// The first non-blank value of `name`, cut to `max_chars`.
fn param(params: &[(String, String)], name: &str, max_chars: usize) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| text::clean(v, max_chars))
}

/// Parses a verified Twilio inbound-SMS webhook.
///
/// # Errors
/// [`BadPayload`] without `MessageSid` (or `SmsSid`) or `From`.
pub fn parse_twilio_inbound(params: &[(String, String)]) -> Result<Delivery, BadPayload> {
    let params = clean_params(params);
    let sid = param(&params, "MessageSid", MAX_ID_CHARS)
        .or_else(|| param(&params, "SmsSid", MAX_ID_CHARS))
        .ok_or_else(|| bad("MessageSid is missing"))?;
    let from = param(&params, "From", MAX_ID_CHARS).ok_or_else(|| bad("From is missing"))?;
    let body = params
        .iter()
        .find(|(k, _)| k == "Body")
        .map(|(_, v)| text::clean(v, MAX_SMS_BODY_CHARS))
        .unwrap_or_default();
    Ok(Delivery {
        provider: Provider::Twilio,
        delivery_id: sid.clone(),
        event_type: "inbound_sms".into(),
        payload: params_json(&params),
        event: WebhookEvent::InboundSms {
            message_sid: sid,
            from,
            body,
        },
    })
}

/// Parses a verified Twilio status callback. Its delivery id is
/// `MessageSid:status`: each status of a message is a delivery of its own.
///
/// # Errors
/// [`BadPayload`] without `MessageSid` or `MessageStatus`.
pub fn parse_twilio_status(params: &[(String, String)]) -> Result<Delivery, BadPayload> {
    let params = clean_params(params);
    let sid = param(&params, "MessageSid", MAX_ID_CHARS)
        .or_else(|| param(&params, "SmsSid", MAX_ID_CHARS))
        .ok_or_else(|| bad("MessageSid is missing"))?;
    let raw_status = param(&params, "MessageStatus", MAX_ID_CHARS)
        .or_else(|| param(&params, "SmsStatus", MAX_ID_CHARS))
        .ok_or_else(|| bad("MessageStatus is missing"))?
        .to_ascii_lowercase();
    let event = match SmsStatus::parse(&raw_status) {
        Some(status) => WebhookEvent::SmsStatus {
            message_sid: sid.clone(),
            status,
            error_code: param(&params, "ErrorCode", MAX_ID_CHARS),
        },
        None => WebhookEvent::Ignored,
    };
    Ok(Delivery {
        provider: Provider::Twilio,
        delivery_id: format!("{sid}:{raw_status}"),
        event_type: "message_status".into(),
        payload: params_json(&params),
        event,
    })
}

/// Parses a verified Resend event; `svix_id` is the delivery id.
///
/// # Errors
/// [`BadPayload`] for a blank `svix_id`, non-JSON or an event without `type`.
pub fn parse_resend(svix_id: &str, body: &[u8]) -> Result<Delivery, BadPayload> {
    let delivery_id = text::clean(svix_id.trim(), MAX_ID_CHARS);
    if delivery_id.trim().is_empty() {
        return Err(bad("svix-id is blank"));
    }
    let v = json_body(body)?;
    let event_type =
        text_at(&v, &["type"], MAX_ID_CHARS).ok_or_else(|| bad("event has no type"))?;
    let data = v.get("data").unwrap_or(&Value::Null);
    let address = |s: &str| text::clean(s.trim(), MAX_EMAIL_CHARS);
    let to = match data.get("to") {
        Some(Value::String(s)) => vec![address(s)],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(address).collect(),
        _ => vec![],
    };
    let email_id = text_at(data, &["email_id"], MAX_ID_CHARS);
    let status = match event_type.as_str() {
        "email.delivered" => Some(EmailStatus::Delivered),
        // Resend sends email.bounced for permanent rejections; a bounce type
        // other than Permanent (if ever given) is treated as soft.
        "email.bounced" => Some(EmailStatus::Bounced {
            permanent: str_at(data, &["bounce", "type"])
                .is_none_or(|t| t.eq_ignore_ascii_case("permanent")),
        }),
        "email.complained" => Some(EmailStatus::Complained),
        "email.opened" => Some(EmailStatus::Opened),
        _ => None,
    };
    let event = match status {
        Some(status) => WebhookEvent::Email {
            email_id,
            to,
            status,
        },
        None => WebhookEvent::Ignored,
    };
    Ok(Delivery {
        provider: Provider::Resend,
        delivery_id,
        event_type,
        payload: v,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_stripe_payment_success_names_its_intent_and_job() {
        let d = parse_stripe(
            br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","metadata":{"job_id":"j-1"}}}}"#,
        )
        .expect("parsed");
        assert_eq!(d.delivery_id, "evt_1");
        assert_eq!(
            d.event,
            WebhookEvent::PaymentSucceeded {
                event_id: "evt_1".into(),
                intent_id: "pi_1".into(),
                job_id: Some("j-1".into())
            }
        );
    }

    #[test]
    fn a_stripe_payment_failure_carries_the_providers_reason() {
        let d = parse_stripe(
            br#"{"id":"evt_2","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_1","last_payment_error":{"code":"card_declined","message":"Your card was declined."}}}}"#,
        )
        .expect("parsed");
        assert!(
            matches!(d.event, WebhookEvent::PaymentFailed { ref reason, .. } if reason == "Your card was declined.")
        );
    }

    #[test]
    fn an_unknown_stripe_event_type_is_ignored_but_keyed() {
        let d = parse_stripe(br#"{"id":"evt_3","type":"charge.refunded","data":{"object":{}}}"#)
            .expect("parsed");
        assert_eq!(
            (d.delivery_id.as_str(), d.event),
            ("evt_3", WebhookEvent::Ignored)
        );
    }

    #[test]
    fn a_stripe_body_that_is_not_an_event_is_refused() {
        for body in [
            &b"not json"[..],
            b"[1]",
            br#"{"type":"x"}"#,
            br#"{"id":"evt_1","type":"customer.created","data":{}}"#,
        ] {
            assert!(
                parse_stripe(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_inbound_sms_needs_a_sid_and_a_sender() {
        let d = parse_twilio_inbound(&p(&[
            ("MessageSid", "SM1"),
            ("From", "+15125550100"),
            ("Body", " stop "),
        ]))
        .expect("parsed");
        assert_eq!(d.delivery_id, "SM1");
        assert_eq!(d.payload["Body"], " stop ");
        assert!(parse_twilio_inbound(&p(&[("From", "+1")])).is_err());
        assert!(parse_twilio_inbound(&p(&[("MessageSid", "SM1")])).is_err());
    }

    #[test]
    fn an_inbound_sms_is_cleaned_of_control_characters_and_cut_not_refused() {
        let body = format!("Hi\0 there\u{1b}[2J\r\n{}", "x".repeat(5_000));
        let d = parse_twilio_inbound(&p(&[
            ("MessageSid", "SM\u{0}1"),
            ("From", "+15125550100\u{7}"),
            ("Body", &body),
        ]))
        .expect("cleaned, not refused");
        let WebhookEvent::InboundSms {
            message_sid,
            from,
            body,
        } = &d.event
        else {
            panic!("{:?}", d.event)
        };
        assert_eq!(
            (message_sid.as_str(), from.as_str()),
            ("SM1", "+15125550100")
        );
        assert!(body.starts_with("Hi there[2J\r\nxxx"), "{body:?}");
        assert_eq!(body.chars().count(), MAX_SMS_BODY_CHARS);
        assert_eq!(d.delivery_id, "SM1");
        assert!(!d.payload["Body"].as_str().expect("body").contains('\0'));
    }

    #[test]
    fn stripe_and_resend_text_is_cleaned_before_it_becomes_a_command() {
        let d = parse_stripe(
            br#"{"id":"evt_\u00001","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_\u00011","metadata":{"job_id":"j\u0000"},"last_payment_error":{"message":"Declined\u0000\u0085"}}}}"#,
        )
        .expect("parsed");
        assert_eq!(
            d.event,
            WebhookEvent::PaymentFailed {
                event_id: "evt_1".into(),
                intent_id: "pi_1".into(),
                job_id: Some("j".into()),
                reason: "Declined".into(),
            }
        );
        assert_eq!(d.payload["id"], "evt_1");
        let r = parse_resend(
            "msg_1",
            br#"{"type":"email.bounced","data":{"email_id":"e\u00001","to":["a@example.com\u0000"]}}"#,
        )
        .expect("parsed");
        assert!(matches!(
            r.event,
            WebhookEvent::Email { ref email_id, ref to, .. }
                if email_id.as_deref() == Some("e1") && to == &["a@example.com".to_string()]
        ));
    }

    #[test]
    fn each_status_of_a_message_is_its_own_delivery() {
        let d = parse_twilio_status(&p(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]))
            .expect("parsed");
        assert_eq!(d.delivery_id, "SM1:delivered");
        assert!(matches!(
            d.event,
            WebhookEvent::SmsStatus {
                status: SmsStatus::Delivered,
                ..
            }
        ));
        assert!(parse_twilio_status(&p(&[("MessageSid", "SM1")])).is_err());
    }

    #[test]
    fn a_late_sent_never_overwrites_delivered() {
        use SmsStatus::*;
        assert!(!Sent.supersedes(Some(Delivered)));
        assert!(!Queued.supersedes(Some(Sent)));
        assert!(Delivered.supersedes(Some(Sent)));
        assert!(!Failed.supersedes(Some(Delivered)));
        assert!(Sent.supersedes(None));
        assert!(Read.supersedes(Some(Delivered)));
    }

    #[test]
    fn form_bodies_decode_plus_and_percent_escapes() {
        let params = form_params(b"Body=Hello+there%21&From=%2B15125550100").expect("utf8");
        assert_eq!(
            params,
            p(&[("Body", "Hello there!"), ("From", "+15125550100")])
        );
        assert!(form_params(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn resend_bounces_are_hard_unless_said_otherwise() {
        let d = parse_resend(
            "msg_1",
            br#"{"type":"email.bounced","data":{"email_id":"e1","to":["a@example.com"]}}"#,
        )
        .expect("parsed");
        assert_eq!(
            d.event,
            WebhookEvent::Email {
                email_id: Some("e1".into()),
                to: vec!["a@example.com".into()],
                status: EmailStatus::Bounced { permanent: true }
            }
        );
        let soft = parse_resend(
            "msg_2",
            br#"{"type":"email.bounced","data":{"to":"a@example.com","bounce":{"type":"Transient"}}}"#,
        )
        .expect("parsed");
        assert!(matches!(
            soft.event,
            WebhookEvent::Email {
                status: EmailStatus::Bounced { permanent: false },
                ..
            }
        ));
        let other =
            parse_resend("msg_3", br#"{"type":"email.clicked","data":{}}"#).expect("parsed");
        assert_eq!(other.event, WebhookEvent::Ignored);
        assert!(parse_resend("msg_4", b"{truncated").is_err());
    }
}

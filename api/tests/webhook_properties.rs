//! Properties of the webhook boundary (issue #13, "hostile input never stops
//! the business"): the three vendors' signature checks and the payload parsers
//! of `api::webhooks`, on generated input.
//!
//! - a correctly signed request verifies; a change of one bit or byte in the
//!   body, the signature or the timestamp never does;
//! - Stripe and Svix timestamps are accepted within ±300 s and only then;
//! - Twilio's signature does not depend on the order of the form parameters;
//! - any one of several Svix signatures may match;
//! - arbitrary bytes, headers, JSON and form parameters never panic a check
//!   or a parser: they answer `Ok` or a typed error, and whatever a parser
//!   accepts is clean (no NUL or control character but tab and line breaks,
//!   no field over its maximum).
//!
//! The case counts are fixed so that the file runs in a few seconds in a
//! debug build (`cargo test -p api --test webhook_properties`); the signers
//! here are written from the vendors' documentation, not taken from
//! `signature::signing`, so a mistake shared with the code cannot hide.

use api::webhooks::delivery::{
    form_params, parse_resend, parse_stripe, parse_twilio_inbound, parse_twilio_status,
};
use api::webhooks::signature::{verify_stripe, verify_svix, verify_twilio, SignatureError};
use api::webhooks::text::{
    clean, MAX_EMAIL_CHARS, MAX_ID_CHARS, MAX_METADATA_CHARS, MAX_REASON_CHARS, MAX_SMS_BODY_CHARS,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::Sha256;
use worker::inbound::{Delivery, WebhookEvent};

const TOLERANCE: i128 = 300;

// ------------------------------------------------------------ the vendors' schemes

/// Stripe: `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the whsec_ string>`.
fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(stripe_mac(secret, t, body)))
}

fn stripe_mac(secret: &str, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Twilio, as documented: the full URL, then each POST parameter's name and
/// value, sorted by name, without delimiters; HMAC-SHA1 keyed with the auth
/// token; base64. (Names are unique here, as in Twilio's SMS webhooks.)
fn twilio_mac(token: &str, url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted = params.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Svix: HMAC-SHA256 of `"<id>.<t>.<body>"` keyed with the base64 after `whsec_`.
fn svix_mac(key: &[u8], id: &str, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{t}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// `s` (ASCII) with one of the low seven bits of one byte flipped: still ASCII, never equal.
fn flip_ascii_bit(s: &str, bit: usize) -> String {
    let mut bytes = s.as_bytes().to_vec();
    bytes[(bit / 7) % s.len()] ^= 1 << (bit % 7);
    String::from_utf8(bytes).expect("ASCII stays ASCII")
}

fn svix_secret(key: &[u8]) -> String {
    format!("whsec_{}", B64.encode(key))
}

fn flip_bit(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[(bit / 8) % bytes.len()] ^= 1 << (bit % 8);
    out
}

// ---------------------------------------------------------------- strategies

/// Text as a hostile or broken sender may send it: any Unicode, control
/// characters and NUL, or a huge string.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        4 => "[\\x00-\\x1f\\x7f\\x{80}-\\x{9f} a-zA-Z0-9+:_@.é😀]{0,40}",
        1 => (0usize..3_000).prop_map(|n| "\u{0}\u{7}é".repeat(n)),
        1 => (5_000usize..12_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn secret() -> impl Strategy<Value = String> {
    "whsec_[a-zA-Z0-9]{0,40}"
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..512)
}

fn now() -> impl Strategy<Value = i64> {
    1_000_000_000i64..4_000_000_000
}

/// Unique parameter names (some of Twilio's own) with hostile values.
fn twilio_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("MessageSid".to_string()),
        Just("From".to_string()),
        Just("To".to_string()),
        Just("Body".to_string()),
        Just("NumMedia".to_string()),
        hostile_text(),
    ];
    prop::collection::btree_map(name, hostile_text(), 1..8)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
}

/// A timestamp and a clock either close to it or anywhere at all.
fn timestamp_and_clock() -> impl Strategy<Value = (i64, i64)> {
    prop_oneof![
        (any::<i64>(), -400i64..=400).prop_map(|(t, d)| (t, t.saturating_add(d))),
        (any::<i64>(), any::<i64>()),
        (now(), -400i64..=400).prop_map(|(now, d)| (now + d, now)),
    ]
}

/// JSON values with hostile strings, up to a few levels deep.
fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(hostile_text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Stripe- and Resend-shaped events whose every field may be hostile, so
/// that the parsers get past their first checks.
fn vendor_shaped_event() -> impl Strategy<Value = Value> {
    let event_type = prop_oneof![
        Just("payment_intent.succeeded".to_string()),
        Just("payment_intent.payment_failed".to_string()),
        Just("customer.created".to_string()),
        Just("email.bounced".to_string()),
        Just("email.complained".to_string()),
        Just("email.delivered".to_string()),
        hostile_text(),
    ];
    let text_or_any = || prop_oneof![hostile_text().prop_map(Value::String), hostile_json()];
    (
        text_or_any(),
        event_type,
        text_or_any(),
        text_or_any(),
        text_or_any(),
        text_or_any(),
        prop::collection::vec(text_or_any(), 0..4),
    )
        .prop_map(|(id, event_type, object_id, meta, message, bounce, to)| {
            json!({
                "id": id,
                "type": event_type,
                "data": {
                    "object": {
                        "id": object_id,
                        "metadata": { "job_id": meta, "customer_id": meta },
                        "last_payment_error": { "message": message, "code": message },
                    },
                    "email_id": object_id,
                    "to": to,
                    "bounce": { "type": bounce },
                },
            })
        })
}

/// JSON text no `Value` can produce: lone surrogate escapes, escaped and raw
/// control characters, deep nesting, huge strings, truncation.
fn hostile_json_text() -> impl Strategy<Value = Vec<u8>> {
    let string_body = prop_oneof![
        Just(r"\ud800".to_string()),
        Just(r"\udc00x".to_string()),
        Just(r"\ud83d\ude00".to_string()),
        Just(r"\u0000".to_string()),
        Just(r"a\u0000\u001b[2J\u007f\u0085b".to_string()),
        Just("raw\u{0}nul".to_string()),
        Just("raw\u{1}ctl".to_string()),
        (0usize..200_000).prop_map(|n| "y".repeat(n)),
        (0usize..5_000).prop_map(|n| r"\u0000".repeat(n)),
    ];
    let field = prop_oneof![Just("id"), Just("type"), Just("email_id"), Just("to")];
    prop_oneof![
        (string_body.clone(), field).prop_map(|(s, f)| format!(
            r#"{{"id":"evt_1","type":"payment_intent.payment_failed","{f}":"{s}","data":{{"object":{{"id":"pi_{s}","last_payment_error":{{"message":"{s}"}}}},"to":["{s}"],"email_id":"{s}"}}}}"#
        )
        .into_bytes()),
        (1usize..100_000).prop_map(|depth| format!(
            r#"{{"id":"evt_1","type":"x","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes()),
        (1usize..100_000).prop_map(|depth| format!(
            r#"{{"id":"evt_1","type":"x","data":{}1{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        )
        .into_bytes()),
        (string_body, any::<prop::sample::Index>()).prop_map(|(s, cut)| {
            let text = format!(r#"{{"id":"{s}","type":"email.bounced","data":{{"to":"{s}"}}}}"#);
            let bytes = text.into_bytes();
            bytes[..cut.index(bytes.len() + 1)].to_vec()
        }),
    ]
}

// ------------------------------------------------------------------ checking

/// The control characters the boundary rule removes: C0 but tab, LF and CR;
/// DEL; C1. Spelled out here, not taken from `text`, so that a mistake
/// there cannot hide.
fn removed(c: char) -> bool {
    matches!(c, '\0'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn is_clean(s: &str) -> bool {
    !s.chars().any(removed)
}

fn assert_text(s: &str, max_chars: usize, what: &str) {
    assert!(is_clean(s), "{what} is not clean: {s:?}");
    assert!(
        s.chars().count() <= max_chars,
        "{what} has {} characters (max {max_chars})",
        s.chars().count()
    );
}

fn assert_json_clean(v: &Value) {
    match v {
        Value::String(s) => assert!(is_clean(s), "payload string {s:?}"),
        Value::Array(items) => items.iter().for_each(assert_json_clean),
        Value::Object(fields) => {
            for (k, v) in fields {
                assert!(is_clean(k), "payload key {k:?}");
                assert_json_clean(v);
            }
        }
        _ => {}
    }
}

/// What the boundary rule promises of every accepted delivery.
fn assert_delivery_clean(d: &Delivery) {
    assert_text(&d.delivery_id, 2 * MAX_ID_CHARS + 1, "delivery id");
    assert!(!d.delivery_id.trim().is_empty(), "blank delivery id");
    assert_text(&d.event_type, MAX_ID_CHARS, "event type");
    assert_json_clean(&d.payload);
    match &d.event {
        WebhookEvent::PaymentSucceeded {
            event_id,
            intent_id,
            job_id,
        } => {
            assert_text(event_id, MAX_ID_CHARS, "event id");
            assert_text(intent_id, MAX_ID_CHARS, "intent id");
            assert_text(
                job_id.as_deref().unwrap_or(""),
                MAX_METADATA_CHARS,
                "job id",
            );
        }
        WebhookEvent::PaymentFailed {
            event_id,
            intent_id,
            job_id,
            reason,
        } => {
            assert_text(event_id, MAX_ID_CHARS, "event id");
            assert_text(intent_id, MAX_ID_CHARS, "intent id");
            assert_text(
                job_id.as_deref().unwrap_or(""),
                MAX_METADATA_CHARS,
                "job id",
            );
            assert_text(reason, MAX_REASON_CHARS, "reason");
        }
        WebhookEvent::StripeCustomer {
            event_id,
            stripe_customer_id,
            customer_id,
        } => {
            assert_text(event_id, MAX_ID_CHARS, "event id");
            assert_text(stripe_customer_id, MAX_ID_CHARS, "stripe customer id");
            let customer = customer_id.as_deref().unwrap_or("");
            assert_text(customer, MAX_METADATA_CHARS, "customer id");
        }
        WebhookEvent::InboundSms {
            message_sid,
            from,
            body,
        } => {
            assert_text(message_sid, MAX_ID_CHARS, "message sid");
            assert_text(from, MAX_ID_CHARS, "from");
            assert_text(body, MAX_SMS_BODY_CHARS, "sms body");
        }
        WebhookEvent::SmsStatus {
            message_sid,
            error_code,
            ..
        } => {
            assert_text(message_sid, MAX_ID_CHARS, "message sid");
            assert_text(
                error_code.as_deref().unwrap_or(""),
                MAX_ID_CHARS,
                "error code",
            );
        }
        WebhookEvent::Email { email_id, to, .. } => {
            assert_text(email_id.as_deref().unwrap_or(""), MAX_ID_CHARS, "email id");
            for address in to {
                assert_text(address, MAX_EMAIL_CHARS, "recipient");
            }
        }
        WebhookEvent::Ignored => {}
    }
}

/// Runs every parser on `body` (as JSON and as a form); none may panic.
fn parse_everything(svix_id: &str, body: &[u8]) {
    if let Ok(d) = parse_stripe(body) {
        assert_delivery_clean(&d);
    }
    if let Ok(d) = parse_resend(svix_id, body) {
        assert_delivery_clean(&d);
    }
    if let Ok(params) = form_params(body) {
        for parse in [parse_twilio_inbound, parse_twilio_status] {
            if let Ok(d) = parse(&params) {
                assert_delivery_clean(&d);
            }
        }
    }
}

// ------------------------------------------------------------------- Stripe

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_stripe_headers_never_panic_the_check(
        header in prop_oneof![
            hostile_text(),
            (hostile_text(), hostile_text(), hostile_text())
                .prop_map(|(t, v1, rest)| format!("t={t},v1={v1},{rest}")),
        ],
        secret in hostile_text(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        let result = verify_stripe(&secret, &header, &body, now);
        prop_assert!(result.is_err(), "{header:?} verified");
    }

    #[test]
    fn a_correctly_signed_stripe_payload_verifies(
        secret in secret(), body in body(), now in now(), skew in -300i64..=300,
    ) {
        let header = stripe_header(&secret, now + skew, &body);
        prop_assert_eq!(verify_stripe(&secret, &header, &body, now), Ok(()));
    }

    #[test]
    fn a_changed_stripe_body_never_verifies(
        secret in secret(), body in body(), now in now(), bit in any::<usize>(),
    ) {
        let header = stripe_header(&secret, now, &body);
        let changed = flip_bit(&body, bit);
        prop_assert_eq!(
            verify_stripe(&secret, &header, &changed, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_stripe_signature_never_verifies(
        secret in secret(), body in body(), now in now(), bit in 0usize..256,
    ) {
        let mac = flip_bit(&stripe_mac(&secret, now, &body), bit);
        let header = format!("t={now},v1={}", hex::encode(mac));
        prop_assert_eq!(
            verify_stripe(&secret, &header, &body, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_stripe_timestamp_never_verifies(
        secret in secret(), body in body(), now in now(), shift in prop_oneof![-300i64..0, 1i64..=300],
    ) {
        let signed = stripe_header(&secret, now, &body);
        let moved = signed.replacen(&format!("t={now}"), &format!("t={}", now + shift), 1);
        prop_assert_eq!(
            verify_stripe(&secret, &moved, &body, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_stripe_signature_verifies_only_within_the_tolerance(
        secret in secret(), body in body(), (t, now) in timestamp_and_clock(),
    ) {
        let header = stripe_header(&secret, t, &body);
        let expected = if (i128::from(now) - i128::from(t)).abs() <= TOLERANCE {
            Ok(())
        } else {
            Err(SignatureError::Stale)
        };
        prop_assert_eq!(verify_stripe(&secret, &header, &body, now), expected);
    }
}

// ------------------------------------------------------------------- Twilio

const TWILIO_URL: &str = "https://crm.example.com/api/webhooks/twilio";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_twilio_signatures_and_urls_never_panic_the_check(
        token in hostile_text(),
        url in prop_oneof![
            hostile_text(),
            hostile_text().prop_map(|s| format!("https://{s}")),
            hostile_text().prop_map(|s| format!("http://{s}:80/x")),
        ],
        params in twilio_params(),
        signature in prop_oneof![hostile_text(), "[A-Za-z0-9+/=]{0,40}"],
    ) {
        let _ = verify_twilio(&token, &url, &params, &signature);
    }

    #[test]
    fn a_correctly_signed_twilio_request_verifies(
        token in "[a-f0-9]{32}", params in twilio_params(),
    ) {
        let signature = B64.encode(twilio_mac(&token, TWILIO_URL, &params));
        prop_assert_eq!(verify_twilio(&token, TWILIO_URL, &params, &signature), Ok(()));
    }

    #[test]
    fn a_twilio_signature_does_not_depend_on_the_order_of_the_parameters(
        token in "[a-f0-9]{32}",
        (params, shuffled) in twilio_params()
            .prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
    ) {
        let signature = B64.encode(twilio_mac(&token, TWILIO_URL, &params));
        prop_assert_eq!(verify_twilio(&token, TWILIO_URL, &shuffled, &signature), Ok(()));
    }

    #[test]
    fn a_changed_twilio_parameter_never_verifies(
        token in "[a-f0-9]{32}",
        params in twilio_params(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        in_name in any::<bool>(),
        replacement in any::<char>(),
    ) {
        let signature = B64.encode(twilio_mac(&token, TWILIO_URL, &params));
        let mut changed = params.clone();
        let pair = &mut changed[which.index(params.len())];
        let text = if in_name { &mut pair.0 } else { &mut pair.1 };
        let mut chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            chars.push(replacement);
        } else {
            let i = at.index(chars.len());
            prop_assume!(chars[i] != replacement);
            chars[i] = replacement;
        }
        *text = chars.into_iter().collect();
        prop_assert_eq!(
            verify_twilio(&token, TWILIO_URL, &changed, &signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_twilio_url_never_verifies(
        token in "[a-f0-9]{32}",
        params in twilio_params(),
        path in "[a-z/]{1,20}",
        at in any::<prop::sample::Index>(),
        replacement in "[a-z0-9/?=&]",
    ) {
        let url = format!("https://crm.example.com/{path}");
        let signature = B64.encode(twilio_mac(&token, &url, &params));
        let mut chars: Vec<char> = path.chars().collect();
        let i = at.index(chars.len());
        let r = replacement.chars().next().expect("one char");
        prop_assume!(chars[i] != r);
        chars[i] = r;
        let other = format!("https://crm.example.com/{}", chars.into_iter().collect::<String>());
        prop_assert_eq!(
            verify_twilio(&token, &other, &params, &signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_twilio_signature_never_verifies(
        token in "[a-f0-9]{32}", params in twilio_params(), bit in 0usize..160,
    ) {
        let signature = B64.encode(flip_bit(&twilio_mac(&token, TWILIO_URL, &params), bit));
        prop_assert_eq!(
            verify_twilio(&token, TWILIO_URL, &params, &signature),
            Err(SignatureError::Mismatch)
        );
    }
}

// --------------------------------------------------------------- Svix (Resend)

fn svix_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 16..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_svix_headers_never_panic_the_check(
        secret in prop_oneof![hostile_text(), svix_key().prop_map(|k| svix_secret(&k))],
        id in hostile_text(),
        timestamp in prop_oneof![hostile_text(), any::<i64>().prop_map(|t| t.to_string()), "[0-9]{15,30}"],
        signatures in prop_oneof![
            hostile_text(),
            prop::collection::vec(("v[0-9]", "[A-Za-z0-9+/=]{0,50}"), 0..5)
                .prop_map(|v| v.iter().map(|(a, b)| format!("{a},{b}")).collect::<Vec<_>>().join(" ")),
        ],
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        let result = verify_svix(&secret, &id, &timestamp, &signatures, &body, now);
        prop_assert!(result.is_err());
    }

    #[test]
    fn a_correctly_signed_svix_payload_verifies(
        key in svix_key(), id in "msg_[A-Za-z0-9]{1,30}", body in body(), now in now(), skew in -300i64..=300,
    ) {
        let t = now + skew;
        let sig = format!("v1,{}", B64.encode(svix_mac(&key, &id, t, &body)));
        prop_assert_eq!(
            verify_svix(&svix_secret(&key), &id, &t.to_string(), &sig, &body, now),
            Ok(())
        );
    }

    #[test]
    fn a_changed_svix_body_id_timestamp_or_signature_never_verifies(
        key in svix_key(),
        id in "msg_[A-Za-z0-9]{1,30}",
        body in body(),
        now in now(),
        bit in any::<usize>(),
        what in 0u8..4,
    ) {
        let mac = svix_mac(&key, &id, now, &body);
        let (mut id2, mut t2, mut body2, mut mac2) = (id.clone(), now, body.clone(), mac.clone());
        match what {
            0 => body2 = flip_bit(&body, bit),
            1 => id2 = flip_ascii_bit(&id, bit),
            2 => t2 = now + if bit % 2 == 0 { 1 + (bit % 300) as i64 } else { -1 - (bit % 300) as i64 },
            _ => mac2 = flip_bit(&mac, bit % 256),
        }
        let sig = format!("v1,{}", B64.encode(&mac2));
        prop_assert_eq!(
            verify_svix(&svix_secret(&key), &id2, &t2.to_string(), &sig, &body2, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_one_of_several_svix_signatures_may_match(
        key in svix_key(),
        body in body(),
        now in now(),
        others in prop::collection::vec(
            (prop_oneof![Just("v1"), Just("v1a"), Just("v2")], prop::collection::vec(any::<u8>(), 0..40)),
            0..6,
        ),
        at in any::<prop::sample::Index>(),
    ) {
        let secret = svix_secret(&key);
        let mut sigs: Vec<String> = others
            .iter()
            .map(|(v, bytes)| format!("{v},{}", B64.encode(bytes)))
            .collect();
        let t = now.to_string();
        let without = sigs.join(" ");
        prop_assert_eq!(
            verify_svix(&secret, "msg_1", &t, &without, &body, now),
            Err(SignatureError::Mismatch)
        );
        let valid = format!("v1,{}", B64.encode(svix_mac(&key, "msg_1", now, &body)));
        sigs.insert(at.index(sigs.len() + 1), valid);
        prop_assert_eq!(verify_svix(&secret, "msg_1", &t, &sigs.join(" "), &body, now), Ok(()));
    }

    #[test]
    fn a_svix_signature_verifies_only_within_the_tolerance(
        key in svix_key(), body in body(), (t, now) in timestamp_and_clock(),
    ) {
        let sig = format!("v1,{}", B64.encode(svix_mac(&key, "msg_1", t, &body)));
        let expected = if (i128::from(now) - i128::from(t)).abs() <= TOLERANCE {
            Ok(())
        } else {
            Err(SignatureError::Stale)
        };
        prop_assert_eq!(
            verify_svix(&svix_secret(&key), "msg_1", &t.to_string(), &sig, &body, now),
            expected
        );
    }
}

// ------------------------------------------------------------------ parsers

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_parser(
        svix_id in hostile_text(), body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        parse_everything(&svix_id, &body);
    }

    #[test]
    fn arbitrary_json_never_panics_a_parser_and_what_is_accepted_is_clean(
        svix_id in hostile_text(),
        value in prop_oneof![hostile_json(), vendor_shaped_event()],
    ) {
        let body = serde_json::to_vec(&value).expect("a Value serializes");
        parse_everything(&svix_id, &body);
    }

    #[test]
    fn arbitrary_form_parameters_never_panic_the_twilio_parsers_and_what_is_accepted_is_clean(
        params in prop::collection::vec(
            (
                prop_oneof![
                    Just("MessageSid".to_string()),
                    Just("SmsSid".to_string()),
                    Just("From".to_string()),
                    Just("Body".to_string()),
                    Just("MessageStatus".to_string()),
                    Just("ErrorCode".to_string()),
                    hostile_text(),
                ],
                prop_oneof![
                    Just("delivered".to_string()),
                    Just(" SENT ".to_string()),
                    hostile_text(),
                ],
            ),
            0..10,
        ),
    ) {
        for parse in [parse_twilio_inbound, parse_twilio_status] {
            if let Ok(d) = parse(&params) {
                assert_delivery_clean(&d);
            }
        }
    }
}

proptest! {
    // Bodies of up to a megabyte: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn hostile_json_text_never_panics_a_parser_and_what_is_accepted_is_clean(
        svix_id in hostile_text(), body in hostile_json_text(),
    ) {
        parse_everything(&svix_id, &body);
    }

    #[test]
    fn hostile_form_bodies_never_panic_a_parser(
        body in prop_oneof![
            Just(b"MessageSid=SM1&From=%2B15125550100&Body=%00%01%1B%7F%C2%85%ED%A0%80%FF".to_vec()),
            (0usize..200_000).prop_map(|n| format!("MessageSid=SM1&From=x&Body={}", "%00".repeat(n)).into_bytes()),
            (0usize..100_000).prop_map(|n| "&=%".repeat(n).into_bytes()),
            prop::collection::vec(any::<u8>(), 0..4096),
        ],
    ) {
        parse_everything("msg_1", &body);
    }
}

// ---------------------------------------------------------------- the rule

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn cleaned_text_has_no_control_character_and_fits_its_maximum(
        raw in hostile_text(), max in 0usize..5_000,
    ) {
        let cleaned = clean(&raw, max);
        assert_text(&cleaned, max, "cleaned text");
        // Cleaning again changes nothing.
        prop_assert_eq!(clean(&cleaned, max), cleaned.clone());
        // Only C0 (but tab, LF, CR), DEL and C1 are removed, and order is kept.
        let expected: String = raw
            .chars()
            .filter(|&c| !removed(c))
            .take(max)
            .collect();
        prop_assert_eq!(cleaned, expected);
    }
}

//! The three vendors' signature schemes, checked over the raw body exactly as
//! each vendor specifies, comparing MACs in constant time.
//!
//! - Stripe: `Stripe-Signature: t=…,v1=…[,v1=…]`, hex HMAC-SHA256 of
//!   `"{t}.{body}"` keyed with the whole `whsec_…` string.
//! - Twilio: `X-Twilio-Signature`, base64 HMAC-SHA1 keyed with the auth token
//!   of the URL followed by every POST parameter's name and value, sorted.
//! - Svix (Resend): `svix-signature: v1,<base64> [v1,<base64>…]`, HMAC-SHA256
//!   of `"{svix-id}.{svix-timestamp}.{body}"` keyed with the base64-decoded
//!   part of the secret after `whsec_`.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far (seconds, either way) a signed timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused. Carries no secret and no signature, so it
/// may be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature header (or a header it needs) is absent.
    #[error("signature header missing")]
    Missing,
    /// The signature header cannot be parsed.
    #[error("signature header malformed")]
    Malformed,
    /// The signed timestamp is outside [`TOLERANCE_SECS`].
    #[error("signature timestamp outside the {TOLERANCE_SECS} s tolerance")]
    Stale,
    /// No signature in the header matches.
    #[error("signature does not match")]
    Mismatch,
    /// The configured secret cannot be used (Svix secret not base64).
    #[error("the configured signing secret is malformed")]
    BadSecret,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn within_tolerance(timestamp: i64, now: i64) -> bool {
    // `abs_diff`: a signed `t` near i64::MIN or MAX must not overflow.
    now.abs_diff(timestamp) <= TOLERANCE_SECS.unsigned_abs()
}

/// Verifies a `Stripe-Signature` header over `body` at Unix time `now`.
/// Any `v1` may match (Stripe sends one per active secret while rotating).
///
/// # Errors
/// [`SignatureError`]: malformed header, no matching `v1`, stale `t`.
pub fn verify_stripe(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let mut timestamp: Option<&str> = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        let (k, v) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => timestamp = Some(v),
            // An undecodable v1 simply cannot match.
            "v1" => candidates.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let t_raw = timestamp.ok_or(SignatureError::Malformed)?;
    let t: i64 = t_raw.parse().map_err(|_| SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = hmac_sha256(secret.as_bytes(), &[t_raw.as_bytes(), b".", body]);
    if !candidates
        .iter()
        .any(|c| bool::from(c.as_slice().ct_eq(&expected)))
    {
        return Err(SignatureError::Mismatch);
    }
    if !within_tolerance(t, now) {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The string Twilio signs: the URL, then each parameter name followed by its
/// value, names in byte order (values of a repeated name in byte order too,
/// duplicates once, as Twilio's own libraries do).
fn twilio_signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (k, v) in params {
        sorted.entry(k).or_default().insert(v);
    }
    let mut s = String::from(url);
    for (k, values) in sorted {
        for v in values {
            s.push_str(k);
            s.push_str(v);
        }
    }
    s
}

/// `url` as configured, plus the same URL with the scheme's default port
/// added (when absent) or removed (when present): Twilio may sign either.
pub fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        ("https://", r, "443")
    } else if let Some(r) = url.strip_prefix("http://") {
        ("http://", r, "80")
    } else {
        return out;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The port follows the host, after any userinfo and outside IPv6 brackets.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host = &authority[host_start..];
    let port_sep = host.rfind(':').filter(|&i| !host[i..].contains(']'));
    match port_sep {
        Some(i) if &host[i + 1..] == default_port => {
            let without = format!("{}{}", &authority[..host_start + i], tail);
            out.push(format!("{scheme}{without}"));
        }
        Some(_) => {}
        None => out.push(format!("{scheme}{authority}:{default_port}{tail}")),
    }
    out
}

/// Verifies an `X-Twilio-Signature` over `url` (the configured public URL of
/// the endpoint, with the request's query string) and the POST parameters.
///
/// # Errors
/// [`SignatureError::Malformed`] when the header is not base64;
/// [`SignatureError::Mismatch`].
pub fn verify_twilio(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> Result<(), SignatureError> {
    let given = B64
        .decode(signature.trim())
        .map_err(|_| SignatureError::Malformed)?;
    let mut ok = subtle::Choice::from(0);
    // Every variant is computed, so timing does not tell which one matched.
    for candidate in twilio_url_variants(url) {
        let expected = hmac_sha1(
            auth_token.as_bytes(),
            twilio_signed_string(&candidate, params).as_bytes(),
        );
        ok |= given.as_slice().ct_eq(&expected);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn svix_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(raw).map_err(|_| SignatureError::BadSecret)
}

/// Verifies Svix headers (`svix-id`, `svix-timestamp`, `svix-signature`)
/// over `body` at Unix time `now`. Any `v1` signature may match.
///
/// # Errors
/// [`SignatureError`]: bad secret, malformed timestamp, no match, stale.
pub fn verify_svix(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let key = svix_key(secret)?;
    let t: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    let expected = hmac_sha256(
        &key,
        &[
            msg_id.as_bytes(),
            b".",
            timestamp.trim().as_bytes(),
            b".",
            body,
        ],
    );
    let mut ok = subtle::Choice::from(0);
    for sig in signatures.split_whitespace() {
        let Some((version, value)) = sig.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        if let Ok(bytes) = B64.decode(value) {
            ok |= bytes.as_slice().ct_eq(&expected);
        }
    }
    if !bool::from(ok) {
        return Err(SignatureError::Mismatch);
    }
    if !within_tolerance(t, now) {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Produces the vendors' signatures, for tests and local tools that play the
/// vendor. Checked against the vendors' own libraries in the unit tests.
pub mod signing {
    use super::{hmac_sha1, hmac_sha256, svix_key, twilio_signed_string, B64};
    use base64::Engine as _;

    /// A `Stripe-Signature` header for `body` signed at Unix time `t`.
    pub fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
        let mac = hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]);
        format!("t={t},v1={}", hex::encode(mac))
    }

    /// An `X-Twilio-Signature` value for a POST of `params` to `url`.
    pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
        B64.encode(hmac_sha1(
            auth_token.as_bytes(),
            twilio_signed_string(url, params).as_bytes(),
        ))
    }

    /// A `svix-signature` value (`v1,<base64>`).
    ///
    /// # Panics
    /// When `secret` is not `whsec_` followed by base64.
    pub fn svix_signature(secret: &str, msg_id: &str, t: i64, body: &[u8]) -> String {
        let key = svix_key(secret).expect("a whsec_<base64> secret");
        let mac = hmac_sha256(
            &key,
            &[
                msg_id.as_bytes(),
                b".",
                t.to_string().as_bytes(),
                b".",
                body,
            ],
        );
        format!("v1,{}", B64.encode(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    // The signing side below is written out again from the vendors' published
    // algorithms (not via `signing`), so a shared mistake cannot hide.
    fn stripe_sign(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.{body}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn twilio_sign(token: &str, url: &str, params: &[(&str, &str)]) -> String {
        let mut sorted = params.to_vec();
        sorted.sort();
        let mut data = url.to_string();
        for (k, v) in sorted {
            data.push_str(k);
            data.push_str(v);
        }
        let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("key");
        mac.update(data.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    fn svix_sign(secret: &str, id: &str, t: i64, body: &str) -> String {
        let key = B64
            .decode(secret.trim_start_matches("whsec_"))
            .expect("base64");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
        mac.update(format!("{id}.{t}.{body}").as_bytes());
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }

    fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
        params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: i64 = 1_764_000_000;
    const STRIPE_SECRET: &str = "whsec_test_secret";
    const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn twilio_documented_example_signature_is_accepted() {
        let params = owned(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            verify_twilio("12345", url, &params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
            Ok(())
        );
        assert_eq!(
            signing::twilio_signature("12345", url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn a_stripe_signature_is_accepted_and_any_change_is_refused() {
        let body = r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let header = stripe_sign(STRIPE_SECRET, NOW, body);
        assert_eq!(
            verify_stripe(STRIPE_SECRET, &header, body.as_bytes(), NOW + 10),
            Ok(())
        );
        let mut tampered = body.as_bytes().to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify_stripe(STRIPE_SECRET, &header, &tampered, NOW),
            Err(SignatureError::Mismatch)
        );
        // Another timestamp in the header: the MAC no longer matches.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            verify_stripe(STRIPE_SECRET, &moved, body.as_bytes(), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe("whsec_other", &header, body.as_bytes(), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_stripe_signature_outside_five_minutes_is_stale() {
        let body = "{}";
        let header = stripe_sign(STRIPE_SECRET, NOW, body);
        for now in [NOW + 301, NOW - 301] {
            assert_eq!(
                verify_stripe(STRIPE_SECRET, &header, body.as_bytes(), now),
                Err(SignatureError::Stale)
            );
        }
        assert_eq!(
            verify_stripe(STRIPE_SECRET, &header, body.as_bytes(), NOW + 300),
            Ok(())
        );
    }

    #[test]
    fn any_stripe_v1_may_match_during_secret_rotation() {
        let body = "{}";
        let old = stripe_sign("whsec_old", NOW, body);
        let new = stripe_sign(STRIPE_SECRET, NOW, body);
        let v1_new = new.split_once(",v1=").expect("v1").1;
        let header = format!("{old},v1={v1_new},v0=deadbeef");
        assert_eq!(
            verify_stripe(STRIPE_SECRET, &header, body.as_bytes(), NOW),
            Ok(())
        );
    }

    #[test]
    fn a_malformed_stripe_header_is_refused() {
        for h in ["", "t=abc,v1=00", "v1=00", &format!("t={NOW}"), "garbage"] {
            assert_eq!(
                verify_stripe(STRIPE_SECRET, h, b"{}", NOW),
                Err(SignatureError::Malformed),
                "{h}"
            );
        }
    }

    #[test]
    fn a_twilio_signature_is_refused_for_another_body_url_or_token() {
        let url = "https://crm.example.com/api/webhooks/twilio";
        let params = [
            ("MessageSid", "SM1"),
            ("From", "+15125550100"),
            ("Body", "STOP"),
        ];
        let sig = twilio_sign("token", url, &params);
        assert_eq!(verify_twilio("token", url, &owned(&params), &sig), Ok(()));
        let changed = [
            ("MessageSid", "SM1"),
            ("From", "+15125550100"),
            ("Body", "STOQ"),
        ];
        assert_eq!(
            verify_twilio("token", url, &owned(&changed), &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_twilio(
                "token",
                "https://evil.example.com/api/webhooks/twilio",
                &owned(&params),
                &sig
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_twilio("other", url, &owned(&params), &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_twilio("token", url, &owned(&params), "not base64!"),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn twilio_may_sign_the_url_with_or_without_the_default_port() {
        let params = [("MessageSid", "SM1")];
        let with_port = twilio_sign("t", "https://crm.example.com:443/hook?x=1", &params);
        let without = twilio_sign("t", "https://crm.example.com/hook?x=1", &params);
        for url in [
            "https://crm.example.com/hook?x=1",
            "https://crm.example.com:443/hook?x=1",
        ] {
            for sig in [&with_port, &without] {
                assert_eq!(
                    verify_twilio("t", url, &owned(&params), sig),
                    Ok(()),
                    "{url}"
                );
            }
        }
        // A non-default port is part of the URL: no variant drops it.
        assert_eq!(
            twilio_url_variants("http://localhost:8080/x"),
            vec!["http://localhost:8080/x".to_string()]
        );
        assert_eq!(
            twilio_url_variants("http://h/x"),
            vec!["http://h/x".to_string(), "http://h:80/x".to_string()]
        );
        assert_eq!(
            twilio_url_variants("https://u:p@h:443"),
            vec!["https://u:p@h:443".to_string(), "https://u:p@h".to_string()]
        );
    }

    #[test]
    fn a_svix_signature_is_accepted_and_any_change_is_refused() {
        let body = r#"{"type":"email.bounced","data":{}}"#;
        let sig = svix_sign(SVIX_SECRET, "msg_1", NOW, body);
        let t = NOW.to_string();
        assert_eq!(
            verify_svix(SVIX_SECRET, "msg_1", &t, &sig, body.as_bytes(), NOW),
            Ok(())
        );
        let several = format!("v1,AAAA v2,zzz {sig}");
        assert_eq!(
            verify_svix(SVIX_SECRET, "msg_1", &t, &several, body.as_bytes(), NOW),
            Ok(())
        );
        let mut tampered = body.as_bytes().to_vec();
        tampered[3] ^= 1;
        assert_eq!(
            verify_svix(SVIX_SECRET, "msg_1", &t, &sig, &tampered, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_svix(SVIX_SECRET, "msg_2", &t, &sig, body.as_bytes(), NOW),
            Err(SignatureError::Mismatch)
        );
        let t2 = (NOW + 1).to_string();
        assert_eq!(
            verify_svix(SVIX_SECRET, "msg_1", &t2, &sig, body.as_bytes(), NOW),
            Err(SignatureError::Mismatch)
        );
        let stale = svix_sign(SVIX_SECRET, "msg_1", NOW - 301, body);
        assert_eq!(
            verify_svix(
                SVIX_SECRET,
                "msg_1",
                &(NOW - 301).to_string(),
                &stale,
                body.as_bytes(),
                NOW
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_svix("whsec_***", "msg_1", &t, &sig, body.as_bytes(), NOW),
            Err(SignatureError::BadSecret)
        );
    }

    #[test]
    fn the_signing_helpers_agree_with_the_independent_signers() {
        let body = r#"{"a":1}"#;
        assert_eq!(
            signing::stripe_header(STRIPE_SECRET, NOW, body.as_bytes()),
            stripe_sign(STRIPE_SECRET, NOW, body)
        );
        assert_eq!(
            signing::svix_signature(SVIX_SECRET, "msg_9", NOW, body.as_bytes()),
            svix_sign(SVIX_SECRET, "msg_9", NOW, body)
        );
    }

    /// Fixtures made by the vendors' own Python libraries (`stripe`, `twilio`,
    /// `svix` from PyPI) with `fixtures/generate.py`.
    #[derive(Deserialize)]
    struct Fixtures {
        stripe: Vec<StripeFixture>,
        twilio: Vec<TwilioFixture>,
        svix: Vec<SvixFixture>,
    }
    #[derive(Deserialize)]
    struct StripeFixture {
        secret: String,
        timestamp: i64,
        payload: String,
        header: String,
    }
    #[derive(Deserialize)]
    struct TwilioFixture {
        auth_token: String,
        url: String,
        params: Vec<(String, String)>,
        signature: String,
    }
    #[derive(Deserialize)]
    struct SvixFixture {
        secret: String,
        msg_id: String,
        timestamp: i64,
        payload: String,
        signature: String,
    }

    fn fixtures() -> Fixtures {
        serde_json::from_str(include_str!("fixtures/vendor_signatures.json")).expect("fixtures")
    }

    #[test]
    fn signatures_made_by_the_vendors_libraries_verify() {
        let f = fixtures();
        for s in &f.stripe {
            let now = s.timestamp + 5;
            assert_eq!(
                verify_stripe(&s.secret, &s.header, s.payload.as_bytes(), now),
                Ok(()),
                "{}",
                s.header
            );
            let mut body = s.payload.clone().into_bytes();
            let last = body.len() - 2;
            body[last] ^= 1;
            assert_eq!(
                verify_stripe(&s.secret, &s.header, &body, now),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify_stripe(
                    &s.secret,
                    &s.header,
                    s.payload.as_bytes(),
                    s.timestamp + 301
                ),
                Err(SignatureError::Stale)
            );
        }
        for t in &f.twilio {
            assert_eq!(
                verify_twilio(&t.auth_token, &t.url, &t.params, &t.signature),
                Ok(()),
                "{}",
                t.url
            );
            assert_eq!(
                signing::twilio_signature(&t.auth_token, &t.url, &t.params),
                t.signature
            );
            let other_url = t.url.replace(".com", ".org");
            assert_eq!(
                verify_twilio(&t.auth_token, &other_url, &t.params, &t.signature),
                Err(SignatureError::Mismatch)
            );
            let mut params = t.params.clone();
            params[0].1.push('x');
            assert_eq!(
                verify_twilio(&t.auth_token, &t.url, &params, &t.signature),
                Err(SignatureError::Mismatch)
            );
        }
        for s in &f.svix {
            let ts = s.timestamp.to_string();
            assert_eq!(
                verify_svix(
                    &s.secret,
                    &s.msg_id,
                    &ts,
                    &s.signature,
                    s.payload.as_bytes(),
                    s.timestamp
                ),
                Ok(())
            );
            assert_eq!(
                signing::svix_signature(&s.secret, &s.msg_id, s.timestamp, s.payload.as_bytes()),
                s.signature
            );
            let mut body = s.payload.clone().into_bytes();
            body[1] ^= 1;
            assert_eq!(
                verify_svix(&s.secret, &s.msg_id, &ts, &s.signature, &body, s.timestamp),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify_svix(
                    &s.secret,
                    &s.msg_id,
                    &ts,
                    &s.signature,
                    s.payload.as_bytes(),
                    s.timestamp - 400
                ),
                Err(SignatureError::Stale)
            );
        }
    }
}

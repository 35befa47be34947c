//! The boundary rule for vendor text: whatever a webhook carries into the
//! event log, the ledger or a read model is cleaned here first.
//!
//! PostgreSQL refuses `\u0000` in `jsonb` and NUL in `text`, and the read
//! models are shown as text. A vendor retries a refused delivery for days, so
//! a hostile or broken body is not refused: its text is cleaned. [`clean`]
//! removes NUL and every other control character except tab, newline and
//! carriage return, then cuts the text to a field's maximum; the parsers in
//! [`super::delivery`] pass every field through it, and the stored payload
//! through [`clean_json`].

use serde_json::{Map, Value};

/// Longest SMS body kept: a conversation message's limit in the domain
/// (`ConversationCommand::AddMessage`), above Twilio's 1,600.
pub const MAX_SMS_BODY_CHARS: usize = 4_000;
/// Longest vendor id or type kept (Stripe documents ids of up to 255
/// characters; Twilio SIDs are 34).
pub const MAX_ID_CHARS: usize = 255;
/// Longest email address kept (RFC 5321: 254).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest Stripe metadata value kept (Stripe's documented limit).
pub const MAX_METADATA_CHARS: usize = 500;
/// Longest payment failure reason kept (the domain's `Reason` limit; Stripe
/// documents none).
pub const MAX_REASON_CHARS: usize = 500;

fn kept(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// `raw` without NUL and other control characters (C0, DEL, C1) except
/// `\t`, `\n`, `\r`, and cut to its first `max_chars` characters.
pub fn clean(raw: &str, max_chars: usize) -> String {
    raw.chars().filter(|&c| kept(c)).take(max_chars).collect()
}

/// `value` with every string and object key [`clean`]ed (not cut): the
/// verified body as the ledger stores it.
pub fn clean_json(value: Value) -> Value {
    match value {
        // Most strings are clean already: keep them without copying.
        Value::String(s) if s.chars().all(kept) => Value::String(s),
        Value::String(s) => Value::String(clean(&s, usize::MAX)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (clean(&k, usize::MAX), clean_json(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_and_control_characters_are_removed_but_tab_and_line_breaks_kept() {
        assert_eq!(
            clean("a\0b\u{1}c\u{1b}[31md\u{7f}e\u{85}f\tg\nh\r\ni", 100),
            "abc[31mdef\tg\nh\r\ni"
        );
    }

    #[test]
    fn text_is_cut_to_its_maximum_in_characters_not_bytes() {
        assert_eq!(clean("ééééé", 3), "ééé");
        assert_eq!(clean(&"x".repeat(5_000), MAX_SMS_BODY_CHARS).len(), 4_000);
        // Removed characters do not count.
        assert_eq!(clean("\0\0ab", 2), "ab");
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        let s = "Can you come Tuesday? 🙂 Ünïcödé, \u{202e}bidi\u{200b}";
        assert_eq!(clean(s, usize::MAX), s);
    }

    #[test]
    fn every_string_and_key_of_a_payload_is_cleaned() {
        let v = json!({"a\u{0}": ["x\u{0}y", {"k": "\u{1}v"}], "n": 1, "t": true});
        assert_eq!(
            clean_json(v),
            json!({"a": ["xy", {"k": "v"}], "n": 1, "t": true})
        );
    }
}

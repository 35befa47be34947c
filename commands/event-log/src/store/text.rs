//! Text as every engine can hold it. PostgreSQL's `text` and `jsonb` refuse
//! NUL; an event that carries one (written by an old version, or derived by a
//! policy from such an event) is stored with U+FFFD in its place, on every
//! engine, so that engines and read models agree. Input from clients never
//! gets here with a NUL: the API refuses it (`VALIDATION`).

use std::borrow::Cow;

use serde_json::Value;

/// `s` with every NUL replaced by U+FFFD (borrowed when there is none).
pub fn storable(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// [`storable`] for every string, keys included, of a JSON document.
pub fn storable_json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(storable(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(storable_json).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (storable(k).into_owned(), storable_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a JSON document holds a NUL anywhere (the common case is no: then
/// nothing is copied).
pub fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{holds_nul, storable, storable_json};

    #[test]
    fn a_nul_becomes_the_replacement_character_and_other_text_is_untouched() {
        assert_eq!(storable("a\0b"), "a\u{FFFD}b");
        assert_eq!(storable("שלום 👩‍👩‍👧\n"), "שלום 👩‍👩‍👧\n");
        let doc = serde_json::json!({"k\0": ["x\0", 1, {"n": "\0"}]});
        assert!(holds_nul(&doc));
        let clean = storable_json(&doc);
        assert!(!holds_nul(&clean));
        assert_eq!(
            clean,
            serde_json::json!({"k\u{FFFD}": ["x\u{FFFD}", 1, {"n": "\u{FFFD}"}]})
        );
    }
}

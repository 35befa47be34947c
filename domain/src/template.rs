//! Message templates staff write for promotions (issue #16): MiniJinja syntax (`Hi {{ first_name
//! }}`), strict about variables, so a customer never receives a raw placeholder.
//!
//! A template is checked when a promotion is created or edited: it must parse, name only the
//! variables in [`VARIABLES`], name `code` or `discount` only when the promotion has one, and
//! render within [`FUEL`] and its channel's length with sample values. What is stored is the
//! template as written. Templates from before this (single braces, `Hi {first_name}`) are read
//! by turning each `{name}` of a known variable into `{{ name }}`, at creation and when an old
//! campaign is sent; anything else in them is text.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};

use crate::consent::Channel;
use crate::error::ValidationError;

/// The variables a promotion's template may use, and what each holds.
pub const VARIABLES: &[(&str, &str)] = &[
    ("first_name", "the customer's first name"),
    ("name", "the customer's full name"),
    (
        "code",
        "the promotion's discount code (only when it has one)",
    ),
    (
        "discount",
        "the promotion's discount, e.g. `20%` (only when it has one)",
    ),
    (
        "ends_on",
        "the last day of the promotion, e.g. `December 31, 2026`",
    ),
    ("booking_link", "the portal's booking page"),
    ("points_balance", "the customer's loyalty points"),
    ("tier", "the customer's loyalty tier, e.g. `Gold`"),
    (
        "unsubscribe_link",
        "the one-click unsubscribe page (email only)",
    ),
];

/// Work one rendering may do (MiniJinja's fuel): plenty for a message, too little for a loop
/// that would hold a worker.
pub const FUEL: u64 = 20_000;

/// The longest rendered text per channel (Twilio's limit for SMS).
pub fn max_len(channel: Channel) -> usize {
    match channel {
        Channel::Sms => 1_600,
        Channel::Email => 50_000,
    }
}

/// What a template may use besides the customer's details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offers {
    /// SMS or email.
    pub channel: Channel,
    /// The promotion has a discount code.
    pub code: bool,
    /// The promotion has a discount.
    pub discount: bool,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(20);
    env
}

/// The template in MiniJinja syntax: old single-brace ones have their known `{name}`s turned
/// into `{{ name }}`; others are returned as they are.
pub fn canonical(raw: &str) -> String {
    if raw.contains("{{") || raw.contains("{%") || raw.contains("{#") {
        return raw.to_string();
    }
    let mut out = raw.to_string();
    for (name, _) in VARIABLES {
        out = out.replace(&format!("{{{name}}}"), &format!("{{{{ {name} }}}}"));
    }
    out
}

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::new("template", message)
}

/// Filters a template may apply to a variable.
const FILTERS: &[&str] = &["upper", "lower", "title", "capitalize", "trim"];

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Only the small part of the language a message needs: `{{ name }}` (with a filter of
/// [`FILTERS`]), `{% if name %}` / `{% elif name %}` / `{% else %}` / `{% endif %}` and
/// `{# comments #}`. Expressions, loops, `set`, macros and includes are refused: a step limit
/// does not bound memory (`"x" * 100000000` is one step), and a message needs none of them.
fn check_subset(text: &str) -> Result<(), ValidationError> {
    let refused = |what: &str| {
        invalid(format!(
            "only {{{{ variable }}}}, {{{{ variable | upper }}}} (lower, title, capitalize, trim) \
             and {{% if variable %}}…{{% else %}}…{{% endif %}} are allowed; not `{what}`"
        ))
    };
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let (close, kind) = match after.chars().next() {
            Some('{') => ("}}", '{'),
            Some('%') => ("%}", '%'),
            Some('#') => ("#}", '#'),
            _ => {
                rest = after;
                continue;
            }
        };
        let inner_start = &after[1..];
        let Some(end) = inner_start.find(close) else {
            return Err(invalid("a tag is not closed"));
        };
        let inner = inner_start[..end]
            .trim_matches(|c: char| c == '-' || c == '+')
            .trim();
        match kind {
            '{' => {
                let mut parts = inner.split('|').map(str::trim);
                let name = parts.next().unwrap_or_default();
                if !is_name(name) {
                    return Err(refused(inner));
                }
                for f in parts {
                    if !FILTERS.contains(&f) {
                        return Err(refused(inner));
                    }
                }
            }
            '%' => {
                let words: Vec<&str> = inner.split_whitespace().collect();
                let ok = match words.as_slice() {
                    ["if" | "elif", name] => is_name(name),
                    ["if" | "elif", "not", name] => is_name(name),
                    ["else"] | ["endif"] => true,
                    _ => false,
                };
                if !ok {
                    return Err(refused(inner));
                }
            }
            _ => {}
        }
        rest = &inner_start[end + close.len()..];
    }
    Ok(())
}

/// A known variable written with single braces in a template that otherwise uses MiniJinja
/// syntax: it would be sent as written.
fn single_brace_variable(text: &str) -> Option<&'static str> {
    VARIABLES.iter().map(|(n, _)| *n).find(|name| {
        let needle = format!("{{{name}}}");
        text.match_indices(&needle).any(|(i, _)| {
            let before = text[..i].chars().last();
            let after = text[i + needle.len()..].chars().next();
            before != Some('{') && after != Some('}')
        })
    })
}

/// Room kept for what is added to a message after its template (the code, the SMS opt-out
/// sentence, an email's unsubscribe line).
const APPENDED: usize = 200;

/// Checks `raw` for a promotion that `offers` this; returns it in MiniJinja syntax.
///
/// # Errors
/// [`ValidationError`] on `template`: a syntax error, an unknown variable (named), a variable
/// the promotion has no value for, or a sample rendering that fails or is too long.
pub fn check(raw: &str, offers: Offers) -> Result<String, ValidationError> {
    let text = canonical(raw);
    check_subset(&text)?;
    if let Some(name) = single_brace_variable(&text) {
        return Err(invalid(format!(
            "`{{{name}}}` would be sent as written: use {{{{ {name} }}}}"
        )));
    }
    let env = environment();
    let template = env.template_from_str(&text).map_err(|e| {
        invalid(format!(
            "not a valid template: {}",
            e.detail().unwrap_or("syntax error")
        ))
    })?;
    let mut used: Vec<String> = template.undeclared_variables(false).into_iter().collect();
    used.sort();
    let known = |v: &str| VARIABLES.iter().any(|(n, _)| *n == v);
    if let Some(unknown) = used.iter().find(|v| !known(v)) {
        let names: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
        return Err(invalid(format!(
            "unknown variable `{unknown}`; the variables are {}",
            names.join(", ")
        )));
    }
    let missing = |v: &str, has: bool, what: &str| {
        (used.iter().any(|u| u == v) && !has)
            .then(|| invalid(format!("uses `{v}` but the promotion has no {what}")))
    };
    if let Some(e) = missing("code", offers.code, "discount code")
        .or_else(|| missing("discount", offers.discount, "discount"))
        .or_else(|| {
            missing(
                "unsubscribe_link",
                offers.channel == Channel::Email,
                "unsubscribe link (SMS opt out by replying STOP)",
            )
        })
    {
        return Err(e);
    }
    let sample = render(&text, &sample_values()).map_err(invalid)?;
    let room = max_len(offers.channel).saturating_sub(APPENDED);
    if sample.chars().count() > room {
        return Err(invalid(format!(
            "renders longer than {room} characters with long sample values (the channel's limit less room for the code and the opt-out or unsubscribe line)"
        )));
    }
    Ok(text)
}

/// Values to try a template with.
pub fn sample_values() -> BTreeMap<&'static str, String> {
    [
        ("first_name", "Alexandra"),
        ("name", "Alexandra Kowalczyk-Richardson"),
        ("code", "SPRING2026"),
        ("discount", "20%"),
        ("ends_on", "December 31, 2026"),
        ("booking_link", "https://crm.example.com/book"),
        ("points_balance", "12500"),
        ("tier", "Platinum"),
        (
            "unsubscribe_link",
            "https://crm.example.com/api/unsubscribe/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// Renders a template (either syntax) with `values`.
///
/// # Errors
/// Why it could not be rendered (the kind of error only: a detail may quote a value, and
/// the reason is recorded in an event). A template outside the allowed subset (one stored
/// before the subset existed) is not rendered at all.
pub fn render(raw: &str, values: &BTreeMap<&'static str, String>) -> Result<String, String> {
    let text = canonical(raw);
    check_subset(&text).map_err(|_| {
        "the template uses more than variables and ifs, which are no longer sent".to_string()
    })?;
    let env = environment();
    env.render_str(&text, values)
        .map_err(|e| format!("the template could not be rendered ({:?})", e.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers() -> Offers {
        Offers {
            channel: Channel::Email,
            code: true,
            discount: true,
        }
    }

    #[test]
    fn it_should_render_every_variable_it_documents() {
        let all: String = VARIABLES
            .iter()
            .map(|(n, _)| format!("{{{{ {n} }}}}|"))
            .collect();
        let text = check(&all, offers()).expect("valid");
        let out = render(&text, &sample_values()).expect("renders");
        assert!(!out.contains("{{") && out.contains("Alexandra|"), "{out}");
    }

    #[test]
    fn it_should_refuse_an_unknown_variable_naming_it() {
        let err = check("Hi {{ frist_name }}", offers()).expect_err("unknown");
        assert_eq!(err.field, "template");
        assert!(err.message.contains("frist_name"), "{}", err.message);
    }

    #[test]
    fn it_should_refuse_a_syntax_error_and_anything_beyond_variables_and_ifs() {
        for bad in [
            "Hi {{ first_name",
            "{% for i in range(100000) %}x{% endfor %}",
            "{% set a = \"x\" * 100000000 %}{{ a }}",
            "{{ \"x\" * 100000000 }}",
            "{{ first_name ~ first_name }}",
            "{% include \"other\" %}",
            "{{ first_name | replace(\"a\", \"b\") }}",
            "{% if first_name %}open",
        ] {
            assert!(check(bad, offers()).is_err(), "{bad}");
        }
        let fine = "{# note #}{% if code %}Use {{ code | upper }}{% else %}Hi{% endif %} {{- first_name -}}";
        assert!(check(fine, offers()).is_ok());
    }

    #[test]
    fn it_should_refuse_a_single_brace_variable_in_a_new_template() {
        let err = check("Hi {{ first_name }}, use {code}", offers()).expect_err("mixed");
        assert!(err.message.contains("{code}"), "{}", err.message);
        // {{code}} written without spaces is fine.
        assert!(check("Use {{code}}", offers()).is_ok());
    }

    #[test]
    fn it_should_refuse_a_code_the_promotion_does_not_have() {
        let none = Offers {
            code: false,
            ..offers()
        };
        let err = check("Use {{ code }}", none).expect_err("no code");
        assert!(err.message.contains("code"), "{}", err.message);
        let sms = Offers {
            channel: Channel::Sms,
            ..offers()
        };
        assert!(check("{{ unsubscribe_link }}", sms).is_err());
    }

    #[test]
    fn it_should_read_an_old_single_brace_template() {
        let old = "Hi {first_name}, get {discount} off with code {code}. {unknown} stays";
        let out = render(old, &sample_values()).expect("renders");
        assert_eq!(
            out,
            "Hi Alexandra, get 20% off with code SPRING2026. {unknown} stays"
        );
    }

    #[test]
    fn it_should_refuse_a_template_that_renders_too_long_for_sms() {
        let sms = Offers {
            channel: Channel::Sms,
            ..offers()
        };
        let long = "{{ name }}".repeat(50);
        assert!(check(&long, sms).is_err());
        assert!(
            check(&"x".repeat(1_500), sms).is_err(),
            "no room for the opt-out"
        );
    }
}

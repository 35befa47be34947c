//! Every error a client sees carries `extensions.code`; internal errors say
//! nothing more and are logged with the request id.

use async_graphql::{Error, ErrorExtensions};
use commands::app::AppError;

/// An error with a code (and optionally the field at fault). Not for `RULE_VIOLATION`:
/// [`rule`] names the rule, as the errors table promises every refusal does.
pub fn coded(code: &str, message: impl Into<String>, field: Option<&str>) -> Error {
    let code = code.to_string();
    let field = field.map(str::to_string);
    Error::new(message).extend_with(|_, e| {
        e.set("code", code.clone());
        if let Some(f) = &field {
            e.set("field", f.clone());
        }
    })
}

/// UNAUTHENTICATED.
pub fn unauthenticated() -> Error {
    coded("UNAUTHENTICATED", "sign in first", None)
}

/// FORBIDDEN.
pub fn forbidden(what: &str) -> Error {
    coded("FORBIDDEN", format!("your role may not {what}"), None)
}

/// VALIDATION on a field.
pub fn invalid(field: &str, message: impl Into<String>) -> Error {
    coded("VALIDATION", message, Some(field))
}

/// RULE_VIOLATION with its `rule` (and the field it concerns).
pub fn rule(rule: &str, message: impl Into<String>, field: &str) -> Error {
    let (rule, field) = (rule.to_string(), field.to_string());
    Error::new(message).extend_with(|_, e| {
        e.set("code", "RULE_VIOLATION");
        e.set("rule", rule.clone());
        e.set("field", field.clone());
    })
}

/// NOT_FOUND.
pub fn not_found(entity: &str, id: &str) -> Error {
    coded("NOT_FOUND", format!("{entity} {id} not found"), None)
}

/// INTERNAL: details go to the log only.
pub fn internal(request_id: &str, cause: &dyn std::fmt::Display) -> Error {
    tracing::error!(request_id, error = %cause, "internal error");
    coded(
        "INTERNAL",
        format!("internal error (request {request_id})"),
        None,
    )
}

/// Maps the application layer's errors.
pub fn app(request_id: &str, e: AppError) -> Error {
    match &e {
        AppError::Store(inner) => match e.code() {
            "STORE_UNAVAILABLE" => coded(
                "UNAVAILABLE",
                "the database is unavailable; retry shortly",
                None,
            ),
            _ => internal(request_id, inner),
        },
        AppError::Rule { code, message } => {
            let rule = *code;
            Error::new(message.clone()).extend_with(|_, x| {
                x.set("code", "RULE_VIOLATION");
                x.set("rule", rule);
            })
        }
        // The stored key is scoped with the sender's id: say so without it.
        AppError::IdempotencyKeyReused { .. } => coded(
            "IDEMPOTENCY_KEY_REUSED",
            "this idempotency key was already used for another request",
            None,
        ),
        _ => coded(e.code(), e.to_string(), e.field()),
    }
}

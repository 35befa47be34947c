//! What a command can answer besides its events: the error kinds every caller maps (GraphQL codes, CLI messages).

// The parts share their parent's imports.
use super::*;

/// Why a command did not take effect, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A command field is invalid; `field` is the API (camelCase) field name.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The offending field, camelCase (`amountCents`, `phone`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The aggregate addressed, or one the command refers to, does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What was looked for (`customer`, `job`, `referral code`…).
        entity: &'static str,
        /// The id (or code) that was not found.
        id: String,
        /// The command field that named it, when it came from a field (`customerId`).
        field: Option<String>,
    },
    /// Another command changed the aggregate first; nothing was written.
    #[error("{entity} {id} was changed by another request; reload and retry")]
    Conflict {
        /// Aggregate type.
        entity: String,
        /// Aggregate id.
        id: String,
    },
    /// The actor may not issue this command.
    #[error("forbidden: {message}")]
    Forbidden {
        /// Why.
        message: String,
    },
    /// A business rule refused the command.
    #[error("{message}")]
    Rule {
        /// The rule, SCREAMING_SNAKE (`INSUFFICIENT_POINTS`, `JOB_ALREADY_COMPLETED`).
        code: &'static str,
        /// For humans.
        message: String,
    },
    /// The idempotency key was already used for a different request.
    #[error("the idempotency key {key:?} was already used for another request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    /// Stable machine-readable code: `VALIDATION`, `NOT_FOUND`, `CONFLICT`,
    /// `FORBIDDEN`, `RULE_VIOLATION`, `IDEMPOTENCY_KEY_REUSED`,
    /// `STORE_UNAVAILABLE` or `INTERNAL`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation { .. } => "VALIDATION",
            AppError::NotFound { .. } => "NOT_FOUND",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::Forbidden { .. } => "FORBIDDEN",
            AppError::Rule { .. } => "RULE_VIOLATION",
            AppError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            AppError::Store(StoreError::Unavailable(_)) => "STORE_UNAVAILABLE",
            AppError::Store(_) => "INTERNAL",
        }
    }

    /// The field at fault (camelCase), for validation and not-found errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Validation { field, .. } => Some(field),
            AppError::NotFound { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The rule that refused the command, for [`AppError::Rule`].
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            AppError::Rule { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A validation error for a domain (snake_case) field name.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: camel_case(field),
            message: message.into(),
        }
    }

    pub(super) fn not_found(entity: &'static str, id: impl Display) -> Self {
        AppError::NotFound {
            entity,
            id: id.to_string(),
            field: None,
        }
    }

    pub(super) fn rule_of(code: &'static str, e: impl Display) -> Self {
        AppError::Rule {
            code,
            message: e.to_string(),
        }
    }

    pub(super) fn forbidden(e: impl Display) -> Self {
        AppError::Forbidden {
            message: e.to_string(),
        }
    }
}

/// `amount_cents` → `amountCents`; dots are kept (`address.postal_code` → `address.postalCode`).
pub fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

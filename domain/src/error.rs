//! Errors shared by every aggregate.
//!
//! Each aggregate has its own `thiserror` enum; all of them carry a `Validation` variant built
//! from [`ValidationError`] so that the API can always tell the client *which field* was wrong.

/// A value in a command failed validation. `field` names the command field (snake_case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ValidationError {
    /// The command field at fault, e.g. `"phone"` or `"amount_cents"`.
    pub field: &'static str,
    /// What is wrong with it, for humans.
    pub message: String,
}

impl ValidationError {
    /// Builds an error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// Re-labels the error with the command field it came from: value parsers name a default
    /// field (`"email"`), but a command may hold the value under another name.
    #[must_use]
    pub fn in_field(mut self, field: &'static str) -> Self {
        self.field = field;
        self
    }
}

/// Implements `From<ValidationError>` for an aggregate error enum that has a
/// `Validation { field, message }` variant, plus a `field()` accessor.
macro_rules! validation_error {
    ($error:ident) => {
        impl From<$crate::error::ValidationError> for $error {
            fn from(e: $crate::error::ValidationError) -> Self {
                Self::Validation {
                    field: e.field,
                    message: e.message,
                }
            }
        }

        impl $error {
            /// The offending command field, when this is a validation error.
            pub fn field(&self) -> Option<&'static str> {
                match self {
                    Self::Validation { field, .. } => Some(field),
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use validation_error;

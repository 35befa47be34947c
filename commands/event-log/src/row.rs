//! Typed reads of query rows: a column that is missing or of another type is an error
//! naming it, never a quiet default.

use serde_json::Value;

use crate::sql::{DbError, JsonRow};

/// The error for a column that does not read as `wanted`: it says what kind of value was
/// there, never the value (a read-model column may hold personal data).
fn wrong(column: &str, wanted: &str, got: Option<&Value>) -> DbError {
    let kind = match got {
        None => "absent",
        Some(Value::Null) => "NULL",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "other text",
        Some(Value::Array(_) | Value::Object(_)) => "JSON",
    };
    DbError::new(format!(
        "read-model column {column} is not {wanted}: {kind}"
    ))
}

/// An integer column (engines return `BIGINT` sums as numbers or numeric text).
///
/// # Errors
/// The column is absent, NULL or not an integer.
pub fn int(row: &JsonRow, column: &str) -> Result<i64, DbError> {
    let v = row.get(column);
    v.and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })
    .ok_or_else(|| wrong(column, "an integer", v))
}

/// A text column.
///
/// # Errors
/// The column is absent, NULL or not text.
pub fn text(row: &JsonRow, column: &str) -> Result<String, DbError> {
    let v = row.get(column);
    v.and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| wrong(column, "text", v))
}

/// A nullable text column.
///
/// # Errors
/// The column is absent or neither NULL nor text.
pub fn opt_text(row: &JsonRow, column: &str) -> Result<Option<String>, DbError> {
    match row.get(column) {
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        other => Err(wrong(column, "text or NULL", other)),
    }
}

/// A text column holding a domain value by its serde name (a role, a channel).
///
/// # Errors
/// The column is absent, not text, or not a name of `T`.
pub fn named<T: serde::de::DeserializeOwned>(row: &JsonRow, column: &str) -> Result<T, DbError> {
    opt_named(row, column)?
        .ok_or_else(|| wrong(column, std::any::type_name::<T>(), row.get(column)))
}

/// A nullable text column holding a domain value by its serde name (a channel, a tier).
///
/// # Errors
/// The column is absent, neither NULL nor text, or not a name of `T`.
pub fn opt_named<T: serde::de::DeserializeOwned>(
    row: &JsonRow,
    column: &str,
) -> Result<Option<T>, DbError> {
    opt_text(row, column)?
        .map(|s| {
            serde_json::from_value(Value::String(s.clone()))
                .map_err(|_| wrong(column, std::any::type_name::<T>(), Some(&Value::String(s))))
        })
        .transpose()
}

/// A nullable integer column.
///
/// # Errors
/// The column is absent or neither NULL nor an integer.
pub fn opt_int(row: &JsonRow, column: &str) -> Result<Option<i64>, DbError> {
    match row.get(column) {
        Some(Value::Null) => Ok(None),
        _ => int(row, column).map(Some),
    }
}

/// A read model's row as a type: what its query functions return. Decoding names the
/// column that does not read as its field says (never a quiet default).
pub trait FromRow: Sized {
    /// The row's columns as `Self`.
    ///
    /// # Errors
    /// A column that is absent or of another type.
    fn from_row(row: &JsonRow) -> Result<Self, DbError>;
}

/// Rows not typed yet pass through as they are.
impl FromRow for JsonRow {
    fn from_row(row: &JsonRow) -> Result<Self, DbError> {
        Ok(row.clone())
    }
}

/// How many rows of `from_where` (`rm_x WHERE …`, parameters `$1..`) there are.
///
/// # Errors
/// When the read model cannot be read.
pub async fn count(
    db: &crate::sql::ReadDb,
    from_where: &str,
    params: &[crate::sql::Param],
) -> Result<i64, DbError> {
    let rows = db
        .query(
            &format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {from_where}"),
            params,
        )
        .await?;
    rows.first().map_or(Ok(0), |r| int(r, "n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: Value) -> JsonRow {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn it_should_read_a_null_integer_as_none_and_text_as_an_error() {
        let r = row(serde_json::json!({"a": null, "b": 3, "c": "x"}));
        assert_eq!(opt_int(&r, "a").ok(), Some(None));
        assert_eq!(opt_int(&r, "b").ok(), Some(Some(3)));
        let e = opt_int(&r, "c").expect_err("text is not an integer");
        assert!(e.to_string().contains("column c"), "{e}");
    }

    #[test]
    fn it_should_read_integers_as_numbers_or_numeric_text() {
        let r = row(serde_json::json!({"a": 7, "b": "12"}));
        assert_eq!((int(&r, "a").ok(), int(&r, "b").ok()), (Some(7), Some(12)));
    }

    #[test]
    fn it_should_name_a_column_that_is_missing_or_of_another_type() {
        let r = row(serde_json::json!({"a": "x", "n": null}));
        for (column, e) in [
            ("a", int(&r, "a").err()),
            ("n", int(&r, "n").err()),
            ("gone", text(&r, "gone").err()),
            ("a", opt_text(&row(serde_json::json!({"a": 1})), "a").err()),
        ] {
            let e = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(column), "{e}");
        }
        assert_eq!(opt_text(&r, "n").ok(), Some(None));
    }

    #[test]
    fn it_should_read_a_domain_value_by_its_serde_name_or_name_the_column() {
        use domain::consent::Channel;
        let r = row(serde_json::json!({"c": "sms", "d": "pigeon", "n": null}));
        assert_eq!(opt_named::<Channel>(&r, "c").ok(), Some(Some(Channel::Sms)));
        assert_eq!(opt_named::<Channel>(&r, "n").ok(), Some(None));
        let e = opt_named::<Channel>(&r, "d")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("column d") && e.contains("Channel"), "{e}");
        assert!(
            !e.contains("pigeon"),
            "the value stays out of the error: {e}"
        );
    }
}

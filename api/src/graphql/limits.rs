//! What a request may ask for, checked once for every operation before any
//! resolver runs (an async-graphql extension on `parse_query`):
//!
//! - **Text at the boundary**: every string in the arguments and variables is
//!   free of NUL and control characters (tab, newline and carriage return are
//!   allowed in multi-line fields only) and within its field's maximum length.
//!   Anything else is `VALIDATION` naming the field, so no value the database
//!   or a read model cannot hold ever reaches the event log.
//! - **Depth**: at most [`MAX_DEPTH`] nested fields, not counting the
//!   introspection schema (`__schema`, `__type`), which has its own, larger
//!   bound so the standard introspection query of GraphiQL and code generators
//!   gets through while a hostile one does not.
//! - **Cost**: a connection's selection costs as many times as its page holds
//!   (`first`/`last`, 50 without either), aliases count in full; a request
//!   over [`MAX_COST`] is refused before any work with its cost named.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql::{ErrorExtensionValues, Name, ServerError, ServerResult, Value, Variables};

/// Deepest nesting of ordinary fields.
pub const MAX_DEPTH: usize = 12;
/// Deepest nesting inside `__schema`/`__type` (graphql-js's standard query needs 14).
pub const MAX_INTROSPECTION_DEPTH: usize = 20;
/// Largest cost of one request (see the module comment).
pub const MAX_COST: u64 = 10_000;
/// Items a connection holds when neither `first` nor `last` is given (as `paging`).
const DEFAULT_PAGE: u64 = 50;
/// The largest page (as `paging`).
const MAX_PAGE: u64 = 100;

/// Longest idempotency key, in characters, on every engine.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest name-like value (names, titles, labels, tags, address lines).
pub const MAX_NAME: usize = 200;
/// Longest multi-line text (messages, notes, templates, reasons); resolvers may be stricter.
pub const MAX_TEXT: usize = 10_000;
/// Longest password.
pub const MAX_PASSWORD: usize = 1_024;
/// Longest of any other string (ids, cursors, emails, codes, cron expressions, searches).
pub const MAX_OTHER: usize = 1_000;

/// The kind of a text field, by its (camelCase) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    Key,
    Name,
    Lines,
    Password,
    Other,
}

impl TextKind {
    fn of(field: &str) -> Self {
        match field {
            "idempotencyKey" => Self::Key,
            "name" | "firstName" | "lastName" | "title" | "label" | "tag" | "tags" | "line1"
            | "line2" | "city" | "region" | "plate" | "reward" | "make" | "model" => Self::Name,
            "text" | "template" | "comment" | "reason" | "note" | "notes" | "body" | "message"
            | "description" | "subject" => Self::Lines,
            "password" | "currentPassword" | "newPassword" => Self::Password,
            _ => Self::Other,
        }
    }

    fn max_chars(self) -> usize {
        match self {
            Self::Key => MAX_IDEMPOTENCY_KEY,
            Self::Name => MAX_NAME,
            Self::Lines => MAX_TEXT,
            Self::Password => MAX_PASSWORD,
            Self::Other => MAX_OTHER,
        }
    }

    fn allows_lines(self) -> bool {
        self == Self::Lines
    }
}

/// Why a string is refused, if it is: the message for `VALIDATION` on `field`.
pub fn check_text(field: &str, value: &str) -> Result<(), String> {
    let kind = TextKind::of(field);
    if value.contains('\0') {
        return Err(format!("{field} must not contain a NUL character"));
    }
    let bad_control = value
        .chars()
        .any(|c| c.is_control() && !(kind.allows_lines() && matches!(c, '\t' | '\n' | '\r')));
    if bad_control {
        return Err(if kind.allows_lines() {
            format!("{field} must not contain control characters other than tab and line breaks")
        } else {
            format!("{field} must be one line without control characters")
        });
    }
    // Counting stops at the limit: a 1 MB value costs no more than a short one.
    let max = kind.max_chars();
    if value.chars().nth(max).is_some() {
        return Err(format!("{field} must be at most {max} characters"));
    }
    Ok(())
}

/// The extension that applies these limits (installed by `graphql::schema`).
#[derive(Debug, Default)]
pub struct RequestLimits;

impl ExtensionFactory for RequestLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestLimitsExtension)
    }
}

struct RequestLimitsExtension;

#[async_trait::async_trait]
impl Extension for RequestLimitsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let mut walk = Walk {
            doc: &doc,
            variables,
            in_progress: HashSet::new(),
        };
        for (_, op) in doc.operations.iter() {
            let shape = walk.selection_set(&op.node.selection_set.node, false)?;
            if shape.depth > MAX_DEPTH {
                return Err(limit_error(
                    "QUERY_TOO_DEEP",
                    format!(
                        "the query is nested {} fields deep; at most {MAX_DEPTH} are allowed",
                        shape.depth
                    ),
                    shape.depth as u64,
                    MAX_DEPTH as u64,
                ));
            }
            if shape.introspection_depth > MAX_INTROSPECTION_DEPTH {
                return Err(limit_error(
                    "QUERY_TOO_DEEP",
                    format!(
                        "the introspection query is nested {} fields deep; at most \
                         {MAX_INTROSPECTION_DEPTH} are allowed",
                        shape.introspection_depth
                    ),
                    shape.introspection_depth as u64,
                    MAX_INTROSPECTION_DEPTH as u64,
                ));
            }
            if shape.cost > MAX_COST {
                return Err(limit_error(
                    "QUERY_TOO_COSTLY",
                    format!(
                        "the query would cost {} (a list multiplies what it selects by its page \
                         size, 50 without first/last); at most {MAX_COST} is allowed: ask for \
                         smaller pages or fewer fields",
                        shape.cost
                    ),
                    shape.cost,
                    MAX_COST,
                ));
            }
        }
        Ok(doc)
    }
}

fn extensions(pairs: Vec<(&str, Value)>) -> Option<ErrorExtensionValues> {
    let mut ext = ErrorExtensionValues::default();
    for (k, v) in pairs {
        ext.set(k, v);
    }
    Some(ext)
}

fn validation(field: &str, message: String) -> ServerError {
    let mut e = ServerError::new(message, None);
    e.extensions = extensions(vec![
        ("code", Value::from("VALIDATION")),
        ("field", Value::from(field)),
    ]);
    e
}

fn limit_error(code: &str, message: String, value: u64, limit: u64) -> ServerError {
    let mut e = ServerError::new(message, None);
    e.extensions = extensions(vec![
        ("code", Value::from(code)),
        ("value", Value::from(value)),
        ("limit", Value::from(limit)),
    ]);
    e
}

/// Checks every string in a value; `field` is the name it sits under (the
/// argument, the input field, or the list's field for its items).
fn check_value(field: &str, value: &Value) -> ServerResult<()> {
    match value {
        Value::String(s) => check_text(field, s).map_err(|m| validation(field, m)),
        Value::List(items) => items.iter().try_for_each(|v| check_value(field, v)),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(k, v)| check_value(k.as_str(), v)),
        _ => Ok(()),
    }
}

/// Depth and cost of a selection.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    depth: usize,
    introspection_depth: usize,
    cost: u64,
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    /// Fragments being expanded (a cycle is refused later by validation; here it stops).
    in_progress: HashSet<Name>,
}

impl Walk<'_> {
    fn selection_set(&mut self, set: &SelectionSet, introspection: bool) -> ServerResult<Shape> {
        let mut total = Shape::default();
        for item in &set.items {
            let shape = match &item.node {
                Selection::Field(f) => self.field(&f.node, introspection)?,
                Selection::InlineFragment(frag) => {
                    self.selection_set(&frag.node.selection_set.node, introspection)?
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    match self.doc.fragments.get(name) {
                        Some(def) if !self.in_progress.contains(name) => {
                            self.in_progress.insert(name.clone());
                            let s = self.selection_set(&def.node.selection_set.node, introspection);
                            self.in_progress.remove(name);
                            s?
                        }
                        _ => Shape::default(),
                    }
                }
            };
            total.depth = total.depth.max(shape.depth);
            total.introspection_depth = total.introspection_depth.max(shape.introspection_depth);
            total.cost = total.cost.saturating_add(shape.cost);
        }
        Ok(total)
    }

    fn field(&mut self, f: &Field, introspection: bool) -> ServerResult<Shape> {
        let inside = introspection || f.name.node.starts_with("__");
        let mut page: Option<u64> = None;
        for (name, value) in &f.arguments {
            // Variables are resolved in place, so a value is judged by the
            // field it lands in, whatever the variable is called.
            let value = value
                .node
                .clone()
                .into_const_with(|v| {
                    Ok::<_, std::convert::Infallible>(
                        self.variables.get(&v).cloned().unwrap_or(Value::Null),
                    )
                })
                .unwrap_or(Value::Null);
            let name = name.node.as_str();
            check_value(name, &value)?;
            if matches!(name, "first" | "last") {
                if let Value::Number(n) = &value {
                    page = page.max(n.as_u64());
                }
            }
        }
        let children = self.selection_set(&f.selection_set.node, inside)?;
        if inside {
            return Ok(Shape {
                depth: 0,
                introspection_depth: 1 + children.introspection_depth,
                cost: 1 + children.cost,
            });
        }
        // A connection (it selects `edges` or `nodes`) is paid for per item of its page.
        let is_connection = f.selection_set.node.items.iter().any(|c| match &c.node {
            Selection::Field(c) => matches!(c.node.name.node.as_str(), "edges" | "nodes"),
            _ => false,
        });
        let items = if is_connection {
            page.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE)
        } else {
            1
        };
        Ok(Shape {
            depth: 1 + children.depth,
            introspection_depth: children.introspection_depth,
            cost: 1u64.saturating_add(items.saturating_mul(children.cost)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_text;

    #[test]
    fn text_with_a_nul_or_a_control_character_is_refused_by_name() {
        assert!(check_text("name", "a\0b").is_err());
        assert!(check_text("name", "a\u{1b}[31m").is_err());
        assert!(check_text("name", "tab\there").is_err());
        assert!(check_text("text", "two\nlines\twith a tab\r\n").is_ok());
        assert!(check_text("text", "bell\u{7}").is_err());
        assert!(check_text("text", "\u{85}next line (C1)").is_err());
    }

    #[test]
    fn emoji_and_right_to_left_text_are_ordinary_text() {
        assert!(check_text("name", "👩‍👩‍👧 שלום مرحبا").is_ok());
    }

    #[test]
    fn each_kind_of_field_has_its_maximum_length() {
        assert!(check_text("idempotencyKey", &"k".repeat(255)).is_ok());
        assert!(check_text("idempotencyKey", &"k".repeat(256)).is_err());
        assert!(check_text("name", &"é".repeat(200)).is_ok());
        assert!(check_text("name", &"é".repeat(201)).is_err());
        assert!(check_text("text", &"x".repeat(10_000)).is_ok());
        assert!(check_text("text", &"x".repeat(10_001)).is_err());
        assert!(check_text("email", &"x".repeat(1_001)).is_err());
    }
}

//! What a request may ask for, checked once for every operation before any
//! resolver runs (an async-graphql extension on `parse_query`):
//!
//! - **Text at the boundary**: every string in the arguments (variables and
//!   their defaults resolved in place) is
//!   free of NUL and control characters (tab, newline and carriage return are
//!   allowed in multi-line fields only) and within its field's maximum length.
//!   Anything else is `VALIDATION` naming the field, so no value the database
//!   or a read model cannot hold ever reaches the event log.
//! - **Depth**: at most [`MAX_DEPTH`] nested fields, not counting the
//!   introspection schema (`__schema`, `__type`), which has its own, larger
//!   bound so the standard introspection query of GraphiQL and code generators
//!   gets through while a hostile one does not.
//! - **Cost**: a connection's selection (one selecting `edges` or `nodes`,
//!   through fragments too) costs as many times as its page holds
//!   (`first`/`last`, 50 without either, at least 1), aliases count in full; a
//!   request over [`MAX_COST`], or expanding to more than [`MAX_NODES`]
//!   selections, is refused before any work with its cost named. Inside the
//!   introspection schema a type reached through `type`/`ofType` may not be
//!   asked for its `fields` (and the like) again.
//!
//! It runs on `prepare_request`, before async-graphql's own passes over the
//! document, which expand fragments without memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql::{
    ErrorExtensionValues, Name, Request, ServerError, ServerResult, Value, Variables,
};

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

/// Most items in one list argument or input field (services, metrics, recipients, event
/// types): a form never needs more, and every item is stored in an event.
pub const MAX_LIST: usize = 100;

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
    /// Runs before async-graphql's own passes over the document (its recursion
    /// and directive checks expand every fragment spread without memory, so a
    /// fragment spread ten times that spreads another ten times, twenty deep,
    /// would pin a core there): the query is parsed and measured here, once
    /// per fragment, and handed on parsed only when it is within the limits.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let doc = async_graphql::parser::parse_query(&request.query)?;
        check(&doc, &request.variables)?;
        request.set_parsed_query(doc);
        next.run(ctx, request).await
    }
}

/// Applies the limits to a parsed request.
fn check(doc: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
    for (_, op) in doc.operations.iter() {
        let defaults: HashMap<Name, Value> = op
            .node
            .variable_definitions
            .iter()
            .filter_map(|d| {
                let d = &d.node;
                d.default_value
                    .as_ref()
                    .map(|v| (d.name.node.clone(), v.node.clone()))
            })
            .collect();
        // A default is text like any other: checked under its variable's name
        // here, and again under the field it lands in when it is used.
        for (name, value) in &defaults {
            check_value(name.as_str(), value)?;
        }
        let mut walk = Walk {
            doc,
            variables,
            defaults: &defaults,
            in_progress: HashSet::new(),
            done: HashMap::new(),
        };
        let shape = walk.selection_set(&op.node.selection_set.node, Place::Data)?;
        if shape.nodes > MAX_NODES {
            return Err(limit_error(
                "QUERY_TOO_COSTLY",
                format!(
                    "the query expands to {} selections (fragments spread in full); at most \
                     {MAX_NODES} are allowed",
                    shape.nodes
                ),
                shape.nodes,
                MAX_NODES,
            ));
        }
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
    Ok(())
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
        Value::List(items) if items.len() > MAX_LIST => Err(validation(
            field,
            format!("at most {MAX_LIST} items ({} given)", items.len()),
        )),
        Value::List(items) => items.iter().try_for_each(|v| check_value(field, v)),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(k, v)| check_value(k.as_str(), v)),
        _ => Ok(()),
    }
}

/// Where in the answer a selection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    /// The CRM's own data.
    Data,
    /// Inside `__schema`/`__type`.
    Schema,
    /// Inside a type reference of the schema (`type`, `ofType`, …), where the
    /// standard query only names types: asking a referenced type for its
    /// `fields` again is how a hostile introspection query multiplies itself.
    TypeRef,
}

/// Depth and cost of a selection.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    depth: usize,
    introspection_depth: usize,
    cost: u64,
    /// Selections visited with every fragment spread in full (what async-graphql's
    /// own passes will visit).
    nodes: u64,
    /// Whether it selects `edges` or `nodes` at its own level (fragments included):
    /// then the field it belongs to is a connection, paid for per item.
    pages: bool,
}

/// Most selections one request may expand to, fragments spread in full (the
/// standard introspection query expands to about 300).
pub const MAX_NODES: u64 = 2_000;

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    /// The operation's variable defaults (used when the request leaves one out).
    defaults: &'a HashMap<Name, Value>,
    /// Fragments being expanded (a cycle is refused later by validation; here it stops).
    in_progress: HashSet<Name>,
    /// Fragments already measured, by name and place.
    done: HashMap<(Name, Place), Shape>,
}

impl Walk<'_> {
    fn selection_set(&mut self, set: &SelectionSet, place: Place) -> ServerResult<Shape> {
        let mut total = Shape::default();
        for item in &set.items {
            let shape = match &item.node {
                Selection::Field(f) => {
                    let mut shape = self.field(&f.node, place)?;
                    shape.pages = matches!(f.node.name.node.as_str(), "edges" | "nodes");
                    shape
                }
                Selection::InlineFragment(frag) => {
                    self.selection_set(&frag.node.selection_set.node, place)?
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    // Each fragment is measured once per place: a fragment spread ten
                    // times, spreading another ten times, … is not walked 10^n times.
                    if let Some(known) = self.done.get(&(name.clone(), place)) {
                        *known
                    } else {
                        match self.doc.fragments.get(name) {
                            Some(def) if !self.in_progress.contains(name) => {
                                self.in_progress.insert(name.clone());
                                let s = self.selection_set(&def.node.selection_set.node, place);
                                self.in_progress.remove(name);
                                let s = s?;
                                self.done.insert((name.clone(), place), s);
                                s
                            }
                            _ => Shape::default(),
                        }
                    }
                }
            };
            total.depth = total.depth.max(shape.depth);
            total.introspection_depth = total.introspection_depth.max(shape.introspection_depth);
            total.cost = total.cost.saturating_add(shape.cost);
            total.nodes = total.nodes.saturating_add(shape.nodes).saturating_add(1);
            total.pages |= shape.pages;
        }
        Ok(total)
    }

    fn field(&mut self, f: &Field, place: Place) -> ServerResult<Shape> {
        let name = f.name.node.as_str();
        let place = match place {
            Place::Data if name.starts_with("__") && name != "__typename" => Place::Schema,
            Place::Schema | Place::TypeRef if matches!(name, "type" | "ofType") => Place::TypeRef,
            other => other,
        };
        if place == Place::TypeRef
            && matches!(
                name,
                "fields" | "inputFields" | "interfaces" | "possibleTypes" | "enumValues"
            )
        {
            return Err(limit_error(
                "QUERY_TOO_COSTLY",
                format!(
                    "`{name}` of a type reached through `type`/`ofType` multiplies the answer; \
                     ask `__type(name:)` for it instead"
                ),
                MAX_COST + 1,
                MAX_COST,
            ));
        }
        let mut page: Option<u64> = None;
        for (arg, value) in &f.arguments {
            // Variables are resolved in place (the request's value, else the
            // operation's default), so a value is judged by the field it lands in.
            let value = value
                .node
                .clone()
                .into_const_with(|v| {
                    Ok::<_, std::convert::Infallible>(
                        self.variables
                            .get(&v)
                            .or_else(|| self.defaults.get(&v))
                            .cloned()
                            .unwrap_or(Value::Null),
                    )
                })
                .unwrap_or(Value::Null);
            let arg = arg.node.as_str();
            check_value(arg, &value)?;
            if matches!(arg, "first" | "last") {
                if let Value::Number(n) = &value {
                    page = page.max(n.as_u64());
                }
            }
        }
        let children = self.selection_set(&f.selection_set.node, place)?;
        if place != Place::Data {
            return Ok(Shape {
                depth: 0,
                introspection_depth: 1 + children.introspection_depth,
                cost: 1 + children.cost,
                nodes: children.nodes,
                pages: false,
            });
        }
        // A connection is paid for per item of its page.
        let items = if children.pages {
            page.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
        } else {
            1
        };
        Ok(Shape {
            depth: 1 + children.depth,
            introspection_depth: children.introspection_depth,
            cost: 1u64.saturating_add(items.saturating_mul(children.cost)),
            nodes: children.nodes,
            pages: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{check, check_text, MAX_LIST};
    use async_graphql::Variables;

    #[test]
    fn text_with_a_nul_or_a_control_character_is_refused_by_name() {
        assert!(check_text("name", "a\0b").is_err());
        assert!(check_text("name", "a\u{1b}[31m").is_err());
        assert!(check_text("name", "tab\there").is_err());
        assert!(check_text("text", "two\nlines\twith a tab\r\n").is_ok());
        assert!(check_text("text", "bell\u{7}").is_err());
        assert!(check_text("text", "\u{85}next line (C1)").is_err());
    }

    #[tokio::test]
    async fn a_fragment_fan_out_is_measured_once_per_fragment_not_expanded() {
        use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
        struct Query;
        #[Object]
        impl Query {
            async fn version(&self) -> &str {
                "1"
            }
        }
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(super::RequestLimits)
            .finish();
        // 20 fragments, each spreading the next 10 times: 10^20 fields if expanded.
        let mut doc = String::from("{ ...F0 }\n");
        for i in 0..20 {
            let spreads = format!("...F{} ", i + 1).repeat(10);
            doc.push_str(&format!("fragment F{i} on Query {{ version {spreads} }}\n"));
        }
        doc.push_str("fragment F20 on Query { version }\n");
        let started = std::time::Instant::now();
        let r = schema.execute(doc.as_str()).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let code = r
            .errors
            .first()
            .and_then(|e| e.extensions.as_ref())
            .and_then(|x| x.get("code"))
            .cloned();
        assert_eq!(
            code,
            Some(async_graphql::Value::from("QUERY_TOO_COSTLY")),
            "{:?}",
            r.errors
        );
    }

    fn code_of(query: &str) -> Option<String> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        super::check(&doc, &async_graphql::Variables::default())
            .err()
            .and_then(|e| e.extensions)
            .and_then(|x| x.get("code").cloned())
            .map(|c| c.to_string().trim_matches('"').to_string())
    }

    #[test]
    fn a_connection_selected_through_a_fragment_is_still_paid_per_item() {
        let aliases: String = (0..99)
            .map(|i| format!("c{i}: myConversations(first: 100) {{ ...C }} "))
            .collect();
        let q = format!(
            "{{ {aliases} }} fragment C on ConversationConnection {{ nodes {{ messages(first: 100) {{ ...M }} }} }} \
             fragment M on ChatMessageConnection {{ nodes {{ text }} }}"
        );
        assert_eq!(code_of(&q).as_deref(), Some("QUERY_TOO_COSTLY"));
        // `first: 0` does not zero the cost either.
        let zero: String = (0..99)
            .map(|i| format!("c{i}: myConversations(first: 0) {{ nodes {{ messages(first: 100) {{ nodes {{ text }} }} }} }} "))
            .collect();
        assert_eq!(
            code_of(&format!("{{ {zero} }}")).as_deref(),
            Some("QUERY_TOO_COSTLY")
        );
    }

    #[test]
    fn a_type_reference_may_not_be_asked_for_its_fields_again() {
        let q =
            "{ __schema { types { fields { type { ofType { fields { type { name } } } } } } } }";
        assert_eq!(code_of(q).as_deref(), Some("QUERY_TOO_COSTLY"));
        // The standard query's shape, and `__type(name:)`, are fine.
        assert_eq!(
            code_of(
                "{ __schema { types { fields { type { kind name ofType { kind name } } } } } }"
            ),
            None
        );
        assert_eq!(
            code_of("{ __type(name: \"Job\") { fields { name type { name } } } }"),
            None
        );
    }

    #[test]
    fn a_variables_default_is_checked_like_a_value() {
        let q = "mutation($n: String = \"Eve\\u0000\") { registerPortalAccount(input: {name: $n}) { token } }";
        assert_eq!(code_of(q).as_deref(), Some("VALIDATION"));
    }

    #[test]
    fn a_list_of_more_than_a_hundred_items_is_refused_by_name() {
        let services: Vec<String> = (0..=MAX_LIST).map(|i| format!("\"s{i}\"")).collect();
        let q = format!(
            "mutation {{ bookJob(input: {{customerId: \"c\", services: [{}]}}) {{ position }} }}",
            services.join(", ")
        );
        let doc = async_graphql::parser::parse_query(&q).expect("parses");
        let err = check(&doc, &Variables::default()).expect_err("too many");
        assert_eq!(err.message, "at most 100 items (101 given)");
        let fine = q.replace(", \"s100\"", "");
        let doc = async_graphql::parser::parse_query(&fine).expect("parses");
        assert!(check(&doc, &Variables::default()).is_ok());
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

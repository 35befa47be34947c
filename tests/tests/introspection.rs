//! The standard introspection query gets through the query limits, and what it
//! answers is the schema in `docs/schema.graphql`; hostile nesting is still refused.
//!
//! The query is graphql-js's `getIntrospectionQuery()` with every option on
//! (`tests/fixtures/graphql/introspection.graphql`), as GraphiQL, Apollo,
//! GraphQL Code Generator, Insomnia and Postman send it. Its answer is printed
//! as SDL, parsed with async-graphql's parser, checked to build (every type it
//! refers to is defined), and compared type by type, field by field, with the
//! committed SDL (descriptions, arguments, defaults and deprecations included).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_graphql::parser::types::{
    InputValueDefinition, ServiceDocument, TypeKind, TypeSystemDefinition,
};
use serde_json::{json, Value};

const INTROSPECTION: &str = include_str!("../fixtures/graphql/introspection.graphql");
const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];
/// The spec's own directives: printers differ in whether and how they list them.
const BUILT_IN_DIRECTIVES: [&str; 5] = ["include", "skip", "deprecated", "specifiedBy", "oneOf"];

async fn start() -> tests::ServerProcess {
    tests::ServerProcess::start(
        env!("CARGO_BIN_EXE_dirtfree-api"),
        &[("DEMO_SEED", "off")],
        Duration::from_secs(120),
    )
    .await
}

async fn post(s: &tests::ServerProcess, query: &str) -> Value {
    reqwest::Client::new()
        .post(&s.url)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

/// A type reference of the introspection answer, as SDL (`[String!]!`).
fn type_ref(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_ref(&t["ofType"])),
        Some("LIST") => format!("[{}]", type_ref(&t["ofType"])),
        _ => t["name"].as_str().expect("named type").to_string(),
    }
}

fn description(out: &mut String, indent: &str, d: &Value) {
    if let Some(d) = d.as_str() {
        out.push_str(&format!(
            "{indent}\"\"\"\n{indent}{}\n{indent}\"\"\"\n",
            d.replace("\"\"\"", "\\\"\"\"")
        ));
    }
}

fn deprecation(v: &Value) -> String {
    if v["isDeprecated"] == true {
        format!(
            " @deprecated(reason: {})",
            serde_json::to_string(
                v["deprecationReason"]
                    .as_str()
                    .unwrap_or("No longer supported")
            )
            .expect("string")
        )
    } else {
        String::new()
    }
}

fn input_value(v: &Value) -> String {
    let default = v["defaultValue"]
        .as_str()
        .map(|d| format!(" = {d}"))
        .unwrap_or_default();
    format!(
        "{}: {}{default}{}",
        v["name"].as_str().expect("name"),
        type_ref(&v["type"]),
        deprecation(v)
    )
}

fn args(list: &Value) -> String {
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("(\n");
    for a in &list {
        description(&mut out, "\t\t", &a["description"]);
        out.push_str(&format!("\t\t{}\n", input_value(a)));
    }
    out.push_str("\t)");
    out
}

/// The introspection answer printed as SDL.
fn sdl_of(schema: &Value) -> String {
    let mut out = String::new();
    for t in schema["types"].as_array().expect("types") {
        let name = t["name"].as_str().expect("name");
        if name.starts_with("__") || BUILT_IN_SCALARS.contains(&name) {
            continue;
        }
        description(&mut out, "", &t["description"]);
        match t["kind"].as_str().expect("kind") {
            "SCALAR" => out.push_str(&format!("scalar {name}\n")),
            "OBJECT" | "INTERFACE" => {
                let keyword = if t["kind"] == "OBJECT" {
                    "type"
                } else {
                    "interface"
                };
                let implements: Vec<String> = t["interfaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(type_ref)
                    .collect();
                let implements = if implements.is_empty() {
                    String::new()
                } else {
                    format!(" implements {}", implements.join(" & "))
                };
                out.push_str(&format!("{keyword} {name}{implements} {{\n"));
                for f in t["fields"].as_array().expect("fields") {
                    description(&mut out, "\t", &f["description"]);
                    out.push_str(&format!(
                        "\t{}{}: {}{}\n",
                        f["name"].as_str().expect("name"),
                        args(&f["args"]),
                        type_ref(&f["type"]),
                        deprecation(f)
                    ));
                }
                out.push_str("}\n");
            }
            "UNION" => {
                let members: Vec<String> = t["possibleTypes"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(type_ref)
                    .collect();
                out.push_str(&format!("union {name} = {}\n", members.join(" | ")));
            }
            "ENUM" => {
                out.push_str(&format!("enum {name} {{\n"));
                for v in t["enumValues"].as_array().expect("values") {
                    description(&mut out, "\t", &v["description"]);
                    out.push_str(&format!(
                        "\t{}{}\n",
                        v["name"].as_str().expect("name"),
                        deprecation(v)
                    ));
                }
                out.push_str("}\n");
            }
            "INPUT_OBJECT" => {
                out.push_str(&format!("input {name} {{\n"));
                for f in t["inputFields"].as_array().expect("input fields") {
                    description(&mut out, "\t", &f["description"]);
                    out.push_str(&format!("\t{}\n", input_value(f)));
                }
                out.push_str("}\n");
            }
            other => panic!("unknown kind {other}"),
        }
    }
    for d in schema["directives"].as_array().expect("directives") {
        description(&mut out, "", &d["description"]);
        let locations: Vec<&str> = d["locations"]
            .as_array()
            .expect("locations")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "directive @{}{}{} on {}\n",
            d["name"].as_str().expect("name"),
            args(&d["args"]),
            if d["isRepeatable"] == true {
                " repeatable"
            } else {
                ""
            },
            locations.join(" | ")
        ));
    }
    let root = |k: &str| schema[k]["name"].as_str().map(str::to_string);
    out.push_str("schema {\n");
    for (op, k) in [
        ("query", "queryType"),
        ("mutation", "mutationType"),
        ("subscription", "subscriptionType"),
    ] {
        if let Some(n) = root(k) {
            out.push_str(&format!("\t{op}: {n}\n"));
        }
    }
    out.push_str("}\n");
    out
}

fn canon_input(v: &InputValueDefinition) -> String {
    format!(
        "{}: {} = {:?} @{:?} \"{}\"",
        v.name.node,
        v.ty.node,
        v.default_value.as_ref().map(|d| d.node.to_string()),
        v.directives
            .iter()
            .map(|d| d.node.name.node.to_string())
            .collect::<Vec<_>>(),
        v.description
            .as_ref()
            .map(|d| d.node.trim().to_string())
            .unwrap_or_default()
    )
}

/// Each definition of a document as comparable lines, by name; the type names it refers to.
fn canon(doc: &ServiceDocument) -> (BTreeMap<String, Vec<String>>, BTreeSet<String>) {
    let mut defs = BTreeMap::new();
    let mut refs = BTreeSet::new();
    let base = |ty: &async_graphql::parser::types::Type| {
        ty.to_string()
            .trim_matches(|c| c == '[' || c == ']' || c == '!')
            .to_string()
    };
    for def in &doc.definitions {
        match def {
            TypeSystemDefinition::Type(t) => {
                let t = &t.node;
                let mut lines = vec![format!(
                    "\"{}\"",
                    t.description
                        .as_ref()
                        .map(|d| d.node.trim().to_string())
                        .unwrap_or_default()
                )];
                match &t.kind {
                    TypeKind::Scalar => lines.push("scalar".into()),
                    TypeKind::Object(o) => {
                        lines.push(format!("implements {:?}", o.implements));
                        for f in &o.fields {
                            let f = &f.node;
                            refs.insert(base(&f.ty.node));
                            for a in &f.arguments {
                                refs.insert(base(&a.node.ty.node));
                                lines.push(format!("{}({})", f.name.node, canon_input(&a.node)));
                            }
                            lines.push(format!(
                                "{}: {} @{:?} \"{}\"",
                                f.name.node,
                                f.ty.node,
                                f.directives
                                    .iter()
                                    .map(|d| d.node.name.node.to_string())
                                    .collect::<Vec<_>>(),
                                f.description
                                    .as_ref()
                                    .map(|d| d.node.trim().to_string())
                                    .unwrap_or_default()
                            ));
                        }
                    }
                    TypeKind::Interface(i) => {
                        for f in &i.fields {
                            refs.insert(base(&f.node.ty.node));
                            lines.push(format!("{}: {}", f.node.name.node, f.node.ty.node));
                        }
                    }
                    TypeKind::Union(u) => {
                        let mut members: Vec<String> =
                            u.members.iter().map(|m| m.node.to_string()).collect();
                        members.sort();
                        refs.extend(members.iter().cloned());
                        lines.push(format!("union {members:?}"));
                    }
                    TypeKind::Enum(e) => {
                        for v in &e.values {
                            lines.push(format!(
                                "{} \"{}\"",
                                v.node.value.node,
                                v.node
                                    .description
                                    .as_ref()
                                    .map(|d| d.node.trim().to_string())
                                    .unwrap_or_default()
                            ));
                        }
                    }
                    TypeKind::InputObject(i) => {
                        for f in &i.fields {
                            refs.insert(base(&f.node.ty.node));
                            lines.push(canon_input(&f.node));
                        }
                    }
                }
                lines.sort();
                defs.insert(t.name.node.to_string(), lines);
            }
            TypeSystemDefinition::Directive(d) => {
                let d = &d.node;
                if BUILT_IN_DIRECTIVES.contains(&d.name.node.as_str()) {
                    continue;
                }
                let mut lines: Vec<String> =
                    d.arguments.iter().map(|a| canon_input(&a.node)).collect();
                lines.push(format!(
                    "{:?}",
                    d.locations
                        .iter()
                        .map(|l| format!("{:?}", l.node))
                        .collect::<Vec<_>>()
                ));
                defs.insert(format!("@{}", d.name.node), lines);
            }
            TypeSystemDefinition::Schema(s) => {
                let s = &s.node;
                defs.insert(
                    "schema".into(),
                    vec![
                        format!("{:?}", s.query.as_ref().map(|n| n.node.to_string())),
                        format!("{:?}", s.mutation.as_ref().map(|n| n.node.to_string())),
                        format!("{:?}", s.subscription.as_ref().map(|n| n.node.to_string())),
                    ],
                );
            }
        }
    }
    (defs, refs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_introspection_query_answers_the_documented_schema() {
    let s = start().await;
    let r = post(&s, INTROSPECTION).await;
    assert!(r.get("errors").is_none(), "introspection refused: {r}");
    let printed = sdl_of(&r["data"]["__schema"]);
    let served = async_graphql::parser::parse_schema(&printed)
        .unwrap_or_else(|e| panic!("the answer does not parse as SDL: {e}\n{printed}"));
    let (served, refs) = canon(&served);
    // It builds: every type a field, argument or union names is defined.
    let undefined: Vec<&String> = refs
        .iter()
        .filter(|r| !served.contains_key(*r) && !BUILT_IN_SCALARS.contains(&r.as_str()))
        .collect();
    assert!(
        undefined.is_empty(),
        "types referred to but not defined: {undefined:?}"
    );

    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/schema.graphql"
    ))
    .expect("docs/schema.graphql");
    let (documented, _) =
        canon(&async_graphql::parser::parse_schema(&committed).expect("parse docs"));
    let names: BTreeSet<&String> = served.keys().chain(documented.keys()).collect();
    let mut differences = Vec::new();
    for n in names {
        if served.get(n) != documented.get(n) {
            differences.push(format!(
                "{n}:\n  served:     {:?}\n  documented: {:?}",
                served.get(n),
                documented.get(n)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "the served schema differs from docs/schema.graphql in {} definitions:\n{}",
        differences.len(),
        differences.join("\n")
    );
    tests::health::assert_no_failures(&s.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_nested_deeper_than_the_limits_are_still_refused() {
    let s = start().await;
    // 13 ordinary levels (the limit is 12): refused before the fields are even looked up.
    let mut q = String::from("id");
    for _ in 0..12 {
        q = format!("customer {{ {q} }}");
    }
    let deep = post(&s, &format!("{{ {q} }}")).await;
    assert_eq!(
        deep["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
        "{deep}"
    );
    // The introspection schema has its own bound, which hostile nesting exceeds.
    let mut t = String::from("name");
    for _ in 0..20 {
        t = format!("ofType {{ {t} }}");
    }
    let deep = post(&s, &format!("{{ __schema {{ types {{ {t} }} }} }}")).await;
    assert_eq!(
        deep["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
        "{deep}"
    );
    // A list multiplies the cost of what it selects: customers × jobs is refused before any work.
    let costly = post(
        &s,
        "{ a: customers(first: 100) { nodes { jobs(first: 100) { nodes { id status } } } } }",
    )
    .await;
    assert_eq!(
        costly["errors"][0]["extensions"]["code"], "QUERY_TOO_COSTLY",
        "{costly}"
    );
    assert!(
        costly["errors"][0]["extensions"]["value"].as_u64() > Some(10_000),
        "{costly}"
    );
    tests::health::assert_no_failures(&s.base).await;
}

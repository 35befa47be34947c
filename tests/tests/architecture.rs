//! The crate graph docs/architecture.md draws, enforced: each workspace crate may reach
//! (directly or through another crate) only the crates its row allows. The read side never
//! reaches the write side; the event log and the domain reach no application crate.
//!
//! The graph is cargo's own (`cargo metadata`): renamed, target-specific and table-form
//! dependencies count as cargo counts them; dev-dependencies do not (tests may use
//! anything).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What each workspace crate may reach among the workspace's crates.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("event-log", &["domain"]),
    ("commands", &["domain", "event-log"]),
    ("projections", &["domain", "event-log"]),
    (
        "worker",
        &["domain", "event-log", "commands", "projections"],
    ),
    ("demo-data", &["domain", "event-log", "commands"]),
    (
        "api",
        &[
            "domain",
            "event-log",
            "commands",
            "projections",
            "worker",
            "demo-data",
        ],
    ),
    (
        "replay-tools",
        &[
            "domain",
            "event-log",
            "commands",
            "projections",
            "demo-data",
        ],
    ),
    (
        "tests",
        &[
            "domain",
            "event-log",
            "commands",
            "projections",
            "worker",
            "demo-data",
            "api",
            "replay-tools",
        ],
    ),
];

/// The workspace's crates and their normal and build dependencies on each other.
fn graph_of(metadata: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let packages = metadata["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                // A path dependency: a registry crate that shares a member's name is not one.
                .filter(|d| d["path"].is_string())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| members.contains(*n))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The cargo running the tests, else the one that built them.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    graph_of(&serde_json::from_slice(&out.stdout).expect("metadata JSON"))
}

fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = graph[from].iter().cloned().collect();
    while let Some(c) = todo.pop() {
        if seen.insert(c.clone()) {
            todo.extend(graph[&c].iter().cloned());
        }
    }
    seen
}

/// The edges outside [`ALLOWED`], and crates it does not know.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for name in graph.keys() {
        let Some(may) = allowed.get(name.as_str()) else {
            wrong.push(format!("{name} is not in docs/architecture.md's table"));
            continue;
        };
        for dep in reach(graph, name) {
            if !may.contains(&dep.as_str()) {
                wrong.push(format!("{name} reaches {dep}"));
            }
        }
    }
    wrong
}

#[test]
fn every_crate_reaches_only_the_crates_the_architecture_allows() {
    let g = workspace_graph();
    // The graph is read, not assumed: every crate of the table is there, with its edges.
    assert_eq!(
        g.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        ALLOWED.iter().map(|(n, _)| *n).collect::<BTreeSet<_>>()
    );
    assert!(g["projections"].contains("event-log"), "{g:?}");
    assert!(g["commands"].contains("event-log"), "{g:?}");
    let wrong = violations(&g);
    assert!(
        wrong.is_empty(),
        "edges outside docs/architecture.md: {wrong:?}"
    );
}

#[test]
fn an_edge_through_another_crate_or_a_renamed_one_is_caught() {
    // projections -> helper -> commands, the second one renamed and target-specific, as
    // cargo metadata reports them (a dev-dependency does not count, nor a registry crate
    // that shares a member's name: the direct `commands` here has no path).
    let metadata = serde_json::json!({"packages": [
        {"name": "projections", "dependencies": [
            {"name": "helper", "kind": null, "path": "/w/helper"},
            {"name": "api", "kind": "dev", "path": "/w/api"},
            {"name": "commands", "kind": null}]},
        {"name": "helper", "dependencies": [
            {"name": "commands", "rename": "cmds", "kind": null, "target": "cfg(unix)", "path": "/w/commands"}]},
        {"name": "commands", "dependencies": []},
        {"name": "api", "dependencies": []},
    ]});
    let graph = graph_of(&metadata);
    assert!(!graph["projections"].contains("commands"), "{graph:?}");
    let wrong = violations(&graph);
    assert!(
        wrong.contains(&"projections reaches commands".to_string()),
        "{wrong:?}"
    );
    assert!(wrong.contains(&"helper is not in docs/architecture.md's table".to_string()));
    assert!(
        !wrong.iter().any(|w| w.contains("reaches api")),
        "{wrong:?}"
    );
}

/// Each `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((path.display().to_string(), text));
        }
    }
    out
}

/// Where a quoted name from `names` appears in `files`.
fn quoted<'a>(files: &[(String, String)], names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let names: BTreeSet<&str> = names.collect();
    files
        .iter()
        .flat_map(|(path, text)| {
            names
                .iter()
                .filter(|n| text.contains(&format!("\"{n}\"")))
                .map(move |n| format!("{path}: \"{n}\""))
        })
        .collect()
}

#[test]
fn the_read_side_names_no_event_or_aggregate_type_in_a_string() {
    // Read models match the domain's typed events: a renamed event is a compile error there,
    // never a handler that silently stops matching.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../projections/src");
    let files = sources(&dir);
    assert!(
        files.len() > 10,
        "projections/src has {} files",
        files.len()
    );
    let schemas = commands::domain::catalogue::all_event_schemas();
    let found = quoted(&files, schemas.iter().flat_map(|s| [s.name, s.aggregate]));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_quoted_event_type_in_a_source_is_found() {
    let files = vec![(
        "crm/x.rs".to_string(),
        r#"match e.event_type.as_str() { "JobBooked" => {} _ => {} }"#.to_string(),
    )];
    assert_eq!(
        quoted(&files, ["JobBooked", "JobPaid"].into_iter()),
        vec!["crm/x.rs: \"JobBooked\"".to_string()]
    );
}

/// The lines of `files` that hold an SQL statement's keyword as SQL writes it.
fn sql_lines(files: &[(String, String)]) -> Vec<String> {
    const KEYWORDS: [&str; 4] = ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM"];
    files
        .iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| KEYWORDS.iter().any(|k| l.contains(k)))
                .map(move |(i, l)| format!("{path}:{}: {}", i + 1, l.trim()))
        })
        .collect()
}

#[test]
fn the_api_holds_no_sql() {
    // Resolvers, health, metrics and the demo call the read models' typed queries
    // (projections::crm::*) and the side tables' stores (worker::*): each table's SQL has
    // one home beside it.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let files = sources(&dir);
    assert!(files.len() > 30, "api/src has {} files", files.len());
    let found = sql_lines(&files);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_statement_in_a_source_is_found() {
    let files = vec![(
        "graphql/x.rs".to_string(),
        "let q = \"x\";\ndb.query(\"SELECT * FROM rm_jobs\", &[])".to_string(),
    )];
    assert_eq!(
        sql_lines(&files),
        vec!["graphql/x.rs:2: db.query(\"SELECT * FROM rm_jobs\", &[])".to_string()]
    );
}

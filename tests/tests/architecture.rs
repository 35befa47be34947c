//! The crate graph docs/architecture.md draws, enforced: each workspace crate may reach
//! (directly or through another crate) only the crates its row allows. The read side never
//! reaches the write side; the event log and the domain reach no application crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Workspace crates and their manifests, relative to the workspace root.
const CRATES: &[(&str, &str)] = &[
    ("domain", "domain/Cargo.toml"),
    ("event-log", "commands/event-log/Cargo.toml"),
    ("commands", "commands/Cargo.toml"),
    ("projections", "projections/Cargo.toml"),
    ("api", "api/Cargo.toml"),
    ("replay-tools", "replay-tools/Cargo.toml"),
    ("tests", "tests/Cargo.toml"),
];

/// What each crate may reach (its `[dependencies]`, transitively, among workspace crates).
fn allowed(krate: &str) -> &'static [&'static str] {
    match krate {
        "domain" => &[],
        "event-log" => &["domain"],
        "commands" => &["domain", "event-log"],
        "projections" => &["domain", "event-log"],
        "api" | "replay-tools" => &["domain", "event-log", "commands", "projections"],
        _ => &[
            "domain",
            "event-log",
            "commands",
            "projections",
            "api",
            "replay-tools",
        ],
    }
}

/// The workspace crates a manifest's `[dependencies]` names (not dev- or build-).
fn direct(manifest: &str) -> BTreeSet<String> {
    let names: BTreeSet<&str> = CRATES.iter().map(|(n, _)| *n).collect();
    let mut in_deps = false;
    let mut out = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps || line.starts_with('#') {
            continue;
        }
        let key = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .trim();
        if names.contains(key) {
            out.insert(key.to_string());
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    CRATES
        .iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(root.join(path)).expect("manifest");
            (name.to_string(), direct(&text))
        })
        .collect()
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

#[test]
fn every_crate_reaches_only_the_crates_the_architecture_allows() {
    let g = graph();
    // The manifests are read, not assumed: the known edges are there.
    assert!(g["projections"].contains("event-log"), "{g:?}");
    assert!(g["commands"].contains("event-log"), "{g:?}");
    let mut wrong = Vec::new();
    for (name, _) in CRATES {
        for dep in reach(&g, name) {
            if !allowed(name).contains(&dep.as_str()) {
                wrong.push(format!("{name} reaches {dep}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges outside docs/architecture.md: {wrong:?}"
    );
}

#[test]
fn a_manifest_line_naming_a_workspace_crate_is_an_edge() {
    let m = "[package]\nname = \"x\"\n\n[dependencies]\n# commands is not a dependency\ncommands.workspace = true\nevent-log = { path = \"../e\" }\nserde = \"1\"\n\n[dev-dependencies]\napi.workspace = true\n";
    assert_eq!(
        direct(m),
        ["commands", "event-log"].map(String::from).into()
    );
}

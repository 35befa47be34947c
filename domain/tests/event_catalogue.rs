//! The event catalogue in `docs/events.md` must list every event type the domain can emit.
//!
//! The generated part of the document (between the markers) must equal
//! `domain::catalogue::catalogue_markdown()`. To refresh it after changing an event:
//! `UPDATE_EVENT_CATALOGUE=1 cargo test -p domain --test event_catalogue`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cqrs_es::Aggregate;
use domain::catalogue::{all_event_schemas, catalogue_markdown, is_known_event_type};
use domain::{all_event_types, known_event_types};

const BEGIN: &str = "<!-- BEGIN GENERATED CATALOGUE (domain::catalogue::catalogue_markdown) -->";
const END: &str = "<!-- END GENERATED CATALOGUE -->";

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md")
}

fn read_doc() -> String {
    std::fs::read_to_string(doc_path()).expect("docs/events.md exists")
}

#[test]
fn it_should_list_every_event_type_in_docs_events_md() {
    if std::env::var_os("UPDATE_EVENT_CATALOGUE").is_some() {
        let doc = read_doc();
        let (head, rest) = doc.split_once(BEGIN).expect("begin marker");
        let (_, tail) = rest.split_once(END).expect("end marker");
        let updated = format!(
            "{head}{BEGIN}\n{}\n{END}{tail}",
            catalogue_markdown().trim()
        );
        std::fs::write(doc_path(), updated).expect("write docs/events.md");
    }
    let doc = read_doc();
    let missing: Vec<String> = all_event_types()
        .into_iter()
        .filter(|(_, event)| !doc.contains(&format!("### `{event}`")))
        .map(|(aggregate, event)| format!("{aggregate}/{event}"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from docs/events.md: {missing:?}"
    );
}

#[test]
fn it_should_keep_the_generated_catalogue_in_docs_up_to_date() {
    let doc = read_doc();
    let (_, rest) = doc
        .split_once(BEGIN)
        .expect("begin marker in docs/events.md");
    let (generated, _) = rest.split_once(END).expect("end marker in docs/events.md");
    assert_eq!(
        generated.trim(),
        catalogue_markdown().trim(),
        "docs/events.md is stale: run UPDATE_EVENT_CATALOGUE=1 cargo test -p domain --test event_catalogue"
    );
}

#[test]
fn it_should_name_each_event_type_once() {
    let all = all_event_types();
    let unique: BTreeSet<_> = all.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "event type names must be unique across aggregates"
    );
    assert_eq!(known_event_types().len(), all.len());
}

#[test]
fn it_should_use_the_aggregate_type_constants_in_the_catalogue() {
    let types: BTreeSet<&str> = all_event_schemas().iter().map(|s| s.aggregate).collect();
    let expected: BTreeSet<&str> = [
        domain::customer::Customer::TYPE,
        domain::job::Job::TYPE,
        domain::loyalty::LoyaltyAccount::TYPE,
        domain::referral::Referral::TYPE,
        domain::opportunity::Opportunity::TYPE,
        domain::promotion::Promotion::TYPE,
        domain::review::ReviewRequest::TYPE,
        domain::review::Review::TYPE,
        domain::vehicle::Vehicle::TYPE,
        domain::staff::StaffUser::TYPE,
        domain::portal::PortalAccount::TYPE,
        domain::payment::Payment::TYPE,
        domain::conversation::Conversation::TYPE,
        domain::scheduled_report::ScheduledReport::TYPE,
        domain::job_run::JobRun::TYPE,
        domain::message::OutboundMessage::TYPE,
        domain::read_model::ReadModel::TYPE,
    ]
    .into_iter()
    .collect();
    assert_eq!(types, expected);
}

#[test]
fn it_should_recognise_known_and_unknown_event_types() {
    assert!(is_known_event_type("Job", "JobCompleted", "1.0"));
    assert!(!is_known_event_type("Job", "JobExploded", "1.0"));
    assert!(!is_known_event_type("Job", "JobCompleted", "9.9"));
    assert!(!is_known_event_type("Customer", "JobCompleted", "1.0"));
}

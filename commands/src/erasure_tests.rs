//! Erasure through the application: crypto-shredding (the `event-log` crate's
//! `store::personal`) seen from a command, a replay and the stored bytes.

/// Given a customer with contact data, when the customer is erased, then the stream
/// still loads (every event, the non-personal facts intact) with placeholders where
/// the personal data was, and the stored bytes never held it readable.
#[tokio::test]
async fn an_erased_customer_replays_with_placeholders_and_was_never_stored_readable() {
    use crate::app::Crm;
    use crate::{Actor, DatabaseUrl, EventLog, EventMetadata, LogOptions};
    use domain::customer::CustomerCommand;
    use domain::ids::CustomerId;

    let dir = std::env::temp_dir().join(format!("dirtfree-shred-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url =
        DatabaseUrl::parse(Some(&format!("sqlite://{}", dir.join("t.db").display()))).expect("url");
    let log = EventLog::connect(&url, &LogOptions::default())
        .await
        .expect("log");
    let crm = Crm::new(log.clone(), domain::testing::test_services());
    let meta = EventMetadata::new(Actor::Staff("t".into()), domain::testing::test_now());
    let id: CustomerId = "00000000-0000-0000-0000-00000000a0a0".parse().expect("id");
    for cmd in [
        CustomerCommand::Create {
            customer_id: id,
            name: "Bea Private".into(),
            email: Some("bea@example.com".into()),
            phone: Some("+15125550100".into()),
            birthday: None,
            customer_since: None,
        },
        CustomerCommand::AddTag {
            tag: "commercial".into(),
        },
    ] {
        crm.customers()
            .execute(id, domain::testing::manager(), cmd, &meta)
            .await
            .expect("command");
    }
    let loaded = log
        .load_stream("Customer", &id.to_string(), 0)
        .await
        .expect("load");
    assert_eq!(
        loaded[0].payload["CustomerCreated"]["email"],
        "bea@example.com"
    );
    crm.customers()
        .execute(
            id,
            domain::testing::manager(),
            CustomerCommand::ErasePersonalData {
                reason: "asked".into(),
            },
            &meta,
        )
        .await
        .expect("erase");

    let stored = log
        .read_all_stored(crate::LogPosition::START, 100)
        .await
        .expect("stored");
    assert_eq!(stored.len(), 3);
    let text: String = stored.iter().map(|e| e.payload.to_string()).collect();
    assert!(
        !text.contains("bea@example.com")
            && !text.contains("Bea Private")
            && !text.contains("5550100"),
        "{text}"
    );
    let events = log
        .load_stream("Customer", &id.to_string(), 0)
        .await
        .expect("load");
    let created = &events[0].payload["CustomerCreated"];
    assert_eq!(created["name"], "[erased]");
    assert!(created["email"].is_null() && created["phone"].is_null());
    assert_eq!(events[1].payload["CustomerTagged"]["tag"], "commercial");
    // The aggregate replays from these events and refuses further changes.
    let refused = crm
        .customers()
        .execute(
            id,
            domain::testing::manager(),
            CustomerCommand::AddTag {
                tag: "again".into(),
            },
            &meta,
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(crate::app::AppError::Rule {
                code: "CUSTOMER_ERASED",
                ..
            })
        ),
        "erased customers refuse changes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

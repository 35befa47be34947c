//! The operator CLI against real stores, as an operator runs it.

use std::collections::BTreeMap;
use std::process::Output;

use commands::app::Crm;
use commands::policies::PolicyRunner;
use demo_data::Scale;
use domain::loyalty::LoyaltyRules;
use domain::ports::DomainServices;
use projections::{ProjectionRunner, Slot};
use tests::{Engine, TempDir, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

fn cli(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_replay-tools"))
        .env("DATABASE_URL", url)
        .args(args)
        .output()
        .expect("run replay-tools")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn dumps(db: &TestDb) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let r = ProjectionRunner::new(db.log().await, TZ);
    r.prepare().await.expect("prepare");
    r.catch_up_all().await.expect("catch up");
    let mut out = BTreeMap::new();
    for n in r.names() {
        out.insert(n.to_string(), r.dump(n, Slot::Live).await.expect("dump"));
    }
    out
}

async fn seeded(engine: Engine) -> TestDb {
    let db = TestDb::new(engine).await;
    let crm = Crm::new(
        db.log().await,
        DomainServices::new(TZ, LoyaltyRules::default()),
    );
    demo_data::seed(&crm, 7, Scale::Small).await.expect("seed");
    PolicyRunner::new(crm)
        .run_until_caught_up()
        .await
        .expect("policies");
    db
}

async fn rebuild_export_import_and_verify(engine: Engine) {
    let db = seeded(engine).await;
    let before = dumps(&db).await;
    assert!(before["customers"]["customers"].len() >= 30);

    let status = ok(&cli(&db.url, &["status"]));
    assert!(
        status.contains("customers") && status.contains("analytics"),
        "{status}"
    );

    // Without --yes nothing is swapped; with it every projection is rebuilt.
    let dry = cli(&db.url, &["rebuild", "customers", "--diff"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("not swapped"));
    let out = ok(&cli(&db.url, &["rebuild", "--all", "--yes"]));
    assert!(out.contains("identical to live"), "{out}");
    assert_eq!(
        dumps(&db).await,
        before,
        "rebuild --all changes nothing on the demo data"
    );

    // Export → import into an empty store of the same engine → identical read models.
    let dir = TempDir::new();
    let file = dir.0.join("log.jsonl");
    // An existing, world-readable file is narrowed too.
    std::fs::write(&file, b"old").expect("pre-existing file");
    // Sealed by default: no personal field in clear, and import refuses it.
    let sealed = dir.0.join("sealed.jsonl");
    ok(&cli(
        &db.url,
        &["export", "--out", sealed.to_str().expect("path")],
    ));
    let sealed_text = std::fs::read_to_string(&sealed).expect("sealed export");
    assert!(sealed_text
        .starts_with(r#"{"format":"dirtfree-events","version":1,"personal_data":"sealed"}"#));
    assert!(
        sealed_text.contains("$pii"),
        "no sealed field in the default export"
    );
    ok(&cli(
        &db.url,
        &["export", "--clear", "--out", file.to_str().expect("path")],
    ));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("export")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the export must be readable by its owner only"
        );
    }
    let copy = TestDb::new(engine).await;
    drop(copy.log().await);
    let refused = cli(&copy.url, &["import", file.to_str().expect("path")]);
    assert!(!refused.status.success(), "import without --yes is refused");
    let sealed_refused = cli(
        &copy.url,
        &["import", sealed.to_str().expect("path"), "--yes"],
    );
    assert!(
        !sealed_refused.status.success()
            && String::from_utf8_lossy(&sealed_refused.stderr).contains("export with --clear"),
        "a sealed export is refused, saying why"
    );
    assert_eq!(copy.log().await.count().await.expect("count"), 0);
    ok(&cli(
        &copy.url,
        &["import", file.to_str().expect("path"), "--yes"],
    ));
    assert_eq!(
        dumps(&copy).await,
        before,
        "an imported copy builds the same read models"
    );
    assert_eq!(
        copy.log().await.count().await.expect("count"),
        db.log().await.count().await.expect("count")
    );

    // verify: clean, then an edited event is named.
    ok(&cli(&db.url, &["verify"]));
    let log = db.log().await;
    let victim = log
        .read_all(commands::LogPosition::START, 5)
        .await
        .expect("read")
        .pop()
        .expect("an event");
    match &log {
        commands::EventLog::Postgres(pg) => {
            sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{tampered}', 'true') WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3")
                .bind(&victim.aggregate_type).bind(&victim.aggregate_id).bind(victim.sequence as i64)
                .execute(pg.pool()).await.expect("tamper");
        }
        commands::EventLog::Sqlite(s) => {
            sqlx::query("UPDATE events SET payload = json_set(payload, '$.tampered', 1) WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?")
                .bind(&victim.aggregate_type).bind(&victim.aggregate_id).bind(victim.sequence as i64)
                .execute(s.writer()).await.expect("tamper");
        }
        #[cfg(feature = "esdb")]
        commands::EventLog::Esdb(_) => unreachable!("this test runs on the SQL engines"),
    }
    let bad = cli(&db.url, &["verify"]);
    assert_eq!(bad.status.code(), Some(1));
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(
        report.contains("edited after it was sealed") && report.contains(&victim.aggregate_id),
        "{report}"
    );

    // audit and state of one customer.
    let customer = victim.aggregate_id.clone();
    let t = victim.aggregate_type.clone();
    let audit = ok(&cli(&db.url, &["audit", &t, &customer]));
    assert!(audit.contains("#1") && audit.contains("by "), "{audit}");
    let state = ok(&cli(&db.url, &["state", &t, &customer, "--at", "1"]));
    assert!(state.contains("\"version\": 1"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rebuild_export_import_and_verify() {
    rebuild_export_import_and_verify(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rebuild_export_import_and_verify() {
    rebuild_export_import_and_verify(Engine::Sqlite).await;
}

#[test]
fn destructive_commands_need_yes() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.0.join("x.db").display());
    let out = cli(&url, &["seed", "--scale", "small"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
}

/// Every stored payload of the log as text, read from the events table itself.
async fn stored_payloads(log: &commands::EventLog) -> String {
    let events = log
        .read_all_stored(commands::LogPosition::START, 100_000)
        .await
        .expect("read");
    events
        .iter()
        .map(|e| e.payload.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// GDPR erasure by crypto-shredding: personal data is encrypted at rest, readable in exports
/// and audits while the customer exists, and unreadable everywhere once erased — while the
/// events and their non-personal facts stay, replay, and still pass `verify`.
async fn an_erased_customer_is_unreadable_everywhere_but_the_facts_remain(engine: Engine) {
    use domain::consent::{Channel, ConsentSource};
    use domain::customer::CustomerCommand;
    use domain::ids::CustomerId;
    use domain::values::AddressInput;
    use tests::app_support::{meta, staff};

    let db = TestDb::new(engine).await;
    let log = db.log().await;
    let crm = tests::app_support::crm(log.clone());
    let id: CustomerId = "00000000-0000-0000-0000-0000000e7a5e".parse().expect("id");
    let (name, email, phone) = ("Ana Erasable", "ana.erasable@example.com", "+15125550199");
    let run = |cmd: CustomerCommand| {
        let crm = crm.clone();
        async move {
            crm.customers()
                .execute(id, staff(), cmd, &meta())
                .await
                .expect("command")
        }
    };
    run(CustomerCommand::Create {
        customer_id: id,
        name: name.into(),
        email: Some(email.into()),
        phone: Some(phone.into()),
        birthday: None,
        customer_since: None,
    })
    .await;
    run(CustomerCommand::AddAddress {
        label: "home".into(),
        address: AddressInput {
            line1: "12 Mockingbird Lane".into(),
            line2: None,
            city: "Austin".into(),
            region: "TX".into(),
            postal_code: "78701".into(),
        },
    })
    .await;
    run(CustomerCommand::SetBirthday {
        birthday: chrono::NaiveDate::from_ymd_opt(1990, 4, 2).expect("date"),
    })
    .await;
    run(CustomerCommand::AddNote {
        text: "Ana's dog bites; call before arriving".into(),
    })
    .await;
    run(CustomerCommand::GrantMarketingConsent {
        channel: Channel::Sms,
        source: ConsentSource::Staff,
    })
    .await;
    run(CustomerCommand::AddTag { tag: "vip".into() }).await;
    let secrets = [name, email, phone, "Mockingbird", "1990-04-02", "dog bites"];

    // At rest the personal fields are ciphertext; readers see them.
    let raw = stored_payloads(&log).await;
    for s in secrets {
        assert!(!raw.contains(s), "{s} stored readable: {raw}");
    }
    let dir = TempDir::new();
    let before = dir.0.join("before.jsonl");
    ok(&cli(
        &db.url,
        &["export", "--clear", "--out", before.to_str().expect("path")],
    ));
    let exported = std::fs::read_to_string(&before).expect("export");
    for s in [name, email, phone, "Mockingbird", "dog bites"] {
        assert!(
            exported.contains(s),
            "{s} missing from the export before erasure"
        );
    }
    let r = ProjectionRunner::new(log.clone(), TZ);
    r.prepare().await.expect("prepare");
    r.catch_up_all().await.expect("catch up");

    run(CustomerCommand::ErasePersonalData {
        reason: "customer asked (GDPR art. 17)".into(),
    })
    .await;

    // Export, audit, state and a rebuilt read model hold none of it.
    let after = dir.0.join("after.jsonl");
    ok(&cli(
        &db.url,
        &["export", "--clear", "--out", after.to_str().expect("path")],
    ));
    let cid = id.to_string();
    let views = [
        std::fs::read_to_string(&after).expect("export"),
        ok(&cli(&db.url, &["audit", "Customer", &cid])),
        ok(&cli(&db.url, &["state", "Customer", &cid, "--at", "6"])),
    ];
    for (view, text) in ["export", "audit", "state"].iter().zip(&views) {
        for s in secrets {
            assert!(!text.contains(s), "{view} still shows {s}: {text}");
        }
    }
    assert!(views[0].contains("[erased]"), "{}", views[0]);
    // The non-personal facts stay: consent, the tag, the erasure itself, every event.
    for fact in [
        "SmsConsentGranted",
        "CustomerTagged",
        "vip",
        "CustomerPersonalDataErased",
    ] {
        assert!(views[0].contains(fact), "export lost {fact}");
    }
    assert_eq!(log.count().await.expect("count"), 7);
    ok(&cli(&db.url, &["rebuild", "--all", "--yes"]));
    r.catch_up_all().await.expect("catch up");
    let rows = r
        .query(
            "SELECT * FROM rm_customers WHERE customer_id = $1",
            &[cid.as_str().into()],
        )
        .await
        .expect("row");
    let row = serde_json::to_string(&rows).expect("json");
    for s in secrets {
        assert!(!row.contains(s), "read model still shows {s}: {row}");
    }
    assert!(
        row.contains("\"erased\":1") && row.contains("\"sms_consent\":1"),
        "{row}"
    );
    // The stored bytes did not change, so the hash chain still verifies.
    ok(&cli(&db.url, &["verify"]));
    // Importing the erased export elsewhere brings no personal data back.
    let copy = TestDb::new(engine).await;
    drop(copy.log().await);
    ok(&cli(
        &copy.url,
        &["import", after.to_str().expect("path"), "--yes"],
    ));
    let copied = stored_payloads(&copy.log().await).await;
    for s in secrets {
        assert!(!copied.contains(s), "import restored {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_an_erased_customer_is_unreadable_everywhere_but_the_facts_remain() {
    an_erased_customer_is_unreadable_everywhere_but_the_facts_remain(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_an_erased_customer_is_unreadable_everywhere_but_the_facts_remain() {
    an_erased_customer_is_unreadable_everywhere_but_the_facts_remain(Engine::Sqlite).await;
}

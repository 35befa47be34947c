//! Backups restore with PostgreSQL's own tools (issue #15): a store dumped with `pg_dump`
//! and restored into a second, freshly initialised cluster — whose transaction ids are
//! lower than the stored order keys — is one the server starts on, reads in the same order,
//! appends after, and projects.
//!
//! The drill, as an operator would run it: a business's data → stop → `pg_dump -Fc` →
//! `initdb` a new cluster → `pg_restore` → start the server there → `replay-tools verify`
//! passes → a new booking lands after every restored event and reaches the read models →
//! the log up to the dump is the same, event for event, position for position → every read
//! model equals a rebuild. The same on SQLite, with `replay-tools backup` taken while the
//! server writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use tests::app::{data, text, TestApp};
use tests::app_support::all_events;
use tests::{Engine, TempDir, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

/// PostgreSQL's programs (the newest installed), as scripts/with-postgres.sh finds them.
fn pg_bin(program: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs under /usr/lib/postgresql")
        .filter_map(|d| d.ok().map(|d| d.path().join("bin")))
        .filter(|d| d.join(program).exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect("a PostgreSQL installation").join(program)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (the server refuses
/// to run as root).
fn run_pg(program: &str, args: &[&str]) {
    let bin = pg_bin(program);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&bin)
            .args(args)
            .output()
    } else {
        Command::new(&bin).args(args).output()
    }
    .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A second PostgreSQL cluster, freshly initialised (its transaction counter starts low),
/// stopped when dropped.
struct Cluster {
    dir: TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Self {
        let dir = TempDir::new();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres", &dir.0.display().to_string()])
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let data = dir.0.join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        run_pg(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.0.display()
        );
        run_pg(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &dir.0.join("log").display().to_string(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        Cluster { dir, port }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.0.join("data").display().to_string();
        let bin = pg_bin("pg_ctl");
        let mut stop = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let _ = stop.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Uses up `n` transaction ids of the source cluster, so that the events written next carry
/// order keys above anything a fresh cluster reaches during the drill.
async fn use_up_transaction_ids(url: &str, n: u32) {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .expect("connect");
    for _ in 0..n {
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut c)
            .await
            .expect("xid");
    }
}

/// `replay-tools verify` on the store at `url`, as an operator runs it: must exit 0.
fn replay_tools_verify(url: &str) {
    let verify = Command::new(env!("CARGO_BIN_EXE_dirtfree-replay-tools"))
        .arg("verify")
        .env("DATABASE_URL", url)
        .output()
        .expect("replay-tools verify");
    assert!(
        verify.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// The event log of the store at `url`.
async fn open_log(url: &str) -> Result<commands::EventLog, commands::StoreError> {
    commands::EventLog::connect(
        &commands::DatabaseUrl::parse(Some(url))?,
        &commands::LogOptions::default(),
    )
    .await
}

/// A small business day through the API: customers, a booking, a note.
async fn business_day(app: &TestApp, admin: &str) {
    let mut customers = Vec::new();
    for name in ["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra"] {
        let r = app
            .gql(
                Some(admin),
                "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } } }",
                json!({"i": {"name": name, "email": format!("{}@example.com", name.split(' ').next().unwrap_or("x").to_lowercase()), "phone": "+15125550100"}}),
            )
            .await;
        customers.push(text(&r, "/data/createCustomer/customer/id"));
    }
    let r = app
        .gql(
            Some(admin),
            "mutation($i: BookJobInput!) { bookJob(input: $i) { job { id } position } }",
            json!({"i": {"customerId": customers[0], "services": ["Carpet cleaning", "Stairs"],
                "start": "2026-11-25T15:00:00Z", "end": "2026-11-25T17:00:00Z"}}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app
        .gql(
            Some(admin),
            "mutation($i: AddCustomerNoteInput!) { addCustomerNote(input: $i) { position } }",
            json!({"i": {"id": customers[1], "text": "Prefers mornings"}}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let position = text(&r, "/data/addCustomerNote/position");
    app.sync(admin, &position).await;
}

#[tokio::test]
async fn a_pg_dump_restored_into_a_fresh_cluster_keeps_its_order_and_goes_on() {
    let db = TestDb::new(Engine::Postgres).await;
    use_up_transaction_ids(&db.url, 3_000).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    business_day(&app, &admin).await;
    drop(app);
    let before = all_events(&db.log().await).await;
    assert!(before.len() > 10, "{} events", before.len());

    // pg_dump, a new cluster, pg_restore.
    let work = TempDir::new();
    let dump: &Path = &work.0.join("store.dump");
    let out = Command::new(pg_bin("pg_dump"))
        .args(["-Fc", "-f", &dump.display().to_string(), &db.url])
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = Cluster::start();
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&target.url("postgres"))
        .await
        .expect("connect to the new cluster");
    sqlx::Executor::execute(&mut c, "CREATE DATABASE restored")
        .await
        .expect("create database");
    let restored = target.url("restored");
    let out = Command::new(pg_bin("pg_restore"))
        .args([
            "--no-owner",
            "--exit-on-error",
            "-d",
            &restored,
            &dump.display().to_string(),
        ])
        .output()
        .expect("pg_restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let newest = before.last().map(|e| e.position.tx).unwrap_or(0);
    let next = scalar(&restored, "SELECT pg_current_xact_id()::text::bigint").await;
    assert!(
        (next as u64) < newest,
        "the drill needs a cluster behind the store: next id {next}, newest stored {newest}"
    );

    // The server starts on it; the operator's check passes.
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &restored).await;
    replay_tools_verify(&restored);

    // A new booking is appended after every restored event and reaches the read models.
    let admin = app.login_admin().await;
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { customer { id } position } }",
            json!({"i": {"name": "After The Restore"}}),
        )
        .await;
    let position = text(&r, "/data/createCustomer/position");
    let after_restore: commands::LogPosition = position.parse().expect("position");
    assert!(
        after_restore > before.last().expect("events").position,
        "{after_restore} is not after the restored log"
    );
    app.sync(&admin, &position).await;
    let found = app
        .gql(
            Some(&admin),
            "{ customers(search: \"After The Restore\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&found, "/data/customers/totalCount"), 1, "{found}");
    tests::health::assert_no_failures(&app.server.base).await;
    drop(app);

    // The restored log is the dumped one, then the new events after it.
    let log = open_log(&restored).await.expect("open the restored log");
    let after = all_events(&log).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the restored log differs"
    );
    assert!(after.len() > before.len());
    assert!(
        after.windows(2).all(|w| w[0].position < w[1].position),
        "positions do not increase"
    );
    let differences = tests::rebuild::differences_from_a_clean_rebuild(&log, TZ)
        .await
        .expect("rebuild");
    assert!(differences.is_empty(), "{differences:#?}");
    // The cluster is stopped before its directory goes.
    log.close().await;
    drop(target);
}

/// Creates customers one after another until told to stop; returns how many it created.
async fn write_load(
    app_url: String,
    token: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u32 {
    let client = reqwest::Client::new();
    let mut n = 0;
    while !*stop.borrow() {
        let r: serde_json::Value = client
            .post(&app_url)
            .bearer_auth(&token)
            .json(&json!({
                "query": "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
                "variables": {"i": {"name": format!("Load {n}")}},
            }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(r["errors"].is_null(), "{r}");
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_sqlite_backup_taken_while_the_server_writes_restores_and_goes_on() {
    let db = TestDb::new(Engine::Sqlite).await;
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let admin = app.login_admin().await;
    business_day(&app, &admin).await;

    // The backup is taken in the middle of a stream of writes.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(write_load(app.server.url.clone(), admin.clone(), stopped));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let work = TempDir::new();
    let copy = work.0.join("backup.db");
    let backup = Command::new(env!("CARGO_BIN_EXE_dirtfree-replay-tools"))
        .args(["backup", "--out", &copy.display().to_string()])
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("replay-tools backup");
    assert!(
        backup.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&backup.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.send(true).expect("stop the load");
    let written = load.await.expect("load task");
    assert!(written > 0, "no writes during the backup");
    drop(app);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy)
            .expect("backup")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is readable by others");
    }
    let original = all_events(&db.log().await).await;

    // Restore: the copy is the store the server starts on.
    let restored = format!("sqlite://{}", copy.display());
    let log = open_log(&restored).await.expect("open the backup");
    let backed_up = all_events(&log).await;
    log.close().await;
    // A prefix of the log as it was: every event up to a point, none after, none half.
    assert!(
        backed_up.len() < original.len(),
        "the writes after the backup are in it"
    );
    assert_eq!(&original[..backed_up.len()], &backed_up[..]);
    let app = TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &restored).await;
    replay_tools_verify(&restored);
    let admin = app.login_admin().await;
    let r = app
        .gql(
            Some(&admin),
            "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { position } }",
            json!({"i": {"name": "After The Restore"}}),
        )
        .await;
    let position = text(&r, "/data/createCustomer/position");
    app.sync(&admin, &position).await;
    let found = app
        .gql(
            Some(&admin),
            "{ customers(search: \"After The Restore\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&found, "/data/customers/totalCount"), 1, "{found}");
    tests::health::assert_no_failures(&app.server.base).await;
    drop(app);
    let log = open_log(&restored).await.expect("open the restored store");
    let differences = tests::rebuild::differences_from_a_clean_rebuild(&log, TZ)
        .await
        .expect("rebuild");
    assert!(differences.is_empty(), "{differences:#?}");
}

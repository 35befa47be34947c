//! SIGKILL the server while its projections catch up; after a restart the
//! read models equal a clean rebuild.
//!
//! The kill is made to land mid-catch-up rather than hoped to: a trigger holds the server's
//! catch-up at one event three quarters into the log, in the activity read model's
//! transaction (on PostgreSQL it waits for an advisory lock the test holds; SQLite cannot
//! wait, so its trigger runs a query that does not end within the test). The test sees the
//! read models short of the head, kills the server, takes the trigger away and restarts it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use commands::app::Crm;
use commands::domain::loyalty::LoyaltyRules;
use commands::domain::ports::DomainServices;
use commands::{LogPosition, RecordedEvent};
use demo_data::Scale;
use projections::ProjectionRunner;
use tests::{Engine, TempDir, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

/// The advisory lock the PostgreSQL trap waits for while the test holds it.
const HOLD_KEY: i64 = 74_101;

/// Sets the trap on `e`: the activity read model writes an audit-trail row for every event,
/// so its catch-up reaches this one after committing the batches before it, with the read
/// models caught up before activity done and those after it not started. On PostgreSQL the
/// trigger waits for [`HOLD_KEY`], taken here on the returned connection (hold it until the
/// kill); on SQLite it joins the events table with itself five times, which does not end in
/// the life of the test (a trigger can hold no lock and cannot sleep).
async fn hold_catch_up_at(
    db: &TestDb,
    engine: Engine,
    runner: &ProjectionRunner,
    e: &RecordedEvent,
) -> Option<sqlx::PgConnection> {
    let quoted = |s: &str| s.replace('\'', "''");
    let when = format!(
        "NEW.aggregate_type = '{}' AND NEW.aggregate_id = '{}' AND NEW.sequence = {}",
        quoted(&e.aggregate_type),
        quoted(&e.aggregate_id),
        e.sequence
    );
    match engine {
        Engine::Postgres => {
            let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
                .await
                .expect("connect");
            let trap = [
                format!("SELECT pg_advisory_lock({HOLD_KEY})"),
                format!(
                    "CREATE FUNCTION crash_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN PERFORM pg_advisory_xact_lock({HOLD_KEY}); RETURN NEW; END $$"
                ),
                format!(
                    "CREATE TRIGGER crash_test_hold BEFORE INSERT ON rm_audit_trail FOR EACH ROW \
                     WHEN ({when}) EXECUTE FUNCTION crash_test_hold()"
                ),
            ];
            for q in &trap {
                sqlx::Executor::execute(&mut holder, q.as_str())
                    .await
                    .expect("set the trap");
            }
            Some(holder)
        }
        Engine::Sqlite => {
            runner
                .db()
                .execute(
                    &format!(
                        "CREATE TRIGGER crash_test_hold BEFORE INSERT ON rm_audit_trail WHEN {when} \
                         BEGIN SELECT max(a.position + b.position + c.position + d.position + e.position) \
                         FROM events a, events b, events c, events d, events e; END"
                    ),
                    &[],
                )
                .await
                .expect("set the trap");
            None
        }
    }
}

/// Takes the trap away once the server is dead. On PostgreSQL the killed server's backend
/// then finishes its statement, finds its client gone and rolls back; dropping the trigger
/// waits for that.
async fn release(runner: &ProjectionRunner, holder: Option<sqlx::PgConnection>) {
    match holder {
        Some(mut holder) => {
            for q in [
                format!("SELECT pg_advisory_unlock({HOLD_KEY})"),
                "DROP TRIGGER crash_test_hold ON rm_audit_trail".to_string(),
                "DROP FUNCTION crash_test_hold()".to_string(),
            ] {
                sqlx::Executor::execute(&mut holder, q.as_str())
                    .await
                    .expect("take the trap away");
            }
        }
        None => {
            runner
                .db()
                .execute("DROP TRIGGER crash_test_hold", &[])
                .await
                .expect("take the trap away");
        }
    }
}

/// PostgreSQL: whether a session of this database waits for [`HOLD_KEY`] (the server's
/// catch-up, at the trap).
async fn waiting_at_the_trap(runner: &ProjectionRunner) -> bool {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND objid::bigint = {HOLD_KEY} \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    );
    runner
        .query(&sql, &[])
        .await
        .ok()
        .and_then(|rows| rows.first().and_then(|r| r["n"].as_i64()))
        .is_some_and(|n| n > 0)
}

fn spawn(url: &str, port: u16, dir: &TempDir) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_dirtfree-api"))
        .current_dir(&dir.0)
        .env("DATABASE_URL", url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("DEMO_SEED", "off")
        .env_remove("ADMIN_EMAIL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server")
}

/// The rows only one side has, per table (at most 10 each), for a failure message.
fn differences(live: &projections::Dump, shadow: &projections::Dump) -> String {
    let mut out = String::new();
    for table in live
        .keys()
        .chain(shadow.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let empty = Vec::new();
        let (l, s) = (
            live.get(table).unwrap_or(&empty),
            shadow.get(table).unwrap_or(&empty),
        );
        let only = |a: &Vec<String>, b: &Vec<String>| -> Vec<String> {
            a.iter()
                .filter(|r| !b.contains(r))
                .take(10)
                .cloned()
                .collect()
        };
        for r in only(l, s) {
            out.push_str(&format!("  {table} live only:    {r}\n"));
        }
        for r in only(s, l) {
            out.push_str(&format!("  {table} rebuild only: {r}\n"));
        }
        if l.len() != s.len() {
            out.push_str(&format!(
                "  {table}: {} rows live, {} rebuilt\n",
                l.len(),
                s.len()
            ));
        }
    }
    out
}

async fn killed_during_catch_up_then_restarted(engine: Engine) {
    let db = TestDb::new(engine).await;
    {
        let crm = Crm::new(
            db.log().await,
            DomainServices::new(TZ, LoyaltyRules::default()),
        );
        demo_data::seed(&crm, 11, Scale::Small).await.expect("seed");
    }
    let log = db.log().await;
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();

    // The read-model tables exist before the server starts (it finds them at this version
    // and keeps them), so that the trap can be set on one.
    let runner = ProjectionRunner::new(log.clone(), TZ);
    runner.prepare().await.expect("prepare");
    let events = log
        .read_all(LogPosition::START, 1_000_000)
        .await
        .expect("read the log");
    let trap = events[events.len() * 3 / 4].clone();
    let holder = hold_catch_up_at(&db, engine, &runner, &trap).await;

    // Start, let the projections get part of the way, then SIGKILL: once catch-up has
    // brought a read model to the head and (PostgreSQL, where the wait shows) is held at the
    // trap. Nothing here may panic before the kill, or the server would be left running.
    let mut child = spawn(&db.url, port, &dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (before_kill, held) = loop {
        let status = runner.status().await.unwrap_or_default();
        let started = status.iter().any(|s| s.caught_up && s.events_applied > 0);
        let held = match engine {
            Engine::Postgres => waiting_at_the_trap(&runner).await,
            Engine::Sqlite => true,
        };
        if (started && held) || Instant::now() >= deadline {
            break (status, held);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // The kill came during catch-up: some read model had got to the head, and activity,
    // which cannot pass the trap, was strictly behind it (and behind the trap).
    assert!(
        held,
        "the server's catch-up never waited at the trap: {before_kill:#?}"
    );
    assert!(
        before_kill
            .iter()
            .any(|s| s.caught_up && s.events_applied > 0),
        "no read model had caught up when the server was killed: {before_kill:#?}"
    );
    let activity = before_kill
        .iter()
        .find(|s| s.name == "activity")
        .expect("activity");
    let activity_at: LogPosition = activity.position.parse().expect("a log position");
    assert!(
        !activity.caught_up && activity_at < trap.position,
        "the kill came after activity's catch-up had passed the trap at {}: {activity:?}",
        trap.position
    );
    release(&runner, holder).await;
    let partial: Vec<i64> = runner
        .status()
        .await
        .expect("status")
        .iter()
        .map(|s| s.events_applied)
        .collect();

    // Restart and wait until every projection has caught up.
    let mut child = spawn(&db.url, port, &dir);
    let head = log.committed_head().await.expect("head");
    let caught_up = runner
        .wait_for(head, Duration::from_secs(120))
        .await
        .expect("wait");
    // Asked of the restarted server before it is stopped (a panic here would leave it running).
    let failures = if caught_up {
        tests::health::failures(&format!("http://127.0.0.1:{port}")).await
    } else {
        Vec::new()
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(caught_up, "projections caught up after the restart");
    assert!(failures.is_empty(), "after the restart: {failures:#?}");
    // The server's scheduler may have recorded runs after `head`: apply them
    // too, now that nothing else writes.
    runner.catch_up_all().await.expect("final catch-up");

    // Each projection equals a clean rebuild of itself.
    for name in runner.names() {
        let diff = std::sync::Mutex::new(None::<String>);
        runner
            .rebuild(name, &|_| {}, &|live, shadow| {
                if live != shadow {
                    *diff.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(differences(live, shadow));
                }
                false
            })
            .await
            .expect("rebuild");
        let diff = diff.into_inner().unwrap_or_else(|e| e.into_inner());
        assert!(
            diff.is_none(),
            "{name} differs from a clean rebuild after the crash:\n{}",
            diff.unwrap_or_default()
        );
    }
    // Policies may have appended while the server ran: count at the end.
    let total = log.count().await.expect("count");
    for s in runner.status().await.expect("status") {
        assert_eq!(
            s.events_applied as u64, total,
            "{} applied each event exactly once (partial before restart: {partial:?})",
            s.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_read_models_survive_a_sigkill_during_catch_up() {
    killed_during_catch_up_then_restarted(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_read_models_survive_a_sigkill_during_catch_up() {
    killed_during_catch_up_then_restarted(Engine::Sqlite).await;
}

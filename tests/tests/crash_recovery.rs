//! SIGKILL the server while its projections catch up; after a restart the
//! read models equal a clean rebuild.

use std::process::Stdio;
use std::time::{Duration, Instant};

use commands::app::Crm;
use commands::demo::{self, Scale};
use commands::domain::loyalty::LoyaltyRules;
use commands::domain::ports::DomainServices;
use projections::ProjectionRunner;
use tests::{Engine, TempDir, TestDb};

const TZ: chrono_tz::Tz = chrono_tz::America::Chicago;

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
        demo::seed(&crm, 11, Scale::Small).await.expect("seed");
    }
    let log = db.log().await;
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();

    // Start, let the projections get part of the way, then SIGKILL.
    let mut child = spawn(&db.url, port, &dir);
    let runner = ProjectionRunner::new(log.clone(), TZ);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied: i64 = runner
            .status()
            .await
            .map(|s| s.iter().map(|p| p.events_applied).sum())
            .unwrap_or(0);
        if applied > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "projections never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
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

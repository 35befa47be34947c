//! Health a load balancer can trust (issue #15), against the server process: while the
//! server starts (migrations, the demo seed, the first admin) liveness answers 200 and
//! readiness and every other route 503 `starting`; once started, readiness is 200; the
//! detail shows how long the oldest writing transaction has been open; with the database
//! gone, readiness and the health detail are 503.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::{Engine, TempDir, TestDb};

async fn status(url: &str) -> Option<(u16, serde_json::Value)> {
    let r = reqwest::get(url).await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().await.unwrap_or_default()))
}

#[tokio::test]
async fn readiness_waits_for_start_up_while_liveness_answers_at_once() {
    // The demo seed on an empty store is the slowest start there is.
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dirtfree-api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.0.join("demo.db").display()),
        )
        .env("DEMO_SEED", "on")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "off")
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut starting = Vec::new();
    let ready = loop {
        assert!(Instant::now() < deadline, "never ready: {starting:?}");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the server exited"
        );
        let Some((code, body)) = status(&format!("{base}/api/health/ready")).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if code == 200 {
            break body;
        }
        // Starting: alive, and the API says so instead of half-answering.
        let alive = status(&format!("{base}/api/health")).await;
        let graphql = reqwest::Client::new()
            .post(format!("{base}/graphql"))
            .json(&serde_json::json!({"query": "{ version }"}))
            .send()
            .await
            .ok();
        starting.push((
            code,
            body,
            alive.map(|(c, _)| c),
            graphql.map(|r| r.status().as_u16()),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        !starting.is_empty(),
        "the demo seed finished before the port was asked: nothing measured"
    );
    for (code, body, alive, graphql) in &starting {
        // The last poll may land just as start-up ends.
        if *code == 200 {
            continue;
        }
        assert_eq!(*code, 503, "{body}");
        assert_eq!(body["status"], "starting", "{body}");
        assert_eq!(*alive, Some(200), "liveness while starting");
        assert!(
            matches!(graphql, Some(503) | Some(200)),
            "GraphQL while starting: {graphql:?}"
        );
    }
    assert!(
        starting.iter().any(|(_, _, _, g)| *g == Some(503)),
        "no request was refused while starting: {starting:?}"
    );
}

#[tokio::test]
async fn without_its_database_the_server_is_not_ready() {
    let db = TestDb::new(Engine::Postgres).await;
    let app = tests::app::TestApp::start(env!("CARGO_BIN_EXE_dirtfree-api"), &db.url).await;
    let base = app.server.base.clone();
    assert_eq!(
        status(&format!("{base}/api/health/ready"))
            .await
            .map(|s| s.0),
        Some(200)
    );
    // A transaction left open holds every reader back: the detail shows how long.
    let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .expect("connect");
    sqlx::Executor::execute(&mut holder, "BEGIN; SELECT pg_current_xact_id();")
        .await
        .expect("a writing transaction");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = reqwest::get(format!("{base}/api/health/detailed"))
        .await
        .expect("detail");
    let code = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let detail: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(code, 200, "{text}");
    let age = detail["database"]["oldestWritingTransactionSecs"]
        .as_f64()
        .unwrap_or_default();
    assert!(age >= 1.0, "{detail}");
    drop(holder);
    // The database goes away (as a failover or an outage would take it).
    let admin = tests::postgres_admin_url();
    let name = db.url.rsplit('/').next().expect("name").to_string();
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("connect");
    sqlx::Executor::execute(
        &mut c,
        format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false").as_str(),
    )
    .await
    .expect("refuse connections");
    sqlx::Executor::execute(
        &mut c,
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            .as_str(),
    )
    .await
    .expect("end its sessions");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = status(&format!("{base}/api/health/ready"))
            .await
            .map(|s| s.0);
        let detail = status(&format!("{base}/api/health/detailed"))
            .await
            .map(|s| s.0);
        if ready == Some(503) && detail == Some(503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {ready:?} ready, {detail:?} detailed without the database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Liveness stays: the process is up, a restart would not help.
    assert_eq!(
        status(&format!("{base}/api/health")).await.map(|s| s.0),
        Some(200)
    );
    sqlx::Executor::execute(
        &mut c,
        format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true").as_str(),
    )
    .await
    .expect("allow connections again");
}

//! A demo store and a real admin (issue #14), against the server process on both engines:
//! once the demo business was seeded into a store, its admin (`admin@dirtfree.example`,
//! published password) must not stay the admin of a deployment that sets `ADMIN_EMAIL`.
//! The server refuses to start on such a store with one error line naming both ways out
//! (docs/operations.md, "Start, stop, upgrade").

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{Engine, ServerProcess, TempDir, TestDb};

const DEMO_ADMIN: (&str, &str) = ("admin@dirtfree.example", "dirtfree-demo");

/// Signs in with `login`; the answer.
async fn login(base: &str, (email, password): (&str, &str)) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({
            "query": "mutation($i: LoginInput!) { login(input: $i) { token role } }",
            "variables": {"i": {"email": email, "password": password}},
        }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

async fn a_store_holding_the_demo_refuses_to_start_with_admin_email(engine: Engine) {
    let db = TestDb::new(engine).await;
    // An earlier run seeded the demo (DEMO_SEED=on: the store was empty).
    {
        let demo = ServerProcess::start_hermetic(
            env!("CARGO_BIN_EXE_dirtfree-api"),
            &[
                ("DATABASE_URL", &db.url),
                ("DEMO_SEED", "on"),
                ("RUST_LOG", "warn"),
            ],
            Duration::from_secs(300),
        )
        .await;
        let r = login(&demo.base, DEMO_ADMIN).await;
        assert_eq!(r["data"]["login"]["role"], "ADMIN", "{r}");
    }

    // The operator now sets ADMIN_EMAIL on the same store.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dirtfree-api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("ADMIN_EMAIL", "owner@dirtfree.example")
        .env("ADMIN_PASSWORD", "correct horse battery")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "off")
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        let serving = reqwest::get(format!("{base}/api/health/ready"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if serving || Instant::now() > deadline {
            let demo = login(&base, DEMO_ADMIN).await;
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server serves a demo store with ADMIN_EMAIL set; the demo admin's sign-in: {demo}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    for says in [
        "ADMIN_EMAIL",
        DEMO_ADMIN.0,
        "empty",
        "DATABASE_URL",
        "unset ADMIN_EMAIL",
    ] {
        assert!(
            line.contains(says),
            "the error line does not say {says:?}: {line}"
        );
    }
    assert!(
        !line.contains(DEMO_ADMIN.1),
        "the error line prints the password: {line}"
    );
}

tests::on_both_engines!(a_store_holding_the_demo_refuses_to_start_with_admin_email);

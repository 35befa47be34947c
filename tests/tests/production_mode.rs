//! Production mode (issue #15): `APP_ENV=production` refuses to start on each unsafe setting,
//! with one `error:` line naming it, before it touches any store; a safe production
//! configuration starts and serves neither introspection nor GraphiQL unless
//! `GRAPHQL_INTROSPECTION=on` asks for them (docs/operations.md, "Production mode").
//!
//! The refusals are generated: one safe production configuration, then each unsafe change to
//! it on its own.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{Engine, ServerProcess, TempDir, TestDb};

const BINARY: &str = env!("CARGO_BIN_EXE_dirtfree-api");
const ADMIN: (&str, &str) = ("owner@dirtfree.example", "a-long-unguessed-passphrase");
/// 40 characters.
const CRON_SECRET: &str = "cron-secret-of-forty-characters-00000000";
/// The demo logins' published password (api/src/demo.rs).
const DEMO_PASSWORD: &str = "dirtfree-demo";
/// A refused start reads its configuration and exits: it opens no store and no port, so it
/// takes milliseconds; a start past this bound fails the case (the server is killed).
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

/// A production configuration with nothing unsafe in it, on `database_url`.
fn safe_production(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "production".into()),
        ("DATABASE_URL", database_url.into()),
        ("ADMIN_EMAIL", ADMIN.0.into()),
        ("ADMIN_PASSWORD", ADMIN.1.into()),
        ("CRON_SECRET", CRON_SECRET.into()),
        ("PUBLIC_URL", "https://crm.dirtfree.example".into()),
        ("RUST_LOG", "off".into()),
    ]
}

/// `envs` with `setting` replaced by `value`, or left out when `value` is `None`.
fn with(
    mut envs: Vec<(&'static str, String)>,
    setting: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    envs.retain(|(k, _)| *k != setting);
    if let Some(v) = value {
        envs.push((setting, v.into()));
    }
    envs
}

/// How a start that should be refused ended.
struct Refusal {
    status: ExitStatus,
    stderr: String,
    took: Duration,
}

/// Starts the server in `cwd` with only `envs` (and `PATH`) and waits up to `within` for it to
/// exit.
///
/// # Panics
/// When it is still running after `within` (it is killed first).
fn start_expecting_refusal(
    cwd: &Path,
    envs: &[(&'static str, String)],
    within: Duration,
) -> Refusal {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("start server");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server was still running after {within:?} with {envs:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    Refusal {
        status,
        stderr,
        took,
    }
}

/// The one `error:` line of a refusal.
///
/// # Panics
/// When there is none, or more than one.
fn error_line(r: &Refusal) -> &str {
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "not one error line: {}", r.stderr);
    lines[0]
}

#[test]
fn production_refuses_each_unsafe_setting_with_one_line_naming_it() {
    let store = TempDir::new();
    let url = format!("sqlite://{}", store.0.join("events.db").display());
    let short_cron = "c".repeat(31);
    // (setting, unsafe value or None for unset, the setting the line names)
    let cases: [(&str, Option<&str>, &str); 10] = [
        ("DATABASE_URL", None, "DATABASE_URL"),
        ("DATABASE_URL", Some("sqlite::memory:"), "DATABASE_URL"),
        ("DEMO_SEED", Some("on"), "DEMO_SEED"),
        ("ADMIN_PASSWORD", Some(DEMO_PASSWORD), "ADMIN_PASSWORD"),
        ("ADMIN_PASSWORD", Some("eleven-char"), "ADMIN_PASSWORD"),
        ("CRON_SECRET", Some(&short_cron), "CRON_SECRET"),
        ("PUBLIC_URL", None, "PUBLIC_URL"),
        (
            "PUBLIC_URL",
            Some("http://crm.dirtfree.example"),
            "PUBLIC_URL",
        ),
        ("APP_ENV", Some("prod"), "APP_ENV"),
        ("APP_ENV", Some("staging"), "APP_ENV"),
    ];
    for (setting, value, names) in cases {
        let cwd = TempDir::new();
        let envs = with(safe_production(&url), setting, value);
        let r = start_expecting_refusal(&cwd.0, &envs, REFUSED_WITHIN);
        let case = format!("{setting}={value:?}");
        assert!(
            !r.status.success(),
            "{case}: exit {:?}: {}",
            r.status,
            r.stderr
        );
        let line = error_line(&r);
        assert!(
            line.contains(names),
            "{case}: the line does not name {names}: {line}"
        );
        for secret in [ADMIN.1, DEMO_PASSWORD, CRON_SECRET, short_cron.as_str()] {
            assert!(
                !line.contains(secret),
                "{case}: the line prints a secret: {line}"
            );
        }
        // Refused before any store is opened: no embedded store appeared, none was migrated.
        assert!(!cwd.0.join("data").exists(), "{case}: ./data/ was created");
        assert!(
            !store.0.join("events.db").exists(),
            "{case}: the store was opened"
        );
        eprintln!("{case}: refused in {:?}", r.took);
    }
}

/// Posts `query` to `base`/graphql.
async fn post(base: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

const INTROSPECT: &str = "{ __schema { queryType { name } } }";

async fn a_safe_production_configuration_starts_without_introspection_or_graphiql(engine: Engine) {
    let db = TestDb::new(engine).await;
    let envs = safe_production(&db.url);
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_hermetic(BINARY, &envs, Duration::from_secs(120)).await;

    // The configured admin signs in: the store serves.
    let login = reqwest::Client::new()
        .post(&server.url)
        .json(&json!({
            "query": "mutation($i: LoginInput!) { login(input: $i) { role } }",
            "variables": {"i": {"email": ADMIN.0, "password": ADMIN.1}},
        }))
        .send()
        .await
        .expect("send")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(login["data"]["login"]["role"], "ADMIN", "{login}");

    for query in [INTROSPECT, r#"{ __type(name: "Customer") { name } }"#] {
        let r = post(&server.base, query).await;
        assert_eq!(
            r.pointer("/errors/0/extensions/code"),
            Some(&json!("FORBIDDEN")),
            "introspection answered in production: {r}"
        );
        assert!(
            r.pointer("/data/__schema").is_none_or(Value::is_null)
                && r.pointer("/data/__type").is_none_or(Value::is_null),
            "{r}"
        );
    }
    // Only the schema is closed: `__typename` (clients read unions with it) still answers.
    let r = post(&server.base, "{ __typename }").await;
    assert_eq!(r["data"]["__typename"], "QueryRoot", "{r}");
    let graphiql = reqwest::get(&server.url).await.expect("GET /graphql");
    assert_eq!(graphiql.status(), 404);
}

async fn production_serves_introspection_and_graphiql_when_asked(engine: Engine) {
    let db = TestDb::new(engine).await;
    let envs = with(
        safe_production(&db.url),
        "GRAPHQL_INTROSPECTION",
        Some("on"),
    );
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_hermetic(BINARY, &envs, Duration::from_secs(120)).await;

    let r = post(&server.base, INTROSPECT).await;
    assert_eq!(
        r["data"]["__schema"]["queryType"]["name"], "QueryRoot",
        "{r}"
    );
    let graphiql = reqwest::get(&server.url).await.expect("GET /graphql");
    assert_eq!(graphiql.status(), 200);
    assert!(graphiql.text().await.expect("html").contains("graphiql"));
}

tests::on_both_engines!(
    a_safe_production_configuration_starts_without_introspection_or_graphiql,
    production_serves_introspection_and_graphiql_when_asked,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_refuses_a_store_that_holds_the_demo() {
    let db = TestDb::new(Engine::Sqlite).await;
    // A development run seeded the demo into the store production is now pointed at.
    {
        let _demo = ServerProcess::start_hermetic(
            BINARY,
            &[
                ("DATABASE_URL", &db.url),
                ("DEMO_SEED", "on"),
                ("RUST_LOG", "warn"),
            ],
            Duration::from_secs(300),
        )
        .await;
    }
    let cwd = TempDir::new();
    // Without ADMIN_EMAIL: production refuses the demo's logins whether or not an admin is set.
    let envs = with(
        with(safe_production(&db.url), "ADMIN_EMAIL", None),
        "ADMIN_PASSWORD",
        None,
    );
    let r = tokio::task::spawn_blocking(move || {
        start_expecting_refusal(&cwd.0, &envs, Duration::from_secs(120))
    })
    .await
    .expect("join");
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    let line = error_line(&r);
    for says in ["APP_ENV=production", "demo", "DATABASE_URL"] {
        assert!(
            line.contains(says),
            "the line does not say {says:?}: {line}"
        );
    }
    assert!(!line.contains(DEMO_PASSWORD), "{line}");
}

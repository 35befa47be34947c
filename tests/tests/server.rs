//! The server as a client sees it: started as a process, spoken to over HTTP.

use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tests::{Engine, TempDir, TestDb};

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(cwd: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dirtfree-api"));
    c.current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("CRON_SECRET")
        .env("LOG_FORMAT", "json")
        .env("DEMO_SEED", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

async fn start(cwd: &std::path::Path, database_url: Option<&str>) -> Server {
    let port = free_port();
    let mut c = command(cwd);
    c.env("BIND_ADDR", format!("127.0.0.1:{port}"));
    if let Some(url) = database_url {
        c.env("DATABASE_URL", url);
    }
    let child = c.spawn().expect("start server");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/api/health/ready", server.base)).await {
            if r.status().is_success() {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_no_database_url_the_server_serves_health_on_embedded_sqlite() {
    let dir = TempDir::new();
    let server = start(&dir.0, None).await;
    let r = reqwest::get(format!("{}/api/health", server.base))
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    for (h, v) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
    ] {
        assert_eq!(
            r.headers().get(h).and_then(|v| v.to_str().ok()),
            Some(v),
            "{h}"
        );
    }
    assert!(r.headers().get("permissions-policy").is_some());
    assert!(r.headers().get("x-request-id").is_some());
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"status": "ok"})
    );
    assert!(
        dir.0.join("data/dirtfree.db").exists(),
        "embedded store lives under ./data/"
    );

    let detailed: serde_json::Value = reqwest::get(format!("{}/api/health/detailed", server.base))
        .await
        .expect("detailed")
        .json()
        .await
        .expect("json");
    assert_eq!(detailed["database"]["engine"], "sqlite");
    // The scheduler records its start-up runs, so the head has moved past "0.0".
    let head = detailed["eventStore"]["headPosition"]
        .as_str()
        .unwrap_or_default();
    assert!(head.parse::<commands::LogPosition>().is_ok(), "{detailed}");
    assert!(
        detailed["projections"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{detailed}"
    );
    assert!(detailed["scheduler"].is_object(), "{detailed}");
    // The outbox's counts by status (empty until something is queued).
    assert!(detailed["outbox"]["messages"].is_object(), "{detailed}");
    assert_eq!(detailed["integrations"]["stripe"]["status"], "disabled");

    let version: serde_json::Value = reqwest::get(format!("{}/api/version", server.base))
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    tests::health::assert_no_failures(&server.base).await;
}

#[tokio::test]
async fn the_server_chooses_the_request_id_whatever_the_client_sends() {
    let dir = TempDir::new();
    let server = start(&dir.0, None).await;
    let r = reqwest::Client::new()
        .get(format!("{}/api/health", server.base))
        .header("x-request-id", "req-from-client")
        .send()
        .await
        .expect("health");
    // Audit entries and logs correlate on it: a client must not choose (or forge) it.
    let id = r.headers()["x-request-id"].to_str().expect("ascii");
    assert_ne!(id, "req-from-client");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    // The API's answers may load or run nothing; HSTS for when TLS is in front.
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .expect("ascii")
        .starts_with("max-age="));
    let graphiql = reqwest::get(format!("{}/graphql", server.base))
        .await
        .expect("graphiql");
    let csp = graphiql.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        csp.contains("https://unpkg.com") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    tests::health::assert_no_failures(&server.base).await;
}

#[tokio::test]
async fn graphql_answers_health_and_version_on_postgres() {
    let db = TestDb::new(Engine::Postgres).await;
    let dir = TempDir::new();
    let server = start(&dir.0, Some(&db.url)).await;
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.base))
        .json(&serde_json::json!({"query": "{ health { status engine headPosition } version { version build } }"}))
        .send()
        .await
        .expect("graphql")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"]["health"]["engine"], "postgresql", "{body}");
    assert_eq!(body["data"]["health"]["status"], "ok");
    assert_eq!(
        body["data"]["version"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    let graphiql = reqwest::get(format!("{}/graphql", server.base))
        .await
        .expect("graphiql");
    assert!(graphiql.text().await.expect("html").contains("graphiql"));
    tests::health::assert_no_failures(&server.base).await;
}

#[tokio::test]
async fn a_deeply_nested_graphql_query_is_refused_with_an_error() {
    let dir = TempDir::new();
    let server = start(&dir.0, None).await;
    // 24 levels of `ofType`, past the introspection depth limit of 20 (GraphiQL's
    // standard query needs 14; see introspection.rs).
    let q = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(24),
        "} ".repeat(24)
    );
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.base))
        .json(&serde_json::json!({ "query": q }))
        .send()
        .await
        .expect("graphql")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
        "{body}"
    );
    tests::health::assert_no_failures(&server.base).await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_early() {
    let dir = TempDir::new();
    let server = start(&dir.0, None).await;
    let r = reqwest::Client::new()
        .post(format!("{}/graphql", server.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    // Announced (Content-Length) or chunked, the same typed JSON error.
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE",
        "{body}"
    );
    // 2 MiB in 64 KiB chunks, without a Content-Length, over a raw socket.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = server.base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
        sock.write_all(
            b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("head");
        let chunk = [b' '; 64 * 1024];
        for _ in 0..32 {
            // The server may answer and close before the last chunk: that is the point.
            if sock
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .is_err()
                || sock.write_all(&chunk).await.is_err()
                || sock.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
        let mut out = Vec::new();
        let _ = sock.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).to_string()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
    // Still serving.
    assert!(reqwest::get(format!("{}/api/health", server.base))
        .await
        .expect("health")
        .status()
        .is_success());
    tests::health::assert_no_failures(&server.base).await;
}

fn run_to_exit(cwd: &std::path::Path, envs: &[(&str, &str)]) -> (i32, String) {
    let mut c = command(cwd);
    c.env("BIND_ADDR", format!("127.0.0.1:{}", free_port()));
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn an_unparsable_database_url_stops_the_server_with_a_clear_message() {
    let dir = TempDir::new();
    let (code, stderr) = run_to_exit(&dir.0, &[("DATABASE_URL", "mysql://root:topsecret@db/crm")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unsupported scheme"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "password leaked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_database_that_is_down_at_start_stops_the_server_with_a_clear_message() {
    let dir = TempDir::new();
    let (code, stderr) = run_to_exit(
        &dir.0,
        &[("DATABASE_URL", "postgres://crm:topsecret@127.0.0.1:1/crm")],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "password leaked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_short_cron_secret_stops_the_server() {
    let dir = TempDir::new();
    let (code, stderr) = run_to_exit(&dir.0, &[("CRON_SECRET", "too-short")]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("CRON_SECRET must be at least 32 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short"), "secret leaked: {stderr}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = TempDir::new();
    let port = free_port();
    let mut child = command(&dir.0)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

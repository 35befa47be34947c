//! Support for the integration tests: a throwaway database per test on each
//! engine, and a small `Counter` aggregate for exercising the event store.

pub mod app;
pub mod app_support;
pub mod counter;
pub mod health;
pub mod rebuild;
pub mod server;
pub mod standins;

pub use server::ServerProcess;

use commands::{DatabaseUrl, EventLog, LogOptions};

/// The engines every conformance test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (needs `TEST_DATABASE_URL`).
    Postgres,
    /// Embedded SQLite (a temporary file).
    Sqlite,
}

/// A fresh, empty database for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The `DATABASE_URL` of the fresh database.
    pub url: String,
    _dir: Option<TempDir>,
    /// PostgreSQL: (admin URL, database name), dropped with the TestDb.
    pg: Option<(String, String)>,
}

impl Drop for TestDb {
    /// Drops a PostgreSQL test database, so that a long-lived server does not
    /// fill its disk; failures are ignored (a throwaway cluster goes anyway).
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TempDir {
    /// Creates a unique directory under the system temp dir.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("dirtfree-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The admin URL of the test PostgreSQL server.
///
/// # Panics
/// When `TEST_DATABASE_URL` is unset: run the suite through
/// `scripts/with-postgres.sh` (the README's test command does).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with `scripts/with-postgres.sh cargo test --workspace` \
         (it starts a throwaway PostgreSQL 15)",
    )
}

impl TestDb {
    /// Creates an empty database on `engine`.
    ///
    /// # Panics
    /// When the database cannot be created.
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .expect("connect to the test PostgreSQL");
                sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(b, _)| b)
                    .to_string();
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg: Some((admin.clone(), name)),
                }
            }
            Engine::Sqlite => {
                let dir = TempDir::new();
                let url = format!("sqlite://{}", dir.0.join("events.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }

    /// Opens the event log on this database.
    ///
    /// # Panics
    /// When it cannot be opened.
    pub async fn log(&self) -> EventLog {
        let url = DatabaseUrl::parse(Some(&self.url)).expect("valid test url");
        EventLog::connect(&url, &LogOptions::default())
            .await
            .expect("open event log")
    }
}

/// Events in the log other than the scheduler's own job-run records (a
/// running server records its start-up runs at any moment). Counts rows
/// directly, so events an open transaction holds back from readers count too.
///
/// # Panics
/// When the database cannot be read.
pub async fn business_event_count(log: &EventLog) -> u64 {
    let sql = "SELECT COUNT(*) FROM events WHERE aggregate_type <> 'JobRun'";
    let n: i64 = match log {
        EventLog::Postgres(pg) => sqlx::query_scalar(sql).fetch_one(pg.pool()).await,
        EventLog::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.reader()).await,
        #[allow(unreachable_patterns)]
        _ => panic!("business_event_count supports PostgreSQL and SQLite"),
    }
    .expect("count events");
    n as u64
}

/// Generates `postgres::NAME` and `sqlite::NAME` tests calling `NAME(Engine)`:
/// one suite, run unchanged on both engines.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Engine::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Engine::Sqlite).await
                }
            )*
        }
    };
}

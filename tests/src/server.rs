//! The server binary as a child process on a free port, for tests and benches
//! that talk to it over HTTP as a client would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `<base>/graphql`.
    pub url: String,
    _dir: TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB (Linux `/proc/<pid>/status`), 0 when unknown.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_dirtfree-api")`) in a fresh working
    /// directory with only `envs` configured (no inherited `DATABASE_URL`: without one it
    /// serves the embedded default), and waits up to `ready_within` for `/api/health/ready`.
    ///
    /// # Panics
    /// When it cannot start or does not become healthy in time.
    pub async fn start(binary: &str, envs: &[(&str, &str)], ready_within: Duration) -> Self {
        Self::spawn(binary, envs, ready_within, false).await
    }

    /// As [`ServerProcess::start`], but with nothing of the caller's environment except
    /// `PATH`: for tests whose outcome depends on which settings are absent (no webhook
    /// secret, no `CRON_SECRET`).
    ///
    /// # Panics
    /// When it cannot start or does not become healthy in time.
    pub async fn start_hermetic(
        binary: &str,
        envs: &[(&str, &str)],
        ready_within: Duration,
    ) -> Self {
        Self::spawn(binary, envs, ready_within, true).await
    }

    async fn spawn(
        binary: &str,
        envs: &[(&str, &str)],
        ready_within: Duration,
        hermetic: bool,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let dir = TempDir::new();
        let mut c = Command::new(binary);
        if hermetic {
            c.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
        }
        c.current_dir(&dir.0)
            .env_remove("DATABASE_URL")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            // Tests send marketing at whatever hour they run; those about quiet hours set them.
            .env("QUIET_HOURS", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in envs {
            c.env(k, v);
        }
        let base = format!("http://127.0.0.1:{port}");
        let server = ServerProcess {
            child: c.spawn().expect("start server"),
            url: format!("{base}/graphql"),
            base,
            _dir: dir,
        };
        let deadline = Instant::now() + ready_within;
        while !reqwest::get(format!("{}/api/health/ready", server.base))
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

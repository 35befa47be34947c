//! The end of every scenario against a running server: whatever the scenario sent, no
//! projection and no policy may have stopped on it. A projection that fails on an event
//! stops the read side for everyone while the API keeps answering, so a scenario that
//! only checks its own answers would pass over it.

use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the read side may take to handle what a scenario wrote before it ends.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Asks `GET {base}/api/health/detailed` until every projection and policy has handled the
/// event log up to its head at the time of the call (or one of them has failed), and panics
/// listing every failure (see [`failures`]).
///
/// # Panics
/// When anything failed, the read side did not catch up within a minute, or the endpoint
/// does not answer with JSON.
pub async fn assert_no_failures(base: &str) {
    let found = failures(base).await;
    assert!(
        found.is_empty(),
        "{base}/api/health/detailed reports {} failure(s):\n  - {}",
        found.len(),
        found.join("\n  - ")
    );
}

/// What [`assert_no_failures`] checks, as a list (empty when all is well), for tests that
/// collect their findings and report them together: a projection whose `state` is not
/// `running`, or with a `lastError`, or with `parked` events; a policy with a last error
/// (stopped or retrying) or parked events; an overall `status` other than `ok`; and whoever
/// had not handled the head position after a minute.
///
/// # Panics
/// When the endpoint does not answer with JSON.
pub async fn failures(base: &str) -> Vec<String> {
    let url = format!("{base}/api/health/detailed");
    let mut head: Option<(u64, u64)> = None;
    let deadline = Instant::now() + CATCH_UP;
    // A server still starting answers 503 `starting` without the detail: wait until it is
    // ready (a restarted server catches its read models up first).
    while !reqwest::get(format!("{base}/api/health/ready"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            return vec![format!(
                "{base} did not become ready in {} s",
                CATCH_UP.as_secs()
            )];
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let body = detailed(&url).await;
        // Everything written before this call: the head the first answer reports.
        let target = *head.get_or_insert_with(|| {
            body["eventStore"]["headPosition"]
                .as_str()
                .and_then(position)
                .unwrap_or_default()
        });
        let failed = failed(&body);
        let behind = behind(&body, target);
        if !failed.is_empty() || behind.is_empty() || Instant::now() > deadline {
            let mut all = failed;
            if !behind.is_empty() {
                all.push(format!(
                    "not caught up with head {}.{} after {} s: {}",
                    target.0,
                    target.1,
                    CATCH_UP.as_secs(),
                    behind.join(", ")
                ));
            }
            // Degraded for another reason (the database): say so with the whole answer.
            if all.is_empty() && body["status"] != "ok" {
                all.push(format!("overall status {}: {body}", body["status"]));
            }
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn detailed(url: &str) -> Value {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    // 503 is the answer while something failed: the body says what.
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    // The detail answers the server's own machine (or a METRICS_TOKEN holder) only.
    assert!(
        status != reqwest::StatusCode::UNAUTHORIZED,
        "GET {url} answered 401: ask from the server's machine without X-Forwarded-For \
         (the detail answers loopback clients, or METRICS_TOKEN): {text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("GET {url} answered {status} without JSON: {text}"))
}

/// `tx.seq` as a pair that orders as the log does.
fn position(s: &str) -> Option<(u64, u64)> {
    let (tx, seq) = s.split_once('.')?;
    Some((tx.parse().ok()?, seq.parse().ok()?))
}

/// A projection's or policy's own name, for messages.
fn name(item: &Value) -> String {
    item["name"].as_str().unwrap_or("<unnamed>").to_string()
}

/// A parked count (or list of parked events) above zero.
fn parked(item: &Value) -> Option<String> {
    match &item["parked"] {
        Value::Number(n) if n.as_u64().is_some_and(|n| n > 0) => Some(n.to_string()),
        Value::Array(a) if !a.is_empty() => Some(Value::Array(a.clone()).to_string()),
        _ => None,
    }
}

/// Every projection and policy that failed, one line each with what the endpoint says.
fn failed(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match body["projections"].as_array() {
        Some(list) => {
            for p in list {
                let bad =
                    p["state"] != "running" || !p["lastError"].is_null() || parked(p).is_some();
                if bad {
                    out.push(format!("projection {}: {p}", name(p)));
                }
            }
        }
        None => out.push(format!("projections unreadable: {}", body["projections"])),
    }
    match body["policies"].as_array() {
        Some(list) => {
            for p in list {
                // Serialized by field name: `last_error` today.
                let error = if p["lastError"].is_null() {
                    &p["last_error"]
                } else {
                    &p["lastError"]
                };
                if !error.is_null() || parked(p).is_some() {
                    out.push(format!("policy {}: {p}", name(p)));
                }
            }
        }
        None => out.push(format!("policies unreadable: {}", body["policies"])),
    }
    out
}

/// Projections and policies that have not yet handled `target` (a position in a shape this
/// does not know counts as handled: the failure checks still apply).
fn behind(body: &Value, target: (u64, u64)) -> Vec<String> {
    let mut out = Vec::new();
    for p in body["projections"].as_array().into_iter().flatten() {
        let at = p["position"].as_str().and_then(position);
        if at.is_some_and(|at| at < target) {
            out.push(format!("projection {} at {}", name(p), p["position"]));
        }
    }
    for p in body["policies"].as_array().into_iter().flatten() {
        let c = &p["checkpoint"];
        let at = match (c["tx"].as_u64(), c["seq"].as_u64()) {
            (Some(tx), Some(seq)) => Some((tx, seq)),
            _ => c.as_str().and_then(position),
        };
        if at.is_some_and(|at| at < target) {
            out.push(format!("policy {} at {c}", name(p)));
        }
    }
    out
}

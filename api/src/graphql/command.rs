//! One command as the caller, and the wait until the read models show it: what every
//! mutation does between parsing its input and building its payload.

use commands::{AppAggregate, CommandOutcome, Commands, EventMetadata};

use super::context::{self, RequestCtx};
use super::errors;
use crate::state::AppState;

/// A command's outcome, and its log position once the read models include it.
#[derive(Debug)]
pub struct Executed {
    /// What the command recorded (or, for a retry, replayed).
    pub outcome: CommandOutcome,
    /// Position of its last event, for the payload and `sync` (empty when it recorded none).
    pub position: String,
}

/// Runs `cmd` on aggregate `id` as `actor`, keyed by the client's idempotency `key` (scoped
/// to its sender), without waiting for the read models: for a step that more follow.
///
/// # Errors
/// The command's refusal, mapped as every resolver maps it ([`errors::app`]).
pub async fn run<A: AppAggregate>(
    rc: &RequestCtx,
    on: Commands<'_, A>,
    id: A::Id,
    (actor, meta): (domain::Actor, EventMetadata),
    key: Option<&String>,
    cmd: A::Cmd,
) -> async_graphql::Result<CommandOutcome> {
    on.execute(id, actor, cmd, &context::with_key(meta, key))
        .await
        .map_err(|e| errors::app(&rc.request_id, e))
}

/// [`run`], then waits (as [`settle`] does) until the read models show what it did.
///
/// # Errors
/// As [`run`]; the wait itself does not fail.
pub async fn execute<A: AppAggregate>(
    state: &AppState,
    rc: &RequestCtx,
    on: Commands<'_, A>,
    id: A::Id,
    by: (domain::Actor, EventMetadata),
    key: Option<&String>,
    cmd: A::Cmd,
) -> async_graphql::Result<Executed> {
    let outcome = run(rc, on, id, by, key, cmd).await?;
    let position = settle(state, &outcome).await;
    Ok(Executed { outcome, position })
}

/// Waits (at most 5 s) for the read models to include `outcome`'s last event; its position.
pub async fn settle(state: &AppState, outcome: &CommandOutcome) -> String {
    match outcome.last_position() {
        Some(p) => {
            let _ = state
                .projections
                .wait_for(p, std::time::Duration::from_secs(5))
                .await;
            p.to_string()
        }
        None => String::new(),
    }
}

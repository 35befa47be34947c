//! Who is asking, from where, under which request id.

use async_graphql::Context;
use axum::http::HeaderMap;
use chrono::Utc;
use commands::EventMetadata;
use domain::ids::{CustomerId, StaffUserId};
use domain::ports::Role;

use super::errors;
use crate::state::AppState;

/// The signed-in principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A staff user with a role.
    Staff {
        /// Who.
        id: StaffUserId,
        /// Role.
        role: Role,
    },
    /// A customer in the portal.
    Customer {
        /// Who.
        id: CustomerId,
    },
}

/// Per-request data.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// The principal, if a valid token came with the request.
    pub principal: Option<Principal>,
    /// The request id (also in every log line).
    pub request_id: String,
    /// Client address.
    pub client_ip: String,
    /// SHA-256 of the bearer token, for logout.
    pub token_hash: Option<String>,
}

pub use worker::accounts::token_hash;

/// The client's address: the peer's, unless the peer is a trusted proxy, then
/// the rightmost `X-Forwarded-For` entry that is not one (entries to its left
/// were written by the client and prove nothing).
pub fn client_ip(
    peer: std::net::IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    forwarded_for
        .into_iter()
        .flat_map(|h| h.split(','))
        .rev()
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// Reads the bearer token and resolves its session.
pub async fn from_headers(
    state: &AppState,
    headers: &HeaderMap,
    addr: std::net::SocketAddr,
) -> RequestCtx {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let mut ctx = RequestCtx {
        principal: None,
        request_id,
        client_ip: client_ip(
            addr.ip(),
            headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            &state.config.trusted_proxies,
        )
        .to_string(),
        token_hash: None,
    };
    let Some(token) = token else { return ctx };
    let hash = token_hash(token);
    // A store that cannot say fails closed: the request is anonymous.
    if let Ok(Some(p)) = principal_of_session(state, &hash).await {
        ctx.principal = Some(p);
        ctx.token_hash = Some(hash);
    }
    ctx
}

/// Who the session with this token hash speaks for *now*: its staff user with
/// their current role while they are active, or its customer while they are
/// neither erased nor merged away. So a demotion takes effect on the next
/// request and a deactivation, erasure or merge ends every session at once,
/// on HTTP and on open WebSockets (which ask again twice a second). `None` for
/// an unknown, revoked or expired session, or a user who lost their rights;
/// an error when the store cannot say (HTTP fails closed on it; a socket closes
/// with 1011 instead of telling its client the session ended).
///
/// # Errors
/// [`projections::DbError`] when the sessions cannot be read.
pub async fn principal_of_session(
    state: &AppState,
    token_hash: &str,
) -> Result<Option<Principal>, projections::DbError> {
    let row =
        worker::sessions::principal_row(state.projections.db(), token_hash, Utc::now()).await?;
    Ok(row.as_ref().and_then(principal_of_row))
}

/// The principal a session row (with its user's current state) speaks for.
fn principal_of_row(r: &projections::JsonRow) -> Option<Principal> {
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let int = |k: &str| r.get(k).and_then(serde_json::Value::as_i64);
    match s("principal_kind") {
        "staff" if int("staff_active") == Some(1) => {
            let id = StaffUserId::parse(s("principal_id")).ok()?;
            let role = parse_role(s("staff_role"))?;
            Some(Principal::Staff { id, role })
        }
        // A customer row exists, is not erased and was not merged into another.
        "customer"
            if !s("customer").is_empty()
                && int("erased") == Some(0)
                && r.get("merged_into").is_none_or(serde_json::Value::is_null) =>
        {
            CustomerId::parse(s("principal_id"))
                .ok()
                .map(|id| Principal::Customer { id })
        }
        _ => None,
    }
}

/// A role as sessions and read models store it (the reverse of [`parse_role`]).
pub fn stored_role(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Manager => "manager",
        Role::Staff => "staff",
    }
}

/// Parses a stored role.
pub fn parse_role(s: &str) -> Option<Role> {
    match s {
        "admin" => Some(Role::Admin),
        "manager" => Some(Role::Manager),
        "staff" => Some(Role::Staff),
        _ => None,
    }
}

fn rank(r: Role) -> u8 {
    match r {
        Role::Admin => 3,
        Role::Manager => 2,
        Role::Staff => 1,
    }
}

/// The request data and the shared state.
pub fn parts<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a AppState, &'a RequestCtx)> {
    Ok((ctx.data::<AppState>()?, ctx.data::<RequestCtx>()?))
}

/// The signed-in staff user as the domain actor, and metadata for their commands.
/// Takes no role: the operation's guard ([`Allow`]) checked it before the resolver ran.
/// Anyone else is refused (`UNAUTHENTICATED` without a session, `FORBIDDEN` for a portal
/// customer), so staff's branch of an operation that admits customers too stays theirs.
pub fn staff_actor(rc: &RequestCtx) -> async_graphql::Result<(domain::Actor, EventMetadata)> {
    match &rc.principal {
        Some(Principal::Staff { id, role }) => Ok((
            domain::Actor::Staff {
                id: *id,
                role: *role,
            },
            meta(rc, commands::Actor::Staff(id.to_string())),
        )),
        Some(Principal::Customer { .. }) => {
            Err(errors::forbidden("do this from the customer portal"))
        }
        None => Err(errors::unauthenticated()),
    }
}

/// Who may call an operation, declared once, on it (`#[graphql(guard = "Allow::Staff(Role::Manager)")]`),
/// and checked before the resolver reads its input: an unauthorised caller learns nothing
/// about whether the input was valid or the thing exists. Resolvers take the actor from
/// [`staff_actor`] / [`customer`] without naming a role again, and check ownership where a
/// portal customer is allowed. A refusal names the operation ("your role may not use
/// mergeCustomers"). Routes outside GraphQL ask [`Allow::admits`] themselves.
#[derive(Debug, Clone, Copy)]
pub enum Allow {
    /// Staff with at least this role.
    Staff(Role),
    /// Staff with at least this role, or a portal customer (on their own data).
    StaffOrCustomer(Role),
    /// Portal customers only.
    Customer,
    /// Anyone signed in.
    SignedIn,
}

impl Allow {
    /// Whether the request's principal may call an operation open to `self`; a refusal says
    /// the caller may not `what` ("use mergeCustomers", "download reports").
    ///
    /// # Errors
    /// `UNAUTHENTICATED` without a session, `FORBIDDEN` for anyone else not admitted.
    pub fn admits(self, rc: &RequestCtx, what: &str) -> async_graphql::Result<()> {
        match (self, &rc.principal) {
            (_, None) => Err(errors::unauthenticated()),
            (Allow::SignedIn, _)
            | (Allow::StaffOrCustomer(_) | Allow::Customer, Some(Principal::Customer { .. })) => {
                Ok(())
            }
            (
                Allow::Staff(min) | Allow::StaffOrCustomer(min),
                Some(Principal::Staff { role, .. }),
            ) => {
                if rank(*role) >= rank(min) {
                    Ok(())
                } else {
                    Err(errors::forbidden(what))
                }
            }
            (Allow::Staff(_), Some(Principal::Customer { .. })) => Err(errors::forbidden(
                &format!("{what} from the customer portal"),
            )),
            (Allow::Customer, Some(Principal::Staff { .. })) => Err(errors::forbidden(&format!(
                "{what}: it is for portal customers"
            ))),
        }
    }
}

/// What a refusal of the operation `ctx` resolves says the caller may not do: "use" and its
/// field name (`mergeCustomers`).
pub fn use_of(ctx: &Context<'_>) -> String {
    format!("use {}", ctx.field().name())
}

impl async_graphql::Guard for Allow {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        self.admits(ctx.data::<RequestCtx>()?, &use_of(ctx))
    }
}

/// A portal customer; the domain actor and metadata.
pub fn customer(
    rc: &RequestCtx,
) -> async_graphql::Result<(CustomerId, domain::Actor, EventMetadata)> {
    match &rc.principal {
        Some(Principal::Customer { id }) => Ok((
            *id,
            domain::Actor::Customer { id: *id },
            meta(rc, commands::Actor::Customer(id.to_string())),
        )),
        Some(_) => Err(errors::forbidden("use the customer portal")),
        None => Err(errors::unauthenticated()),
    }
}

/// The signed-in caller, staff user or portal customer, as the domain actor with metadata:
/// for operations open to both (`Allow::StaffOrCustomer`), whose domain decides what each
/// may do.
pub fn actor(rc: &RequestCtx) -> async_graphql::Result<(domain::Actor, EventMetadata)> {
    match &rc.principal {
        Some(Principal::Customer { .. }) => customer(rc).map(|(_, actor, meta)| (actor, meta)),
        _ => staff_actor(rc),
    }
}

/// Metadata for a command of this request.
pub fn meta(rc: &RequestCtx, actor: commands::Actor) -> EventMetadata {
    EventMetadata::new(actor, Utc::now())
        .with_request_id(rc.request_id.clone())
        .with_client_ip(rc.client_ip.clone())
}

/// Adds the client's idempotency key, if given, scoped to who sent it
/// ([`EventMetadata::with_sender_key`]).
pub fn with_key(m: EventMetadata, key: Option<&String>) -> EventMetadata {
    m.with_sender_key(key.map(String::as_str))
}

/// The stored form of `key` for this request's principal (as [`with_key`] stores it).
fn scoped_key(rc: &RequestCtx, key: &str) -> String {
    let actor = match &rc.principal {
        Some(Principal::Staff { id, .. }) => commands::Actor::Staff(id.to_string()),
        Some(Principal::Customer { id }) => commands::Actor::Customer(id.to_string()),
        None => commands::Actor::System("anonymous".into()),
    };
    format!("{}:{key}", actor.encode())
}

/// The stored outcome of this principal's earlier request with `key`, if any.
async fn earlier(
    state: &AppState,
    rc: &RequestCtx,
    key: Option<&String>,
) -> Option<commands::store::StoredOutcome> {
    let k = key?;
    state
        .log
        .find_idempotent(&scoped_key(rc, k))
        .await
        .ok()
        .flatten()
}

/// Whether this principal already used `key` (its first outcome is then replayed).
pub async fn key_was_used(state: &AppState, rc: &RequestCtx, key: Option<&String>) -> bool {
    earlier(state, rc, key).await.is_some()
}

/// The id for a create command. With an idempotency key it derives from the
/// key and its sender (UUID v5), so concurrent retries meet on one aggregate:
/// one creates it, the others find its outcome under the key. Keys first used
/// before ids were derived keep the aggregate their first attempt created.
pub async fn id_for_create(state: &AppState, rc: &RequestCtx, key: Option<&String>) -> uuid::Uuid {
    let Some(k) = key else {
        return uuid::Uuid::new_v4();
    };
    earlier(state, rc, key)
        .await
        .and_then(|p| uuid::Uuid::parse_str(&p.aggregate_id).ok())
        .unwrap_or_else(|| derived_id(&scoped_key(rc, k)))
}

/// The aggregate id a create with this (scoped) key addresses.
pub fn derived_id(scoped_key: &str) -> uuid::Uuid {
    /// Namespace of ids derived from idempotency keys (a fixed random UUID).
    const CREATES: uuid::Uuid = uuid::Uuid::from_u128(0x5d1e_7c8e_4a3b_4f1c_9e2d_8b7a_6c5d_4e3f);
    uuid::Uuid::new_v5(&CREATES, scoped_key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxy = [ip("10.0.0.5")];
        // Straight from the client: the header is the client's own claim.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("198.51.100.1"), &proxy),
            ip("203.0.113.9")
        );
        // Through the proxy: the address it appended.
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("198.51.100.1"), &proxy),
            ip("198.51.100.1")
        );
        // A client that forges entries to the left does not choose its address.
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("1.2.3.4, 198.51.100.1"), &proxy),
            ip("198.51.100.1")
        );
        // Chained trusted proxies are skipped; garbage and no header fall back to the peer.
        let two = [ip("10.0.0.5"), ip("10.0.0.6")];
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("198.51.100.1, 10.0.0.6"), &two),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("not-an-ip"), &proxy),
            ip("10.0.0.5")
        );
        assert_eq!(client_ip(ip("10.0.0.5"), None, &proxy), ip("10.0.0.5"));
    }
}

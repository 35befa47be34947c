//! Seeing a message before customers do (issue #16): a promotion rendered for one customer
//! (`promotionPreview`), a proof of it in one's own inbox (`sendPromotionProof`), and an
//! admin's test send to check an integration after deploying (`sendTestMessage`, also
//! `POST /api/test/send-sms` and `/api/test/send-email`). Proofs and test sends are
//! `OutboundMessage`s of kind `test`, through the outbox and the real vendor adapters,
//! recorded like any message.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::Utc;
use domain::consent::Channel;
use domain::ids::{CustomerId, OutboundMessageId, PromotionId};
use domain::message::{MessageCommand, MessageKind, Recipient};
use domain::ports::Role;
use domain::values::{Email, PhoneNumber};
use worker::outbox::compose;

use super::command;
use super::context::{self, parts, Allow, RequestCtx};
use super::customers::MarketingChannel;
use super::errors;
use crate::state::AppState;

/// A message as its recipient would read it.
#[derive(SimpleObject, Debug)]
pub struct MessagePreview {
    /// SMS or email.
    pub channel: MarketingChannel,
    /// Email subject (none for SMS).
    pub subject: Option<String>,
    /// The text, rendered (an email's unsubscribe link is a sample here).
    pub text: String,
}

/// A message on its way.
#[derive(SimpleObject, Debug)]
pub struct MessageQueuedPayload {
    /// The outbound message (see `outboundMessages`).
    pub message_id: ID,
    /// Log position (for `sync`).
    pub position: String,
}

/// Sending a promotion's proof to oneself.
#[derive(InputObject, Debug)]
pub struct SendPromotionProofInput {
    /// The promotion.
    pub id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An admin's test send.
#[derive(InputObject, Debug)]
pub struct SendTestMessageInput {
    /// SMS or email.
    pub channel: MarketingChannel,
    /// A phone number (SMS) or an email address.
    pub to: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The sample unsubscribe link a preview shows (not a working token).
const SAMPLE_UNSUBSCRIBE: &str = "{public_url}/api/unsubscribe/sample";

fn channel_of(c: Channel) -> MarketingChannel {
    match c {
        Channel::Sms => MarketingChannel::Sms,
        Channel::Email => MarketingChannel::Email,
    }
}

async fn content(
    state: &AppState,
    rc: &RequestCtx,
    id: &ID,
) -> async_graphql::Result<(PromotionId, domain::promotion::PromotionContent)> {
    let pid = PromotionId::parse(id).map_err(|_| errors::invalid("id", "not a promotion id"))?;
    compose::promotion_content(&state.crm, pid)
        .await
        .map_err(|e| errors::app(&rc.request_id, e))?
        .map(|c| (pid, c))
        .ok_or_else(|| errors::not_found("promotion", id.as_str()))
}

/// The promotion's text for a customer, as the outbox would send it.
async fn render_for(
    state: &AppState,
    rc: &RequestCtx,
    content: &domain::promotion::PromotionContent,
    customer_id: CustomerId,
    customer: &domain::customer::Customer,
) -> async_graphql::Result<String> {
    let public_url = public_url(state);
    let link = SAMPLE_UNSUBSCRIBE.replace(commands::policies::outbox::PUBLIC_URL, &public_url);
    let link = (content.channel == Channel::Email).then_some(link);
    let values = compose::values(
        state.projections.db(),
        state.crm.services().tz,
        &public_url,
        content,
        customer_id,
        customer,
        link.as_deref(),
    )
    .await
    .map_err(|e| errors::app(&rc.request_id, e))?;
    let text = compose::promotion_text(content.template.as_str(), content, &values)
        .map_err(|reason| errors::invalid("template", reason))?;
    Ok(compose::finish_marketing(
        text,
        content.channel,
        link.as_deref(),
    ))
}

fn public_url(state: &AppState) -> String {
    state.config.outbox_settings().public_url
}

/// A `test` message to queue.
struct TestMessage {
    cause: String,
    channel: Channel,
    recipient: Recipient,
    subject: Option<String>,
    body: String,
}

async fn queue(
    state: &AppState,
    rc: &RequestCtx,
    meta: &commands::EventMetadata,
    m: TestMessage,
) -> async_graphql::Result<MessageQueuedPayload> {
    let TestMessage {
        cause,
        channel,
        recipient,
        subject,
        body,
    } = m;
    let id = OutboundMessageId::for_cause(&cause);
    let queue = MessageCommand::Queue {
        kind: MessageKind::Test,
        channel,
        recipient,
        cause,
        subject,
        body,
    };
    // The system sends it, on behalf of this request's staff user (in `meta`).
    let by = (domain::Actor::System, meta.clone());
    let done = command::execute(state, rc, state.crm.messages(), id, by, None, queue).await?;
    Ok(MessageQueuedPayload {
        message_id: ID(id.to_string()),
        position: done.position,
    })
}

/// The cause of a proof or test send: the key's when retried, else new.
fn cause(kind: &str, rc: &RequestCtx, key: Option<&String>) -> String {
    let who = match &rc.principal {
        Some(context::Principal::Staff { id, .. }) => id.to_string(),
        _ => String::new(),
    };
    let nonce = match key {
        Some(k) => context::derived_id(&format!("{kind}:{who}:{k}")),
        None => uuid::Uuid::new_v4(),
    };
    format!("{kind}:{who}:{nonce}")
}

/// Who may send a test message, by `sendTestMessage` or its HTTP twin.
pub const TEST_SENDS: Allow = Allow::Staff(Role::Admin);

/// Queues an admin's test message to `to` (checked for the channel); the caller checked
/// [`TEST_SENDS`].
///
/// # Errors
/// `VALIDATION` on `to`, or the store's refusal.
pub async fn send_test(
    state: &AppState,
    rc: &RequestCtx,
    channel: Channel,
    to: &str,
    key: Option<&String>,
) -> async_graphql::Result<MessageQueuedPayload> {
    let (_, meta) = context::staff_actor(rc)?;
    let recipient = match channel {
        Channel::Sms => Recipient::Phone {
            number: PhoneNumber::parse(to).map_err(|e| errors::invalid("to", e.message))?,
        },
        Channel::Email => Recipient::Email {
            address: Email::parse(to).map_err(|e| errors::invalid("to", e.message))?,
        },
    };
    let when = Utc::now()
        .with_timezone(&state.crm.services().tz)
        .format("%B %-d, %Y %H:%M %Z");
    let message = TestMessage {
        cause: cause("TestSend", rc, key),
        channel,
        recipient,
        subject: (channel == Channel::Email).then(|| "Dirt Free CRM test email".to_string()),
        body: format!("This is a test message from Dirt Free CRM, sent {when}. Nothing to do."),
    };
    queue(state, rc, &meta, message).await
}

/// Previews.
#[derive(Debug, Default)]
pub struct ProofQuery;

#[Object]
impl ProofQuery {
    /// A promotion as one customer would read it: its template rendered with their details,
    /// with the opt-out sentence (SMS) or a sample unsubscribe link (email) as sent (managers).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn promotion_preview(
        &self,
        ctx: &Context<'_>,
        id: ID,
        customer_id: ID,
    ) -> async_graphql::Result<MessagePreview> {
        let (state, rc) = parts(ctx)?;
        let (_, content) = content(state, rc, &id).await?;
        let cid = CustomerId::parse(&customer_id)
            .map_err(|_| errors::invalid("customerId", "not a customer id"))?;
        let customer = state
            .crm
            .customers()
            .load(cid)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?
            .aggregate;
        if customer.id().is_none() {
            return Err(errors::not_found("customer", customer_id.as_str()));
        }
        let text = render_for(state, rc, &content, cid, &customer).await?;
        Ok(MessagePreview {
            channel: channel_of(content.channel),
            subject: (content.channel == Channel::Email).then(|| content.name.to_string()),
            text,
        })
    }
}

/// Proofs and test sends.
#[derive(Debug, Default)]
pub struct ProofMutation;

#[Object]
impl ProofMutation {
    /// Emails the promotion, rendered with sample customer details in the caller's name, to
    /// the caller's own address (managers), through the outbox as a `test` message.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn send_promotion_proof(
        &self,
        ctx: &Context<'_>,
        input: SendPromotionProofInput,
    ) -> async_graphql::Result<MessageQueuedPayload> {
        let (state, rc) = parts(ctx)?;
        let (actor, meta) = context::staff_actor(rc)?;
        let domain::Actor::Staff { id: me, .. } = actor else {
            return Err(errors::internal(&rc.request_id, &"a staff actor"));
        };
        let (pid, content) = content(state, rc, &input.id).await?;
        let staff = super::auth::staff_user(state, &me.to_string())
            .await
            .ok_or_else(|| errors::not_found("staffUser", &me.to_string()))?;
        let mut values = domain::template::sample_values();
        let first = staff.name.split_whitespace().next().unwrap_or_default();
        values.insert("first_name", first.to_string());
        values.insert("name", staff.name.clone());
        for (k, v) in [
            (
                "code",
                content.discount_code.as_ref().map(|c| c.to_string()),
            ),
            ("discount", content.discount.as_ref().map(|d| d.to_string())),
        ] {
            values.insert(k, v.unwrap_or_default());
        }
        let public = public_url(state);
        values.insert("booking_link", format!("{public}/book"));
        let link = (content.channel == Channel::Email)
            .then(|| SAMPLE_UNSUBSCRIBE.replace(commands::policies::outbox::PUBLIC_URL, &public));
        values.insert("unsubscribe_link", link.clone().unwrap_or_default());
        let text = compose::promotion_text(content.template.as_str(), &content, &values)
            .map_err(|reason| errors::invalid("template", reason))?;
        let text = compose::finish_marketing(text, content.channel, link.as_deref());
        let address =
            Email::parse(&staff.email).map_err(|e| errors::invalid("email", e.message))?;
        let message = TestMessage {
            cause: cause(
                &format!("PromotionProof:{pid}"),
                rc,
                input.idempotency_key.as_ref(),
            ),
            channel: Channel::Email,
            recipient: Recipient::Email { address },
            subject: Some(format!("[Proof] {}", content.name)),
            body: format!(
                "Proof of \"{}\" ({} message):\n\n{text}",
                content.name,
                match content.channel {
                    Channel::Sms => "SMS",
                    Channel::Email => "email",
                }
            ),
        };
        queue(state, rc, &meta, message).await
    }

    /// Sends one test SMS or email to `to` through the outbox and the configured vendor,
    /// recorded like any message (admins). Without a vendor it is recorded as not sent.
    #[graphql(guard = "TEST_SENDS")]
    async fn send_test_message(
        &self,
        ctx: &Context<'_>,
        input: SendTestMessageInput,
    ) -> async_graphql::Result<MessageQueuedPayload> {
        let (state, rc) = parts(ctx)?;
        let channel = Channel::from(input.channel);
        send_test(
            state,
            rc,
            channel,
            &input.to,
            input.idempotency_key.as_ref(),
        )
        .await
    }
}

/// The body of `POST /api/test/send-sms` and `/api/test/send-email`.
#[derive(Debug, serde::Deserialize)]
pub struct TestSendBody {
    /// A phone number (SMS) or an email address.
    pub to: String,
}

/// `POST /api/test/send-sms` and `/api/test/send-email` (the original product's), with an
/// admin's session token as `Authorization: Bearer …`: 202 with the message id; 401 without
/// a valid token, 403 for another role, 400 for a bad address — errors in the GraphQL shape.
pub fn test_send_routes(state: AppState) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/api/test/send-sms", post(http_send_sms))
        .route("/api/test/send-email", post(http_send_email))
        .with_state(state)
}

async fn http_send_sms(
    state: axum::extract::State<AppState>,
    addr: axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<axum::Json<TestSendBody>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    http_send(state, addr, headers, body, Channel::Sms).await
}

async fn http_send_email(
    state: axum::extract::State<AppState>,
    addr: axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<axum::Json<TestSendBody>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    http_send(state, addr, headers, body, Channel::Email).await
}

async fn http_send(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    body: Result<axum::Json<TestSendBody>, axum::extract::rejection::JsonRejection>,
    channel: Channel,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let rc = context::from_headers(&state, &headers, addr).await;
    if rc.principal.is_none() {
        return super::http_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "an admin's bearer token is required".into(),
        );
    }
    let axum::Json(body) = match body {
        Ok(b) => b,
        Err(e) => return super::http_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.body_text()),
    };
    if let Err(e) = TEST_SENDS.admits(&rc, "send test messages") {
        return super::http_graphql_error(&e);
    }
    match send_test(&state, &rc, channel, &body.to, None).await {
        Ok(p) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "messageId": p.message_id.0, "position": p.position })),
        )
            .into_response(),
        Err(e) => super::http_graphql_error(&e),
    }
}

//! What a recipient reads: a promotion's template rendered with the customer's details (issue
//! #16), a report's figures as HTML with the CSV attached, and the compliance parts of every
//! marketing message — an SMS's opt-out sentence, exactly once;
//! an email's unsubscribe link and `List-Unsubscribe` headers.
//!
//! Rendering happens when the message is sent, not when it is queued: the customer's name is
//! personal data and must not enter the message's events (which erasure cannot shred).

use std::collections::BTreeMap;

use chrono_tz::Tz;
use commands::{AppError, Crm, StoreError};
use domain::consent::Channel;
use domain::customer::Customer;
use domain::ids::{CustomerId, OutboundMessageId, PromotionId};
use domain::promotion::PromotionContent;
use domain::template;
use projections::{Param, ReadDb};

use super::Attachment;

/// What is sent: the text, and for email the headers, HTML version and attachments.
#[derive(Debug, Default)]
pub struct Composed {
    /// The text.
    pub body: String,
    /// Extra email headers.
    pub headers: Vec<(String, String)>,
    /// The HTML version of an email.
    pub html: Option<String>,
    /// Attached files.
    pub attachments: Vec<Attachment>,
}

impl Composed {
    /// Only a text.
    pub fn text(body: String) -> Self {
        Self {
            body,
            ..Self::default()
        }
    }
}

/// A report email: the text queued with it, and the run's figures as HTML with the CSV
/// attached, made from the run the message's cause names (the bytes the download gives).
///
/// # Errors
/// [`AppError`] when the report's stream cannot be read.
pub async fn report(crm: &Crm, cause: &str, body: String) -> Result<Composed, AppError> {
    let Some((report, sequence)) = commands::report_runs::of_message_cause(cause) else {
        return Ok(Composed::text(body));
    };
    let which = commands::report_runs::Which::AtSequence(sequence);
    let Some(run) = commands::report_runs::find(crm, report, which).await? else {
        return Ok(Composed::text(body));
    };
    Ok(Composed {
        html: Some(run.html()),
        attachments: vec![Attachment {
            filename: run.file_name(),
            content: run.csv().into_bytes(),
        }],
        ..Composed::text(body)
    })
}

/// The sentence every marketing SMS ends with (carriers require it).
pub const SMS_OPT_OUT: &str = "Reply STOP to opt out.";

fn store_error(e: impl std::fmt::Display) -> AppError {
    AppError::Store(StoreError::Database(e.to_string()))
}

/// The promotion a promotion message's cause (`Promotion:{id}:{sequence}`) names.
pub fn promotion_of(cause: &str) -> Option<PromotionId> {
    let mut parts = cause.split(':');
    (parts.next() == Some(domain::promotion::AGGREGATE_TYPE))
        .then(|| parts.next())
        .flatten()
        .and_then(|id| PromotionId::parse(id).ok())
}

/// The first word of a name ("Ada" of "Ada Lovelace").
fn first_name(name: &str) -> String {
    name.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn tier_name(tier: &str) -> String {
    let mut c = tier.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The values a promotion's template is rendered with for `customer`.
///
/// # Errors
/// [`AppError`] when the read model cannot be read.
pub async fn values(
    db: &ReadDb,
    tz: Tz,
    public_url: &str,
    content: &PromotionContent,
    customer_id: CustomerId,
    customer: &Customer,
    unsubscribe_link: Option<&str>,
) -> Result<BTreeMap<&'static str, String>, AppError> {
    let rows = db
        .query(
            "SELECT loyalty_points, tier FROM rm_customers WHERE customer_id = $1",
            &[Param::from(customer_id.to_string())],
        )
        .await
        .map_err(store_error)?;
    let row = rows.first();
    let points = row
        .and_then(|r| r.get("loyalty_points"))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let tier = row
        .and_then(|r| r.get("tier"))
        .and_then(|v| v.as_str())
        .unwrap_or("bronze");
    let name = customer.name().map(|n| n.to_string()).unwrap_or_default();
    let mut v = BTreeMap::new();
    v.insert("first_name", first_name(&name));
    v.insert("name", name);
    v.insert(
        "code",
        content
            .discount_code
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
    );
    v.insert(
        "discount",
        content
            .discount
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default(),
    );
    v.insert(
        "ends_on",
        content
            .ends_at
            .with_timezone(&tz)
            .format("%B %-d, %Y")
            .to_string(),
    );
    v.insert("booking_link", format!("{public_url}/book"));
    v.insert("points_balance", points.to_string());
    v.insert("tier", tier_name(tier));
    v.insert(
        "unsubscribe_link",
        unsubscribe_link.unwrap_or_default().to_string(),
    );
    Ok(v)
}

/// A promotion's text for one customer: the template rendered, its code quoted when the
/// template does not (as promotions always did).
///
/// # Errors
/// Why the template could not be rendered (names no value).
pub fn promotion_text(
    template_text: &str,
    content: &PromotionContent,
    values: &BTreeMap<&'static str, String>,
) -> Result<String, String> {
    let mut text = template::render(template_text, values)?;
    if let Some(code) = &content.discount_code {
        if !text.contains(code.as_str()) {
            text = format!("{text} Code: {code}.");
        }
    }
    Ok(text)
}

/// Whether a text tells the reader how to opt out already ("Reply STOP", "Text STOP"): the
/// rendered text (what a comment or an untaken branch says does not count), and a phrase, not
/// a word (a customer named Stopford, a one-stop shop do not count).
pub fn says_stop(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    ["REPLY STOP", "TEXT STOP", "SEND STOP"]
        .iter()
        .any(|s| upper.contains(s))
}

/// A marketing text finished for its channel: an SMS ends with [`SMS_OPT_OUT`] once (not
/// when the text [`says_stop`] already); an email gets the unsubscribe link unless the
/// template placed it.
pub fn finish_marketing(text: String, channel: Channel, unsubscribe_link: Option<&str>) -> String {
    match channel {
        Channel::Sms => {
            if says_stop(&text) {
                text
            } else {
                format!("{} {SMS_OPT_OUT}", text.trim_end())
            }
        }
        Channel::Email => match unsubscribe_link {
            Some(link) if !text.contains(link) => {
                format!("{}\n\nUnsubscribe: {link}", text.trim_end())
            }
            _ => text,
        },
    }
}

/// A new unsubscribe link for a marketing email to `customer`.
///
/// # Errors
/// [`AppError`] when the token cannot be stored.
pub async fn unsubscribe_link(
    db: &ReadDb,
    public_url: &str,
    customer: CustomerId,
    message: OutboundMessageId,
) -> Result<String, AppError> {
    let token = crate::unsubscribe::issue(db, customer, message)
        .await
        .map_err(store_error)?;
    Ok(format!("{public_url}{}/{token}", crate::unsubscribe::PATH))
}

/// The headers for a marketing email with this link: `List-Unsubscribe`, and, when the link
/// is https (RFC 8058 requires it), `List-Unsubscribe-Post` for one-click.
pub fn unsubscribe_headers(link: &str) -> Vec<(String, String)> {
    let mut h = vec![("List-Unsubscribe".into(), format!("<{link}>"))];
    if link.starts_with("https://") {
        h.push((
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into(),
        ));
    }
    h
}

/// The content of promotion `id` (for rendering its messages).
///
/// # Errors
/// [`AppError`] when the promotion cannot be loaded.
pub async fn promotion_content(
    crm: &Crm,
    id: PromotionId,
) -> Result<Option<PromotionContent>, AppError> {
    Ok(crm
        .promotions()
        .load(id)
        .await?
        .aggregate
        .content()
        .cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_end_an_sms_with_the_opt_out_sentence_once() {
        let text = "Hi Stopford, our one-stop shop is open.";
        let once = finish_marketing(text.into(), Channel::Sms, None);
        assert_eq!(
            once,
            "Hi Stopford, our one-stop shop is open. Reply STOP to opt out."
        );
        let written = "Hi Ada. Text STOP to end.";
        assert_eq!(
            finish_marketing(written.into(), Channel::Sms, None),
            written
        );
    }

    #[test]
    fn it_should_add_the_unsubscribe_link_to_an_email_unless_placed() {
        let link = "https://x.example/api/unsubscribe/t";
        let added = finish_marketing("Hi.".into(), Channel::Email, Some(link));
        assert_eq!(added, format!("Hi.\n\nUnsubscribe: {link}"));
        let placed = format!("Hi. Leave: {link}");
        assert_eq!(
            finish_marketing(placed.clone(), Channel::Email, Some(link)),
            placed
        );
    }

    #[test]
    fn it_should_offer_one_click_only_over_https() {
        assert_eq!(unsubscribe_headers("https://x.example/u/t").len(), 2);
        assert_eq!(unsubscribe_headers("http://127.0.0.1:8080/u/t").len(), 1);
    }

    #[test]
    fn it_should_name_the_promotion_of_a_promotion_message() {
        let id = PromotionId(uuid::Uuid::from_u128(7));
        assert_eq!(promotion_of(&format!("Promotion:{id}:3")), Some(id));
        assert_eq!(promotion_of(&format!("Opportunity:{id}:3")), None);
    }
}

//! Marketing consent: SMS keywords, consent sources, channels and the eligibility verdict that
//! promotions and review requests must respect.

use serde::{Deserialize, Serialize};

/// A carrier-style consent keyword found in an inbound SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKeyword {
    /// Stop sending marketing SMS.
    Stop,
    /// Resume.
    Start,
}

/// Words that opt a number out (the CTIA / Twilio list).
pub const STOP_KEYWORDS: [&str; 8] = [
    "STOP",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "STOPALL",
    "REVOKE",
    "OPTOUT",
    "CANCEL",
];
/// Words that opt a number back in.
pub const START_KEYWORDS: [&str; 2] = ["START", "UNSTOP"];

/// The consent keyword an inbound SMS consists of, if any.
///
/// Only the *whole* body counts (trimmed, any case): "stop" is a keyword, "please stop by at
/// 3pm" is a message for staff.
pub fn parse_sms_keyword(body: &str) -> Option<ConsentKeyword> {
    let word = body.trim().to_ascii_uppercase();
    if STOP_KEYWORDS.contains(&word.as_str()) {
        Some(ConsentKeyword::Stop)
    } else if START_KEYWORDS.contains(&word.as_str()) {
        Some(ConsentKeyword::Start)
    } else {
        None
    }
}

/// A channel marketing and notifications are sent through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Text message (Twilio).
    Sms,
    /// Email (Resend).
    Email,
}

/// Where a consent change came from (kept for proof of consent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConsentSource {
    /// Recorded by staff (e.g. on the phone).
    Staff,
    /// Changed by the customer in the portal.
    Portal,
    /// An inbound SMS keyword.
    SmsKeyword {
        /// The keyword as received, upper-cased (e.g. `STOP`).
        keyword: String,
    },
    /// An unsubscribe link in an email.
    UnsubscribeLink,
    /// Imported from the previous system.
    Import,
}

/// Why an address is suppressed for email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The address does not exist (permanent bounce).
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
}

/// Whether a customer may be sent marketing on a channel — computed from the Customer aggregate
/// ([`crate::customer::Customer::marketing_eligibility`]) and passed in commands to promotions
/// and review requests, which must respect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketingEligibility {
    /// Consent given, not opted out, not suppressed, has an address.
    Eligible,
    /// Never gave consent on this channel.
    NoConsent,
    /// Revoked consent (STOP, unsubscribe).
    OptedOut,
    /// Email suppressed after a hard bounce or complaint.
    Suppressed,
    /// No phone number / email address on file (or erased).
    NoAddress,
    /// The customer entered the number or address themselves and has not yet confirmed it
    /// with the code sent to it: it may be someone else's.
    Unconfirmed,
}

impl MarketingEligibility {
    /// Whether a message may be sent.
    pub fn is_eligible(self) -> bool {
        self == MarketingEligibility::Eligible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_recognise_every_stop_keyword_in_any_case_with_spaces() {
        for word in STOP_KEYWORDS {
            assert_eq!(parse_sms_keyword(word), Some(ConsentKeyword::Stop));
            let messy = format!("  {}\n", word.to_lowercase());
            assert_eq!(parse_sms_keyword(&messy), Some(ConsentKeyword::Stop));
        }
    }

    #[test]
    fn it_should_recognise_start_and_unstop() {
        assert_eq!(parse_sms_keyword("Start"), Some(ConsentKeyword::Start));
        assert_eq!(parse_sms_keyword(" unstop "), Some(ConsentKeyword::Start));
    }

    #[test]
    fn it_should_ignore_keywords_inside_a_longer_message() {
        assert_eq!(parse_sms_keyword("please stop by at 3pm"), None);
        assert_eq!(parse_sms_keyword("STOP!"), None);
        assert_eq!(parse_sms_keyword(""), None);
    }
}

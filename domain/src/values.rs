//! Validated value types. Each `parse` returns a `Result`, so an invalid email, phone number,
//! amount or empty reason cannot be represented once it is inside a command's decision or an
//! event.
//!
//! Deserialisation does *not* re-validate: stored events are facts, and tightening a rule later
//! must not make old streams unreadable.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValidationError;

// ---------------------------------------------------------------- money

/// An amount of money in integer cents of [`Money::CURRENCY`]; never negative.
///
/// Serialised as a bare integer of cents (`12500` is $125.00).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money {
    cents: i64,
}

impl Money {
    /// The business trades in one currency.
    pub const CURRENCY: &'static str = "USD";
    /// Zero dollars.
    pub const ZERO: Money = Money { cents: 0 };

    /// A non-negative amount of cents.
    ///
    /// # Errors
    /// Field `amount_cents` when `cents` is negative.
    pub fn from_cents(cents: i64) -> Result<Self, ValidationError> {
        if cents < 0 {
            return Err(ValidationError::new(
                "amount_cents",
                format!("must not be negative (got {cents})"),
            ));
        }
        Ok(Self { cents })
    }

    /// The amount in cents.
    pub const fn cents(self) -> i64 {
        self.cents
    }

    /// Whole dollars, rounded down (loyalty points are earned per whole dollar).
    pub const fn whole_dollars(self) -> i64 {
        self.cents / 100
    }

    /// Sum of two amounts, `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.cents
            .checked_add(other.cents)
            .map(|cents| Money { cents })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:02}", self.cents / 100, self.cents % 100)
    }
}

// ---------------------------------------------------------------- text

/// Trimmed text that is not empty and at most `max_chars` characters long.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NonEmptyText(String);

impl NonEmptyText {
    /// Validates `raw` for the command field `field`.
    ///
    /// # Errors
    /// `field` when the trimmed text is empty or longer than `max_chars`.
    pub fn parse(
        field: &'static str,
        raw: &str,
        max_chars: usize,
    ) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        let len = trimmed.chars().count();
        if len > max_chars {
            return Err(ValidationError::new(
                field,
                format!("must be at most {max_chars} characters (got {len})"),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NonEmptyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A required human explanation (why points were awarded, why an opportunity was lost...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reason(String);

impl Reason {
    /// Longest reason accepted, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Validates a reason (field `reason`).
    ///
    /// # Errors
    /// `reason` when empty after trimming or longer than [`Reason::MAX_CHARS`].
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        NonEmptyText::parse("reason", raw, Self::MAX_CHARS).map(|t| Self(t.0))
    }

    /// The reason text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer tag: trimmed, lower-cased, 1–50 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    /// Validates a tag (field `tag`).
    ///
    /// # Errors
    /// `tag` when empty, too long or containing control characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let text = NonEmptyText::parse("tag", raw, 50)?;
        if text.0.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "tag",
                "must not contain control characters",
            ));
        }
        Ok(Self(text.0.to_lowercase()))
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------- contact data

/// An email address: trimmed and lower-cased (addresses are matched case-insensitively).
///
/// The check is deliberately shallow (one `@`, a dotted domain, no whitespace); deliverability
/// is the email provider's business.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Validates an email address (field `email`).
    ///
    /// # Errors
    /// `email` when the address is malformed.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let value = raw.trim().to_lowercase();
        let err = |m: &str| Err(ValidationError::new("email", m.to_owned()));
        if value.is_empty() {
            return err("must not be empty");
        }
        if value.len() > 254 {
            return err("must be at most 254 characters");
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return err("must not contain spaces");
        }
        let Some((local, domain)) = value.split_once('@') else {
            return err("must contain '@'");
        };
        if local.is_empty() || domain.contains('@') {
            return err("must have exactly one '@' with a name before it");
        }
        if !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return err("must have a domain such as example.com");
        }
        Ok(Self(value))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form: `+` then 8–15 digits, the first not zero.
///
/// Accepted input (documented because it is a convenience, not E.164):
/// - spaces, `-`, `.`, `(` and `)` are ignored anywhere;
/// - without a leading `+`, a 10-digit North American number (area code not starting with 0
///   or 1, e.g. `(512) 555-0100`) or 11 digits starting with `1` get the `+1` country code.
///
/// Anything else without `+` is refused rather than guessed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Validates and normalises a phone number (field `phone`).
    ///
    /// # Errors
    /// `phone` when the number is not E.164 and not a recognisable US number.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(ValidationError::new(
                        "phone",
                        format!("unexpected character {c:?}; use E.164 such as +15125550100"),
                    ))
                }
            }
        }
        let e164 = if plus {
            digits
        } else if digits.len() == 10 && !digits.starts_with(['0', '1']) {
            format!("1{digits}")
        } else if digits.len() == 11 && digits.starts_with('1') {
            digits
        } else {
            return Err(ValidationError::new(
                "phone",
                "must be E.164 (+ and country code) or a 10-digit US number",
            ));
        };
        if !(8..=15).contains(&e164.len()) || e164.starts_with('0') {
            return Err(ValidationError::new(
                "phone",
                "must be + followed by 8 to 15 digits, the first not 0",
            ));
        }
        Ok(Self(format!("+{e164}")))
    }

    /// The E.164 form, e.g. `+15125550100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A postal address (US-style fields; `region` is the state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Street and number.
    pub line1: NonEmptyText,
    /// Apartment, suite...
    pub line2: Option<NonEmptyText>,
    /// City.
    pub city: NonEmptyText,
    /// State or region.
    pub region: NonEmptyText,
    /// ZIP / postal code.
    pub postal_code: NonEmptyText,
}

/// Unvalidated address fields as they arrive in a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressInput {
    /// Street and number.
    pub line1: String,
    /// Apartment, suite... (empty means none).
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// State or region.
    pub region: String,
    /// ZIP / postal code.
    pub postal_code: String,
}

impl Address {
    /// Validates address input; fields are named `address.line1` and so on.
    ///
    /// # Errors
    /// The first invalid field.
    pub fn parse(input: &AddressInput) -> Result<Self, ValidationError> {
        Ok(Self {
            line1: NonEmptyText::parse("address.line1", &input.line1, 200)?,
            line2: match input.line2.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(l) => Some(NonEmptyText::parse("address.line2", l, 200)?),
            },
            city: NonEmptyText::parse("address.city", &input.city, 100)?,
            region: NonEmptyText::parse("address.region", &input.region, 100)?,
            postal_code: NonEmptyText::parse("address.postal_code", &input.postal_code, 20)?,
        })
    }
}

// ---------------------------------------------------------------- referral codes

/// A referral code: 8 characters from an alphabet without the look-alikes `0 O 1 I`, so it can
/// be read aloud or copied from paper.
///
/// Codes are derived deterministically from a seed (the referrer's customer id) and an attempt
/// number: 40 bits of a UUID v5, about 10¹² codes. Uniqueness across customers is checked by the
/// commands layer against the code index; on a collision it asks for `attempt + 1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReferralCode(String);

impl ReferralCode {
    /// The 32 symbols codes are made of.
    pub const ALPHABET: &'static [u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    /// Length of a code.
    pub const LEN: usize = 8;

    const NAMESPACE: Uuid = Uuid::from_u128(0x6d2f_4c1e_9a57_4b0e_8f3a_1c2d_3e4f_5b01);

    /// The code for `seed` at `attempt` (0 first). Same inputs, same code.
    pub fn from_seed(seed: Uuid, attempt: u32) -> Self {
        let mut name = [0u8; 20];
        name[..16].copy_from_slice(seed.as_bytes());
        name[16..].copy_from_slice(&attempt.to_be_bytes());
        let bytes = Uuid::new_v5(&Self::NAMESPACE, &name).into_bytes();
        let mut bits: u64 = 0;
        for b in &bytes[..5] {
            bits = (bits << 8) | u64::from(*b);
        }
        let code = (0..Self::LEN)
            .rev()
            .map(|i| {
                // Five bits per symbol; the mask keeps the index within 0..32.
                let index = ((bits >> (i * 5)) & 0x1f) as usize;
                char::from(Self::ALPHABET[index])
            })
            .collect();
        Self(code)
    }

    /// Parses a code typed by a person: case and surrounding spaces/dashes are ignored.
    ///
    /// # Errors
    /// `referral_code` when the length or a character is wrong.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let code: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if code.chars().count() != Self::LEN {
            return Err(ValidationError::new(
                "referral_code",
                format!("must be {} characters", Self::LEN),
            ));
        }
        if let Some(bad) = code.bytes().find(|b| !Self::ALPHABET.contains(b)) {
            return Err(ValidationError::new(
                "referral_code",
                format!("contains {:?}, which codes never use", char::from(bad)),
            ));
        }
        Ok(Self(code))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReferralCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- misc

/// A star rating from 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rating(u8);

impl Rating {
    /// Validates a rating (field `rating`).
    ///
    /// # Errors
    /// `rating` when outside 1..=5.
    pub fn parse(stars: i64) -> Result<Self, ValidationError> {
        match u8::try_from(stars) {
            Ok(s @ 1..=5) => Ok(Self(s)),
            _ => Err(ValidationError::new(
                "rating",
                format!("must be between 1 and 5 (got {stars})"),
            )),
        }
    }

    /// Number of stars.
    pub const fn stars(self) -> u8 {
        self.0
    }
}

/// A discount: a whole percentage (1–100) or a fixed amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discount {
    /// Percentage off, 1..=100.
    Percent(u8),
    /// Fixed amount off.
    Amount(Money),
}

impl Discount {
    /// Validates a discount (field `discount`).
    ///
    /// # Errors
    /// `discount` when a percentage is outside 1..=100 or an amount is zero.
    pub fn validate(self) -> Result<Self, ValidationError> {
        match self {
            Discount::Percent(1..=100) => Ok(self),
            Discount::Percent(p) => Err(ValidationError::new(
                "discount",
                format!("percentage must be 1-100 (got {p})"),
            )),
            Discount::Amount(m) if m.cents() > 0 => Ok(self),
            Discount::Amount(_) => Err(ValidationError::new("discount", "amount must be positive")),
        }
    }
}

/// An opaque secret produced elsewhere (a password hash, a reset-token hash). Hashing is not
/// the domain's job; the domain only makes sure the value never shows up in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHash(String);

impl SecretHash {
    /// Wraps a hash (field `password_hash`).
    ///
    /// # Errors
    /// `password_hash` when empty.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.trim().is_empty() {
            return Err(ValidationError::new("password_hash", "must not be empty"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The hash, for the code that verifies it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

// ---------------------------------------------------------------- calendar

/// Whether `today` is the yearly return of `date` (a birthday or a customer-since date).
///
/// Feb 29 dates are celebrated on Feb 28 in non-leap years, so nobody waits four years.
pub fn is_annual_day(date: NaiveDate, today: NaiveDate) -> bool {
    if date.month() == 2 && date.day() == 29 && !is_leap_year(today.year()) {
        return today.month() == 2 && today.day() == 28;
    }
    date.month() == today.month() && date.day() == today.day()
}

/// Gregorian leap year.
pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_should_accept_an_e164_phone_number() {
        assert_eq!(
            PhoneNumber::parse("+44 20 7946 0958")
                .expect("valid")
                .as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn it_should_normalise_a_us_phone_number_to_e164() {
        let p = PhoneNumber::parse("(512) 555-0100").expect("valid");
        assert_eq!(p.as_str(), "+15125550100");
        assert_eq!(PhoneNumber::parse("1-512-555-0100").expect("valid"), p);
    }

    #[test]
    fn it_should_refuse_an_invalid_phone_number_naming_the_field() {
        for bad in [
            "",
            "12345",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "555-CALL-NOW",
        ] {
            let err = PhoneNumber::parse(bad).expect_err(bad);
            assert_eq!(err.field, "phone", "{bad}");
        }
    }

    #[test]
    fn it_should_lower_case_and_validate_emails() {
        assert_eq!(
            Email::parse(" Jane@Example.COM ").expect("valid").as_str(),
            "jane@example.com"
        );
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "ja ne@example.com",
        ] {
            assert_eq!(Email::parse(bad).expect_err(bad).field, "email");
        }
    }

    #[test]
    fn it_should_refuse_negative_money() {
        assert_eq!(
            Money::from_cents(-1).expect_err("negative").field,
            "amount_cents"
        );
        assert_eq!(Money::from_cents(12_599).expect("ok").whole_dollars(), 125);
        assert_eq!(
            Money::from_cents(12_599).expect("ok").to_string(),
            "$125.99"
        );
    }

    #[test]
    fn it_should_refuse_an_empty_reason() {
        assert_eq!(Reason::parse("   ").expect_err("empty").field, "reason");
        assert!(Reason::parse(&"x".repeat(501)).is_err());
    }

    #[test]
    fn it_should_celebrate_a_feb_29_birthday_on_feb_28_in_non_leap_years() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).expect("date");
        let leapling = d(2000, 2, 29);
        assert!(is_annual_day(leapling, d(2025, 2, 28)));
        assert!(!is_annual_day(leapling, d(2025, 3, 1)));
        assert!(is_annual_day(leapling, d(2024, 2, 29)));
        assert!(!is_annual_day(leapling, d(2024, 2, 28)));
        assert!(is_annual_day(d(1990, 7, 4), d(2025, 7, 4)));
    }

    #[test]
    fn it_should_parse_a_referral_code_typed_in_lower_case() {
        let code = ReferralCode::from_seed(Uuid::from_u128(42), 0);
        let typed = code.as_str().to_lowercase();
        assert_eq!(ReferralCode::parse(&typed).expect("valid"), code);
        assert_eq!(
            ReferralCode::parse("ABCD0FGH").expect_err("0").field,
            "referral_code"
        );
    }

    #[test]
    fn it_should_not_show_a_secret_hash_in_debug_output() {
        let h = SecretHash::parse("$argon2id$v=19$abc").expect("valid");
        assert!(!format!("{h:?}").contains("argon2"));
    }
}

//! Quiet hours (issue #16): marketing SMS and email due at night wait until the business's
//! morning. The hours are local to the business (`BUSINESS_TIMEZONE`), e.g. `21:00-08:00`
//! (`QUIET_HOURS`); transactional messages (resets, codes, booking notices) are never held.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::ValidationError;

/// A daily window of local time, `start` inclusive to `end` exclusive; it may span midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    /// `HH:MM-HH:MM`, e.g. `21:00-08:00`.
    ///
    /// # Errors
    /// [`ValidationError`] on `quiet_hours` when it is not two times, or both are the same.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::new("quiet_hours", "expected HH:MM-HH:MM, e.g. 21:00-08:00");
        let (a, b) = raw.trim().split_once('-').ok_or_else(bad)?;
        let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
        let (start, end) = (time(a)?, time(b)?);
        if start == end {
            return Err(ValidationError::new(
                "quiet_hours",
                "the start and the end are the same",
            ));
        }
        Ok(Self { start, end })
    }

    fn contains(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// When `now` is inside the quiet hours in `tz`, the first moment after them (the local
    /// end time; on a day the clocks skip it, the first local time after the gap); else none.
    pub fn until(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&tz);
        if !self.contains(local.time()) {
            return None;
        }
        // The end is today, or tomorrow when the window spans midnight and we are before it.
        let mut day = local.date_naive();
        if local.time() >= self.end {
            day = day.succ_opt()?;
        }
        let mut at = day.and_time(self.end);
        // A spring-forward gap swallows the end time: step until the clock shows a real time.
        for _ in 0..180 {
            if let Some(t) = tz.from_local_datetime(&at).earliest() {
                return Some(t.with_timezone(&Utc));
            }
            at += Duration::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    const CHICAGO: Tz = chrono_tz::America::Chicago;

    #[test]
    fn it_should_hold_a_message_due_at_eleven_at_night_until_eight() {
        let q = QuietHours::parse("21:00-08:00").expect("valid");
        // 23:00 in Chicago (CST, UTC-6) on December 7th.
        let until = q.until(utc("2026-12-08T05:00:00Z"), CHICAGO);
        assert_eq!(until, Some(utc("2026-12-08T14:00:00Z")));
        // 07:59 the next morning: one more minute.
        let until = q.until(utc("2026-12-08T13:59:00Z"), CHICAGO);
        assert_eq!(until, Some(utc("2026-12-08T14:00:00Z")));
        // 08:00 and noon are allowed.
        assert_eq!(q.until(utc("2026-12-08T14:00:00Z"), CHICAGO), None);
        assert_eq!(q.until(utc("2026-12-08T18:00:00Z"), CHICAGO), None);
    }

    #[test]
    fn it_should_end_quiet_hours_at_local_eight_across_a_change_of_clocks() {
        let q = QuietHours::parse("21:00-08:00").expect("valid");
        // 23:00 CST on March 7th 2026; clocks spring forward at 02:00 on the 8th: 08:00 CDT.
        let until = q.until(utc("2026-03-08T05:00:00Z"), CHICAGO);
        assert_eq!(until, Some(utc("2026-03-08T13:00:00Z")));
    }

    #[test]
    fn it_should_step_past_an_end_the_clocks_skip() {
        // Quiet until 02:30, which does not exist on March 8th 2026 in Chicago.
        let q = QuietHours::parse("23:00-02:30").expect("valid");
        let until = q.until(utc("2026-03-08T07:30:00Z"), CHICAGO); // 01:30 CST
        assert_eq!(until, Some(utc("2026-03-08T08:00:00Z"))); // 03:00 CDT
    }

    #[test]
    fn it_should_hold_within_a_window_that_does_not_span_midnight() {
        let q = QuietHours::parse("12:00-13:00").expect("valid");
        assert_eq!(
            q.until(utc("2026-12-08T18:30:00Z"), CHICAGO),
            Some(utc("2026-12-08T19:00:00Z"))
        );
        assert_eq!(q.until(utc("2026-12-08T19:00:00Z"), CHICAGO), None);
    }

    #[test]
    fn it_should_refuse_a_window_it_cannot_read() {
        for bad in ["", "21:00", "9pm-8am", "21:00-21:00", "25:00-08:00"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }
}

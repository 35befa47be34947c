//! The 18 jobs, their cron expressions, and when their slots fall.
//!
//! Expressions are 5-field cron (minute hour day-of-month month day-of-week, Sunday = 0)
//! evaluated on the business's wall clock with `croner`, whose daylight-saving rules are
//! Vixie cron's:
//!
//! - a fixed-time slot that falls in the spring-forward gap runs at the first instant after
//!   the gap (02:00 on 2026-03-08 in America/Chicago runs at 03:00 CDT);
//! - a fixed-time slot in the repeated fall-back hour runs once, on its first occurrence
//!   (01:30 on 2026-11-01 runs at 01:30 CDT, not again at 01:30 CST);
//! - interval jobs (`*/15`, `*/30`) keep their rhythm in real time through both changes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

macro_rules! jobs {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $cron:literal; )*) => {
        /// A scheduled job.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum JobName {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl JobName {
            /// Every job, in the order of `cron-jobs.md`.
            pub const ALL: &'static [JobName] = &[$(JobName::$variant),*];

            /// The job's name (`award-birthday-points`): URL segment, run records, actor.
            pub fn as_str(self) -> &'static str {
                match self { $(JobName::$variant => $name,)* }
            }

            /// The job's cron expression, in the business's time zone.
            pub fn cron(self) -> &'static str {
                match self { $(JobName::$variant => $cron,)* }
            }
        }
    };
}

jobs! {
    /// Send the due auto-offers of open opportunities; expire the lapsed ones.
    ProcessOpportunityOffers = "process-opportunity-offers", "0 8 * * *";
    /// Flag opportunities with no activity for N days.
    CheckStaleOpportunities = "check-stale-opportunities", "0 9 * * *";
    /// Deliver the next batch of scheduled campaign messages.
    ProcessPromotionDeliveries = "process-promotion-deliveries", "*/30 * * * *";
    /// Deliver today's birthday promotions.
    ScheduleBirthdayPromotions = "schedule-birthday-promotions", "0 6 * * *";
    /// Deliver today's customer-anniversary promotions.
    ScheduleAnniversaryPromotions = "schedule-anniversary-promotions", "0 6 * * *";
    /// Request reviews for recently completed jobs (and send due reminders).
    SendReviewRequests = "send-review-requests", "0 */6 * * *";
    /// Import new Google reviews.
    SyncGoogleReviews = "sync-google-reviews", "0 2 * * *";
    /// Expire old points, then evaluate tiers (upgrade or downgrade).
    ProcessLoyaltyTierUpgrades = "process-loyalty-tier-upgrades", "0 3 * * *";
    /// Birthday bonus points, once a year.
    AwardBirthdayPoints = "award-birthday-points", "0 0 * * *";
    /// Anniversary bonus points, once a year.
    AwardAnniversaryPoints = "award-anniversary-points", "0 0 * * *";
    /// Close yesterday's metrics.
    CalculateDailyMetrics = "calculate-daily-metrics", "0 1 * * *";
    /// Last week's report, on Mondays.
    GenerateWeeklyReport = "generate-weekly-report", "0 4 * * 1";
    /// Check the database, projections and policies.
    CheckSystemHealth = "check-system-health", "*/15 * * * *";
    /// Drop delivered notifications past retention.
    CleanupOldNotifications = "cleanup-old-notifications", "0 2 * * 0";
    /// Drop job-run logs past retention (events are never deleted).
    CleanupOldLogs = "cleanup-old-logs", "0 3 * * 0";
    /// End expired staff and portal sessions.
    CleanupExpiredSessions = "cleanup-expired-sessions", "0 4 * * *";
    /// Archive closed opportunities past retention.
    ArchiveOldOpportunities = "archive-old-opportunities", "0 5 * * 0";
    /// Generate the scheduled reports that are due.
    GenerateScheduledReports = "generate-scheduled-reports", "0 6 * * *";
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of the 18 jobs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job {0:?}")]
pub struct UnknownJob(pub String);

impl FromStr for JobName {
    type Err = UnknownJob;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobName::ALL
            .iter()
            .copied()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| UnknownJob(s.to_string()))
    }
}

/// A cron expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron {expression:?}: {reason}")]
pub struct CronError {
    /// The expression.
    pub expression: String,
    /// What went wrong.
    pub reason: String,
}

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    expression: String,
    tz: Tz,
}

impl Schedule {
    /// Parses a 5-field expression for zone `tz`.
    ///
    /// # Errors
    /// [`CronError`] for an expression croner refuses.
    pub fn parse(expression: &str, tz: Tz) -> Result<Self, CronError> {
        let cron = Cron::from_str(expression).map_err(|e| CronError {
            expression: expression.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            cron,
            expression: expression.to_string(),
            tz,
        })
    }

    /// The schedule of one of the 18 jobs.
    ///
    /// # Panics
    /// Never: the built-in expressions are checked by a test.
    pub fn of(job: JobName, tz: Tz) -> Self {
        Self::parse(job.cron(), tz).unwrap_or_else(|e| panic!("built-in schedule: {e}"))
    }

    /// The expression.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    fn err(&self, e: impl fmt::Display) -> CronError {
        CronError {
            expression: self.expression.clone(),
            reason: e.to_string(),
        }
    }

    /// The latest slot at or before `now`.
    ///
    /// # Errors
    /// [`CronError`] when no slot exists within croner's search limit.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
        let local = now.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.err(e))
    }

    /// The first slot strictly after `t`.
    ///
    /// # Errors
    /// [`CronError`] when no slot exists within croner's search limit.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| self.err(e))
    }

    /// Every slot in `(after, until]`, oldest first (at most `limit`).
    ///
    /// # Errors
    /// As [`Self::next_after`].
    pub fn slots_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>, CronError> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            let next = self.next_after(t)?;
            if next > until {
                break;
            }
            out.push(next);
            t = next;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::America::Chicago;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn every_built_in_expression_parses_and_names_are_unique() {
        assert_eq!(JobName::ALL.len(), 18);
        for j in JobName::ALL {
            Schedule::parse(j.cron(), Chicago).expect("parses");
            assert_eq!(j.as_str().parse::<JobName>(), Ok(*j));
        }
        assert!("no-such-job".parse::<JobName>().is_err());
    }

    #[test]
    fn a_2am_job_runs_at_3am_cdt_on_the_spring_forward_day_and_once() {
        let s = Schedule::of(JobName::SyncGoogleReviews, Chicago);
        let slots = s
            .slots_between(utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 12, 0), 10)
            .expect("slots");
        // 03:00 CDT = 08:00 UTC on the 8th; 02:00 CDT = 07:00 UTC on the 9th.
        assert_eq!(slots, vec![utc(2026, 3, 8, 8, 0), utc(2026, 3, 9, 7, 0)]);
    }

    #[test]
    fn fixed_time_jobs_run_once_on_the_fall_back_day() {
        let day = |expr: &str| {
            Schedule::parse(expr, Chicago)
                .expect("parses")
                .slots_between(utc(2026, 11, 1, 5, 0), utc(2026, 11, 2, 5, 0), 10)
                .expect("slots")
        };
        // 01:30 exists twice (CDT then CST): the first one only.
        assert_eq!(day("30 1 * * *"), vec![utc(2026, 11, 1, 6, 30)]);
        assert_eq!(day("0 2 * * *"), vec![utc(2026, 11, 1, 8, 0)]);
        assert_eq!(day("0 1 * * *"), vec![utc(2026, 11, 1, 6, 0)]);
    }

    #[test]
    fn interval_jobs_keep_their_rhythm_through_the_repeated_hour() {
        let s = Schedule::of(JobName::ProcessPromotionDeliveries, Chicago);
        let slots = s
            .slots_between(utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 8, 0), 10)
            .expect("slots");
        let expected: Vec<_> = (0..4)
            .map(|i| utc(2026, 11, 1, 6, 0) + chrono::Duration::minutes(30 * i))
            .chain([utc(2026, 11, 1, 8, 0)])
            .collect();
        assert_eq!(slots, expected);
    }

    #[test]
    fn sunday_is_zero_and_monday_is_one() {
        let weekly = Schedule::of(JobName::GenerateWeeklyReport, Chicago);
        // Monday 2026-11-23 04:00 CST.
        assert_eq!(
            weekly.next_after(utc(2026, 11, 20, 0, 0)).expect("next"),
            utc(2026, 11, 23, 10, 0)
        );
        let sunday = Schedule::of(JobName::CleanupOldLogs, Chicago);
        assert_eq!(
            sunday.next_after(utc(2026, 11, 20, 0, 0)).expect("next"),
            utc(2026, 11, 22, 9, 0)
        );
    }

    #[test]
    fn the_latest_slot_includes_now() {
        let s = Schedule::of(JobName::CheckSystemHealth, Chicago);
        let t = utc(2026, 6, 1, 12, 15);
        assert_eq!(s.latest_at_or_before(t).expect("slot"), t);
        assert_eq!(
            s.latest_at_or_before(t + chrono::Duration::minutes(14))
                .expect("slot"),
            t
        );
    }
}

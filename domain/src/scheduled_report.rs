//! ScheduledReport: a report a manager defines (metrics, period, recipients, cron schedule),
//! with its generation log (generated, failed, sent) and deletion.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ids::ScheduledReportId;
use crate::ports::{cqrs_aggregate, Actor, CommandContext};
use crate::report::ReportFigure;
use crate::values::{Email, NonEmptyText};

/// `Aggregate::TYPE` of [`ScheduledReport`].
pub const AGGREGATE_TYPE: &str = "ScheduledReport";

/// Metrics a report can include.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportMetric {
    /// Revenue by day/week/month, service and technician.
    Revenue,
    /// New, returning and churned customers.
    Customers,
    /// Opportunity conversion rate.
    OpportunityConversion,
    /// Promotion effectiveness.
    PromotionEffectiveness,
    /// Review average, distribution, response rate.
    Reviews,
    /// Loyalty programme metrics.
    Loyalty,
    /// Portal usage.
    PortalUsage,
}

/// The period a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportPeriod {
    /// The previous day.
    Daily,
    /// The previous week (Monday–Sunday).
    Weekly,
    /// The previous month.
    Monthly,
}

/// A 5-field cron expression (minute hour day-of-month month day-of-week), evaluated in the
/// business's time zone by the scheduler. Only the shape is checked here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CronSchedule(String);

impl CronSchedule {
    /// Validates the shape of a cron expression (field `cron`).
    ///
    /// # Errors
    /// `cron` when there are not exactly 5 fields or a field holds unexpected characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let fields: Vec<&str> = raw.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ValidationError::new(
                "cron",
                "must have 5 fields: minute hour day-of-month month day-of-week",
            ));
        }
        let ok = |f: &str| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/'))
        };
        if let Some(bad) = fields.iter().find(|f| !ok(f)) {
            return Err(ValidationError::new(
                "cron",
                format!("unexpected field {bad:?}"),
            ));
        }
        Ok(Self(fields.join(" ")))
    }

    /// The expression.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What can be asked of a scheduled report.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduledReportCommand {
    /// Define the report (manager or admin).
    Define {
        /// The id (the aggregate id).
        report_id: ScheduledReportId,
        /// Name.
        name: String,
        /// Metrics included.
        metrics: Vec<ReportMetric>,
        /// Period covered.
        period: ReportPeriod,
        /// Staff email addresses to send to.
        recipients: Vec<String>,
        /// When to run.
        cron: String,
    },
    /// A run produced the report.
    RecordGenerated {
        /// First day covered.
        period_start: NaiveDate,
        /// Last day covered.
        period_end: NaiveDate,
        /// Rows in the CSV.
        row_count: u32,
        /// The figures computed for the period.
        figures: Vec<ReportFigure>,
    },
    /// A run failed.
    RecordGenerationFailed {
        /// First day of the period attempted.
        period_start: NaiveDate,
        /// Why.
        reason: String,
    },
    /// The generated report was emailed.
    RecordSent {
        /// First day of the period sent.
        period_start: NaiveDate,
    },
    /// Send the report to these staff addresses from now on (manager, admin or the system:
    /// the built-in weekly report follows the active managers and admins).
    ChangeRecipients {
        /// Staff email addresses.
        recipients: Vec<String>,
    },
    /// Delete the report (manager or admin).
    Delete,
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`ScheduledReport`] aggregate.
    pub enum ScheduledReportEvent {
        /// A report was defined.
        ScheduledReportDefined {
            /// The report.
            report_id: ScheduledReportId,
            /// Name.
            name: NonEmptyText,
            /// Metrics.
            metrics: Vec<ReportMetric>,
            /// Period.
            period: ReportPeriod,
            /// Staff recipients.
            recipients: Vec<Email>,
            /// Schedule.
            cron: CronSchedule,
            /// Who defined it.
            defined_by: Actor,
            /// When.
            at: DateTime<Utc>,
        },
        /// The report was generated for a period.
        ScheduledReportGenerated {
            /// First day covered.
            period_start: NaiveDate,
            /// Last day covered.
            period_end: NaiveDate,
            /// Rows.
            row_count: u32,
            /// The figures of the chosen metrics for the period, as sent (absent on runs
            /// recorded before reports carried their figures).
            figures: Option<Vec<ReportFigure>>,
            /// When.
            at: DateTime<Utc>,
        },
        /// Generation failed.
        ScheduledReportGenerationFailed {
            /// First day attempted.
            period_start: NaiveDate,
            /// Why.
            reason: String,
            /// When.
            at: DateTime<Utc>,
        },
        /// The report was emailed.
        ScheduledReportSent {
            /// First day of the period.
            period_start: NaiveDate,
            /// Number of recipients.
            recipient_count: u32,
            /// When.
            at: DateTime<Utc>,
        },
        /// The report goes to other recipients from now on.
        ScheduledReportRecipientsChanged {
            /// Staff recipients.
            recipients: Vec<Email>,
            /// Who changed them.
            changed_by: Actor,
            /// When.
            at: DateTime<Utc>,
        },
        /// The report was deleted.
        ScheduledReportDeleted {
            /// Who.
            deleted_by: Actor,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a scheduled-report command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduledReportError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already defined.
    #[error("the report already exists")]
    AlreadyExists,
    /// Unknown or deleted report.
    #[error("unknown scheduled report")]
    UnknownReport,
    /// Managers and admins only.
    #[error("only a manager or admin can do this")]
    ManagerRequired,
    /// Sending a period that was not generated.
    #[error("the report was not generated for this period")]
    NotGenerated,
}
validation_error!(ScheduledReportError);

/// The report's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledReport {
    defined: bool,
    deleted: bool,
    recipients: u32,
    generated: Vec<NaiveDate>,
}

/// A report's recipients: at least one, each a valid address (field `recipients`).
fn staff_recipients(raw: &[String]) -> Result<Vec<Email>, ValidationError> {
    let recipients = raw
        .iter()
        .map(|r| Email::parse(r).map_err(|e| e.in_field("recipients")))
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        return Err(ValidationError::new("recipients", "at least one recipient"));
    }
    Ok(recipients)
}

fn is_manager(actor: &Actor) -> bool {
    match actor {
        Actor::Staff { role, .. } => role.is_manager_or_above(),
        Actor::System => true,
        Actor::Customer { .. } => false,
    }
}

impl ScheduledReport {
    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`ScheduledReportError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: ScheduledReportCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ScheduledReportEvent>, ScheduledReportError> {
        use ScheduledReportError as E;
        let at = ctx.now;
        if let ScheduledReportCommand::Define {
            report_id,
            name,
            metrics,
            period,
            recipients,
            cron,
        } = cmd
        {
            if self.defined {
                return Err(E::AlreadyExists);
            }
            if !is_manager(&ctx.actor) {
                return Err(E::ManagerRequired);
            }
            let name = NonEmptyText::parse("name", &name, 200)?;
            if metrics.is_empty() {
                return Err(ValidationError::new("metrics", "choose at least one metric").into());
            }
            let recipients = staff_recipients(&recipients)?;
            return Ok(vec![ScheduledReportEvent::ScheduledReportDefined {
                report_id,
                name,
                metrics,
                period,
                recipients,
                cron: CronSchedule::parse(&cron)?,
                defined_by: ctx.actor,
                at,
            }]);
        }
        if !self.defined || self.deleted {
            return Err(E::UnknownReport);
        }
        Ok(match cmd {
            ScheduledReportCommand::Define { .. } => vec![],
            ScheduledReportCommand::RecordGenerated {
                period_start,
                period_end,
                row_count,
                figures,
            } => {
                if period_end < period_start {
                    return Err(ValidationError::new(
                        "period_end",
                        "must not be before period_start",
                    )
                    .into());
                }
                // Once per period: the first run is what was emailed and what downloads.
                if self.generated.contains(&period_start) {
                    return Ok(vec![]);
                }
                vec![ScheduledReportEvent::ScheduledReportGenerated {
                    period_start,
                    period_end,
                    row_count,
                    figures: Some(figures),
                    at,
                }]
            }
            ScheduledReportCommand::RecordGenerationFailed {
                period_start,
                reason,
            } => {
                vec![ScheduledReportEvent::ScheduledReportGenerationFailed {
                    period_start,
                    reason,
                    at,
                }]
            }
            ScheduledReportCommand::RecordSent { period_start } => {
                if !self.generated.contains(&period_start) {
                    return Err(E::NotGenerated);
                }
                vec![ScheduledReportEvent::ScheduledReportSent {
                    period_start,
                    recipient_count: self.recipients,
                    at,
                }]
            }
            ScheduledReportCommand::ChangeRecipients { recipients } => {
                if !is_manager(&ctx.actor) {
                    return Err(E::ManagerRequired);
                }
                let recipients = staff_recipients(&recipients)?;
                vec![ScheduledReportEvent::ScheduledReportRecipientsChanged {
                    recipients,
                    changed_by: ctx.actor,
                    at,
                }]
            }
            ScheduledReportCommand::Delete => {
                if !is_manager(&ctx.actor) {
                    return Err(E::ManagerRequired);
                }
                vec![ScheduledReportEvent::ScheduledReportDeleted {
                    deleted_by: ctx.actor,
                    at,
                }]
            }
        })
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: ScheduledReportEvent) {
        match event {
            ScheduledReportEvent::ScheduledReportDefined { recipients, .. } => {
                self.defined = true;
                self.recipients = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
            }
            ScheduledReportEvent::ScheduledReportGenerated { period_start, .. } => {
                self.generated.push(period_start);
            }
            ScheduledReportEvent::ScheduledReportRecipientsChanged { recipients, .. } => {
                self.recipients = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
            }
            ScheduledReportEvent::ScheduledReportGenerationFailed { .. }
            | ScheduledReportEvent::ScheduledReportSent { .. } => {}
            ScheduledReportEvent::ScheduledReportDeleted { .. } => self.deleted = true,
        }
    }
}

cqrs_aggregate!(
    ScheduledReport,
    AGGREGATE_TYPE,
    ScheduledReportCommand,
    ScheduledReportEvent,
    ScheduledReportError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn define() -> ScheduledReportCommand {
        ScheduledReportCommand::Define {
            report_id: ScheduledReportId(Uuid::from_u128(80)),
            name: "Weekly revenue".into(),
            metrics: vec![ReportMetric::Revenue],
            period: ReportPeriod::Weekly,
            recipients: vec!["owner@dirtfree.example".into()],
            cron: "0 7 * * MON".into(),
        }
    }
    fn when(
        given: Vec<ScheduledReportEvent>,
        actor: Actor,
        cmd: ScheduledReportCommand,
    ) -> Result<Vec<ScheduledReportEvent>, ScheduledReportError> {
        testing::run::<ScheduledReport, _>(testing::test_services(), given, actor, cmd)
    }
    fn defined() -> ScheduledReportEvent {
        when(vec![], testing::manager(), define())
            .expect("ok")
            .remove(0)
    }
    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, d).expect("date")
    }

    #[test]
    fn it_should_let_a_manager_define_a_report() {
        assert!(matches!(
            defined(),
            ScheduledReportEvent::ScheduledReportDefined { .. }
        ));
    }

    #[test]
    fn it_should_not_let_staff_define_a_report() {
        assert_eq!(
            when(vec![], testing::staff(), define()),
            Err(ScheduledReportError::ManagerRequired)
        );
    }

    #[test]
    fn it_should_refuse_a_malformed_cron_naming_the_field() {
        let mut cmd = define();
        if let ScheduledReportCommand::Define { cron, .. } = &mut cmd {
            *cron = "every monday".into();
        }
        assert_eq!(
            when(vec![], testing::manager(), cmd)
                .expect_err("bad")
                .field(),
            Some("cron")
        );
    }

    #[test]
    fn it_should_send_only_a_generated_period() {
        let send = ScheduledReportCommand::RecordSent {
            period_start: date(9),
        };
        assert_eq!(
            when(vec![defined()], Actor::System, send.clone()),
            Err(ScheduledReportError::NotGenerated)
        );
        let generated = ScheduledReportEvent::ScheduledReportGenerated {
            period_start: date(9),
            period_end: date(15),
            row_count: 7,
            figures: Some(vec![]),
            at: test_now(),
        };
        assert_eq!(
            when(vec![defined(), generated], Actor::System, send),
            Ok(vec![ScheduledReportEvent::ScheduledReportSent {
                period_start: date(9),
                recipient_count: 1,
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_refuse_commands_after_deletion() {
        let deleted = ScheduledReportEvent::ScheduledReportDeleted {
            deleted_by: testing::manager(),
            at: test_now(),
        };
        let cmd = ScheduledReportCommand::RecordGenerated {
            period_start: date(9),
            period_end: date(15),
            row_count: 0,
            figures: vec![],
        };
        assert_eq!(
            when(vec![defined(), deleted], Actor::System, cmd),
            Err(ScheduledReportError::UnknownReport)
        );
    }

    #[test]
    fn it_should_keep_the_figures_a_run_computed() {
        let figures = vec![ReportFigure::new(
            ReportMetric::Revenue,
            "revenue_cents",
            Some(60_000),
        )];
        let cmd = ScheduledReportCommand::RecordGenerated {
            period_start: date(9),
            period_end: date(15),
            row_count: 1,
            figures: figures.clone(),
        };
        assert_eq!(
            when(vec![defined()], Actor::System, cmd),
            Ok(vec![ScheduledReportEvent::ScheduledReportGenerated {
                period_start: date(9),
                period_end: date(15),
                row_count: 1,
                figures: Some(figures),
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_generate_a_period_once() {
        let generated = ScheduledReportEvent::ScheduledReportGenerated {
            period_start: date(9),
            period_end: date(15),
            row_count: 0,
            figures: Some(vec![]),
            at: test_now(),
        };
        let again = ScheduledReportCommand::RecordGenerated {
            period_start: date(9),
            period_end: date(15),
            row_count: 0,
            figures: vec![],
        };
        assert_eq!(
            when(vec![defined(), generated], Actor::System, again),
            Ok(vec![])
        );
    }

    #[test]
    fn it_should_send_later_runs_to_the_changed_recipients() {
        let change = ScheduledReportCommand::ChangeRecipients {
            recipients: vec!["a@dirtfree.example".into(), "b@dirtfree.example".into()],
        };
        let changed = when(vec![defined()], Actor::System, change.clone()).expect("changed");
        assert!(matches!(
            &changed[..],
            [ScheduledReportEvent::ScheduledReportRecipientsChanged { recipients, .. }] if recipients.len() == 2
        ));
        assert_eq!(
            when(vec![defined()], testing::staff(), change),
            Err(ScheduledReportError::ManagerRequired)
        );
        let none = ScheduledReportCommand::ChangeRecipients { recipients: vec![] };
        assert_eq!(
            when(vec![defined()], Actor::System, none)
                .expect_err("empty")
                .field(),
            Some("recipients")
        );
    }

    #[test]
    fn it_should_read_a_run_recorded_before_reports_carried_figures() {
        let old = serde_json::json!({"ScheduledReportGenerated": {
            "period_start": "2026-11-16", "period_end": "2026-11-22", "row_count": 3,
            "at": "2026-11-23T12:00:00Z"}});
        let e: ScheduledReportEvent = serde_json::from_value(old).expect("old event");
        assert!(matches!(
            e,
            ScheduledReportEvent::ScheduledReportGenerated { figures: None, .. }
        ));
    }
}

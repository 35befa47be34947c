//! Batched reads for fields that appear once per item of a page: without them a
//! page of 100 customers with their jobs is 200 statements; with them, one.
//! A loader lives for one request (created in `graphql::execute`).

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use projections::{JsonRow, Param};

use super::paging::Bounds;
use crate::state::AppState;

/// One customer's page of jobs, as `Customer.jobs(after:before:first:last:)` asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobsPage {
    /// The customer.
    pub customer: String,
    /// The page's bounds.
    pub bounds: Bounds,
}

/// What a [`JobsPage`] holds: the window `[start, end)` of the customer's jobs, newest first
/// (the order `Customer.jobs` pages in), and how many there are in all.
#[derive(Debug, Clone, Default)]
pub struct JobsWindow {
    /// Offset of the first row.
    pub start: usize,
    /// Offset after the last row.
    pub end: usize,
    /// The customer's jobs in all.
    pub total: usize,
    /// The rows of the window.
    pub rows: Vec<JsonRow>,
}

/// Reads the asked pages of jobs of a page of customers in one statement, and only those:
/// a customer with thousands of jobs costs `first` rows, as the unbatched query's
/// `LIMIT`/`OFFSET` did.
#[derive(Debug)]
pub struct JobsOfCustomers {
    state: AppState,
}

/// Each job's offset in its customer's list (`ORDER BY booked_at DESC, job_id`, as
/// `Customer.jobs` and `myJobs` page) and the customer's count, over the customers `$1..$n`.
fn numbered_jobs(customers: usize) -> String {
    let marks: Vec<String> = (1..=customers).map(|i| format!("${i}")).collect();
    format!(
        "SELECT j.*,
            ROW_NUMBER() OVER (PARTITION BY j.customer_id ORDER BY j.booked_at DESC, j.job_id) - 1 AS page_offset,
            COUNT(*) OVER (PARTITION BY j.customer_id) AS page_total
         FROM rm_jobs j WHERE j.customer_id IN ({})",
        marks.join(", ")
    )
}

/// A condition (on `page_offset` and `page_total`) that holds for every row of `b`'s window
/// and for few others; the window itself is cut in Rust once the total is known. Parameters
/// are appended to `params`.
fn window_condition(customer: &str, b: Bounds, params: &mut Vec<Param>) -> String {
    let mut bind = |v: Param| {
        params.push(v);
        format!("${}", params.len())
    };
    let int = |n: usize| Param::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let mut parts = vec![format!("customer_id = {}", bind(Param::from(customer)))];
    let start = b.after.map_or(0, |a| a.saturating_add(1));
    parts.push(format!("page_offset >= {}", bind(int(start))));
    // The window ends by `start + first` (50 without `first` or `last`), by `before`, and by
    // the total; with `last` it starts `last` rows before its end.
    let mut ends = Vec::new();
    match (b.first, b.last) {
        (Some(f), _) => ends.push(start.saturating_add(f.min(100))),
        (None, None) => ends.push(start.saturating_add(50)),
        (None, Some(_)) => {}
    }
    ends.extend(b.before);
    if let Some(&end) = ends.iter().min() {
        parts.push(format!("page_offset < {}", bind(int(end))));
    }
    if let Some(l) = b.last {
        let l = l.min(100);
        // offset >= min(end, total) - last
        let mut near = vec![format!("page_offset + {} >= page_total", bind(int(l)))];
        if let Some(&end) = ends.iter().min() {
            near.push(format!(
                "page_offset + {} >= {}",
                bind(int(l)),
                bind(int(end))
            ));
        }
        parts.push(format!("({})", near.join(" OR ")));
    }
    format!("({})", parts.join(" AND "))
}

impl Loader<JobsPage> for JobsOfCustomers {
    type Value = JobsWindow;
    type Error = String;

    async fn load(&self, keys: &[JobsPage]) -> Result<HashMap<JobsPage, JobsWindow>, String> {
        let mut customers: Vec<&str> = keys.iter().map(|k| k.customer.as_str()).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut params: Vec<Param> = customers.iter().map(|c| Param::from(*c)).collect();
        // Each customer's first row too, which carries their total when their page is empty.
        let mut wanted = vec!["page_offset = 0".to_string()];
        wanted.extend(
            keys.iter()
                .map(|k| window_condition(&k.customer, k.bounds, &mut params)),
        );
        let sql = format!(
            "SELECT * FROM ({}) numbered WHERE {} ORDER BY customer_id, page_offset",
            numbered_jobs(customers.len()),
            wanted.join(" OR ")
        );
        let rows = self
            .state
            .projections
            .query(&sql, &params)
            .await
            .map_err(|e| e.to_string())?;
        let offset = |r: &JsonRow, k: &str| {
            r.get(k)
                .and_then(serde_json::Value::as_i64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
        };
        let mut by_customer: HashMap<&str, Vec<&JsonRow>> = HashMap::new();
        for r in &rows {
            if let Some(c) = r.get("customer_id").and_then(|v| v.as_str()) {
                by_customer.entry(c).or_default().push(r);
            }
        }
        let mut out = HashMap::new();
        for k in keys {
            let theirs = by_customer
                .get(k.customer.as_str())
                .map_or(&[][..], Vec::as_slice);
            let total = theirs.first().map_or(0, |r| offset(r, "page_total"));
            let (start, end) = k.bounds.window(total);
            let rows = theirs
                .iter()
                .filter(|r| (start..end).contains(&offset(r, "page_offset")))
                .map(|r| (*r).clone())
                .collect();
            out.insert(
                k.clone(),
                JobsWindow {
                    start,
                    end,
                    total,
                    rows,
                },
            );
        }
        Ok(out)
    }
}

/// The loaders of one request. `spawn` runs their batches (so they can carry the
/// request's statement count along).
pub fn for_request<S, R>(state: &AppState, spawn: S) -> DataLoader<JobsOfCustomers>
where
    S: Fn(futures::future::BoxFuture<'static, ()>) -> R + Send + Sync + 'static,
{
    DataLoader::new(
        JobsOfCustomers {
            state: state.clone(),
        },
        spawn,
    )
    // Long enough for a page's items to ask together on a busy machine.
    .delay(std::time::Duration::from_millis(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows `window_condition` admits for a customer with `total` jobs, evaluated here
    /// as the database would.
    fn admitted(b: Bounds, total: usize) -> Vec<usize> {
        let mut params = Vec::new();
        let cond = window_condition("c", b, &mut params);
        (0..total)
            .filter(|&offset| holds(&cond, &params, offset, total))
            .collect()
    }

    /// Evaluates the condition's conjunction of comparisons (the form `window_condition`
    /// writes) for one row.
    fn holds(cond: &str, params: &[Param], offset: usize, total: usize) -> bool {
        let value = |term: &str| -> i64 {
            let term = term.trim().trim_matches(|c| c == '(' || c == ')');
            let sum: i64 = term
                .split('+')
                .map(|t| match t.trim() {
                    "page_offset" => offset as i64,
                    "page_total" => total as i64,
                    p => match &params
                        [p.trim_start_matches('$').parse::<usize>().expect("param") - 1]
                    {
                        Param::Int(n) => *n,
                        _ => 0,
                    },
                })
                .sum();
            sum
        };
        let inner = cond
            .trim()
            .strip_prefix('(')
            .and_then(|c| c.strip_suffix(')'));
        inner.expect("parenthesised").split(" AND ").all(|part| {
            if part.starts_with("customer_id") {
                return true;
            }
            part.trim_matches(|c| c == '(' || c == ')')
                .split(" OR ")
                .any(|cmp| {
                    for op in [" >= ", " < "] {
                        if let Some((l, r)) = cmp.split_once(op) {
                            return if op == " >= " {
                                value(l) >= value(r)
                            } else {
                                value(l) < value(r)
                            };
                        }
                    }
                    panic!("unexpected comparison {cmp}")
                })
        })
    }

    #[test]
    fn the_condition_admits_every_row_of_the_window_and_few_others() {
        let some = [
            None,
            Some(0),
            Some(1),
            Some(3),
            Some(7),
            Some(12),
            Some(200),
        ];
        for total in [0, 1, 5, 10, 30] {
            for after in some {
                for before in some {
                    for first in some {
                        for last in some {
                            let b = Bounds {
                                after,
                                before,
                                first,
                                last,
                            };
                            let (start, end) = b.window(total);
                            let rows = admitted(b, total);
                            for o in start..end {
                                assert!(rows.contains(&o), "{b:?} of {total}: {o} not read");
                            }
                            let extra = rows.len() - (end - start);
                            assert!(extra <= 100, "{b:?} of {total}: {extra} rows too many");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_first_page_reads_first_rows_only() {
        let b = Bounds {
            first: Some(1),
            ..Bounds::default()
        };
        assert_eq!(admitted(b, 1_000), vec![0]);
        let last = Bounds {
            last: Some(2),
            ..Bounds::default()
        };
        assert_eq!(admitted(last, 1_000), vec![998, 999]);
    }
}

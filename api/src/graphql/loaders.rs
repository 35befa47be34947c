//! Batched reads for fields that appear once per item of a page: without them a
//! page of 100 customers with their jobs is 200 statements; with them, one.
//! A loader lives for one request (created in `graphql::execute`).

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use projections::crm::jobs::{windows_of_customers, JobRow, JobWindow, NumberedJob};

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
    pub rows: Vec<JobRow>,
}

/// Reads the asked pages of jobs of a page of customers in one statement
/// ([`windows_of_customers`]), and cuts each window exactly.
#[derive(Debug)]
pub struct JobsOfCustomers {
    state: AppState,
}

impl Loader<JobsPage> for JobsOfCustomers {
    type Value = JobsWindow;
    type Error = String;

    async fn load(&self, keys: &[JobsPage]) -> Result<HashMap<JobsPage, JobsWindow>, String> {
        let windows: Vec<JobWindow<'_>> = keys
            .iter()
            .map(|k| JobWindow {
                customer: &k.customer,
                after: k.bounds.after,
                before: k.bounds.before,
                first: k.bounds.first,
                last: k.bounds.last,
            })
            .collect();
        let rows = windows_of_customers(self.state.projections.db(), &windows)
            .await
            .map_err(|e| e.to_string())?;
        let mut by_customer: HashMap<&str, Vec<&NumberedJob>> = HashMap::new();
        for r in &rows {
            by_customer.entry(&r.job.customer_id).or_default().push(r);
        }
        let mut out = HashMap::new();
        for k in keys {
            let theirs = by_customer
                .get(k.customer.as_str())
                .map_or(&[][..], Vec::as_slice);
            let total = theirs.first().map_or(0, |r| r.page_total);
            let (start, end) = k.bounds.window(total);
            let rows = theirs
                .iter()
                .filter(|r| (start..end).contains(&r.page_offset))
                .map(|r| r.job.clone())
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
    use projections::crm::jobs::window_condition;
    use projections::Param;

    /// The rows `window_condition` admits for a customer with `total` jobs, evaluated here
    /// as the database would.
    fn admitted(b: Bounds, total: usize) -> Vec<usize> {
        let mut params = Vec::new();
        let w = JobWindow {
            customer: "c",
            after: b.after,
            before: b.before,
            first: b.first,
            last: b.last,
        };
        let cond = window_condition(&w, &mut params);
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

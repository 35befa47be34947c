//! Relay cursor connections for every list: `first`/`after` forwards, `last`/`before`
//! backwards, `pageInfo`, `edges { cursor node }`, `nodes` and `totalCount`.
//!
//! Cursors are opaque offsets into the list's stable order (each order ends with a unique
//! key). A page is at most 100 items; without `first` or `last` it is 50.

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields};
use async_graphql::{OutputType, SimpleObject};
use projections::row::FromRow;
use projections::Listing;

use super::errors;
use super::RequestCtx;
use crate::state::AppState;

/// The number of items a connection would hold unpaged.
#[derive(Debug, SimpleObject)]
pub struct TotalCount {
    /// Total matching items.
    pub total_count: i64,
}

/// A page of a list.
pub type Page<T> = Connection<usize, T, TotalCount, EmptyFields>;

/// The four Relay paging arguments as a client sent them.
#[derive(Debug, Default, Clone)]
pub struct PageArgs {
    /// Items after this cursor.
    pub after: Option<String>,
    /// Items before this cursor.
    pub before: Option<String>,
    /// The first n (≤ 100).
    pub first: Option<i32>,
    /// The last n (≤ 100).
    pub last: Option<i32>,
}

impl PageArgs {
    /// From resolver arguments.
    pub fn new(
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Self {
        Self {
            after,
            before,
            first,
            last,
        }
    }
}

/// The paging arguments checked, with the cursors decoded to offsets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    /// Items after this offset.
    pub after: Option<usize>,
    /// Items before this offset.
    pub before: Option<usize>,
    /// The first n.
    pub first: Option<usize>,
    /// The last n.
    pub last: Option<usize>,
}

impl Bounds {
    /// Checks and decodes `args`.
    ///
    /// # Errors
    /// VALIDATION for a malformed cursor or a negative count.
    pub fn of(args: &PageArgs) -> async_graphql::Result<Self> {
        let count = |field: &str, v: Option<i32>| -> async_graphql::Result<Option<usize>> {
            v.map(|n| {
                usize::try_from(n).map_err(|_| errors::invalid(field, "must not be negative"))
            })
            .transpose()
        };
        let cursor = |field: &str, c: &Option<String>| -> async_graphql::Result<Option<usize>> {
            c.as_deref()
                .map(|s| {
                    usize::decode_cursor(s)
                        .map_err(|_| errors::invalid(field, "not a cursor from this list"))
                })
                .transpose()
        };
        let first = count("first", args.first)?;
        let last = count("last", args.last)?;
        Ok(Bounds {
            after: cursor("after", &args.after)?,
            before: cursor("before", &args.before)?,
            first,
            last,
        })
    }

    /// The offset window `[start, end)` these bounds take from a list of `total` items.
    pub fn window(self, total: usize) -> (usize, usize) {
        window(total, self.after, self.before, self.first, self.last)
    }
}

/// The page `[start, end)` of a list of `total` items, holding `items` (in order).
pub fn page<T: OutputType>(start: usize, end: usize, total: usize, items: Vec<T>) -> Page<T> {
    let mut c = Connection::with_additional_fields(
        start > 0,
        end < total,
        TotalCount {
            total_count: total as i64,
        },
    );
    c.edges.extend(
        items
            .into_iter()
            .enumerate()
            .map(|(k, node)| Edge::new(start + k, node)),
    );
    c
}

/// Offset window of a Relay page, capped at 100 items (50 when neither `first` nor `last`).
pub fn window(
    total: usize,
    after: Option<usize>,
    before: Option<usize>,
    first: Option<usize>,
    last: Option<usize>,
) -> (usize, usize) {
    let mut start = after.map_or(0, |a| a.saturating_add(1));
    let mut end = before.unwrap_or(total).min(total);
    if let Some(f) = first {
        end = start.saturating_add(f.min(100)).min(end);
    }
    if let Some(l) = last {
        start = end.saturating_sub(l.min(100)).max(start);
    }
    if first.is_none() && last.is_none() {
        end = start.saturating_add(50).min(end);
    }
    (start.min(end), end)
}

/// A page of an in-memory list (already in its order).
///
/// # Errors
/// VALIDATION for a malformed cursor or a negative count.
pub async fn of_vec<T: OutputType>(
    items: Vec<T>,
    args: PageArgs,
) -> async_graphql::Result<Page<T>> {
    let total = items.len();
    paged(args, total, |start, end| {
        let page = items.into_iter().skip(start).take(end - start).collect();
        async move { Ok(page) }
    })
    .await
}

/// A page of a read model's list, each row mapped by `map`.
///
/// # Errors
/// VALIDATION for a malformed cursor; INTERNAL when the read models fail.
pub async fn of_listing<T: OutputType, R: FromRow>(
    state: &AppState,
    rc: &RequestCtx,
    listing: Listing<R>,
    args: PageArgs,
    map: impl Fn(&R) -> T,
) -> async_graphql::Result<Page<T>> {
    let db = state.projections.db();
    of_query(
        rc,
        args,
        listing.count(db),
        |offset, limit| listing.window(db, offset, limit),
        |r: R| Ok(map(&r)),
    )
    .await
}

/// A page of a read model's typed query: `total` counts the list, `fetch(offset, limit)`
/// reads the window asked, `node` maps each row (failing on a row that does not map).
///
/// # Errors
/// VALIDATION for a malformed cursor; INTERNAL when the read models fail.
pub async fn of_query<T, R, Fut>(
    rc: &RequestCtx,
    args: PageArgs,
    total: impl std::future::Future<Output = Result<i64, projections::DbError>>,
    fetch: impl FnOnce(i64, i64) -> Fut,
    node: impl Fn(R) -> async_graphql::Result<T>,
) -> async_graphql::Result<Page<T>>
where
    T: OutputType,
    Fut: std::future::Future<Output = Result<Vec<R>, projections::DbError>>,
{
    let bounds = Bounds::of(&args)?;
    let total = total
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
    let total = usize::try_from(total).unwrap_or(0);
    let (start, end) = bounds.window(total);
    let rows = fetch(start as i64, (end - start) as i64)
        .await
        .map_err(|e| errors::internal(&rc.request_id, &e))?;
    let items = rows
        .into_iter()
        .map(node)
        .collect::<async_graphql::Result<Vec<T>>>()?;
    Ok(page(start, end, total, items))
}

async fn paged<T, F, Fut>(args: PageArgs, total: usize, fetch: F) -> async_graphql::Result<Page<T>>
where
    T: OutputType,
    F: FnOnce(usize, usize) -> Fut,
    Fut: std::future::Future<Output = async_graphql::Result<Vec<T>>>,
{
    let (start, end) = Bounds::of(&args)?.window(total);
    let items = fetch(start, end).await?;
    Ok(page(start, end, total, items))
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn pages_walk_forwards_and_backwards_without_gaps() {
        assert_eq!(window(10, None, None, Some(3), None), (0, 3));
        assert_eq!(window(10, Some(2), None, Some(3), None), (3, 6));
        assert_eq!(window(10, None, None, None, Some(3)), (7, 10));
        assert_eq!(window(10, None, Some(7), None, Some(3)), (4, 7));
        assert_eq!(window(10, Some(8), None, Some(5), None), (9, 10));
        assert_eq!(window(10, Some(20), None, Some(5), None), (10, 10));
        assert_eq!(window(500, None, None, None, None), (0, 50));
        assert_eq!(window(500, None, None, Some(1000), None), (0, 100));
        // A forged cursor at the end of the range is an empty page, not an overflow.
        assert_eq!(window(10, Some(usize::MAX), None, Some(5), None), (10, 10));
    }
}

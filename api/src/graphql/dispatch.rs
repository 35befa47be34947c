//! What dispatch reads: staff's notes on a customer, and who can be assigned a job. Thin:
//! each resolver checks its role (the guard), calls the read model's typed query and maps
//! its rows.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use domain::ports::Role;
use projections::crm::{accounts, notes};

use super::auth::StaffRole;
use super::context::{self, parts, Allow};
use super::errors;
use super::paging::{self, Page, PageArgs};

/// Who wrote a note.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum NoteAuthor {
    /// A staff user (`authorId` is theirs).
    Staff,
    /// The customer, through the portal (`authorId` is theirs).
    Customer,
    /// The system: an import, a policy (no `authorId`).
    System,
}

/// A staff note on a customer.
#[derive(SimpleObject, Debug)]
pub struct CustomerNote {
    /// What was written.
    pub text: String,
    /// Who wrote it.
    pub author: NoteAuthor,
    /// The staff user or customer who wrote it.
    pub author_id: Option<ID>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A staff user who can sign in and be assigned work.
#[derive(SimpleObject, Debug)]
pub struct StaffMember {
    /// Staff user id (what `assignTechnician` takes).
    pub id: ID,
    /// Name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
}

/// Dispatch queries.
#[derive(Debug, Default)]
pub struct DispatchQuery;

#[Object]
impl DispatchQuery {
    /// A customer's notes, newest first (staff). Erasing the customer removes them.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn customer_notes(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<CustomerNote>> {
        let (state, rc) = parts(ctx)?;
        let id = super::customers::customer_id("customerId", &customer_id)?.to_string();
        let db = state.projections.db();
        paging::of_query(
            rc,
            PageArgs::new(after, before, first, last),
            notes::count(db, &id),
            |offset, limit| notes::of_customer(db, &id, offset, limit),
            |n| {
                Ok(CustomerNote {
                    text: n.text,
                    author: match n.author_kind {
                        notes::NoteAuthorKind::Staff => NoteAuthor::Staff,
                        notes::NoteAuthorKind::Customer => NoteAuthor::Customer,
                        notes::NoteAuthorKind::System => NoteAuthor::System,
                    },
                    author_id: n.author_id.map(ID),
                    at: read_time(rc, &n.at)?,
                })
            },
        )
        .await
    }

    /// Staff users who can sign in, by name, with their roles: whom a job can be assigned
    /// to (managers; admins also see deactivated users and emails in `staffUsers`).
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn active_staff(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<StaffMember>> {
        let (state, rc) = parts(ctx)?;
        let db = state.projections.db();
        paging::of_query(
            rc,
            PageArgs::new(after, before, first, last),
            accounts::active_staff_count(db),
            |offset, limit| accounts::active_staff(db, offset, limit),
            |s| {
                let role = context::parse_role(&s.role).ok_or_else(|| {
                    errors::internal(
                        &rc.request_id,
                        &format!("read-model column role is not a role: {}", s.role),
                    )
                })?;
                Ok(StaffMember {
                    id: ID(s.staff_user_id),
                    name: s.name,
                    role: role.into(),
                })
            },
        )
        .await
    }
}

/// A read model's RFC 3339 time (INTERNAL naming it when it is not one).
pub(super) fn read_time(rc: &super::RequestCtx, s: &str) -> async_graphql::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| errors::internal(&rc.request_id, &format!("read-model time {s:?}: {e}")))
}

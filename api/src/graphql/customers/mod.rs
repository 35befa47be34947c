//! Customers: list and search, the customer-360 view, and their commands.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use chrono::NaiveDate;
use domain::customer::CustomerCommand;
use domain::ids::CustomerId;
use domain::ports::Role;

use super::auth::check_len;
use super::command;
use super::context::{self, parts, Allow, Principal};
use super::errors;
use super::jobs::{job_from_row, Job};
use super::paging::{self, Page, PageArgs};
use crate::state::AppState;

mod inputs;
mod objects;

pub use inputs::*;
pub use objects::*;

/// Customer queries.
#[derive(Debug, Default)]
pub struct CustomerQuery;

/// Who may read which customer: staff any; a portal customer only themselves.
pub fn may_read_customer(rc: &super::RequestCtx, id: &str) -> async_graphql::Result<()> {
    match &rc.principal {
        Some(Principal::Staff { .. }) => Ok(()),
        Some(Principal::Customer { id: own }) if own.to_string() == id => Ok(()),
        Some(Principal::Customer { .. }) => Err(errors::forbidden("read another customer")),
        None => Err(errors::unauthenticated()),
    }
}

#[Object]
impl CustomerQuery {
    /// One customer (staff: any; portal: only yourself, without the staff-only fields).
    #[graphql(guard = "Allow::StaffOrCustomer(Role::Staff)")]
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        let (state, rc) = parts(ctx)?;
        may_read_customer(rc, &id)?;
        Ok(load_customer(state, &id).await)
    }

    /// The signed-in portal customer (the staff-only fields answer `FORBIDDEN`).
    #[graphql(guard = "Allow::Customer")]
    async fn my_profile(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let (state, rc) = parts(ctx)?;
        let (id, _, _) = context::customer(rc)?;
        Ok(load_customer(state, &id.to_string()).await)
    }

    /// Customers, searchable by name, email, phone or tag; by name unless `sort` says
    /// otherwise.
    #[expect(
        clippy::too_many_arguments,
        reason = "Relay's four paging arguments plus filters"
    )]
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        tag: Option<String>,
        #[graphql(default)] sort: CustomerSort,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> async_graphql::Result<Page<Customer>> {
        let (state, rc) = parts(ctx)?;
        if let Some(q) = &search {
            check_len("search", q)?;
        }
        paging::of_listing(
            state,
            rc,
            projections::crm::customers::search(search.as_deref(), tag.as_deref(), sort.into()),
            PageArgs::new(after, before, first, last),
            customer_from_row,
        )
        .await
    }
}

/// Parses a customer id argument.
pub fn customer_id(field: &str, id: &ID) -> async_graphql::Result<CustomerId> {
    CustomerId::parse(id).map_err(|_| errors::invalid(field, "not a customer id"))
}

/// Runs one customer command as the signed-in staff user (the guard checked their role).
async fn run(
    ctx: &Context<'_>,
    id: CustomerId,
    key: Option<&String>,
    cmd: CustomerCommand,
) -> async_graphql::Result<CustomerPayload> {
    let (state, rc) = parts(ctx)?;
    let by = context::staff_actor(rc)?;
    let done = command::execute(state, rc, state.crm.customers(), id, by, key, cmd).await?;
    Ok(CustomerPayload {
        customer: load_customer(state, &id.to_string()).await,
        position: done.position,
    })
}

/// A command by the signed-in portal customer on their own record, and the portal
/// activity it counts as (best effort: the change itself is what matters).
async fn as_customer(
    ctx: &Context<'_>,
    me: CustomerId,
    key: Option<&String>,
    cmd: CustomerCommand,
    activity: Option<domain::portal::PortalActivity>,
) -> async_graphql::Result<CustomerPayload> {
    let (state, rc) = parts(ctx)?;
    let (_, actor, meta) = context::customer(rc)?;
    let by = (actor, meta.clone());
    let done = command::execute(state, rc, state.crm.customers(), me, by, key, cmd).await?;
    // A replayed retry already counted as activity the first time.
    if let Some(activity) = activity {
        record_portal_activity(state, &done.outcome, me, activity, &meta).await;
    }
    Ok(CustomerPayload {
        customer: load_customer(state, &me.to_string()).await,
        position: done.position,
    })
}

/// Counts `activity` for the portal customer `me` after `out`, once: a replayed retry
/// already counted. Best effort: the change itself is what matters.
pub(super) async fn record_portal_activity(
    state: &AppState,
    out: &commands::CommandOutcome,
    me: CustomerId,
    activity: domain::portal::PortalActivity,
    meta: &commands::EventMetadata,
) {
    if out.replayed {
        return;
    }
    let _ = state
        .crm
        .portal_accounts()
        .execute(
            domain::ids::PortalAccountId::for_customer(me),
            domain::Actor::Customer { id: me },
            domain::portal::PortalAccountCommand::RecordActivity { activity },
            meta,
        )
        .await;
}

/// Customer mutations.
#[derive(Debug, Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates a customer (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        check_len("name", &input.name)?;
        let (state, rc) = parts(ctx)?;
        // A retried create returns the customer the first attempt made.
        let id = CustomerId::from_uuid(
            context::id_for_create(state, rc, input.idempotency_key.as_ref()).await,
        );
        let cmd = CustomerCommand::Create {
            customer_id: id,
            name: input.name,
            email: input.email,
            phone: input.phone,
            birthday: input.birthday,
            customer_since: input.customer_since,
        };
        run(ctx, id, input.idempotency_key.as_ref(), cmd).await
    }

    /// Updates name, email and phone (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn update_customer_contact(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerContactInput,
    ) -> async_graphql::Result<CustomerPayload> {
        check_len("name", &input.name)?;
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::UpdateContactDetails {
                name: input.name,
                email: input.email,
                phone: input.phone,
            },
        )
        .await
    }

    /// The signed-in portal customer changes their own name or phone (a field left out stays
    /// as it is). The email is their sign-in and moves only with a code sent to the new
    /// address (`requestEmailChange`, `confirmEmailChange`): another address here is
    /// `VALIDATION` on `email`, whether or not another account uses it.
    #[graphql(guard = "Allow::Customer")]
    async fn update_my_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateMyProfileInput,
    ) -> async_graphql::Result<CustomerPayload> {
        check_len("name", &input.name)?;
        let (state, rc) = parts(ctx)?;
        let (me, _, _) = context::customer(rc)?;
        // A field left out stays as it is: the email is the portal sign-in and must not
        // vanish because a form did not send it.
        let current = load_customer(state, &me.to_string())
            .await
            .ok_or_else(|| errors::not_found("customer", &me.to_string()))?;
        // The sign-in email as the log has it: the read model may not show a change just made.
        let email = state
            .crm
            .customers()
            .load(me)
            .await
            .map_err(|e| errors::app(&rc.request_id, e))?
            .aggregate
            .email()
            .map(|e| e.to_string());
        if let Some(e) = &input.email {
            check_len("email", e)?;
            if email.as_deref() != Some(e.trim().to_lowercase().as_str()) {
                return Err(errors::invalid(
                    "email",
                    "the sign-in email changes with a code sent to the new address: use requestEmailChange",
                ));
            }
        }
        let phone = input.phone.or(current.phone);
        as_customer(
            ctx,
            me,
            input.idempotency_key.as_ref(),
            CustomerCommand::UpdateContactDetails {
                name: input.name,
                email,
                phone,
            },
            None,
        )
        .await
    }

    /// The signed-in portal customer gives or withdraws marketing consent on a channel.
    #[graphql(guard = "Allow::Customer")]
    async fn set_my_marketing_consent(
        &self,
        ctx: &Context<'_>,
        input: MyMarketingConsentInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let (_, rc) = parts(ctx)?;
        let (me, _, _) = context::customer(rc)?;
        let channel = domain::consent::Channel::from(input.channel);
        let source = domain::consent::ConsentSource::Portal;
        let cmd = if input.granted {
            CustomerCommand::GrantMarketingConsent { channel, source }
        } else {
            CustomerCommand::RevokeMarketingConsent { channel, source }
        };
        as_customer(
            ctx,
            me,
            input.idempotency_key.as_ref(),
            cmd,
            Some(domain::portal::PortalActivity::UpdatedPreferences),
        )
        .await
    }

    /// Tags a customer (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn tag_customer(
        &self,
        ctx: &Context<'_>,
        input: TagCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::AddTag { tag: input.tag },
        )
        .await
    }

    /// Records consent given or withdrawn by the customer, as told to staff.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn set_marketing_consent(
        &self,
        ctx: &Context<'_>,
        input: MarketingConsentInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        let channel = domain::consent::Channel::from(input.channel);
        let source = domain::consent::ConsentSource::Staff;
        let cmd = if input.granted {
            CustomerCommand::GrantMarketingConsent { channel, source }
        } else {
            CustomerCommand::RevokeMarketingConsent { channel, source }
        };
        run(ctx, id, input.idempotency_key.as_ref(), cmd).await
    }

    /// Erases a customer's personal data everywhere it is readable (admin).
    #[graphql(guard = "Allow::Staff(Role::Admin)")]
    async fn erase_customer(
        &self,
        ctx: &Context<'_>,
        input: EraseCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::ErasePersonalData {
                reason: input.reason,
            },
        )
        .await
    }

    /// Adds or replaces the address under `label` (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn add_customer_address(
        &self,
        ctx: &Context<'_>,
        input: AddCustomerAddressInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        check_len("label", &input.label)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::AddAddress {
                label: input.label,
                address: domain::values::AddressInput {
                    line1: input.line1,
                    line2: input.line2,
                    city: input.city,
                    region: input.region,
                    postal_code: input.postal_code,
                },
            },
        )
        .await
    }

    /// Removes the address under `label` (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn remove_customer_address(
        &self,
        ctx: &Context<'_>,
        input: RemoveCustomerAddressInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        check_len("label", &input.label)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::RemoveAddress { label: input.label },
        )
        .await
    }

    /// Sets the birthday (staff); the birthday bonus follows it.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn set_customer_birthday(
        &self,
        ctx: &Context<'_>,
        input: SetCustomerBirthdayInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::SetBirthday {
                birthday: input.birthday,
            },
        )
        .await
    }

    /// Corrects the customer-since date (staff), e.g. after an import; the anniversary
    /// bonus follows it.
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn set_customer_since(
        &self,
        ctx: &Context<'_>,
        input: SetCustomerSinceInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::SetCustomerSince {
                customer_since: input.customer_since,
            },
        )
        .await
    }

    /// Adds a staff note (staff; up to 5,000 characters).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn add_customer_note(
        &self,
        ctx: &Context<'_>,
        input: AddCustomerNoteInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::AddNote { text: input.text },
        )
        .await
    }

    /// Removes a tag (staff).
    #[graphql(guard = "Allow::Staff(Role::Staff)")]
    async fn untag_customer(
        &self,
        ctx: &Context<'_>,
        input: TagCustomerInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let id = customer_id("id", &input.id)?;
        run(
            ctx,
            id,
            input.idempotency_key.as_ref(),
            CustomerCommand::RemoveTag { tag: input.tag },
        )
        .await
    }

    /// Merges a duplicate into the customer that stays (managers): the duplicate is closed
    /// pointing at the survivor, and the survivor records what it absorbed. Returns the
    /// survivor.
    #[graphql(guard = "Allow::Staff(Role::Manager)")]
    async fn merge_customers(
        &self,
        ctx: &Context<'_>,
        input: MergeCustomersInput,
    ) -> async_graphql::Result<CustomerPayload> {
        let duplicate = customer_id("duplicateId", &input.duplicate_id)?;
        let survivor = customer_id("survivorId", &input.survivor_id)?;
        if duplicate == survivor {
            return Err(errors::invalid(
                "survivorId",
                "a customer cannot be merged into itself",
            ));
        }
        let (state, rc) = parts(ctx)?;
        let by = context::staff_actor(rc)?;
        let key = input.idempotency_key.as_ref();
        let merge = CustomerCommand::MergeInto { target: survivor };
        let on = state.crm.customers();
        command::run(rc, on, duplicate, by.clone(), key, merge).await?;
        // Its own key: a retry after a failure here records the absorption once.
        let absorb_key = key.map(|k| format!("{k}:absorb"));
        let absorb = CustomerCommand::AbsorbDuplicate { source: duplicate };
        let on = state.crm.customers();
        let done =
            command::execute(state, rc, on, survivor, by, absorb_key.as_ref(), absorb).await?;
        Ok(CustomerPayload {
            customer: load_customer(state, &survivor.to_string()).await,
            position: done.position,
        })
    }
}

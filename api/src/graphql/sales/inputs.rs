//! The inputs and payloads of the pipeline, campaign and review mutations, and the checks
//! that turn a campaign's input into its draft.

// The parts share their parent's imports.
use super::*;

/// A new opportunity.
#[derive(InputObject, Debug)]
pub struct CreateOpportunityInput {
    /// The customer.
    pub customer_id: ID,
    /// What it is.
    pub title: String,
    /// Expected value, cents.
    pub value_cents: i64,
    /// Responsible staff user (default: you).
    pub owner_id: Option<ID>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Moving an opportunity.
#[derive(InputObject, Debug)]
pub struct MoveOpportunityStageInput {
    /// Opportunity.
    pub id: ID,
    /// New stage.
    pub stage: Stage,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An automatic offer.
#[derive(InputObject, Debug)]
pub struct ConfigureAutoOfferInput {
    /// Opportunity.
    pub id: ID,
    /// Percent off (1–100); or give `amountOffCents`.
    pub percent_off: Option<i32>,
    /// Fixed amount off, cents.
    pub amount_off_cents: Option<i64>,
    /// Valid until.
    pub expires_at: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Sending the offer now.
#[derive(InputObject, Debug)]
pub struct SendOfferInput {
    /// Opportunity.
    pub id: ID,
    /// Channel.
    pub channel: MarketingChannel,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// An opportunity, by id (accept, view, archive).
#[derive(InputObject, Debug)]
pub struct OpportunityRefInput {
    /// Opportunity.
    pub id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Winning: books the job it becomes.
#[derive(InputObject, Debug)]
pub struct WinOpportunityInput {
    /// Opportunity.
    pub id: ID,
    /// Services of the job.
    pub services: Vec<String>,
    /// Window start.
    pub start: Option<DateTime<Utc>>,
    /// Window end.
    pub end: Option<DateTime<Utc>>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Losing, with a reason.
#[derive(InputObject, Debug)]
pub struct LoseOpportunityInput {
    /// Opportunity.
    pub id: ID,
    /// Why (required).
    pub reason: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// The opportunity after a change.
#[derive(SimpleObject, Debug)]
pub struct OpportunityPayload {
    /// As the read model shows it now.
    pub opportunity: Option<Opportunity>,
    /// Log position (for `sync`).
    pub position: String,
}

/// A campaign.
#[derive(InputObject, Debug)]
pub struct CreatePromotionInput {
    /// Name.
    pub name: String,
    /// Channel.
    pub channel: MarketingChannel,
    /// Message template, MiniJinja syntax (`Hi {{ first_name }}`): variables `first_name`,
    /// `name`, `code`, `discount`, `ends_on`, `booking_link`, `points_balance`, `tier`,
    /// `unsubscribe_link` (email). An unknown variable, or `code`/`discount` without one, is
    /// `VALIDATION` on `template`.
    pub template: String,
    /// Discount code.
    pub discount_code: Option<String>,
    /// The discount as customers read it (`20%`, `$25 off`), for `{{ discount }}`.
    pub discount: Option<String>,
    /// Campaign (default), or a standing birthday or anniversary promotion that the daily
    /// jobs send to each customer on their day.
    pub kind: Option<PromotionKindInput>,
    /// Only customers with this tag (default: all who consented). At most one of `tag`,
    /// `tier`, `lapsedDays`, `birthdayIn`; none for birthday and anniversary promotions.
    pub tag: Option<String>,
    /// Only loyalty members at this tier.
    pub tier: Option<PromotionTier>,
    /// Only customers without a completed job for this many days (1 to 3650).
    pub lapsed_days: Option<i32>,
    /// Only customers whose birthday falls in the week (Monday–Sunday) or month of the day
    /// the campaign is sent, in the business's time zone.
    pub birthday_in: Option<BirthdayWindowInput>,
    /// Starts.
    pub starts_at: DateTime<Utc>,
    /// Ends.
    pub ends_at: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A customer using a campaign.
#[derive(InputObject, Debug)]
pub struct RedeemPromotionInput {
    /// The campaign; or give `discountCode`.
    pub promotion_id: Option<ID>,
    /// The code the customer quoted (any case).
    pub discount_code: Option<String>,
    /// Who used it.
    pub customer_id: ID,
    /// The job it was used on, for attributed revenue.
    pub job_id: Option<ID>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A campaign's content.
#[derive(InputObject, Debug)]
pub struct PromotionContentInput {
    /// Name.
    pub name: String,
    /// Channel.
    pub channel: MarketingChannel,
    /// Message template, MiniJinja syntax (`Hi {{ first_name }}`): variables `first_name`,
    /// `name`, `code`, `discount`, `ends_on`, `booking_link`, `points_balance`, `tier`,
    /// `unsubscribe_link` (email). An unknown variable, or `code`/`discount` without one, is
    /// `VALIDATION` on `template`.
    pub template: String,
    /// Discount code.
    pub discount_code: Option<String>,
    /// The discount as customers read it (`20%`, `$25 off`), for `{{ discount }}`.
    pub discount: Option<String>,
    /// Campaign (default), or a standing birthday or anniversary promotion that the daily
    /// jobs send to each customer on their day.
    pub kind: Option<PromotionKindInput>,
    /// Only customers with this tag (default: all who consented). At most one of `tag`,
    /// `tier`, `lapsedDays`, `birthdayIn`; none for birthday and anniversary promotions.
    pub tag: Option<String>,
    /// Only loyalty members at this tier.
    pub tier: Option<PromotionTier>,
    /// Only customers without a completed job for this many days (1 to 3650).
    pub lapsed_days: Option<i32>,
    /// Only customers whose birthday falls in the week (Monday–Sunday) or month of the day
    /// the campaign is sent, in the business's time zone.
    pub birthday_in: Option<BirthdayWindowInput>,
    /// Starts.
    pub starts_at: DateTime<Utc>,
    /// Ends.
    pub ends_at: DateTime<Utc>,
}

/// New content for a campaign not yet delivering.
#[derive(InputObject, Debug)]
pub struct UpdatePromotionInput {
    /// Campaign.
    pub id: ID,
    /// The content that replaces the current one.
    pub content: PromotionContentInput,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// What a promotion is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PromotionKindInput {
    /// A one-off campaign: each customer gets it at most once.
    Campaign,
    /// Sent on each customer's birthday (business time zone), once a year.
    Birthday,
    /// Sent on each customer's customer-since anniversary, once a year.
    Anniversary,
}

/// Which birthdays a campaign goes to.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BirthdayWindowInput {
    /// Birthdays Monday to Sunday of the sending day's week.
    ThisWeek,
    /// Birthdays in the sending day's month.
    ThisMonth,
}

/// A loyalty tier, as an audience.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PromotionTier {
    /// Bronze.
    Bronze,
    /// Silver.
    Silver,
    /// Gold.
    Gold,
    /// Platinum.
    Platinum,
}

impl From<PromotionTier> for domain::loyalty::Tier {
    fn from(t: PromotionTier) -> Self {
        match t {
            PromotionTier::Bronze => Self::Bronze,
            PromotionTier::Silver => Self::Silver,
            PromotionTier::Gold => Self::Gold,
            PromotionTier::Platinum => Self::Platinum,
        }
    }
}

/// One promotion, for pausing, resuming or cancelling it.
#[derive(InputObject, Debug)]
pub struct PromotionRefInput {
    /// The promotion.
    pub id: ID,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// Scheduling a campaign.
#[derive(InputObject, Debug)]
pub struct SchedulePromotionInput {
    /// Campaign.
    pub id: ID,
    /// When delivery may begin (not in the past).
    pub send_at: DateTime<Utc>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A campaign after a change.
#[derive(SimpleObject, Debug)]
#[graphql(complex)]
pub struct PromotionPayload {
    /// Its id.
    pub promotion_id: ID,
    /// Log position.
    pub position: String,
}

#[async_graphql::ComplexObject]
impl PromotionPayload {
    /// The campaign as the read model now shows it.
    async fn promotion(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Promotion>> {
        let (state, rc) = parts(ctx)?;
        Ok(
            campaigns::get(state.projections.db(), self.promotion_id.as_ref())
                .await
                .map_err(|e| errors::internal(&rc.request_id, &e))?
                .as_ref()
                .map(promotion),
        )
    }
}

/// A staff response to a review.
#[derive(InputObject, Debug)]
pub struct RespondToReviewInput {
    /// Review.
    pub review_id: ID,
    /// The response.
    pub text: String,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A review left in the portal.
#[derive(InputObject, Debug)]
pub struct SubmitReviewInput {
    /// The job reviewed.
    pub job_id: Option<ID>,
    /// 1–5.
    pub rating: i64,
    /// Text.
    pub comment: Option<String>,
    /// Makes retries safe.
    pub idempotency_key: Option<String>,
}

/// A review after a change.
#[derive(SimpleObject, Debug)]
pub struct ReviewPayload {
    /// Its id.
    pub review_id: ID,
    /// Log position.
    pub position: String,
}

impl CreatePromotionInput {
    /// The content, and the idempotency key.
    pub(super) fn split(self) -> (PromotionContentInput, Option<String>) {
        (
            PromotionContentInput {
                name: self.name,
                channel: self.channel,
                template: self.template,
                discount_code: self.discount_code,
                discount: self.discount,
                kind: self.kind,
                tag: self.tag,
                tier: self.tier,
                lapsed_days: self.lapsed_days,
                birthday_in: self.birthday_in,
                starts_at: self.starts_at,
                ends_at: self.ends_at,
            },
            self.idempotency_key,
        )
    }
}

impl PromotionContentInput {
    /// The campaign draft, with the input's limits checked.
    pub(super) fn draft(
        self,
        current: Option<PromotionKind>,
    ) -> async_graphql::Result<PromotionDraft> {
        check_len("name", &self.name)?;
        if self.template.chars().count() > 1_600 {
            return Err(errors::invalid("template", "at most 1,600 characters"));
        }
        let chosen = [
            self.tag.is_some(),
            self.tier.is_some(),
            self.lapsed_days.is_some(),
            self.birthday_in.is_some(),
        ]
        .into_iter()
        .filter(|c| *c)
        .count();
        // Left out: what it is (an edit does not turn a birthday promotion into a campaign).
        let kind = self.kind.unwrap_or(match current {
            Some(PromotionKind::Birthday) => PromotionKindInput::Birthday,
            Some(PromotionKind::Anniversary) => PromotionKindInput::Anniversary,
            _ => PromotionKindInput::Campaign,
        });
        if chosen > 1 {
            return Err(errors::invalid(
                "audience",
                "choose at most one of tag, tier, lapsedDays and birthdayIn",
            ));
        }
        let audience = match kind {
            PromotionKindInput::Birthday | PromotionKindInput::Anniversary if chosen > 0 => {
                return Err(errors::invalid(
                    "audience",
                    "birthday and anniversary promotions go to every customer on their day",
                ))
            }
            PromotionKindInput::Birthday => AudienceSegment::BirthdayToday,
            PromotionKindInput::Anniversary => AudienceSegment::AnniversaryToday,
            PromotionKindInput::Campaign => match (self.tag, self.tier, self.lapsed_days) {
                _ if self.birthday_in.is_some() => AudienceSegment::BirthdayIn {
                    window: match self.birthday_in {
                        Some(BirthdayWindowInput::ThisMonth) => BirthdayWindow::ThisMonth,
                        _ => BirthdayWindow::ThisWeek,
                    },
                },
                (Some(t), _, _) => AudienceSegment::Tagged {
                    tag: domain::values::Tag::parse(&t)
                        .map_err(|v| errors::invalid("tag", v.message))?,
                },
                (_, Some(tier), _) => AudienceSegment::LoyaltyTier { tier: tier.into() },
                (_, _, Some(days)) => AudienceSegment::Inactive {
                    days: u32::try_from(days)
                        .ok()
                        .filter(|d| (1..=3650).contains(d))
                        .ok_or_else(|| errors::invalid("lapsedDays", "1 to 3650 days"))?,
                },
                (None, None, None) => AudienceSegment::AllCustomers,
            },
        };
        Ok(PromotionDraft {
            name: self.name,
            kind: match kind {
                PromotionKindInput::Campaign => PromotionKind::Campaign,
                PromotionKindInput::Birthday => PromotionKind::Birthday,
                PromotionKindInput::Anniversary => PromotionKind::Anniversary,
            },
            audience,
            channel: Channel::from(self.channel),
            template: self.template,
            discount_code: self.discount_code,
            discount: self.discount,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        })
    }
}

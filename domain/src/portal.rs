//! PortalAccount: a customer's login to the portal, and the activity recorded for analytics.
//!
//! The login email is the customer's, held by the Customer aggregate (PII stays there); the
//! portal account references the customer only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::validation_error;
use crate::ids::{CustomerId, JobId, PortalAccountId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::SecretHash;

/// `Aggregate::TYPE` of [`PortalAccount`].
pub const AGGREGATE_TYPE: &str = "PortalAccount";

/// Something a customer did in the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PortalActivity {
    /// Looked at their service history.
    ViewedServiceHistory,
    /// Booked a service online.
    BookedService {
        /// The job booked.
        job_id: JobId,
    },
    /// Looked at loyalty points and tier.
    ViewedLoyalty,
    /// Redeemed a reward.
    RedeemedReward {
        /// Points spent.
        points: i64,
    },
    /// Shared their referral code.
    SharedReferralCode,
    /// Updated their profile.
    UpdatedProfile,
    /// Updated marketing preferences.
    UpdatedPreferences,
}

/// What can be asked of a portal account.
#[derive(Debug, Clone, PartialEq)]
pub enum PortalAccountCommand {
    /// Register (id: [`PortalAccountId::for_customer`]).
    Register {
        /// The customer.
        customer_id: CustomerId,
        /// Hash of the chosen password.
        password_hash: String,
    },
    /// Change the password.
    ChangePassword {
        /// The new hash.
        password_hash: String,
    },
    /// A successful login.
    RecordLogin,
    /// Some portal activity.
    RecordActivity {
        /// What happened.
        activity: PortalActivity,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`PortalAccount`] aggregate.
    pub enum PortalAccountEvent {
        /// A customer registered for the portal.
        PortalAccountRegistered {
            /// The account.
            portal_account_id: PortalAccountId,
            /// The customer.
            customer_id: CustomerId,
            /// Password hash (never logged).
            password_hash: SecretHash,
            /// When.
            at: DateTime<Utc>,
        },
        /// The password was changed.
        PortalPasswordChanged {
            /// The customer.
            customer_id: CustomerId,
            /// The new hash.
            password_hash: SecretHash,
            /// When.
            at: DateTime<Utc>,
        },
        /// A successful login.
        PortalLoginRecorded {
            /// The customer.
            customer_id: CustomerId,
            /// When.
            at: DateTime<Utc>,
        },
        /// Portal activity, for analytics.
        PortalActivityRecorded {
            /// The customer.
            customer_id: CustomerId,
            /// What happened.
            activity: PortalActivity,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a portal-account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalAccountError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already registered.
    #[error("the customer already has a portal account")]
    AlreadyRegistered,
    /// Not registered.
    #[error("unknown portal account")]
    UnknownAccount,
}
validation_error!(PortalAccountError);

/// The portal account's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalAccount {
    customer_id: Option<CustomerId>,
    /// The password sign-in and a sign-up's retry verify against (absent in snapshots
    /// taken before it was kept).
    #[serde(default)]
    password_hash: Option<SecretHash>,
}

impl PortalAccount {
    /// The password hash set at registration or by the latest change, if known.
    pub fn password_hash(&self) -> Option<&SecretHash> {
        self.password_hash.as_ref()
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`PortalAccountError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: PortalAccountCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<PortalAccountEvent>, PortalAccountError> {
        let at = ctx.now;
        if let PortalAccountCommand::Register {
            customer_id,
            password_hash,
        } = cmd
        {
            if self.customer_id.is_some() {
                return Err(PortalAccountError::AlreadyRegistered);
            }
            return Ok(vec![PortalAccountEvent::PortalAccountRegistered {
                portal_account_id: PortalAccountId::for_customer(customer_id),
                customer_id,
                password_hash: SecretHash::parse(&password_hash)?,
                at,
            }]);
        }
        let customer_id = self.customer_id.ok_or(PortalAccountError::UnknownAccount)?;
        Ok(match cmd {
            PortalAccountCommand::Register { .. } => vec![],
            PortalAccountCommand::ChangePassword { password_hash } => {
                vec![PortalAccountEvent::PortalPasswordChanged {
                    customer_id,
                    password_hash: SecretHash::parse(&password_hash)?,
                    at,
                }]
            }
            PortalAccountCommand::RecordLogin => {
                vec![PortalAccountEvent::PortalLoginRecorded { customer_id, at }]
            }
            PortalAccountCommand::RecordActivity { activity } => {
                vec![PortalAccountEvent::PortalActivityRecorded {
                    customer_id,
                    activity,
                    at,
                }]
            }
        })
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: PortalAccountEvent) {
        match event {
            PortalAccountEvent::PortalAccountRegistered {
                customer_id,
                password_hash,
                ..
            } => {
                self.customer_id = Some(customer_id);
                self.password_hash = Some(password_hash);
            }
            PortalAccountEvent::PortalPasswordChanged { password_hash, .. } => {
                self.password_hash = Some(password_hash);
            }
            _ => {}
        }
    }
}

cqrs_aggregate!(
    PortalAccount,
    AGGREGATE_TYPE,
    PortalAccountCommand,
    PortalAccountEvent,
    PortalAccountError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn customer() -> CustomerId {
        CustomerId(Uuid::from_u128(1))
    }
    fn registered() -> PortalAccountEvent {
        PortalAccountEvent::PortalAccountRegistered {
            portal_account_id: PortalAccountId::for_customer(customer()),
            customer_id: customer(),
            password_hash: SecretHash::parse("$argon2id$x").expect("ok"),
            at: test_now(),
        }
    }
    fn when(
        given: Vec<PortalAccountEvent>,
        cmd: PortalAccountCommand,
    ) -> Result<Vec<PortalAccountEvent>, PortalAccountError> {
        testing::run::<PortalAccount, _>(
            testing::test_services(),
            given,
            testing::customer_actor(1),
            cmd,
        )
    }

    #[test]
    fn it_should_register_a_portal_account_for_a_customer_once() {
        let cmd = PortalAccountCommand::Register {
            customer_id: customer(),
            password_hash: "$argon2id$x".into(),
        };
        assert_eq!(when(vec![], cmd.clone()), Ok(vec![registered()]));
        assert_eq!(
            when(vec![registered()], cmd),
            Err(PortalAccountError::AlreadyRegistered)
        );
    }

    #[test]
    fn it_should_refuse_an_empty_password_hash_naming_the_field() {
        let cmd = PortalAccountCommand::Register {
            customer_id: customer(),
            password_hash: "".into(),
        };
        assert_eq!(
            when(vec![], cmd).expect_err("empty").field(),
            Some("password_hash")
        );
    }

    #[test]
    fn it_should_record_logins_and_activity() {
        assert_eq!(
            when(vec![registered()], PortalAccountCommand::RecordLogin),
            Ok(vec![PortalAccountEvent::PortalLoginRecorded {
                customer_id: customer(),
                at: test_now()
            }])
        );
        let activity = PortalActivity::BookedService {
            job_id: JobId(Uuid::from_u128(10)),
        };
        assert_eq!(
            when(
                vec![registered()],
                PortalAccountCommand::RecordActivity {
                    activity: activity.clone()
                }
            ),
            Ok(vec![PortalAccountEvent::PortalActivityRecorded {
                customer_id: customer(),
                activity,
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_refuse_activity_on_an_unknown_account() {
        assert_eq!(
            when(vec![], PortalAccountCommand::RecordLogin),
            Err(PortalAccountError::UnknownAccount)
        );
    }
}

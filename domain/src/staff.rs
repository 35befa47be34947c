//! StaffUser: invitation with a role, password hash (hashing happens elsewhere), role changes,
//! deactivation, password reset and logins.
//!
//! Staff contact data (name, email) lives here: staff are employees, not customers, and are
//! outside the customer crypto-shredding scheme.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::validation_error;
use crate::ids::StaffUserId;
use crate::ports::{cqrs_aggregate, Actor, CommandContext, Role};
use crate::values::{Email, NonEmptyText, SecretHash};

/// `Aggregate::TYPE` of [`StaffUser`].
pub const AGGREGATE_TYPE: &str = "StaffUser";

/// What can be asked of a staff user.
#[derive(Debug, Clone, PartialEq)]
pub enum StaffUserCommand {
    /// Create a staff user (by an admin, or by the system for the first admin).
    Invite {
        /// The id (the aggregate id).
        staff_user_id: StaffUserId,
        /// Login email.
        email: String,
        /// Display name.
        name: String,
        /// Role.
        role: Role,
        /// The first password's hash (argon2id, computed by the caller), set in
        /// the same decision: one command, so a retried creation has one outcome.
        password_hash: Option<String>,
    },
    /// Set the password hash (argon2id, computed by the caller).
    SetPasswordHash {
        /// The hash.
        password_hash: String,
    },
    /// Change the role (admin only).
    ChangeRole {
        /// The new role.
        role: Role,
    },
    /// Deactivate (admin only; not oneself).
    Deactivate,
    /// A reset token was emailed; only its hash is kept.
    RequestPasswordReset {
        /// Hash of the emailed token.
        token_hash: String,
        /// When the token stops working.
        expires_at: DateTime<Utc>,
    },
    /// The user presented a reset token and a new password.
    CompletePasswordReset {
        /// Hash of the presented token.
        token_hash: String,
        /// Hash of the new password.
        password_hash: String,
    },
    /// A successful login.
    RecordLogin,
    /// The staff user downloaded data (audited: who, when, what). Only they record it.
    RecordExport {
        /// What was exported, e.g. `customers CSV`, `report … for 2026-11-30`.
        what: String,
    },
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`StaffUser`] aggregate.
    pub enum StaffUserEvent {
        /// A staff user was created.
        StaffUserInvited {
            /// The user.
            staff_user_id: StaffUserId,
            /// Login email.
            email: Email,
            /// Display name.
            name: NonEmptyText,
            /// Role.
            role: Role,
            /// Who invited (System for the first admin).
            invited_by: Actor,
            /// When.
            at: DateTime<Utc>,
        },
        /// The password hash was set.
        StaffPasswordSet {
            /// The hash (never logged).
            password_hash: SecretHash,
            /// When.
            at: DateTime<Utc>,
        },
        /// The role changed.
        StaffRoleChanged {
            /// Previous role.
            from: Role,
            /// New role.
            to: Role,
            /// When.
            at: DateTime<Utc>,
        },
        /// The user was deactivated.
        StaffUserDeactivated {
            /// When.
            at: DateTime<Utc>,
        },
        /// A password reset was requested.
        PasswordResetRequested {
            /// Hash of the emailed token.
            token_hash: SecretHash,
            /// Token expiry.
            expires_at: DateTime<Utc>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The password was reset with a valid token.
        PasswordResetCompleted {
            /// The new hash.
            password_hash: SecretHash,
            /// When.
            at: DateTime<Utc>,
        },
        /// A successful login.
        StaffLoginRecorded {
            /// When.
            at: DateTime<Utc>,
        },
        /// The staff user exported data (a CSV of customers, a report run).
        StaffDataExported {
            /// What was exported.
            what: NonEmptyText,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a staff-user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffUserError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already exists.
    #[error("the staff user already exists")]
    AlreadyExists,
    /// Unknown user.
    #[error("unknown staff user")]
    UnknownStaffUser,
    /// Needs an admin.
    #[error("only an admin can do this")]
    AdminRequired,
    /// Deactivated users cannot log in or be changed.
    #[error("the staff user is deactivated")]
    Deactivated,
    /// An admin tried to deactivate themselves.
    #[error("admins cannot deactivate themselves")]
    CannotDeactivateSelf,
    /// No password set yet.
    #[error("no password has been set")]
    NoPassword,
    /// Wrong or missing reset token.
    #[error("invalid password reset token")]
    InvalidResetToken,
    /// The token expired.
    #[error("the password reset token has expired")]
    ResetTokenExpired,
    /// An export recorded for another staff user.
    #[error("an export is recorded by the staff user who made it")]
    ExportBySomeoneElse,
}
validation_error!(StaffUserError);

/// The staff user's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffUser {
    id: Option<StaffUserId>,
    role: Option<Role>,
    /// The hash sign-in verifies against: the latest set or reset.
    #[serde(default)]
    password_hash: Option<SecretHash>,
    active: bool,
    reset: Option<(SecretHash, DateTime<Utc>)>,
}

fn is_admin_or_system(actor: &Actor) -> bool {
    matches!(
        actor,
        Actor::System
            | Actor::Staff {
                role: Role::Admin,
                ..
            }
    )
}

impl StaffUser {
    /// The role, once invited.
    pub fn role(&self) -> Option<Role> {
        self.role
    }
    /// Whether the user may log in.
    pub fn is_active(&self) -> bool {
        self.active
    }
    /// The password hash sign-in verifies against (the latest one set or reset), if any.
    pub fn password_hash(&self) -> Option<&SecretHash> {
        self.password_hash.as_ref()
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`StaffUserError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: StaffUserCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<StaffUserEvent>, StaffUserError> {
        use StaffUserError as E;
        let at = ctx.now;
        if let StaffUserCommand::Invite {
            staff_user_id,
            email,
            name,
            role,
            password_hash,
        } = cmd
        {
            if self.id.is_some() {
                return Err(E::AlreadyExists);
            }
            if !is_admin_or_system(&ctx.actor) {
                return Err(E::AdminRequired);
            }
            let mut events = vec![StaffUserEvent::StaffUserInvited {
                staff_user_id,
                email: Email::parse(&email)?,
                name: NonEmptyText::parse("name", &name, 200)?,
                role,
                invited_by: ctx.actor,
                at,
            }];
            if let Some(hash) = password_hash {
                events.push(StaffUserEvent::StaffPasswordSet {
                    password_hash: SecretHash::parse(&hash)?,
                    at,
                });
            }
            return Ok(events);
        }
        let id = self.id.ok_or(E::UnknownStaffUser)?;
        if !self.active {
            return Err(E::Deactivated);
        }
        let events = match cmd {
            StaffUserCommand::Invite { .. } => vec![],
            StaffUserCommand::SetPasswordHash { password_hash } => {
                vec![StaffUserEvent::StaffPasswordSet {
                    password_hash: SecretHash::parse(&password_hash)?,
                    at,
                }]
            }
            StaffUserCommand::ChangeRole { role } => {
                if !is_admin_or_system(&ctx.actor) {
                    return Err(E::AdminRequired);
                }
                match self.role {
                    Some(from) if from != role => {
                        vec![StaffUserEvent::StaffRoleChanged { from, to: role, at }]
                    }
                    _ => vec![],
                }
            }
            StaffUserCommand::Deactivate => {
                if !is_admin_or_system(&ctx.actor) {
                    return Err(E::AdminRequired);
                }
                if ctx.actor.staff_id() == Some(id) {
                    return Err(E::CannotDeactivateSelf);
                }
                vec![StaffUserEvent::StaffUserDeactivated { at }]
            }
            StaffUserCommand::RequestPasswordReset {
                token_hash,
                expires_at,
            } => {
                vec![StaffUserEvent::PasswordResetRequested {
                    token_hash: SecretHash::parse(&token_hash)
                        .map_err(|e| e.in_field("token_hash"))?,
                    expires_at,
                    at,
                }]
            }
            StaffUserCommand::CompletePasswordReset {
                token_hash,
                password_hash,
            } => {
                let Some((expected, expires_at)) = &self.reset else {
                    return Err(E::InvalidResetToken);
                };
                if expected.expose() != token_hash {
                    return Err(E::InvalidResetToken);
                }
                if at >= *expires_at {
                    return Err(E::ResetTokenExpired);
                }
                vec![StaffUserEvent::PasswordResetCompleted {
                    password_hash: SecretHash::parse(&password_hash)?,
                    at,
                }]
            }
            StaffUserCommand::RecordLogin => {
                if self.password_hash.is_none() {
                    return Err(E::NoPassword);
                }
                vec![StaffUserEvent::StaffLoginRecorded { at }]
            }
            StaffUserCommand::RecordExport { what } => {
                // The audit says who exported: no one records it for someone else.
                if ctx.actor.staff_id() != Some(id) {
                    return Err(E::ExportBySomeoneElse);
                }
                vec![StaffUserEvent::StaffDataExported {
                    what: NonEmptyText::parse("what", &what, 500)?,
                    at,
                }]
            }
        };
        Ok(events)
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: StaffUserEvent) {
        match event {
            StaffUserEvent::StaffUserInvited {
                staff_user_id,
                role,
                ..
            } => {
                self.id = Some(staff_user_id);
                self.role = Some(role);
                self.active = true;
            }
            StaffUserEvent::StaffPasswordSet { password_hash, .. } => {
                self.password_hash = Some(password_hash);
            }
            StaffUserEvent::StaffRoleChanged { to, .. } => self.role = Some(to),
            StaffUserEvent::StaffUserDeactivated { .. } => self.active = false,
            StaffUserEvent::PasswordResetRequested {
                token_hash,
                expires_at,
                ..
            } => {
                self.reset = Some((token_hash, expires_at));
            }
            StaffUserEvent::PasswordResetCompleted { password_hash, .. } => {
                // A token works once.
                self.reset = None;
                self.password_hash = Some(password_hash);
            }
            StaffUserEvent::StaffLoginRecorded { .. }
            | StaffUserEvent::StaffDataExported { .. } => {}
        }
    }
}

cqrs_aggregate!(
    StaffUser,
    AGGREGATE_TYPE,
    StaffUserCommand,
    StaffUserEvent,
    StaffUserError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn id() -> StaffUserId {
        StaffUserId(Uuid::from_u128(2000))
    }
    fn admin() -> Actor {
        Actor::Staff {
            id: StaffUserId(Uuid::from_u128(1)),
            role: Role::Admin,
        }
    }
    fn invited() -> StaffUserEvent {
        StaffUserEvent::StaffUserInvited {
            staff_user_id: id(),
            email: Email::parse("tech@dirtfree.example").expect("ok"),
            name: NonEmptyText::parse("name", "Sam Tech", 200).expect("ok"),
            role: Role::Staff,
            invited_by: admin(),
            at: test_now(),
        }
    }
    fn password_set() -> StaffUserEvent {
        StaffUserEvent::StaffPasswordSet {
            password_hash: SecretHash::parse("$argon2id$x").expect("ok"),
            at: test_now(),
        }
    }
    fn reset_requested() -> StaffUserEvent {
        StaffUserEvent::PasswordResetRequested {
            token_hash: SecretHash::parse("tok-hash").expect("ok"),
            expires_at: test_now() + chrono::Duration::hours(1),
            at: test_now(),
        }
    }
    fn when(
        given: Vec<StaffUserEvent>,
        actor: Actor,
        cmd: StaffUserCommand,
    ) -> Result<Vec<StaffUserEvent>, StaffUserError> {
        testing::run::<StaffUser, _>(testing::test_services(), given, actor, cmd)
    }
    fn invite() -> StaffUserCommand {
        StaffUserCommand::Invite {
            staff_user_id: id(),
            email: "Tech@DirtFree.example".into(),
            name: "Sam Tech".into(),
            role: Role::Staff,
            password_hash: None,
        }
    }

    #[test]
    fn it_should_let_an_admin_invite_a_staff_user() {
        assert_eq!(when(vec![], admin(), invite()), Ok(vec![invited()]));
    }

    #[test]
    fn it_should_set_the_first_password_in_the_same_decision_when_the_invite_carries_it() {
        let StaffUserCommand::Invite {
            staff_user_id,
            email,
            name,
            role,
            ..
        } = invite()
        else {
            unreachable!("invite() is an Invite")
        };
        let cmd = StaffUserCommand::Invite {
            staff_user_id,
            email,
            name,
            role,
            password_hash: Some("$argon2id$x".into()),
        };
        assert_eq!(
            when(vec![], admin(), cmd),
            Ok(vec![invited(), password_set()])
        );
    }

    #[test]
    fn it_should_not_let_a_manager_invite_staff() {
        assert_eq!(
            when(vec![], testing::manager(), invite()),
            Err(StaffUserError::AdminRequired)
        );
    }

    #[test]
    fn it_should_refuse_an_invalid_email_naming_the_field() {
        let cmd = StaffUserCommand::Invite {
            staff_user_id: id(),
            email: "nope".into(),
            name: "Sam".into(),
            role: Role::Staff,
            password_hash: None,
        };
        assert_eq!(
            when(vec![], admin(), cmd).expect_err("bad").field(),
            Some("email")
        );
    }

    #[test]
    fn it_should_not_record_a_login_for_a_deactivated_user() {
        let given = vec![
            invited(),
            password_set(),
            StaffUserEvent::StaffUserDeactivated { at: test_now() },
        ];
        assert_eq!(
            when(given, Actor::System, StaffUserCommand::RecordLogin),
            Err(StaffUserError::Deactivated)
        );
    }

    #[test]
    fn it_should_record_an_export_by_the_staff_user_who_made_it_only() {
        let me = Actor::Staff {
            id: id(),
            role: Role::Staff,
        };
        let export = || StaffUserCommand::RecordExport {
            what: "customers CSV".into(),
        };
        assert_eq!(
            when(vec![invited(), password_set()], me, export()),
            Ok(vec![StaffUserEvent::StaffDataExported {
                what: NonEmptyText::parse("what", "customers CSV", 500).expect("text"),
                at: test_now()
            }])
        );
        assert_eq!(
            when(vec![invited(), password_set()], admin(), export()),
            Err(StaffUserError::ExportBySomeoneElse)
        );
    }

    #[test]
    fn it_should_record_a_login_for_an_active_user_with_a_password() {
        assert_eq!(
            when(
                vec![invited(), password_set()],
                Actor::System,
                StaffUserCommand::RecordLogin
            ),
            Ok(vec![StaffUserEvent::StaffLoginRecorded { at: test_now() }])
        );
        assert_eq!(
            when(
                vec![invited()],
                Actor::System,
                StaffUserCommand::RecordLogin
            ),
            Err(StaffUserError::NoPassword)
        );
    }

    #[test]
    fn it_should_not_let_an_admin_deactivate_themselves() {
        let me = Actor::Staff {
            id: id(),
            role: Role::Admin,
        };
        assert_eq!(
            when(vec![invited()], me, StaffUserCommand::Deactivate),
            Err(StaffUserError::CannotDeactivateSelf)
        );
    }

    #[test]
    fn it_should_complete_a_password_reset_with_the_right_token_once() {
        let cmd = || StaffUserCommand::CompletePasswordReset {
            token_hash: "tok-hash".into(),
            password_hash: "$argon2id$new".into(),
        };
        let events = when(vec![invited(), reset_requested()], Actor::System, cmd()).expect("ok");
        assert!(matches!(
            events.as_slice(),
            [StaffUserEvent::PasswordResetCompleted { .. }]
        ));
        let mut given = vec![invited(), reset_requested()];
        given.extend(events);
        assert_eq!(
            when(given, Actor::System, cmd()),
            Err(StaffUserError::InvalidResetToken)
        );
    }

    #[test]
    fn it_should_refuse_a_wrong_or_expired_reset_token() {
        let wrong = StaffUserCommand::CompletePasswordReset {
            token_hash: "other".into(),
            password_hash: "h".into(),
        };
        assert_eq!(
            when(vec![invited(), reset_requested()], Actor::System, wrong),
            Err(StaffUserError::InvalidResetToken)
        );
        let right = StaffUserCommand::CompletePasswordReset {
            token_hash: "tok-hash".into(),
            password_hash: "h".into(),
        };
        let later = testing::services_at(test_now() + chrono::Duration::hours(2));
        assert_eq!(
            testing::run::<StaffUser, _>(
                later,
                vec![invited(), reset_requested()],
                Actor::System,
                right
            ),
            Err(StaffUserError::ResetTokenExpired)
        );
    }

    /// The state after `given`, as the command side loads it for sign-in.
    fn state_after(given: Vec<StaffUserEvent>) -> StaffUser {
        let mut state = StaffUser::default();
        for e in given {
            state.apply_event(e);
        }
        state
    }

    #[test]
    fn it_should_give_sign_in_the_latest_password_hash_role_and_active_flag() {
        // Given an invited user whose password was set, reset and whose role changed,
        let reset = StaffUserEvent::PasswordResetCompleted {
            password_hash: SecretHash::parse("$argon2id$after-reset").expect("ok"),
            at: test_now(),
        };
        let promoted = StaffUserEvent::StaffRoleChanged {
            from: Role::Staff,
            to: Role::Admin,
            at: test_now(),
        };
        let user = state_after(vec![
            invited(),
            password_set(),
            reset_requested(),
            reset,
            promoted,
        ]);
        // then sign-in sees the reset password, the new role and an active user.
        assert_eq!(
            user.password_hash().map(SecretHash::expose),
            Some("$argon2id$after-reset")
        );
        assert_eq!(user.role(), Some(Role::Admin));
        assert!(user.is_active());
    }

    #[test]
    fn it_should_show_sign_in_a_deactivated_user_as_inactive_and_a_new_one_without_a_password() {
        assert!(state_after(vec![invited()]).password_hash().is_none());
        let gone = state_after(vec![
            invited(),
            password_set(),
            StaffUserEvent::StaffUserDeactivated { at: test_now() },
        ]);
        assert!(!gone.is_active());
        assert!(
            !StaffUser::default().is_active(),
            "an unknown user is not active"
        );
    }

    #[test]
    fn it_should_record_a_role_change_by_an_admin() {
        assert_eq!(
            when(
                vec![invited()],
                admin(),
                StaffUserCommand::ChangeRole {
                    role: Role::Manager
                }
            ),
            Ok(vec![StaffUserEvent::StaffRoleChanged {
                from: Role::Staff,
                to: Role::Manager,
                at: test_now()
            }])
        );
    }
}

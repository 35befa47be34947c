//! Conversation: a chat from the portal widget — messages from the customer, the bot or staff,
//! detected intents, and hand-off to staff.
//!
//! Messages are free text a customer may fill with personal data; when the conversation has a
//! `customer_id`, its stream belongs with the customer's for crypto-shredding (see
//! `docs/events.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::{validation_error, ValidationError};
use crate::ids::{ConversationId, CustomerId, StaffUserId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::NonEmptyText;
use crate::Actor;

/// `Aggregate::TYPE` of [`Conversation`].
pub const AGGREGATE_TYPE: &str = "Conversation";

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sender {
    /// The customer (or anonymous visitor).
    Customer,
    /// The chatbot.
    Bot,
    /// A staff user after hand-off.
    Staff {
        /// The staff user.
        id: StaffUserId,
    },
}

/// What the customer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Book a service.
    Book,
    /// Move an appointment.
    Reschedule,
    /// Ask a question.
    Question,
}

/// What can be asked of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationCommand {
    /// Open a conversation.
    Start {
        /// The id (the aggregate id).
        conversation_id: ConversationId,
        /// The customer, when signed in.
        customer_id: Option<CustomerId>,
    },
    /// Add a message.
    AddMessage {
        /// Who wrote it.
        sender: Sender,
        /// The text.
        text: String,
    },
    /// The bot classified the customer's request.
    DetectIntent {
        /// The intent.
        intent: Intent,
        /// Confidence, whole percent 0–100 (no floats in the domain).
        confidence_percent: u8,
    },
    /// Hand the conversation to staff.
    HandOff {
        /// A specific staff user, if assigned.
        to_staff: Option<StaffUserId>,
    },
    /// Close the conversation.
    Close,
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Conversation`] aggregate.
    pub enum ConversationEvent {
        /// A conversation began.
        ConversationStarted {
            /// The conversation.
            conversation_id: ConversationId,
            /// The customer, when signed in.
            customer_id: Option<CustomerId>,
            /// When.
            at: DateTime<Utc>,
        },
        /// A message was added.
        MessageAdded {
            /// Who wrote it.
            sender: Sender,
            /// The text (PII: encrypted with the customer's key when `customer_id` is set).
            text: NonEmptyText,
            /// The conversation's customer, when known: whose key seals `text` (absent in
            /// events written before it was added; those stay as written).
            customer_id: Option<CustomerId>,
            /// When.
            at: DateTime<Utc>,
        },
        /// An intent was detected.
        IntentDetected {
            /// The intent.
            intent: Intent,
            /// Confidence, whole percent.
            confidence_percent: u8,
            /// When.
            at: DateTime<Utc>,
        },
        /// The conversation was handed to staff.
        ConversationHandedOff {
            /// The staff user, if assigned.
            to_staff: Option<StaffUserId>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The conversation was closed.
        ConversationClosed {
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a conversation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already started.
    #[error("the conversation already exists")]
    AlreadyExists,
    /// Unknown conversation.
    #[error("unknown conversation")]
    UnknownConversation,
    /// Closed.
    #[error("the conversation is closed")]
    Closed,
    /// A customer acted on someone else's conversation, or spoke as the bot or staff.
    #[error("customers can only write in their own conversations, as themselves")]
    NotYourConversation,
}
validation_error!(ConversationError);

/// The conversation's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    started: bool,
    /// The customer it is with, when known; only they (and staff) may act on it.
    #[serde(default)]
    customer_id: Option<CustomerId>,
    handed_off: bool,
    closed: bool,
}

impl Conversation {
    /// The customer it is with, when known.
    pub fn customer_id(&self) -> Option<CustomerId> {
        self.customer_id
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`ConversationError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: ConversationCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let at = ctx.now;
        if let ConversationCommand::Start {
            conversation_id,
            customer_id,
        } = cmd
        {
            if self.started {
                return Err(ConversationError::AlreadyExists);
            }
            if let Actor::Customer { id } = ctx.actor {
                if customer_id != Some(id) {
                    return Err(ConversationError::NotYourConversation);
                }
            }
            return Ok(vec![ConversationEvent::ConversationStarted {
                conversation_id,
                customer_id,
                at,
            }]);
        }
        if !self.started {
            return Err(ConversationError::UnknownConversation);
        }
        match (ctx.actor, &cmd) {
            // A customer speaks only for themselves, in their own conversation, and
            // cannot classify it.
            (Actor::Customer { id }, _) if self.customer_id != Some(id) => {
                return Err(ConversationError::NotYourConversation);
            }
            (Actor::Customer { .. }, ConversationCommand::DetectIntent { .. })
            | (
                Actor::Customer { .. },
                ConversationCommand::AddMessage {
                    sender: Sender::Bot | Sender::Staff { .. },
                    ..
                },
            ) => return Err(ConversationError::NotYourConversation),
            (
                Actor::Staff { id, .. },
                ConversationCommand::AddMessage {
                    sender: Sender::Staff { id: as_id },
                    ..
                },
            ) if id != *as_id => return Err(ConversationError::NotYourConversation),
            _ => {}
        }
        if self.closed {
            return Err(ConversationError::Closed);
        }
        Ok(match cmd {
            ConversationCommand::Start { .. } => vec![],
            ConversationCommand::AddMessage { sender, text } => {
                vec![ConversationEvent::MessageAdded {
                    sender,
                    text: NonEmptyText::parse("text", &text, 4_000)?,
                    customer_id: self.customer_id,
                    at,
                }]
            }
            ConversationCommand::DetectIntent {
                intent,
                confidence_percent,
            } => {
                if confidence_percent > 100 {
                    return Err(ValidationError::new("confidence_percent", "must be 0-100").into());
                }
                vec![ConversationEvent::IntentDetected {
                    intent,
                    confidence_percent,
                    at,
                }]
            }
            ConversationCommand::HandOff { to_staff } => {
                if self.handed_off {
                    vec![]
                } else {
                    vec![ConversationEvent::ConversationHandedOff { to_staff, at }]
                }
            }
            ConversationCommand::Close => vec![ConversationEvent::ConversationClosed { at }],
        })
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: ConversationEvent) {
        match event {
            ConversationEvent::ConversationStarted { customer_id, .. } => {
                self.started = true;
                self.customer_id = customer_id;
            }
            ConversationEvent::MessageAdded { .. } | ConversationEvent::IntentDetected { .. } => {}
            ConversationEvent::ConversationHandedOff { .. } => self.handed_off = true,
            ConversationEvent::ConversationClosed { .. } => self.closed = true,
        }
    }
}

cqrs_aggregate!(
    Conversation,
    AGGREGATE_TYPE,
    ConversationCommand,
    ConversationEvent,
    ConversationError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn started() -> ConversationEvent {
        ConversationEvent::ConversationStarted {
            conversation_id: ConversationId(Uuid::from_u128(70)),
            customer_id: Some(CustomerId(Uuid::from_u128(1))),
            at: test_now(),
        }
    }
    fn when(
        given: Vec<ConversationEvent>,
        cmd: ConversationCommand,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        testing::run::<Conversation, _>(testing::test_services(), given, crate::Actor::System, cmd)
    }

    #[test]
    fn it_should_add_messages_from_customer_bot_and_staff() {
        for sender in [
            Sender::Customer,
            Sender::Bot,
            Sender::Staff {
                id: StaffUserId(Uuid::from_u128(1001)),
            },
        ] {
            let events = when(
                vec![started()],
                ConversationCommand::AddMessage {
                    sender,
                    text: "hello".into(),
                },
            );
            assert!(matches!(
                events.as_deref(),
                Ok([ConversationEvent::MessageAdded { .. }])
            ));
        }
    }

    #[test]
    fn it_should_refuse_an_empty_message_naming_the_field() {
        let cmd = ConversationCommand::AddMessage {
            sender: Sender::Customer,
            text: " ".into(),
        };
        assert_eq!(
            when(vec![started()], cmd).expect_err("empty").field(),
            Some("text")
        );
    }

    #[test]
    fn it_should_record_a_detected_intent() {
        let cmd = ConversationCommand::DetectIntent {
            intent: Intent::Reschedule,
            confidence_percent: 87,
        };
        assert_eq!(
            when(vec![started()], cmd),
            Ok(vec![ConversationEvent::IntentDetected {
                intent: Intent::Reschedule,
                confidence_percent: 87,
                at: test_now()
            }])
        );
    }

    #[test]
    fn it_should_hand_off_to_staff_once() {
        let handed = ConversationEvent::ConversationHandedOff {
            to_staff: None,
            at: test_now(),
        };
        assert_eq!(
            when(
                vec![started()],
                ConversationCommand::HandOff { to_staff: None }
            ),
            Ok(vec![handed.clone()])
        );
        assert_eq!(
            when(
                vec![started(), handed],
                ConversationCommand::HandOff { to_staff: None }
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn it_should_refuse_messages_in_a_closed_conversation() {
        let closed = ConversationEvent::ConversationClosed { at: test_now() };
        let cmd = ConversationCommand::AddMessage {
            sender: Sender::Customer,
            text: "hi".into(),
        };
        assert_eq!(
            when(vec![started(), closed], cmd),
            Err(ConversationError::Closed)
        );
    }

    #[test]
    fn it_should_refuse_a_customer_acting_on_another_customers_conversation() {
        let other = crate::Actor::Customer {
            id: CustomerId(Uuid::from_u128(2)),
        };
        let owner = crate::Actor::Customer {
            id: CustomerId(Uuid::from_u128(1)),
        };
        let as_actor = |actor, cmd| {
            testing::run::<Conversation, _>(testing::test_services(), vec![started()], actor, cmd)
        };
        let say = |sender| ConversationCommand::AddMessage {
            sender,
            text: "hello".into(),
        };
        assert_eq!(
            as_actor(other, say(Sender::Customer)),
            Err(ConversationError::NotYourConversation)
        );
        assert_eq!(
            as_actor(other, ConversationCommand::Close),
            Err(ConversationError::NotYourConversation)
        );
        assert!(as_actor(owner, say(Sender::Customer)).is_ok());
        // The owner cannot put words in the bot's mouth or classify their own request.
        assert_eq!(
            as_actor(owner, say(Sender::Bot)),
            Err(ConversationError::NotYourConversation)
        );
        assert_eq!(
            as_actor(
                owner,
                ConversationCommand::DetectIntent {
                    intent: Intent::Book,
                    confidence_percent: 90
                }
            ),
            Err(ConversationError::NotYourConversation)
        );
        // Nor start one in someone else's name.
        let start = testing::run::<Conversation, _>(
            testing::test_services(),
            vec![],
            other,
            ConversationCommand::Start {
                conversation_id: ConversationId(Uuid::from_u128(71)),
                customer_id: Some(CustomerId(Uuid::from_u128(1))),
            },
        );
        assert_eq!(start, Err(ConversationError::NotYourConversation));
    }

    #[test]
    fn it_should_let_staff_write_only_under_their_own_name() {
        let me = StaffUserId(Uuid::from_u128(5));
        let staff = crate::Actor::Staff {
            id: me,
            role: crate::ports::Role::Staff,
        };
        let run = |sender| {
            testing::run::<Conversation, _>(
                testing::test_services(),
                vec![started()],
                staff,
                ConversationCommand::AddMessage {
                    sender,
                    text: "on my way".into(),
                },
            )
        };
        assert!(run(Sender::Staff { id: me }).is_ok());
        assert!(run(Sender::Bot).is_ok());
        assert_eq!(
            run(Sender::Staff {
                id: StaffUserId(Uuid::from_u128(6))
            }),
            Err(ConversationError::NotYourConversation)
        );
    }
}

//! Vehicle: a van of the fleet and its status (available, on a job, in maintenance).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalogue::domain_events;
use crate::error::validation_error;
use crate::ids::{JobId, VehicleId};
use crate::ports::{cqrs_aggregate, CommandContext};
use crate::values::{NonEmptyText, Reason};

/// `Aggregate::TYPE` of [`Vehicle`].
pub const AGGREGATE_TYPE: &str = "Vehicle";

/// What a van is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleStatus {
    /// Ready for work.
    #[default]
    Available,
    /// Out on a job.
    OnJob,
    /// In the workshop.
    Maintenance,
}

/// What can be asked of a vehicle.
#[derive(Debug, Clone, PartialEq)]
pub enum VehicleCommand {
    /// Add a van to the fleet (available).
    Register {
        /// The id (the aggregate id).
        vehicle_id: VehicleId,
        /// Display name, e.g. "Van 3".
        name: String,
        /// Licence plate, if recorded.
        plate: Option<String>,
    },
    /// The van leaves for a job.
    Dispatch {
        /// The job.
        job_id: JobId,
    },
    /// The van is back from `job_id`. Nothing happens when it is not on that job (it was
    /// never dispatched for it, or is already out on another).
    Release {
        /// The job it went out for.
        job_id: JobId,
    },
    /// The van goes to the workshop.
    SendToMaintenance {
        /// Why.
        reason: String,
    },
    /// The van is back from the workshop.
    ReturnFromMaintenance,
}

domain_events! {
    aggregate = AGGREGATE_TYPE;
    /// Events of the [`Vehicle`] aggregate.
    pub enum VehicleEvent {
        /// A van joined the fleet.
        VehicleRegistered {
            /// The van.
            vehicle_id: VehicleId,
            /// Display name.
            name: NonEmptyText,
            /// Licence plate.
            plate: Option<NonEmptyText>,
            /// When.
            at: DateTime<Utc>,
        },
        /// The van's status changed.
        VehicleStatusChanged {
            /// Previous status.
            from: VehicleStatus,
            /// New status.
            to: VehicleStatus,
            /// The job, when going on a job.
            job_id: Option<JobId>,
            /// Why, when going to maintenance.
            reason: Option<Reason>,
            /// When.
            at: DateTime<Utc>,
        },
    }
}

/// Why a vehicle command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VehicleError {
    /// A command field is invalid.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Already registered.
    #[error("the vehicle already exists")]
    AlreadyExists,
    /// Unknown vehicle.
    #[error("unknown vehicle")]
    UnknownVehicle,
    /// The status does not allow the change (e.g. dispatching a van in maintenance).
    #[error("the vehicle is {0:?}")]
    WrongStatus(VehicleStatus),
}
validation_error!(VehicleError);

/// The vehicle's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vehicle {
    id: Option<VehicleId>,
    status: VehicleStatus,
    job_id: Option<JobId>,
}

impl Vehicle {
    /// Current status.
    pub fn status(&self) -> VehicleStatus {
        self.status
    }

    /// The job it is out on.
    pub fn current_job(&self) -> Option<JobId> {
        self.job_id
    }

    /// Decides what happens when `cmd` is issued. Pure.
    ///
    /// # Errors
    /// [`VehicleError`]; nothing is recorded when an error is returned.
    pub fn decide(
        &self,
        cmd: VehicleCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<VehicleEvent>, VehicleError> {
        let at = ctx.now;
        if let VehicleCommand::Register {
            vehicle_id,
            name,
            plate,
        } = cmd
        {
            if self.id.is_some() {
                return Err(VehicleError::AlreadyExists);
            }
            let plate = match plate.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(p) => Some(NonEmptyText::parse("plate", p, 20)?),
            };
            return Ok(vec![VehicleEvent::VehicleRegistered {
                vehicle_id,
                name: NonEmptyText::parse("name", &name, 100)?,
                plate,
                at,
            }]);
        }
        if self.id.is_none() {
            return Err(VehicleError::UnknownVehicle);
        }
        let from = self.status;
        let change = |to, job_id, reason| {
            Ok(vec![VehicleEvent::VehicleStatusChanged {
                from,
                to,
                job_id,
                reason,
                at,
            }])
        };
        match (cmd, from) {
            (VehicleCommand::Register { .. }, _) => Ok(vec![]),
            (VehicleCommand::Dispatch { job_id }, VehicleStatus::OnJob)
                if self.job_id == Some(job_id) =>
            {
                Ok(vec![])
            }
            (VehicleCommand::Dispatch { job_id }, VehicleStatus::Available) => {
                change(VehicleStatus::OnJob, Some(job_id), None)
            }
            (VehicleCommand::Release { job_id }, VehicleStatus::OnJob)
                if self.job_id == Some(job_id) =>
            {
                change(VehicleStatus::Available, None, None)
            }
            (VehicleCommand::Release { .. }, _) => Ok(vec![]),
            (VehicleCommand::SendToMaintenance { reason }, VehicleStatus::Available) => change(
                VehicleStatus::Maintenance,
                None,
                Some(Reason::parse(&reason)?),
            ),
            (VehicleCommand::ReturnFromMaintenance, VehicleStatus::Maintenance) => {
                change(VehicleStatus::Available, None, None)
            }
            (_, status) => Err(VehicleError::WrongStatus(status)),
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: VehicleEvent) {
        match event {
            VehicleEvent::VehicleRegistered { vehicle_id, .. } => self.id = Some(vehicle_id),
            VehicleEvent::VehicleStatusChanged { to, job_id, .. } => {
                self.status = to;
                self.job_id = job_id;
            }
        }
    }
}

cqrs_aggregate!(
    Vehicle,
    AGGREGATE_TYPE,
    VehicleCommand,
    VehicleEvent,
    VehicleError
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, test_now};
    use uuid::Uuid;

    fn registered() -> VehicleEvent {
        VehicleEvent::VehicleRegistered {
            vehicle_id: VehicleId(Uuid::from_u128(20)),
            name: NonEmptyText::parse("name", "Van 3", 100).expect("ok"),
            plate: None,
            at: test_now(),
        }
    }
    fn when(
        given: Vec<VehicleEvent>,
        cmd: VehicleCommand,
    ) -> Result<Vec<VehicleEvent>, VehicleError> {
        testing::run::<Vehicle, _>(testing::test_services(), given, testing::staff(), cmd)
    }
    fn to_maintenance() -> VehicleEvent {
        VehicleEvent::VehicleStatusChanged {
            from: VehicleStatus::Available,
            to: VehicleStatus::Maintenance,
            job_id: None,
            reason: Some(Reason::parse("brakes").expect("ok")),
            at: test_now(),
        }
    }

    #[test]
    fn it_should_register_an_available_van() {
        let cmd = VehicleCommand::Register {
            vehicle_id: VehicleId(Uuid::from_u128(20)),
            name: "Van 3".into(),
            plate: Some(" ".into()),
        };
        assert_eq!(when(vec![], cmd), Ok(vec![registered()]));
    }

    #[test]
    fn it_should_dispatch_an_available_van_to_a_job() {
        let job_id = JobId(Uuid::from_u128(10));
        assert_eq!(
            when(vec![registered()], VehicleCommand::Dispatch { job_id }),
            Ok(vec![VehicleEvent::VehicleStatusChanged {
                from: VehicleStatus::Available,
                to: VehicleStatus::OnJob,
                job_id: Some(job_id),
                reason: None,
                at: test_now(),
            }])
        );
    }

    #[test]
    fn it_should_not_dispatch_a_van_in_maintenance() {
        let cmd = VehicleCommand::Dispatch {
            job_id: JobId(Uuid::from_u128(10)),
        };
        assert_eq!(
            when(vec![registered(), to_maintenance()], cmd),
            Err(VehicleError::WrongStatus(VehicleStatus::Maintenance))
        );
    }

    #[test]
    fn it_should_need_a_reason_for_maintenance() {
        let cmd = VehicleCommand::SendToMaintenance { reason: "".into() };
        assert_eq!(
            when(vec![registered()], cmd).expect_err("empty").field(),
            Some("reason")
        );
    }

    #[test]
    fn it_should_return_a_van_from_maintenance() {
        let events = when(
            vec![registered(), to_maintenance()],
            VehicleCommand::ReturnFromMaintenance,
        )
        .expect("ok");
        assert!(matches!(
            events.as_slice(),
            [VehicleEvent::VehicleStatusChanged {
                to: VehicleStatus::Available,
                ..
            }]
        ));
    }

    #[test]
    fn it_should_release_a_van_only_from_the_job_it_is_on() {
        let job = JobId(Uuid::from_u128(40));
        let other = JobId(Uuid::from_u128(41));
        let on_job = vec![
            registered(),
            when(vec![registered()], VehicleCommand::Dispatch { job_id: job })
                .expect("dispatch")
                .remove(0),
        ];
        assert_eq!(
            when(on_job.clone(), VehicleCommand::Release { job_id: other }),
            Ok(vec![]),
            "out on another job: stays out"
        );
        assert!(matches!(
            when(on_job, VehicleCommand::Release { job_id: job })
                .expect("release")
                .as_slice(),
            [VehicleEvent::VehicleStatusChanged {
                to: VehicleStatus::Available,
                ..
            }]
        ));
        assert_eq!(
            when(vec![registered()], VehicleCommand::Release { job_id: job }),
            Ok(vec![]),
            "never dispatched: nothing to release"
        );
    }
}

//! The fleet policy: a started job's van goes out on the board and comes back when it ends.

use super::*;

impl Trigger<'_> {
    /// Moves the van with the job: out when a job starts (or gets a van while under way),
    /// back when it ends. The job is read as of the triggering event, so a later
    /// reassignment does not confuse an earlier step. A van already out on another job or in
    /// the workshop stays where it is (logged): the board shows the conflict to dispatch.
    pub(super) async fn fleet(&self) -> Result<(), AppError> {
        let job_id = parse_id(&self.event.aggregate_id, JobId::parse)?;
        let stream = self
            .crm
            .log()
            .load_stream("Job", &self.event.aggregate_id, 0)
            .await?;
        let mut job = domain::job::Job::default();
        let mut before = None;
        for e in stream
            .into_iter()
            .filter(|e| e.sequence <= self.event.sequence)
        {
            before = job.vehicle_id();
            job.apply_event(self.crm.jobs().store().decode(e)?);
        }
        let dispatch = |van| async move {
            let result = self
                .crm
                .vehicles()
                .execute(
                    van,
                    self.actor(),
                    VehicleCommand::Dispatch { job_id },
                    &self.meta(&format!("dispatch:{van}")),
                )
                .await;
            if let Err(AppError::Rule {
                code: "VEHICLE_WRONG_STATUS",
                message,
            }) = &result
            {
                tracing::warn!(%job_id, %van, %message, "the job's van is not available");
            }
            ignore_rules(result, &["VEHICLE_WRONG_STATUS"])
        };
        let release = |van| async move {
            self.crm
                .vehicles()
                .execute(
                    van,
                    self.actor(),
                    VehicleCommand::Release { job_id },
                    &self.meta(&format!("release:{van}")),
                )
                .await
                .map(|_| ())
        };
        match self.event.event_type.as_str() {
            "JobStarted" => match job.vehicle_id() {
                Some(van) => dispatch(van).await,
                None => Ok(()),
            },
            "VehicleAssigned" if job.status() == domain::job::JobStatus::InProgress => {
                if let Some(old) = before.filter(|old| Some(*old) != job.vehicle_id()) {
                    release(old).await?;
                }
                match job.vehicle_id() {
                    Some(van) => dispatch(van).await,
                    None => Ok(()),
                }
            }
            "JobCompleted" | "JobCancelled" => match job.vehicle_id() {
                Some(van) => release(van).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

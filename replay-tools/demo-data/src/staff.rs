//! Staff users: the three demo logins, then the technicians jobs go to.

use chrono::{DateTime, Utc};
use commands::app::AppError;
use domain::ids::StaffUserId;
use domain::staff::StaffUserCommand;
use domain::{Actor as DomainActor, Role};

use crate::names::{FIRST, LAST};
use crate::plan::{uuid, Planner, Step, Timed};
use crate::run::{meta, Ctx};
use crate::{DEMO_LOGINS, DEMO_PASSWORD_HASH};

/// A staff user to invite; `login` for the demo logins, who have signed in once.
#[derive(Debug, Clone)]
pub(crate) struct Invite {
    id: StaffUserId,
    email: String,
    name: String,
    role: Role,
    login: bool,
}

/// The demo logins (minutes 0–2), then the technicians (from minute 10).
pub(crate) fn plan(p: &mut Planner) {
    for (i, (email, name, role)) in DEMO_LOGINS.iter().enumerate() {
        let id = StaffUserId(uuid(&mut p.rng));
        p.staff.push(id);
        let step = Step::InviteStaff(Invite {
            id,
            email: (*email).into(),
            name: (*name).into(),
            role: *role,
            login: true,
        });
        p.setup.push(Timed {
            at: p.setup_at(i as i64),
            lane: 0,
            step,
        });
    }
    // The staff login works jobs too.
    p.technicians = vec![p.staff[2]];
    for i in 0..p.sizes.technicians {
        let id = StaffUserId(uuid(&mut p.rng));
        p.technicians.push(id);
        let name = format!(
            "{} {}",
            FIRST[(i * 7 + 3) % FIRST.len()],
            LAST[(i * 5 + 11) % LAST.len()]
        );
        let email = format!("tech{}@dirtfree.example", i + 1);
        let step = Step::InviteStaff(Invite {
            id,
            email,
            name,
            role: Role::Staff,
            login: false,
        });
        p.setup.push(Timed {
            at: p.setup_at(10 + i as i64),
            lane: 0,
            step,
        });
    }
    p.summary.staff_users = p.staff.len() + p.sizes.technicians;
}

/// Invites the staff user (placeholder password hash), then signs them in once.
pub(crate) async fn invite(ctx: &Ctx, t: DateTime<Utc>, s: &Invite) -> Result<(), AppError> {
    let (crm, m) = (&ctx.crm, meta(t));
    let cmd = StaffUserCommand::Invite {
        staff_user_id: s.id,
        email: s.email.clone(),
        name: s.name.clone(),
        role: s.role,
        password_hash: Some(DEMO_PASSWORD_HASH.into()),
    };
    crm.staff_users()
        .execute(s.id, DomainActor::System, cmd, &m)
        .await?;
    if s.login {
        let actor = DomainActor::Staff {
            id: s.id,
            role: s.role,
        };
        crm.staff_users()
            .execute(s.id, actor, StaffUserCommand::RecordLogin, &m)
            .await?;
    }
    Ok(())
}

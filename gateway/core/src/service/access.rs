//! Who may see and change what. Tenants are walls: anything of another tenant is reported as
//! not found, exactly like something that does not exist.

use uuid::Uuid;

use super::Service;
use crate::auth::{Caller, Role};
use crate::ports::ComputeError;
use crate::{Instance, ServiceError, State};

/// An instance the caller may see, with the tenant that owns it.
pub(super) struct VisibleInstance {
    /// `None` when the compute host could not be reached but the database knows the instance.
    pub instance: Option<Instance>,
    pub owner: String,
}

impl VisibleInstance {
    /// The instance as the compute backend shows it; needed by every call that dispatches.
    pub fn live(self) -> Result<(Instance, String), ServiceError> {
        match self.instance {
            Some(i) => Ok((i, self.owner)),
            None => Err(ServiceError::Unavailable {
                code: "compute_unavailable",
                message: "the compute host of this instance is unreachable".into(),
            }),
        }
    }
}

pub(super) fn require(caller: &Caller, role: Role) -> Result<(), ServiceError> {
    if caller.has(role) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "this call needs the {} role",
            role.as_str()
        )))
    }
}

/// The cloud-wide admin calls (quota limits, instance owners, the policy chain) need operator
/// scope and the admin role; a tenant's admin is refused like a member.
pub fn require_cloud_admin(caller: &Caller) -> Result<(), ServiceError> {
    if caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "this call needs the cloud operator (operator scope and the admin role)".into(),
        ))
    }
}

/// Whose policy decisions the caller may read: the cloud operator any tenant's (`requested`,
/// or every tenant's); a tenant's admin its own tenant's only — why its saves were denied —
/// and another tenant is a 404, as everywhere. Below the admin role: 403 before any lookup.
pub fn decisions_tenant(
    caller: &Caller,
    requested: Option<String>,
) -> Result<Option<String>, ServiceError> {
    if let Some(t) = &requested {
        super::validate::tenant_id(t)?;
    }
    if caller.is_cloud_admin() {
        return Ok(requested);
    }
    require(caller, Role::Admin)?;
    match requested {
        Some(t) if t != caller.tenant => Err(ServiceError::not_found("tenant", t)),
        _ => Ok(Some(caller.tenant.clone())),
    }
}

impl Service {
    /// Finds an instance and checks the caller may see it. The owner is the tenant set by an
    /// operator through the API, else the one in the domain's metadata. An instance with no owner
    /// is visible to the operator only.
    pub(super) async fn visible_instance(
        &self,
        caller: &Caller,
        uuid: Uuid,
    ) -> Result<VisibleInstance, ServiceError> {
        // The database and the compute host are asked at once: two round trips in parallel.
        let (assigned, located) =
            tokio::join!(self.repo.instance_owner(uuid), self.find_instance(uuid));
        let assigned = assigned?;
        let (instance, owner) = match located.instance {
            Ok(instance) => {
                let owner = assigned.or_else(|| instance.owner_tenant.clone());
                (Some(instance), owner)
            }
            Err(ComputeError::InstanceNotFound(_)) => {
                return Err(ServiceError::not_found("instance", uuid))
            }
            Err(e @ (ComputeError::HostUnreachable { .. } | ComputeError::Backend { .. })) => {
                // Reads go on while a host is down, for instances the database knows: the
                // owner is the admin's assignment, else the metadata owner the placement index
                // recorded, else the tenant of the stored states.
                let owner = match assigned.or_else(|| located.recorded.and_then(|p| p.owner_tenant))
                {
                    Some(owner) => Some(owner),
                    None => self
                        .repo
                        .states_of_instance(uuid)
                        .await?
                        .first()
                        .map(|s| s.tenant_id.clone()),
                };
                match owner {
                    Some(owner) => (None, Some(owner)),
                    // Nothing recorded names an owner: the uuid may be an instance on the host
                    // that is down, or nothing at all. An outsider must not tell that apart
                    // from another tenant's instance (a 404), so everyone but an admin (who
                    // sees every tenant anyway) gets the same 404 as for an unknown uuid.
                    // docs/API.md, "When a compute host is down".
                    None if caller.is_operator() => return Err(e.into()),
                    None => return Err(ServiceError::not_found("instance", uuid)),
                }
            }
            Err(e) => return Err(e.into()),
        };
        match owner {
            Some(owner) if caller.can_see(&owner) => Ok(VisibleInstance { instance, owner }),
            // An unowned instance is charged to the operator who acts on it.
            None if caller.is_operator() => Ok(VisibleInstance {
                instance,
                owner: caller.tenant.clone(),
            }),
            _ => Err(ServiceError::not_found("instance", uuid)),
        }
    }

    /// A state of `instance` the caller may see.
    pub(super) async fn visible_state(
        &self,
        caller: &Caller,
        instance: Uuid,
        state: Uuid,
    ) -> Result<State, ServiceError> {
        match self.repo.get_state(state).await? {
            Some(s) if s.instance_uuid == instance && caller.can_see(&s.tenant_id) => Ok(s),
            _ => Err(ServiceError::not_found("state", state)),
        }
    }

    /// The instance and one of its states, both visible to the caller. Both are looked up at
    /// once, but judged in order: an instance the caller may not see is a 404 for the instance
    /// whatever the state lookup found, so the answer tells nothing more than before.
    pub(super) async fn visible_instance_and_state(
        &self,
        caller: &Caller,
        instance: Uuid,
        state: Uuid,
    ) -> Result<(VisibleInstance, State), ServiceError> {
        let (visible, found) = tokio::join!(
            self.visible_instance(caller, instance),
            self.visible_state(caller, instance, state)
        );
        Ok((visible?, found?))
    }
}

//! Who is calling. Authentication (tokens) happens at the edge; the service receives a
//! [`Caller`] and decides what it may do.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::TenantId;

/// Roles, each implying the ones below it: `admin` ⊃ `member` ⊃ `reader`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Reader,
    Member,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller.
///
/// Two things decide what a caller may do: its `role` (what it may do) and its scope (where).
/// A tenant-scoped caller acts in its own tenant only, whatever its role: a tenant's `admin`
/// is not the cloud operator. Operator scope comes only from an explicitly configured token
/// claim (or `operator = true` in the static token file), never from a role name; it opens
/// every tenant, unowned instances and the cloud-wide calls (quota limits, instance owners,
/// the policy chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// The highest role the caller holds.
    pub role: Role,
    /// Subject of the token, for logs and decision records.
    pub subject: String,
    /// Cloud operator scope (see above). Constructors leave it off: it is granted explicitly.
    operator: bool,
}

impl Caller {
    /// A caller scoped to `tenant`.
    pub fn new(tenant: impl Into<String>, role: Role) -> Self {
        let tenant = tenant.into();
        Self {
            subject: format!("{tenant}:{}", role.as_str()),
            tenant,
            role,
            operator: false,
        }
    }

    /// The same caller with cloud operator scope.
    pub fn with_operator_scope(mut self) -> Self {
        self.operator = true;
        self
    }

    pub fn has(&self, role: Role) -> bool {
        self.role >= role
    }

    /// Holds operator scope (whatever its role).
    pub fn is_operator(&self) -> bool {
        self.operator
    }

    /// May make the cloud-wide admin calls: operator scope and the admin role.
    pub fn is_cloud_admin(&self) -> bool {
        self.operator && self.role == Role::Admin
    }

    /// Whether the caller may see resources owned by `tenant`.
    pub fn can_see(&self, tenant: &str) -> bool {
        self.operator || self.tenant == tenant
    }

    pub fn role_names(&self) -> Vec<String> {
        [Role::Admin, Role::Member, Role::Reader]
            .into_iter()
            .filter(|r| self.has(*r))
            .map(|r| r.as_str().to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_admin_sees_its_own_tenant_only() {
        let admin = Caller::new("a", Role::Admin);
        assert!(admin.can_see("a"));
        assert!(!admin.can_see("b"));
        assert!(!admin.is_operator() && !admin.is_cloud_admin());
    }

    #[test]
    fn operator_scope_opens_every_tenant_and_the_role_still_limits() {
        let reader = Caller::new("ops", Role::Reader).with_operator_scope();
        assert!(reader.can_see("b") && reader.is_operator());
        assert!(
            !reader.is_cloud_admin(),
            "a system reader is no cloud admin"
        );
        let admin = Caller::new("ops", Role::Admin).with_operator_scope();
        assert!(admin.is_cloud_admin());
    }
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// The highest role the caller holds.
    pub role: Role,
    /// Subject of the token, for logs and decision records.
    pub subject: String,
}

impl Caller {
    pub fn new(tenant: impl Into<String>, role: Role) -> Self {
        let tenant = tenant.into();
        Self {
            subject: format!("{tenant}:{}", role.as_str()),
            tenant,
            role,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.role >= role
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may see resources owned by `tenant`.
    pub fn can_see(&self, tenant: &str) -> bool {
        self.is_admin() || self.tenant == tenant
    }

    pub fn role_names(&self) -> Vec<String> {
        [Role::Admin, Role::Member, Role::Reader]
            .into_iter()
            .filter(|r| self.has(*r))
            .map(|r| r.as_str().to_owned())
            .collect()
    }
}

//! Key names. Every key of one tenant carries the tenant's hash tag, `<prefix>:{<tenant>}:…`,
//! so each script touches a single slot and the scripts work unchanged on Redis Cluster.

use uuid::Uuid;

/// The keys of one tenant.
#[derive(Debug, Clone)]
pub(crate) struct TenantKeys {
    tag: String,
}

impl TenantKeys {
    pub fn new(prefix: &str, tenant: &str) -> Self {
        Self {
            tag: format!("{prefix}:{{{}}}", tenant_key_part(tenant)),
        }
    }

    pub fn in_use(&self) -> String {
        format!("{}:inuse", self.tag)
    }

    pub fn reservations(&self) -> String {
        format!("{}:resv", self.tag)
    }

    pub fn saves(&self) -> String {
        format!("{}:saves", self.tag)
    }

    /// Set when an operation commits or releases.
    pub fn ended(&self, operation: Uuid) -> String {
        format!("{}:op:{operation}", self.tag)
    }

    /// The run id of the Redis process that last rebuilt this tenant from the database.
    pub fn owner(&self) -> String {
        format!("{}:owner", self.tag)
    }

    /// The token of a rebuild in progress.
    pub fn rebuild(&self) -> String {
        format!("{}:rebuild", self.tag)
    }

    /// Set when a delete operation's units were freed.
    pub fn freed(&self, operation: Uuid) -> String {
        format!("{}:freed:{operation}", self.tag)
    }
}

/// The set of tenants the store has rebuilt, so a full rebuild can reach tenants absent from
/// the database's totals (their in-use must drop to zero). One key in one slot, written only
/// when a tenant is rebuilt (never on the request path), so it is no hot key on a cluster.
pub(crate) fn tenants(prefix: &str) -> String {
    format!("{prefix}:tenants")
}

/// Present after a full rebuild; gone after a flush or a restart without persistence. Only a
/// hint for the reconciler: each tenant's own `owner` key decides whether its data is trusted.
pub(crate) fn primed(prefix: &str) -> String {
    format!("{prefix}:primed")
}

/// A tenant id as it appears inside the hash tag: percent-encoded except `[A-Za-z0-9._-]`, so
/// ids stay readable while `{`, `}`, `:` and `%` can neither end the tag early nor let two
/// tenants share keys.
pub fn tenant_key_part(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for byte in tenant.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_cannot_break_the_hash_tag() {
        assert_eq!(tenant_key_part("acme-01.prod_x"), "acme-01.prod_x");
        assert_eq!(tenant_key_part("a}b:{c%"), "a%7Db%3A%7Bc%25");
        assert_eq!(tenant_key_part("é"), "%C3%A9");
        let keys = TenantKeys::new("sg", "x}:y");
        assert_eq!(keys.in_use(), "sg:{x%7D%3Ay}:inuse");
    }

    #[test]
    fn distinct_tenants_get_distinct_keys() {
        // "%" itself is encoded, so an id that looks encoded cannot collide with another.
        assert_ne!(tenant_key_part("a%3Ab"), tenant_key_part("a:b"));
    }
}

//! What the placement index reads from a host: its inventory and an instance's owner.
//! Blocking, like `blocking.rs`: runs inside `spawn_blocking`.

use snapgate_core::ports::ListedInstance;
use snapgate_core::TenantId;
use uuid::Uuid;
use virt::connect::Connect;

use crate::blocking::{lookup_domain, Site};
use crate::errors::Fail;
use crate::xml;

/// Every domain the host defines, active or not, in one listing call (a listed domain's uuid
/// and id travel with it: reading them asks the host nothing more).
pub(crate) fn list_instances(conn: &Connect) -> Result<Vec<ListedInstance>, Fail> {
    let domains = conn.list_all_domains(0)?;
    Ok(domains
        .iter()
        .filter_map(|dom| {
            let uuid = Uuid::parse_str(&dom.get_uuid_string().ok()?).ok()?;
            Some(ListedInstance {
                uuid,
                // Only an active domain has an id.
                active: dom.get_id().is_some(),
            })
        })
        .collect())
}

/// The owner in the domain's metadata (Nova's or snapgate's namespace), if any.
pub(crate) fn instance_owner(
    conn: &Connect,
    site: &Site<'_>,
    instance: Uuid,
) -> Result<Option<TenantId>, Fail> {
    let dom = lookup_domain(conn, instance)?;
    let desc = xml::parse_domain(&dom.get_xml_desc(0)?).map_err(|e| {
        Fail::Compute(snapgate_core::ports::ComputeError::Backend {
            host: site.host.to_owned(),
            message: e.to_string(),
        })
    })?;
    Ok(desc.owner_tenant)
}

//! How libvirt failures become [`ComputeError`]s.

use snapgate_core::ports::ComputeError;
use virt::error::{Error as VirtError, ErrorDomain, ErrorNumber};

/// A failure inside a blocking libvirt closure: either a raw libvirt error, mapped once the
/// host is known, or an already decided [`ComputeError`] (not found, unsupported…).
#[derive(Debug)]
pub(crate) enum Fail {
    Virt(VirtError),
    Compute(ComputeError),
}

impl From<VirtError> for Fail {
    fn from(e: VirtError) -> Self {
        Fail::Virt(e)
    }
}

impl From<ComputeError> for Fail {
    fn from(e: ComputeError) -> Self {
        Fail::Compute(e)
    }
}

impl Fail {
    pub(crate) fn is_connection_error(&self) -> bool {
        match self {
            Fail::Virt(e) => is_connection_error(e),
            Fail::Compute(ComputeError::HostUnreachable { .. }) => true,
            Fail::Compute(_) => false,
        }
    }

    pub(crate) fn into_compute(self, host: &str) -> ComputeError {
        match self {
            Fail::Compute(e) => e,
            Fail::Virt(e) => map_virt_error(host, &e),
        }
    }
}

/// Failures of the connection itself (socket gone, daemon restarted, auth lost), as opposed
/// to a refusal of one call. Only these make the backend reopen the connection.
pub(crate) fn is_connection_error(e: &VirtError) -> bool {
    matches!(
        e.code(),
        ErrorNumber::NoConnect
            | ErrorNumber::InvalidConn
            | ErrorNumber::Rpc
            | ErrorNumber::AuthFailed
            | ErrorNumber::AuthCancelled
    ) || (matches!(e.domain(), ErrorDomain::Rpc | ErrorDomain::Remote)
        && e.code() == ErrorNumber::SystemError)
}

/// Errors whose lookup target is decided by the caller (`InstanceNotFound` needs the uuid,
/// `SnapshotNotFound` the name) are mapped where the lookup happens; this handles the rest.
pub(crate) fn map_virt_error(host: &str, e: &VirtError) -> ComputeError {
    if is_connection_error(e) {
        ComputeError::HostUnreachable {
            host: host.to_owned(),
            message: e.message().to_owned(),
        }
    } else {
        ComputeError::Backend {
            host: host.to_owned(),
            message: e.message().to_owned(),
        }
    }
}

//! Host bindings, one per contract version, generated from the one versioned WIT tree of the
//! repository (`wit/<version>/`), the files the plugin SDK generates its guest bindings from.
//!
//! The world's functions carry no version in their names: a component's version is the shape
//! of its `evaluate`. A plugin is linked against the newest binding first, then the older
//! ones (`plugin.rs`), so components of every supported version load side by side.

/// `snapgate:policy@0.2.0`, the current contract (the SDK's).
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.2.0",
        world: "snapgate:policy/policy@0.2.0",
    });
}

/// `snapgate:policy@0.1.0`: no `save` in the request.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "snapgate:policy/policy@0.1.0",
    });
}

pub(crate) use v0_2::{Decision, LogLevel, Request};

/// A contract version the host binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum ContractVersion {
    #[serde(rename = "0.1.0")]
    V0_1,
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl ContractVersion {
    /// Newest first: the order components are linked in.
    pub(crate) const ALL: [ContractVersion; 2] = [ContractVersion::V0_2, ContractVersion::V0_1];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1 => "0.1.0",
            ContractVersion::V0_2 => "0.2.0",
        }
    }

    /// The world's full name, `snapgate:policy/policy@<version>`.
    pub fn world(self) -> String {
        format!("snapgate:policy/policy@{}", self.as_str())
    }
}

/// A plugin linked against one version's binding.
pub(crate) enum PolicyPre<T: 'static> {
    V0_1(v0_1::PolicyPre<T>),
    V0_2(v0_2::PolicyPre<T>),
}

/// A fresh instance of a plugin, of its version.
pub(crate) enum PolicyInstance {
    V0_1(v0_1::Policy),
    V0_2(v0_2::Policy),
}

impl<T: 'static> PolicyPre<T> {
    pub(crate) fn version(&self) -> ContractVersion {
        match self {
            PolicyPre::V0_1(_) => ContractVersion::V0_1,
            PolicyPre::V0_2(_) => ContractVersion::V0_2,
        }
    }

    pub(crate) fn instantiate(
        &self,
        store: &mut wasmtime::Store<T>,
    ) -> wasmtime::Result<PolicyInstance> {
        Ok(match self {
            PolicyPre::V0_1(pre) => PolicyInstance::V0_1(pre.instantiate(store)?),
            PolicyPre::V0_2(pre) => PolicyInstance::V0_2(pre.instantiate(store)?),
        })
    }
}

impl PolicyInstance {
    /// Calls `evaluate` with the request in the instance's version and answers in the current
    /// version's terms. A 0.1.0 plugin costs a conversion of the request per call (the
    /// current version's plugins none).
    pub(crate) fn call_evaluate<T: 'static>(
        &self,
        store: &mut wasmtime::Store<T>,
        request: &Request,
    ) -> wasmtime::Result<Decision> {
        match self {
            PolicyInstance::V0_2(policy) => policy.call_evaluate(store, request),
            PolicyInstance::V0_1(policy) => {
                let older = crate::convert::to_v0_1(request);
                Ok(crate::convert::from_v0_1(
                    policy.call_evaluate(store, &older)?,
                ))
            }
        }
    }
}

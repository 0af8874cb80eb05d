use std::time::Duration;

/// Why the real-VM harness failed. Messages say what to look at: these surface as test
/// failures in CI.
#[derive(Debug, thiserror::Error)]
pub enum RealVmError {
    #[error(
        "set-up script {script} failed ({status}):\n{output}\n\
         The real-VM tests need root, the packages of scripts/install-deps.sh and a libvirtd \
         that can start (see scripts/realvm/)."
    )]
    Script {
        script: String,
        status: String,
        output: String,
    },

    #[error("`virsh {args}` failed ({status}): {stderr}")]
    Virsh {
        args: String,
        status: String,
        stderr: String,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "timed out after {waited:?} waiting for {what} on {domain}; console tail:\n{console_tail}"
    )]
    Timeout {
        domain: String,
        what: String,
        waited: Duration,
        console_tail: String,
    },

    /// `ensure` failed earlier in this process; the first failure is repeated.
    #[error("the real-VM environment is not usable: {0}")]
    EnvUnusable(String),
}

impl RealVmError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RealVmError {
        let what = what.into();
        move |source| RealVmError::Io { what, source }
    }
}

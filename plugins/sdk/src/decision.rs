//! The plugin's answer, with builders that read well in policy code.

use crate::bindings;

/// A refusal: a stable code, a reason for the client, and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: String,
    pub reason: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow { warnings: Vec<String> },
    Deny(Denial),
}

impl Decision {
    pub fn allow() -> Self {
        Decision::Allow {
            warnings: Vec::new(),
        }
    }

    pub fn allow_with_warning(warning: impl Into<String>) -> Self {
        Decision::Allow {
            warnings: vec![warning.into()],
        }
    }

    /// `code` must be 1 to 64 characters of `a-z`, `0-9`, `_`; the host rejects others.
    pub fn deny(code: impl Into<String>, reason: impl Into<String>) -> Self {
        Decision::Deny(Denial {
            code: code.into(),
            reason: reason.into(),
            warnings: Vec::new(),
        })
    }

    /// Adds a warning to either kind of decision.
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        match &mut self {
            Decision::Allow { warnings } => warnings.push(warning.into()),
            Decision::Deny(d) => d.warnings.push(warning.into()),
        }
        self
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> bindings::Decision {
        match self {
            Decision::Allow { warnings } => bindings::Decision::Allow(warnings),
            Decision::Deny(d) => bindings::Decision::Deny(bindings::Denial {
                code: d.code,
                reason: d.reason,
                warnings: d.warnings,
            }),
        }
    }
}

//! snapgate-policy (work in progress)

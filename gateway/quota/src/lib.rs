//! snapgate-quota (work in progress)

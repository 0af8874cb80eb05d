//! snapgate-store (work in progress)

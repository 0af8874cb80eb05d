//! snapgate-compute (work in progress)

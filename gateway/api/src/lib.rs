//! snapgate-api (work in progress)

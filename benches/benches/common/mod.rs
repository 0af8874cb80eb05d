//! What the real-hypervisor benches share (`realvm.rs`, `pause.rs`). Each bench binary uses
//! a part of it.
#![allow(dead_code)]

pub mod gateway;

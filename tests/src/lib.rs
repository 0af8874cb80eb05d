//! The integration suite's helpers: [`app::TestApp`] starts the real `snapgate` binary on an
//! ephemeral port over real SQLite/PostgreSQL and Redis and libvirt's test driver;
//! [`realvm`] boots a real QEMU guest.

pub mod app;
pub mod browser;
pub mod cluster;
pub mod faults;
pub mod foreign;
pub mod haproxy;
pub mod hosts;
pub mod lossy_proxy;
pub mod newer_gateway;
pub mod realvm;
pub mod shared_driver;
pub mod sse;
pub mod webhook_receiver;

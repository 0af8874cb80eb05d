pub mod admin;
pub mod lifecycle;
pub mod listings;
pub mod operations;
pub mod quotas;
pub mod schedules;
pub mod states;
pub mod system;

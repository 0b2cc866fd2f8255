//! Workloads for fault tests: each has a client loop for [`crate::history::run_under_faults`]
//! that records its operations, and a checker for the recorded history.

pub mod bank;
pub mod cache_take;
pub mod fencing;
pub mod mesh;
pub mod register;
pub mod registry;
pub mod tokens;

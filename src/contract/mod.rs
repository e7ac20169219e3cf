//! The shared vocabulary every layer speaks: document identity, the
//! `extracted` row that stages read, the tables' contract and failure rows.
//! These modules import nothing else of docstream's, so anything may
//! import them.

pub mod extracted;
pub mod failure;
pub mod identity;
pub mod tables;

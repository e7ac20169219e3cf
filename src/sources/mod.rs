//! Where documents come from.

pub mod bucket;

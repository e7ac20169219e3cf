//! Reading the lake: SQL queries and their output formats.

pub mod output;
pub mod query;

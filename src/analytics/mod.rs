//! Reading the lake: the read-only SQL session, hybrid search, answers with
//! citations, and reports.

pub mod ask;
pub mod config;
pub mod eval;
pub mod query;
pub mod reports;
pub mod scoped_table;
pub mod search;
pub mod search_sql;

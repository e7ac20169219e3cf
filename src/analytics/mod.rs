//! Reading the lake: SQL with vector functions, hybrid search, answers with
//! citations, reports, and output formats.

pub mod ask;
pub mod embed_query;
pub mod keyword;
pub mod output;
pub mod query;
pub mod reports;
pub mod search;
pub mod vector;

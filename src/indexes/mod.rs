//! Indexes derived from the lake's tables, for search that stays fast as
//! the lake grows. The tables stay the only source of truth: an index
//! lives under `<lake>/_indexes/`, records the table versions it covers,
//! can always be rebuilt, and searches add what it has not seen yet.
//!
//! - `published`: where generations live and how one is made current;
//! - `delta_log`: what changed in a table after a version;
//! - `fresh`: the documents and rows an index has not seen;
//! - `opened`: generations kept open between searches;
//! - `text`: the Tantivy full-text index;
//! - `text_filter`: scope filters that keep its top-k pruning;
//! - `keyword`: keyword search through it, and the exact reference;
//! - `vector`: the vector index of one embedding model (usearch HNSW);
//! - `semantic`: vector search through it, and the exact reference;
//! - `ranking`: the one order every search ranks hits in;
//! - `update`: building and status.

pub mod config;
pub mod delta_log;
pub mod fresh;
pub mod keyword;
pub mod opened;
pub mod published;
pub mod ranking;
pub mod semantic;
pub mod text;
pub mod text_filter;
pub mod update;
pub mod vector;

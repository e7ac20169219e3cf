//! The ways into the lake's SQL session besides the HTTP API: Arrow
//! Flight SQL and the Postgres wire protocol, and what every door shares:
//! who the caller is (tokens), the session it gets (scoped to its
//! tenant), and the query limits.

pub mod flight;
pub mod gate;
pub mod pg_commands;
pub mod pg_queries;
pub mod pg_rewrites;
pub mod plain_arrow;
pub mod postgres;
pub mod sessions;
pub mod tokens;

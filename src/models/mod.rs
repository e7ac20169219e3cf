//! What docstream adds around the model client (`docstream-models`): the
//! in-process models, the response cache, usage rows, the hub that builds
//! each stage's provider chain, and `serve-models`.

pub mod backend;
pub mod cache;
pub mod config;
#[cfg(feature = "local-models")]
pub mod grammar;
pub mod hub;
pub mod local;
#[cfg(feature = "local-models")]
pub mod server;
pub mod usage;

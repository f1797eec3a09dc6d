//! Host-independent core of the MCP gateway filter.
//!
//! Everything here is plain Rust with no `proxy-wasm` dependency (the crate cannot import it), so
//! `cargo test` runs it natively and the wasm glue in `filter/src` stays a thin adapter.

#![forbid(unsafe_code)]

pub mod approval;
pub mod auth;
pub mod canonical;
pub mod config;
pub mod credentials;
pub mod federation;
pub mod gate;
pub mod guard;
pub mod header_map;
pub mod jsonrpc;
pub mod limits;
pub mod metrics;
pub mod origin;
pub mod pinning;
pub mod policy;
pub mod protocol;
pub mod response;
pub mod result_cache;
pub mod selector;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod tokens;

//! Federation: one MCP endpoint in front of many upstream MCP servers (Envoy clusters).
//!
//! Lists are fanned out and merged, named requests are routed to the owning server with the
//! server prefix stripped, and session-based clients get one gateway session id that carries
//! every upstream session, sealed so that any worker or replica can serve it.

pub mod aggregate;
pub mod config;
pub mod fanout;
pub mod glob;
pub mod plan;
pub mod rewrite;
pub mod session;
pub mod stream;
pub mod upstream;

pub use config::Federation;

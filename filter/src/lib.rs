//! The proxy-wasm glue of the MCP gateway: adapts Envoy's host ABI to `mcp_gateway_core`.
//!
//! Only this crate touches `proxy_wasm`. Each callback reads what the core needs from the host,
//! asks the core for a decision, and carries it out; the decisions themselves are tested natively
//! in `filter/core`.

mod authn;
mod authz;
mod cache;
mod federate;
mod guardrails;
mod host;
mod http;
mod root;
mod stats;
mod telemetry;

proxy_wasm::main! {{
    // Installs the `log` facade and a panic hook that reports panics to Envoy's log.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::GatewayRoot::default())
    });
}}

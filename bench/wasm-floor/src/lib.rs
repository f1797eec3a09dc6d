//! The floor of any MCP-aware proxy-wasm filter, for `make bench` (variant W): wait for the
//! request body, read it into the module, set one routing header (so Envoy re-selects the
//! route, as body routing does), read the response body. No parsing, no decisions: what W
//! costs over plain Envoy is the proxy-wasm machinery in V8 (a call into the module per
//! callback, one back per buffer it is handed, the host calls), which every filter of this
//! kind pays before doing any work of its own.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        if !body.is_empty() {
            self.set_http_request_header("x-mcp-method", Some("tools/call"));
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            let _ = self.get_http_response_body(0, size);
        }
        Action::Continue
    }
}

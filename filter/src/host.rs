//! Host calls that report failure as values instead of panicking.
//!
//! The SDK's trait helpers (`get_http_request_header` and friends) panic on an unexpected host
//! status, and a panic kills the worker's VM for every request. The gateway calls
//! `proxy_wasm::hostcalls` directly and treats a failed call as "absent" or logs it.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

pub fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// Sets (or with `None` removes) a request header. Returns whether the host accepted it.
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    match hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        Ok(()) => true,
        Err(status) => {
            log::warn!("could not set request header {name}: {status:?}");
            false
        }
    }
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value) {
        log::warn!("could not set response header {name}: {status:?}");
    }
}

pub fn request_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
}

pub fn response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
}

/// Replaces the buffered response body with `body`.
pub fn replace_response_body(size: usize, body: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body) {
        log::warn!("could not replace response body: {status:?}");
    }
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// Sends a local reply. The stream then continues through this filter's response callbacks.
pub fn send_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    if let Err(s) = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)) {
        log::error!("could not send local reply {status}: {s:?}");
    }
}

/// Writes a value Envoy keeps as filter state `wasm.<name>`, printable by access loggers with
/// `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_filter_state(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log::debug!("could not set filter state {name}: {status:?}");
    }
}

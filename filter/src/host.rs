//! Host calls that report failure as values instead of panicking.
//!
//! The SDK's trait helpers (`get_http_request_header` and friends) panic on an unexpected host
//! status, and a panic kills the worker's VM for every request. Its header reads
//! (`hostcalls::get_map_value`, `get_map`) also panic on a value that is not UTF-8, which any
//! client can send (HTTP/1.1 obs-text): header reads go to the ABI imports here and decode
//! lossily. Its *write* wrappers (`set_map_value`, `set_buffer`, `set_property`,
//! `send_http_response`) panic on any status but Ok, which a late header write or a filter-state
//! write the host refuses can produce: those go straight to the ABI imports in [`abi`] too, and
//! a refusal is logged.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// The proxy-wasm 0.2.1 write imports, declared as the SDK declares them but returning the raw
/// status word, so no status value can make a wrapper panic (or be an invalid enum).
#[allow(clashing_extern_declarations)] // same ABI as the SDK's: a `#[repr(u32)]` enum is a u32
mod abi {
    use proxy_wasm::types::{BufferType, MapType};

    extern "C" {
        pub fn proxy_get_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(
            map_type: MapType,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        pub fn proxy_set_buffer_bytes(
            buffer_type: BufferType,
            start: usize,
            size: usize,
            buffer_data: *const u8,
            buffer_size: usize,
        ) -> u32;
        pub fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
    }
}

/// Status word 0 is Ok in the ABI.
const OK: u32 = 0;

fn set_header(map: MapType, name: &str, value: Option<&str>) -> u32 {
    // SAFETY: host imports reading `len` bytes from live slices for the duration of the call.
    unsafe {
        match value {
            Some(v) => abi::proxy_replace_header_map_value(
                map,
                name.as_ptr(),
                name.len(),
                v.as_ptr(),
                v.len(),
            ),
            None => abi::proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        }
    }
}

fn set_buffer(buffer: BufferType, size: usize, body: &[u8]) -> u32 {
    // SAFETY: as above; the host copies `body`.
    unsafe { abi::proxy_set_buffer_bytes(buffer, 0, size, body.as_ptr(), body.len()) }
}

/// The proxy-wasm header-map wire form: count, (key length, value length) pairs, then each key
/// and value NUL-terminated; all lengths little-endian u32.
fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(
        4 + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>(),
    );
    out.extend_from_slice(&len(headers.len()));
    for (k, v) in headers {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Takes ownership of a buffer the host allocated in this module's memory for a read.
///
/// SAFETY: `data` is null or was allocated by the host through `proxy_on_memory_allocate` with
/// exactly `size` bytes, and nothing else owns it.
unsafe fn host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// One header of `map`, as text (bytes that are not UTF-8 become U+FFFD). `None` if absent or
/// unreadable.
pub fn map_value(map: MapType, name: &str) -> Option<String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: host import; on Ok the buffer is ours (see `host_bytes`).
    let bytes = unsafe {
        if abi::proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size)
            != OK
        {
            return None;
        }
        host_bytes(data, size)
    };
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => mcp_gateway_core::header_map::text(e.as_bytes()).into_owned(),
    })
}

/// Every header of `map` in one host call, in the wire form [`mcp_gateway_core::header_map`]
/// decodes. Empty if unreadable.
pub fn map_pairs(map: MapType) -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: host import; on Ok the buffer is ours (see `host_bytes`).
    unsafe {
        if abi::proxy_get_header_map_pairs(map, &mut data, &mut size) != OK {
            return Vec::new();
        }
        host_bytes(data, size)
    }
}

pub fn request_header(name: &str) -> Option<String> {
    map_value(MapType::HttpRequestHeaders, name)
}

/// Sets (or with `None` removes) a request header. Returns whether the host accepted it.
pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    match set_header(MapType::HttpRequestHeaders, name, value) {
        OK => true,
        status => {
            log::warn!("could not set request header {name}: host status {status}");
            false
        }
    }
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    let status = set_header(MapType::HttpResponseHeaders, name, value);
    if status != OK {
        log::warn!("could not set response header {name}: host status {status}");
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
    let status = set_buffer(BufferType::HttpResponseBody, size, body);
    if status != OK {
        log::warn!("could not replace response body: host status {status}");
    }
}

/// Replaces the buffered request body with `body`. Returns whether the host accepted it.
pub fn replace_request_body(size: usize, body: &[u8]) -> bool {
    match set_buffer(BufferType::HttpRequestBody, size, body) {
        OK => true,
        status => {
            log::warn!("could not rewrite request body: host status {status}");
            false
        }
    }
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// Sends a local reply. The stream then continues through this filter's response callbacks.
pub fn send_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let map = serialize_headers(headers);
    // SAFETY: host import reading live slices for the duration of the call; -1: not gRPC.
    let result = unsafe {
        abi::proxy_send_local_response(
            u32::from(status),
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    if result != OK {
        log::error!("could not send local reply {status}: host status {result}");
    }
}

/// Writes a value Envoy keeps as filter state `wasm.<name>`, printable by access loggers with
/// `%FILTER_STATE(wasm.<name>:PLAIN)%`. A one-segment property path is just the name.
pub fn set_filter_state(name: &str, value: &str) {
    // SAFETY: host import reading live slices for the duration of the call.
    let status =
        unsafe { abi::proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status != OK {
        log::debug!("could not set filter state {name}: host status {status}");
    }
}

/// Host status words the shared-data calls distinguish.
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// Envoy's shared data (process-wide per VM id) for the core's limits, cache and pinning, over
/// the raw imports: the SDK wrappers panic on statuses the host can return.
pub struct SharedData;

impl mcp_gateway_core::store::SharedStore for SharedData {
    fn get(
        &self,
        key: &str,
    ) -> Result<Option<mcp_gateway_core::store::Versioned>, mcp_gateway_core::store::StoreError>
    {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: host import; on Ok the host hands over a buffer it allocated with this module's
        // allocator (`proxy_on_memory_allocate`), which the Vec then owns and frees.
        let status = unsafe {
            abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            OK => {
                let value = if data.is_null() {
                    Vec::new()
                } else {
                    // SAFETY: see above; `size` bytes were allocated for this buffer.
                    unsafe { Vec::from_raw_parts(data, size, size) }
                };
                Ok(Some(mcp_gateway_core::store::Versioned { value, cas }))
            }
            NOT_FOUND => Ok(None),
            other => {
                log::debug!("shared data get {key}: host status {other}");
                Err(mcp_gateway_core::store::StoreError::Host)
            }
        }
    }

    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), mcp_gateway_core::store::StoreError> {
        // SAFETY: host import reading live slices for the duration of the call.
        let status = unsafe {
            abi::proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        };
        match status {
            OK => Ok(()),
            CAS_MISMATCH => Err(mcp_gateway_core::store::StoreError::CasMismatch),
            other => {
                log::debug!("shared data set {key}: host status {other}");
                Err(mcp_gateway_core::store::StoreError::Host)
            }
        }
    }
}

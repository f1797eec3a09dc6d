//! Authentication glue: JWKS fetching from the root context, and the per-request check.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use mcp_gateway_core::auth::{Authenticator, Credentials};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

/// The per-VM authenticator, shared by the root context (JWKS refresh) and every request.
pub type SharedAuth = Rc<RefCell<Authenticator>>;

/// Host time in Unix seconds (the auth core reads no clock).
pub fn now_secs() -> u64 {
    crate::federate::now_ms() / 1000
}

/// Root context side: fetch the remote JWKS when the core says it is due. Returns the token of
/// the call in flight, if one was dispatched.
pub fn maybe_fetch_jwks(auth: &SharedAuth) -> Option<u32> {
    let now = now_secs();
    let remote = auth.borrow().jwks_fetch_due(now).cloned()?;
    let headers = vec![
        (":method", "GET"),
        (":path", remote.path.as_str()),
        (":authority", remote.authority.as_str()),
        ("accept", "application/json"),
    ];
    match hostcalls::dispatch_http_call(
        &remote.cluster,
        headers,
        None,
        Vec::new(),
        Duration::from_millis(remote.timeout_ms),
    ) {
        Ok(token) => {
            auth.borrow_mut().jwks_fetch_started(now);
            Some(token)
        }
        Err(status) => {
            log::warn!(
                "could not fetch JWKS through cluster {}: {status:?}",
                remote.cluster
            );
            auth.borrow_mut().jwks_fetch_failed(now);
            None
        }
    }
}

/// Root context side: the JWKS answer arrived (or the call failed: no `:status`).
pub fn jwks_answer(auth: &SharedAuth, body_size: usize) {
    let now = now_secs();
    let status = crate::host::map_value(MapType::HttpCallResponseHeaders, ":status");
    if status.as_deref() != Some("200") {
        log::warn!(
            "JWKS fetch failed: HTTP {}",
            status.as_deref().unwrap_or("none")
        );
        auth.borrow_mut().jwks_fetch_failed(now);
        return;
    }
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    match auth.borrow_mut().jwks_fetched(now, &body) {
        Ok(update) => log::info!("JWKS fetched: {update:?}"),
        Err(e) => log::warn!("JWKS rejected, keeping the last good keys: {e}"),
    }
}

/// Reads the request's credentials and authenticates them.
pub fn authenticate(
    auth: &SharedAuth,
) -> Result<mcp_gateway_core::auth::Authenticated, mcp_gateway_core::auth::AuthFailure> {
    let authorization = crate::host::request_header("authorization");
    let api_key_header = auth.borrow().config().api_key_header.clone();
    let api_key = api_key_header
        .as_deref()
        .and_then(crate::host::request_header);
    // trustEnvoyJwtAuthn: the payload Envoy's jwt_authn filter verified and stored in the
    // stream's dynamic metadata (`payload_in_metadata`). Wasm reads `metadata` as a serialized
    // envoy.config.core.v3.Metadata; the core decodes the Struct it holds.
    let payload = {
        let a = auth.borrow();
        let cfg = a.config();
        (cfg.mode == mcp_gateway_core::auth::AuthMode::TrustEnvoyJwtAuthn)
            .then(|| hostcalls::get_property(vec!["metadata"]).ok().flatten())
            .flatten()
            .and_then(|m| {
                mcp_gateway_core::auth::pbstruct::filter_metadata_json(
                    &m,
                    "envoy.filters.http.jwt_authn",
                    &cfg.jwt_authn_payload_key,
                )
            })
    };
    let creds = Credentials {
        authorization: authorization.as_deref(),
        api_key: api_key.as_deref(),
        jwt_authn_payload: payload.as_deref(),
    };
    let result = auth.borrow_mut().authenticate(&creds, now_secs());
    if result.is_ok() {
        // No token passthrough: the client's credentials are for this gateway, not upstreams.
        crate::host::set_request_header("authorization", None);
        if let Some(h) = api_key_header.as_deref() {
            crate::host::set_request_header(h, None);
        }
    }
    result
}

/// Signature checks by Envoy's `verify_signature` foreign function (BoringSSL in the host):
/// RS256 in tens of µs instead of about a millisecond in V8. The core wraps it in a fallback to
/// pure Rust, so a host without the function (or a check it cannot run) still works.
pub struct HostVerifier;

impl mcp_gateway_core::auth::SignatureVerifier for HostVerifier {
    fn verify(
        &self,
        alg: mcp_gateway_core::auth::Algorithm,
        key: &mcp_gateway_core::auth::jwks::Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, mcp_gateway_core::auth::VerifyError> {
        use mcp_gateway_core::auth::crypto::host;
        let args = host::request(alg, key, signing_input, signature)?;
        match hostcalls::call_foreign_function("verify_signature", Some(&args)) {
            Ok(Some(answer)) => host::result(&answer),
            Ok(None) => host::result(&[]),
            Err(status) => Err(mcp_gateway_core::auth::VerifyError::Failed(format!(
                "verify_signature: {status:?}"
            ))),
        }
    }
}

//! The root context: compiles the plugin configuration and creates one HTTP context per request.

use std::cell::RefCell;
use std::rc::Rc;

use mcp_gateway_core::config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::authn::{self, SharedAuth};
use crate::cache::ListCache;
use crate::host;
use crate::http::GatewayHttp;
use crate::stats::Stats;

#[derive(Default)]
pub struct GatewayRoot {
    config: Option<Rc<Config>>,
    stats: Rc<RefCell<Stats>>,
    cache: Rc<RefCell<ListCache>>,
    auth: Option<SharedAuth>,
    /// The JWKS fetch in flight.
    jwks_call: Option<u32>,
}

impl Context for GatewayRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.jwks_call == Some(token_id) {
            self.jwks_call = None;
            if let Some(auth) = &self.auth {
                authn::jwks_answer(auth, body_size);
            }
        }
    }
}

impl RootContext for GatewayRoot {
    /// Returning false makes Envoy reject the filter (and `envoy --mode validate` fail), with the
    /// logged message naming the offending field.
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = host::plugin_configuration().unwrap_or_default();
        match Config::from_json(&raw) {
            Ok(config) => {
                // Lists cached under one configuration must not answer for another that shares
                // the VM id (e.g. after a reload that changed the servers).
                self.cache = Rc::new(RefCell::new(ListCache::new(fingerprint(&raw))));
                self.auth = config.auth.clone().map(|a| {
                    let verifier = mcp_gateway_core::auth::crypto::Fallback {
                        primary: authn::HostVerifier,
                        fallback: mcp_gateway_core::auth::RustCryptoVerifier,
                    };
                    Rc::new(RefCell::new(
                        mcp_gateway_core::auth::Authenticator::with_verifier(a, Box::new(verifier)),
                    ))
                });
                if config
                    .auth
                    .as_ref()
                    .is_some_and(|a| a.remote_jwks.is_some())
                {
                    // The JWKS schedule is checked every second; fetches follow the core's timing.
                    if let Err(s) =
                        proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_secs(1))
                    {
                        log::warn!("could not set tick period: {s:?}");
                    }
                }
                self.stats
                    .borrow_mut()
                    .set_max_tool_labels(config.telemetry.max_tool_labels);
                ensure_shared_keys(&config);
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("mcp_gateway: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a valid configuration Envoy never serves traffic through this filter; the
        // default keeps the SDK's dispatcher from panicking on `None` all the same.
        let config = self.config.clone().unwrap_or_default();
        Some(Box::new(GatewayHttp::new(
            config,
            self.stats.clone(),
            self.cache.clone(),
            self.auth.clone(),
        )))
    }

    fn on_tick(&mut self) {
        if self.jwks_call.is_none() {
            if let Some(auth) = &self.auth {
                self.jwks_call = authn::maybe_fetch_jwks(auth);
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// FNV-1a of the plugin configuration, as a short namespace for shared-data keys.
fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Creates the shared-data keys that limits and pinning update under CAS: the host writes a
/// missing key unconditionally, so two workers creating one at once could lose a count.
fn ensure_shared_keys(config: &Config) {
    use mcp_gateway_core::store::ensure_keys;
    if let Some(limits) = &config.limits {
        if let Err(e) = ensure_keys(&host::SharedData, limits.shared_keys()) {
            log::warn!("could not prepare rate-limit keys: {e}");
        }
    }
    if let Some(pinning) = &config.pinning {
        let keys: Vec<String> = match &config.federation {
            Some(fed) => fed
                .servers
                .iter()
                .map(|s| pinning.shared_key(Some(&s.name)))
                .collect(),
            None => vec![pinning.shared_key(None)],
        };
        if let Err(e) = ensure_keys(&host::SharedData, keys) {
            log::warn!("could not prepare tool registry keys: {e}");
        }
    }
}

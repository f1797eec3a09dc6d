//! Configuration of the upstream MCP servers the gateway federates.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::federation::glob::Glob;

/// One upstream MCP server, as users write it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawServer {
    /// Unique name; used in prefixed tool/prompt names, metrics labels and logs.
    pub name: String,
    /// The Envoy cluster that reaches the server (must exist in Envoy's config).
    pub cluster: String,
    /// The server's MCP endpoint path. Default `/mcp`.
    pub path: Option<String>,
    /// `:authority` for requests to the server. Default: the cluster name.
    pub authority: Option<String>,
    /// Prefix of this server's tool and prompt names. Default: the server name.
    pub prefix: Option<String>,
    /// Time limit for the gateway's own calls to this server (initialize, list fan-out), in ms.
    /// Default 5000.
    pub timeout_ms: Option<u64>,
    /// Which of the server's tools are exposed (globs over the server's own names).
    pub tools: Option<RawToolFilter>,
    /// What the gateway presents to this server (the client's own token never goes upstream).
    pub credentials: Option<crate::credentials::RawCredentials>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawToolFilter {
    /// Globs (`*`, `?`) of tools to expose. Default: all.
    pub allow: Option<Vec<String>>,
    /// Globs of tools to hide, applied after `allow`.
    pub deny: Option<Vec<String>>,
}

/// Gateway-wide federation settings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawFederation {
    /// Between the prefix and the name: `<prefix><separator><name>`. Default `__`.
    pub separator: Option<String>,
    /// Prefix tool and prompt names with their server's prefix. Default true. Without prefixes, a
    /// name offered by two servers is ambiguous: it is dropped from the lists and counted.
    pub prefix_names: Option<bool>,
    /// Base64 of 32 random bytes: the key that encrypts and authenticates gateway session ids.
    /// Every Envoy replica that may serve a session needs the same key.
    pub session_key: Option<String>,
    /// How long merged lists are cached, in ms. Default 30000; 0 disables the cache.
    pub list_cache_ttl_ms: Option<u64>,
    /// Request header the filter sets to the owning server's cluster, for a route with
    /// `cluster_header`. Default `x-mcp-cluster`.
    pub cluster_header: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub prefix: String,
    pub timeout_ms: u64,
    pub allow: Vec<Glob>,
    pub deny: Vec<Glob>,
    pub credential: Option<crate::credentials::Credential>,
}

impl Server {
    /// Whether a tool (by the server's own name) is exposed through the gateway.
    pub fn exposes_tool(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(name)))
            && !self.deny.iter().any(|g| g.matches(name))
    }
}

#[derive(Clone)]
pub struct Federation {
    pub servers: Vec<Server>,
    pub separator: String,
    pub prefix_names: bool,
    pub session_key: [u8; 32],
    pub list_cache_ttl_ms: u64,
    pub cluster_header: String,
}

impl std::fmt::Debug for Federation {
    /// Never prints the session key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("servers", &self.servers)
            .field("separator", &self.separator)
            .field("prefix_names", &self.prefix_names)
            .field("session_key", &"<redacted>")
            .field("list_cache_ttl_ms", &self.list_cache_ttl_ms)
            .field("cluster_header", &self.cluster_header)
            .finish()
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Characters allowed in server names and prefixes: they end up in tool names, stat names and
/// rewritten JSON-RPC ids, so keep them to the spec's tool-name alphabet minus the separator-ish.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Federation {
    pub fn compile(
        servers: Vec<RawServer>,
        raw: Option<RawFederation>,
        header_check: impl Fn(&str, Option<String>, &str) -> Result<String, ConfigError>,
    ) -> Result<Federation, ConfigError> {
        let raw = raw.unwrap_or_default();
        if servers.is_empty() {
            return Err(invalid("servers", "must list at least one server"));
        }
        let separator = raw.separator.unwrap_or_else(|| "__".to_owned());
        if separator.is_empty()
            || separator.len() > 8
            || !separator
                .bytes()
                .all(|b| b == b'_' || b == b'-' || b == b'.' || b == b'~' || b == b':' || b == b'/')
        {
            return Err(invalid(
                "federation.separator",
                "must be 1 to 8 of the characters _ - . ~ : /",
            ));
        }
        let session_key = match raw.session_key {
            None => {
                return Err(invalid(
                    "federation.sessionKey",
                    "is required with servers: base64 of 32 random bytes (e.g. `openssl rand -base64 32`)",
                ))
            }
            Some(k) => {
                let bytes = STANDARD
                    .decode(k.trim())
                    .map_err(|_| invalid("federation.sessionKey", "is not valid base64"))?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    invalid(
                        "federation.sessionKey",
                        format!("must decode to 32 bytes, got {}", bytes.len()),
                    )
                })?
            }
        };
        let mut compiled: Vec<Server> = Vec::with_capacity(servers.len());
        for (i, s) in servers.into_iter().enumerate() {
            let at = |f: &str| format!("servers[{i}].{f}");
            if !valid_name(&s.name) {
                return Err(invalid(
                    at("name"),
                    format!("{:?} must be 1-64 of [A-Za-z0-9_-]", s.name),
                ));
            }
            if compiled.iter().any(|c| c.name == s.name) {
                return Err(invalid(
                    at("name"),
                    format!("duplicate server name {:?}", s.name),
                ));
            }
            if s.cluster.trim().is_empty() {
                return Err(invalid(at("cluster"), "must not be empty"));
            }
            let path = s.path.unwrap_or_else(|| "/mcp".to_owned());
            if !path.starts_with('/') {
                return Err(invalid(at("path"), format!("{path:?} must start with '/'")));
            }
            let prefix = s.prefix.unwrap_or_else(|| s.name.clone());
            if !valid_name(&prefix) {
                return Err(invalid(
                    at("prefix"),
                    format!("{prefix:?} must be 1-64 of [A-Za-z0-9_-]"),
                ));
            }
            let timeout_ms = s.timeout_ms.unwrap_or(5000);
            if timeout_ms == 0 || timeout_ms > 600_000 {
                return Err(invalid(at("timeoutMs"), "must be between 1 and 600000"));
            }
            let filter = s.tools.unwrap_or_default();
            let globs = |list: Option<Vec<String>>, f: &str| -> Result<Vec<Glob>, ConfigError> {
                list.unwrap_or_default()
                    .iter()
                    .enumerate()
                    .map(|(j, g)| {
                        Glob::parse(g)
                            .map_err(|e| invalid(format!("servers[{i}].tools.{f}[{j}]"), e))
                    })
                    .collect()
            };
            let allow = globs(filter.allow, "allow")?;
            let deny = globs(filter.deny, "deny")?;
            let credential = match s.credentials {
                Some(c) => Some(crate::credentials::Credential::compile(
                    c,
                    &at("credentials"),
                )?),
                None => None,
            };
            compiled.push(Server {
                authority: s.authority.unwrap_or_else(|| s.cluster.clone()),
                name: s.name,
                cluster: s.cluster,
                path,
                prefix,
                timeout_ms,
                allow,
                deny,
                credential,
            });
        }
        let prefix_names = raw.prefix_names.unwrap_or(true);
        if prefix_names {
            // `a` + `__` must not start `a__b` + `__`: a name could then belong to both servers.
            for (i, a) in compiled.iter().enumerate() {
                for (j, b) in compiled.iter().enumerate() {
                    let pa = format!("{}{separator}", a.prefix);
                    let pb = format!("{}{separator}", b.prefix);
                    if i != j && pb.starts_with(&pa) {
                        return Err(invalid(
                            format!("servers[{j}].prefix"),
                            format!("{:?} collides with the prefix of servers[{i}] ({:?}) and separator {separator:?}", b.prefix, a.prefix),
                        ));
                    }
                }
            }
        }
        let list_cache_ttl_ms = raw.list_cache_ttl_ms.unwrap_or(30_000);
        let cluster_header = header_check(
            "federation.clusterHeader",
            raw.cluster_header,
            "x-mcp-cluster",
        )?;
        Ok(Federation {
            servers: compiled,
            separator,
            prefix_names,
            session_key,
            list_cache_ttl_ms,
            cluster_header,
        })
    }

    pub fn server(&self, name: &str) -> Option<(usize, &Server)> {
        self.servers
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }

    /// The client-facing name of a server's tool or prompt.
    pub fn qualify(&self, server: &Server, name: &str) -> String {
        if self.prefix_names {
            format!("{}{}{}", server.prefix, self.separator, name)
        } else {
            name.to_owned()
        }
    }

    /// Splits a prefixed client-facing name into its server and the server's own name.
    pub fn split<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        if !self.prefix_names {
            return None;
        }
        self.servers.iter().enumerate().find_map(|(i, s)| {
            name.strip_prefix(s.prefix.as_str())
                .and_then(|rest| rest.strip_prefix(self.separator.as_str()))
                .filter(|rest| !rest.is_empty())
                .map(|rest| (i, rest))
        })
    }
}

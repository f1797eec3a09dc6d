//! RFC 9728 OAuth 2.0 Protected Resource Metadata: the document MCP clients fetch to find the
//! authorization server, and where it is served.
//!
//! The document never changes between configurations, so it is serialized once at compile time
//! and the glue answers `GET /.well-known/oauth-protected-resource[/<path>]` with the same bytes.
//! Its URL, built by inserting the well-known segment between host and path (RFC 9728 §3.1), is
//! the `resource_metadata` parameter of every challenge.

use serde_json::{Map, Value};

use super::config::{check_scopes, invalid, AuthConfigError, RawResourceMetadata};

/// The well-known path prefix (RFC 9728 §3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The compiled metadata.
#[derive(Debug, Clone)]
pub struct ResourceMetadata {
    resource: String,
    url: String,
    document: String,
    /// `/.well-known/oauth-protected-resource` followed by the resource's path ("" for none).
    own_path: String,
}

/// The parts of an absolute http(s) URL the gateway needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `https://host[:port]`
    pub origin: &'a str,
    pub authority: &'a str,
    /// Path and query, `/` when the URL has none.
    pub path_and_query: &'a str,
}

/// Splits an absolute `http(s)://authority[/path][?query]` URL; rejects fragments, user info,
/// whitespace and control characters. The error is the problem, for a field message.
pub fn split_url(url: &str) -> Result<UrlParts<'_>, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must be an absolute http(s) URL"))?;
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url:?} must not contain spaces or control characters"
        ));
    }
    if url.contains('#') {
        return Err(format!("{url:?} must not contain a fragment"));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} must have a host (and no user info)"));
    }
    let scheme_len = url.len() - rest.len();
    let origin = url.get(..scheme_len + authority.len()).unwrap_or(url);
    let path_and_query = if tail.is_empty() { "/" } else { tail };
    Ok(UrlParts {
        origin,
        authority,
        path_and_query,
    })
}

impl ResourceMetadata {
    pub fn compile(
        raw: RawResourceMetadata,
        field: &str,
    ) -> Result<ResourceMetadata, AuthConfigError> {
        let parts =
            split_url(&raw.resource).map_err(|p| invalid(format!("{field}.resource"), p))?;
        if parts.path_and_query.contains('?') {
            return Err(invalid(
                format!("{field}.resource"),
                "must not contain a query",
            ));
        }
        if raw.authorization_servers.is_empty() {
            return Err(invalid(
                format!("{field}.authorizationServers"),
                "must list at least one authorization server (MCP requires it)",
            ));
        }
        for (i, s) in raw.authorization_servers.iter().enumerate() {
            split_url(s).map_err(|p| invalid(format!("{field}.authorizationServers[{i}]"), p))?;
        }
        if let Some(scopes) = &raw.scopes_supported {
            check_scopes(&format!("{field}.scopesSupported"), scopes)?;
        }
        if let Some(doc) = &raw.resource_documentation {
            split_url(doc).map_err(|p| invalid(format!("{field}.resourceDocumentation"), p))?;
        }
        // RFC 9728 §3.1: a trailing slash of the resource path is not part of the suffix.
        let path = parts.path_and_query.trim_end_matches('/');
        let own_path = format!("{WELL_KNOWN_PATH}{path}");
        let url = format!("{}{own_path}", parts.origin);

        let mut doc = Map::new();
        doc.insert("resource".into(), Value::String(raw.resource.clone()));
        doc.insert(
            "authorization_servers".into(),
            Value::from(raw.authorization_servers),
        );
        if let Some(scopes) = raw.scopes_supported {
            doc.insert("scopes_supported".into(), Value::from(scopes));
        }
        doc.insert(
            "bearer_methods_supported".into(),
            Value::from(vec!["header"]),
        );
        if let Some(name) = raw.resource_name {
            doc.insert("resource_name".into(), Value::String(name));
        }
        if let Some(d) = raw.resource_documentation {
            doc.insert("resource_documentation".into(), Value::String(d));
        }
        let document = Value::Object(doc).to_string();
        Ok(ResourceMetadata {
            resource: raw.resource,
            url,
            document,
            own_path,
        })
    }

    /// The resource identifier (`resource`).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Absolute URL of the metadata document: the `resource_metadata` challenge parameter.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JSON document (serve as `application/json`).
    pub fn document(&self) -> &str {
        &self.document
    }

    /// Whether a request for `path` (query ignored) should get the document: the root form,
    /// the form suffixed with the resource's path, and the forms suffixed with each MCP endpoint
    /// path (clients build `/.well-known/oauth-protected-resource/mcp` from the URL they were
    /// given before they know the resource identifier).
    pub fn serves(&self, path: &str, mcp_paths: &[String]) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let Some(suffix) = path.strip_prefix(WELL_KNOWN_PATH) else {
            return false;
        };
        suffix.is_empty()
            || path == self.own_path
            || mcp_paths.iter().any(|p| p.trim_end_matches('/') == suffix)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // JSON fixtures: a missing member fails the test anyway
mod tests {
    use super::*;

    fn raw(resource: &str) -> RawResourceMetadata {
        RawResourceMetadata {
            resource: resource.to_owned(),
            authorization_servers: vec!["https://auth.example.com".to_owned()],
            scopes_supported: Some(vec!["mcp:tools".to_owned()]),
            resource_name: Some("Gateway \"one\"".to_owned()),
            resource_documentation: None,
        }
    }

    fn compiled(resource: &str) -> ResourceMetadata {
        ResourceMetadata::compile(raw(resource), "m").unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn the_metadata_url_inserts_the_well_known_segment_before_the_path() {
        for (resource, url) in [
            (
                "https://mcp.example.com/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "https://mcp.example.com",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://mcp.example.com/",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ),
            (
                "http://localhost:8080/public/mcp/",
                "http://localhost:8080/.well-known/oauth-protected-resource/public/mcp",
            ),
        ] {
            assert_eq!(compiled(resource).url(), url, "{resource}");
        }
    }

    #[test]
    fn the_document_has_the_rfc_9728_fields() {
        let m = compiled("https://mcp.example.com/mcp");
        let doc: Value = serde_json::from_str(m.document()).unwrap_or_default();
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://auth.example.com");
        assert_eq!(doc["scopes_supported"][0], "mcp:tools");
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        assert_eq!(doc["resource_name"], "Gateway \"one\"");
        assert!(doc.get("resource_documentation").is_none());
    }

    #[test]
    fn the_document_is_served_at_the_root_and_suffixed_forms_only() {
        let m = compiled("https://mcp.example.com/mcp");
        let mcp = vec!["/mcp".to_owned(), "/other/mcp".to_owned()];
        for (path, served) in [
            ("/.well-known/oauth-protected-resource", true),
            ("/.well-known/oauth-protected-resource?x=1", true),
            ("/.well-known/oauth-protected-resource/mcp", true),
            ("/.well-known/oauth-protected-resource/other/mcp", true),
            ("/.well-known/oauth-protected-resource/nope", false),
            ("/.well-known/oauth-protected-resourcex", false),
            ("/.well-known/oauth-authorization-server", false),
            ("/mcp", false),
        ] {
            assert_eq!(m.serves(path, &mcp), served, "{path}");
        }
    }

    #[test]
    fn urls_are_checked() {
        for bad in [
            "mcp.example.com",
            "ftp://x",
            "https://",
            "https://user@host/",
            "https://host/a b",
            "https://host/#frag",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
        let p = split_url("https://h:1/p?q").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (p.origin, p.authority, p.path_and_query),
            ("https://h:1", "h:1", "/p?q")
        );
        let e = ResourceMetadata::compile(raw("https://h/mcp?x=1"), "m").err();
        assert!(e.is_some_and(|e| e.field == "m.resource"));
    }
}

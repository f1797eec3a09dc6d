//! `Origin` and `Host` allow-lists: the DNS-rebinding protection the MCP spec asks of servers.
//!
//! The gateway is the server the client sees, so the check belongs here rather than upstream,
//! where the `Host` is already the cluster's. Patterns are `scheme://host[:port]` for origins and
//! `host[:port]` for hosts; `:*` allows any port, a leading `*.` any subdomain, `*` anything.
//! Without a port a pattern matches only the scheme's default port (origins) or no port (hosts).

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Exact {
        scheme: String,
        host: HostMatch,
        port: PortMatch,
    },
}

/// One allowed `Host`/`:authority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact { host: HostMatch, port: PortMatch },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Name(String),
    /// `*.example.com`: any subdomain, stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    Any,
    /// No port given: the default one (origins) or none (hosts).
    Default,
    Port(u16),
}

impl HostMatch {
    fn parse(host: &str) -> Result<HostMatch, String> {
        if host.is_empty() {
            return Err("host must not be empty".into());
        }
        let host = host.to_ascii_lowercase();
        match host.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => {
                Ok(HostMatch::Suffix(rest.to_owned()))
            }
            Some(_) => Err(format!("{host:?}: '*' is only allowed as a leading '*.'")),
            None if host.contains('*') => {
                Err(format!("{host:?}: '*' is only allowed as a leading '*.'"))
            }
            None => Ok(HostMatch::Name(host)),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Name(n) => n.eq_ignore_ascii_case(host),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host
                        .get(host.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            }
        }
    }
}

/// Splits `host[:port]` (with `[v6]` literals) into host and optional port text.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host_len = end + 2;
            let host = s.get(..host_len).unwrap_or(s);
            let port = s.get(host_len..).and_then(|p| p.strip_prefix(':'));
            return (host, port);
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

fn parse_port_pattern(port: Option<&str>) -> Result<PortMatch, String> {
    match port {
        None => Ok(PortMatch::Default),
        Some("*") => Ok(PortMatch::Any),
        Some(p) => p
            .parse::<u16>()
            .map(PortMatch::Port)
            .map_err(|_| format!("bad port {p:?}")),
    }
}

impl PortMatch {
    fn matches(&self, port: Option<u16>, default: Option<u16>) -> bool {
        match self {
            PortMatch::Any => true,
            PortMatch::Default => port.is_none() || (port.is_some() && port == default),
            PortMatch::Port(p) => port.or(default) == Some(*p),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OriginPattern {
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        if s == "*" {
            return Ok(OriginPattern::Any);
        }
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} is not scheme://host[:port] or '*'"))?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(format!("{s:?} has a bad scheme"));
        }
        if rest.contains('/') {
            return Err(format!("{s:?}: an origin has no path"));
        }
        let (host, port) = split_host_port(rest);
        Ok(OriginPattern::Exact {
            scheme: scheme.to_ascii_lowercase(),
            host: HostMatch::parse(host)?,
            port: parse_port_pattern(port)?,
        })
    }

    /// Whether the `Origin` header value `origin` is allowed by this pattern.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact { scheme, host, port } => {
                let Some((s, rest)) = origin.split_once("://") else {
                    return false;
                };
                if !s.eq_ignore_ascii_case(scheme) {
                    return false;
                }
                let (h, p) = split_host_port(rest);
                let p = match p.map(str::parse::<u16>) {
                    None => None,
                    Some(Ok(p)) => Some(p),
                    Some(Err(_)) => return false,
                };
                host.matches(h) && port.matches(p, default_port(scheme))
            }
        }
    }
}

impl HostPattern {
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        if s.contains('/') {
            return Err(format!("{s:?}: a host has no scheme or path"));
        }
        let (host, port) = split_host_port(s);
        Ok(HostPattern::Exact {
            host: HostMatch::parse(host)?,
            port: parse_port_pattern(port)?,
        })
    }

    /// Whether the `Host`/`:authority` value `authority` is allowed by this pattern.
    pub fn matches(&self, authority: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact { host, port } => {
                let (h, p) = split_host_port(authority);
                let p = match p.map(str::parse::<u16>) {
                    None => None,
                    Some(Ok(p)) => Some(p),
                    Some(Err(_)) => return false,
                };
                host.matches(h) && port.matches(p, None)
            }
        }
    }
}

/// Whether `origin` is allowed by any pattern. A literal `null` origin needs an explicit `null`
/// entry or `*` — it is what sandboxed pages send, so it is not trusted by default.
pub fn origin_allowed(patterns: &[OriginPattern], origin: &str) -> bool {
    patterns.iter().any(|p| p.matches(origin))
}

pub fn host_allowed(patterns: &[HostPattern], authority: &str) -> bool {
    patterns.iter().any(|p| p.matches(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|s| OriginPattern::parse(s).unwrap_or(OriginPattern::Any))
            .collect()
    }

    fn hosts(list: &[&str]) -> Vec<HostPattern> {
        list.iter()
            .map(|s| HostPattern::parse(s).unwrap_or(HostPattern::Any))
            .collect()
    }

    #[test]
    fn loopback_origins_on_any_port_are_allowed_by_the_defaults() {
        let p = origins(&["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]);
        for o in [
            "http://localhost",
            "http://localhost:1234",
            "http://127.0.0.1:9",
            "http://[::1]:80",
            "HTTP://LOCALHOST:5",
        ] {
            assert!(origin_allowed(&p, o), "{o}");
        }
        for o in [
            "http://evil.example",
            "http://localhost.evil.example",
            "https://localhost:1",
            "null",
            "localhost",
            "http://localhost:notaport",
        ] {
            assert!(!origin_allowed(&p, o), "{o}");
        }
    }

    #[test]
    fn origin_without_port_matches_only_the_default_port() {
        let p = origins(&["https://app.example.com"]);
        assert!(origin_allowed(&p, "https://app.example.com"));
        assert!(origin_allowed(&p, "https://app.example.com:443"));
        assert!(!origin_allowed(&p, "https://app.example.com:8443"));
        assert!(!origin_allowed(&p, "http://app.example.com"));
    }

    #[test]
    fn subdomain_wildcards_do_not_match_the_apex_or_lookalikes() {
        let p = origins(&["https://*.example.com"]);
        assert!(origin_allowed(&p, "https://a.example.com"));
        assert!(origin_allowed(&p, "https://a.b.example.com"));
        assert!(!origin_allowed(&p, "https://example.com"));
        assert!(!origin_allowed(&p, "https://badexample.com"));
    }

    #[test]
    fn hosts_match_with_and_without_ports() {
        let p = hosts(&["localhost:*", "[::1]:*", "gw.example.com"]);
        assert!(host_allowed(&p, "localhost"));
        assert!(host_allowed(&p, "localhost:10000"));
        assert!(host_allowed(&p, "[::1]:10000"));
        assert!(host_allowed(&p, "GW.example.com"));
        assert!(!host_allowed(&p, "gw.example.com:8080"));
        assert!(!host_allowed(&p, "evil.example"));
        assert!(host_allowed(&hosts(&["*"]), "anything"));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for s in [
            "ftp//x",
            "http://",
            "http://a/b",
            "://x",
            "http://a:99999",
            "http://a*b",
        ] {
            assert!(OriginPattern::parse(s).is_err(), "{s}");
        }
        for s in ["", "a/b", "h:x", "a*"] {
            assert!(HostPattern::parse(s).is_err(), "{s}");
        }
    }
}

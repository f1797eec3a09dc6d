//! Which calls a limit, cache or approval rule applies to: globs over the server, the tool and
//! the JSON-RPC method.
//!
//! Tool names are the server's own names (without the gateway's federation prefix), as the
//! policy sees them, so a rule does not change when prefixes do. Without federation there is no
//! server: a rule that names a server never matches then.

use serde::Deserialize;

use crate::config::ConfigError;
use crate::federation::glob::Glob;

/// The facts about one request that rules select on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target<'a> {
    /// The upstream server (federation), `None` when not federating.
    pub server: Option<&'a str>,
    /// The server's own tool name (`tools/call`), `None` for other requests.
    pub tool: Option<&'a str>,
    /// The JSON-RPC method, `None` for requests that are not JSON-RPC calls (GET, DELETE).
    pub method: Option<&'a str>,
}

/// A rule's `match`, as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMatch {
    /// Glob (`*`, `?`) over the server name. Absent: any request, with or without a server.
    pub server: Option<String>,
    /// Glob over the server's own tool name. Absent: any request; present: only `tools/call`
    /// requests whose tool matches.
    pub tool: Option<String>,
    /// Globs over the JSON-RPC method (`tools/call`, `resources/*`). Absent: every request,
    /// including non-JSON-RPC ones (GET streams, DELETE); present: only JSON-RPC requests with a
    /// matching method.
    pub methods: Option<Vec<String>>,
}

/// A server/tool pair of globs, as users write it in tool lists (cache, approval).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawToolMatch {
    /// Glob over the server name. Absent: any server (and no server).
    pub server: Option<String>,
    /// Glob over the server's own tool name. Required.
    pub tool: String,
}

/// A compiled `match`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub server: Option<Glob>,
    pub tool: Option<Glob>,
    pub methods: Option<Vec<Glob>>,
}

fn glob(field: String, pattern: &str) -> Result<Glob, ConfigError> {
    Glob::parse(pattern).map_err(|problem| ConfigError::Invalid { field, problem })
}

impl Match {
    /// Compiles `raw`; `path` names it in errors (`limits.rateLimits[1].match`).
    pub fn compile(raw: RawMatch, path: &str) -> Result<Match, ConfigError> {
        let server = match raw.server {
            Some(s) => Some(glob(format!("{path}.server"), &s)?),
            None => None,
        };
        let tool = match raw.tool {
            Some(t) => Some(glob(format!("{path}.tool"), &t)?),
            None => None,
        };
        let methods = match raw.methods {
            Some(list) if list.is_empty() => {
                return Err(ConfigError::Invalid {
                    field: format!("{path}.methods"),
                    problem: "must list at least one method (omit it to match every request)"
                        .into(),
                })
            }
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, m)| glob(format!("{path}.methods[{i}]"), m))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(Match {
            server,
            tool,
            methods,
        })
    }

    /// Whether the rule applies to `target`. A glob that is set needs the attribute present.
    pub fn matches(&self, target: &Target<'_>) -> bool {
        fn one(glob: Option<&Glob>, value: Option<&str>) -> bool {
            match (glob, value) {
                (None, _) => true,
                (Some(g), Some(v)) => g.matches(v),
                (Some(_), None) => false,
            }
        }
        one(self.server.as_ref(), target.server)
            && one(self.tool.as_ref(), target.tool)
            && match (&self.methods, target.method) {
                (None, _) => true,
                (Some(list), Some(m)) => list.iter().any(|g| g.matches(m)),
                (Some(_), None) => false,
            }
    }
}

/// A compiled server/tool pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolMatch {
    pub server: Option<Glob>,
    pub tool: Glob,
}

impl ToolMatch {
    pub fn compile(raw: &RawToolMatch, path: &str) -> Result<ToolMatch, ConfigError> {
        Ok(ToolMatch {
            server: match &raw.server {
                Some(s) => Some(glob(format!("{path}.server"), s)?),
                None => None,
            },
            tool: glob(format!("{path}.tool"), &raw.tool)?,
        })
    }

    pub fn matches(&self, server: Option<&str>, tool: &str) -> bool {
        let server_ok = match (&self.server, server) {
            (None, _) => true,
            (Some(g), Some(s)) => g.matches(s),
            (Some(_), None) => false,
        };
        server_ok && self.tool.matches(tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Match {
        let raw: RawMatch = serde_json::from_str(json).unwrap_or_default();
        Match::compile(raw, "m").unwrap_or_default()
    }

    const CALL: Target<'static> = Target {
        server: Some("github"),
        tool: Some("create_issue"),
        method: Some("tools/call"),
    };
    const LIST: Target<'static> = Target {
        server: None,
        tool: None,
        method: Some("tools/list"),
    };
    const GET: Target<'static> = Target {
        server: None,
        tool: None,
        method: None,
    };

    #[test]
    fn rules_select_on_server_tool_and_method() {
        for (rule, target, expected) in [
            ("{}", CALL, true),
            ("{}", GET, true),
            (r#"{"server":"git*"}"#, CALL, true),
            (r#"{"server":"gitlab"}"#, CALL, false),
            (r#"{"server":"*"}"#, LIST, false),
            (r#"{"tool":"create_*"}"#, CALL, true),
            (r#"{"tool":"delete_*"}"#, CALL, false),
            (r#"{"tool":"*"}"#, LIST, false),
            (r#"{"methods":["tools/*"]}"#, LIST, true),
            (r#"{"methods":["resources/read"]}"#, LIST, false),
            (r#"{"methods":["*"]}"#, GET, false),
            (
                r#"{"server":"github","tool":"create_*","methods":["tools/call"]}"#,
                CALL,
                true,
            ),
        ] {
            assert_eq!(
                compile(rule).matches(&target),
                expected,
                "{rule} {target:?}"
            );
        }
    }

    #[test]
    fn bad_globs_and_empty_method_lists_name_the_field() {
        for (json, field) in [
            (r#"{"server":""}"#, "m.server"),
            (r#"{"tool":""}"#, "m.tool"),
            (r#"{"methods":[]}"#, "m.methods"),
            (r#"{"methods":["a",""]}"#, "m.methods[1]"),
        ] {
            let raw: RawMatch = serde_json::from_str(json).unwrap_or_default();
            let e = Match::compile(raw, "m").err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.starts_with(field)),
                "{json}: {e:?}"
            );
        }
    }

    #[test]
    fn tool_matches_need_the_server_when_one_is_named() {
        let any = ToolMatch::compile(
            &RawToolMatch {
                server: None,
                tool: "delete_*".into(),
            },
            "t",
        );
        let gh = ToolMatch::compile(
            &RawToolMatch {
                server: Some("github".into()),
                tool: "*".into(),
            },
            "t",
        );
        let (Ok(any), Ok(gh)) = (any, gh) else {
            unreachable!()
        };
        assert!(any.matches(None, "delete_repo"));
        assert!(any.matches(Some("x"), "delete_repo"));
        assert!(!any.matches(Some("x"), "read"));
        assert!(gh.matches(Some("github"), "anything"));
        assert!(!gh.matches(None, "anything"));
    }
}

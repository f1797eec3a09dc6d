//! Explicit approval of destructive tool calls.
//!
//! A tool needs approval when config lists it (server/tool globs), or when `hints` is on and its
//! latest `tools/list` entry declares `annotations.destructiveHint: true` (explicit `true` only;
//! the pinning registry keeps the hint so any worker knows it). A call to such a tool goes
//! through only when it carries `params._meta["io.mcpgw/approve"]: true` and, if
//! `approverScopes` is set, the caller's token has one of those scopes. Otherwise it is refused
//! with a JSON-RPC error (code -31403, outside the reserved range; HTTP 200 so MCP clients show
//! it) whose message and `data` say exactly what to send. The flag is set by the MCP client
//! after a human confirmed the call, not by the model; `approverScopes` makes sure only callers
//! entrusted with approving can.
//!
//! Server hints are untrusted: a server can omit `destructiveHint`. List the tools that matter in
//! `tools`; hints only add to it.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::canonical::parse_object;

use crate::config::ConfigError;
use crate::jsonrpc::{error_body, push_json_string};
use crate::pinning::ToolHints;
use crate::selector::{RawToolMatch, ToolMatch};

/// JSON-RPC error code of a call refused for want of approval.
pub const APPROVAL_REQUIRED: i64 = -31403;

/// The `params._meta` key that approves a call.
pub const APPROVE_META_KEY: &str = "io.mcpgw/approve";

/// The `approval` section as users write it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawApproval {
    /// `"require"` (default): destructive tools need approval; `"off"`: they do not.
    pub destructive: Option<String>,
    /// Treat tools whose `tools/list` entry declares `destructiveHint: true` as destructive.
    /// Default true.
    pub hints: Option<bool>,
    /// Tools that are destructive whatever they declare (server/tool globs, server's own names).
    pub tools: Option<Vec<RawToolMatch>>,
    /// The approving caller's token must hold one of these scopes. Absent or empty: the
    /// `_meta` flag alone approves.
    pub approver_scopes: Option<Vec<String>>,
    /// Calls to tools not seen in any `tools/list` yet (hints unknown, e.g. right after a
    /// restart): `"allow"` (default) or `"require"` approval.
    pub unknown_tools: Option<String>,
}

/// The compiled `approval` section.
#[derive(Debug, Clone)]
pub struct Approval {
    require: bool,
    hints: bool,
    tools: Vec<ToolMatch>,
    approver_scopes: Vec<String>,
    unknown_require: bool,
}

/// Why a tool needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Listed in `approval.tools`.
    Configured,
    /// Declared `destructiveHint: true`.
    DestructiveHint,
    /// Not seen in a list yet, with `unknownTools: "require"`.
    UnknownTool,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Configured => "configured",
            Reason::DestructiveHint => "destructiveHint",
            Reason::UnknownTool => "unknownTool",
        }
    }
}

/// What the call lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The `_meta` approval flag.
    Flag,
    /// The flag is there, but the caller's token has none of `approverScopes`.
    Scope,
}

/// The outcome of [`Approval::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// The tool does not need approval.
    NotRequired,
    /// It does, and the call is approved.
    Approved,
    /// It does, and the call is not: answer with [`Approval::error_body`].
    Required { reason: Reason, missing: Missing },
}

impl Approval {
    /// Compiles the `approval` section; `path` names it in errors (`approval`).
    pub fn compile(raw: RawApproval, path: &str) -> Result<Approval, ConfigError> {
        let invalid = |field: String, problem: String| ConfigError::Invalid { field, problem };
        let require = match raw.destructive.as_deref() {
            None | Some("require") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid(
                    format!("{path}.destructive"),
                    format!("{other:?} must be \"require\" or \"off\""),
                ))
            }
        };
        let unknown_require = match raw.unknown_tools.as_deref() {
            None | Some("allow") => false,
            Some("require") => true,
            Some(other) => {
                return Err(invalid(
                    format!("{path}.unknownTools"),
                    format!("{other:?} must be \"allow\" or \"require\""),
                ))
            }
        };
        let tools = raw
            .tools
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, t)| ToolMatch::compile(t, &format!("{path}.tools[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let approver_scopes = raw.approver_scopes.unwrap_or_default();
        for (i, s) in approver_scopes.iter().enumerate() {
            if s.is_empty() || s.contains(char::is_whitespace) {
                return Err(invalid(
                    format!("{path}.approverScopes[{i}]"),
                    format!("{s:?} is not a scope (non-empty, no spaces)"),
                ));
            }
        }
        Ok(Approval {
            require,
            hints: raw.hints.unwrap_or(true),
            tools,
            approver_scopes,
            unknown_require,
        })
    }

    /// Whether decisions depend on the registry's hints (the glue can skip the lookup
    /// otherwise).
    pub fn uses_hints(&self) -> bool {
        self.require && (self.hints || self.unknown_require)
    }

    /// Whether a `tools/call` may go ahead. `hints`: the registry's hints for the tool
    /// (`pinning::ToolState::hints`), `None` when no list with it was seen; `approve_flag`:
    /// [`approve_flag`] of the body; `scopes`: the caller's token scopes.
    pub fn decide(
        &self,
        server: Option<&str>,
        tool: &str,
        hints: Option<ToolHints>,
        approve_flag: bool,
        scopes: &[String],
    ) -> ApprovalDecision {
        if !self.require {
            return ApprovalDecision::NotRequired;
        }
        let reason = if self.tools.iter().any(|m| m.matches(server, tool)) {
            Reason::Configured
        } else {
            match hints {
                Some(h) if self.hints && h.destructive => Reason::DestructiveHint,
                None if self.unknown_require => Reason::UnknownTool,
                _ => return ApprovalDecision::NotRequired,
            }
        };
        let missing = if !approve_flag {
            Missing::Flag
        } else if !self.approver_scopes.is_empty()
            && !self.approver_scopes.iter().any(|s| scopes.contains(s))
        {
            Missing::Scope
        } else {
            return ApprovalDecision::Approved;
        };
        ApprovalDecision::Required { reason, missing }
    }

    /// The JSON-RPC error for a refused call: `id` raw JSON, `name` the tool name as the client
    /// sent it. The message says what to send; `data.approval.retryWith` is the `_meta` to add.
    pub fn error_body(
        &self,
        id: Option<&str>,
        name: &str,
        reason: Reason,
        missing: Missing,
    ) -> String {
        let why = match reason {
            Reason::Configured | Reason::DestructiveHint => "is destructive",
            Reason::UnknownTool => "has not been listed yet",
        };
        let scopes = self
            .approver_scopes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let message = match missing {
            Missing::Flag if scopes.is_empty() => format!(
                "Tool {name:?} {why} and needs explicit approval: once the user has confirmed \
                 it, retry the call with params._meta[\"{APPROVE_META_KEY}\"] set to true"
            ),
            Missing::Flag => format!(
                "Tool {name:?} {why} and needs explicit approval: once the user has confirmed \
                 it, retry the call with params._meta[\"{APPROVE_META_KEY}\"] set to true, as a \
                 caller whose token has the scope {scopes}"
            ),
            Missing::Scope => format!(
                "Tool {name:?} {why} and the approval must come from a caller whose token has \
                 the scope {scopes}; this caller's token has none of them"
            ),
        };
        let mut data = String::with_capacity(200);
        data.push_str("{\"approval\":{\"tool\":");
        push_json_string(&mut data, name);
        data.push_str(",\"reason\":\"");
        data.push_str(reason.as_str());
        data.push_str("\",\"missing\":\"");
        data.push_str(match missing {
            Missing::Flag => "flag",
            Missing::Scope => "scope",
        });
        data.push_str("\",\"retryWith\":{\"_meta\":{\"");
        data.push_str(APPROVE_META_KEY);
        data.push_str("\":true}},\"approverScopes\":[");
        for (i, s) in self.approver_scopes.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            push_json_string(&mut data, s);
        }
        data.push_str("]}}");
        error_body(id, APPROVAL_REQUIRED, &message, Some(&data))
    }
}

#[derive(Deserialize)]
struct FlagEnvelope<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct FlagParams<'a> {
    #[serde(rename = "_meta", borrow, default)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct FlagMeta<'a> {
    #[serde(rename = "io.mcpgw/approve", borrow, default)]
    approve: Option<&'a RawValue>,
}

/// Whether a `tools/call` body carries `params._meta["io.mcpgw/approve"]: true` (exactly the
/// boolean; a body that does not parse approves nothing).
pub fn approve_flag(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    parse_object::<FlagEnvelope<'_>>(text)
        .and_then(|e| parse_object::<FlagParams<'_>>(e.params?.get()))
        .and_then(|p| parse_object::<FlagMeta<'_>>(p.meta?.get()))
        .and_then(|m| m.approve)
        .is_some_and(|v| v.get() == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(json: &str) -> Approval {
        let raw: RawApproval = serde_json::from_str(json).unwrap_or_default();
        match Approval::compile(raw, "approval") {
            Ok(a) => a,
            Err(e) => unreachable!("{json}: {e}"),
        }
    }

    const DESTRUCTIVE: Option<ToolHints> = Some(ToolHints {
        read_only: false,
        destructive: true,
    });
    const PLAIN: Option<ToolHints> = Some(ToolHints {
        read_only: false,
        destructive: false,
    });

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn destructive_tools_need_the_flag_and_an_approver_scope() {
        let a = approval(r#"{"approverScopes":["mcp:approve"]}"#);
        let gh = Some("github");
        for (hints, flag, held, expected) in [
            (PLAIN, false, &[][..], ApprovalDecision::NotRequired),
            (None, false, &[], ApprovalDecision::NotRequired),
            (
                DESTRUCTIVE,
                false,
                &["mcp:approve"],
                ApprovalDecision::Required {
                    reason: Reason::DestructiveHint,
                    missing: Missing::Flag,
                },
            ),
            (
                DESTRUCTIVE,
                true,
                &["mcp:read"],
                ApprovalDecision::Required {
                    reason: Reason::DestructiveHint,
                    missing: Missing::Scope,
                },
            ),
            (
                DESTRUCTIVE,
                true,
                &["mcp:read", "mcp:approve"],
                ApprovalDecision::Approved,
            ),
        ] {
            assert_eq!(
                a.decide(gh, "delete_repo", hints, flag, &scopes(held)),
                expected,
                "{hints:?} {flag} {held:?}"
            );
        }
    }

    #[test]
    fn configured_tools_need_approval_whatever_they_declare() {
        let a = approval(r#"{"tools":[{"server":"github","tool":"delete_*"}],"hints":false}"#);
        let required = |server, tool, hints| {
            matches!(
                a.decide(server, tool, hints, false, &[]),
                ApprovalDecision::Required {
                    reason: Reason::Configured,
                    ..
                }
            )
        };
        assert!(required(Some("github"), "delete_repo", PLAIN));
        assert!(required(Some("github"), "delete_repo", None));
        assert!(!required(Some("gitlab"), "delete_repo", PLAIN));
        assert!(
            !required(Some("github"), "create_repo", DESTRUCTIVE),
            "hints off"
        );
        assert_eq!(
            a.decide(Some("github"), "delete_repo", PLAIN, true, &[]),
            ApprovalDecision::Approved
        );
    }

    #[test]
    fn unknown_tools_are_allowed_unless_configured_otherwise() {
        let allow = approval("{}");
        assert_eq!(
            allow.decide(None, "t", None, false, &[]),
            ApprovalDecision::NotRequired
        );
        let strict = approval(r#"{"unknownTools":"require"}"#);
        assert_eq!(
            strict.decide(None, "t", None, false, &[]),
            ApprovalDecision::Required {
                reason: Reason::UnknownTool,
                missing: Missing::Flag
            }
        );
        assert_eq!(
            strict.decide(None, "t", PLAIN, false, &[]),
            ApprovalDecision::NotRequired
        );
    }

    #[test]
    fn off_requires_nothing() {
        let a = approval(r#"{"destructive":"off","tools":[{"tool":"*"}]}"#);
        assert_eq!(
            a.decide(None, "x", DESTRUCTIVE, false, &[]),
            ApprovalDecision::NotRequired
        );
        assert!(!a.uses_hints());
    }

    #[test]
    fn the_flag_must_be_exactly_true() {
        for (meta, expected) in [
            (r#"{"io.mcpgw/approve":true}"#, true),
            (r#"{"io.mcpgw/approve":"true"}"#, false),
            (r#"{"io.mcpgw/approve":1}"#, false),
            (r#"{"io.mcpgw/approve":false}"#, false),
            (r#"{"progressToken":1}"#, false),
            (r#"null"#, false),
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{}},"_meta":{meta}}}}}"#
            );
            assert_eq!(approve_flag(body.as_bytes()), expected, "{meta}");
        }
        assert!(!approve_flag(b"{"));
        assert!(!approve_flag(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#
        ));
        // Structs must not be read from arrays by position.
        assert!(!approve_flag(br#"[{"_meta":{"io.mcpgw/approve":true}}]"#));
        assert!(!approve_flag(br#"{"params":[{"io.mcpgw/approve":true}]}"#));
        assert!(!approve_flag(br#"{"params":{"_meta":[true]}}"#));
    }

    #[test]
    fn the_error_says_exactly_what_to_send() {
        let a = approval(r#"{"approverScopes":["mcp:approve"]}"#);
        let body = a.error_body(
            Some("9"),
            "github__delete_repo",
            Reason::DestructiveHint,
            Missing::Flag,
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["id"], 9);
        assert_eq!(v["error"]["code"], APPROVAL_REQUIRED);
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        for needle in [
            "github__delete_repo",
            "io.mcpgw/approve",
            "mcp:approve",
            "set to true",
        ] {
            assert!(msg.contains(needle), "{needle} in {msg}");
        }
        let d = &v["error"]["data"]["approval"];
        assert_eq!(d["reason"], "destructiveHint");
        assert_eq!(d["missing"], "flag");
        assert_eq!(d["retryWith"]["_meta"]["io.mcpgw/approve"], true);
        assert_eq!(d["approverScopes"][0], "mcp:approve");

        let body = a.error_body(None, "t", Reason::Configured, Missing::Scope);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(v["id"].is_null());
        assert!(v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("none of them"));

        let open = approval("{}");
        let v: serde_json::Value = serde_json::from_str(&open.error_body(
            Some("1"),
            "t",
            Reason::Configured,
            Missing::Flag,
        ))
        .unwrap_or_default();
        assert!(!v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scope"));
    }

    #[test]
    fn config_errors_name_the_field() {
        for (json, field) in [
            (r#"{"destructive":"ask"}"#, "approval.destructive"),
            (r#"{"unknownTools":"deny"}"#, "approval.unknownTools"),
            (
                r#"{"tools":[{"tool":"a"},{"tool":""}]}"#,
                "approval.tools[1].tool",
            ),
            (
                r#"{"approverScopes":["a b"]}"#,
                "approval.approverScopes[0]",
            ),
        ] {
            let raw: RawApproval = serde_json::from_str(json).unwrap_or_default();
            let e = Approval::compile(raw, "approval")
                .err()
                .map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.starts_with(field)),
                "{json}: {e:?}"
            );
        }
        assert!(serde_json::from_str::<RawApproval>(r#"{"scopes":[]}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = approve_flag(&body);
        }
    }
}

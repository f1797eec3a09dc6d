//! Configuration of redaction and injection screening, compiled once into a [`GuardSet`] whose
//! [`GuardSet::for_call`] the glue asks per message.

use serde::Deserialize;

use super::{Action, CallGuard, Category, Detector, DetectorSet};
use crate::federation::glob::Glob;

/// PII and secret redaction, as users write it (`guardrails.redact`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRedact {
    /// What to look for: kind ids (`email`, `phone`, `card`, `iban`, `ssn`, `aws-key`,
    /// `github-token`, `jwt`, `private-key`, `bearer-token`, …) or the groups `pii` and
    /// `secrets`. Default: all of them.
    pub kinds: Option<Vec<String>>,
    /// Which traffic: `results` (tool results) and/or `arguments` (tool call arguments).
    /// Default `["results"]`.
    pub r#in: Option<Vec<String>>,
    /// `redact` (default): replace matches with `[REDACTED:<kind>]`; `flag`: count only;
    /// `block`: redact and refuse the message with a JSON-RPC error.
    pub action: Option<String>,
    /// Tools redaction applies to (globs over server names and the servers' own tool names).
    /// Default: every tool.
    pub tools: Option<Vec<RawToolScope>>,
    /// Per-tool actions, first match wins; `off` exempts a tool.
    pub overrides: Option<Vec<RawOverride>>,
}

/// Prompt-injection screening, as users write it (`guardrails.injection`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawInjection {
    /// `flag` (default): count and report; `redact`: replace the matched text (hidden characters
    /// are removed); `block`: refuse the message (a result) or the tool (a description).
    pub action: Option<String>,
    /// Rule ids to run (`override`, `role`, `new-instructions`, `prompt-leak`, `conceal`,
    /// `tag-directive`, `hidden-tags`, `invisible`, `bidi`, `exfil-url`, `exfil-host`).
    /// Default: all.
    pub rules: Option<Vec<String>>,
    /// Per-tool actions, first match wins; `off` exempts a tool.
    pub overrides: Option<Vec<RawOverride>>,
    /// Screen tool descriptions in `tools/list` results. Default true.
    pub scan_descriptions: Option<bool>,
    /// Screen tool call results. Default true.
    pub scan_results: Option<bool>,
}

/// A set of tools: globs (`*`, `?`) over the server name and the server's own tool name.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawToolScope {
    /// Server name glob. Default `*`.
    pub server: Option<String>,
    /// Tool name glob (the name on the server, without the gateway's prefix). Default `*`.
    pub tool: Option<String>,
}

/// An action for a set of tools.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawOverride {
    /// Server name glob. Default `*`.
    pub server: Option<String>,
    /// Tool name glob. Default `*`.
    pub tool: Option<String>,
    /// `flag`, `redact`, `block`, or `off`.
    pub action: String,
}

/// A guardrail setting that does not compile; the message starts with the field's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardConfigError {
    #[error("{field}: unknown kind {value:?}; known: pii, secrets, {known}")]
    UnknownKind {
        field: String,
        value: String,
        known: String,
    },
    #[error("{field}: unknown rule {value:?}; known: {known}")]
    UnknownRule {
        field: String,
        value: String,
        known: String,
    },
    #[error("{field}: unknown action {value:?}; known: {known}")]
    UnknownAction {
        field: String,
        value: String,
        known: &'static str,
    },
    #[error("{field}: unknown traffic {value:?}; known: results, arguments")]
    UnknownTraffic { field: String, value: String },
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

/// Which part of the traffic a guard is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// A `tools/call` result (JSON body or SSE stream).
    Result,
    /// A `tools/call` request's arguments (the request body).
    Arguments,
    /// One tool's description in a `tools/list` result.
    Description,
}

#[derive(Debug, Clone)]
struct Scope {
    server: Glob,
    tool: Glob,
}

impl Scope {
    fn matches(&self, server: &str, tool: &str) -> bool {
        self.server.matches(server) && self.tool.matches(tool)
    }
}

#[derive(Debug, Clone)]
struct Policy {
    detectors: DetectorSet,
    action: Action,
    /// `None`: every tool.
    tools: Option<Vec<Scope>>,
    /// First match wins; `None` action: off.
    overrides: Vec<(Scope, Option<Action>)>,
}

impl Policy {
    fn action_for(&self, server: &str, tool: &str) -> Option<Action> {
        if let Some(tools) = &self.tools {
            if !tools.iter().any(|s| s.matches(server, tool)) {
                return None;
            }
        }
        match self.overrides.iter().find(|(s, _)| s.matches(server, tool)) {
            Some((_, action)) => *action,
            None => Some(self.action),
        }
    }
}

/// Compiled redaction and injection settings.
#[derive(Debug, Clone, Default)]
pub struct GuardSet {
    redact: Option<Policy>,
    redact_results: bool,
    redact_arguments: bool,
    injection: Option<Policy>,
    scan_descriptions: bool,
    scan_results: bool,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn ids(set: DetectorSet) -> String {
    set.iter().map(Detector::id).collect::<Vec<_>>().join(", ")
}

fn parse_action(
    value: &str,
    field: String,
    allow_off: bool,
) -> Result<Option<Action>, GuardConfigError> {
    match value {
        "flag" => Ok(Some(Action::Flag)),
        "redact" => Ok(Some(Action::Redact)),
        "block" => Ok(Some(Action::Block)),
        "off" if allow_off => Ok(None),
        _ => Err(GuardConfigError::UnknownAction {
            field,
            value: value.to_owned(),
            known: if allow_off {
                "flag, redact, block, off"
            } else {
                "flag, redact, block"
            },
        }),
    }
}

fn glob(value: Option<&str>, field: String) -> Result<Glob, GuardConfigError> {
    Glob::parse(value.unwrap_or("*"))
        .map_err(|problem| GuardConfigError::Invalid { field, problem })
}

fn scopes(list: &[RawToolScope], field: &str) -> Result<Vec<Scope>, GuardConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(Scope {
                server: glob(s.server.as_deref(), format!("{field}[{i}].server"))?,
                tool: glob(s.tool.as_deref(), format!("{field}[{i}].tool"))?,
            })
        })
        .collect()
}

fn overrides(
    list: &[RawOverride],
    field: &str,
) -> Result<Vec<(Scope, Option<Action>)>, GuardConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, o)| {
            let scope = Scope {
                server: glob(o.server.as_deref(), format!("{field}[{i}].server"))?,
                tool: glob(o.tool.as_deref(), format!("{field}[{i}].tool"))?,
            };
            let action = parse_action(&o.action, format!("{field}[{i}].action"), true)?;
            Ok((scope, action))
        })
        .collect()
}

impl GuardSet {
    /// Compiles the `redact` and `injection` settings; `path` is where they sit in the plugin
    /// config (e.g. `guardrails`), used to name fields in errors. Absent parts are off.
    pub fn compile(
        redact: Option<&RawRedact>,
        injection: Option<&RawInjection>,
        path: &str,
    ) -> Result<GuardSet, GuardConfigError> {
        let mut set = GuardSet::default();
        if let Some(raw) = redact {
            let at = join(path, "redact");
            let redactable = DetectorSet::PII.union(DetectorSet::SECRETS);
            let detectors = match &raw.kinds {
                None => redactable,
                Some(kinds) => {
                    let mut d = DetectorSet::EMPTY;
                    for (i, k) in kinds.iter().enumerate() {
                        d = d.union(match k.as_str() {
                            "pii" => DetectorSet::PII,
                            "secrets" => DetectorSet::SECRETS,
                            _ => match Detector::from_id(k) {
                                Some(det) if det.category() != Category::Injection => {
                                    DetectorSet::of(det)
                                }
                                _ => {
                                    return Err(GuardConfigError::UnknownKind {
                                        field: format!("{at}.kinds[{i}]"),
                                        value: k.clone(),
                                        known: ids(redactable),
                                    })
                                }
                            },
                        });
                    }
                    if d.is_empty() {
                        return Err(GuardConfigError::Invalid {
                            field: format!("{at}.kinds"),
                            problem:
                                "must list at least one kind (omit `redact` to turn redaction off)"
                                    .into(),
                        });
                    }
                    d
                }
            };
            let traffic = raw.r#in.clone().unwrap_or_else(|| vec!["results".into()]);
            for (i, t) in traffic.iter().enumerate() {
                match t.as_str() {
                    "results" => set.redact_results = true,
                    "arguments" => set.redact_arguments = true,
                    _ => {
                        return Err(GuardConfigError::UnknownTraffic {
                            field: format!("{at}.in[{i}]"),
                            value: t.clone(),
                        })
                    }
                }
            }
            let action = match &raw.action {
                None => Action::Redact,
                Some(a) => parse_action(a, format!("{at}.action"), false)?.unwrap_or_default(),
            };
            set.redact = Some(Policy {
                detectors,
                action,
                tools: raw
                    .tools
                    .as_deref()
                    .map(|t| scopes(t, &format!("{at}.tools")))
                    .transpose()?,
                overrides: overrides(
                    raw.overrides.as_deref().unwrap_or_default(),
                    &format!("{at}.overrides"),
                )?,
            });
        }
        if let Some(raw) = injection {
            let at = join(path, "injection");
            let detectors = match &raw.rules {
                None => DetectorSet::INJECTION,
                Some(rules) => {
                    let mut d = DetectorSet::EMPTY;
                    for (i, r) in rules.iter().enumerate() {
                        match Detector::from_id(r) {
                            Some(det) if det.category() == Category::Injection => d = d.with(det),
                            _ => {
                                return Err(GuardConfigError::UnknownRule {
                                    field: format!("{at}.rules[{i}]"),
                                    value: r.clone(),
                                    known: ids(DetectorSet::INJECTION),
                                })
                            }
                        }
                    }
                    if d.is_empty() {
                        return Err(GuardConfigError::Invalid {
                            field: format!("{at}.rules"),
                            problem: "must list at least one rule (omit `injection` to turn screening off)".into(),
                        });
                    }
                    d
                }
            };
            let action = match &raw.action {
                None => Action::Flag,
                Some(a) => parse_action(a, format!("{at}.action"), false)?.unwrap_or_default(),
            };
            set.injection = Some(Policy {
                detectors,
                action,
                tools: None,
                overrides: overrides(
                    raw.overrides.as_deref().unwrap_or_default(),
                    &format!("{at}.overrides"),
                )?,
            });
            set.scan_descriptions = raw.scan_descriptions.unwrap_or(true);
            set.scan_results = raw.scan_results.unwrap_or(true);
        }
        Ok(set)
    }

    /// Whether any guardrail is configured at all.
    pub fn is_empty(&self) -> bool {
        self.redact.is_none() && self.injection.is_none()
    }

    /// The guard for one message of `traffic` to or from `tool` on `server` (the server's own
    /// tool name, not the prefixed one). `None` when nothing applies: the glue skips scanning.
    pub fn for_call(&self, server: &str, tool: &str, traffic: Traffic) -> Option<CallGuard> {
        let mut guard = CallGuard::default();
        let redact = match traffic {
            Traffic::Result => self.redact_results,
            Traffic::Arguments => self.redact_arguments,
            Traffic::Description => false,
        };
        if let (true, Some(p)) = (redact, &self.redact) {
            if let Some(action) = p.action_for(server, tool) {
                guard = guard.with(p.detectors, action);
            }
        }
        let screen = match traffic {
            Traffic::Result => self.scan_results,
            Traffic::Description => self.scan_descriptions,
            Traffic::Arguments => false,
        };
        if let (true, Some(p)) = (screen, &self.injection) {
            if let Some(action) = p.action_for(server, tool) {
                guard = guard.with(p.detectors, action);
            }
        }
        (!guard.is_empty()).then_some(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<GuardSet, GuardConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            redact: Option<RawRedact>,
            injection: Option<RawInjection>,
        }
        let raw: Raw = serde_json::from_str(json).unwrap();
        GuardSet::compile(raw.redact.as_ref(), raw.injection.as_ref(), "guardrails")
    }

    #[test]
    fn defaults_redact_all_kinds_in_results_and_flag_injection_everywhere() {
        let g = compile(r#"{"redact": {}, "injection": {}}"#).unwrap();
        let r = g.for_call("s", "t", Traffic::Result).unwrap();
        assert_eq!(r.action(Detector::Email), Some(Action::Redact));
        assert_eq!(r.action(Detector::Jwt), Some(Action::Redact));
        assert_eq!(r.action(Detector::Override), Some(Action::Flag));
        assert!(g.for_call("s", "t", Traffic::Arguments).is_none());
        let d = g.for_call("s", "t", Traffic::Description).unwrap();
        assert_eq!(d.action(Detector::Email), None);
        assert_eq!(d.action(Detector::HiddenTags), Some(Action::Flag));
    }

    #[test]
    fn overrides_pick_the_first_matching_tool_and_off_exempts_it() {
        let g = compile(
            r#"{"injection": {"action": "flag", "rules": ["override", "hidden-tags"],
                "overrides": [{"server": "github", "tool": "get_*", "action": "block"},
                              {"server": "github", "action": "redact"},
                              {"server": "trusted", "action": "off"}]},
                "redact": {"kinds": ["email", "secrets"], "in": ["arguments"],
                           "tools": [{"server": "crm"}]}}"#,
        )
        .unwrap();
        let a = |s: &str, t: &str, tr| {
            g.for_call(s, t, tr)
                .and_then(|g| g.action(Detector::Override))
        };
        assert_eq!(
            a("github", "get_issue", Traffic::Result),
            Some(Action::Block)
        );
        assert_eq!(
            a("github", "create_issue", Traffic::Result),
            Some(Action::Redact)
        );
        assert_eq!(a("other", "x", Traffic::Result), Some(Action::Flag));
        assert_eq!(a("trusted", "x", Traffic::Result), None);
        let args = g.for_call("crm", "lookup", Traffic::Arguments).unwrap();
        assert_eq!(args.action(Detector::Email), Some(Action::Redact));
        assert_eq!(args.action(Detector::AwsKey), Some(Action::Redact));
        assert_eq!(args.action(Detector::Phone), None);
        assert!(g.for_call("other", "lookup", Traffic::Arguments).is_none());
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let cases = [
            (
                r#"{"redact": {"kinds": ["email", "foo"]}}"#,
                "guardrails.redact.kinds[1]: unknown kind \"foo\"",
            ),
            (
                r#"{"redact": {"kinds": ["override"]}}"#,
                "guardrails.redact.kinds[0]: unknown kind \"override\"",
            ),
            (
                r#"{"redact": {"in": ["responses"]}}"#,
                "guardrails.redact.in[0]: unknown traffic",
            ),
            (
                r#"{"redact": {"action": "off"}}"#,
                "guardrails.redact.action: unknown action \"off\"",
            ),
            (
                r#"{"injection": {"rules": ["email"]}}"#,
                "guardrails.injection.rules[0]: unknown rule",
            ),
            (
                r#"{"injection": {"overrides": [{"tool": "", "action": "block"}]}}"#,
                "guardrails.injection.overrides[0].tool: an empty glob",
            ),
            (
                r#"{"injection": {"overrides": [{"action": "deny"}]}}"#,
                "guardrails.injection.overrides[0].action: unknown action",
            ),
            (
                r#"{"injection": {"rules": []}}"#,
                "guardrails.injection.rules: must list at least one rule",
            ),
        ];
        for (json, want) in cases {
            let err = compile(json).unwrap_err().to_string();
            assert!(err.starts_with(want), "{json}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<RawRedact>(r#"{"kind": ["email"]}"#).is_err());
        assert!(serde_json::from_str::<RawInjection>(r#"{"scanDescription": true}"#).is_err());
    }
}

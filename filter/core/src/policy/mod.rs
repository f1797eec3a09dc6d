//! Per-tool authorization: Rego policies, compiled once per configure, decide each MCP call.
//!
//! The policy sees the input document of [`input`] (who, which method, which server and tool,
//! the arguments, the time) and answers through rules of one package (`data.mcp` by default):
//! `allow` (only `true` allows), `reason` (a machine-readable word for the JSON-RPC error),
//! `redact` (argument paths the audit log must hide), or all three at once as a `decision`
//! object. The contract is documented for policy authors in `policies/README.md`.
//!
//! Fail closed everywhere: an evaluation error, an undefined result, or anything but the boolean
//! `true` denies. Configuration errors name the module and line, so Envoy's log says what to fix.
//!
//! Evaluation uses regorus's interpreter with `eval_rule` (its fast path). The compiled engine is
//! kept once per configure; evaluations reuse one scratch copy of it (regorus resets its
//! evaluation state on every call) and fall back to a fresh clone when the scratch copy is busy or
//! was left by an error, so no state can leak between requests.

mod cache;
mod check;
mod input;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cache;

use std::cell::RefCell;

use regorus::{Engine, Value};
use serde::Deserialize;

pub use cache::{CacheCounts, CacheUse};
pub use input::{params_arguments, Input, Request, Subject, Target};

use cache::{DecisionCache, Reads};

use input::{named, opt_str, Keys};

/// Package whose rules decide, when the config names none.
pub const DEFAULT_PACKAGE: &str = "data.mcp";

/// Methods a policy decides on, when the config names none: the calls that run something on an
/// upstream. Lists are filtered separately ([`Policy::visible`]); `initialize`, `ping` and
/// notifications are left to authentication.
pub const DEFAULT_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];

/// Machine-readable reasons the gateway itself gives when the policy could not decide.
pub mod reason {
    /// Evaluating the policy failed (a runtime error, or a result of the wrong type).
    pub const POLICY_ERROR: &str = "policy_error";
    /// The policy's decision rule is undefined for this input.
    pub const NO_DECISION: &str = "no_decision";
}

/// The `policy` section of the plugin configuration, as users write it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPolicyConfig {
    /// Rego modules (Rego v1 syntax), loaded in this order. At least one. The glue may fill
    /// `rego` from a file it read through an Envoy DataSource.
    pub modules: Vec<RawModule>,
    /// Package whose rules decide (`allow`, `reason`, `redact`, `decision`, `visible_tools`, ...),
    /// as `data.a.b` or `a.b`. Default `data.mcp`.
    pub package: Option<String>,
    /// JSON-RPC methods the policy decides on; `"*"` means every request. Default
    /// `["tools/call", "prompts/get", "resources/read"]`.
    pub methods: Option<Vec<String>>,
    /// Token claims copied into `input.subject.claims` (e.g. `["roles", "tenant"]`). Default none:
    /// each copied claim costs time on every evaluation.
    pub claims: Option<Vec<String>>,
    /// Request headers copied into `input.headers`, matched case-insensitively and keyed
    /// lower-case. Default none.
    pub headers: Option<Vec<String>>,
    /// A JSON object available to the policy as `data` (e.g. a tenant → servers table), merged
    /// with the modules' rules. Default empty.
    pub data: Option<serde_json::Value>,
    /// Decisions remembered per worker, keyed by the values of the `input` members the policy
    /// reads (found when it is compiled), so a repeated call skips evaluation. `0` turns the
    /// cache off. Default 1024. Policies calling `rand.intn` are never cached.
    pub cache_entries: Option<u32>,
}

/// One Rego module.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawModule {
    /// A name for error messages, e.g. `rbac.rego`. Unique among the modules.
    pub name: String,
    /// The module's Rego source.
    pub rego: String,
}

/// A policy configuration error; the message starts with the config path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A module does not parse; `message` is regorus's, with the line and column.
    #[error("policy.modules[{index}] ({name}): {message}")]
    Module {
        index: usize,
        name: String,
        message: String,
    },
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

impl PolicyError {
    /// The config path the error is about (`policy.modules[0] (rbac.rego)`, `policy.package`).
    pub fn field(&self) -> String {
        match self {
            PolicyError::Module { index, name, .. } => format!("policy.modules[{index}] ({name})"),
            PolicyError::Invalid { field, .. } => field.clone(),
        }
    }
}

impl From<PolicyError> for crate::config::ConfigError {
    fn from(e: PolicyError) -> Self {
        let field = e.field();
        let problem = match e {
            PolicyError::Module { message, .. } => message,
            PolicyError::Invalid { problem, .. } => problem,
        };
        crate::config::ConfigError::Invalid { field, problem }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// What the policy decided about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// Machine-readable reason for a denial: the policy's `reason`, or one of [`reason`].
    pub reason: Option<String>,
    /// Argument paths (`password`, `auth.token`) the audit log must redact. Applies whether or
    /// not the call is allowed.
    pub redact: Vec<String>,
    /// What went wrong, for the log, when the policy failed (`reason` is then `policy_error`).
    pub error: Option<String>,
}

impl Decision {
    fn deny(reason: &str, error: Option<String>) -> Decision {
        Decision {
            allow: false,
            reason: Some(reason.to_owned()),
            redact: Vec::new(),
            error,
        }
    }

    fn failed(error: String) -> Decision {
        Decision::deny(reason::POLICY_ERROR, Some(error))
    }
}

/// Which kind of list is being filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    /// The method a per-item check pretends to be.
    pub fn call_method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/call",
            ListKind::Prompts => "prompts/get",
            ListKind::Resources => "resources/read",
        }
    }
}

/// One entry of a tools/prompts/resources list: the name the client sees (the URI for a
/// resource) and the upstream server it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListItem<'a> {
    pub name: &'a str,
    pub server: Option<&'a str>,
}

/// Which list entries the caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visibility {
    /// One flag per item, in order.
    pub visible: Vec<bool>,
    /// The first evaluation error, for the log (failed items are hidden).
    pub error: Option<String>,
}

/// Full paths of the rules the policy defines; `None` when it does not define one.
#[derive(Debug, Clone, Default)]
struct Rules {
    decision: Option<String>,
    allow: Option<String>,
    reason: Option<String>,
    redact: Option<String>,
    visible_tools: Option<String>,
    visible_prompts: Option<String>,
    visible_resources: Option<String>,
}

impl Rules {
    fn visible(&self, kind: ListKind) -> Option<&str> {
        match kind {
            ListKind::Tools => self.visible_tools.as_deref(),
            ListKind::Prompts => self.visible_prompts.as_deref(),
            ListKind::Resources => self.visible_resources.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
enum Methods {
    All,
    Listed(Vec<String>),
}

/// A compiled policy, ready to decide.
#[derive(Debug)]
pub struct Policy {
    /// Compiled and prepared once; never evaluated directly, only cloned.
    base: Engine,
    /// A copy reused across evaluations. Taken out while in use, so a re-entrant call (there is
    /// none on a single wasm thread, but nothing should panic if there were) clones `base`.
    scratch: RefCell<Option<Engine>>,
    rules: Rules,
    methods: Methods,
    keys: Keys,
    headers: Vec<String>,
    /// `None` when turned off or when the policy is not a function of its input.
    cache: Option<DecisionCache>,
}

impl Clone for Policy {
    fn clone(&self) -> Self {
        Policy {
            base: self.base.clone(),
            scratch: RefCell::new(None),
            rules: self.rules.clone(),
            methods: self.methods.clone(),
            keys: self.keys.clone(),
            headers: self.headers.clone(),
            cache: self.cache.clone(),
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn package_path(given: Option<String>) -> Result<String, PolicyError> {
    let Some(p) = given else {
        return Ok(DEFAULT_PACKAGE.to_owned());
    };
    let full = if p == "data" || p.starts_with("data.") {
        p
    } else {
        format!("data.{p}")
    };
    let mut parts = full.split('.').skip(1).peekable();
    if parts.peek().is_none() || !parts.all(is_ident) {
        return Err(invalid(
            "policy.package",
            format!("{full:?} must be a dotted Rego package path such as \"data.mcp\""),
        ));
    }
    Ok(full)
}

fn names(
    field: &str,
    given: Option<Vec<String>>,
    valid: fn(&str) -> bool,
) -> Result<Vec<String>, PolicyError> {
    let list = given.unwrap_or_default();
    for (i, n) in list.iter().enumerate() {
        if !valid(n) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("{n:?} is not valid"),
            ));
        }
    }
    Ok(list)
}

fn header_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A regorus error on one line: `file:line:col: message`. regorus prints the location, a source
/// excerpt and the message on separate lines; Envoy's log wants one.
fn error_text<E: std::fmt::Display>(e: &E) -> String {
    let full = format!("{e:#}");
    let location = full
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "));
    let message = full.lines().find_map(|l| l.strip_prefix("error: "));
    match (location, message) {
        (Some(l), Some(m)) => format!("{}: {}", l.trim(), m.trim()),
        _ => full.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// An error about the modules as a whole, attributed to the module its location names.
fn located(modules: &[RawModule], message: String) -> PolicyError {
    let found = modules.iter().enumerate().find(|(_, m)| {
        message
            .strip_prefix(m.name.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
    });
    match found {
        Some((index, m)) => PolicyError::Module {
            index,
            name: m.name.clone(),
            message,
        },
        None => invalid("policy.modules", message),
    }
}

fn is_missing_rule<E: std::fmt::Display>(e: &E) -> bool {
    format!("{e:#}").contains("not a valid rule path")
}

impl Policy {
    /// Compiles the `policy` section: parses every module, merges `data`, prepares the engine
    /// and finds which of the decision rules the package defines.
    pub fn compile(raw: RawPolicyConfig) -> Result<Policy, PolicyError> {
        if raw.modules.is_empty() {
            return Err(invalid("policy.modules", "must list at least one module"));
        }
        let package = package_path(raw.package)?;
        let methods = match raw.methods {
            None => Methods::Listed(DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect()),
            Some(list) if list.is_empty() => {
                return Err(invalid("policy.methods", "must list at least one method"))
            }
            Some(list) if list.iter().any(|m| m == "*") => Methods::All,
            Some(list) => Methods::Listed(names("policy.methods", Some(list), |m| !m.is_empty())?),
        };
        let claims = names("policy.claims", raw.claims, |c| !c.is_empty())?;
        let headers = names("policy.headers", raw.headers, header_token)?;

        let mut engine = Engine::new();
        for (index, m) in raw.modules.iter().enumerate() {
            let module_err = |message: String| PolicyError::Module {
                index,
                name: m.name.clone(),
                message,
            };
            if m.name.trim().is_empty() {
                return Err(invalid(
                    format!("policy.modules[{index}].name"),
                    "must not be empty",
                ));
            }
            if raw.modules.iter().take(index).any(|o| o.name == m.name) {
                return Err(invalid(
                    format!("policy.modules[{index}].name"),
                    format!("{:?} is used by an earlier module", m.name),
                ));
            }
            engine
                .add_policy(m.name.clone(), m.rego.clone())
                .map_err(|e| module_err(error_text(&e)))?;
        }
        let analysis = check::analyse(engine.get_modules());
        if let Some(call) = analysis.unknown.first() {
            let index = raw
                .modules
                .iter()
                .position(|m| m.name == call.module)
                .unwrap_or(0);
            return Err(PolicyError::Module {
                index,
                name: call.module.clone(),
                message: format!(
                    "{}:{}:{}: unknown function `{}`: not a builtin of this gateway's Rego engine \
                     (it leaves out the regex, glob, time, net, uuid, semver, base64, crypto and \
                     http builtins; see policies/README.md) nor defined by the policy modules",
                    call.module, call.line, call.col, call.function
                ),
            });
        }
        if let Some(data) = raw.data {
            if !data.is_object() {
                return Err(invalid("policy.data", "must be a JSON object"));
            }
            let value =
                Value::deserialize(&data).map_err(|e| invalid("policy.data", e.to_string()))?;
            engine
                .add_data(value)
                .map_err(|e| invalid("policy.data", error_text(&e)))?;
        }

        // Preparing the engine (rule analysis, imports) happens on its first use; do it now so a
        // broken policy fails `on_configure`, not the first request. Compiling for an entry point
        // prepares, and fails with "not a valid rule path" when the package lacks that rule
        // (default-only rules included, which the compiled rule list leaves out).
        let mut rule = |name: &str| -> Result<Option<String>, PolicyError> {
            let path = format!("{package}.{name}");
            match engine.compile_with_entrypoint(&path.as_str().into()) {
                Ok(_) => Ok(Some(path)),
                Err(e) if is_missing_rule(&e) => Ok(None),
                Err(e) => Err(located(&raw.modules, error_text(&e))),
            }
        };
        let rules = Rules {
            decision: rule("decision")?,
            allow: rule("allow")?,
            reason: rule("reason")?,
            redact: rule("redact")?,
            visible_tools: rule("visible_tools")?,
            visible_prompts: rule("visible_prompts")?,
            visible_resources: rule("visible_resources")?,
        };
        if rules.decision.is_none() && rules.allow.is_none() {
            return Err(invalid(
                "policy.package",
                format!("{package} defines neither `allow` nor `decision`"),
            ));
        }
        let entries = raw
            .cache_entries
            .map_or(cache::DEFAULT_ENTRIES, |n| n as usize);
        let cache = (entries > 0 && !analysis.nondeterministic).then(|| {
            DecisionCache::new(
                Reads::of(analysis.whole_input, &analysis.input_fields),
                entries,
            )
        });
        Ok(Policy {
            scratch: RefCell::new(Some(engine.clone())),
            base: engine,
            rules,
            methods,
            keys: Keys::new(&claims, &headers),
            headers,
            cache,
        })
    }

    /// Whether requests with this JSON-RPC method go through the policy.
    pub fn applies_to(&self, method: &str) -> bool {
        match &self.methods {
            Methods::All => true,
            Methods::Listed(list) => list.iter().any(|m| m == method),
        }
    }

    /// The request headers the input document carries, so the glue can fetch just these.
    pub fn header_names(&self) -> &[String] {
        &self.headers
    }

    /// Builds the input document for one request.
    pub fn input(&self, req: &Request<'_>) -> Input {
        input::build(&self.keys, req)
    }

    /// Builds the input and decides (or answers from the decision cache).
    pub fn decide_request(&self, req: &Request<'_>) -> Decision {
        self.decide_cached(req).0
    }

    /// [`Policy::decide_request`], saying whether the cache answered.
    pub fn decide_cached(&self, req: &Request<'_>) -> (Decision, CacheUse) {
        match &self.cache {
            Some(cache) => cache.decide(&self.keys, req, || self.decide(&self.input(req))),
            None => (self.decide(&self.input(req)), CacheUse::Bypass),
        }
    }

    /// Decision cache hits and misses of this copy of the policy (zero when it has no cache).
    pub fn cache_counts(&self) -> CacheCounts {
        self.cache
            .as_ref()
            .map(DecisionCache::counts)
            .unwrap_or_default()
    }

    #[cfg(test)]
    fn cached_len(&self) -> usize {
        self.cache.as_ref().map_or(0, DecisionCache::len)
    }

    /// Whether decisions are cached at all (on, and the policy is a function of its input).
    pub fn caches_decisions(&self) -> bool {
        self.cache.is_some()
    }

    /// Decides on a request. One rule evaluation when the policy defines `decision` or allows
    /// without defining `redact`; otherwise one more for `reason` (on deny) and for `redact`.
    pub fn decide(&self, input: &Input) -> Decision {
        self.with_engine(|engine| {
            engine.set_input(input.value.clone());
            let d = match &self.rules.decision {
                Some(path) => decision_object(eval(engine, path)),
                None => self.decide_by_rules(engine),
            };
            let healthy = d.error.is_none();
            (d, healthy)
        })
    }

    fn decide_by_rules(&self, engine: &mut Engine) -> Decision {
        let Some(allow_path) = &self.rules.allow else {
            return Decision::deny(reason::NO_DECISION, None);
        };
        let allow = match allow_value(eval(engine, allow_path), allow_path) {
            Ok(a) => a,
            Err(d) => return d,
        };
        let mut d = Decision {
            allow,
            ..Decision::default()
        };
        if !allow {
            if let Some(path) = &self.rules.reason {
                match eval(engine, path) {
                    Ok(Value::String(s)) => d.reason = Some(s.to_string()),
                    Ok(_) => {}
                    Err(e) => return Decision::failed(e),
                }
            }
        }
        if let Some(path) = &self.rules.redact {
            match eval(engine, path).and_then(|v| strings(&v, path)) {
                Ok(list) => d.redact = list,
                // An obligation the gateway cannot honour must not let the call through.
                Err(e) => return Decision::failed(e),
            }
        }
        d
    }

    /// Whether the policy allows this input, without reason or obligations: the per-item check
    /// of list filtering.
    fn allows(&self, engine: &mut Engine, input: Value) -> Result<bool, String> {
        engine.set_input(input);
        if let Some(path) = &self.rules.decision {
            let d = decision_object(eval(engine, path));
            return match d.error {
                Some(e) => Err(e),
                None => Ok(d.allow),
            };
        }
        let Some(path) = &self.rules.allow else {
            return Ok(false);
        };
        match allow_value(eval(engine, path), path) {
            Ok(a) => Ok(a),
            Err(d) => d.error.map_or(Ok(false), Err),
        }
    }

    /// Which items of a list the caller may see. `list_input` is the input of the list request
    /// itself (`method` `tools/list`, ...).
    ///
    /// When the package defines `visible_tools` (`visible_prompts`, `visible_resources`), that
    /// rule is evaluated once with `input.items` set to the whole list (`[{name, server}]`, or
    /// `[{uri, server}]` for resources) and must yield the visible names (URIs): one evaluation
    /// for the whole list. Otherwise each item is checked as if it were called (`method`
    /// `tools/call`, `tool.name`, `server`, `arguments` null): one evaluation per item.
    pub fn visible(
        &self,
        list_input: &Input,
        kind: ListKind,
        items: &[ListItem<'_>],
    ) -> Visibility {
        if items.is_empty() {
            return Visibility::default();
        }
        match self.rules.visible(kind) {
            Some(rule) => self.visible_bulk(list_input, kind, rule, items),
            None => self.visible_each(list_input, kind, items),
        }
    }

    fn item_key(&self, kind: ListKind) -> &Value {
        match kind {
            ListKind::Resources => &self.keys.uri,
            ListKind::Tools | ListKind::Prompts => &self.keys.name,
        }
    }

    fn target_key(&self, kind: ListKind) -> &Value {
        match kind {
            ListKind::Tools => &self.keys.tool,
            ListKind::Prompts => &self.keys.prompt,
            ListKind::Resources => &self.keys.resource,
        }
    }

    fn visible_bulk(
        &self,
        list_input: &Input,
        kind: ListKind,
        rule: &str,
        items: &[ListItem<'_>],
    ) -> Visibility {
        let hidden = |error: String| Visibility {
            visible: vec![false; items.len()],
            error: Some(error),
        };
        let list: Vec<Value> = items
            .iter()
            .map(|it| {
                let mut m = std::collections::BTreeMap::new();
                m.insert(self.item_key(kind).clone(), Value::from(it.name));
                m.insert(self.keys.server.clone(), opt_str(it.server));
                Value::from(m)
            })
            .collect();
        let mut doc = list_input.value.clone();
        match doc.as_object_mut() {
            Ok(obj) => {
                obj.insert(self.keys.items.clone(), Value::from(list));
            }
            Err(e) => return hidden(e.to_string()),
        }
        self.with_engine(|engine| {
            engine.set_input(doc);
            let result = eval(engine, rule).and_then(|v| match v {
                Value::Set(_) | Value::Array(_) | Value::Undefined => Ok(v),
                other => Err(format!(
                    "{rule} must be a set or array of names, got {other}"
                )),
            });
            match result {
                Ok(v) => {
                    let contains = |name: &str| {
                        let key = Value::from(name);
                        match &v {
                            Value::Set(s) => s.contains(&key),
                            Value::Array(a) => a.contains(&key),
                            _ => false,
                        }
                    };
                    let visible = items.iter().map(|it| contains(it.name)).collect();
                    (
                        Visibility {
                            visible,
                            error: None,
                        },
                        true,
                    )
                }
                Err(e) => (hidden(e), false),
            }
        })
    }

    fn visible_each(
        &self,
        list_input: &Input,
        kind: ListKind,
        items: &[ListItem<'_>],
    ) -> Visibility {
        let mut base = list_input.value.clone();
        if let Ok(obj) = base.as_object_mut() {
            obj.insert(self.keys.method.clone(), Value::from(kind.call_method()));
            obj.insert(self.keys.arguments.clone(), Value::Null);
        }
        let target = self.target_key(kind);
        let item_key = self.item_key(kind);
        self.with_engine(|engine| {
            let mut out = Visibility {
                visible: Vec::with_capacity(items.len()),
                error: None,
            };
            for it in items {
                let mut doc = base.clone();
                if let Ok(obj) = doc.as_object_mut() {
                    // Replacing values of existing keys keeps regorus's compact object storage.
                    obj.insert(target.clone(), named(item_key, it.name));
                    obj.insert(self.keys.server.clone(), opt_str(it.server));
                }
                match self.allows(engine, doc) {
                    Ok(a) => out.visible.push(a),
                    Err(e) => {
                        out.visible.push(false);
                        out.error.get_or_insert(e);
                    }
                }
            }
            let healthy = out.error.is_none();
            (out, healthy)
        })
    }

    /// Runs `f` on the scratch engine, or on a fresh clone when it is in use. `f` says whether
    /// the engine is still fit for reuse; after an error it is dropped, in case regorus left
    /// state behind (a `with` modifier half applied, for instance).
    fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> (R, bool)) -> R {
        let taken = self
            .scratch
            .try_borrow_mut()
            .ok()
            .and_then(|mut slot| slot.take());
        let mut engine = taken.unwrap_or_else(|| self.base.clone());
        let (result, healthy) = f(&mut engine);
        if healthy {
            if let Ok(mut slot) = self.scratch.try_borrow_mut() {
                *slot = Some(engine);
            }
        }
        result
    }
}

fn eval(engine: &mut Engine, path: &str) -> Result<Value, String> {
    engine
        .eval_rule(path.to_owned())
        .map_err(|e| format!("{path}: {}", error_text(&e)))
}

/// Reads an `allow` result: `Ok(true)` only for the boolean `true`; a denial decision otherwise.
fn allow_value(v: Result<Value, String>, path: &str) -> Result<bool, Decision> {
    match v {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(Value::Undefined) => Err(Decision::deny(reason::NO_DECISION, None)),
        Ok(other) => Err(Decision::failed(format!(
            "{path} must be a boolean, got {other}"
        ))),
        Err(e) => Err(Decision::failed(e)),
    }
}

/// Reads a `decision` object: `{"allow": bool, "reason"?: string, "redact"?: [string]}`.
fn decision_object(v: Result<Value, String>) -> Decision {
    let obj = match v {
        Ok(Value::Object(o)) => o,
        Ok(Value::Undefined) => return Decision::deny(reason::NO_DECISION, None),
        Ok(other) => return Decision::failed(format!("decision must be an object, got {other}")),
        Err(e) => return Decision::failed(e),
    };
    let field = |name: &str| obj.get(&Value::from(name)).cloned();
    let allow = match field("allow") {
        Some(Value::Bool(b)) => b,
        None | Some(Value::Undefined) => return Decision::deny(reason::NO_DECISION, None),
        Some(other) => {
            return Decision::failed(format!("decision.allow must be a boolean, got {other}"))
        }
    };
    let reason = match field("reason") {
        Some(Value::String(s)) => Some(s.to_string()),
        _ => None,
    };
    let redact = match field("redact") {
        None | Some(Value::Null | Value::Undefined) => Vec::new(),
        Some(v) => match strings(&v, "decision.redact") {
            Ok(list) => list,
            Err(e) => return Decision::failed(e),
        },
    };
    Decision {
        allow,
        reason: if allow { None } else { reason },
        redact,
        error: None,
    }
}

/// A set or array of strings; undefined is empty.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let items: Vec<&Value> = match v {
        Value::Undefined => return Ok(Vec::new()),
        Value::Set(s) => s.iter().collect(),
        Value::Array(a) => a.iter().collect(),
        other => {
            return Err(format!(
                "{what} must be a set or array of strings, got {other}"
            ))
        }
    };
    items
        .into_iter()
        .map(|x| match x {
            Value::String(s) => Ok(s.to_string()),
            other => Err(format!("{what} must hold strings only, got {other}")),
        })
        .collect()
}

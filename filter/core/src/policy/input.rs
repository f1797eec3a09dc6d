//! The policy input document: what a Rego policy sees as `input`.
//!
//! The shape is a public contract (documented in `policies/README.md`, pinned by a golden test):
//! every top-level member is always present, `null` when it does not apply, so a policy never has
//! to guess whether a field was forgotten or does not exist. The document is built straight into a
//! `regorus::Value` (no JSON text in between) with key strings allocated once per configure, since
//! this runs on every request inside V8.

use std::collections::BTreeMap;

use regorus::Value;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Who is calling, as the authentication step established it. Borrowed, so the glue can hand in
/// its verified identity without copying it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// `sub`; `None` for anonymous requests.
    pub sub: Option<&'a str>,
    /// `iss`.
    pub iss: Option<&'a str>,
    /// Granted OAuth scopes (from `scope`/`scp`).
    pub scopes: &'a [String],
    /// All verified claims. Only those the policy config lists (`claims`) reach the input, so a
    /// large token does not make every evaluation slower.
    pub claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// What a request acts on: the MCP method's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target<'a> {
    /// `tools/call`: the tool name.
    Tool(&'a str),
    /// `prompts/get`: the prompt name.
    Prompt(&'a str),
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`: the resource URI.
    Resource(&'a str),
    /// Any other method.
    #[default]
    None,
}

impl<'a> Target<'a> {
    /// The target of `method`, from `params.name` / `params.uri` as the JSON-RPC parser read them.
    pub fn of(method: &str, name: Option<&'a str>, uri: Option<&'a str>) -> Target<'a> {
        match (method, name, uri) {
            ("tools/call", Some(n), _) => Target::Tool(n),
            ("prompts/get", Some(n), _) => Target::Prompt(n),
            ("resources/read" | "resources/subscribe" | "resources/unsubscribe", _, Some(u)) => {
                Target::Resource(u)
            }
            _ => Target::None,
        }
    }
}

/// The facts about one request that the policy input is built from. The caller supplies the
/// time: the core reads no clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub subject: Subject<'a>,
    /// JSON-RPC method.
    pub method: &'a str,
    /// Name of the upstream server the request goes to, when the gateway knows it.
    pub server: Option<&'a str>,
    pub target: Target<'a>,
    /// `params.arguments` as raw JSON (see [`params_arguments`]).
    pub arguments: Option<&'a RawValue>,
    /// The client's `Mcp-Session-Id`.
    pub session: Option<&'a str>,
    /// Request headers, any case. Only those the policy config lists (`headers`) reach the input.
    pub headers: &'a [(&'a str, &'a str)],
    /// Current time, seconds since the Unix epoch.
    pub unix_seconds: u64,
}

/// Reads `params.arguments` from a JSON-RPC request body, borrowed. `None` when absent or when
/// the body is not an object (the gate has rejected such bodies already).
pub fn params_arguments(body: &[u8]) -> Option<&RawValue> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow, default)]
        params: Option<Params<'a>>,
    }
    serde_json::from_slice::<Body<'_>>(body)
        .ok()
        .and_then(|b| b.params)
        .and_then(|p| p.arguments)
}

/// Key strings of the input document, allocated once per configure: cloning a `Value::String`
/// only bumps a reference count, building one allocates.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub subject: Value,
    pub sub: Value,
    pub iss: Value,
    pub scopes: Value,
    pub claims: Value,
    pub method: Value,
    pub server: Value,
    pub tool: Value,
    pub prompt: Value,
    pub resource: Value,
    pub name: Value,
    pub uri: Value,
    pub arguments: Value,
    pub session: Value,
    pub headers: Value,
    pub time: Value,
    pub rfc3339: Value,
    pub unix: Value,
    pub weekday: Value,
    pub hour: Value,
    pub minute: Value,
    pub items: Value,
    /// Claim names to copy, with their key values.
    pub claim_names: Vec<(String, Value)>,
    /// Lower-case header names to copy, with their key values.
    pub header_names: Vec<(String, Value)>,
}

impl Keys {
    pub(crate) fn new(claims: &[String], headers: &[String]) -> Keys {
        let k = |s: &str| Value::from(s);
        Keys {
            subject: k("subject"),
            sub: k("sub"),
            iss: k("iss"),
            scopes: k("scopes"),
            claims: k("claims"),
            method: k("method"),
            server: k("server"),
            tool: k("tool"),
            prompt: k("prompt"),
            resource: k("resource"),
            name: k("name"),
            uri: k("uri"),
            arguments: k("arguments"),
            session: k("session"),
            headers: k("headers"),
            time: k("time"),
            rfc3339: k("rfc3339"),
            unix: k("unix"),
            weekday: k("weekday"),
            hour: k("hour"),
            minute: k("minute"),
            items: k("items"),
            claim_names: claims.iter().map(|c| (c.clone(), k(c))).collect(),
            header_names: headers
                .iter()
                .map(|h| {
                    let lower = h.to_ascii_lowercase();
                    let key = k(&lower);
                    (lower, key)
                })
                .collect(),
        }
    }
}

/// A built input document, ready for any number of evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub(crate) value: Value,
}

impl Input {
    /// The document as regorus sees it.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The document as JSON (keys sorted), for logs, audit records and tests.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.value).unwrap_or_default()
    }
}

pub(crate) fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

/// `{"name": name}` or `{"uri": uri}`.
pub(crate) fn named(key: &Value, name: &str) -> Value {
    let mut m = BTreeMap::new();
    m.insert(key.clone(), Value::from(name));
    Value::from(m)
}

pub(crate) fn build(keys: &Keys, req: &Request<'_>) -> Input {
    let mut doc = BTreeMap::new();
    doc.insert(keys.subject.clone(), subject(keys, &req.subject));
    doc.insert(keys.method.clone(), Value::from(req.method));
    doc.insert(keys.server.clone(), opt_str(req.server));
    let (tool, prompt, resource) = match req.target {
        Target::Tool(n) => (named(&keys.name, n), Value::Null, Value::Null),
        Target::Prompt(n) => (Value::Null, named(&keys.name, n), Value::Null),
        Target::Resource(u) => (Value::Null, Value::Null, named(&keys.uri, u)),
        Target::None => (Value::Null, Value::Null, Value::Null),
    };
    doc.insert(keys.tool.clone(), tool);
    doc.insert(keys.prompt.clone(), prompt);
    doc.insert(keys.resource.clone(), resource);
    doc.insert(keys.arguments.clone(), arguments(req.arguments));
    doc.insert(keys.session.clone(), opt_str(req.session));
    doc.insert(keys.headers.clone(), headers(keys, req.headers));
    doc.insert(keys.time.clone(), time(keys, req.unix_seconds));
    Input {
        value: Value::from(doc),
    }
}

fn subject(keys: &Keys, s: &Subject<'_>) -> Value {
    let mut m = BTreeMap::new();
    m.insert(keys.sub.clone(), opt_str(s.sub));
    m.insert(keys.iss.clone(), opt_str(s.iss));
    let scopes: Vec<Value> = s.scopes.iter().map(|x| Value::from(x.as_str())).collect();
    m.insert(keys.scopes.clone(), Value::from(scopes));
    let mut claims = BTreeMap::new();
    if let Some(all) = s.claims {
        for (name, key) in &keys.claim_names {
            if let Some(v) = all.get(name) {
                // A claim that regorus cannot represent (it can represent all JSON) is left out
                // rather than failing the request.
                if let Ok(v) = Value::deserialize(v) {
                    claims.insert(key.clone(), v);
                }
            }
        }
    }
    m.insert(keys.claims.clone(), Value::from(claims));
    Value::from(m)
}

fn arguments(raw: Option<&RawValue>) -> Value {
    // The gate has validated the body as JSON, so this parse cannot fail in practice; if it did,
    // the policy sees `null`, which only matters to a policy that inspects arguments.
    raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .unwrap_or(Value::Null)
}

fn headers(keys: &Keys, given: &[(&str, &str)]) -> Value {
    let mut m: BTreeMap<Value, Value> = BTreeMap::new();
    if keys.header_names.is_empty() {
        return Value::from(m);
    }
    for (name, value) in given {
        let Some((_, key)) = keys
            .header_names
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        // A repeated header is joined with "," as HTTP allows for list-valued fields.
        let joined = match m.get(key).and_then(|v| v.as_string().ok()) {
            Some(prev) => Value::from(format!("{prev},{value}")),
            None => Value::from(*value),
        };
        m.insert(key.clone(), joined);
    }
    Value::from(m)
}

fn time(keys: &Keys, unix: u64) -> Value {
    let c = Civil::from_unix(unix);
    let mut m = BTreeMap::new();
    m.insert(keys.rfc3339.clone(), Value::from(c.rfc3339()));
    m.insert(keys.unix.clone(), Value::from(unix));
    m.insert(keys.weekday.clone(), Value::from(c.weekday_name()));
    m.insert(keys.hour.clone(), Value::from(u64::from(c.hour)));
    m.insert(keys.minute.clone(), Value::from(u64::from(c.minute)));
    Value::from(m)
}

/// A UTC calendar time, computed from Unix seconds without a time library (the `time` builtins
/// of regorus pull in chrono and its time-zone tables, which the wasm module does not need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday.
    pub weekday: u32,
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl Civil {
    pub(crate) fn from_unix(unix: u64) -> Civil {
        // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
        let secs = i64::try_from(unix).unwrap_or(i64::MAX);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // 1970-01-01 was a Thursday.
        let weekday = (days + 4).rem_euclid(7);
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        Civil {
            year,
            month: small(month),
            day: small(day),
            hour: small(rem / 3600),
            minute: small(rem % 3600 / 60),
            second: small(rem % 60),
            weekday: small(weekday),
        }
    }

    pub(crate) fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    pub(crate) fn weekday_name(&self) -> &'static str {
        WEEKDAYS
            .get(usize::try_from(self.weekday).unwrap_or(0))
            .copied()
            .unwrap_or("Sunday")
    }
}

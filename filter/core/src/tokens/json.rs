//! Counting what a model sees of MCP messages, straight from the JSON bytes.
//!
//! A model never sees the JSON-RPC envelope. Of a `tools/call` result it reads the content
//! blocks' text (clients unescape it); of arguments and tool definitions it reads JSON, which
//! clients re-serialise compactly whatever whitespace the server sent. So:
//! - result text is JSON-unescaped on the fly into the counter (no copy of the text);
//! - JSON is counted as its compact form ([`compact_json`]): whitespace outside strings dropped,
//!   escapes that a serialiser would not write (`\/`, `\u00e9`) decoded, others kept.
//!
//! Counting the raw bytes of the whole response instead is simpler but counts the envelope and
//! every `\n` escape twice over; `docs/tokens.md` gives its error.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{TokenCounter, TokenCounting};

/// Tokens of one `tools/call` result, as the model receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResultTokens {
    /// Text tokens: text blocks, embedded text resources, the compact JSON of other non-media
    /// blocks, or of `structuredContent` when there are no content blocks.
    pub text: u64,
    /// Image and audio blocks and binary resources. Models price these by pixels or seconds,
    /// not as text, so they are counted but not converted to tokens.
    pub media: u32,
    /// The result's `isError` is `true`: the tool ran and failed. Read in the same pass.
    pub is_error: bool,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
}

/// The parts of a `tools/call` result that are read, taken in one pass over its JSON. Unlike a
/// derived struct, a field of the wrong type does not stop the others from being read: a
/// malformed `content` still leaves `isError`, as when each was parsed on its own.
#[derive(Default)]
struct CallToolResult<'a> {
    /// `None` when `content` is not an array (or repeated): the result is not counted.
    content: Option<Vec<&'a RawValue>>,
    content_seen: bool,
    structured: Option<&'a RawValue>,
    structured_seen: u8,
    /// `isError` values seen; the flag counts only when it appears once.
    is_error: Option<&'a RawValue>,
    is_error_seen: u8,
}

impl<'de: 'a, 'a> Deserialize<'de> for CallToolResult<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ResultVisitor)
    }
}

struct ResultVisitor;

impl<'de> serde::de::Visitor<'de> for ResultVisitor {
    type Value = CallToolResult<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a tools/call result object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = CallToolResult::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "content" => {
                    let seq = map.next_value::<MaybeArray<'de>>()?.0;
                    r.content = if r.content_seen { None } else { seq };
                    r.content_seen = true;
                }
                "structuredContent" => {
                    r.structured = Some(map.next_value()?);
                    r.structured_seen = r.structured_seen.saturating_add(1);
                }
                "isError" => {
                    r.is_error = Some(map.next_value()?);
                    r.is_error_seen = r.is_error_seen.saturating_add(1);
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !r.content_seen {
            r.content = Some(Vec::new());
        }
        Ok(r)
    }
}

/// An array's elements, or `None` for any other JSON value (which is consumed, not rejected).
struct MaybeArray<'a>(Option<Vec<&'a RawValue>>);

impl<'de: 'a, 'a> Deserialize<'de> for MaybeArray<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ArrayVisitor)
    }
}

struct ArrayVisitor;

impl<'de> serde::de::Visitor<'de> for ArrayVisitor {
    type Value = MaybeArray<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(64));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(MaybeArray(Some(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(MaybeArray(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeArray(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeArray(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeArray(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeArray(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(MaybeArray(None))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(MaybeArray(None))
    }
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource: Option<Resource<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    blob: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolsList<'a> {
    #[serde(borrow)]
    result: ToolsListResult<'a>,
}

#[derive(Deserialize)]
struct ToolsListResult<'a> {
    #[serde(borrow)]
    tools: Vec<Tool<'a>>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "inputSchema")]
    input_schema: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    params: Option<CallParams<'a>>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

impl TokenCounting {
    /// Tokens of the compact form of a JSON text (see [`compact_json`]). Malformed JSON is
    /// counted as far as it goes, never rejected: the caller has usually parsed it already.
    pub fn count_json(&self, json: &[u8]) -> u64 {
        let mut c = self.counter();
        compact_json(json, |part| c.feed(part));
        c.finish()
    }

    /// Model-visible tokens of a `tools/call` response message (a JSON body or one SSE event's
    /// data). `None` if it is not a JSON-RPC response with a result object.
    pub fn count_tool_result(&self, message: &[u8]) -> Option<ResultTokens> {
        let envelope: Envelope<'_> = serde_json::from_slice(message).ok()?;
        self.count_call_result(envelope.result?.get().as_bytes())
    }

    /// Model-visible tokens and `isError` of a `tools/call` result value (the JSON of the
    /// response's `result` member), in one pass. `None` if it is not a result object with a
    /// `content` array (then see [`tool_result_is_error`] for the flag alone).
    pub fn count_call_result(&self, result: &[u8]) -> Option<ResultTokens> {
        read_call_result(result, Some(self)).1
    }
}

/// Whether a `tools/call` result value (the `result` member's JSON) says `"isError": true`.
pub fn tool_result_is_error(result: &[u8]) -> bool {
    read_call_result(result, None).0
}

/// Reads a `tools/call` result value once: its `isError` flag and, with `counting`, its tokens.
fn read_call_result(
    result: &[u8],
    counting: Option<&TokenCounting>,
) -> (bool, Option<ResultTokens>) {
    let Ok(result) = serde_json::from_slice::<CallToolResult<'_>>(result) else {
        return (false, None);
    };
    let is_error = result.is_error_seen == 1 && result.is_error.is_some_and(|r| r.get() == "true");
    let (Some(counting), Some(content)) = (counting, &result.content) else {
        return (is_error, None);
    };
    // A repeated `structuredContent` made the derived struct this replaced fail.
    if result.structured_seen > 1 {
        return (is_error, None);
    }
    let mut tokens = counting.count_blocks(content, result.structured);
    tokens.is_error = is_error;
    (is_error, Some(tokens))
}

impl TokenCounting {
    fn count_blocks(&self, content: &[&RawValue], structured: Option<&RawValue>) -> ResultTokens {
        let mut c = self.counter();
        let mut tokens = ResultTokens::default();
        for raw in content {
            let block: Option<Block<'_>> = serde_json::from_str(raw.get()).ok();
            match block {
                Some(Block {
                    text: Some(text), ..
                }) if is_string(text) => {
                    feed_unescaped(&mut c, text.get().as_bytes());
                    tokens.text += c.finish();
                }
                Some(Block {
                    resource:
                        Some(Resource {
                            text: Some(text), ..
                        }),
                    ..
                }) if is_string(text) => {
                    feed_unescaped(&mut c, text.get().as_bytes());
                    tokens.text += c.finish();
                }
                Some(Block {
                    resource: Some(Resource { blob: Some(_), .. }),
                    ..
                }) => tokens.media += 1,
                Some(Block { kind: Some(k), .. }) if k == "image" || k == "audio" => {
                    tokens.media += 1;
                }
                // resource_link and block types from later revisions: the client shows them
                // somehow; their JSON is the best stand-in.
                _ => tokens.text += self.count_json(raw.get().as_bytes()),
            }
        }
        if content.is_empty() {
            if let Some(structured) = structured.filter(|s| s.get() != "null") {
                tokens.text += self.count_json(structured.get().as_bytes());
            }
        }
        tokens
    }

    /// Model-visible tokens of a `tools/list` response message: each tool as the model gets it
    /// from a client, `{"name":…,"description":…,"parameters":<inputSchema>}` in a JSON array.
    /// Titles, annotations, output schemas and `_meta` are not sent to models, so not counted.
    /// `None` if the message has no `result.tools` array.
    pub fn count_tools_list(&self, message: &[u8]) -> Option<u64> {
        let list: ToolsList<'_> = serde_json::from_slice(message).ok()?;
        let mut c = self.counter();
        c.feed(b"[");
        for (i, tool) in list.result.tools.iter().enumerate() {
            if i > 0 {
                c.feed(b",");
            }
            let mut sep = b"{".as_slice();
            for (key, value) in [
                ("\"name\":", tool.name),
                ("\"description\":", tool.description),
                ("\"parameters\":", tool.input_schema),
            ] {
                if let Some(v) = value {
                    c.feed(sep);
                    c.feed(key.as_bytes());
                    compact_json(v.get().as_bytes(), |part| c.feed(part));
                    sep = b",";
                }
            }
            c.feed(if sep == b"{" { b"{}" } else { b"}" });
        }
        c.feed(b"]");
        Some(c.finish())
    }

    /// Tokens of a `tools/call` request's `params.arguments`, as compact JSON (the model wrote
    /// them). `Some(0)` when there are none; `None` if the message is not a JSON object.
    pub fn count_tool_arguments(&self, message: &[u8]) -> Option<u64> {
        let request: Request<'_> = serde_json::from_slice(message).ok()?;
        Some(
            request
                .params
                .and_then(|p| p.arguments)
                .map_or(0, |a| self.count_json(a.get().as_bytes())),
        )
    }
}

fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

/// Writes the compact form of a JSON text to `out`, in pieces: whitespace outside strings is
/// dropped; in strings, escapes are rewritten as serde_json would write them (`\/` → `/`,
/// `\u00e9` → `é`, `\u000a` → `\n`; `\"`, `\\` and control characters stay escaped). Numbers
/// and literals pass through as written. Never fails: malformed input is passed on as it
/// comes.
pub fn compact_json(json: &[u8], mut out: impl FnMut(&[u8])) {
    let mut i = 0;
    let mut verbatim = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                out(json.get(verbatim..i).unwrap_or_default());
                while matches!(json.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                    i += 1;
                }
                verbatim = i;
            }
            b'"' => {
                i += 1;
                loop {
                    match json.get(i) {
                        None => break,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            out(json.get(verbatim..i).unwrap_or_default());
                            let (decoded, used) = unescape(json.get(i..).unwrap_or_default());
                            let mut buf = [0u8; 6];
                            out(canonical_escape(decoded, &mut buf));
                            i += used;
                            verbatim = i;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            _ => i += 1,
        }
    }
    out(json.get(verbatim..).unwrap_or_default());
}

/// Feeds the contents of a JSON string literal (with its quotes) to `c`, unescaped.
fn feed_unescaped(c: &mut TokenCounter, literal: &[u8]) {
    let body = literal
        .strip_prefix(b"\"")
        .and_then(|b| b.strip_suffix(b"\""))
        .unwrap_or(literal);
    let mut rest = body;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\\') {
            None => {
                c.feed(rest);
                break;
            }
            Some(at) => {
                let (plain, esc) = rest.split_at(at);
                c.feed(plain);
                let (decoded, used) = unescape(esc);
                let mut buf = [0u8; 4];
                c.feed(decoded.encode_utf8(&mut buf).as_bytes());
                rest = esc.get(used..).unwrap_or_default();
            }
        }
    }
}

/// Decodes the escape at the start of `esc` (which starts with `\`): the character and the
/// bytes consumed. Surrogate pairs are joined; anything malformed decodes to U+FFFD.
fn unescape(esc: &[u8]) -> (char, usize) {
    let simple = match esc.get(1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let Some(hi) = hex4(esc.get(2..6)) else {
                return (char::REPLACEMENT_CHARACTER, esc.len().min(2));
            };
            if (0xD800..0xDC00).contains(&hi) {
                if let (Some(b"\\u"), Some(lo)) = (esc.get(6..8), hex4(esc.get(8..12))) {
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        return (
                            char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER),
                            12,
                        );
                    }
                }
            }
            return (char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER), 6);
        }
        _ => return (char::REPLACEMENT_CHARACTER, esc.len().min(2)),
    };
    (simple, 2)
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    if digits.len() != 4 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// The bytes serde_json writes for `c` inside a string.
fn canonical_escape(c: char, buf: &mut [u8; 6]) -> &[u8] {
    let short: Option<&'static [u8]> = match c {
        '"' => Some(b"\\\""),
        '\\' => Some(b"\\\\"),
        '\n' => Some(b"\\n"),
        '\r' => Some(b"\\r"),
        '\t' => Some(b"\\t"),
        '\u{8}' => Some(b"\\b"),
        '\u{c}' => Some(b"\\f"),
        _ => None,
    };
    if let Some(s) = short {
        return s;
    }
    let cp = u32::from(c);
    if cp < 0x20 {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        *buf = [
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX.get((cp >> 4) as usize).copied().unwrap_or(b'0'),
            HEX.get((cp & 0xF) as usize).copied().unwrap_or(b'0'),
        ];
        return buf;
    }
    let n = c.encode_utf8(buf.as_mut_slice()).len();
    buf.get(..n).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(json: &str) -> String {
        let mut out = Vec::new();
        compact_json(json.as_bytes(), |p| out.extend_from_slice(p));
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn compact_json_drops_whitespace_and_canonicalises_escapes() {
        for (input, want) in [
            ("{ \"a\" : [1, 2 ,\n 3] }", r#"{"a":[1,2,3]}"#),
            (r#"{"p":"a\/b"}"#, r#"{"p":"a/b"}"#),
            (r#""caf\u00e9""#, "\"café\""),
            (r#""\ud83d\ude00""#, "\"😀\""),
            (r#""line\u000anext""#, r#""line\nnext""#),
            (r#""q\"uote\\""#, r#""q\"uote\\""#),
            (r#""\u0001""#, r#""\u0001""#),
            ("\"keeps  inner  spaces\"", "\"keeps  inner  spaces\""),
            (r#""\ud800 lone""#, "\"\u{fffd} lone\""),
            ("\"unterminated \\", "\"unterminated \u{fffd}"),
        ] {
            assert_eq!(compact(input), want, "{input}");
        }
    }

    #[test]
    fn compact_json_of_pretty_output_is_serde_compact_output() {
        let v = serde_json::json!({
            "name": "read_file", "n": [1, 2.5, -3e-7, null, true],
            "nested": {"emoji": "😀 é \u{1} \"q\" \\ /", "empty": {}, "list": []}
        });
        let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
        let compact_serde = serde_json::to_string(&v).unwrap_or_default();
        assert_eq!(compact(&pretty), compact_serde);
    }

    #[test]
    fn tool_result_counts_only_what_the_model_reads() {
        let t = TokenCounting::default();
        let text = "The weather in Lisbon is sunny, 24 °C.\nWind: 12 km/h.";
        let msg = serde_json::json!({"jsonrpc":"2.0","id":7,"result":{"content":[
            {"type":"text","text":text},
            {"type":"image","data":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk","mimeType":"image/png"},
            {"type":"resource","resource":{"uri":"file:///a.txt","text":text}},
            {"type":"resource","resource":{"uri":"file:///a.bin","blob":"AAAA"}},
        ],"isError":false}});
        let bytes = serde_json::to_vec(&msg).unwrap_or_default();
        let got = t.count_tool_result(&bytes);
        let one = t.count_text(text.as_bytes());
        assert_eq!(
            got,
            Some(ResultTokens {
                text: 2 * one,
                media: 2,
                is_error: false,
            })
        );
    }

    #[test]
    fn tool_result_falls_back_to_structured_content_only_without_blocks() {
        let t = TokenCounting::default();
        let with_blocks = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"t\":21}"}],"structuredContent":{"t":21}}}"#;
        let without =
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":{"t":21}}}"#;
        let a = t.count_tool_result(with_blocks).map(|r| r.text);
        let b = t.count_tool_result(without).map(|r| r.text);
        assert_eq!(a, Some(t.count_text(br#"{"t":21}"#)));
        assert_eq!(b, Some(t.count_json(br#"{"t":21}"#)));
    }

    #[test]
    fn the_error_flag_comes_from_the_same_read_as_the_tokens() {
        let t = TokenCounting::default();
        for (result, is_error, counted) in [
            (
                r#"{"content":[{"type":"text","text":"boom"}],"isError":true}"#,
                true,
                true,
            ),
            (r#"{"isError":true,"content":[]}"#, true, true),
            (r#"{"content":[],"isError":false}"#, false, true),
            (r#"{"content":[]}"#, false, true),
            (r#"{"content":[],"isError":"yes"}"#, false, true),
            (r#"{"content":[],"isError":null}"#, false, true),
            // The flag is read even when the content is not an array.
            (r#"{"content":"oops","isError":true}"#, true, false),
            (r#"{"content":null,"isError":true}"#, true, false),
            (r#"{"content":{"a":[1]},"isError":true}"#, true, false),
            // A repeated flag is no flag (as a derived struct rejects it).
            (
                r#"{"content":[],"isError":true,"isError":true}"#,
                false,
                true,
            ),
            (
                r#"{"content":[],"structuredContent":1,"structuredContent":2}"#,
                false,
                false,
            ),
            (r#"{"content":[],"content":[]}"#, false, false),
            ("42", false, false),
            ("\"text\"", false, false),
        ] {
            let got = t.count_call_result(result.as_bytes());
            assert_eq!(got.is_some(), counted, "{result}");
            assert_eq!(
                got.is_some_and(|r| r.is_error),
                is_error && counted,
                "{result}"
            );
            assert_eq!(
                tool_result_is_error(result.as_bytes()),
                is_error,
                "{result}"
            );
        }
    }

    #[test]
    fn non_results_are_not_counted() {
        let t = TokenCounting::default();
        for msg in [
            &br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}"#[..],
            b"not json",
            br#"{"jsonrpc":"2.0","id":1,"result":42}"#,
        ] {
            assert_eq!(
                t.count_tool_result(msg),
                None,
                "{}",
                String::from_utf8_lossy(msg)
            );
        }
        assert_eq!(t.count_tools_list(br#"{"result":{}}"#), None);
    }

    #[test]
    fn escaped_text_counts_like_the_text_itself() {
        let t = TokenCounting::default();
        let text = "fn main() {\n    println!(\"hi \\u{1F600} é\");\n}\n\ttab";
        let msg = serde_json::json!({"result":{"content":[{"type":"text","text":text}]}});
        // Python's json.dumps escapes all non-ASCII; the count must not change.
        let ascii_escaped = serde_json::to_string(&msg)
            .unwrap_or_default()
            .replace('é', "\\u00e9");
        let got = t
            .count_tool_result(ascii_escaped.as_bytes())
            .map(|r| r.text);
        assert_eq!(got, Some(t.count_text(text.as_bytes())));
    }

    #[test]
    fn tools_list_counts_name_description_and_schema_only() {
        let t = TokenCounting::default();
        let msg = br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[
            {"name":"echo","title":"Echo","description":"Echoes.","inputSchema":{"type":"object"},
             "annotations":{"readOnlyHint":true},"outputSchema":{"type":"object"}},
            {"name":"noop"}]}}"#;
        let want = t.count_text(
            br#"[{"name":"echo","description":"Echoes.","parameters":{"type":"object"}},{"name":"noop"}]"#,
        );
        assert_eq!(t.count_tools_list(msg), Some(want));
    }

    #[test]
    fn arguments_are_counted_as_compact_json() {
        let t = TokenCounting::default();
        let msg = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"q","arguments":{ "sql" : "select 1" }}}"#;
        assert_eq!(
            t.count_tool_arguments(msg),
            Some(t.count_text(br#"{"sql":"select 1"}"#))
        );
        let none = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"q"}}"#;
        assert_eq!(t.count_tool_arguments(none), Some(0));
    }
}

//! In-place edits of JSON-RPC messages: swap one value, copy the rest byte for byte.
//!
//! Routing a prefixed tool name or a rewritten id only changes one JSON value, so the gateway
//! splices the new value into the original bytes instead of re-serialising the message: arguments
//! stay exactly as the client wrote them and the cost is one copy.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::jsonrpc::push_json_string;

/// Byte range of the value at `path` (object keys from the top) inside `body`.
fn locate(body: &[u8], path: &[&str]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut raw: &RawValue = serde_json::from_str(text).ok()?;
    for key in path {
        let map: BTreeMap<Cow<'_, str>, &RawValue> = serde_json::from_str(raw.get()).ok()?;
        raw = map.get(*key).copied()?;
    }
    let start = (raw.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(raw.get().len())?;
    (end <= body.len()).then_some((start, end))
}

/// `body` with the value at `path` replaced by the raw JSON `replacement`.
pub fn replace_at(body: &[u8], path: &[&str], replacement: &str) -> Option<Vec<u8>> {
    let (start, end) = locate(body, path)?;
    let mut out = Vec::with_capacity(body.len() + replacement.len());
    out.extend_from_slice(body.get(..start)?);
    out.extend_from_slice(replacement.as_bytes());
    out.extend_from_slice(body.get(end..)?);
    Some(out)
}

/// `body` with the string at `path` replaced by `value` (JSON-escaped here).
pub fn replace_string_at(body: &[u8], path: &[&str], value: &str) -> Option<Vec<u8>> {
    let mut json = String::with_capacity(value.len() + 2);
    push_json_string(&mut json, value);
    replace_at(body, path, &json)
}

/// A response's `result` with `"resultType":"complete"` added when it lacks one: what a
/// 2026-07-28 client requires of every result, and session-based servers don't send. `None` when
/// the message is not a response with an object result, or already has the field.
pub fn inject_result_type(message: &[u8]) -> Option<Vec<u8>> {
    if !contains(message, b"\"result\"") || contains(message, b"\"resultType\"") {
        return None;
    }
    let (start, end) = locate(message, &["result"])?;
    let raw = message.get(start..end)?;
    if raw.first() != Some(&b'{') {
        return None;
    }
    let empty = raw
        .iter()
        .skip(1)
        .all(|b| b.is_ascii_whitespace() || *b == b'}');
    let insert: &[u8] = if empty {
        b"\"resultType\":\"complete\""
    } else {
        b"\"resultType\":\"complete\","
    };
    let mut out = Vec::with_capacity(message.len() + insert.len());
    out.extend_from_slice(message.get(..=start)?);
    out.extend_from_slice(insert);
    out.extend_from_slice(message.get(start + 1..)?);
    Some(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const ID_PREFIX: &str = "mcpgw:";

/// The id the client sees for a server-to-client request from `server`: a string that records the
/// server and the upstream's own raw id, so two upstreams' ids can never collide and the client's
/// answer can be sent back to the right one.
pub fn client_facing_id(server: &str, upstream_raw_id: &str) -> String {
    let mut out = String::with_capacity(ID_PREFIX.len() + server.len() + upstream_raw_id.len() + 4);
    push_json_string(&mut out, &format!("{ID_PREFIX}{server}:{upstream_raw_id}"));
    out
}

/// Undoes [`client_facing_id`]: the server name and the upstream's raw id.
pub fn upstream_id(client_raw_id: &str) -> Option<(String, String)> {
    let s: String = serde_json::from_str(client_raw_id).ok()?;
    let rest = s.strip_prefix(ID_PREFIX)?;
    let (server, raw) = rest.split_once(':')?;
    // The raw id must itself be a JSON string or number, as it was upstream.
    serde_json::from_str::<&RawValue>(raw).ok()?;
    Some((server.to_owned(), raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_the_tool_name_keeps_every_other_byte() {
        let body = br#"{ "jsonrpc":"2.0", "id":1, "method":"tools/call", "params":{"arguments":{"name":"keep"}, "name" : "srv__echo"} }"#;
        let out = replace_string_at(body, &["params", "name"], "echo").unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{ "jsonrpc":"2.0", "id":1, "method":"tools/call", "params":{"arguments":{"name":"keep"}, "name" : "echo"} }"#
        );
    }

    #[test]
    fn escaped_keys_and_values_are_found_and_new_values_escaped() {
        let body = br#"{"params":{"na\u006de":"x\"y"}}"#;
        let out = replace_string_at(body, &["params", "name"], "a\"b").unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"params":{"na\u006de":"a\"b"}}"#
        );
    }

    #[test]
    fn missing_paths_and_bad_json_give_none() {
        assert_eq!(replace_at(b"{}", &["params", "name"], "1"), None);
        assert_eq!(replace_at(b"{bad", &["id"], "1"), None);
        assert_eq!(
            replace_at(br#"{"params":[1]}"#, &["params", "name"], "1"),
            None
        );
    }

    #[test]
    fn result_type_is_added_to_results_that_lack_it() {
        let out = inject_result_type(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
        assert_eq!(
            out.as_deref(),
            Some(
                &br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[]}}"#[..]
            )
        );
        let out = inject_result_type(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(
            out.as_deref(),
            Some(&br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}"#[..])
        );
        assert_eq!(
            inject_result_type(br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}"#),
            None
        );
        assert_eq!(
            inject_result_type(
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"result"}}"#
            ),
            None
        );
        assert_eq!(
            inject_result_type(br#"{"jsonrpc":"2.0","method":"notifications/progress"}"#),
            None
        );
        let v: serde_json::Value =
            serde_json::from_slice(&inject_result_type(br#"{"id":1,"result":{ }}"#).unwrap())
                .unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
    }

    #[test]
    fn server_request_ids_round_trip_and_foreign_ids_are_not_ours() {
        for raw in ["5", "\"abc\"", "\"a:b\\\"c\""] {
            let id = client_facing_id("everything", raw);
            assert_eq!(
                upstream_id(&id),
                Some(("everything".to_owned(), raw.to_owned()))
            );
        }
        assert_eq!(upstream_id("7"), None);
        assert_eq!(upstream_id("\"other\""), None);
        assert_eq!(upstream_id("\"mcpgw:x:{not json\""), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in ".{0,80}", v in ".{0,10}") {
            let _ = replace_string_at(body.as_bytes(), &["params", "name"], &v);
            let _ = upstream_id(&body);
        }
    }
}

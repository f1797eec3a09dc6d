//! Rewrites a routed server's SSE response while it streams: server-to-client requests get ids
//! that name their server, so the client's answers can be routed back and two servers' ids can't
//! collide. Everything else is re-emitted as it came, event by event, as soon as each is complete.

use crate::federation::aggregate::ListKind;
use crate::federation::rewrite::{client_facing_id, replace_at};
use crate::sse::SseParser;

#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    id: Option<&'a serde_json::value::RawValue>,
}

fn raw_present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
    <&serde_json::value::RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// Streaming rewriter for one routed response.
#[derive(Debug)]
pub struct StreamRewriter {
    parser: SseParser,
    server: String,
    out: Vec<u8>,
    /// Lists that a `notifications/*/list_changed` on this stream invalidated.
    pub list_changed: Vec<ListKind>,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl StreamRewriter {
    pub fn new(server: &str, max_event_bytes: usize) -> Self {
        StreamRewriter {
            parser: SseParser::new(max_event_bytes),
            server: server.to_owned(),
            out: Vec::new(),
            list_changed: Vec::new(),
        }
    }

    /// Feeds one chunk; returns the bytes to send on now. `on_message` sees each complete
    /// message's data (after rewriting), for telemetry.
    pub fn feed(&mut self, chunk: &[u8], mut on_message: impl FnMut(&[u8])) -> &[u8] {
        self.out.clear();
        let server = &self.server;
        let out = &mut self.out;
        let changed = &mut self.list_changed;
        self.parser.feed(chunk, |event| {
            let mut data: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(event.data);
            // Only messages with a method can need rewriting; results skip the JSON parse.
            if contains(event.data, b"\"method\"") {
                if let Ok(probe) = serde_json::from_slice::<Probe<'_>>(event.data) {
                    match (probe.method.as_deref(), probe.id) {
                        (Some(_), Some(id)) => {
                            let new_id = client_facing_id(server, id.get());
                            if let Some(rewritten) = replace_at(event.data, &["id"], &new_id) {
                                data = std::borrow::Cow::Owned(rewritten);
                            }
                        }
                        (Some(m), None) => {
                            if let Some(kinds) = ListKind::of_list_changed(m) {
                                changed.extend_from_slice(kinds);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if event.truncated {
                return;
            }
            on_message(&data);
            if let Some(ev) = event.event {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(ev);
                out.push(b'\n');
            }
            if let Some(id) = event.id {
                out.extend_from_slice(b"id: ");
                out.extend_from_slice(id);
                out.push(b'\n');
            }
            for line in data.split(|&b| b == b'\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            out.push(b'\n');
        });
        &self.out
    }

    pub fn has_partial_event(&self) -> bool {
        self.parser.has_partial_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::rewrite::upstream_id;

    fn run(chunks: &[&[u8]]) -> (String, Vec<String>, Vec<ListKind>) {
        let mut r = StreamRewriter::new("everything", 1 << 20);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for c in chunks {
            let o = r
                .feed(c, |m| seen.push(String::from_utf8_lossy(m).into_owned()))
                .to_vec();
            out.extend(o);
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            seen,
            r.list_changed,
        )
    }

    const STREAM: &str = "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"elicitation/create\",\"params\":{}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n\
data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"caf\u{e9}\"}]}}\n\n";

    #[test]
    fn server_requests_get_server_tagged_ids_and_the_rest_passes_as_is() {
        let (out, seen, changed) = run(&[STREAM.as_bytes()]);
        assert!(out.starts_with("event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""));
        let req = seen.get(1).cloned().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&req).unwrap_or_default();
        let id = v["id"].to_string();
        assert_eq!(upstream_id(&id), Some(("everything".into(), "3".into())));
        assert!(out.contains("\"text\":\"caf\u{e9}\""));
        assert_eq!(changed, vec![ListKind::Tools]);
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn every_split_point_gives_the_same_output() {
        let whole = run(&[STREAM.as_bytes()]);
        let b = STREAM.as_bytes();
        for i in 0..=b.len() {
            let (x, y) = b.split_at(i);
            assert_eq!(run(&[x, y]), whole, "split {i}");
        }
    }
}

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
    limit: usize,
    /// Raw bytes of the unfinished event, held back until it is known whether it needs rewriting.
    carry: Vec<u8>,
    /// The unfinished event is over the limit: it can't be a request to rewrite, so its bytes go
    /// straight through instead of piling up in `carry`.
    passing: bool,
    out: Vec<u8>,
    /// Add `resultType` to results (a stateless client served by a session-based server).
    inject_result_type: bool,
    /// Lists that a `notifications/*/list_changed` on this stream invalidated.
    pub list_changed: Vec<ListKind>,
}

/// What to send on for one chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Emit<'a> {
    /// The chunk exactly as it came: leave the body alone (the common case, no copy).
    Unchanged,
    /// Send these bytes instead.
    Replace(&'a [u8]),
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The rewritten data of a server-to-client request, or `None` when the message stays as it is.
fn rewrite_message(server: &str, data: &[u8], changed: &mut Vec<ListKind>) -> Option<Vec<u8>> {
    // Only messages with a method can need rewriting; results skip the JSON parse.
    if !contains(data, b"\"method\"") {
        return None;
    }
    let probe = serde_json::from_slice::<Probe<'_>>(data).ok()?;
    match (probe.method.as_deref(), probe.id) {
        (Some(_), Some(id)) => replace_at(data, &["id"], &client_facing_id(server, id.get())),
        (Some(m), None) => {
            if let Some(kinds) = ListKind::of_list_changed(m) {
                changed.extend_from_slice(kinds);
            }
            None
        }
        _ => None,
    }
}

fn write_event(out: &mut Vec<u8>, event: Option<&[u8]>, id: Option<&[u8]>, data: &[u8]) {
    if let Some(ev) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ev);
        out.push(b'\n');
    }
    if let Some(id) = id {
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
}

impl StreamRewriter {
    pub fn new(server: &str, max_event_bytes: usize) -> Self {
        StreamRewriter {
            parser: SseParser::new(max_event_bytes),
            server: server.to_owned(),
            limit: max_event_bytes,
            carry: Vec::new(),
            passing: false,
            out: Vec::new(),
            inject_result_type: false,
            list_changed: Vec::new(),
        }
    }

    /// Also adds `"resultType":"complete"` to results that lack it.
    pub fn injecting_result_type(mut self) -> Self {
        self.inject_result_type = true;
        self
    }

    /// Feeds one chunk; returns what to send on now. `on_message` sees each complete message's
    /// data (after rewriting), for telemetry. Events that need no change go on byte for byte;
    /// only an unfinished event at the end of the chunk is held back.
    pub fn feed(&mut self, chunk: &[u8], mut on_message: impl FnMut(&[u8])) -> Emit<'_> {
        self.out.clear();
        let had_carry = !self.carry.is_empty();
        let mut last_end = 0usize;
        let mut rewrote = false;
        let server = &self.server;
        let out = &mut self.out;
        let carry = &mut self.carry;
        let changed = &mut self.list_changed;
        let passing = &mut self.passing;
        let inject = self.inject_result_type;
        self.parser.feed_indexed(chunk, |event, end| {
            let rewritten = if event.truncated {
                None
            } else if inject {
                crate::federation::rewrite::inject_result_type(event.data)
                    .or_else(|| rewrite_message(server, event.data, changed))
            } else {
                rewrite_message(server, event.data, changed)
            };
            if !event.truncated {
                on_message(rewritten.as_deref().unwrap_or(event.data));
            }
            match rewritten {
                None => {
                    out.append(carry);
                    out.extend_from_slice(chunk.get(last_end..end).unwrap_or_default());
                }
                Some(data) => {
                    carry.clear();
                    write_event(out, event.event, event.id, &data);
                    rewrote = true;
                }
            }
            *passing = false;
            last_end = end;
        });
        let tail = chunk.get(last_end..).unwrap_or_default();
        if !had_carry && !rewrote && tail.is_empty() {
            return Emit::Unchanged;
        }
        if self.passing
            || (self.carry.len() + tail.len() > self.limit && self.parser.partial_is_oversized())
        {
            self.passing = true;
            self.out.append(&mut self.carry);
            self.out.extend_from_slice(tail);
        } else {
            self.carry.extend_from_slice(tail);
        }
        Emit::Replace(&self.out)
    }

    /// Bytes still held back when the stream ends (an unfinished event): sent on as they are.
    pub fn finish(&mut self) -> &[u8] {
        &self.carry
    }

    pub fn has_partial_event(&self) -> bool {
        self.parser.has_partial_event()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::rewrite::upstream_id;

    fn run_with(chunks: &[&[u8]], limit: usize) -> (String, Vec<String>, Vec<ListKind>) {
        let mut r = StreamRewriter::new("everything", limit);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for c in chunks {
            match r.feed(c, |m| seen.push(String::from_utf8_lossy(m).into_owned())) {
                Emit::Unchanged => out.extend_from_slice(c),
                Emit::Replace(b) => out.extend_from_slice(b),
            }
        }
        out.extend_from_slice(r.finish());
        (
            String::from_utf8_lossy(&out).into_owned(),
            seen,
            r.list_changed,
        )
    }

    fn run(chunks: &[&[u8]]) -> (String, Vec<String>, Vec<ListKind>) {
        run_with(chunks, 1 << 20)
    }

    #[test]
    fn streams_without_server_requests_pass_unchanged_without_copies() {
        let mut r = StreamRewriter::new("s", 1024);
        assert_eq!(
            r.feed(
                b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
                |_| {}
            ),
            Emit::Unchanged
        );
        // A chunk that ends mid-event holds back only the unfinished part.
        assert_eq!(
            r.feed(b"data: {\"a\":1}\n\ndata: {\"b\"", |_| {}),
            Emit::Replace(b"data: {\"a\":1}\n\n")
        );
        assert_eq!(
            r.feed(b":2}\n\n", |_| {}),
            Emit::Replace(b"data: {\"b\":2}\n\n")
        );
    }

    #[test]
    fn oversized_events_stream_through_instead_of_piling_up() {
        let big = format!(
            "data: {}\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"roots/list\"}}\n\n",
            "x".repeat(300)
        );
        let chunks: Vec<&[u8]> = big.as_bytes().chunks(50).collect();
        let (out, _, _) = run_with(&chunks, 100);
        assert!(out.starts_with(&format!("data: {}\n\n", "x".repeat(300))));
        assert!(out.contains("mcpgw:everything:4"));
    }

    const STREAM: &str = "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"elicitation/create\",\"params\":{}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n\
data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"caf\u{e9}\"}]}}\n\n";

    #[test]
    fn server_requests_get_server_tagged_ids_and_the_rest_passes_as_is() {
        let (out, seen, changed) = run(&[STREAM.as_bytes()]);
        assert!(out.starts_with("event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""));
        assert!(out.contains("\"result\":{\"content\""));
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

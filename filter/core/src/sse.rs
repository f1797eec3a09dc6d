//! Incremental `text/event-stream` parser that works on bytes as Envoy hands them over.
//!
//! Chunks may split anywhere: inside a field name, between CR and LF, inside a multi-byte UTF-8
//! character. The parser therefore never decodes a chunk on its own; it keeps only the unfinished
//! line and the current event's data (both reused buffers, so a long stream allocates nothing per
//! chunk once warm) and hands each finished event's data to the caller as bytes. It never holds
//! more than one event: an event whose data exceeds the configured maximum is reported as
//! truncated instead of being buffered.

/// One dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, if any (`None` means the default type, `message`).
    pub event: Option<&'a [u8]>,
    /// The `id:` field of this event, if it had one.
    pub id: Option<&'a [u8]>,
    /// The data lines joined with `\n`. Empty when `truncated`.
    pub data: &'a [u8],
    /// The data was larger than the parser's limit and was dropped.
    pub truncated: bool,
}

/// Streaming SSE parser state.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The current, unterminated line, unless it is a `data:` line (see `data_open`).
    line: Vec<u8>,
    /// The line overflowed and is being skipped until its end.
    line_overflow: bool,
    /// The overflowing line is a `data:` line (other fields and comments are just dropped).
    overflow_is_data: bool,
    /// An unterminated `data:` line is open: its value goes straight into `data` as it
    /// arrives, so a long data line split over chunks is copied once, not into `line` first.
    data_open: bool,
    /// The open data line's value has not started yet, so a leading space is still to strip.
    data_space_pending: bool,
    /// The current event's data, for data that cannot be lent straight from a chunk (it spans
    /// chunks, or has several lines to join). Reused across events.
    data: Vec<u8>,
    has_data: bool,
    truncated: bool,
    event: Vec<u8>,
    has_event: bool,
    id: Vec<u8>,
    has_id: bool,
    /// The previous byte was a CR, so an immediately following LF belongs to it.
    after_cr: bool,
    /// Bytes of a leading UTF-8 BOM matched so far (the spec strips one at stream start).
    bom_seen: u8,
    started: bool,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// What a complete line asks for.
enum Line<'l> {
    Nothing,
    /// A `data` field with this value.
    Data(&'l [u8]),
    /// A blank line: dispatch the event.
    Dispatch,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            line_overflow: false,
            overflow_is_data: false,
            data_open: false,
            data_space_pending: false,
            data: Vec::new(),
            has_data: false,
            truncated: false,
            event: Vec::new(),
            has_event: false,
            id: Vec::new(),
            has_id: false,
            after_cr: false,
            bom_seen: 0,
            started: false,
        }
    }

    /// Feeds one chunk and calls `on_event` for every event it completes, in order.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        self.feed_indexed(chunk, |event, _| on_event(event));
    }

    /// Like [`SseParser::feed`], and also tells where in `chunk` each event's raw bytes end, so a
    /// caller can pass events on byte for byte and hold back only an unfinished tail.
    ///
    /// An event whose data is one line inside `original` is handed over borrowed from it, with
    /// no copy; other data is gathered in one reused buffer.
    pub fn feed_indexed(&mut self, original: &[u8], mut on_event: impl FnMut(SseEvent<'_>, usize)) {
        let mut chunk = original;
        if !self.started {
            chunk = self.skip_bom(chunk);
            if chunk.is_empty() {
                return;
            }
        }
        // The current event's data while it is a single line of this chunk (not yet copied).
        let mut lent: Option<&[u8]> = None;
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(rest) = chunk.strip_prefix(b"\n") {
                    chunk = rest;
                    continue;
                }
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(end) => {
                    let (head, tail) = chunk.split_at(end);
                    self.after_cr = tail.first() == Some(&b'\r');
                    chunk = tail.get(1..).unwrap_or_default();
                    // Offset just past this line's terminator (a CR's LF may follow in the next
                    // chunk; it is skipped there).
                    let crlf = self.after_cr && chunk.first() == Some(&b'\n');
                    let at = original.len() - chunk.len() + usize::from(crlf);
                    if self.data_open {
                        self.append_data(head);
                        self.data_open = false;
                    } else if self.line.is_empty() && !self.line_overflow {
                        match self.process_line(head) {
                            Line::Nothing => {}
                            Line::Data(value) => {
                                if self.has_data || self.truncated || lent.is_some() {
                                    self.materialize(&mut lent);
                                    self.add_data_line(value);
                                } else if value.len() <= self.max_event_bytes {
                                    lent = Some(value);
                                    self.has_data = true;
                                } else {
                                    self.add_data_line(value);
                                }
                            }
                            Line::Dispatch => {
                                self.dispatch(lent.take(), &mut |e| on_event(e, at));
                            }
                        }
                    } else {
                        self.push_line(head);
                        let line = std::mem::take(&mut self.line);
                        match self.process_line(&line) {
                            Line::Nothing => {}
                            Line::Data(value) => {
                                self.materialize(&mut lent);
                                self.add_data_line(value);
                            }
                            Line::Dispatch => {
                                self.dispatch(lent.take(), &mut |e| on_event(e, at));
                            }
                        }
                        self.line = line;
                        self.line.clear();
                        self.line_overflow = false;
                    }
                }
                None => {
                    if self.data_open {
                        self.append_data(chunk);
                    } else {
                        self.push_line(chunk);
                        self.open_data_line(&mut lent);
                    }
                    chunk = &[];
                }
            }
        }
        self.materialize(&mut lent);
    }

    /// Whether the stream ended in the middle of an event (bytes after the last dispatched one).
    /// Per the SSE spec such an unfinished event is discarded, not dispatched.
    pub fn has_partial_event(&self) -> bool {
        !self.line.is_empty()
            || self.line_overflow
            || self.data_open
            || self.has_data
            || self.truncated
    }

    /// Whether the unfinished event is already over the size limit (it will be dispatched as
    /// truncated, so a caller need not hold its bytes back).
    pub fn partial_is_oversized(&self) -> bool {
        self.truncated || self.line_overflow
    }

    fn skip_bom<'c>(&mut self, mut chunk: &'c [u8]) -> &'c [u8] {
        while let Some(&b) = chunk.first() {
            let expected = BOM.get(usize::from(self.bom_seen)).copied();
            if Some(b) == expected {
                self.bom_seen += 1;
                chunk = chunk.get(1..).unwrap_or_default();
                if usize::from(self.bom_seen) == BOM.len() {
                    self.started = true;
                    return chunk;
                }
            } else {
                // Not a BOM after all: the bytes matched so far are data, put them back.
                self.started = true;
                let seen = BOM.get(..usize::from(self.bom_seen)).unwrap_or_default();
                if !seen.is_empty() {
                    self.push_line(seen);
                }
                return chunk;
            }
        }
        chunk
    }

    /// Copies lent data into the event buffer (before more data joins it, or when the chunk
    /// it lives in is about to go).
    fn materialize(&mut self, lent: &mut Option<&[u8]>) {
        if let Some(value) = lent.take() {
            self.data.clear();
            self.data.extend_from_slice(value);
        }
    }

    /// Once an unterminated line is known to be a `data:` line, moves its value into `data`
    /// and keeps appending the rest of the line there as it arrives.
    fn open_data_line(&mut self, lent: &mut Option<&[u8]>) {
        if self.line_overflow || !self.line.starts_with(b"data:") {
            return;
        }
        self.materialize(lent);
        let line = std::mem::take(&mut self.line);
        let value = line.get(5..).unwrap_or_default();
        self.data_open = true;
        self.data_space_pending = true;
        if self.truncated {
            // Later data lines of a truncated event are dropped.
        } else if self.has_data {
            self.push_data(b"\n");
        }
        self.has_data = true;
        self.append_data(value);
        self.line = line;
        self.line.clear();
    }

    /// Appends part of the open data line's value (its leading space stripped once).
    fn append_data(&mut self, mut bytes: &[u8]) {
        if self.data_space_pending && !bytes.is_empty() {
            self.data_space_pending = false;
            bytes = bytes.strip_prefix(b" ").unwrap_or(bytes);
        }
        self.push_data(bytes);
    }

    fn push_data(&mut self, bytes: &[u8]) {
        if self.truncated {
            return;
        }
        if self.data.len() + bytes.len() > self.max_event_bytes {
            self.truncated = true;
            self.data.clear();
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    /// A complete data line's value joins the event's data.
    fn add_data_line(&mut self, value: &[u8]) {
        if self.truncated {
            return;
        }
        let extra = value.len() + usize::from(self.has_data);
        if self.data.len() + extra > self.max_event_bytes {
            self.truncated = true;
            self.data.clear();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }

    fn push_line(&mut self, bytes: &[u8]) {
        if self.line_overflow {
            return;
        }
        // A line longer than the event limit can only produce a truncated event: stop keeping it.
        if self.line.len() + bytes.len() > self.max_event_bytes + 16 {
            self.line_overflow = true;
            self.overflow_is_data = self.line.iter().chain(bytes).take(5).eq(b"data:".iter());
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn process_line<'l>(&mut self, line: &'l [u8]) -> Line<'l> {
        if self.line_overflow {
            // An overlong data line truncates its event; any other overlong line is dropped,
            // exactly as when the same line arrives in one piece.
            if self.overflow_is_data {
                self.truncated = true;
                self.data.clear();
            }
            return Line::Nothing;
        }
        if line.is_empty() {
            return Line::Dispatch;
        }
        if line.first() == Some(&b':') {
            return Line::Nothing; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let (f, v) = line.split_at(i);
                let v = v.get(1..).unwrap_or_default();
                (f, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => return Line::Data(value),
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
                self.has_event = true;
            }
            b"id" if !value.contains(&0) => {
                self.id.clear();
                self.id.extend_from_slice(value);
                self.has_id = true;
            }
            _ => {}
        }
        Line::Nothing
    }

    fn dispatch(&mut self, lent: Option<&[u8]>, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data || self.truncated {
            on_event(SseEvent {
                event: self.has_event.then_some(self.event.as_slice()),
                id: self.has_id.then_some(self.id.as_slice()),
                data: if self.truncated {
                    &[]
                } else {
                    lent.unwrap_or(&self.data)
                },
                truncated: self.truncated,
            });
        }
        self.data.clear();
        self.has_data = false;
        self.truncated = false;
        self.event.clear();
        self.has_event = false;
        self.id.clear();
        self.has_id = false;
    }
}

/// Rebuilds a complete, buffered SSE body with `rewrite` applied to each event's data (`None`
/// keeps it). Events are re-serialised (`event:`, `id:`, `data:` lines); comments are dropped.
pub fn rewrite_buffered(body: &[u8], mut rewrite: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut parser = SseParser::new(body.len().max(1));
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut emit = |event: SseEvent<'_>| {
        let new = rewrite(event.data);
        let data = new.as_deref().unwrap_or(event.data);
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
    };
    parser.feed(body, &mut emit);
    if parser.has_partial_event() {
        parser.feed(b"\n\n", &mut emit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    struct Owned {
        event: Option<Vec<u8>>,
        id: Option<Vec<u8>>,
        data: Vec<u8>,
        truncated: bool,
    }

    fn run(chunks: &[&[u8]], max: usize) -> (Vec<Owned>, bool) {
        let mut p = SseParser::new(max);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push(Owned {
                    event: e.event.map(<[u8]>::to_vec),
                    id: e.id.map(<[u8]>::to_vec),
                    data: e.data.to_vec(),
                    truncated: e.truncated,
                })
            });
        }
        (out, p.has_partial_event())
    }

    fn data(events: &[Owned]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }

    const STREAM: &str = "\u{feff}: keep-alive\r\n\r\nevent: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1,\"message\":\"h\u{e9}llo \u{1F600}\"}}\r\n\r\nid: 2\ndata: {\"a\":\ndata: 1}\n\nretry: 10\ndata:no-space\rdata: x\r\rdata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";

    #[test]
    fn parses_fields_line_endings_comments_and_multiline_data() {
        let (events, partial) = run(&[STREAM.as_bytes()], 1 << 20);
        assert!(!partial);
        assert_eq!(
            data(&events),
            vec![
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1,\"message\":\"h\u{e9}llo \u{1F600}\"}}".to_owned(),
                "{\"a\":\n1}".to_owned(),
                "no-space\nx".to_owned(),
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}".to_owned(),
            ]
        );
        assert_eq!(
            events.first().and_then(|e| e.event.clone()),
            Some(b"message".to_vec())
        );
        assert_eq!(
            events.first().and_then(|e| e.id.clone()),
            Some(b"1".to_vec())
        );
        assert_eq!(
            events.get(1).and_then(|e| e.id.clone()),
            Some(b"2".to_vec())
        );
        assert_eq!(events.get(2).and_then(|e| e.id.clone()), None);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let whole = run(&[STREAM.as_bytes()], 1 << 20);
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(run(&[a, b], 1 << 20), whole, "split at {i}");
        }
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let (a, rest) = bytes.split_at(i);
                let (b, c) = rest.split_at(j - i);
                assert_eq!(run(&[a, b, c], 1 << 20), whole, "split at {i},{j}");
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&singles, 1 << 20), whole);
    }

    #[test]
    fn event_end_offsets_point_just_past_each_blank_line() {
        let chunk = b"data: a\n\n: c\ndata: b\r\n\r\ndata: tail";
        let mut p = SseParser::new(1024);
        let mut ends = Vec::new();
        p.feed_indexed(chunk, |_, end| ends.push(end));
        assert_eq!(ends, vec![9, 24]);
        let mut ends = Vec::new();
        p.feed_indexed(b"\n\n", |_, end| ends.push(end));
        assert_eq!(ends, vec![2]);
    }

    #[test]
    fn a_buffered_stream_is_rebuilt_with_rewritten_events() {
        let body = b"id: 1\ndata: \n\nevent: message\ndata: {\"a\":1}\n\ndata: keep";
        let out = rewrite_buffered(body, |d| (d == b"{\"a\":1}").then(|| b"{\"b\":2}".to_vec()));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "id: 1\ndata: \n\nevent: message\ndata: {\"b\":2}\n\ndata: keep\n\n"
        );
    }

    #[test]
    fn the_size_limit_is_the_same_whole_or_in_chunks_at_its_exact_edge() {
        for (lines, max, truncated) in [
            (vec!["x".repeat(100)], 100, false),
            (vec!["x".repeat(101)], 100, true),
            // Two lines and their joining newline: 49 + 1 + 50 = 100.
            (vec!["a".repeat(49), "b".repeat(50)], 100, false),
            (vec!["a".repeat(50), "b".repeat(50)], 100, true),
        ] {
            let body: String = lines.iter().map(|l| format!("data: {l}\n")).collect();
            let body = format!("{body}\ndata: next\n\n");
            let whole = run(&[body.as_bytes()], max);
            for size in [1, 3, 7, 40, 64] {
                let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
                assert_eq!(run(&chunks, max), whole, "{max} in chunks of {size}");
            }
            let (events, partial) = whole;
            assert!(!partial);
            assert_eq!(events.len(), 2);
            let first = events.first().map(|e| (e.truncated, e.data.len()));
            let want = if truncated {
                (true, 0)
            } else {
                (false, lines.join("\n").len())
            };
            assert_eq!(first, Some(want), "{lines:?} max {max}");
        }
    }

    #[test]
    fn a_data_line_longer_than_a_chunk_arrives_whole_and_unaltered() {
        let text: String = (0..5000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let body = format!("event: message\ndata: {text}\n\n");
        for size in [1, 2, 5, 16, 4096] {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
            let (events, partial) = run(&chunks, 1 << 20);
            assert!(!partial);
            assert_eq!(data(&events), vec![text.clone()], "chunks of {size}");
        }
    }

    #[test]
    fn unfinished_event_at_end_is_reported_not_dispatched() {
        let (events, partial) = run(&[b"data: {\"x\":1}\n"], 1024);
        assert!(events.is_empty());
        assert!(partial);
        let (_, partial) = run(&[b"data: 1\n\ndata: 2"], 1024);
        assert!(partial);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let (events, partial) = run(&[b"event: x\nid: 3\n\n: c\n\n"], 1024);
        assert!(events.is_empty());
        assert!(!partial);
    }

    #[test]
    fn oversized_events_are_truncated_without_buffering_and_parsing_resumes() {
        let big = format!("data: {}\n\ndata: ok\n\n", "x".repeat(5000));
        let chunks: Vec<&[u8]> = big.as_bytes().chunks(7).collect();
        let (events, partial) = run(&chunks, 100);
        assert!(!partial);
        assert_eq!(events.len(), 2);
        assert!(events
            .first()
            .is_some_and(|e| e.truncated && e.data.is_empty()));
        assert_eq!(data(events.get(1..).unwrap_or_default()), vec!["ok"]);
        let multi = format!("data: {}\ndata: {}\n\n", "a".repeat(60), "b".repeat(60));
        let (events, _) = run(&[multi.as_bytes()], 100);
        assert!(events.first().is_some_and(|e| e.truncated));
    }

    #[test]
    fn a_partial_bom_is_data() {
        let (events, _) = run(&[&[0xEF], b"data: 1\n\n"], 1024);
        // The stray byte makes the first line's field name unknown, so nothing is dispatched
        // from it; what matters is that nothing is lost or panics.
        assert!(events.is_empty());
        let (events, _) = run(&[&[0xEF, 0xBB], &[0xBF], b"data: 1\n\n"], 1024);
        assert_eq!(data(&events), vec!["1"]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_and_splits_never_panic_and_agree(
            body in proptest::collection::vec(proptest::sample::select(vec![b'd', b'a', b't', b':', b' ', b'\r', b'\n', b'x', 0xC3, 0xA9, b'i']), 0..200),
            split in 0usize..200,
        ) {
            let split = split.min(body.len());
            let (a, b) = body.split_at(split);
            proptest::prop_assert_eq!(run(&[a, b], 32), run(&[&body], 32));
        }
    }
}

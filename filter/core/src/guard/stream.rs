//! Applying the scanner's hits to a body that arrives in chunks.
//!
//! The scanner says, after each chunk, before which raw offset no future hit can start
//! ([`Scanner::hold_from`]); everything before it is final and is written out, with the queued
//! hits replaced. Only the bytes after it are kept, copied into one reused buffer. Hits are
//! applied in order of their start; a hit that overlaps an already applied one is clipped to
//! what is left of it, and a clipped or continuing hit of the same detector adjoining the
//! previous one adds no second marker. Those rules only look at offsets, so the output does not
//! depend on where the chunks were split.

use super::scan::{Hit, Scanner};
use super::{CallGuard, Findings, Mode};

/// Scans and rewrites one message (a JSON body or an SSE stream) as it arrives.
///
/// ```
/// use mcp_gateway_core::guard::{Action, CallGuard, DetectorSet, Mode};
/// let guard = CallGuard::new(DetectorSet::PII, Action::Redact);
/// let mut stream = guard.stream(Mode::Json);
/// let mut out = Vec::new();
/// stream.feed(br#"{"text":"mail alice@exa"#, &mut out);
/// stream.feed(br#"mple.com now"}"#, &mut out);
/// stream.finish(&mut out);
/// assert_eq!(out, br#"{"text":"mail [REDACTED:email] now"}"#);
/// assert_eq!(stream.findings().total(), 1);
/// ```
#[derive(Debug)]
pub struct GuardStream {
    scan: Scanner,
    /// Raw bytes from `emitted` to the scanner's position, not yet written out.
    held: Vec<u8>,
    /// Everything before this raw offset has been written out (or replaced).
    emitted: u64,
    /// End and detector of the last replacement written, for merging continuations.
    last: Option<(u64, super::Detector)>,
    finished: bool,
}

impl GuardStream {
    pub fn new(guard: CallGuard, mode: Mode) -> GuardStream {
        GuardStream {
            scan: Scanner::new(guard, mode),
            held: Vec::new(),
            emitted: 0,
            last: None,
            finished: false,
        }
    }

    /// Scans `chunk` and appends to `out` whatever is final: the input with redactions applied,
    /// up to the start of anything that could still turn into a match.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let chunk_start = self.scan.pos;
        if self.scan.sink.guard.is_empty() {
            // Nothing to look for (the glue normally does not even create a stream then).
            self.scan.pos += chunk.len() as u64;
            out.extend_from_slice(chunk);
            return;
        }
        self.scan.feed(chunk);
        let upto = self.scan.hold_from();
        self.release(upto, chunk, chunk_start, out);
    }

    /// End of the message: writes out everything still held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let pos = self.scan.pos;
        self.scan.finish();
        self.release(pos, &[], pos, out);
    }

    /// Scans without producing output (descriptions, or a guard that never rewrites).
    pub(super) fn scan_only(&mut self, text: &[u8]) {
        self.scan.feed(text);
        self.scan.finish();
        self.scan.sink.hits.clear();
        self.finished = true;
    }

    /// What was found so far. Counts are final after [`GuardStream::finish`]; `blocked()` may
    /// turn true on any chunk.
    pub fn findings(&self) -> &Findings {
        &self.scan.sink.findings
    }

    pub fn into_findings(self) -> Findings {
        self.scan.sink.findings
    }

    /// Bytes currently held back (for tests and metrics): bounded by the longest word piece.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Writes out everything before `upto`, applying the hits that start before it.
    fn release(&mut self, upto: u64, chunk: &[u8], chunk_start: u64, out: &mut Vec<u8>) {
        let hits = &mut self.scan.sink.hits;
        if hits.len() > 1 {
            super::sort_small(hits, |h| (h.start, std::cmp::Reverse(h.end), h.det, h.cont));
        }
        let src = Source {
            held: &self.held,
            held_start: self.emitted,
            chunk,
            chunk_start,
        };
        let mut emitted = self.emitted;
        let mut applied = 0;
        for h in hits.iter() {
            if h.start >= upto {
                break;
            }
            applied += 1;
            if h.end <= emitted {
                continue;
            }
            let start = h.start.max(emitted);
            src.copy(emitted, start, out);
            if !merges(self.last, start, h) {
                out.extend_from_slice(h.det.replacement().as_bytes());
            }
            emitted = h.end;
            self.last = Some((h.end, h.det));
        }
        hits.drain(..applied);
        if emitted < upto {
            src.copy(emitted, upto, out);
            emitted = upto;
        }
        // Keep [emitted, end of chunk): hits never end past what has arrived, so `emitted` is
        // within the held bytes or the chunk.
        if emitted < chunk_start {
            let off = usize::try_from(emitted - self.emitted).unwrap_or(usize::MAX);
            self.held.drain(..off.min(self.held.len()));
            self.held.extend_from_slice(chunk);
        } else {
            self.held.clear();
            let off = usize::try_from(emitted - chunk_start).unwrap_or(usize::MAX);
            self.held
                .extend_from_slice(chunk.get(off..).unwrap_or_default());
        }
        self.emitted = emitted;
    }
}

/// A clipped or continuing hit of the same detector right after the last replacement extends it.
fn merges(last: Option<(u64, super::Detector)>, start: u64, h: &Hit) -> bool {
    matches!(last, Some((end, det)) if end == start && det == h.det && (h.cont || h.start < start))
}

/// The raw bytes available to copy: the held tail of earlier chunks, then the current chunk.
struct Source<'a> {
    held: &'a [u8],
    held_start: u64,
    chunk: &'a [u8],
    chunk_start: u64,
}

impl Source<'_> {
    fn copy(&self, from: u64, to: u64, out: &mut Vec<u8>) {
        if from >= to {
            return;
        }
        let held_end = self.held_start + self.held.len() as u64;
        if from < held_end {
            let a = usize::try_from(from - self.held_start).unwrap_or(usize::MAX);
            let b = usize::try_from(to.min(held_end) - self.held_start).unwrap_or(usize::MAX);
            out.extend_from_slice(self.held.get(a..b).unwrap_or_default());
        }
        if to > self.chunk_start {
            let a = usize::try_from(from.max(self.chunk_start) - self.chunk_start)
                .unwrap_or(usize::MAX);
            let b = usize::try_from(to - self.chunk_start).unwrap_or(usize::MAX);
            out.extend_from_slice(self.chunk.get(a..b).unwrap_or_default());
        }
    }
}

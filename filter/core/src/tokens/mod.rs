//! Token counting for telemetry: how many model tokens a tool call's arguments, its result and a
//! `tools/list` response put into a model's context.
//!
//! Two methods, chosen in config:
//! - **estimate** (default, always built): a streaming re-implementation of the BPE tokenizers'
//!   split regex ([`scan`]) plus a per-piece price model fitted against the real tokenizer
//!   ([`model`], tables in `tables.rs`). No vocabulary, no allocation; ≈ 40 KB of wasm and
//!   ≈ 6–10 µs per KiB in V8. Within 1 % of tiktoken over the corpus in `tests/corpus`, a few
//!   percent per category; `docs/tokens.md` has the measurements.
//! - **exact** (cargo features `tokenizer-o200k`, `tokenizer-cl100k`, or `tokenizer-exact` for
//!   both): the real BPE from the `tiktoken-rs` crate. Exact, but each vocabulary adds
//!   megabytes to the module, building an encoder costs ≈ 200 ms per VM, and counting is
//!   about ten times slower.
//!
//! What the gateway counts (see [`TokenCounting::count_tool_result`],
//! [`TokenCounting::count_json`]) is what the model sees: the text of a tool result's content
//! blocks, and the compact JSON of arguments and tool definitions; not the JSON-RPC envelope.

mod json;
mod model;
mod scan;
mod tables;

#[cfg(test)]
mod calibrate;
#[cfg(any(feature = "tokenizer-o200k", feature = "tokenizer-cl100k"))]
mod exact;

use serde::Deserialize;

pub use json::{compact_json, tool_result_is_error, ResultTokens};

use model::Estimate;
use scan::{Rules, Scanner};

/// A BPE encoding whose token counts the gateway reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-5 and the o-series.
    #[default]
    O200kBase,
    /// GPT-4 and GPT-3.5-turbo.
    Cl100kBase,
}

impl Encoding {
    pub const ALL: [Encoding; 2] = [Encoding::O200kBase, Encoding::Cl100kBase];

    /// The name used in config and in tiktoken.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    pub fn from_name(name: &str) -> Option<Encoding> {
        Encoding::ALL.into_iter().find(|e| e.as_str() == name)
    }

    fn rules(self) -> Rules {
        match self {
            Encoding::O200kBase => Rules {
                split_case: true,
                slash_trailer: true,
                merge_final_ws: false,
            },
            Encoding::Cl100kBase => Rules {
                split_case: false,
                slash_trailer: false,
                merge_final_ws: true,
            },
        }
    }

    fn tables(self) -> &'static model::Tables {
        match self {
            Encoding::O200kBase => &tables::O200K,
            Encoding::Cl100kBase => &tables::CL100K,
        }
    }
}

/// How tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// The calibrated estimator: small and fast, within a few percent.
    #[default]
    Estimate,
    /// The real BPE; only available for an encoding whose cargo feature was built in.
    Exact,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Estimate => "estimate",
            Method::Exact => "exact",
        }
    }

    /// Whether this build can count `encoding` with this method.
    pub fn available(self, encoding: Encoding) -> bool {
        match (self, encoding) {
            (Method::Estimate, _) => true,
            (Method::Exact, Encoding::O200kBase) => cfg!(feature = "tokenizer-o200k"),
            (Method::Exact, Encoding::Cl100kBase) => cfg!(feature = "tokenizer-cl100k"),
        }
    }
}

/// Token-counting settings as users write them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTokenCounting {
    /// Tokenizer to count for: `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o-series) or
    /// `cl100k_base` (GPT-4, GPT-3.5). Default `o200k_base`.
    pub encoding: Option<String>,
    /// `estimate` (default): calibrated estimator, a few percent off, cheap. `exact`: the real
    /// BPE; the filter must be built with the encoding's cargo feature (`tokenizer-o200k`,
    /// `tokenizer-cl100k`), which adds megabytes to the module.
    pub method: Option<String>,
}

/// Compiled token-counting settings; also the entry point for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounting {
    pub encoding: Encoding,
    pub method: Method,
}

/// A token-counting setting that does not compile; the message starts with the field's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenConfigError {
    #[error("{field}: unknown encoding {value:?}; known: o200k_base, cl100k_base")]
    UnknownEncoding { field: String, value: String },
    #[error("{field}: unknown method {value:?}; known: estimate, exact")]
    UnknownMethod { field: String, value: String },
    #[error(
        "{field}: \"exact\" {encoding} needs the filter built with the `{feature}` cargo feature"
    )]
    ExactUnavailable {
        field: String,
        encoding: &'static str,
        feature: &'static str,
    },
}

impl TokenCounting {
    /// Compiles the raw settings; `path` is where they sit in the plugin config (e.g.
    /// `telemetry.tokens`), used to name fields in errors.
    pub fn compile(raw: &RawTokenCounting, path: &str) -> Result<Self, TokenConfigError> {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        let encoding = match raw.encoding.as_deref() {
            None => Encoding::default(),
            Some(name) => {
                Encoding::from_name(name).ok_or_else(|| TokenConfigError::UnknownEncoding {
                    field: field("encoding"),
                    value: name.to_owned(),
                })?
            }
        };
        let method = match raw.method.as_deref() {
            None | Some("estimate") => Method::Estimate,
            Some("exact") => Method::Exact,
            Some(other) => {
                return Err(TokenConfigError::UnknownMethod {
                    field: field("method"),
                    value: other.to_owned(),
                })
            }
        };
        if !method.available(encoding) {
            return Err(TokenConfigError::ExactUnavailable {
                field: field("method"),
                encoding: encoding.as_str(),
                feature: match encoding {
                    Encoding::O200kBase => "tokenizer-o200k",
                    Encoding::Cl100kBase => "tokenizer-cl100k",
                },
            });
        }
        Ok(TokenCounting { encoding, method })
    }

    /// A fresh incremental counter.
    pub fn counter(&self) -> TokenCounter {
        TokenCounter::with_method(self.encoding, self.method)
    }

    /// Tokens in `text` (bytes; invalid UTF-8 is tolerated).
    pub fn count_text(&self, text: &[u8]) -> u64 {
        let mut c = self.counter();
        c.feed(text);
        c.finish()
    }
}

/// Counts the tokens of a text that arrives in chunks.
///
/// Feeding a text in any chunks (split anywhere, even inside a UTF-8 character) gives the same
/// count as feeding it whole. The estimating counter holds no heap memory; the exact one buffers
/// the text until [`TokenCounter::finish`].
#[derive(Debug, Clone)]
pub struct TokenCounter {
    inner: Inner,
}

// The estimator (the default, on every response) must not allocate, so it is the big variant
// kept inline; the exact one is a buffer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Inner {
    Estimate {
        scanner: Scanner,
        sink: Estimate,
    },
    #[cfg(any(feature = "tokenizer-o200k", feature = "tokenizer-cl100k"))]
    Exact(exact::Buffered),
}

impl TokenCounter {
    /// An estimating counter for `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        TokenCounter {
            inner: Inner::Estimate {
                scanner: Scanner::new(encoding.rules()),
                sink: Estimate::new(encoding.tables()),
            },
        }
    }

    /// A counter using `method`, falling back to the estimator when this build lacks it
    /// ([`TokenCounting::compile`] rejects that case up front).
    pub fn with_method(encoding: Encoding, method: Method) -> Self {
        #[cfg(any(feature = "tokenizer-o200k", feature = "tokenizer-cl100k"))]
        if method == Method::Exact && method.available(encoding) {
            return TokenCounter {
                inner: Inner::Exact(exact::Buffered::new(encoding)),
            };
        }
        let _ = method;
        TokenCounter::new(encoding)
    }

    /// Feeds the next bytes of the text.
    pub fn feed(&mut self, bytes: &[u8]) {
        match &mut self.inner {
            Inner::Estimate { scanner, sink } => scanner.feed(bytes, sink),
            #[cfg(any(feature = "tokenizer-o200k", feature = "tokenizer-cl100k"))]
            Inner::Exact(b) => b.feed(bytes),
        }
    }

    /// Ends the text and returns its token count. The counter is then empty and can count the
    /// next text.
    pub fn finish(&mut self) -> u64 {
        match &mut self.inner {
            Inner::Estimate { scanner, sink } => {
                scanner.finish(sink);
                sink.take()
            }
            #[cfg(any(feature = "tokenizer-o200k", feature = "tokenizer-cl100k"))]
            Inner::Exact(b) => b.finish(),
        }
    }
}

/// Estimated tokens of `text` under `encoding`.
pub fn estimate(encoding: Encoding, text: &[u8]) -> u64 {
    let mut c = TokenCounter::new(encoding);
    c.feed(text);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Texts that stress the split rules: multi-byte characters of every width, case changes,
    /// whitespace before words, digits and punctuation, CRLF, JSON punctuation, blob runs.
    const FIXTURES: &[&str] = &[
        "Crème brûlée — 12 € 😀👍🏽 日本語のテキスト, Ελληνικά и русский.\r\n\tTabbed\u{a0}nbsp",
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}\n",
        "fn parseHTTPResponse(x: &[u8]) -> Result<(), Error> {\n    let y = x?;  // don't\n}\n\n\n   ",
        "iVBORw0KGgoAAAANSUhEUgAAAQAAAADACAYAAAB3dea1bd9f0c2e4a7b8c9d0e1f2a3b4c5d6e7f8a9b0 end",
        "a  b   c\t\td 123456789 1.5e-3 ,\n/ x",
    ];

    /// Building blocks of the fast-path property test: mostly ASCII, one or a few bytes each.
    const FRAGMENTS: &[&[u8]] = &[
        b"a",
        b"e",
        b"x",
        b"k",
        b"f",
        b"A",
        b"B",
        b"Q",
        b"0",
        b"7",
        b" ",
        b" ",
        b"\n",
        b"\r",
        b"\t",
        b"\x0b",
        b".",
        b"_",
        b"\"",
        b"'",
        b"/",
        b"-",
        b"(",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"!",
        b"\x00",
        b"\x7f",
        b"the ",
        b"Word",
        b"camelCase",
        b"\":\"",
        b"},\n  ",
        b"\xc3\xa9",
        b"\xc3\x89",
        b"\xe2\x80\x94",
        b"\xe6\x97\xa5",
        b"\xf0\x9f\x98\x80",
        b"\xff",
        b"\xc3",
        b"\xd0\xb6",
        b"\xc2\xa0",
        b"\xd9\xa3",
    ];

    /// The count with the scanner's fast paths turned off: the plain state machine.
    fn slow(encoding: Encoding, bytes: &[u8]) -> u64 {
        let mut scanner = Scanner::new(encoding.rules());
        scanner.no_fast_paths = true;
        let mut sink = Estimate::new(encoding.tables());
        scanner.feed(bytes, &mut sink);
        scanner.finish(&mut sink);
        sink.take()
    }

    fn chunked(encoding: Encoding, chunks: &[&[u8]]) -> u64 {
        let mut c = TokenCounter::new(encoding);
        for chunk in chunks {
            c.feed(chunk);
        }
        c.finish()
    }

    #[test]
    fn every_split_point_counts_like_the_whole_text() {
        for encoding in Encoding::ALL {
            for text in FIXTURES {
                let bytes = text.as_bytes();
                let whole = estimate(encoding, bytes);
                assert!(whole > 0);
                for i in 0..=bytes.len() {
                    let (a, b) = bytes.split_at(i);
                    assert_eq!(chunked(encoding, &[a, b]), whole, "{text:?} split at {i}");
                }
                let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
                assert_eq!(chunked(encoding, &bytewise), whole, "{text:?} byte by byte");
                assert_eq!(slow(encoding, bytes), whole, "{text:?} without fast paths");
            }
        }
    }

    #[test]
    fn fast_paths_count_like_the_plain_state_machine_on_the_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        for dir in std::fs::read_dir(root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(dir).unwrap() {
                let path = file.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                for encoding in Encoding::ALL {
                    assert_eq!(
                        slow(encoding, &bytes),
                        estimate(encoding, &bytes),
                        "{path:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_finished_counter_starts_over() {
        let mut c = TokenCounter::new(Encoding::O200kBase);
        c.feed(b"hello world, this is the first text");
        let first = c.finish();
        c.feed(b"hello world, this is the first text");
        assert_eq!(c.finish(), first);
        assert_eq!(c.finish(), 0);
    }

    #[test]
    fn short_common_texts_count_within_a_token_of_tiktoken() {
        // Reference counts from tiktoken (o200k_base, cl100k_base).
        for (text, o200k, cl100k) in [
            ("", 0, 0),
            ("hello", 1, 1),
            ("Hello, world!", 4, 4),
            ("The quick brown fox jumps over the lazy dog.", 10, 10),
            ("1234567", 3, 3),
            ("{\"a\":1}", 5, 5),
        ] {
            for (encoding, real) in [(Encoding::O200kBase, o200k), (Encoding::Cl100kBase, cl100k)] {
                let est = estimate(encoding, text.as_bytes());
                assert!(est.abs_diff(real) <= 1, "{text:?}: {est} vs {real}");
            }
        }
    }

    #[test]
    fn invalid_utf8_is_counted_not_rejected() {
        for bytes in [
            &b"\xff\xfe abc"[..],
            b"abc \xe2\x82",
            b"\xc3",
            b"\xed\xa0\x80x",
            b"\xf4\x90\x80\x80",
        ] {
            let n = estimate(Encoding::O200kBase, bytes);
            assert!(n >= 1, "{bytes:?}");
        }
    }

    #[test]
    fn config_defaults_to_estimating_o200k() {
        let cfg = TokenCounting::compile(&RawTokenCounting::default(), "tokens");
        assert_eq!(
            cfg,
            Ok(TokenCounting {
                encoding: Encoding::O200kBase,
                method: Method::Estimate
            })
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        for (raw, want) in [
            (
                r#"{"encoding":"p50k_base"}"#,
                "telemetry.tokens.encoding: unknown encoding",
            ),
            (
                r#"{"method":"guess"}"#,
                "telemetry.tokens.method: unknown method",
            ),
        ] {
            let raw: RawTokenCounting = serde_json::from_str(raw).unwrap();
            let err = TokenCounting::compile(&raw, "telemetry.tokens").unwrap_err();
            assert!(err.to_string().starts_with(want), "{err}");
        }
        assert!(serde_json::from_str::<RawTokenCounting>(r#"{"encodng":"x"}"#).is_err());
    }

    #[test]
    fn exact_method_is_rejected_unless_its_encoding_is_built_in() {
        for encoding in Encoding::ALL {
            let raw = RawTokenCounting {
                encoding: Some(encoding.as_str().into()),
                method: Some("exact".into()),
            };
            let got = TokenCounting::compile(&raw, "tokens");
            if Method::Exact.available(encoding) {
                assert_eq!(got.map(|c| c.method), Ok(Method::Exact));
            } else {
                let err = got.unwrap_err().to_string();
                assert!(err.starts_with("tokens.method: \"exact\""), "{err}");
                assert!(err.contains("tokenizer-"), "{err}");
            }
        }
    }

    #[cfg(any(feature = "tokenizer-o200k", feature = "tokenizer-cl100k"))]
    #[test]
    fn exact_method_counts_like_tiktoken_in_any_chunks() {
        for encoding in Encoding::ALL {
            if !Method::Exact.available(encoding) {
                continue;
            }
            let bpe = match encoding {
                Encoding::O200kBase => tiktoken_rs::o200k_base().unwrap(),
                Encoding::Cl100kBase => tiktoken_rs::cl100k_base().unwrap(),
            };
            for text in FIXTURES {
                let want = bpe.encode_ordinary(text).len() as u64;
                let mut c = TokenCounter::with_method(encoding, Method::Exact);
                for chunk in text.as_bytes().chunks(7) {
                    c.feed(chunk);
                }
                assert_eq!(c.finish(), want, "{text:?}");
            }
        }
    }

    #[test]
    fn both_encodings_parse_by_name() {
        for e in Encoding::ALL {
            assert_eq!(Encoding::from_name(e.as_str()), Some(e));
            let raw = RawTokenCounting {
                encoding: Some(e.as_str().into()),
                method: None,
            };
            assert_eq!(TokenCounting::compile(&raw, "").map(|c| c.encoding), Ok(e));
        }
    }

    /// `bytes` cut at the (sorted) points the indices pick.
    fn split_at_points<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        chunks
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_in_arbitrary_chunks_count_like_one_shot(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            for encoding in Encoding::ALL {
                let whole = estimate(encoding, &bytes);
                let chunks = split_at_points(&bytes, &cuts);
                prop_assert_eq!(chunked(encoding, &chunks), whole);
                prop_assert_eq!(slow(encoding, &bytes), whole);
                // A count never exceeds one token per byte by much, nor is zero for text.
                prop_assert!(whole <= 2 * bytes.len() as u64 + 1);
            }
        }

        #[test]
        fn arbitrary_text_in_arbitrary_chunks_counts_like_one_shot(
            text in "\\PC{0,200}",
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = text.as_bytes();
            let at = cut.index(bytes.len() + 1);
            for encoding in Encoding::ALL {
                let (a, b) = bytes.split_at(at);
                prop_assert_eq!(chunked(encoding, &[a, b]), estimate(encoding, bytes));
                prop_assert_eq!(slow(encoding, bytes), estimate(encoding, bytes));
            }
        }

        #[test]
        fn the_ascii_fast_path_counts_like_the_plain_state_machine_in_any_chunks(
            pieces in proptest::collection::vec((0..FRAGMENTS.len(), 1usize..24), 0..60),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            // Runs of letters of both cases, digits, every kind of whitespace and punctuation
            // (JSON structure, slashes after newlines), with accented letters, symbols, CJK,
            // emoji and broken UTF-8 mixed in: every place the fast path hands over.
            let mut bytes = Vec::new();
            for (k, times) in pieces {
                for _ in 0..times {
                    bytes.extend_from_slice(FRAGMENTS[k]);
                }
            }
            for encoding in Encoding::ALL {
                let want = slow(encoding, &bytes);
                prop_assert_eq!(estimate(encoding, &bytes), want);
                let chunks = split_at_points(&bytes, &cuts);
                prop_assert_eq!(chunked(encoding, &chunks), want);
            }
        }

        #[test]
        fn json_helpers_never_panic_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let t = TokenCounting::default();
            let _ = t.count_json(&bytes);
            let _ = t.count_tool_result(&bytes);
            let _ = t.count_tools_list(&bytes);
            let _ = t.count_tool_arguments(&bytes);
        }

        #[test]
        fn json_helpers_never_panic_on_json_like_text(
            text in r#"[\[\]{}",:\\u0-9a-fA-F tnrl\n]{0,200}"#,
        ) {
            let t = TokenCounting::default();
            let _ = t.count_json(text.as_bytes());
            let wrapped = format!(r#"{{"result":{{"content":[{{"type":"text","text":"{text}"}}]}}}}"#);
            let _ = t.count_tool_result(wrapped.as_bytes());
        }
    }
}

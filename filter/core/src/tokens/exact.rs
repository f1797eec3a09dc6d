//! Exact counts with the real BPE (cargo features `tokenizer-o200k`, `tokenizer-cl100k`):
//! tiktoken-rs, whose vocabularies are compiled into the module.
//!
//! Costs, measured in `docs/tokens.md`: the vocabularies add megabytes to the wasm module
//! (V8 compiles it at every start), building an encoder takes ≈ 200 ms on first use in each VM,
//! and encoding is about ten times slower than the estimator. The BPE needs the
//! whole text, so the streaming counter buffers it until `finish`.

use std::collections::HashSet;
use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use super::Encoding;

/// The encoder for `encoding`, built once per VM on first use. `None` if it failed to build
/// (it does not with the embedded files; the caller then falls back to the estimator).
/// Only the encodings whose feature is on are referenced, so the linker drops the others'
/// vocabularies (each one is megabytes).
fn bpe(encoding: Encoding) -> Option<&'static CoreBPE> {
    match encoding {
        #[cfg(feature = "tokenizer-o200k")]
        Encoding::O200kBase => {
            static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
            O200K
                .get_or_init(|| tiktoken_rs::o200k_base().ok())
                .as_ref()
        }
        #[cfg(feature = "tokenizer-cl100k")]
        Encoding::Cl100kBase => {
            static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
            CL100K
                .get_or_init(|| tiktoken_rs::cl100k_base().ok())
                .as_ref()
        }
        #[allow(unreachable_patterns)] // when both features are on
        _ => None,
    }
}

/// Exact token count of `text`, or `None` if the encoder is unavailable or gave up (its
/// regex engine has a backtracking limit that pathological input can hit).
pub(super) fn count(encoding: Encoding, text: &str) -> Option<u64> {
    // `encode` reports regex failures as errors, where `encode_ordinary` would panic.
    let (tokens, _) = bpe(encoding)?.encode(text, &HashSet::new()).ok()?;
    u64::try_from(tokens.len()).ok()
}

/// A counter that buffers the text and counts it exactly at the end.
#[derive(Debug, Clone)]
pub(super) struct Buffered {
    encoding: Encoding,
    text: Vec<u8>,
}

impl Buffered {
    pub fn new(encoding: Encoding) -> Self {
        Buffered {
            encoding,
            text: Vec::new(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.text.extend_from_slice(bytes);
    }

    pub fn finish(&mut self) -> u64 {
        let text = String::from_utf8_lossy(&self.text);
        let n = count(self.encoding, &text)
            .unwrap_or_else(|| super::estimate(self.encoding, self.text.as_slice()));
        self.text.clear();
        n
    }
}

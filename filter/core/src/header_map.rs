//! The proxy-wasm header-map wire form, read without trusting it: a count, a (key length, value
//! length) pair per entry, then each key and value followed by a NUL; all lengths little-endian
//! u32. The host sends it for "all request headers" in one call, which is far cheaper inside V8
//! than one call (and one allocation callback) per header.
//!
//! Values are bytes: HTTP/1.1 allows obs-text (0x80–0xFF) in header values and Envoy passes it
//! on, so nothing here assumes UTF-8 (the SDK's own decoder panics on it, which kills the VM).

use std::borrow::Cow;

/// Entries of a serialized header map, borrowed from it. A malformed map (lengths that run past
/// the end) yields the entries before the fault.
pub fn pairs(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        let arr: [u8; 4] = b.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(arr)).ok()
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    // Each entry takes at least 10 bytes (two lengths and two NULs): a count beyond that is junk.
    let count = count.min(bytes.len() / 10);
    let mut out = Vec::with_capacity(count);
    let mut data = 4 + count * 8;
    for n in 0..count {
        let (Some(klen), Some(vlen)) = (word(4 + n * 8), word(8 + n * 8)) else {
            break;
        };
        let key = data.checked_add(klen).and_then(|end| bytes.get(data..end));
        let vstart = data.saturating_add(klen).saturating_add(1);
        let value = vstart
            .checked_add(vlen)
            .and_then(|end| bytes.get(vstart..end));
        let (Some(key), Some(value)) = (key, value) else {
            break;
        };
        out.push((key, value));
        data = vstart.saturating_add(vlen).saturating_add(1);
    }
    out
}

/// A header value as text: bytes that are not UTF-8 become U+FFFD, so a garbled value still
/// exists (an `Origin` of junk is a foreign origin, not a missing one) and compares unequal to
/// anything the gateway expects.
pub fn text(value: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(value)
}

/// The first value of `name` in decoded `pairs`, as [`text`].
pub fn value<'a>(pairs: &[(&[u8], &'a [u8])], name: &str) -> Option<Cow<'a, str>> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| text(v))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (entries.len() as u32).to_le_bytes().to_vec();
        for (k, v) in entries {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in entries {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn entries_come_back_in_order_with_bytes_that_are_not_utf8_intact() {
        let entries: [(&[u8], &[u8]); 4] = [
            (b":method", b"POST"),
            (b"origin", b"caf\xe9 \xff"),
            (b"empty", b""),
            (b"content-type", b"application/json"),
        ];
        let map = encode(&entries);
        assert_eq!(pairs(&map), entries.to_vec());
        let decoded = pairs(&map);
        assert_eq!(
            value(&decoded, "Origin").as_deref(),
            Some("caf\u{fffd} \u{fffd}")
        );
        assert_eq!(text(b"caf\xe9"), "caf\u{fffd}");
        assert_eq!(value(&decoded, "absent"), None);
    }

    #[test]
    fn a_truncated_or_lying_map_yields_what_is_whole() {
        let map = encode(&[(b"a", b"1"), (b"b", b"2")]);
        assert_eq!(pairs(&map[..map.len() - 3]), vec![(&b"a"[..], &b"1"[..])]);
        assert!(pairs(&[]).is_empty());
        assert!(pairs(&[0xff, 0xff, 0xff, 0xff]).is_empty());
        let mut lying = map.clone();
        lying[4] = 200; // the first key claims 200 bytes
        assert!(pairs(&lying).is_empty());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = pairs(&bytes);
        }

        #[test]
        fn any_entries_round_trip(entries in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..40)), 0..12)) {
            let refs: Vec<(&[u8], &[u8])> = entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            let map = encode(&refs);
            prop_assert_eq!(pairs(&map), refs);
        }
    }
}

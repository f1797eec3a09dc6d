//! Decodes a serialized `google.protobuf.Struct` into JSON.
//!
//! Envoy hands dynamic metadata to wasm (`get_property(["metadata", "filter_metadata", …])`) as
//! the protobuf wire form of a `Struct`. The `trustEnvoyJwtAuthn` mode reads the JWT payload that
//! Envoy's `jwt_authn` filter verified and stored there, so it needs exactly this much protobuf:
//! `Struct { map<string, Value> fields = 1 }`, `Value { oneof null=1, number=2, string=3,
//! bool=4, struct=5, list=6 }`, `ListValue { repeated Value values = 1 }`.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused (a hostile or corrupt buffer must not recurse forever).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf Struct")]
pub struct Malformed;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or(Malformed)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed)?;
        let out = self.bytes.get(self.at..end).ok_or(Malformed)?;
        self.at = end;
        Ok(out)
    }

    fn delimited(&mut self) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
        self.take(n)
    }

    /// Skips a field of wire type `wire` that the decoder does not use.
    fn skip(&mut self, wire: u64) -> Result<(), Malformed> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.delimited().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            _ => Err(Malformed),
        }
    }
}

/// Decodes a serialized `Struct`.
pub fn struct_to_json(bytes: &[u8]) -> Result<Map<String, Value>, Malformed> {
    decode_struct(bytes, 0)
}

fn decode_struct(bytes: &[u8], depth: usize) -> Result<Map<String, Value>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let mut r = Reader { bytes, at: 0 };
    let mut out = Map::new();
    while !r.done() {
        let key = r.varint()?;
        if key == (1 << 3) | 2 {
            let entry = r.delimited()?;
            let (k, v) = decode_entry(entry, depth)?;
            out.insert(k, v);
        } else {
            r.skip(key & 7)?;
        }
    }
    Ok(out)
}

fn decode_entry(bytes: &[u8], depth: usize) -> Result<(String, Value), Malformed> {
    let mut r = Reader { bytes, at: 0 };
    let mut key = String::new();
    let mut value = Value::Null;
    while !r.done() {
        let tag = r.varint()?;
        match tag {
            0x0a => key = String::from_utf8(r.delimited()?.to_vec()).map_err(|_| Malformed)?,
            0x12 => value = decode_value(r.delimited()?, depth + 1)?,
            other => r.skip(other & 7)?,
        }
    }
    Ok((key, value))
}

fn decode_value(bytes: &[u8], depth: usize) -> Result<Value, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let mut r = Reader { bytes, at: 0 };
    let mut value = Value::Null;
    while !r.done() {
        let tag = r.varint()?;
        value = match tag {
            0x08 => {
                r.varint()?;
                Value::Null
            }
            0x11 => {
                let raw = r.take(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                let n = f64::from_le_bytes(b);
                // Whole numbers (iat, exp) come back as integers, as they were in the token.
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    Value::Number(Number::from(n as i64))
                } else {
                    Number::from_f64(n).map_or(Value::Null, Value::Number)
                }
            }
            0x1a => {
                Value::String(String::from_utf8(r.delimited()?.to_vec()).map_err(|_| Malformed)?)
            }
            0x20 => Value::Bool(r.varint()? != 0),
            0x2a => Value::Object(decode_struct(r.delimited()?, depth + 1)?),
            0x32 => {
                let list = r.delimited()?;
                let mut lr = Reader { bytes: list, at: 0 };
                let mut items = Vec::new();
                while !lr.done() {
                    let t = lr.varint()?;
                    if t == 0x0a {
                        items.push(decode_value(lr.delimited()?, depth + 1)?);
                    } else {
                        lr.skip(t & 7)?;
                    }
                }
                Value::Array(items)
            }
            other => {
                r.skip(other & 7)?;
                value
            }
        };
    }
    Ok(value)
}

/// The JSON of `metadata.filter_metadata[filter][key]` in a serialized
/// `envoy.config.core.v3.Metadata` (what wasm reads as the `metadata` property), e.g. the JWT
/// payload Envoy's `jwt_authn` filter verified and stored under `payload_in_metadata`.
pub fn filter_metadata_json(metadata: &[u8], filter: &str, key: &str) -> Option<Vec<u8>> {
    let mut r = Reader {
        bytes: metadata,
        at: 0,
    };
    while !r.done() {
        let tag = r.varint().ok()?;
        if tag != 0x0a {
            r.skip(tag & 7).ok()?;
            continue;
        }
        // map<string, Struct> filter_metadata = 1: an entry is {1: key, 2: Struct}.
        let entry = r.delimited().ok()?;
        let mut e = Reader {
            bytes: entry,
            at: 0,
        };
        let (mut name, mut value) = (None, None);
        while !e.done() {
            match e.varint().ok()? {
                0x0a => name = Some(e.delimited().ok()?),
                0x12 => value = Some(e.delimited().ok()?),
                other => e.skip(other & 7).ok()?,
            }
        }
        if name == Some(filter.as_bytes()) {
            let fields = struct_to_json(value.unwrap_or_default()).ok()?;
            return serde_json::to_vec(fields.get(key)?).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn delimited(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    fn string_value(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        delimited(&mut v, 0x1a, s.as_bytes());
        v
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        delimited(&mut e, 0x0a, key.as_bytes());
        delimited(&mut e, 0x12, value);
        let mut out = Vec::new();
        delimited(&mut out, 0x0a, &e);
        out
    }

    #[test]
    fn a_jwt_payload_struct_decodes_to_its_claims() {
        let mut exp = vec![0x11];
        exp.extend_from_slice(&1_900_000_000f64.to_le_bytes());
        let mut roles_list = Vec::new();
        delimited(&mut roles_list, 0x0a, &string_value("admin"));
        delimited(&mut roles_list, 0x0a, &string_value("reader"));
        let mut roles = Vec::new();
        delimited(&mut roles, 0x32, &roles_list);
        let mut nested_struct = entry("tenant", &string_value("acme"));
        let mut nested = Vec::new();
        delimited(&mut nested, 0x2a, &nested_struct);
        nested_struct.clear();
        let mut bytes = entry("sub", &string_value("alice"));
        bytes.extend(entry("exp", &exp));
        bytes.extend(entry("roles", &roles));
        bytes.extend(entry("org", &nested));
        bytes.extend(entry("admin", &[0x20, 0x01]));
        let map = struct_to_json(&bytes).unwrap();
        assert_eq!(map["sub"], "alice");
        assert_eq!(map["exp"], 1_900_000_000i64);
        assert_eq!(map["roles"], serde_json::json!(["admin", "reader"]));
        assert_eq!(map["org"]["tenant"], "acme");
        assert_eq!(map["admin"], true);
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error() {
        let bytes = entry("sub", &string_value("alice"));
        for cut in 0..bytes.len() {
            let _ = struct_to_json(&bytes[..cut]);
        }
        assert!(struct_to_json(&[0x0a, 0x05, 0x01]).is_err());
        assert!(struct_to_json(&[0xff; 11]).is_err());
    }

    #[test]
    fn the_jwt_authn_payload_is_found_in_serialized_metadata() {
        let payload = entry("sub", &string_value("alice"));
        let mut payload_value = Vec::new();
        delimited(&mut payload_value, 0x2a, &payload);
        let filter_struct = entry("jwt_payload", &payload_value);
        let mut map_entry = Vec::new();
        delimited(&mut map_entry, 0x0a, b"envoy.filters.http.jwt_authn");
        delimited(&mut map_entry, 0x12, &filter_struct);
        let mut metadata = Vec::new();
        delimited(&mut metadata, 0x0a, b"");
        metadata.clear();
        let mut other = Vec::new();
        delimited(&mut other, 0x0a, b"other.filter");
        delimited(&mut other, 0x12, &entry("x", &string_value("y")));
        delimited(&mut metadata, 0x0a, &other);
        delimited(&mut metadata, 0x0a, &map_entry);
        let json =
            filter_metadata_json(&metadata, "envoy.filters.http.jwt_authn", "jwt_payload").unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json).unwrap()["sub"],
            "alice"
        );
        assert_eq!(
            filter_metadata_json(&metadata, "envoy.filters.http.jwt_authn", "nope"),
            None
        );
        assert_eq!(
            filter_metadata_json(&metadata, "absent", "jwt_payload"),
            None
        );
        assert_eq!(filter_metadata_json(&[0xff, 0xff], "a", "b"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = struct_to_json(&bytes);
            let _ = filter_metadata_json(&bytes, "envoy.filters.http.jwt_authn", "jwt_payload");
        }
    }
}

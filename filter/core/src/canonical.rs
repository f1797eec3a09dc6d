//! Canonical JSON: one spelling per JSON value, so equal arguments and schemas hash equally.
//!
//! Object members are sorted by key (UTF-8 byte order), whitespace is dropped, strings are
//! re-escaped one way (`\u00e9` and `é` are the same string). Numbers are normalised from their
//! text, exactly, never through a float: an integer literal is kept as written (JSON integers
//! have one spelling), a literal with a fraction or exponent becomes `0.<digits>e<exp>` with
//! leading and trailing zeros dropped, so `1e2`, `100.0` and `0.1e3` are one value while `0.1` and
//! `0.1000000000000000000001`, or 2^64 and 2^64 + 1, stay apart. Integers and floats stay
//! distinct (`1` ≠ `1.0`): a tool may treat them differently. A cache key may miss, but must never
//! merge two inputs that could give different results.
//! Duplicate keys are refused: the gateway and the upstream could read them differently.
//! Nesting is bounded by serde_json's recursion limit (128), so hostile input cannot exhaust the
//! stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::jsonrpc::push_json_string;

/// Why a text has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    #[error("number {0:?} has an exponent beyond range")]
    Number(String),
}

/// Appends the canonical form of the JSON text `json` to `out`.
pub fn canonicalize_into(json: &str, out: &mut String) -> Result<(), CanonicalError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let mut fault = None;
    let mut numbers = Numbers { text: json, pos: 0 };
    let result = Canon {
        out: &mut *out,
        fault: &mut fault,
        numbers: &mut numbers,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (result, fault) {
        (_, Some(fault)) => Err(fault),
        (Err(e), None) => Err(CanonicalError::Json(e.to_string())),
        (Ok(()), None) => Ok(()),
    }
}

/// The canonical form of the JSON text `json`.
pub fn canonicalize(json: &str) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(json.len());
    canonicalize_into(json, &mut out)?;
    Ok(out)
}

/// Deserializes `json` into `T` only if it is a JSON object: serde's derived structs also
/// accept arrays (members by position), which would let `[true]` stand for `{"first": true}`.
pub(crate) fn parse_object<'a, T: serde::Deserialize<'a>>(json: &'a str) -> Option<T> {
    if json.trim_start().starts_with('{') {
        serde_json::from_str(json).ok()
    } else {
        None
    }
}

/// The number literals of a JSON text in document order, found lazily. serde_json reports
/// numbers only as parsed values (u64, i64, f64); their text, needed for an exact form, is taken
/// from here: serde visits values in document order, so the n-th number visited is the n-th
/// literal outside strings.
struct Numbers<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Numbers<'t> {
    fn next_literal(&mut self) -> Option<&'t str> {
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        let mut in_string = false;
        while let Some(&c) = bytes.get(i) {
            if in_string {
                match c {
                    b'\\' => i += 2,
                    b'"' => {
                        in_string = false;
                        i += 1;
                    }
                    _ => i += 1,
                }
                continue;
            }
            match c {
                b'"' => {
                    in_string = true;
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while matches!(
                        bytes.get(i),
                        Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    ) {
                        i += 1;
                    }
                    self.pos = i;
                    return self.text.get(start..i);
                }
                _ => i += 1,
            }
        }
        self.pos = i;
        None
    }
}

/// Writes the canonical form of a number literal serde_json has already validated.
fn push_number(out: &mut String, literal: &str) -> Result<(), CanonicalError> {
    let bad = || CanonicalError::Number(literal.chars().take(40).collect());
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    if frac.is_none() && exponent.is_none() {
        out.push_str(literal);
        return Ok(());
    }
    let exponent: i64 = match exponent {
        Some(e) => e.parse().map_err(|_| bad())?,
        None => 0,
    };
    let digits = format!("{int}{}", frac.unwrap_or(""));
    let significant = digits.trim_start_matches('0');
    let leading_zeros = digits.len() - significant.len();
    let significant = significant.trim_end_matches('0');
    if negative {
        out.push('-');
    }
    if significant.is_empty() {
        out.push_str("0.0");
        return Ok(());
    }
    // value = 0.<significant> × 10^point
    let point = i64::try_from(int.len())
        .ok()
        .and_then(|l| l.checked_sub(i64::try_from(leading_zeros).ok()?))
        .and_then(|p| p.checked_add(exponent))
        .ok_or_else(bad)?;
    out.push_str("0.");
    out.push_str(significant);
    out.push('e');
    out.push_str(&point.to_string());
    Ok(())
}

/// Writes one value canonically. `fault` receives the first structured reason for failing (the
/// serde error raised with it carries none).
struct Canon<'o, 't> {
    out: &'o mut String,
    fault: &'o mut Option<CanonicalError>,
    numbers: &'o mut Numbers<'t>,
}

impl<'t> Canon<'_, 't> {
    fn fail<E: de::Error>(self, fault: CanonicalError) -> E {
        let e = E::custom(&fault);
        if self.fault.is_none() {
            *self.fault = Some(fault);
        }
        e
    }

    fn number<E: de::Error>(self) -> Result<(), E> {
        let Some(literal) = self.numbers.next_literal() else {
            return Err(E::custom("number literal not found"));
        };
        match push_number(self.out, literal) {
            Ok(()) => Ok(()),
            Err(fault) => Err(self.fail(fault)),
        }
    }

    fn child<'a>(&'a mut self, out: Option<&'a mut String>) -> Canon<'a, 't> {
        Canon {
            out: match out {
                Some(o) => o,
                None => &mut *self.out,
            },
            fault: &mut *self.fault,
            numbers: &mut *self.numbers,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Canon<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Canon<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.number()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.number()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.number()
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        push_json_string(self.out, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push(',');
            }
            if seq.next_element_seed(self.child(None))?.is_none() {
                self.out.truncate(at);
                break;
            }
            first = false;
        }
        self.out.push(']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut members: Vec<(Cow<'de, str>, String)> = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let mut value = String::new();
            map.next_value_seed(self.child(Some(&mut value)))?;
            members.push((key, value));
        }
        members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if let Some(key) = members.windows(2).find_map(|w| match w {
            [a, b] if a.0 == b.0 => Some(a.0.to_string()),
            _ => None,
        }) {
            return Err(self.fail(CanonicalError::DuplicateKey(key)));
        }
        self.out.push('{');
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_json_string(self.out, key);
            self.out.push(':');
            self.out.push_str(value);
        }
        self.out.push('}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        match canonicalize(s) {
            Ok(c) => c,
            Err(e) => unreachable!("{s}: {e}"),
        }
    }

    #[test]
    fn spellings_of_the_same_value_have_one_canonical_form() {
        for (a, b) in [
            (r#"{"b":1,"a":2}"#, r#"{ "a" : 2 , "b" : 1 }"#),
            (r#"{"k":"é"}"#, r#"{"k":"\u00e9"}"#),
            (r#"{"k":"A\/B"}"#, r#"{"\u006b":"\u0041/B"}"#),
            (r#"[1e2]"#, r#"[100.0]"#),
            (r#"[1E2, 0.5]"#, r#"[0.1e+3,5e-1]"#),
            (r#"[0.0500]"#, r#"[5E-2]"#),
            (r#"[0.0]"#, r#"[0e7]"#),
            (r#"{"x":{"z":[],"y":{}}}"#, "{\"x\":{\"y\":{},\n\"z\":[ ]}}"),
            (r#""😀""#, r#""\ud83d\ude00""#),
        ] {
            assert_eq!(canon(a), canon(b), "{a} vs {b}");
        }
    }

    #[test]
    fn different_values_keep_different_forms() {
        for (a, b) in [
            ("1", "1.0"),
            ("1", "\"1\""),
            ("-0", "0"),
            ("0.0", "-0.0"),
            ("null", "{}"),
            (r#"{"a":1}"#, r#"{"a":1,"b":null}"#),
            ("[1,2]", "[2,1]"),
            (r#""a""#, r#""A""#),
            ("958683353.6329373", "958683353.6329372"),
            ("0.1", "0.1000000000000000000001"),
            ("18446744073709551616", "18446744073709551617"),
            ("1e-400", "0.0"),
        ] {
            assert_ne!(canon(a), canon(b), "{a} vs {b}");
        }
    }

    #[test]
    fn the_canonical_form_is_compact_sorted_json() {
        assert_eq!(
            canon(r#" { "b" : [ 1 , true , null ] , "a" : "x\n" , "c":1.5e3, "d":-0.25 } "#),
            r#"{"a":"x\n","b":[1,true,null],"c":0.15e4,"d":-0.25e0}"#
        );
    }

    #[test]
    fn numbers_inside_strings_do_not_confuse_number_matching() {
        assert_eq!(
            canon(r#"{"s":"1.5 \"2e3\" \\","n":7.0,"t":["-4",-4.50]}"#),
            r#"{"n":0.7e1,"s":"1.5 \"2e3\" \\","t":["-4",-0.45e1]}"#
        );
    }

    #[test]
    fn keys_sort_by_bytes_not_by_insertion() {
        assert_eq!(canon(r#"{"é":1,"z":2,"A":3}"#), r#"{"A":3,"z":2,"é":1}"#);
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for s in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":[{"k":1,"k":1}]}"#,
            r#"{"a":1,"\u0061":1}"#,
        ] {
            assert!(
                matches!(canonicalize(s), Err(CanonicalError::DuplicateKey(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn invalid_json_and_trailing_text_are_refused() {
        for s in ["", "{", "[1,]", "{} {}", "nul", "\"\\x\"", "01", "1.", "-"] {
            assert!(canonicalize(s).is_err(), "{s}");
        }
    }

    #[test]
    fn absurd_exponents_are_refused_not_wrapped() {
        assert!(matches!(
            canonicalize("1e99999999999999999999"),
            Err(CanonicalError::Number(_) | CanonicalError::Json(_))
        ));
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(canonicalize(&deep).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in r#"[\[\]{}":,0-9a-zA-Z\\. eE+\-]{0,64}"#) {
            let _ = canonicalize(&s);
        }

        #[test]
        fn canonical_form_is_a_fixed_point_with_the_same_meaning(v in json_value()) {
            let text = v.to_string();
            let once = canonicalize(&text);
            proptest::prop_assert!(once.is_ok());
            let once = once.unwrap_or_default();
            proptest::prop_assert_eq!(canonicalize(&once).ok(), Some(once.clone()));
            let back: Result<serde_json::Value, _> = serde_json::from_str(&once);
            proptest::prop_assert_eq!(back.ok(), Some(v));
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            // At most 13 significant digits: parsed exactly by serde_json's fast path.
            (-1_000_000_000_000i64..1_000_000_000_000)
                .prop_map(|n| serde_json::Value::from(n as f64 / 1000.0)),
            "\\PC{0,8}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

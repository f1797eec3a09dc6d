//! The signature check, behind a small trait so the host can do it.
//!
//! Inside V8, pure-Rust RS256/ES256 verification costs about a millisecond, while Envoy's
//! `verify_signature` foreign function (BoringSSL in the host) does RS256 in tens of
//! microseconds. The glue can implement [`SignatureVerifier`] over that call and wrap it in
//! [`Fallback`] with [`RustCryptoVerifier`], so a host without the function (or an algorithm it
//! cannot do, like Ed25519 through a digest API) still verifies. [`host_hash_name`],
//! [`Jwk::spki_der`](super::jwks::Jwk::spki_der) and [`ecdsa_signature_der`] give the host call its
//! arguments in the shapes BoringSSL's `EVP_DigestVerify` expects.

use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest as _, Sha256};

use super::jwks::{Jwk, KeyMaterial};
use super::jwt::Algorithm;

/// A verifier could not decide (as opposed to deciding "invalid").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// This verifier does not do this algorithm or key type; another may.
    #[error("not supported by this verifier")]
    Unsupported,
    /// The check could not run (e.g. the host call failed).
    #[error("signature check failed to run: {0}")]
    Failed(String),
}

/// Checks one JWS signature. `Ok(true)`: valid; `Ok(false)`: invalid; `Err`: undecided.
///
/// The caller has already checked that `key` [fits](Jwk::fits) `alg`.
pub trait SignatureVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, VerifyError>;
}

/// Pure-Rust verification: `rsa` (PKCS#1 v1.5 with SHA-256), `p256` (ECDSA, JWS `r || s`
/// signatures), `ed25519-compact`, HMAC-SHA-256 with a constant-time tag comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoVerifier;

impl SignatureVerifier for RustCryptoVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, VerifyError> {
        match (alg, key.material()) {
            (Algorithm::Rs256, KeyMaterial::Rsa { key, .. }) => {
                let digest = Sha256::digest(signing_input);
                let scheme = rsa::Pkcs1v15Sign::new::<Sha256>();
                Ok(key.verify(scheme, &digest, signature).is_ok())
            }
            (Algorithm::Es256, KeyMaterial::EcP256 { key, .. }) => {
                // JWS ES256 signatures are exactly 64 bytes, r then s (RFC 7518 §3.4); a DER
                // signature is refused here rather than guessed at.
                let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else {
                    return Ok(false);
                };
                Ok(key.verify(signing_input, &sig).is_ok())
            }
            (Algorithm::EdDsa, KeyMaterial::Ed25519 { key, .. }) => {
                let Ok(sig) = ed25519_compact::Signature::from_slice(signature) else {
                    return Ok(false);
                };
                Ok(key.verify(signing_input, &sig).is_ok())
            }
            (Algorithm::Hs256, KeyMaterial::Hmac(key)) => Ok(key.verify(signing_input, signature)),
            _ => Err(VerifyError::Unsupported),
        }
    }
}

/// Tries `primary`; when it cannot decide, asks `fallback`. A "no" from `primary` is final: a
/// forged token must not cost two checks.
#[derive(Debug, Clone, Default)]
pub struct Fallback<P, F> {
    pub primary: P,
    pub fallback: F,
}

impl<P: SignatureVerifier, F: SignatureVerifier> SignatureVerifier for Fallback<P, F> {
    fn verify(
        &self,
        alg: Algorithm,
        key: &Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, VerifyError> {
        match self.primary.verify(alg, key, signing_input, signature) {
            Err(_) => self.fallback.verify(alg, key, signing_input, signature),
            decided => decided,
        }
    }
}

/// The digest name Envoy's `verify_signature` takes for this algorithm, for the algorithms a
/// digest-then-verify host API can do (not Ed25519, and HMAC is no public-key signature).
pub fn host_hash_name(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::Rs256 | Algorithm::Es256 => Some("sha256"),
        Algorithm::EdDsa | Algorithm::Hs256 => None,
    }
}

/// Re-encodes a JWS ECDSA signature (`r || s`, two 32-byte big-endian integers) as the DER
/// `ECDSA-Sig-Value` that BoringSSL verifies. `None` unless the input is 64 bytes.
pub fn ecdsa_signature_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    let (r, s) = (der_integer(r), der_integer(s));
    let body_len = r.len() + s.len();
    let mut out = Vec::with_capacity(2 + body_len);
    out.push(0x30);
    // At most 2 × (2 + 33) = 70 bytes: always the short length form.
    out.push(u8::try_from(body_len).ok()?);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

/// A DER INTEGER of an unsigned big-endian value: minimal, with a 0x00 when the top bit is set.
fn der_integer(value: &[u8]) -> Vec<u8> {
    let first = value.iter().position(|b| *b != 0).unwrap_or(value.len());
    let digits = value.get(first..).filter(|d| !d.is_empty()).unwrap_or(&[0]);
    let pad = digits.first().is_some_and(|b| b & 0x80 != 0);
    let len = digits.len() + usize::from(pad);
    let mut out = Vec::with_capacity(2 + len);
    out.push(0x02);
    out.push(u8::try_from(len).unwrap_or(0));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // JSON fixtures: a missing member fails the test anyway
mod tests {
    use super::super::jwks::{parse_jwks, parse_jwks_value, JwkOrigin};
    use super::super::testkit::*;
    use super::*;
    use serde_json::json;

    fn key_of(jwk: serde_json::Value) -> Jwk {
        let p = parse_jwks_value(&json!({ "keys": [jwk] }), JwkOrigin::Inline)
            .unwrap_or_else(|e| unreachable!("{e}"));
        p.keys
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| unreachable!("{:?}", p.skipped))
    }

    /// RFC 7515 Appendix A.2 (RS256), A.3 (ES256) and A.1 (HS256), and RFC 8037 A.4 (Ed25519):
    /// signatures made by other implementations, over the exact bytes given there.
    #[test]
    fn rfc_example_signatures_verify() {
        let rfc7515_input = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let rs = key_of(json!({"kty": "RSA",
            "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
            "e": "AQAB"}));
        let rs_sig = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
        let ec = key_of(json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}));
        let ec_input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let ec_sig = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
        let hs = key_of(json!({"kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}));
        let hs_input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let hs_sig = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let ed = key_of(json!({"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}));
        let ed_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let ed_sig = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        let unb64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap_or_default()
        };
        let v = RustCryptoVerifier;
        for (what, alg, key, input, sig) in [
            ("RS256", Algorithm::Rs256, &rs, rfc7515_input, rs_sig),
            ("ES256", Algorithm::Es256, &ec, ec_input, ec_sig),
            ("HS256", Algorithm::Hs256, &hs, hs_input, hs_sig),
            ("EdDSA", Algorithm::EdDsa, &ed, ed_input, ed_sig),
        ] {
            let sig = unb64(sig);
            assert_eq!(
                v.verify(alg, key, input.as_bytes(), &sig),
                Ok(true),
                "{what}"
            );
            let mut tampered = input.as_bytes().to_vec();
            if let Some(b) = tampered.last_mut() {
                *b ^= 1;
            }
            assert_eq!(
                v.verify(alg, key, &tampered, &sig),
                Ok(false),
                "{what} tampered"
            );
            assert_eq!(
                v.verify(alg, key, input.as_bytes(), &sig[1..]),
                Ok(false),
                "{what} short"
            );
        }
        assert_eq!(
            v.verify(Algorithm::Hs256, &rs, b"x", b"y"),
            Err(VerifyError::Unsupported)
        );
    }

    #[test]
    fn ecdsa_signatures_are_re_encoded_as_der_like_the_reference() {
        use p256::ecdsa::signature::Signer as _;
        let sk =
            p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap_or_else(|e| unreachable!("{e}"));
        for i in 0..64u8 {
            let sig: p256::ecdsa::Signature = sk.sign(&[i]);
            let raw = sig.to_bytes();
            assert_eq!(
                ecdsa_signature_der(&raw),
                Some(sig.to_der().as_bytes().to_vec()),
                "message {i}"
            );
        }
        assert_eq!(ecdsa_signature_der(&[0u8; 63]), None);
        assert_eq!(der_integer(&[0, 0, 0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_integer(&[0, 0]), vec![2, 1, 0]);
    }

    struct Host(Result<bool, VerifyError>);
    impl SignatureVerifier for Host {
        fn verify(&self, _: Algorithm, _: &Jwk, _: &[u8], _: &[u8]) -> Result<bool, VerifyError> {
            self.0.clone()
        }
    }

    #[test]
    fn the_fallback_runs_only_when_the_host_cannot_decide() {
        let p = parse_jwks(jwks_all().to_string().as_bytes(), JwkOrigin::Inline)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let key = p.keys.keys().find(|k| k.kid() == Some("hs")).cloned();
        let key = key.unwrap_or_else(|| unreachable!());
        let input = b"a.b";
        let good = sign(Key::Hmac, input);
        for (host, want) in [
            (Ok(true), Ok(true)),
            (Ok(false), Ok(false)),
            (Err(VerifyError::Unsupported), Ok(true)),
            (Err(VerifyError::Failed("boom".into())), Ok(true)),
        ] {
            let v = Fallback {
                primary: Host(host.clone()),
                fallback: RustCryptoVerifier,
            };
            assert_eq!(
                v.verify(Algorithm::Hs256, &key, input, &good),
                want,
                "{host:?}"
            );
        }
        assert_eq!(host_hash_name(Algorithm::Rs256), Some("sha256"));
        assert_eq!(host_hash_name(Algorithm::EdDsa), None);
    }
}

/// Envoy's `verify_signature` foreign function takes a serialized
/// `envoy.source.extensions.common.wasm.VerifySignatureArguments` and answers a
/// `VerifySignatureResult`. These two helpers are that protobuf wire format, written out by hand:
/// five length-delimited fields in, a bool and a string out, not worth a protobuf dependency.
pub mod host {
    use super::{ecdsa_signature_der, host_hash_name, Algorithm, Jwk, VerifyError};

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// The foreign function's arguments, or `Unsupported` for what the host cannot check
    /// (EdDSA, HS256, or a key without a DER public key).
    pub fn request(
        alg: Algorithm,
        key: &Jwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<Vec<u8>, VerifyError> {
        let hash = host_hash_name(alg).ok_or(VerifyError::Unsupported)?;
        let der = key.spki_der().ok_or(VerifyError::Unsupported)?;
        // JWS ECDSA signatures are r || s; the host's verifier wants DER.
        let converted;
        let signature = if alg == Algorithm::Es256 {
            converted = ecdsa_signature_der(signature).ok_or(VerifyError::Unsupported)?;
            converted.as_slice()
        } else {
            signature
        };
        let mut out = Vec::with_capacity(16 + der.len() + signature.len() + signing_input.len());
        field(&mut out, 1, hash.as_bytes());
        field(&mut out, 2, der);
        field(&mut out, 3, signature);
        field(&mut out, 4, signing_input);
        Ok(out)
    }

    fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *bytes.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// Reads `VerifySignatureResult`: `Ok(true)` only for `result = true`.
    pub fn result(bytes: &[u8]) -> Result<bool, VerifyError> {
        let bad = || VerifyError::Failed("malformed verify_signature result".into());
        let mut at = 0usize;
        let mut ok = false;
        let mut error = String::new();
        while at < bytes.len() {
            let key = read_varint(bytes, &mut at).ok_or_else(bad)?;
            match (key >> 3, key & 7) {
                (1, 0) => ok = read_varint(bytes, &mut at).ok_or_else(bad)? != 0,
                (n, 2) => {
                    let len = usize::try_from(read_varint(bytes, &mut at).ok_or_else(bad)?)
                        .map_err(|_| bad())?;
                    let end = at.checked_add(len).ok_or_else(bad)?;
                    let value = bytes.get(at..end).ok_or_else(bad)?;
                    if n == 2 {
                        error = String::from_utf8_lossy(value).into_owned();
                    }
                    at = end;
                }
                (_, 0) => {
                    read_varint(bytes, &mut at).ok_or_else(bad)?;
                }
                _ => return Err(bad()),
            }
        }
        // A "no" is final when the host ran the check and the digest did not verify; any other
        // error (key import, unknown hash) means it could not run it: let the fallback decide.
        if !ok && !error.is_empty() && !error.contains("verify digest") {
            return Err(VerifyError::Failed(error));
        }
        Ok(ok)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn results_decode_and_garbage_is_an_error_not_a_panic() {
            assert_eq!(result(&[0x08, 0x01]), Ok(true));
            assert_eq!(result(&[]), Ok(false));
            let mut bad_sig = vec![0x12, 24];
            bad_sig.extend_from_slice(b"Failed to verify digest.");
            assert_eq!(result(&bad_sig), Ok(false));
            let mut bad_key = vec![0x12, 19];
            bad_key.extend_from_slice(b"Failed to parse key");
            assert!(result(&bad_key).is_err());
            assert!(result(&[0x12, 0x05, b'a']).is_err());
            assert!(result(&[0xff]).is_err());
            for b in 0u8..=255 {
                let _ = result(&[b, b, b]);
            }
        }

        #[test]
        fn varints_longer_than_one_byte_are_written() {
            let mut out = Vec::new();
            varint(&mut out, 300);
            assert_eq!(out, vec![0xac, 0x02]);
        }
    }
}

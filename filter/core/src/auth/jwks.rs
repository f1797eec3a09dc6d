//! JSON Web Keys: parse a JWKS into keys ready to verify with, and decide when to fetch it.
//!
//! Keys are decoded once per document (RSA modulus to a big integer, EC point checked on the
//! curve, HMAC secret pre-keyed, SPKI DER for the host's `verify_signature`), never per token.
//! A fetched document is untrusted input from the network: keys we cannot use (unknown `kty` or
//! curve, `use` other than `sig`, an `alg` we do not verify, RSA under 2048 bits) are skipped,
//! not fatal; symmetric keys are refused outright, since a shared secret published in a JWKS is
//! no secret. [`JwksState`] is the fetch schedule: periodic refresh, an early refresh when a
//! token names an unknown `kid` (rate-limited), backoff on failure, and the last good key set
//! kept through failures.

use std::borrow::Cow;
use std::sync::Arc;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

use super::jwt::Algorithm;

/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Keys past this many in one document are skipped.
pub const MAX_KEYS: usize = 64;
/// Shortest RSA modulus accepted (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// `SubjectPublicKeyInfo` DER prefix for an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// `SubjectPublicKeyInfo` DER prefix for Ed25519 (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Base64url, padding optional: some issuers pad key members, and a JWKS is not a signed token,
/// so there is no canonical-form concern here.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An HS256 secret, pre-keyed (the HMAC pads are computed once).
#[derive(Clone)]
pub struct HmacKey(Hmac<Sha256>);

impl HmacKey {
    pub fn new(secret: &[u8]) -> Option<HmacKey> {
        Hmac::<Sha256>::new_from_slice(secret).ok().map(HmacKey)
    }

    /// Constant-time check of an HMAC-SHA-256 tag.
    pub fn verify(&self, input: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(input);
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(redacted)")
    }
}

/// Decoded key material.
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    Rsa {
        key: rsa::RsaPublicKey,
        spki_der: Box<[u8]>,
    },
    EcP256 {
        key: p256::ecdsa::VerifyingKey,
        spki_der: Box<[u8]>,
    },
    Ed25519 {
        key: ed25519_compact::PublicKey,
        spki_der: Box<[u8]>,
    },
    Hmac(HmacKey),
}

/// One usable verification key.
#[derive(Debug, Clone)]
pub struct Jwk {
    kid: Option<String>,
    /// The `alg` the JWK declares, if any: then it verifies that algorithm only.
    alg: Option<Algorithm>,
    material: KeyMaterial,
}

impl Jwk {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn material(&self) -> &KeyMaterial {
        &self.material
    }

    /// Whether this key may verify `alg`: the key type must be the algorithm's (so a public
    /// key is never taken for an HMAC secret), and a declared `alg` must be this one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|a| a == alg) && kind_fits(&self.material, alg)
    }

    /// The public key as DER `SubjectPublicKeyInfo`, for host crypto. `None` for HMAC secrets.
    pub fn spki_der(&self) -> Option<&[u8]> {
        match &self.material {
            KeyMaterial::Rsa { spki_der, .. }
            | KeyMaterial::EcP256 { spki_der, .. }
            | KeyMaterial::Ed25519 { spki_der, .. } => Some(spki_der),
            KeyMaterial::Hmac(_) => None,
        }
    }
}

fn kind_fits(material: &KeyMaterial, alg: Algorithm) -> bool {
    matches!(
        (material, alg),
        (KeyMaterial::Rsa { .. }, Algorithm::Rs256)
            | (KeyMaterial::EcP256 { .. }, Algorithm::Es256)
            | (KeyMaterial::Ed25519 { .. }, Algorithm::EdDsa)
            | (KeyMaterial::Hmac(_), Algorithm::Hs256)
    )
}

/// The usable keys of one JWKS.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    pub fn keys(&self) -> std::slice::Iter<'_, Jwk> {
        self.keys.iter()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_symmetric(&self) -> bool {
        self.keys
            .iter()
            .any(|k| matches!(k.material, KeyMaterial::Hmac(_)))
    }
}

/// Where a JWKS comes from: symmetric keys are accepted only from the operator's own config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwkOrigin {
    Inline,
    Remote,
}

/// A key that was left out, and why (for a log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in `keys`.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// A parsed JWKS: the usable keys (possibly none) and the skipped ones.
#[derive(Debug, Clone, Default)]
pub struct ParsedJwks {
    pub keys: KeySet,
    pub skipped: Vec<SkippedKey>,
}

/// Why a JWKS document could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS document is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS document (a JSON object with a \"keys\" array): {0}")]
    NotJwks(String),
    #[error("JWKS has no usable signing key ({skipped} skipped)")]
    NoUsableKeys { skipped: usize },
}

#[derive(Deserialize)]
struct RawJwks<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawJwk<'a> {
    #[serde(borrow)]
    kty: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(rename = "use", borrow, default)]
    key_use: Option<Cow<'a, str>>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(borrow, default)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    y: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    k: Option<Cow<'a, str>>,
}

/// Parses a JWKS document. Unusable keys are reported in `skipped`, never fatal.
pub fn parse_jwks(doc: &[u8], origin: JwkOrigin) -> Result<ParsedJwks, JwksError> {
    if doc.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let raw: RawJwks<'_> =
        serde_json::from_slice(doc).map_err(|e| JwksError::NotJwks(e.to_string()))?;
    let mut out = ParsedJwks::default();
    for (index, member) in raw.keys.iter().enumerate() {
        let parsed: Result<RawJwk<'_>, _> = serde_json::from_str(member.get());
        let kid = parsed
            .as_ref()
            .ok()
            .and_then(|j| j.kid.as_deref())
            .map(str::to_owned);
        let result = if index >= MAX_KEYS {
            Err(format!("more than {MAX_KEYS} keys"))
        } else {
            parsed
                .map_err(|e| format!("not a valid JWK: {e}"))
                .and_then(|j| compile_jwk(&j, origin))
        };
        match result {
            Ok(key) => out.keys.keys.push(key),
            Err(reason) => out.skipped.push(SkippedKey { index, kid, reason }),
        }
    }
    Ok(out)
}

/// [`parse_jwks`] for a document already parsed as JSON (the inline config form).
pub fn parse_jwks_value(
    doc: &serde_json::Value,
    origin: JwkOrigin,
) -> Result<ParsedJwks, JwksError> {
    parse_jwks(doc.to_string().as_bytes(), origin)
}

fn decode(member: &str, value: Option<&Cow<'_, str>>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing \"{member}\""))?;
    B64_LENIENT
        .decode(value.as_bytes())
        .map_err(|_| format!("\"{member}\" is not base64url"))
}

/// A coordinate of `len` bytes; shorter encodings (leading zeros dropped) are left-padded.
fn coordinate(member: &str, value: Option<&Cow<'_, str>>, len: usize) -> Result<Vec<u8>, String> {
    let bytes = decode(member, value)?;
    if bytes.len() > len {
        return Err(format!("\"{member}\" is longer than {len} bytes"));
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(&bytes);
    Ok(out)
}

fn compile_jwk(j: &RawJwk<'_>, origin: JwkOrigin) -> Result<Jwk, String> {
    if let Some(u) = j.key_use.as_deref() {
        if u != "sig" {
            return Err(format!("\"use\" is {u:?}, not \"sig\""));
        }
    }
    if let Some(ops) = &j.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            return Err("\"key_ops\" does not include \"verify\"".to_owned());
        }
    }
    let alg = match j.alg.as_deref() {
        None => None,
        Some(name) => Some(
            Algorithm::from_name(name)
                .ok_or_else(|| format!("\"alg\" {name:?} is not supported"))?,
        ),
    };
    let material = match (j.kty.as_ref(), j.crv.as_deref()) {
        ("RSA", _) => rsa_key(j)?,
        ("EC", Some("P-256")) => {
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend(coordinate("x", j.x.as_ref(), 32)?);
            point.extend(coordinate("y", j.y.as_ref(), 32)?);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| "EC point is not on P-256".to_owned())?;
            let spki_der = [P256_SPKI_PREFIX.as_slice(), &point].concat().into();
            KeyMaterial::EcP256 { key, spki_der }
        }
        ("OKP", Some("Ed25519")) => {
            let x = decode("x", j.x.as_ref())?;
            let key = ed25519_compact::PublicKey::from_slice(&x)
                .map_err(|_| "\"x\" is not a 32-byte Ed25519 key".to_owned())?;
            let spki_der = [ED25519_SPKI_PREFIX.as_slice(), &x].concat().into();
            KeyMaterial::Ed25519 { key, spki_der }
        }
        ("oct", _) if origin == JwkOrigin::Remote => {
            return Err("symmetric (\"oct\") keys are accepted only inline".to_owned())
        }
        ("oct", _) => {
            let k = decode("k", j.k.as_ref())?;
            if k.len() < MIN_HMAC_SECRET_BYTES {
                return Err(format!(
                    "HS256 secret is shorter than {MIN_HMAC_SECRET_BYTES} bytes"
                ));
            }
            KeyMaterial::Hmac(HmacKey::new(&k).ok_or_else(|| "bad HMAC secret".to_owned())?)
        }
        ("EC" | "OKP", crv) => {
            return Err(format!("curve {:?} is not supported", crv.unwrap_or("")))
        }
        (kty, _) => return Err(format!("\"kty\" {kty:?} is not supported")),
    };
    if let Some(a) = alg {
        if !kind_fits(&material, a) {
            return Err(format!(
                "\"alg\" {} does not match the key type",
                a.as_str()
            ));
        }
    }
    Ok(Jwk {
        kid: j.kid.as_deref().map(str::to_owned),
        alg,
        material,
    })
}

fn rsa_key(j: &RawJwk<'_>) -> Result<KeyMaterial, String> {
    use rsa::pkcs8::EncodePublicKey as _;
    let n = rsa::BigUint::from_bytes_be(&decode("n", j.n.as_ref())?);
    let e = rsa::BigUint::from_bytes_be(&decode("e", j.e.as_ref())?);
    if n.bits() < MIN_RSA_BITS {
        return Err(format!("RSA modulus is shorter than {MIN_RSA_BITS} bits"));
    }
    let key = rsa::RsaPublicKey::new(n, e).map_err(|e| format!("RSA key rejected: {e}"))?;
    let spki_der = key
        .to_public_key_der()
        .map_err(|e| format!("RSA key cannot be encoded: {e}"))?
        .as_bytes()
        .into();
    Ok(KeyMaterial::Rsa { key, spki_der })
}

/// How often to fetch a remote JWKS, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Between scheduled fetches.
    pub interval: u64,
    /// Least time between fetch starts when a refresh is asked for early (unknown `kid`).
    pub min_interval: u64,
    /// After this long without an answer, a fetch counts as lost and may be started again.
    pub timeout: u64,
}

/// Longest wait between retries after failed fetches.
const MAX_RETRY_SECONDS: u64 = 60;

/// The remote JWKS: last good keys and the fetch schedule. Pure: the caller passes the time.
#[derive(Debug)]
pub struct JwksState {
    policy: RefreshPolicy,
    keys: Option<Arc<KeySet>>,
    digest: Option<[u8; 32]>,
    next_fetch_at: u64,
    in_flight_since: Option<u64>,
    last_started: Option<u64>,
    failures: u32,
}

/// What a successful fetch changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksUpdate {
    /// The same document as last time.
    Unchanged,
    /// A new key set is in use (tokens cached under the old one must be re-verified).
    Replaced {
        keys: usize,
        skipped: Vec<SkippedKey>,
    },
}

impl JwksState {
    /// No keys yet; the first fetch is due at once.
    pub fn new(policy: RefreshPolicy) -> JwksState {
        JwksState {
            policy,
            keys: None,
            digest: None,
            next_fetch_at: 0,
            in_flight_since: None,
            last_started: None,
            failures: 0,
        }
    }

    /// The last good key set, if any fetch ever succeeded.
    pub fn keys(&self) -> Option<&Arc<KeySet>> {
        self.keys.as_ref()
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Whether a fetch should start now: none in flight (or the one in flight is lost) and the
    /// schedule says so.
    pub fn fetch_due(&self, now: u64) -> bool {
        match self.in_flight_since {
            Some(since) => now >= since.saturating_add(self.policy.timeout.saturating_mul(2)),
            None => now >= self.next_fetch_at,
        }
    }

    pub fn fetch_started(&mut self, now: u64) {
        self.in_flight_since = Some(now);
        self.last_started = Some(now);
    }

    /// A fetch answered with `body`. A document without a usable key counts as a failure: the
    /// last good keys stay.
    pub fn fetch_succeeded(&mut self, now: u64, body: &[u8]) -> Result<JwksUpdate, JwksError> {
        self.in_flight_since = None;
        let digest: [u8; 32] = Sha256::digest(body).into();
        if self.keys.is_some() && self.digest == Some(digest) {
            self.scheduled(now);
            return Ok(JwksUpdate::Unchanged);
        }
        let parsed = match parse_jwks(body, JwkOrigin::Remote) {
            Ok(p) if !p.keys.is_empty() => p,
            Ok(p) => {
                self.fetch_failed(now);
                return Err(JwksError::NoUsableKeys {
                    skipped: p.skipped.len(),
                });
            }
            Err(e) => {
                self.fetch_failed(now);
                return Err(e);
            }
        };
        let count = parsed.keys.len();
        self.keys = Some(Arc::new(parsed.keys));
        self.digest = Some(digest);
        self.scheduled(now);
        Ok(JwksUpdate::Replaced {
            keys: count,
            skipped: parsed.skipped,
        })
    }

    fn scheduled(&mut self, now: u64) {
        self.failures = 0;
        self.next_fetch_at = now.saturating_add(self.policy.interval);
    }

    /// A fetch failed: retry with exponential backoff (2 s, 4 s, … up to a minute, and never
    /// later than the regular interval).
    pub fn fetch_failed(&mut self, now: u64) {
        self.in_flight_since = None;
        self.failures = self.failures.saturating_add(1);
        let delay = (1u64 << self.failures.min(6))
            .min(MAX_RETRY_SECONDS)
            .min(self.policy.interval);
        self.next_fetch_at = now.saturating_add(delay);
    }

    /// Asks for an early fetch (a token named a `kid` we do not have). Granted only when no
    /// fetch is in flight and the last one started at least `min_interval` ago; returns whether
    /// a fetch is now due.
    pub fn request_refresh(&mut self, now: u64) -> bool {
        if self.in_flight_since.is_some() {
            return false;
        }
        let too_soon = self
            .last_started
            .is_some_and(|t| now < t.saturating_add(self.policy.min_interval));
        if !too_soon && self.next_fetch_at > now {
            self.next_fetch_at = now;
        }
        self.fetch_due(now)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // JSON fixtures: a missing member fails the test anyway
mod tests {
    use super::super::testkit::*;
    use super::*;
    use serde_json::json;

    fn parsed(doc: serde_json::Value, origin: JwkOrigin) -> ParsedJwks {
        parse_jwks(doc.to_string().as_bytes(), origin).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn real_world_shaped_documents_parse_and_foreign_keys_are_skipped() {
        // Shaped like Google's, Entra ID's, Okta's and Keycloak's: extra members (x5c, x5t,
        // issuer), encryption keys, curves and algorithms we do not verify.
        let mut rsa = public_jwk(Key::Rsa1, "rsa1");
        rsa["x5t"] = "abc".into();
        rsa["x5c"] = json!(["MIIC..."]);
        rsa["issuer"] = ISSUER.into();
        let doc = json!({"keys": [
            rsa,
            public_jwk(Key::Es256, "ec1"),
            public_jwk(Key::Ed25519, "ed1"),
            {"kty": "RSA", "use": "enc", "kid": "enc1", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AA"},
            {"kty": "AKP", "kid": "ml-dsa", "pub": "AA"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "hs", "k": b64(HMAC_SECRET)},
            {"kid": "no-kty"},
            "not an object",
        ], "extra": true});
        let p = parsed(doc, JwkOrigin::Remote);
        let kids: Vec<_> = p.keys.keys().map(|k| k.kid().unwrap_or("")).collect();
        assert_eq!(kids, vec!["rsa1", "ec1", "ed1"]);
        let skipped: Vec<_> = p.skipped.iter().map(|s| s.index).collect();
        assert_eq!(skipped, vec![3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(p.skipped.iter().all(|s| !s.reason.is_empty()));
        assert_eq!(
            p.skipped.first().and_then(|s| s.kid.as_deref()),
            Some("enc1")
        );
    }

    #[test]
    fn symmetric_keys_are_accepted_only_inline() {
        let doc = json!({"keys": [public_jwk(Key::Hmac, "hs")]});
        assert!(parsed(doc.clone(), JwkOrigin::Remote).keys.is_empty());
        assert!(parsed(doc, JwkOrigin::Inline).keys.has_symmetric());
        let short = json!({"keys": [{"kty": "oct", "k": b64(b"short")}]});
        assert!(parsed(short, JwkOrigin::Inline).keys.is_empty());
    }

    #[test]
    fn keys_fit_only_their_algorithm() {
        let p = parsed(jwks_all(), JwkOrigin::Inline);
        for key in p.keys.keys() {
            let fits: Vec<_> = Algorithm::ALL.iter().filter(|a| key.fits(**a)).collect();
            assert_eq!(fits.len(), 1, "{:?}", key.kid());
        }
        let mut declared = public_jwk(Key::Es256, "e");
        declared["alg"] = "RS256".into();
        let p = parsed(json!({"keys": [declared]}), JwkOrigin::Remote);
        assert!(p.keys.is_empty(), "an EC key declared RS256 is skipped");
    }

    #[test]
    fn spki_der_matches_the_reference_encoders() {
        use p256::pkcs8::EncodePublicKey as _;
        let p = parsed(jwks_all(), JwkOrigin::Inline);
        for key in p.keys.keys() {
            let der = key.spki_der().map(<[u8]>::to_vec);
            let want = match key.material() {
                KeyMaterial::Rsa { key, .. } => key.to_public_key_der().ok().map(|d| d.to_vec()),
                KeyMaterial::EcP256 { key, .. } => p256::PublicKey::from(key)
                    .to_public_key_der()
                    .ok()
                    .map(|d| d.to_vec()),
                KeyMaterial::Ed25519 { key, .. } => {
                    // RFC 8410 §10.1 example shape: 44 bytes, the key last.
                    let d = der.clone().unwrap_or_default();
                    assert_eq!(d.len(), 44);
                    assert!(d.ends_with(key.as_ref()));
                    der.clone()
                }
                KeyMaterial::Hmac(_) => None,
            };
            assert_eq!(der, want, "{:?}", key.kid());
        }
    }

    #[test]
    fn short_ec_coordinates_are_left_padded_and_long_ones_refused() {
        let ok = public_jwk(Key::Es256, "e");
        let mut long = ok.clone();
        long["x"] = b64(&[1u8; 33]).into();
        let p = parsed(json!({"keys": [ok, long]}), JwkOrigin::Remote);
        assert_eq!((p.keys.len(), p.skipped.len()), (1, 1));
        let x = coordinate("x", Some(&Cow::Borrowed("AQ")), 32).unwrap_or_default();
        assert_eq!(x.len(), 32);
        assert_eq!(x.last(), Some(&1));
    }

    #[test]
    fn documents_that_are_not_jwks_are_errors() {
        for doc in [&b"nope"[..], b"{}", b"[]", b"{\"keys\": 3}"] {
            assert!(matches!(
                parse_jwks(doc, JwkOrigin::Remote),
                Err(JwksError::NotJwks(_))
            ));
        }
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            parse_jwks(&big, JwkOrigin::Remote).err(),
            Some(JwksError::TooLarge)
        );
    }

    const POLICY: RefreshPolicy = RefreshPolicy {
        interval: 300,
        min_interval: 30,
        timeout: 5,
    };

    fn doc(keys: &[(Key, &str)]) -> Vec<u8> {
        let keys: Vec<_> = keys.iter().map(|(k, kid)| public_jwk(*k, kid)).collect();
        json!({ "keys": keys }).to_string().into_bytes()
    }

    #[test]
    fn the_first_fetch_is_due_at_once_and_then_every_interval() {
        let mut s = JwksState::new(POLICY);
        assert!(s.fetch_due(0));
        s.fetch_started(100);
        assert!(!s.fetch_due(100), "one fetch at a time");
        let update = s.fetch_succeeded(101, &doc(&[(Key::Rsa1, "a")]));
        assert!(matches!(update, Ok(JwksUpdate::Replaced { keys: 1, .. })));
        assert!(!s.fetch_due(400));
        assert!(s.fetch_due(401));
        s.fetch_started(401);
        let update = s.fetch_succeeded(402, &doc(&[(Key::Rsa1, "a")]));
        assert_eq!(update, Ok(JwksUpdate::Unchanged));
        assert!(s.fetch_due(702));
    }

    #[test]
    fn failures_back_off_and_keep_the_last_good_keys() {
        let mut s = JwksState::new(POLICY);
        s.fetch_started(0);
        assert!(s.fetch_succeeded(0, &doc(&[(Key::Es256, "e")])).is_ok());
        let mut now = 300;
        let mut delays = Vec::new();
        for _ in 0..7 {
            assert!(s.fetch_due(now));
            s.fetch_started(now);
            s.fetch_failed(now);
            let next = (now..now + 1000).find(|t| s.fetch_due(*t)).unwrap_or(0);
            delays.push(next - now);
            now = next;
        }
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(s.keys().map(|k| k.len()), Some(1));
        assert_eq!(s.consecutive_failures(), 7);
        // A document without usable keys is a failure too, and the old keys stay.
        s.fetch_started(now);
        let bad = s.fetch_succeeded(now, br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#);
        assert_eq!(bad, Err(JwksError::NoUsableKeys { skipped: 1 }));
        assert_eq!(s.keys().map(|k| k.len()), Some(1));
        s.fetch_started(now + 60);
        assert!(s.fetch_succeeded(now + 60, b"garbage").is_err());
        assert_eq!(s.keys().map(|k| k.len()), Some(1));
    }

    #[test]
    fn unknown_kids_force_a_refresh_at_most_once_per_min_interval() {
        let mut s = JwksState::new(POLICY);
        s.fetch_started(1000);
        assert!(
            !s.request_refresh(1001),
            "nothing while a fetch is in flight"
        );
        assert!(s.fetch_succeeded(1001, &doc(&[(Key::Rsa1, "a")])).is_ok());
        assert!(
            !s.request_refresh(1010),
            "too soon after the last fetch started"
        );
        assert!(s.request_refresh(1030));
        s.fetch_started(1030);
        assert!(s.fetch_succeeded(1031, &doc(&[(Key::Rsa1, "a")])).is_ok());
        assert!(!s.request_refresh(1059));
        assert!(s.request_refresh(1060));
    }

    #[test]
    fn a_lost_fetch_can_be_restarted_after_twice_the_timeout() {
        let mut s = JwksState::new(POLICY);
        s.fetch_started(50);
        assert!(!s.fetch_due(59));
        assert!(s.fetch_due(60));
    }

    proptest::proptest! {
        #[test]
        fn random_documents_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_jwks(&bytes, JwkOrigin::Remote);
        }

        #[test]
        fn random_key_members_never_panic(
            kty in proptest::sample::select(vec!["RSA", "EC", "OKP", "oct", "x"]),
            crv in proptest::sample::select(vec!["P-256", "Ed25519", "P-384", ""]),
            a in "[A-Za-z0-9_=-]{0,400}",
            b in "[A-Za-z0-9_=-]{0,60}",
        ) {
            let doc = json!({"keys": [{"kty": kty, "crv": crv, "n": a, "e": b, "x": a, "y": b, "k": a}]});
            let _ = parse_jwks(doc.to_string().as_bytes(), JwkOrigin::Inline);
        }
    }
}

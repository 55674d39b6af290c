//! What the signed messages have in common: the domain-separated signing input, strict
//! lowercase hex, strict Ed25519 verification and the time source. One place, so requests,
//! results, envelopes and manifests cannot drift apart. Nothing here ever re-serialises a
//! message to verify it: signatures are checked over the bytes received.

use ed25519_dalek::{Signature, VerifyingKey};

/// `domain ‖ body`, where `domain` ends with its 0x00 separator.
pub(crate) fn signing_input(domain: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let len = domain.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(domain);
    for p in parts {
        m.extend_from_slice(p);
    }
    m
}

/// Strict Ed25519 verification (no small-order keys, canonical `S`).
pub(crate) fn verify(key: &VerifyingKey, domain: &[u8], parts: &[&[u8]], sig: &Signature) -> bool {
    key.verify_strict(&signing_input(domain, parts), sig)
        .is_ok()
}

/// Decodes lowercase hex (uppercase is refused: one value, one spelling).
pub(crate) fn hex_lower(s: &str) -> Result<Vec<u8>, String> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("hex must be lowercase".into());
    }
    hex::decode(s).map_err(|e| format!("bad hex: {e}"))
}

/// Decodes lowercase hex of exactly `N` bytes.
pub(crate) fn hex_array<const N: usize>(s: &str) -> Result<[u8; N], String> {
    hex_lower(s)?
        .try_into()
        .map_err(|_| format!("must be {N} bytes ({} hex digits)", 2 * N))
}

/// An Ed25519 public key in hex; weak (small-order) keys are refused.
pub(crate) fn public_key(s: &str) -> Result<VerifyingKey, String> {
    let key = VerifyingKey::from_bytes(&hex_array::<32>(s)?).map_err(|e| e.to_string())?;
    if key.is_weak() {
        return Err("weak (small-order) key".into());
    }
    Ok(key)
}

/// An Ed25519 signature in hex.
pub(crate) fn signature(s: &str) -> Result<Signature, String> {
    Ok(Signature::from_bytes(&hex_array::<64>(s)?))
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// 16 random bytes as 32 lowercase hex (request ids, nonces).
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// Whether `s` is 32 lowercase hex digits (request ids, nonces).
pub(crate) fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// serde: bytes as lowercase hex strings, for any `T` that is bytes (`Vec<u8>`, `[u8; N]`).
pub(crate) mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<T: AsRef<[u8]>, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v.as_ref()))
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: TryFrom<Vec<u8>>,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        let bytes = super::hex_lower(&s).map_err(D::Error::custom)?;
        let len = bytes.len();
        T::try_from(bytes).map_err(|_| D::Error::custom(format!("wrong length ({len} bytes)")))
    }
}

/// serde: optional bytes as lowercase hex strings (absent or `null` = `None`).
pub(crate) mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<T: AsRef<[u8]>, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::hex_bytes::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: TryFrom<Vec<u8>>,
        D: Deserializer<'de>,
    {
        #[derive(Deserialize)]
        struct Wrap<T: TryFrom<Vec<u8>>>(#[serde(with = "super::hex_bytes")] T);
        Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
    }
}

/// The `version` member of a JSON body, read before anything else, so that a newer body is
/// refused as an unsupported version rather than as malformed.
pub(crate) fn json_body_version(bytes: &[u8]) -> Result<u64, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    value
        .as_object()
        .ok_or("body is not a JSON object")?
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| "body has no numeric version".into())
}

/// Decodes the `body` (base64) and `signature` (hex) members of a signed JSON wire form.
pub(crate) fn decode_signed(body: &str, signature: &str) -> Result<(Vec<u8>, Signature), String> {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("body: {e}"))?;
    let signature = self::signature(signature).map_err(|e| format!("signature: {e}"))?;
    Ok((body, signature))
}

/// Encodes body bytes (base64) and a signature (hex) for a signed JSON wire form.
pub(crate) fn encode_signed(body: &[u8], signature: &Signature) -> (String, String) {
    use base64::Engine as _;
    (
        base64::engine::general_purpose::STANDARD.encode(body),
        hex::encode(signature.to_bytes()),
    )
}

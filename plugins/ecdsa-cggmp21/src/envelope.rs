//! The versioned byte envelope every stored value of this crate uses: a big-endian `u16`
//! format version followed by CBOR (field names kept, so cggmp21's serde formats stay
//! readable across versions). Output is secret material and lives in [`Zeroizing`].

use keyrack_plugin::ProtocolError;
use serde::{de::DeserializeOwned, Serialize};
use zeroize::Zeroizing;

/// Encodes `value` under format `version`.
pub(crate) fn encode<T: Serialize>(
    version: u16,
    value: &T,
) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    out.extend_from_slice(&version.to_be_bytes());
    ciborium::into_writer(value, &mut *out)
        .map_err(|e| ProtocolError::InvalidMaterial(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// Decodes an [`encode`]d `what`, which must be of format `version`.
pub(crate) fn decode<T: DeserializeOwned>(
    version: u16,
    bytes: &[u8],
    what: &str,
) -> Result<T, ProtocolError> {
    let (head, body) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| ProtocolError::InvalidMaterial(format!("{what}: empty encoding")))?;
    let found = u16::from_be_bytes(*head);
    if found != version {
        return Err(ProtocolError::InvalidMaterial(format!(
            "{what}: format version {found}, this build reads version {version}"
        )));
    }
    ciborium::from_reader(body)
        .map_err(|e| ProtocolError::InvalidMaterial(format!("{what} does not decode: {e}")))
}

//! Session envelopes: the node-to-node messages of coordinator control and threshold
//! protocols, on core NATS. Each is signed by its sender's node identity; point-to-point
//! payloads are encrypted to the recipient.
//!
//! Wire form: CBOR map `{"header": bstr, "payload": bstr, "signature": bstr(64)}`, where
//! `header` holds the CBOR encoding of a [`Header`]. The signature is Ed25519 by the sender
//! over `"keyrack/v1/envelope" ‖ 0x00 ‖ header bytes ‖ payload bytes` (the header is exactly
//! one CBOR item with nothing after it, and CBOR items are prefix-free, so the split is
//! unambiguous). Point-to-point payloads are ChaCha20-Poly1305 ciphertexts under
//!
//! ```text
//! key   = HKDF-SHA256(salt = session id, ikm = X25519(sender secret, recipient public),
//!                     info = "keyrack/v1/p2p" ‖ from ‖ 0x00 ‖ to), 32 bytes
//! nonce = 0x00000000 ‖ seq (u64 big-endian)
//! aad   = header bytes
//! ```
//!
//! The key is per (session, from, to), so a sender must never reuse `seq` for one recipient
//! within a session: two payloads under one nonce leak their XOR. Recipients drop duplicate
//! `(session, from, seq)` (the transport's job). This module never touches NATS.

use crate::identity::{validate_node_id, PublicIdentity};
use crate::subjects::is_token;
use crate::wire;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey as AgreementPublic, StaticSecret};
use zeroize::Zeroizing;

/// The header version written and read.
pub const VERSION: u8 = 1;
/// The domain separator of envelope signatures (the 0x00 included).
pub const DOMAIN: &[u8] = b"keyrack/v1/envelope\0";
/// The HKDF info prefix of point-to-point keys (followed by `from ‖ 0x00 ‖ to`).
pub const P2P_INFO: &[u8] = b"keyrack/v1/p2p";

/// Why an envelope was dropped. Each reason is its own variant so the transport can count
/// drops by reason. `Malformed`, `WrongCluster` and `UnknownSender` are decided before the
/// signature is checked (anyone can cause them); the others after.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a well-formed envelope or header (or, from `seal`, an inconsistent header).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The header names another cluster.
    #[error("envelope for cluster '{found}', not this one")]
    WrongCluster {
        /// The cluster named.
        found: String,
    },
    /// The sender is not a member.
    #[error("envelope from unknown sender '{0}'")]
    UnknownSender(String),
    /// The signature does not verify under the sender's identity.
    #[error("envelope from '{0}' has a bad signature")]
    BadSignature(String),
    /// Point-to-point to another node.
    #[error("envelope addressed to '{0}', not to this node")]
    NotForMe(String),
    /// The payload does not decrypt (or the sender's agreement key is degenerate).
    #[error("point-to-point payload from '{0}' does not decrypt")]
    Decrypt(String),
}

fn malformed(msg: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Malformed(msg.into())
}

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Coordinator control (prepare / ready / start) and heartbeats.
    Control,
    /// A threshold protocol round.
    Protocol,
}

/// The signed (and, for point-to-point, authenticated-as-AAD) header of an envelope.
/// CBOR: a map with these text keys, in this order when written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Header version: 1 (CBOR unsigned).
    pub version: u8,
    /// The cluster id.
    pub cluster: String,
    /// The session id (CBOR byte string of 32).
    #[serde(with = "cbor_bytes")]
    pub session: [u8; 32],
    /// Control or protocol.
    pub kind: MessageKind,
    /// The protocol round (0 for control).
    pub round: u16,
    /// The sender's node id.
    pub from: String,
    /// The recipient's node id; `None` (CBOR null) = broadcast, sent in clear.
    pub to: Option<String>,
    /// Per (session, from, to) strictly increasing sequence number; for point-to-point
    /// payloads it is the AEAD nonce, so it must never repeat.
    pub seq: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(with = "cbor_bytes")]
    header: Vec<u8>,
    #[serde(with = "cbor_bytes")]
    payload: Vec<u8>,
    #[serde(with = "cbor_bytes")]
    signature: [u8; 64],
}

/// serde: bytes as a CBOR byte string (not an array of integers).
mod cbor_bytes {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<T: AsRef<[u8]>, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub(super) fn deserialize<'de, T: TryFrom<Vec<u8>>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        // `deserialize_byte_buf`, not `deserialize_bytes`: ciborium hands out byte strings
        // longer than its 4 KB scratch buffer only as an owned buffer.
        let v = d.deserialize_byte_buf(Bytes)?;
        let len = v.len();
        T::try_from(v).map_err(|_| D::Error::custom(format!("wrong length ({len} bytes)")))
    }
}

fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| malformed(e.to_string()))?;
    Ok(out)
}

/// Decodes exactly one CBOR item filling all of `bytes`.
fn from_cbor<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, EnvelopeError> {
    let mut rest = bytes;
    let value = ciborium::from_reader(&mut rest).map_err(|e| malformed(format!("{what}: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{what}: trailing bytes")));
    }
    Ok(value)
}

/// The point-to-point AEAD for (session, from, to) between `my_secret` and `their_public`.
fn p2p_cipher(
    my_secret: &StaticSecret,
    their_public: &[u8; 32],
    header: &Header,
    to: &str,
) -> Option<ChaCha20Poly1305> {
    let shared = my_secret.diffie_hellman(&AgreementPublic::from(*their_public));
    if !shared.was_contributory() {
        return None;
    }
    let hk = Hkdf::<Sha256>::new(Some(&header.session), shared.as_bytes());
    let info = wire::signing_input(P2P_INFO, &[header.from.as_bytes(), &[0], to.as_bytes()]);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(&info, key.as_mut()).ok()?;
    ChaCha20Poly1305::new_from_slice(key.as_ref()).ok()
}

fn nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// Seals an envelope: encrypts `payload` to `peer` if given (then `header.to` must be the
/// peer's id), else sends it in clear (then `header.to` must be `None`), and signs.
/// `header.from` must be the id of the node holding `signing_key`.
pub fn seal(
    signing_key: &SigningKey,
    agreement_secret: &StaticSecret,
    peer: Option<&PublicIdentity>,
    header: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if header.version != VERSION {
        return Err(malformed(format!("header version must be {VERSION}")));
    }
    if !is_token(&header.cluster) {
        return Err(malformed(format!(
            "invalid cluster id '{}'",
            header.cluster
        )));
    }
    validate_node_id(&header.from).map_err(|e| malformed(e.to_string()))?;
    let header_bytes = to_cbor(header)?;
    let body = match (peer, &header.to) {
        (Some(peer), Some(to)) if peer.node_id() == to => {
            let cipher = p2p_cipher(agreement_secret, peer.agreement_key(), header, to)
                .ok_or_else(|| EnvelopeError::Decrypt(to.clone()))?;
            cipher
                .encrypt(
                    (&nonce(header.seq)).into(),
                    Payload {
                        msg: payload,
                        aad: &header_bytes,
                    },
                )
                .map_err(|_| malformed("encryption failed"))?
        }
        (None, None) => payload.to_vec(),
        _ => {
            return Err(malformed(
                "header.to must name the peer given (or both be absent)",
            ))
        }
    };
    let signature = signing_key
        .sign(&wire::signing_input(DOMAIN, &[&header_bytes, &body]))
        .to_bytes();
    to_cbor(&Envelope {
        header: header_bytes,
        payload: body,
        signature,
    })
}

/// Opens an envelope received by node `me.0` (holding agreement secret `me.1`) of
/// `cluster`: checks shape, cluster, sender (`lookup` maps a node id to its identity, e.g.
/// from the manifest), signature, recipient, and decrypts a point-to-point payload.
/// Returns the header and the payload in clear.
///
/// Duplicates (same session, from, seq) and messages from this node itself are the
/// transport's to drop.
pub fn open<'a>(
    bytes: &[u8],
    lookup: impl Fn(&str) -> Option<&'a PublicIdentity>,
    me: (&str, &StaticSecret),
    cluster: &str,
) -> Result<(Header, Zeroizing<Vec<u8>>), EnvelopeError> {
    let envelope: Envelope = from_cbor(bytes, "envelope")?;
    let header: Header = from_cbor(&envelope.header, "header")?;
    if header.version != VERSION {
        return Err(malformed(format!(
            "header version {} not supported",
            header.version
        )));
    }
    if header.cluster != cluster {
        return Err(EnvelopeError::WrongCluster {
            found: header.cluster,
        });
    }
    let sender = lookup(&header.from)
        .filter(|id| id.node_id() == header.from)
        .ok_or_else(|| EnvelopeError::UnknownSender(header.from.clone()))?;
    let signature = Signature::from_bytes(&envelope.signature);
    if !wire::verify(
        sender.signing_key(),
        DOMAIN,
        &[&envelope.header, &envelope.payload],
        &signature,
    ) {
        return Err(EnvelopeError::BadSignature(header.from));
    }
    let payload = match &header.to {
        None => Zeroizing::new(envelope.payload),
        Some(to) if to != me.0 => return Err(EnvelopeError::NotForMe(to.clone())),
        Some(to) => {
            let decrypt = || EnvelopeError::Decrypt(header.from.clone());
            let cipher =
                p2p_cipher(me.1, sender.agreement_key(), &header, to).ok_or_else(decrypt)?;
            Zeroizing::new(
                cipher
                    .decrypt(
                        (&nonce(header.seq)).into(),
                        Payload {
                            msg: &envelope.payload,
                            aad: &envelope.header,
                        },
                    )
                    .map_err(|_| decrypt())?,
            )
        }
    };
    Ok((header, payload))
}

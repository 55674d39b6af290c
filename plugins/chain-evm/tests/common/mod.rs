//! Helpers shared by the EVM plugin tests: keys, k256 signing, RLP surgery on published
//! transactions.
#![allow(dead_code)]

use alloy_primitives::keccak256;
use alloy_rlp::{Header, PayloadView};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use keyrack_chain_evm::Evm;
use keyrack_plugin::{ChainPlugin, Decoded, PayloadFormat, SignerKey};

pub const SCHEME: &str = "ecdsa-secp256k1";

pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).expect("test hex")
}

/// A fixed test key: the secret is keccak-256 of `label`.
pub fn signing_key(label: &str) -> SigningKey {
    SigningKey::from_bytes(&keccak256(label.as_bytes()).0.into()).expect("test key")
}

pub fn compressed(key: &VerifyingKey) -> Vec<u8> {
    key.to_encoded_point(true).as_bytes().to_vec()
}

pub fn signer(public: &[u8]) -> SignerKey<'_> {
    SignerKey {
        scheme: SCHEME,
        public_key: public,
    }
}

/// What the scheme plugin hands the node: `r ‖ s ‖ recovery id`, low-s (k256 signs low-s).
pub fn sign(key: &SigningKey, digest: &[u8]) -> Vec<u8> {
    let (signature, recid): (Signature, RecoveryId) =
        key.sign_prehash_recoverable(digest).expect("sign");
    assert!(signature.normalize_s().is_none(), "k256 signs low-s");
    let mut out = signature.to_bytes().to_vec();
    out.push(recid.to_byte());
    out
}

pub fn decode(format: PayloadFormat, payload: &[u8], public: &[u8]) -> Decoded {
    Evm::new()
        .decode(format, payload, signer(public))
        .unwrap_or_else(|e| panic!("decode: {e}"))
}

/// Signs the one item of `payload` with `key` and finishes it.
pub fn sign_and_finish(format: PayloadFormat, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let public = compressed(key.verifying_key());
    let decoded = decode(format, payload, &public);
    assert_eq!(decoded.items.len(), 1);
    let signature = sign(key, &decoded.items[0].message);
    Evm::new()
        .finish(format, payload, signer(&public), &[signature])
        .unwrap_or_else(|e| panic!("finish: {e}"))
}

/// The items of an RLP list that fills `bytes`.
pub fn rlp_items(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = bytes;
    match Header::decode_raw(&mut rest).expect("rlp") {
        PayloadView::List(items) => {
            assert!(rest.is_empty());
            items.into_iter().map(<[u8]>::to_vec).collect()
        }
        PayloadView::String(_) => panic!("not a list"),
    }
}

pub fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let payload: Vec<u8> = items.concat();
    let mut out = Vec::new();
    Header {
        list: true,
        payload_length: payload.len(),
    }
    .encode(&mut out);
    out.extend(payload);
    out
}

/// The integer an RLP item holds (at most 32 bytes), big-endian, left-padded to 32 bytes.
pub fn rlp_word(item: &[u8]) -> [u8; 32] {
    let mut rest = item;
    let bytes = Header::decode_bytes(&mut rest, false).expect("rlp string");
    let mut word = [0u8; 32];
    word[32 - bytes.len()..].copy_from_slice(bytes);
    word
}

/// A published signed transaction taken apart: the unsigned signing payload and the signature
/// as the scheme plugin would return it (`r ‖ s ‖ recovery id`).
pub struct Published {
    pub unsigned: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Splits a signed typed (EIP-2718) transaction: `type ‖ rlp([fields…, y_parity, r, s])`.
pub fn split_typed(raw: &[u8]) -> Published {
    let items = rlp_items(&raw[1..]);
    let (fields, vrs) = items.split_at(items.len() - 3);
    let parity = rlp_word(&vrs[0])[31];
    let mut unsigned = vec![raw[0]];
    unsigned.extend(rlp_list(fields));
    let mut signature = [rlp_word(&vrs[1]), rlp_word(&vrs[2])].concat();
    signature.push(parity);
    Published {
        unsigned,
        signature,
    }
}

/// Splits a signed EIP-155 legacy transaction: `rlp([6 fields, v, r, s])`, `v = 35 + 2·id +
/// parity`; the signing payload is `rlp([6 fields, id, 0, 0])`.
pub fn split_eip155(raw: &[u8]) -> Published {
    let items = rlp_items(raw);
    assert_eq!(items.len(), 9);
    let v = u64::from_be_bytes(rlp_word(&items[6])[24..].try_into().unwrap());
    let chain_id = (v - 35) / 2;
    let parity = ((v - 35) % 2) as u8;
    let mut fields = items[..6].to_vec();
    let mut id = Vec::new();
    alloy_rlp::Encodable::encode(&chain_id, &mut id);
    fields.extend([id, vec![0x80], vec![0x80]]);
    let mut signature = [rlp_word(&items[7]), rlp_word(&items[8])].concat();
    signature.push(parity);
    Published {
        unsigned: rlp_list(&fields),
        signature,
    }
}

/// The public key a published signature over `digest` recovers to (k256, independent of the
/// plugin).
pub fn recover(digest: &[u8], signature: &[u8]) -> VerifyingKey {
    let sig = Signature::from_slice(&signature[..64]).expect("r, s");
    let recid = RecoveryId::from_byte(signature[64]).expect("recid");
    VerifyingKey::recover_from_prehash(digest, &sig, recid).expect("recover")
}

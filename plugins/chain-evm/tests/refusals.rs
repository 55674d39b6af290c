//! Bad input: every refusal is an error of the right kind with a reason a person can act on.

mod common;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Bytes, U256};
use common::*;
use keyrack_chain_evm::Evm;
use keyrack_plugin::{ChainError, ChainPlugin, PayloadFormat, SignerKey};

const TX: PayloadFormat = PayloadFormat::Transaction;

/// The EIP-155 example's signing payload and signed form
/// (https://eips.ethereum.org/EIPS/eip-155).
const EIP155_UNSIGNED: &str =
    "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080";
const EIP155_SIGNED: &str = "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83";
/// Mainnet EIP-1559 transaction 0xce4dc6d7…ab31 (signed).
const EIP1559_SIGNED: &str = "02f86f0102843b9aca0085029e7822d68298f094d9e1459a7a482635700cbc20bbaf52d495ab9c9680841b55ba3ac080a0c199674fcb29f353693dd779c017823b954b3c69dffa3cd6b2a6ff7888798039a028ca912de909e7e6cdef9cdcaf24c54dd8c1032946dfa1d85c206b32a9064fe8";

fn public() -> Vec<u8> {
    compressed(signing_key("refusals").verifying_key())
}

fn decode_err(format: PayloadFormat, payload: &[u8]) -> ChainError {
    Evm::new()
        .decode(format, payload, signer(&public()))
        .expect_err("must be refused")
}

fn assert_malformed(err: ChainError, needle: &str) {
    match &err {
        ChainError::Malformed { reason, .. } if reason.contains(needle) => {}
        _ => panic!("expected Malformed containing {needle:?}, got {err:?}"),
    }
}

fn assert_unsupported(err: ChainError, needle: &str) {
    match &err {
        ChainError::Unsupported(reason) if reason.contains(needle) => {}
        _ => panic!("expected Unsupported containing {needle:?}, got {err:?}"),
    }
}

fn assert_finish(err: ChainError, needle: &str) {
    match &err {
        ChainError::Finish(reason) if reason.contains(needle) => {}
        _ => panic!("expected Finish containing {needle:?}, got {err:?}"),
    }
}

#[test]
fn truncated_trailing_and_empty_transactions_are_malformed() {
    let unsigned = hex(EIP155_UNSIGNED);
    assert_malformed(decode_err(TX, &unsigned[..unsigned.len() - 1]), "RLP");
    let mut trailing = unsigned.clone();
    trailing.push(0x00);
    assert_malformed(decode_err(TX, &trailing), "trailing");
    assert_malformed(decode_err(TX, &[]), "empty");
    assert_malformed(
        decode_err(TX, &[0x85, 1, 2, 3, 4, 5]),
        "neither an RLP list",
    );

    let tx = TxEip1559 {
        chain_id: 1,
        gas_limit: 21_000,
        to: alloy_primitives::Address::ZERO.into(),
        value: U256::from(1u8),
        input: Bytes::new(),
        ..Default::default()
    };
    let payload = tx.encoded_for_signing();
    assert_malformed(
        decode_err(TX, &payload[..payload.len() - 2]),
        "EIP-1559 RLP",
    );
    let mut trailing = payload.clone();
    trailing.extend([0xc0]);
    assert_malformed(decode_err(TX, &trailing), "trailing");
}

#[test]
fn signed_transactions_given_as_unsigned_are_refused() {
    assert_malformed(
        decode_err(TX, &hex(EIP155_SIGNED)),
        "signed legacy transaction",
    );
    assert_malformed(
        decode_err(TX, &hex(EIP1559_SIGNED)),
        "signed EIP-1559 transaction",
    );
}

#[test]
fn wrong_field_counts_and_eip155_chain_id_zero_are_malformed() {
    // The EIP-155 payload without its chain id and zeros but one field short: 5 fields.
    let items = rlp_items(&hex(EIP155_UNSIGNED));
    assert_malformed(decode_err(TX, &rlp_list(&items[..5])), "5 fields");
    let mut zero_chain = items[..6].to_vec();
    zero_chain.extend([vec![0x80], vec![0x80], vec![0x80]]);
    assert_malformed(decode_err(TX, &rlp_list(&zero_chain)), "chain id 0");
}

#[test]
fn blob_set_code_and_unknown_transaction_types_are_unsupported() {
    assert_unsupported(decode_err(TX, &[0x03, 0xc0]), "EIP-4844");
    assert_unsupported(decode_err(TX, &[0x04, 0xc0]), "EIP-7702");
    assert_unsupported(decode_err(TX, &[0x05, 0xc0]), "type 0x05");
    assert_unsupported(decode_err(TX, &[0x00, 0xc0]), "type 0x00");
}

#[test]
fn malformed_typed_data_is_refused() {
    assert_malformed(
        decode_err(PayloadFormat::TypedData, b"{not json"),
        "eth_signTypedData_v4",
    );
    // Well-formed JSON whose message does not fit its types.
    let json = r#"{"types": {"EIP712Domain": [], "M": [{"name": "a", "type": "uint8"}]},
        "primaryType": "M", "domain": {}, "message": {"a": "not a number"}}"#;
    assert_malformed(
        decode_err(PayloadFormat::TypedData, json.as_bytes()),
        "cannot hash",
    );
}

#[test]
fn other_schemes_and_key_encodings_are_unsupported() {
    let evm = Evm::new();
    assert_eq!(evm.schemes(), &["ecdsa-secp256k1"]);
    let key = signing_key("refusals");
    let compressed_key = compressed(key.verifying_key());
    let uncompressed = key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let ed25519 = SignerKey {
        scheme: "ed25519",
        public_key: &[7u8; 32],
    };
    assert_unsupported(evm.addresses(ed25519).unwrap_err(), "ed25519");
    let schnorr = SignerKey {
        scheme: "schnorr-secp256k1",
        public_key: &compressed_key[1..],
    };
    assert_unsupported(evm.addresses(schnorr).unwrap_err(), "schnorr-secp256k1");
    assert_unsupported(
        evm.addresses(signer(&uncompressed)).unwrap_err(),
        "got 65 bytes",
    );
    let mut off_curve = compressed_key.clone();
    off_curve[1..].fill(0xff);
    assert_unsupported(
        evm.addresses(signer(&off_curve)).unwrap_err(),
        "not a point",
    );
    assert_unsupported(
        evm.decode(TX, &hex(EIP155_UNSIGNED), ed25519).unwrap_err(),
        "ed25519",
    );
    assert_unsupported(
        evm.finish(TX, &hex(EIP155_UNSIGNED), ed25519, &[vec![0; 65]])
            .unwrap_err(),
        "ed25519",
    );
}

/// secp256k1's group order n.
const N: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

#[test]
fn bad_signatures_never_finish() {
    let evm = Evm::new();
    let key = signing_key("refusals");
    let public = compressed(key.verifying_key());
    let payload = hex(EIP155_UNSIGNED);
    let digest = decode(TX, &payload, &public).items[0].message.clone();
    let good = sign(&key, &digest);
    let finish = |format, payload: &[u8], signatures: &[Vec<u8>]| {
        evm.finish(format, payload, signer(&public), signatures)
            .expect_err("must be refused")
    };

    assert_finish(finish(TX, &payload, &[good[..64].to_vec()]), "64 bytes");
    assert_finish(finish(TX, &payload, &[]), "0 signatures");
    assert_finish(
        finish(TX, &payload, &[good.clone(), good.clone()]),
        "2 signatures",
    );

    let mut v27 = good.clone();
    v27[64] += 27;
    assert_finish(finish(TX, &payload, &[v27]), "recovery id");

    // The same signature with s replaced by n - s (and the parity flipped) is the high-s twin.
    let n = U256::from_str_radix(N, 16).unwrap();
    let s = U256::from_be_slice(&good[32..64]);
    let mut high = good.clone();
    high[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high[64] ^= 1;
    assert_finish(finish(TX, &payload, &[high]), "high-s");

    // A valid signature by another key, over the right digest.
    let other = sign(&signing_key("someone else"), &digest);
    assert_finish(finish(TX, &payload, &[other]), "not to the key's address");
    // The right key, over another digest.
    let elsewhere = sign(&key, &[0x11; 32]);
    assert_finish(
        finish(TX, &payload, &[elsewhere]),
        "not to the key's address",
    );

    // Messages check the same way.
    let message_digest = decode(PayloadFormat::PersonalMessage, b"hi", &public).items[0]
        .message
        .clone();
    let other = sign(&signing_key("someone else"), &message_digest);
    assert_finish(
        finish(PayloadFormat::PersonalMessage, b"hi", &[other]),
        "not to the key's address",
    );
    // r = 0 is no signature at all.
    let mut zero_r = good;
    zero_r[..32].fill(0);
    assert_finish(finish(TX, &payload, &[zero_r]), "zero");
}

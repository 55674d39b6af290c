//! Trusted-dealer import: an existing key (with its BIP-32 chain code) signs under its own
//! public key and derives BIP-32 child keys — checked against a BIP-32 public derivation
//! written here from the spec with k256 and HMAC-SHA512, independent of cggmp21.

mod common;

use common::*;
use hmac::{Hmac, Mac};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use keyrack_ecdsa_cggmp21::import::split_secret;
use keyrack_plugin::SchemePlugin;

/// BIP-32 CKDpub for a non-hardened path.
fn bip32_child(public: &[u8], chain_code: [u8; 32], path: &[u32]) -> Vec<u8> {
    let mut key = k256::PublicKey::from_sec1_bytes(public).unwrap();
    let mut cc = chain_code;
    for &i in path {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(&cc).unwrap();
        mac.update(key.to_encoded_point(true).as_bytes());
        mac.update(&i.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let il = k256::NonZeroScalar::try_from(&out[..32]).unwrap();
        let child = key.to_projective() + k256::ProjectivePoint::GENERATOR * *il;
        key = k256::PublicKey::from_affine(child.to_affine()).unwrap();
        cc.copy_from_slice(&out[32..]);
    }
    key.to_encoded_point(true).as_bytes().to_vec()
}

#[test]
fn imported_key_signs_under_its_own_key_and_derives_bip32_children() {
    let secret = [0x37u8; 32];
    let chain_code = [0x5cu8; 32];
    let expected = k256::ecdsa::SigningKey::from_bytes(&secret.into()).unwrap();
    let expected_pk = expected
        .verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec();

    let shares = split_secret(&secret, chain_code, 2, fixture_aux(3)).unwrap();
    assert_eq!(shares.len(), 3);
    assert!(shares
        .iter()
        .all(|s| s.public_key == expected_pk && s.chain_code == chain_code));

    let plugin = plugin();
    let msg = message("imported");
    agreed(
        &sign(&plugin, &shares, &[2, 0], msg, &[]),
        &msg,
        &expected_pk,
    );

    let path = [0, 5, 1];
    let child = bip32_child(&expected_pk, chain_code, &path);
    assert_eq!(
        plugin
            .derive_public_key(&expected_pk, &chain_code, &path)
            .unwrap(),
        child
    );
    agreed(&sign(&plugin, &shares, &[1, 2], msg, &path), &msg, &child);
}

#[test]
fn import_checks_its_inputs() {
    assert!(
        split_secret(&[0; 32], [0; 32], 2, fixture_aux(3)).is_err(),
        "zero key"
    );
    assert!(
        split_secret(&[1; 32], [0; 32], 1, fixture_aux(3)).is_err(),
        "threshold 1 of 3"
    );
    let mut aux = fixture_aux(3);
    aux.swap(0, 1);
    assert!(
        split_secret(&[1; 32], [0; 32], 2, aux).is_err(),
        "committee out of order"
    );
}

//! Trusted-dealer import: an existing key, split, signs under its own public key.

use std::time::Duration;

use keyrack_eddsa_frost::import::{split_bip340_secret, split_ed25519_seed};
use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{KeyShare, SchemePlugin, Session, SignRequest};

fn sign(p: &dyn SchemePlugin, shares: &[KeyShare], signers: &[u16], message: &[u8]) -> Vec<u8> {
    let n = signers.len() as u16;
    sim::run(n, Duration::from_secs(10), &Faults::default(), |me, ch| {
        let request = SignRequest {
            signers: signers.to_vec(),
            message: message.to_vec(),
            derivation_path: vec![],
        };
        p.sign(
            &Session {
                id: [3; 32],
                me,
                parties: n,
            },
            ch,
            &shares[signers[me as usize] as usize],
            &request,
        )
    })
    .into_iter()
    .next()
    .unwrap()
    .unwrap()
    .unwrap()
    .signature
}

#[test]
fn imported_ed25519_seed_signs_under_its_own_public_key() {
    let seed = [0x11u8; 32];
    let expected = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let shares = split_ed25519_seed(&seed, [0; 32], 2, 3).unwrap();
    assert_eq!(shares[0].public_key, expected.as_bytes());
    let sig = sign(
        &keyrack_eddsa_frost::ed25519(),
        &shares,
        &[2, 0],
        b"migrated",
    );
    expected
        .verify_strict(
            b"migrated",
            &ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap()),
        )
        .unwrap();
}

#[test]
fn imported_bip340_secret_signs_under_its_own_public_key() {
    let secret = [0x22u8; 32];
    let expected = k256::schnorr::SigningKey::from_bytes(&secret).unwrap();
    let shares = split_bip340_secret(&secret, [0; 32], 3, 5).unwrap();
    assert_eq!(
        shares[0].public_key,
        expected.verifying_key().to_bytes().as_slice()
    );
    let msg = [9u8; 32];
    let sig = sign(
        &keyrack_eddsa_frost::schnorr_secp256k1(),
        &shares,
        &[4, 1, 3],
        &msg,
    );
    expected
        .verifying_key()
        .verify_raw(
            &msg,
            &k256::schnorr::Signature::try_from(sig.as_slice()).unwrap(),
        )
        .unwrap();
}

#[test]
fn import_refuses_a_bad_threshold() {
    assert!(split_ed25519_seed(&[1; 32], [0; 32], 1, 3).is_err());
}

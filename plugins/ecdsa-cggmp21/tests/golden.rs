//! The golden 2-of-3 share set in testdata/ (written by tests/fixtures.rs with share format
//! 1) must keep loading and signing: a change that breaks it breaks every stored share.

mod common;

use common::*;
use keyrack_plugin::KeyShare;

#[test]
fn golden_share_set_still_loads_and_signs() {
    let bytes = std::fs::read(testdata("golden-2of3.cbor")).unwrap();
    let shares: Vec<KeyShare> = ciborium::from_reader(bytes.as_slice()).unwrap();
    assert_eq!(shares.len(), 3);
    for (i, s) in shares.iter().enumerate() {
        assert_eq!(s.scheme, "ecdsa-secp256k1");
        assert_eq!((s.threshold, s.parties, s.index), (2, 3, i as u16));
        assert_eq!(&s.secret[..2], &[0, 1], "share format 1");
    }
    let plugin = plugin();
    let msg = message("golden");
    let out = sign(&plugin, &shares, &[2, 0], msg, &[1, 2]);
    let child = keyrack_plugin::SchemePlugin::derive_public_key(
        &*plugin,
        &shares[0].public_key,
        &shares[0].chain_code,
        &[1, 2],
    )
    .unwrap();
    agreed(&out, &msg, &child);
}

#[test]
fn aux_fingerprints_agree_within_a_committee_and_differ_across_committees() {
    let three: Vec<[u8; 32]> = fixture_aux(3)
        .iter()
        .map(|a| a.fingerprint().unwrap())
        .collect();
    assert!(
        three.iter().all(|f| *f == three[0]),
        "one setup, one fingerprint"
    );
    // Decoding the stored bytes again gives the same fingerprint (it is what nodes compare).
    let again =
        keyrack_ecdsa_cggmp21::CommitteeAux::from_bytes(&fixture_aux(3)[1].to_bytes().unwrap())
            .unwrap();
    assert_eq!(again.fingerprint().unwrap(), three[0]);
    let four = fixture_aux(4)[0].fingerprint().unwrap();
    assert_ne!(four, three[0], "another committee, another fingerprint");
}

//! keygen, signing (every signer subset), HD derivation, presigning, and faults, over the
//! simulated network. Every signature is verified with k256 alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keyrack_ecdsa_cggmp21::{EcdsaPlugin, StaticAuxInfo};
use keyrack_plugin::sim::Faults;
use keyrack_plugin::{KeygenParams, ProtocolError, SchemePlugin};

#[test]
fn keygen_2_of_3_then_every_pair_signs() {
    let plugin = plugin();
    let shares = keygen(&plugin, 2, 3);
    let pk = shares[0].public_key.clone();
    for (i, s) in shares.iter().enumerate() {
        assert_eq!(s.scheme, "ecdsa-secp256k1");
        assert_eq!((s.threshold, s.parties, s.index), (2, 3, i as u16));
        assert_eq!(s.public_key, pk);
        assert_eq!(s.chain_code, shares[0].chain_code);
        assert_eq!(pk.len(), 33);
        assert!(!format!("{s:?}").contains(&hex::encode(&s.secret[..16])));
    }
    for signers in [[0u16, 1], [0, 2], [1, 2], [2, 0]] {
        let msg = message(&format!("pair {signers:?}"));
        let out = sign(&plugin, &shares, &signers, msg, &[]);
        agreed(&out, &msg, &pk);
    }
}

#[test]
fn keygen_3_of_5_signs() {
    let plugin = plugin();
    let shares = keygen(&plugin, 3, 5);
    assert!(shares.iter().all(|s| (s.threshold, s.parties) == (3, 5)));
    let msg = message("3 of 5");
    let out = sign(&plugin, &shares, &[4, 1, 3], msg, &[]);
    agreed(&out, &msg, &shares[0].public_key);
}

#[test]
fn hd_derived_signature_verifies_under_the_derived_key() {
    let plugin = plugin();
    let shares = keygen(&plugin, 2, 3);
    let path = [44, 60, 0, 7];
    let child = plugin
        .derive_public_key(&shares[0].public_key, &shares[0].chain_code, &path)
        .unwrap();
    assert_ne!(child, shares[0].public_key);
    let msg = message("hd");
    let out = sign(&plugin, &shares, &[1, 2], msg, &path);
    agreed(&out, &msg, &child);
    // Hardened indices cannot be derived from a public key.
    assert!(matches!(
        plugin.derive_public_key(&shares[0].public_key, &shares[0].chain_code, &[1 << 31]),
        Err(ProtocolError::InvalidRequest(_))
    ));
}

#[test]
fn presign_then_sign_presigned_with_and_without_a_path() {
    let plugin = plugin();
    let shares = keygen(&plugin, 2, 3);
    let pk = shares[0].public_key.clone();
    let signers = [2u16, 0];
    let pres = presign(&plugin, &shares, &signers);
    assert!(pres
        .iter()
        .all(|p| p.signers == signers && p.public_key == pk));
    assert!(!format!("{:?}", pres[0]).contains(&hex::encode(&pres[0].secret[..16])));
    let msg = message("presigned");
    agreed(&sign_presigned(&plugin, &shares, pres, msg, &[]), &msg, &pk);

    let path = [0, 5];
    let child = plugin
        .derive_public_key(&pk, &shares[0].chain_code, &path)
        .unwrap();
    let pres = presign(&plugin, &shares, &[0, 1]);
    let msg = message("presigned hd");
    agreed(
        &sign_presigned(&plugin, &shares, pres, msg, &path),
        &msg,
        &child,
    );
}

#[test]
fn duplicated_messages_are_dropped() {
    let plugin = plugin();
    let faults = Faults {
        duplicate_every_message: true,
        ..Faults::default()
    };
    let shares = all_ok(keygen_with(&plugin, 2, 3, &faults, TIMEOUT));
    let msg = message("duplicates");
    let out = all_ok(sign_with(
        &plugin,
        &shares,
        &[0, 1],
        msg,
        &[],
        &faults,
        TIMEOUT,
    ));
    agreed(&out, &msg, &shares[0].public_key);
}

#[test]
fn a_tampered_message_names_its_sender() {
    let plugin = plugin();
    let faults = Faults {
        tamper: Some((1, 0, Arc::new(|p: &mut Vec<u8>| p.truncate(p.len() / 2)))),
        ..Faults::default()
    };
    let results = keygen_with(&plugin, 2, 3, &faults, Duration::from_secs(2));
    for me in [0usize, 2] {
        match results[me].as_ref().unwrap() {
            Err(ProtocolError::Malformed { party: 1, .. }) => {}
            other => panic!("party {me}: expected Malformed from party 1, got {other:?}"),
        }
    }

    let shares = keygen(&plugin, 2, 3);
    let faults = Faults {
        tamper: Some((0, 0, Arc::new(|p: &mut Vec<u8>| p[1..].fill(0xff)))),
        ..Faults::default()
    };
    let msg = message("tampered");
    let results = sign_with(
        &plugin,
        &shares,
        &[1, 2],
        msg,
        &[],
        &faults,
        Duration::from_secs(5),
    );
    match results[1].as_ref().unwrap() {
        Err(ProtocolError::Malformed { party: 0, .. }) => {}
        other => panic!("expected Malformed from party 0, got {other:?}"),
    }
}

#[test]
fn an_absent_party_times_out_by_name() {
    let plugin = plugin();
    let faults = Faults {
        absent: vec![2],
        ..Faults::default()
    };
    let results = keygen_with(&plugin, 2, 3, &faults, Duration::from_millis(1500));
    assert!(results[2].is_none());
    for me in [0usize, 1] {
        match results[me].as_ref().unwrap() {
            Err(ProtocolError::Timeout { missing, .. }) => assert_eq!(missing, &vec![2]),
            other => panic!("party {me}: expected a timeout naming 2, got {other:?}"),
        }
    }
}

#[test]
fn bad_requests_are_refused_before_any_message() {
    let plugin = plugin();
    let id = session_id();
    let mut ch = keyrack_plugin::runtime::QueueChannel::new(
        std::sync::mpsc::channel().1,
        Box::new(|_| true),
        Duration::from_millis(10),
    );
    let err = plugin
        .keygen(&session(id, 0, 3), &mut ch, &KeygenParams { threshold: 1 })
        .unwrap_err();
    assert!(matches!(err, ProtocolError::InvalidRequest(_)));
    // No aux info for a committee of 7.
    let err = plugin
        .keygen(&session(id, 0, 7), &mut ch, &KeygenParams { threshold: 4 })
        .unwrap_err();
    assert!(matches!(err, ProtocolError::InvalidRequest(_)), "{err}");
    // A plugin whose source has no aux info at all refuses even a committee of 3.
    let empty = EcdsaPlugin::new(Arc::new(StaticAuxInfo::new()));
    let err = empty
        .keygen(&session(id, 0, 3), &mut ch, &KeygenParams { threshold: 2 })
        .unwrap_err();
    assert!(matches!(err, ProtocolError::InvalidRequest(_)), "{err}");
}

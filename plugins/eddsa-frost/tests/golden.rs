//! Golden fixtures: 2-of-3 share sets of both schemes, serialised by format 1, must keep
//! loading and signing in later versions. Regenerate (only when the format changes, keeping
//! the old files as well) with:
//! `cargo test -p keyrack-eddsa-frost --test golden -- --ignored write_golden_fixtures`

use std::path::PathBuf;
use std::time::Duration;

use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{KeyShare, KeygenParams, SchemePlugin, Session, SignRequest};

fn fixture(scheme: &str) -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test and nextest at run time"),
    )
    .join("testdata")
    .join(format!("{scheme}-2of3-v1.cbor"))
}

fn session(me: u16, parties: u16) -> Session {
    Session {
        id: [7; 32],
        me,
        parties,
    }
}

fn load(scheme: &str) -> Vec<KeyShare> {
    let bytes = std::fs::read(fixture(scheme)).expect("fixture present");
    ciborium::from_reader(bytes.as_slice()).expect("fixture decodes")
}

fn sign(plugin: &dyn SchemePlugin, shares: &[KeyShare], message: &[u8]) -> Vec<u8> {
    let signers = [0u16, 2];
    let out = sim::run(2, Duration::from_secs(10), &Faults::default(), |me, ch| {
        let request = SignRequest {
            signers: signers.to_vec(),
            message: message.to_vec(),
            derivation_path: vec![1],
        };
        plugin.sign(
            &session(me, 2),
            ch,
            &shares[signers[me as usize] as usize],
            &request,
        )
    });
    let first = out
        .into_iter()
        .next()
        .unwrap()
        .unwrap()
        .expect("golden shares sign");
    assert_eq!(
        first.public_key,
        plugin
            .derive_public_key(&shares[0].public_key, &shares[0].chain_code, &[1])
            .unwrap()
    );
    first.signature
}

#[test]
fn golden_ed25519_shares_still_sign() {
    let plugin = keyrack_eddsa_frost::ed25519();
    let shares = load("ed25519");
    let msg = b"golden fixture message";
    let sig = sign(&plugin, &shares, msg);
    let child = plugin
        .derive_public_key(&shares[0].public_key, &shares[0].chain_code, &[1])
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&child.try_into().unwrap()).unwrap();
    key.verify_strict(
        msg,
        &ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap()),
    )
    .unwrap();
}

#[test]
fn golden_schnorr_secp256k1_shares_still_sign() {
    let plugin = keyrack_eddsa_frost::schnorr_secp256k1();
    let shares = load("schnorr-secp256k1");
    let msg = [0x5a; 32];
    let sig = sign(&plugin, &shares, &msg);
    let child = plugin
        .derive_public_key(&shares[0].public_key, &shares[0].chain_code, &[1])
        .unwrap();
    let key = k256::schnorr::VerifyingKey::from_bytes(&child).unwrap();
    key.verify_raw(
        &msg,
        &k256::schnorr::Signature::try_from(sig.as_slice()).unwrap(),
    )
    .unwrap();
}

#[test]
#[ignore = "writes the golden fixtures; run only when adding a new share format"]
fn write_golden_fixtures() {
    let plugins: [(&str, Box<dyn SchemePlugin>); 2] = [
        ("ed25519", Box::new(keyrack_eddsa_frost::ed25519())),
        (
            "schnorr-secp256k1",
            Box::new(keyrack_eddsa_frost::schnorr_secp256k1()),
        ),
    ];
    for (scheme, plugin) in plugins {
        let shares: Vec<KeyShare> =
            sim::run(3, Duration::from_secs(10), &Faults::default(), |me, ch| {
                plugin.keygen(&session(me, 3), ch, &KeygenParams { threshold: 2 })
            })
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        let mut out = Vec::new();
        ciborium::into_writer(&shares, &mut out).unwrap();
        std::fs::write(fixture(scheme), out).unwrap();
    }
}

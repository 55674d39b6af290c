//! Shared test and bench helpers: fixtures from testdata/, protocol runs over the simulated
//! network, and independent k256 verification.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use keyrack_ecdsa_cggmp21::{CommitteeAux, EcdsaPlugin, SafePrimes, StaticAuxInfo};
use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{
    KeyShare, KeygenParams, PartyIndex, Presignature, ProtocolError, SchemePlugin, Session,
    SignRequest, SignatureOutput,
};

/// Receive deadline for runs expected to succeed.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test and nextest at run time"),
    )
    .join("testdata")
    .join(name)
}

/// A list of byte strings stored as CBOR.
pub fn read_list(name: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(testdata(name)).expect("fixture missing: see tests/fixtures.rs");
    ciborium::from_reader(bytes.as_slice()).expect("fixture decodes")
}

pub fn write_list(name: &str, items: &[Vec<u8>]) {
    let mut out = Vec::new();
    ciborium::into_writer(&items, &mut out).expect("encode");
    std::fs::write(testdata(name), out).expect("write fixture");
}

pub fn fixture_primes() -> Vec<SafePrimes> {
    read_list("primes.cbor")
        .iter()
        .map(|b| SafePrimes::from_bytes(b).expect("primes"))
        .collect()
}

pub fn fixture_aux(n: u16) -> Vec<CommitteeAux> {
    read_list(&format!("aux-{n}.cbor"))
        .iter()
        .map(|b| CommitteeAux::from_bytes(b).expect("aux info"))
        .collect()
}

/// A plugin whose aux info source holds the committees of 3, 4 and 5 from testdata/.
pub fn plugin() -> Arc<EcdsaPlugin> {
    let source = StaticAuxInfo::new();
    for n in [3, 4, 5] {
        for aux in fixture_aux(n) {
            source.insert(aux);
        }
    }
    Arc::new(EcdsaPlugin::new(Arc::new(source)))
}

pub fn session_id() -> [u8; 32] {
    let mut id = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    id
}

pub fn session(id: [u8; 32], me: PartyIndex, parties: u16) -> Session {
    Session { id, me, parties }
}

/// Every party's result, `None` for absent parties.
pub type Results<T> = Vec<Option<Result<T, ProtocolError>>>;

pub fn all_ok<T>(results: Results<T>) -> Vec<T> {
    results
        .into_iter()
        .map(|r| r.expect("party ran").expect("party succeeded"))
        .collect()
}

pub fn keygen_with(
    plugin: &EcdsaPlugin,
    t: u16,
    n: u16,
    faults: &Faults,
    timeout: Duration,
) -> Results<KeyShare> {
    let id = session_id();
    sim::run(n, timeout, faults, |me, ch| {
        plugin.keygen(&session(id, me, n), ch, &KeygenParams { threshold: t })
    })
}

pub fn keygen(plugin: &EcdsaPlugin, t: u16, n: u16) -> Vec<KeyShare> {
    all_ok(keygen_with(plugin, t, n, &Faults::default(), TIMEOUT))
}

/// Full signing by `signers` (key indices, session order).
pub fn sign_with(
    plugin: &EcdsaPlugin,
    shares: &[KeyShare],
    signers: &[PartyIndex],
    message: [u8; 32],
    path: &[u32],
    faults: &Faults,
    timeout: Duration,
) -> Results<SignatureOutput> {
    let id = session_id();
    let m = signers.len() as u16;
    let request = SignRequest {
        signers: signers.to_vec(),
        message: message.to_vec(),
        derivation_path: path.to_vec(),
    };
    sim::run(m, timeout, faults, |me, ch| {
        let share = &shares[usize::from(signers[usize::from(me)])];
        plugin.sign(&session(id, me, m), ch, share, &request)
    })
}

pub fn sign(
    plugin: &EcdsaPlugin,
    shares: &[KeyShare],
    signers: &[PartyIndex],
    message: [u8; 32],
    path: &[u32],
) -> Vec<SignatureOutput> {
    all_ok(sign_with(
        plugin,
        shares,
        signers,
        message,
        path,
        &Faults::default(),
        TIMEOUT,
    ))
}

pub fn presign(
    plugin: &EcdsaPlugin,
    shares: &[KeyShare],
    signers: &[PartyIndex],
) -> Vec<Presignature> {
    let id = session_id();
    let m = signers.len() as u16;
    all_ok(sim::run(m, TIMEOUT, &Faults::default(), |me, ch| {
        let share = &shares[usize::from(signers[usize::from(me)])];
        plugin.presign(&session(id, me, m), ch, share, signers)
    }))
}

pub fn sign_presigned(
    plugin: &EcdsaPlugin,
    shares: &[KeyShare],
    presignatures: Vec<Presignature>,
    message: [u8; 32],
    path: &[u32],
) -> Vec<SignatureOutput> {
    let id = session_id();
    let m = presignatures.len() as u16;
    let presignatures: Vec<std::sync::Mutex<Option<Presignature>>> = presignatures
        .into_iter()
        .map(|p| std::sync::Mutex::new(Some(p)))
        .collect();
    all_ok(sim::run(m, TIMEOUT, &Faults::default(), |me, ch| {
        let presignature = presignatures[usize::from(me)]
            .lock()
            .unwrap()
            .take()
            .unwrap();
        let share = &shares[usize::from(presignature.signers[usize::from(me)])];
        plugin.sign_presigned(&session(id, me, m), ch, share, presignature, &message, path)
    }))
}

/// Verifies an `r ‖ s ‖ v` signature with k256 alone: verify_prehash under `public_key`,
/// low s, and recovery with `v` gives `public_key` back.
pub fn verify(signature: &[u8], message: &[u8; 32], public_key: &[u8]) {
    assert_eq!(signature.len(), 65, "r ‖ s ‖ v");
    assert_eq!(public_key.len(), 33, "SEC1 compressed");
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).expect("public key");
    let sig = k256::ecdsa::Signature::from_slice(&signature[..64]).expect("r, s");
    assert!(sig.normalize_s().is_none(), "s is low");
    vk.verify_prehash(message, &sig).expect("k256 verifies");
    let id = k256::ecdsa::RecoveryId::from_byte(signature[64]).expect("v is 0 or 1");
    let recovered =
        k256::ecdsa::VerifyingKey::recover_from_prehash(message, &sig, id).expect("recovers");
    assert_eq!(recovered, vk, "recovery id recovers the public key");
}

/// All results agree on one signature; verifies it; returns it.
pub fn agreed(outputs: &[SignatureOutput], message: &[u8; 32], public_key: &[u8]) -> Vec<u8> {
    let first = &outputs[0];
    assert!(outputs.iter().all(|o| o == first), "all signers agree");
    assert_eq!(first.public_key, public_key);
    verify(&first.signature, message, public_key);
    first.signature.clone()
}

pub fn message(tag: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(tag.as_bytes()).into()
}

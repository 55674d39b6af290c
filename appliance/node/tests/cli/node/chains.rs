//! Chain payloads signed by a cluster of node processes, checked with each ecosystem's own
//! library (never with keyrack's chain plugins): an EVM transaction's recovered sender is the
//! address of the cluster's key (alloy), a Bitcoin PSBT signed by two keys finalises and its
//! witnesses verify over the sighashes the `bitcoin` crate computes (k256), a Solana transfer
//! passes Solana's own verification; then what the nodes refuse, and with which code.
//!
//! One cluster of three on the development policy (every request allowed), `bitcoin_network =
//! "regtest"`, with one wallet holding an ECDSA, a BIP-340 Schnorr and an Ed25519 key. Each
//! node's prime pool is seeded with one pair of the plugin's public fixture primes before its
//! first start (enough for the one ECDSA committee setup); `prime_pool = 0` keeps the nodes
//! from generating more.

use alloy_consensus::transaction::{RlpEcdsaDecodableTx, SignerRecoverable};
use alloy_consensus::{SignableTransaction, Transaction as _, TxEip1559, TxEnvelope, TxLegacy};
use alloy_primitives::{Address as EvmAddress, Bytes, TxKind, U256};
use bitcoin::hashes::Hash as _;
use bitcoin::key::TweakedPublicKey;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, transaction, Amount, CompressedPublicKey, Network, OutPoint, Psbt, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Txid, WPubkeyHash, Witness, XOnlyPublicKey,
};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use keyrack_client::codes::ErrorCode;
use keyrack_client::request::PayloadKind;
use solana_message::{Address as SolanaAddress, Hash as SolanaHash, Message};
use solana_system_interface::instruction as system;
use solana_transaction::versioned::VersionedTransaction;

use super::ecdsa::bip32_child;
use super::*;

/// Committee setup (≈ 9 s of CPU per party, three parties on the test machine's cores) and
/// the keygen after it.
const SETUP_WAIT: Duration = Duration::from_secs(240);

/// The derivation path of the EVM child key.
const CHILD: [u32; 2] = [0, 7];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm_chain_transactions_signed_by_the_cluster_are_accepted_by_each_ecosystems_library()
{
    let cluster = Cluster::builder(3)
        .cluster_line("prime_pool = 0")
        .cluster_line("setup_timeout_ms = 120000")
        .before_start(|node| {
            let (store, sealer) = (node.open_store(), node.sealer());
            keyrack_node::ecdsa::seed_fixture_primes(&store, sealer.as_ref(), node.index).unwrap();
        })
        .start();
    let client = cluster.client("app").await;

    let schemes = [
        Scheme::EcdsaSecp256k1,
        Scheme::SchnorrSecp256k1,
        Scheme::Ed25519,
    ];
    let agreed = client
        .keygen(WALLET, &schemes, 2, SETUP_WAIT)
        .await
        .expect("keygen");
    let mut nodes = agreed.nodes.clone();
    nodes.sort();
    assert_eq!(nodes, cluster.node_ids());
    let key = |scheme: Scheme| {
        let k = agreed
            .keys
            .iter()
            .find(|k| k.scheme == scheme)
            .unwrap_or_else(|| panic!("no {scheme:?} key in {agreed:?}"));
        KeyInfo {
            scheme,
            public_key: k.public_key.clone(),
            chain_code: k.chain_code,
        }
    };
    let (ecdsa, schnorr, ed25519) = (
        key(Scheme::EcdsaSecp256k1),
        key(Scheme::SchnorrSecp256k1),
        key(Scheme::Ed25519),
    );

    evm_round_trips(&client, &ecdsa).await;
    bitcoin_round_trip(&client, &ecdsa, &schnorr).await;
    solana_round_trip(&client, &ed25519).await;
    // The result reader is made here (it reads from the first result): one made before the
    // keygen and left unread through the ECDSA setup (≈ 40 s, beyond its consumer's 30 s
    // inactivity threshold) was seen to read nothing more.
    let mut results = cluster.results("app").await;
    refusals(&client, &mut results, &ecdsa).await;
}

// ---------------------------------------------------------------------------------------
// EVM

/// An EIP-1559 transaction (root key) and a legacy EIP-155 one (child key `CHILD`), each
/// decoded from the node's signed raw transaction by alloy, whose recovered sender is the
/// address computed here from the key; then a personal_sign message.
async fn evm_round_trips(client: &Client, key: &KeyInfo) {
    let root = EvmAddress::from_public_key(&ecdsa_key(&key.public_key));

    let eip1559 = TxEip1559 {
        chain_id: 1,
        nonce: 3,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(EvmAddress::repeat_byte(0x42)),
        value: U256::from(1_500_000_000_000_000_000u128),
        ..TxEip1559::default()
    };
    let signed = sign_evm_transaction(client, &eip1559, &[]).await;
    assert_eq!(signed.signature.public_key, key.public_key, "the root key");
    let raw = signed
        .signed_payload
        .as_deref()
        .expect("a signed transaction");
    assert_eq!(raw[0], 0x02, "an EIP-1559 envelope");
    let decoded = TxEip1559::eip2718_decode(&mut &raw[..]).expect("alloy decodes it");
    assert_eq!(
        decoded.tx(),
        &eip1559,
        "the transaction signed is the one built"
    );
    assert_eq!(decoded.signature_hash(), eip1559.signature_hash());
    check_envelope(decoded.into(), root, 1, 3, eip1559.to, eip1559.value);

    let child_key = bip32_child(&key.public_key, key.chain_code, &CHILD);
    let child = EvmAddress::from_public_key(&ecdsa_key(&child_key));
    assert_ne!(child, root);
    let legacy = TxLegacy {
        chain_id: Some(1),
        nonce: 11,
        gas_price: 20_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(EvmAddress::repeat_byte(0x35)),
        value: U256::from(1_000_000_000_000_000u128),
        input: Bytes::new(),
    };
    let signed = sign_evm_transaction(client, &legacy, &CHILD).await;
    assert_eq!(signed.signature.derivation_path, CHILD);
    assert_eq!(
        signed.signature.public_key, child_key,
        "the child key along {CHILD:?}, derived here from BIP-32"
    );
    let raw = signed
        .signed_payload
        .as_deref()
        .expect("a signed transaction");
    assert!(raw[0] >= 0xc0, "a legacy transaction is an RLP list");
    let decoded = TxLegacy::eip2718_decode(&mut &raw[..]).expect("alloy decodes it");
    assert_eq!(
        decoded.tx(),
        &legacy,
        "the transaction signed is the one built"
    );
    check_envelope(decoded.into(), child, 1, 11, legacy.to, legacy.value);

    // personal_sign: r ‖ s ‖ v with v = 27 + recovery id, recovering to the key's address.
    let message = b"keyrack: I own this address";
    let signed = client
        .sign_chain(
            WALLET,
            Scheme::EcdsaSecp256k1,
            "evm",
            message,
            PayloadKind::PersonalMessage,
            &[],
            WAIT,
        )
        .await
        .expect("a signed personal message");
    assert_eq!(
        signed.signature.digest_or_message,
        alloy_primitives::eip191_hash_message(message).as_slice(),
        "the node signed the EIP-191 hash"
    );
    let rsv = signed.signed_payload.expect("r ‖ s ‖ v");
    assert_eq!(rsv.len(), 65);
    assert!(matches!(rsv[64], 27 | 28), "v = {}", rsv[64]);
    assert_eq!(rsv[..64], signed.signature.signature[..]);
    let signature = alloy_primitives::Signature::from_raw(&rsv).unwrap();
    assert_eq!(
        signature.recover_address_from_msg(message).unwrap(),
        root,
        "the message recovers to the key's address"
    );
}

/// Signs `tx`'s signing encoding (legacy RLP or EIP-2718 typed bytes) with `WALLET`'s ECDSA
/// key along `path`; checks that the node signed `tx`'s signature hash, under a key whose
/// signature the SDK verified.
async fn sign_evm_transaction(
    client: &Client,
    tx: &impl SignableTransaction<alloy_primitives::Signature>,
    path: &[u32],
) -> VerifiedSignature {
    let signed = client
        .sign_chain(
            WALLET,
            Scheme::EcdsaSecp256k1,
            "evm",
            &tx.encoded_for_signing(),
            PayloadKind::Transaction,
            path,
            WAIT,
        )
        .await
        .expect("a signed EVM transaction");
    assert_eq!(signed.signatures.len(), 1, "one signature per transaction");
    assert_eq!(
        signed.signature.digest_or_message,
        tx.signature_hash().as_slice(),
        "the node signed the transaction's signature hash (alloy)"
    );
    signed
}

/// The decoded transaction's recovered sender is `sender`, and it does what was built.
fn check_envelope(
    envelope: TxEnvelope,
    sender: EvmAddress,
    chain_id: u64,
    nonce: u64,
    to: TxKind,
    value: U256,
) {
    assert_eq!(
        envelope.recover_signer().expect("the sender recovers"),
        sender,
        "alloy recovers the cluster key's address"
    );
    assert_eq!(envelope.chain_id(), Some(chain_id));
    assert_eq!(envelope.nonce(), nonce);
    assert_eq!(envelope.kind(), to);
    assert_eq!(envelope.value(), value);
}

fn ecdsa_key(sec1: &[u8]) -> k256::ecdsa::VerifyingKey {
    k256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).expect("a secp256k1 public key")
}

// ---------------------------------------------------------------------------------------
// Bitcoin (regtest)

const ECDSA_IN: [u64; 2] = [60_000, 40_000];
const SCHNORR_IN: u64 = 50_000;
const PAY: u64 = 100_000;
const CHANGE: u64 = 49_000;

/// The P2WPKH script of a compressed ECDSA key (BIP-141).
fn p2wpkh(key: &[u8]) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(
        &CompressedPublicKey::from_slice(key)
            .expect("a compressed key")
            .wpubkey_hash(),
    )
}

/// The P2TR script of a Taproot output key Q, taken as it is (already tweaked).
fn p2tr(q: &[u8]) -> ScriptBuf {
    let q = XOnlyPublicKey::from_slice(q).expect("an x-only key");
    ScriptBuf::new_p2tr_tweaked(TweakedPublicKey::dangerous_assume_tweaked(q))
}

/// An input spending a made-up output `seed:vout`.
fn input(seed: u8, vout: u32) -> TxIn {
    TxIn {
        previous_output: OutPoint::new(Txid::from_byte_array([seed; 32]), vout),
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
}

/// A PSBT spending `spent` (script, amount), each as a witness_utxo, paying `PAY` to a third
/// party and `CHANGE` to `change`.
fn psbt(spent: &[(ScriptBuf, u64)], change: &ScriptBuf) -> Psbt {
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: (0..spent.len()).map(|i| input(0x10 + i as u8, 1)).collect(),
        output: vec![
            TxOut {
                value: Amount::from_sat(PAY),
                script_pubkey: ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0x42; 20])),
            },
            TxOut {
                value: Amount::from_sat(CHANGE),
                script_pubkey: change.clone(),
            },
        ],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("an unsigned transaction");
    for (input, (script, amount)) in psbt.inputs.iter_mut().zip(spent) {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(*amount),
            script_pubkey: script.clone(),
        });
    }
    psbt
}

/// Inputs 0 and 1 spend the ECDSA key's P2WPKH outputs, input 2 the Schnorr key's P2TR one.
/// The ECDSA key signs first (two signatures in one request), the Schnorr key signs what it
/// returned; the final PSBT extracts to a transaction whose witnesses k256 verifies over the
/// sighashes the `bitcoin` crate computes from that transaction and the prevouts.
async fn bitcoin_round_trip(client: &Client, ecdsa: &KeyInfo, schnorr: &KeyInfo) {
    let (own, taproot) = (p2wpkh(&ecdsa.public_key), p2tr(&schnorr.public_key));
    let unsigned = psbt(
        &[
            (own.clone(), ECDSA_IN[0]),
            (own.clone(), ECDSA_IN[1]),
            (taproot.clone(), SCHNORR_IN),
        ],
        &own,
    );
    let prevouts: Vec<TxOut> = unsigned
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .collect();
    let mut cache = SighashCache::new(&unsigned.unsigned_tx);
    let bip143: Vec<[u8; 32]> = (0..2)
        .map(|i| {
            let sighash = cache
                .p2wpkh_signature_hash(i, &own, prevouts[i].value, EcdsaSighashType::All)
                .unwrap();
            sighash.to_byte_array()
        })
        .collect();
    let bip341 = cache
        .taproot_key_spend_signature_hash(2, &Prevouts::All(&prevouts), TapSighashType::Default)
        .unwrap()
        .to_byte_array();

    // The ECDSA key: its two inputs, one signature each, in input order.
    let signed = sign_psbt(client, Scheme::EcdsaSecp256k1, &unsigned.serialize()).await;
    assert_eq!(signed.signatures.len(), 2, "one signature per own input");
    for (info, sighash) in signed.signatures.iter().zip(&bip143) {
        assert_eq!(info.public_key, ecdsa.public_key);
        assert_eq!(info.digest_or_message, sighash, "the BIP-143 sighash");
    }
    let half = signed.signed_payload.expect("the PSBT");
    let psbt = Psbt::deserialize(&half).expect("a PSBT");
    let finalised: Vec<bool> = psbt
        .inputs
        .iter()
        .map(|i| i.final_script_witness.is_some())
        .collect();
    assert_eq!(finalised, [true, true, false]);

    // The Schnorr key signs the half-signed PSBT: its one input.
    let signed = sign_psbt(client, Scheme::SchnorrSecp256k1, &half).await;
    assert_eq!(signed.signatures.len(), 1);
    assert_eq!(signed.signature.public_key, schnorr.public_key);
    assert_eq!(
        signed.signature.digest_or_message, bip341,
        "the BIP-341 key-path sighash"
    );
    let psbt = Psbt::deserialize(&signed.signed_payload.expect("the PSBT")).expect("a PSBT");
    assert!(
        psbt.inputs.iter().all(|i| i.final_script_witness.is_some()),
        "every input finalised"
    );
    let tx = psbt.extract_tx().expect("the transaction extracts");
    assert_eq!(
        tx.compute_txid(),
        unsigned.unsigned_tx.compute_txid(),
        "the transaction is the one built"
    );

    // The witnesses, checked over sighashes recomputed from the extracted transaction.
    let mut cache = SighashCache::new(&tx);
    for (i, spent) in prevouts.iter().enumerate().take(2) {
        let witness = tx.input[i].witness.to_vec();
        assert_eq!(witness.len(), 2, "P2WPKH witness [signature, key]");
        assert_eq!(witness[1], ecdsa.public_key);
        let (sighash_type, der) = witness[0].split_last().unwrap();
        assert_eq!(*sighash_type, EcdsaSighashType::All as u8);
        let sighash = cache
            .p2wpkh_signature_hash(i, &spent.script_pubkey, spent.value, EcdsaSighashType::All)
            .unwrap();
        let signature = k256::ecdsa::Signature::from_der(der).expect("a DER signature");
        assert!(signature.normalize_s().is_none(), "low s (BIP-146)");
        ecdsa_key(&ecdsa.public_key)
            .verify_prehash(sighash.as_byte_array(), &signature)
            .unwrap_or_else(|e| panic!("input {i}: the ECDSA signature verifies (k256): {e}"));
    }
    let witness = tx.input[2].witness.to_vec();
    assert_eq!(witness.len(), 1, "P2TR key-path witness [signature]");
    assert_eq!(witness[0].len(), 64, "SIGHASH_DEFAULT: no sighash byte");
    let sighash = cache
        .taproot_key_spend_signature_hash(2, &Prevouts::All(&prevouts), TapSighashType::Default)
        .unwrap();
    k256::schnorr::VerifyingKey::from_bytes(&schnorr.public_key)
        .unwrap()
        .verify_raw(
            sighash.as_byte_array(),
            &k256::schnorr::Signature::try_from(&witness[0][..]).unwrap(),
        )
        .expect("input 2: the BIP-340 signature verifies (k256)");
}

async fn sign_psbt(client: &Client, scheme: Scheme, psbt: &[u8]) -> VerifiedSignature {
    client
        .sign_chain(
            WALLET,
            scheme,
            "bitcoin",
            psbt,
            PayloadKind::Transaction,
            &[],
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("a PSBT signed with {scheme:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Solana

/// A system transfer paid by the Ed25519 key: the wire transaction passes Solana's own
/// verification, and its first signature (the transaction id) is the cluster's.
async fn solana_round_trip(client: &Client, key: &KeyInfo) {
    let me = SolanaAddress::new_from_array(key.public_key.clone().try_into().unwrap());
    let to = SolanaAddress::new_from_array([7; 32]);
    let message = Message::new_with_blockhash(
        &[system::transfer(&me, &to, 2_500_000)],
        Some(&me),
        &SolanaHash::new_from_array([9; 32]),
    )
    .serialize();
    let signed = client
        .sign_chain(
            WALLET,
            Scheme::Ed25519,
            "solana",
            &message,
            PayloadKind::Transaction,
            &[],
            WAIT,
        )
        .await
        .expect("a signed Solana transaction");
    assert_eq!(signed.signatures.len(), 1);
    check_signature(
        &signed.signature,
        Scheme::Ed25519,
        &key.public_key,
        &message,
    );
    let wire = signed.signed_payload.expect("the wire transaction");
    let tx: VersionedTransaction = wincode::deserialize_exact(&wire).expect("a transaction");
    tx.verify_and_hash_message()
        .expect("Solana's verification accepts the signed transaction");
    assert!(tx.is_signed());
    assert_eq!(
        tx.message.serialize(),
        message,
        "the message signed is the one built"
    );
    assert_eq!(tx.signatures.len(), 1);
    assert_eq!(tx.signatures[0].as_ref(), &signed.signature.signature[..]);
}

// ---------------------------------------------------------------------------------------
// Refusals

/// What the nodes refuse, each with its code (the SDK's error, and every node's signed
/// answer): a PSBT with no input of the key, an EVM payload for the Ed25519 key, a chain no
/// node serves.
async fn refusals(client: &Client, results: &mut Results, ecdsa: &KeyInfo) {
    // Every input belongs to someone else: the message names the key's own address.
    let stranger = p2wpkh(
        &k256::ecdsa::VerifyingKey::from(
            &k256::ecdsa::SigningKey::from_slice(&[0x77; 32]).unwrap(),
        )
        .to_sec1_bytes(),
    );
    let foreign = psbt(
        &[(stranger.clone(), 80_000), (stranger.clone(), 30_000)],
        &stranger,
    );
    let address = bitcoin::Address::from_script(&p2wpkh(&ecdsa.public_key), Network::Regtest)
        .unwrap()
        .to_string();
    assert!(address.starts_with("bcrt1q"), "{address}");
    let body = client.sign_chain_body(
        WALLET,
        Scheme::EcdsaSecp256k1,
        "bitcoin",
        &foreign.serialize(),
        PayloadKind::Transaction,
        &[],
        WAIT,
    );
    refused(client, results, body, ErrorCode::InvalidPayload, &address).await;

    // EVM is signed with ECDSA only.
    let tx = TxEip1559 {
        chain_id: 1,
        gas_limit: 21_000,
        to: TxKind::Call(EvmAddress::repeat_byte(0x42)),
        ..TxEip1559::default()
    };
    let body = client.sign_chain_body(
        WALLET,
        Scheme::Ed25519,
        "evm",
        &tx.encoded_for_signing(),
        PayloadKind::Transaction,
        &[],
        WAIT,
    );
    refused(
        client,
        results,
        body,
        ErrorCode::UnsupportedScheme,
        "ed25519",
    )
    .await;

    let body = client.sign_chain_body(
        WALLET,
        Scheme::EcdsaSecp256k1,
        "dogecoin",
        b"much wow",
        PayloadKind::Transaction,
        &[],
        WAIT,
    );
    refused(
        client,
        results,
        body,
        ErrorCode::UnsupportedChain,
        "dogecoin",
    )
    .await;
}

/// Submits `body`: the SDK reports a refusal with `code` whose message contains `naming`,
/// and every node's signed answer is that refusal, with no signature.
async fn refused(
    client: &Client,
    results: &mut Results,
    body: RequestBody,
    code: ErrorCode,
    naming: &str,
) {
    let request_id = body.request_id.clone();
    match client.submit(body).await.unwrap().wait(WAIT).await {
        Err(SdkError::Refused {
            code: got, message, ..
        }) => {
            assert_eq!(got, code, "{message}");
            assert!(message.contains(naming), "{code}: {message}");
        }
        Err(e) => panic!("expected a refusal {code}, got {e}"),
        Ok(other) => panic!("expected a refusal {code}, got {other:?}"),
    }
    let what = format!("three refusals of {request_id}");
    results
        .until(WAIT, &what, |r| {
            r.iter().filter(|r| r.request_id == request_id).count() >= 3
        })
        .await;
    let answers = results.of(&request_id);
    let mut nodes: Vec<&str> = answers.iter().map(|r| r.node_id.as_str()).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["node0", "node1", "node2"],
        "{}",
        describe(answers.iter().copied())
    );
    for r in &answers {
        assert_eq!(
            (r.status, r.code),
            (Status::Refused, Some(code)),
            "{}",
            describe(answers.iter().copied())
        );
        assert!(
            r.message.contains(naming),
            "{}",
            describe(answers.iter().copied())
        );
        assert!(r.signature.is_none() && r.signatures.is_empty(), "{r:?}");
    }
}

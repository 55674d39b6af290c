//! Round trips on regtest: a PSBT spending one P2WPKH (ECDSA key) and one P2TR (Schnorr key,
//! the output key Q) output, paying a third party with change back to each key; decode, sign
//! each item with k256, finish, extract, and check every witness with k256 over the sighash
//! the `bitcoin` crate recomputes from the extracted transaction. Then every refusal.

mod common;

use base64::Engine as _;
use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::hashes::Hash as _;
use bitcoin::psbt::PsbtSighashType;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, transaction, Address, Amount, Network, OutPoint, Psbt, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Txid, Witness,
};
use common::{unhex, EcdsaKey, SchnorrKey, ECDSA, SCHNORR};
use keyrack_chain_bitcoin::Bitcoin;
use keyrack_plugin::{ChainError, ChainPlugin, PayloadFormat, SignerKey};
use std::str::FromStr;

const TX: PayloadFormat = PayloadFormat::Transaction;
const PAY: u64 = 70_000;
const ECDSA_IN: u64 = 100_000;
const SCHNORR_IN: u64 = 50_000;
const ECDSA_CHANGE: u64 = 40_000;
const SCHNORR_CHANGE: u64 = 39_000;
const FEE: u64 = ECDSA_IN + SCHNORR_IN - PAY - ECDSA_CHANGE - SCHNORR_CHANGE;

struct Fixture {
    plugin: Bitcoin,
    ecdsa: EcdsaKey,
    schnorr: SchnorrKey,
    ecdsa_script: ScriptBuf,
    schnorr_script: ScriptBuf,
    destination: Address,
}

fn fixture() -> Fixture {
    let plugin = Bitcoin::new("regtest").expect("regtest");
    let ecdsa = EcdsaKey::new(&[0x11; 32]);
    let schnorr = SchnorrKey::new(&[0x22; 32]);
    let ecdsa_address = plugin.addresses(ecdsa.signer()).expect("address");
    let schnorr_address = plugin.addresses(schnorr.signer()).expect("address");
    assert_eq!(ecdsa_address.len(), 1);
    assert!(ecdsa_address[0].starts_with("bcrt1q"), "{ecdsa_address:?}");
    assert!(
        schnorr_address[0].starts_with("bcrt1p"),
        "{schnorr_address:?}"
    );
    let script = |text: &str| {
        Address::from_str(text)
            .expect("address")
            .require_network(Network::Regtest)
            .expect("regtest")
            .script_pubkey()
    };
    let ecdsa_script = script(&ecdsa_address[0]);
    let schnorr_script = script(&schnorr_address[0]);
    // The P2TR output commits to the key itself: OP_1 <Q>.
    assert_eq!(&schnorr_script.as_bytes()[2..], schnorr.public.as_slice());
    let other = EcdsaKey::new(&[0x33; 32]);
    let destination = Address::from_str(&plugin.addresses(other.signer()).expect("address")[0])
        .expect("address")
        .require_network(Network::Regtest)
        .expect("regtest");
    Fixture {
        plugin,
        ecdsa,
        schnorr,
        ecdsa_script,
        schnorr_script,
        destination,
    }
}

/// A transaction whose output `vout` pays `value` to `script` (the funding of an input).
fn funding(script: &ScriptBuf, value: u64, vout: usize, seed: u8) -> Transaction {
    let mut output = vec![
        TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::new_op_return([seed]),
        };
        vout
    ];
    output.push(TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script.clone(),
    });
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([seed; 32]), 0),
            ..TxIn::default()
        }],
        output,
    }
}

fn tx_in(funding: &Transaction, vout: u32) -> TxIn {
    TxIn {
        previous_output: OutPoint::new(funding.compute_txid(), vout),
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
}

/// The round-trip PSBT: input 0 P2WPKH, input 1 P2TR; outputs: pay, ECDSA change, Schnorr
/// change. `full_utxos` adds each input's funding transaction besides its witness_utxo.
fn psbt(f: &Fixture, full_utxos: bool) -> Psbt {
    let fund0 = funding(&f.ecdsa_script, ECDSA_IN, 0, 1);
    let fund1 = funding(&f.schnorr_script, SCHNORR_IN, 1, 2);
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::from_height(100).expect("height"),
        input: vec![tx_in(&fund0, 0), tx_in(&fund1, 1)],
        output: vec![
            TxOut {
                value: Amount::from_sat(PAY),
                script_pubkey: f.destination.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(ECDSA_CHANGE),
                script_pubkey: f.ecdsa_script.clone(),
            },
            TxOut {
                value: Amount::from_sat(SCHNORR_CHANGE),
                script_pubkey: f.schnorr_script.clone(),
            },
        ],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("psbt");
    psbt.inputs[0].witness_utxo = Some(fund0.output[0].clone());
    psbt.inputs[1].witness_utxo = Some(fund1.output[1].clone());
    if full_utxos {
        psbt.inputs[0].non_witness_utxo = Some(fund0);
        psbt.inputs[1].non_witness_utxo = Some(fund1);
    }
    // Fields a wallet adds, which the finalizer must clear.
    let pk = bitcoin::secp256k1::PublicKey::from_slice(&f.ecdsa.public).expect("key");
    psbt.inputs[0].bip32_derivation.insert(
        pk,
        (
            Fingerprint::from([1, 2, 3, 4]),
            DerivationPath::from_str("m/84'/1'/0'/0/0").expect("path"),
        ),
    );
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
    let q = bitcoin::secp256k1::XOnlyPublicKey::from_slice(&f.schnorr.public).expect("key");
    psbt.inputs[1].tap_internal_key = Some(q);
    psbt
}

fn decode(f: &Fixture, payload: &[u8], key: SignerKey<'_>) -> keyrack_plugin::Decoded {
    f.plugin.decode(TX, payload, key).expect("decodes")
}

#[test]
fn p2wpkh_and_p2tr_inputs_round_trip_to_a_transaction_whose_witnesses_verify() {
    let f = fixture();
    let payload = psbt(&f, true).serialize();

    let ecdsa = decode(&f, &payload, f.ecdsa.signer());
    assert_eq!(ecdsa.items.len(), 1);
    assert_eq!(ecdsa.items[0].label, "input 0");
    let intent = &ecdsa.intent;
    assert_eq!(intent.chain, "bitcoin");
    assert_eq!(intent.network.as_deref(), Some("regtest"));
    assert_eq!(intent.action, "transfer");
    assert_eq!(intent.fee, Some(u128::from(FEE)));
    // For the ECDSA key, the Schnorr key's change is a payment like any other.
    let transfers: Vec<(String, u128)> = intent
        .transfers
        .iter()
        .map(|t| (t.to.clone(), t.amount))
        .collect();
    let schnorr_address = f.plugin.addresses(f.schnorr.signer()).expect("address")[0].clone();
    assert_eq!(
        transfers,
        [
            (f.destination.to_string(), u128::from(PAY)),
            (schnorr_address, u128::from(SCHNORR_CHANGE)),
        ]
    );
    assert!(intent.transfers.iter().all(|t| t.asset == "native"));
    assert_eq!(intent.details["change_sat"], ECDSA_CHANGE.to_string());
    assert_eq!(intent.details["own_inputs"], "0");
    assert_eq!(intent.details["other_inputs"], "1");
    assert_eq!(intent.details["sighash.input 0"], "SIGHASH_ALL");
    assert_eq!(
        intent.details["txid"],
        psbt(&f, true).unsigned_tx.compute_txid().to_string()
    );

    let schnorr = decode(&f, &payload, f.schnorr.signer());
    assert_eq!(schnorr.items.len(), 1);
    assert_eq!(schnorr.items[0].label, "input 1");
    assert_eq!(schnorr.intent.fee, Some(u128::from(FEE)));
    assert_eq!(schnorr.intent.transfers.len(), 2);
    assert_eq!(schnorr.intent.transfers[0].amount, u128::from(PAY));
    assert_eq!(schnorr.intent.transfers[1].amount, u128::from(ECDSA_CHANGE));
    assert_eq!(schnorr.intent.details["sighash.input 1"], "SIGHASH_DEFAULT");

    // Each key finishes its own input; the second works on the first's output.
    let signed = f
        .plugin
        .finish(
            TX,
            &payload,
            f.ecdsa.signer(),
            &[f.ecdsa.sign(&ecdsa.items[0].message)],
        )
        .expect("ECDSA finish");
    let half = Psbt::deserialize(&signed).expect("PSBT");
    assert!(half.inputs[0].final_script_witness.is_some());
    assert!(half.inputs[1].final_script_witness.is_none());
    assert_eq!(
        decode(&f, &signed, f.schnorr.signer()).items,
        schnorr.items,
        "the other key's item is unchanged"
    );
    let signed = f
        .plugin
        .finish(
            TX,
            &signed,
            f.schnorr.signer(),
            &[f.schnorr.sign(&schnorr.items[0].message)],
        )
        .expect("Schnorr finish");
    let psbt = Psbt::deserialize(&signed).expect("PSBT");

    // Finalised as BIP-174's finalizer does: only UTXOs and the final witness are left.
    for input in &psbt.inputs {
        assert!(input.final_script_witness.is_some());
        assert!(input.witness_utxo.is_some() && input.non_witness_utxo.is_some());
        assert!(input.partial_sigs.is_empty());
        assert!(input.sighash_type.is_none());
        assert!(input.bip32_derivation.is_empty());
        assert!(input.tap_key_sig.is_none() && input.tap_internal_key.is_none());
    }

    let prevouts: Vec<TxOut> = psbt
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().expect("utxo"))
        .collect();
    let tx = psbt.extract_tx().expect("extracts");
    assert_eq!(tx.compute_txid().to_string(), intent.details["txid"]);
    let mut cache = SighashCache::new(&tx);

    // Input 0: [DER ‖ SIGHASH_ALL, pubkey], over the BIP-143 sighash.
    let witness = tx.input[0].witness.to_vec();
    assert_eq!(witness.len(), 2);
    assert_eq!(witness[1], f.ecdsa.public);
    let (sighash_byte, der) = witness[0].split_last().expect("signature");
    assert_eq!(*sighash_byte, 0x01);
    let sighash = cache
        .p2wpkh_signature_hash(
            0,
            &prevouts[0].script_pubkey,
            prevouts[0].value,
            EcdsaSighashType::All,
        )
        .expect("sighash");
    f.ecdsa.verify_der(sighash.as_byte_array(), der);

    // Input 1: [64-byte signature] (SIGHASH_DEFAULT), over the BIP-341 key-path sighash.
    let witness = tx.input[1].witness.to_vec();
    assert_eq!(witness.len(), 1);
    assert_eq!(witness[0].len(), 64);
    let sighash = cache
        .taproot_key_spend_signature_hash(1, &Prevouts::All(&prevouts), TapSighashType::Default)
        .expect("sighash");
    f.schnorr.verify(sighash.as_byte_array(), &witness[0]);
}

/// A P2TR input asking for SIGHASH_ALL gets the sighash byte in its witness.
#[test]
fn taproot_sighash_all_round_trips_with_the_sighash_byte() {
    let f = fixture();
    let mut psbt = psbt(&f, false);
    psbt.inputs[1].sighash_type = Some(PsbtSighashType::from(TapSighashType::All));
    let payload = psbt.serialize();
    let decoded = decode(&f, &payload, f.schnorr.signer());
    assert_eq!(decoded.intent.details["sighash.input 1"], "SIGHASH_ALL");
    let signature = f.schnorr.sign(&decoded.items[0].message);
    let signed = f
        .plugin
        .finish(
            TX,
            &payload,
            f.schnorr.signer(),
            std::slice::from_ref(&signature),
        )
        .expect("finish");
    let psbt = Psbt::deserialize(&signed).expect("PSBT");
    let witness = psbt.inputs[1].final_script_witness.clone().expect("final");
    let mut expected = signature;
    expected.push(0x01);
    assert_eq!(witness.to_vec(), vec![expected]);
}

#[test]
fn base64_text_decodes_like_binary() {
    let f = fixture();
    let payload = psbt(&f, true).serialize();
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(&payload)
    );
    assert!(text.starts_with("cHNidP"));
    assert_eq!(
        decode(&f, text.as_bytes(), f.ecdsa.signer()),
        decode(&f, &payload, f.ecdsa.signer())
    );
    let mut bad = text.into_bytes();
    bad.insert(10, b'!');
    assert!(matches!(
        f.plugin.decode(TX, &bad, f.ecdsa.signer()),
        Err(ChainError::Malformed { .. })
    ));
}

/// Without every input's funding transaction, an ECDSA key's fee is not bound by what it
/// signs (BIP-143 commits to the signed input's amount only): no fee, so fee rules fail
/// closed. A Schnorr key's BIP-341 sighash commits to every amount: the fee stands.
#[test]
fn fee_is_absent_for_ecdsa_when_amounts_are_not_authenticated() {
    let f = fixture();
    let payload = psbt(&f, false).serialize();
    let ecdsa = decode(&f, &payload, f.ecdsa.signer());
    assert_eq!(ecdsa.intent.fee, None);
    assert_eq!(ecdsa.intent.details["fee_unverified_sat"], FEE.to_string());
    let schnorr = decode(&f, &payload, f.schnorr.signer());
    assert_eq!(schnorr.intent.fee, Some(u128::from(FEE)));
}

#[test]
fn op_return_is_not_a_transfer_unless_it_burns_value() {
    let f = fixture();
    let mut psbt = psbt(&f, true);
    psbt.unsigned_tx.output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::new_op_return(b"keyrack"),
    });
    psbt.outputs.push(Default::default());
    let decoded = decode(&f, &psbt.serialize(), f.ecdsa.signer());
    assert_eq!(decoded.intent.transfers.len(), 2);
    assert_eq!(decoded.intent.details["op_return"], hex::encode(b"keyrack"));

    psbt.unsigned_tx.output.last_mut().expect("output").value = Amount::from_sat(500);
    let decoded = decode(&f, &psbt.serialize(), f.ecdsa.signer());
    let burn = decoded.intent.transfers.last().expect("burn");
    assert_eq!(burn.amount, 500);
    assert_eq!(burn.to, format!("script:6a07{}", hex::encode(b"keyrack")));
}

#[test]
fn psbt_with_only_another_keys_inputs_is_unsupported() {
    let f = fixture();
    let payload = psbt(&f, true).serialize();
    let stranger = EcdsaKey::new(&[0x44; 32]);
    let address = f.plugin.addresses(stranger.signer()).expect("address")[0].clone();
    let err = f
        .plugin
        .decode(TX, &payload, stranger.signer())
        .expect_err("refused");
    assert!(
        matches!(&err, ChainError::Unsupported(m) if m.contains(&address)),
        "{err}"
    );
    let stranger = SchnorrKey::new(&[0x55; 32]);
    assert!(matches!(
        f.plugin.decode(TX, &payload, stranger.signer()),
        Err(ChainError::Unsupported(_))
    ));
}

#[test]
fn sighash_none_single_anyonecanpay_are_unsupported() {
    let f = fixture();
    for (input, ty) in [
        (0, 0x02),
        (0, 0x03),
        (0, 0x81),
        (0, 0x00),
        (1, 0x02),
        (1, 0x83),
    ] {
        let mut psbt = psbt(&f, true);
        psbt.inputs[input].sighash_type = Some(PsbtSighashType::from_u32(ty));
        let key = if input == 0 {
            f.ecdsa.signer()
        } else {
            f.schnorr.signer()
        };
        let err = f
            .plugin
            .decode(TX, &psbt.serialize(), key)
            .expect_err("refused");
        assert!(
            matches!(&err, ChainError::Unsupported(m) if m.contains(&format!("input {input}"))),
            "{ty:#x}: {err}"
        );
    }
}

#[test]
fn input_without_its_spent_output_is_refused() {
    let f = fixture();
    let mut psbt = psbt(&f, true);
    psbt.inputs[1].witness_utxo = None;
    psbt.inputs[1].non_witness_utxo = None;
    // Even for the key whose input (0) is complete: the fee would be unknown.
    let err = f
        .plugin
        .decode(TX, &psbt.serialize(), f.ecdsa.signer())
        .expect_err("refused");
    assert!(
        matches!(&err, ChainError::Unsupported(m) if m.contains("input 1")),
        "{err}"
    );
}

#[test]
fn non_witness_utxo_of_another_transaction_is_malformed() {
    let f = fixture();
    let mut psbt = psbt(&f, true);
    psbt.inputs[0].non_witness_utxo = Some(funding(&f.ecdsa_script, ECDSA_IN, 0, 9));
    let err = f
        .plugin
        .decode(TX, &psbt.serialize(), f.ecdsa.signer())
        .expect_err("refused");
    assert!(
        matches!(&err, ChainError::Malformed { reason, .. } if reason.contains("input 0")),
        "{err}"
    );

    // A witness_utxo that contradicts the funding transaction.
    let mut psbt = self::psbt(&f, true);
    psbt.inputs[0].witness_utxo.as_mut().expect("utxo").value = Amount::from_sat(1);
    assert!(matches!(
        f.plugin.decode(TX, &psbt.serialize(), f.ecdsa.signer()),
        Err(ChainError::Malformed { .. })
    ));
}

#[test]
fn outputs_above_inputs_are_malformed() {
    let f = fixture();
    let mut psbt = psbt(&f, false);
    psbt.unsigned_tx.output[0].value = Amount::from_sat(PAY + FEE + 1);
    let err = f
        .plugin
        .decode(TX, &psbt.serialize(), f.schnorr.signer())
        .expect_err("refused");
    assert!(matches!(err, ChainError::Malformed { .. }), "{err}");
}

#[test]
fn trailing_bytes_and_garbage_are_malformed() {
    let f = fixture();
    let mut payload = psbt(&f, true).serialize();
    payload.push(0);
    assert!(matches!(
        f.plugin.decode(TX, &payload, f.ecdsa.signer()),
        Err(ChainError::Malformed { .. })
    ));
    assert!(matches!(
        f.plugin.decode(TX, b"not a psbt", f.ecdsa.signer()),
        Err(ChainError::Malformed { .. })
    ));
}

#[test]
fn wrong_signatures_in_finish_are_refused_naming_the_input() {
    let f = fixture();
    let payload = psbt(&f, true).serialize();
    let ecdsa = decode(&f, &payload, f.ecdsa.signer());
    let schnorr = decode(&f, &payload, f.schnorr.signer());
    let finish = |key: SignerKey<'_>, signatures: Vec<Vec<u8>>| {
        f.plugin
            .finish(TX, &payload, key, &signatures)
            .expect_err("refused")
    };
    let names = |err: &ChainError, input: &str| {
        assert!(
            matches!(err, ChainError::Finish(m) if m.contains(input)),
            "{err}"
        );
    };

    // Another key's signature, a signature over another digest.
    let stranger = EcdsaKey::new(&[0x44; 32]);
    names(
        &finish(
            f.ecdsa.signer(),
            vec![stranger.sign(&ecdsa.items[0].message)],
        ),
        "input 0",
    );
    names(
        &finish(f.ecdsa.signer(), vec![f.ecdsa.sign(&[9u8; 32])]),
        "input 0",
    );
    // The same signature with high s (n − s).
    let good = f.ecdsa.sign(&ecdsa.items[0].message);
    let low = bitcoin::secp256k1::ecdsa::Signature::from_compact(&good[..64]).expect("sig");
    let high = k256::ecdsa::Signature::from_slice(&good[..64]).expect("sig");
    let high = k256::ecdsa::Signature::from_scalars(high.r(), -*high.s()).expect("sig");
    assert_ne!(
        high.to_bytes().as_slice(),
        low.serialize_compact().as_slice()
    );
    let mut high = high.to_bytes().to_vec();
    high.push(good[64] ^ 1);
    names(&finish(f.ecdsa.signer(), vec![high]), "input 0");
    names(
        &finish(f.ecdsa.signer(), vec![good[..64].to_vec()]),
        "input 0",
    );
    let stranger = SchnorrKey::new(&[0x55; 32]);
    names(
        &finish(
            f.schnorr.signer(),
            vec![stranger.sign(&schnorr.items[0].message)],
        ),
        "input 1",
    );
    names(&finish(f.schnorr.signer(), vec![vec![0u8; 65]]), "input 1");
    // Not one signature per item.
    assert!(matches!(
        finish(f.ecdsa.signer(), vec![]),
        ChainError::Finish(_)
    ));
    assert!(matches!(
        finish(f.ecdsa.signer(), vec![good.clone(), good]),
        ChainError::Finish(_)
    ));
}

#[test]
fn keys_formats_and_networks_outside_the_plugin_are_unsupported() {
    let f = fixture();
    let payload = psbt(&f, true).serialize();
    for format in [PayloadFormat::PersonalMessage, PayloadFormat::TypedData] {
        assert!(matches!(
            f.plugin.decode(format, &payload, f.ecdsa.signer()),
            Err(ChainError::Unsupported(_))
        ));
    }
    let bad_keys: [(&str, Vec<u8>); 4] = [
        ("ed25519", vec![1; 32]),
        (ECDSA, f.schnorr.public.clone()),
        (SCHNORR, f.ecdsa.public.clone()),
        (ECDSA, unhex("04").repeat(33)),
    ];
    for (scheme, public_key) in &bad_keys {
        let key = SignerKey { scheme, public_key };
        assert!(matches!(
            f.plugin.decode(TX, &payload, key),
            Err(ChainError::Unsupported(_))
        ));
        assert!(matches!(
            f.plugin.addresses(key),
            Err(ChainError::Unsupported(_))
        ));
    }
    assert_eq!(f.plugin.schemes(), [ECDSA, SCHNORR]);
    assert_eq!(f.plugin.id(), "bitcoin");
    for network in Bitcoin::NETWORKS {
        assert_eq!(Bitcoin::new(network).expect("network").network(), network);
    }
    assert!(Bitcoin::new("mainnet").is_err());
    // The same key has each network's address.
    let main = Bitcoin::new("bitcoin").expect("bitcoin");
    assert!(main.addresses(f.ecdsa.signer()).expect("address")[0].starts_with("bc1q"));
    let test = Bitcoin::new("testnet4").expect("testnet4");
    assert!(test.addresses(f.schnorr.signer()).expect("address")[0].starts_with("tb1p"));
}

//! Putting the key's signatures into a PSBT: each is checked against its input's sighash
//! and the key first, then the input is finalised the way BIP-174's finalizer does it.

use crate::key::OwnKey;
use crate::psbt::{OwnInput, SighashKind};
use bitcoin::psbt::Input;
use bitcoin::secp256k1::{ecdsa, schnorr, Message, Secp256k1, Verification};
use bitcoin::sighash::{EcdsaSighashType, TapSighashType};
use bitcoin::{taproot, Psbt, Witness};
use keyrack_plugin::ChainError;

/// Checks one signature per own input (in order) and finalises those inputs.
pub(crate) fn apply(
    psbt: &mut Psbt,
    key: &OwnKey,
    own: &[OwnInput],
    signatures: &[Vec<u8>],
) -> Result<(), ChainError> {
    if signatures.len() != own.len() {
        return Err(ChainError::Finish(format!(
            "{} signature(s) given, this PSBT has {} input(s) for this key",
            signatures.len(),
            own.len()
        )));
    }
    let secp = Secp256k1::verification_only();
    for (item, signature) in own.iter().zip(signatures) {
        let witness = witness(&secp, key, item, signature)?;
        finalise(&mut psbt.inputs[item.index], witness);
    }
    Ok(())
}

/// The input's final witness: `[DER signature ‖ 0x01, pubkey]` for P2WPKH, `[signature]` (with
/// the sighash byte only for `SIGHASH_ALL`) for the P2TR key path.
fn witness<C: Verification>(
    secp: &Secp256k1<C>,
    key: &OwnKey,
    item: &OwnInput,
    signature: &[u8],
) -> Result<Witness, ChainError> {
    let index = item.index;
    let message = Message::from_digest(item.sighash);
    match key {
        OwnKey::Ecdsa(pk) => {
            // r ‖ s ‖ recovery id: the recovery id is not part of a Bitcoin signature.
            let Some(compact) = signature.get(..64).filter(|_| signature.len() == 65) else {
                return Err(ChainError::Finish(format!(
                    "input {index}: an ECDSA signature is r ‖ s ‖ recovery id (65 bytes), got \
                     {} bytes",
                    signature.len()
                )));
            };
            let signature = ecdsa::Signature::from_compact(compact).map_err(|e| {
                ChainError::Finish(format!("input {index}: not an ECDSA r ‖ s: {e}"))
            })?;
            // libsecp256k1 refuses high-s signatures here, as Bitcoin's standardness rules do.
            secp.verify_ecdsa(&message, &signature, &pk.0)
                .map_err(|_| {
                    ChainError::Finish(format!(
                        "input {index}: the ECDSA signature does not verify (low-s) over the \
                         input's BIP-143 sighash with this key"
                    ))
                })?;
            let signature = bitcoin::ecdsa::Signature {
                signature,
                sighash_type: EcdsaSighashType::All,
            };
            Ok(Witness::p2wpkh(&signature, &pk.0))
        }
        OwnKey::Schnorr(q) => {
            let signature = schnorr::Signature::from_slice(signature).map_err(|_| {
                ChainError::Finish(format!(
                    "input {index}: a BIP-340 signature is 64 bytes, got {} bytes",
                    signature.len()
                ))
            })?;
            secp.verify_schnorr(&signature, &message, q).map_err(|_| {
                ChainError::Finish(format!(
                    "input {index}: the BIP-340 signature does not verify over the input's \
                     BIP-341 key-path sighash with this key"
                ))
            })?;
            let sighash_type = match item.kind {
                SighashKind::TaprootAll => TapSighashType::All,
                SighashKind::TaprootDefault | SighashKind::SegwitAll => TapSighashType::Default,
            };
            Ok(Witness::p2tr_key_spend(&taproot::Signature {
                signature,
                sighash_type,
            }))
        }
    }
}

/// Sets the final witness and, as BIP-174's finalizer does, clears every other field of the
/// input except its UTXOs and the proprietary and unknown ones (partial signatures, sighash
/// type, scripts, BIP-32 derivations, Taproot fields, preimages).
fn finalise(input: &mut Input, witness: Witness) {
    *input = Input {
        non_witness_utxo: input.non_witness_utxo.take(),
        witness_utxo: input.witness_utxo.take(),
        final_script_witness: Some(witness),
        proprietary: std::mem::take(&mut input.proprietary),
        unknown: std::mem::take(&mut input.unknown),
        ..Input::default()
    };
}

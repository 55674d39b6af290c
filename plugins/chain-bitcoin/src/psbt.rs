//! Reading a PSBT for one key: parsing (binary or base64), the output each input spends,
//! which inputs are the key's, and the sighash of each of them, computed by the `bitcoin`
//! crate (BIP-143 for P2WPKH, BIP-341 key path for P2TR). Shared by decode and finish so
//! both always agree on what is signed.

use crate::key::OwnKey;
use base64::Engine as _;
use bitcoin::hashes::Hash as _;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Psbt, TxOut};
use keyrack_plugin::{ChainError, PayloadFormat};

/// How the base64 text form of a PSBT begins (`psbt\xff` encoded).
const BASE64_MAGIC: &[u8] = b"cHNidP";

/// The one format this plugin decodes.
const FORMAT: &str = "transaction";

fn malformed(reason: impl Into<String>) -> ChainError {
    ChainError::Malformed {
        format: FORMAT,
        reason: reason.into(),
    }
}

/// Parses a PSBT payload: BIP-174 binary, or its base64 text form (which starts `cHNidP`;
/// surrounding ASCII whitespace is ignored). Trailing bytes after the PSBT are refused.
pub(crate) fn parse(format: PayloadFormat, payload: &[u8]) -> Result<Psbt, ChainError> {
    if format != PayloadFormat::Transaction {
        return Err(ChainError::Unsupported(format!(
            "bitcoin signs PSBTs (payload kind \"transaction\"), not {}",
            format.as_str()
        )));
    }
    let text = payload.trim_ascii();
    let decoded;
    let mut bytes = if text.starts_with(BASE64_MAGIC) {
        decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| malformed(format!("PSBT base64 text does not decode: {e}")))?;
        decoded.as_slice()
    } else {
        payload
    };
    let psbt = Psbt::deserialize_from_reader(&mut bytes)
        .map_err(|e| malformed(format!("not a BIP-174 PSBT: {e}")))?;
    if !bytes.is_empty() {
        return Err(malformed(format!(
            "{} bytes follow the end of the PSBT",
            bytes.len()
        )));
    }
    Ok(psbt)
}

/// The sighash type an input of this key is signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SighashKind {
    /// P2WPKH, `SIGHASH_ALL` (BIP-143).
    SegwitAll,
    /// P2TR key path, `SIGHASH_DEFAULT` (BIP-341; a 64-byte signature).
    TaprootDefault,
    /// P2TR key path, `SIGHASH_ALL` (BIP-341; signature + 0x01).
    TaprootAll,
}

impl SighashKind {
    /// Its name, for the intent's details.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SighashKind::SegwitAll | SighashKind::TaprootAll => "SIGHASH_ALL",
            SighashKind::TaprootDefault => "SIGHASH_DEFAULT",
        }
    }
}

/// One input this key signs.
#[derive(Clone, Debug)]
pub(crate) struct OwnInput {
    /// Its index in the transaction.
    pub(crate) index: usize,
    /// The sighash type it is signed with.
    pub(crate) kind: SighashKind,
    /// The digest the key signs.
    pub(crate) sighash: [u8; 32],
}

/// A PSBT read for one key.
#[derive(Debug)]
pub(crate) struct Analysis {
    /// The output each input spends, in input order.
    pub(crate) spent: Vec<TxOut>,
    /// Whether each input's spent output came from a `non_witness_utxo` whose txid matches the
    /// outpoint (so its amount is authenticated), in input order.
    pub(crate) authenticated: Vec<bool>,
    /// The inputs this key signs, in input order (at least one).
    pub(crate) own: Vec<OwnInput>,
}

/// Reads `psbt` for `key`: every input must carry its spent output, at least one input must
/// spend the key's script, and each of those must ask for a sighash type this plugin signs.
pub(crate) fn analyse(psbt: &Psbt, key: &OwnKey, address: &str) -> Result<Analysis, ChainError> {
    let mut spent = Vec::with_capacity(psbt.inputs.len());
    let mut authenticated = Vec::with_capacity(psbt.inputs.len());
    for index in 0..psbt.inputs.len() {
        let (out, auth) = spent_output(psbt, index)?;
        spent.push(out);
        authenticated.push(auth);
    }
    let own_script = key.script_pubkey();
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    let mut own = Vec::new();
    for (index, out) in spent.iter().enumerate() {
        if out.script_pubkey != own_script {
            continue;
        }
        let input = &psbt.inputs[index];
        if input.final_script_sig.is_some() || input.final_script_witness.is_some() {
            return Err(ChainError::Unsupported(format!(
                "input {index} spends {address} but is already finalised"
            )));
        }
        let requested = input.sighash_type.map(|t| t.to_u32());
        let (kind, sighash) = match key {
            OwnKey::Ecdsa(_) => {
                if !matches!(requested, None | Some(1)) {
                    return Err(refused_sighash(index, requested, "SIGHASH_ALL"));
                }
                let hash = cache
                    .p2wpkh_signature_hash(
                        index,
                        &out.script_pubkey,
                        out.value,
                        EcdsaSighashType::All,
                    )
                    .map_err(|e| malformed(format!("input {index}: BIP-143 sighash: {e}")))?;
                (SighashKind::SegwitAll, hash.to_byte_array())
            }
            OwnKey::Schnorr(_) => {
                let (kind, ty) = match requested {
                    None | Some(0) => (SighashKind::TaprootDefault, TapSighashType::Default),
                    Some(1) => (SighashKind::TaprootAll, TapSighashType::All),
                    Some(_) => {
                        return Err(refused_sighash(
                            index,
                            requested,
                            "SIGHASH_DEFAULT or SIGHASH_ALL",
                        ))
                    }
                };
                let hash = cache
                    .taproot_key_spend_signature_hash(index, &Prevouts::All(&spent), ty)
                    .map_err(|e| malformed(format!("input {index}: BIP-341 sighash: {e}")))?;
                (kind, hash.to_byte_array())
            }
        };
        own.push(OwnInput {
            index,
            kind,
            sighash,
        });
    }
    if own.is_empty() {
        return Err(ChainError::Unsupported(format!(
            "no input of this PSBT spends {address} (script {}): nothing for this key to sign",
            own_script.to_hex_string()
        )));
    }
    Ok(Analysis {
        spent,
        authenticated,
        own,
    })
}

/// The output input `index` spends, and whether it was authenticated by its txid.
fn spent_output(psbt: &Psbt, index: usize) -> Result<(TxOut, bool), ChainError> {
    let input = &psbt.inputs[index];
    let outpoint = psbt.unsigned_tx.input[index].previous_output;
    let from_tx = match &input.non_witness_utxo {
        Some(tx) => {
            let txid = tx.compute_txid();
            if txid != outpoint.txid {
                return Err(malformed(format!(
                    "input {index}: its non_witness_utxo is transaction {txid}, but the input \
                     spends {outpoint}"
                )));
            }
            let out = usize::try_from(outpoint.vout)
                .ok()
                .and_then(|vout| tx.output.get(vout))
                .ok_or_else(|| {
                    malformed(format!(
                        "input {index}: its non_witness_utxo {txid} has {} outputs, the input \
                         spends output {}",
                        tx.output.len(),
                        outpoint.vout
                    ))
                })?;
            Some(out.clone())
        }
        None => None,
    };
    match (from_tx, &input.witness_utxo) {
        (Some(full), Some(witness)) if full != *witness => Err(malformed(format!(
            "input {index}: its witness_utxo disagrees with output {} of its non_witness_utxo",
            outpoint.vout
        ))),
        (Some(full), _) => Ok((full, true)),
        (None, Some(witness)) => Ok((witness.clone(), false)),
        (None, None) => Err(ChainError::Unsupported(format!(
            "input {index} ({outpoint}) carries neither witness_utxo nor non_witness_utxo: \
             the amount it spends is unknown, so the PSBT cannot be decoded"
        ))),
    }
}

fn refused_sighash(index: usize, requested: Option<u32>, allowed: &str) -> ChainError {
    ChainError::Unsupported(format!(
        "input {index} asks for sighash type {:#04x}; this key signs only {allowed} (NONE, \
         SINGLE and ANYONECANPAY let others change what the transaction pays)",
        requested.unwrap_or_default()
    ))
}

//! Signing, presigning and signing from a presignature; the `r ‖ s ‖ v` encoding; HD
//! derivation (SLIP-10 = BIP-32 for non-hardened secp256k1 paths).

use cggmp21::generic_ec::{Point, Scalar};
use cggmp21::hd_wallet::{self, HdWallet, NonHardenedIndex};
use cggmp21::key_share::AnyKeyShare;
use cggmp21::signing::{DataToSign, PartialSignature, Signature};
use cggmp21::ExecutionId;
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::{
    Channel, Outgoing, PartyIndex, Presignature, ProtocolError, Recipient, Session, SignatureOutput,
};

use crate::driver;
use crate::envelope;
use crate::share::{parse_point, sec1, Share, E};

/// Format version of `Presignature.secret`.
pub const PRESIGNATURE_FORMAT: u16 = 1;

/// Round number of the partial-signature broadcast in [`sign_presigned`].
const PARTIAL_SIGNATURE_ROUND: u16 = 0;

/// The 32-byte digest as cggmp21's message scalar (reduced mod n, as k256 does).
pub(crate) fn data_to_sign(message: &[u8]) -> Result<DataToSign<E>, ProtocolError> {
    if message.len() != 32 {
        return Err(ProtocolError::InvalidRequest(format!(
            "ECDSA signs a 32-byte digest, got {} bytes",
            message.len()
        )));
    }
    Ok(DataToSign::from_scalar(Scalar::from_be_bytes_mod_order(
        message,
    )))
}

fn path_indices(path: &[u32]) -> Result<Vec<NonHardenedIndex>, ProtocolError> {
    path.iter()
        .map(|i| {
            NonHardenedIndex::try_from(*i).map_err(|_| {
                ProtocolError::InvalidRequest(format!(
                    "derivation index {i} is hardened: only non-hardened paths can be derived"
                ))
            })
        })
        .collect()
}

/// The extended public key at `path` below (`public_key`, `chain_code`).
pub(crate) fn derive(
    public_key: Point<E>,
    chain_code: [u8; 32],
    path: &[u32],
) -> Result<hd_wallet::ExtendedPublicKey<E>, ProtocolError> {
    let parent = hd_wallet::ExtendedPublicKey {
        public_key,
        chain_code,
    };
    Ok(hd_wallet::Slip10::derive_child_public_key_with_path(
        &parent,
        path_indices(path)?,
    ))
}

fn master_epub(share: &Share) -> Result<hd_wallet::ExtendedPublicKey<E>, ProtocolError> {
    share
        .core
        .extended_public_key()
        .ok_or_else(|| ProtocolError::InvalidMaterial("key share has no HD chain code".into()))
}

/// Checks the signer list against the share and the session.
pub(crate) fn check_signers(
    session: &Session,
    share: &Share,
    signers: &[PartyIndex],
) -> Result<(), ProtocolError> {
    let t = share.min_signers();
    let n = share.n();
    let mut sorted = signers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if signers.len() != usize::from(t)
        || sorted.len() != signers.len()
        || signers.iter().any(|s| *s >= n)
    {
        return Err(ProtocolError::InvalidRequest(format!(
            "signers {signers:?}: need exactly {t} distinct key indices below {n}"
        )));
    }
    if usize::from(session.parties) != signers.len()
        || signers.get(usize::from(session.me)) != Some(&share.core.i)
    {
        return Err(ProtocolError::InvalidRequest(format!(
            "session party {} of {} is not key party {} in signers {signers:?}",
            session.me, session.parties, share.core.i
        )));
    }
    Ok(())
}

/// Normalises s, verifies with k256 under `public_key`, finds the recovery id, and encodes
/// `r ‖ s ‖ v`.
pub(crate) fn finish(
    signature: Signature<E>,
    message: &[u8],
    public_key: &Point<E>,
) -> Result<SignatureOutput, ProtocolError> {
    let signature = signature.normalize_s();
    let mut rs = [0u8; 64];
    signature.write_to_slice(&mut rs);
    let pk = sec1(public_key);
    let invalid = |why: &str| ProtocolError::Aborted(format!("combined signature {why}"));
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk)
        .map_err(|_| invalid("has an invalid public key"))?;
    let sig = k256::ecdsa::Signature::from_slice(&rs).map_err(|_| invalid("does not parse"))?;
    vk.verify_prehash(message, &sig)
        .map_err(|_| invalid("does not verify"))?;
    let v = (0u8..2)
        .find(|v| {
            k256::ecdsa::RecoveryId::from_byte(*v).and_then(|id| {
                k256::ecdsa::VerifyingKey::recover_from_prehash(message, &sig, id).ok()
            }) == Some(vk)
        })
        .ok_or_else(|| invalid("has no usable recovery id"))?;
    let mut out = rs.to_vec();
    out.push(v);
    Ok(SignatureOutput {
        signature: out,
        public_key: pk,
    })
}

/// Full signing protocol (cggmp21 `sign_sync`), derivation path applied in the protocol.
pub(crate) fn sign(
    session: &Session,
    channel: &mut dyn Channel,
    share: &Share,
    signers: &[PartyIndex],
    message: &[u8],
    derivation_path: &[u32],
) -> Result<SignatureOutput, ProtocolError> {
    check_signers(session, share, signers)?;
    let data = data_to_sign(message)?;
    let child = derive(
        share.shared_public_key().into_inner(),
        master_epub(share)?.chain_code,
        derivation_path,
    )?;
    let eid = ExecutionId::new(&session.id);
    let mut rng = rand_core::OsRng;
    let builder = cggmp21::signing(eid, session.me, signers, share)
        .set_derivation_path(path_indices(derivation_path)?)
        .map_err(|e| ProtocolError::InvalidRequest(format!("derivation path: {e}")))?;
    let sm = builder.sign_sync(&mut rng, data);
    let signature = driver::run(session, channel, sm)?
        .map_err(|e| driver::map_protocol_error("signing", &e, session.parties))?;
    finish(signature, message, &child.public_key)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PresignatureRecord {
    /// Key index of the party that holds it.
    index: PartyIndex,
    presignature: cggmp21::Presignature<E>,
}

/// Presignature generation (cggmp21 `generate_presignature_sync`).
pub(crate) fn presign(
    session: &Session,
    channel: &mut dyn Channel,
    share: &Share,
    signers: &[PartyIndex],
) -> Result<Presignature, ProtocolError> {
    check_signers(session, share, signers)?;
    let eid = ExecutionId::new(&session.id);
    let mut rng = rand_core::OsRng;
    let sm = cggmp21::signing(eid, session.me, signers, share).generate_presignature_sync(&mut rng);
    let presignature = driver::run(session, channel, sm)?
        .map_err(|e| driver::map_protocol_error("presigning", &e, session.parties))?;
    Ok(Presignature {
        scheme: crate::SCHEME_ID.0.to_owned(),
        public_key: sec1(&share.shared_public_key()),
        signers: signers.to_vec(),
        secret: envelope::encode(
            PRESIGNATURE_FORMAT,
            &PresignatureRecord {
                index: share.core.i,
                presignature,
            },
        )?,
    })
}

/// Signing from a presignature: each signer broadcasts its partial signature (one exchange),
/// then combines and verifies.
pub(crate) fn sign_presigned(
    session: &Session,
    channel: &mut dyn Channel,
    share: &Share,
    presignature: Presignature,
    message: &[u8],
    derivation_path: &[u32],
) -> Result<SignatureOutput, ProtocolError> {
    check_signers(session, share, &presignature.signers)?;
    if presignature.scheme != crate::SCHEME_ID.0
        || presignature.public_key != sec1(&share.shared_public_key())
    {
        return Err(ProtocolError::InvalidMaterial(
            "presignature was made with another key".into(),
        ));
    }
    let record: PresignatureRecord =
        envelope::decode(PRESIGNATURE_FORMAT, &presignature.secret, "presignature")?;
    if record.index != share.core.i {
        return Err(ProtocolError::InvalidMaterial(format!(
            "presignature belongs to key party {}, not {}",
            record.index, share.core.i
        )));
    }
    let data = data_to_sign(message)?;
    let epub = master_epub(share)?;
    let child = derive(epub.public_key, epub.chain_code, derivation_path)?;
    let mine = record
        .presignature
        .set_derivation_path(epub, path_indices(derivation_path)?)
        .map_err(|e| ProtocolError::InvalidRequest(format!("derivation path: {e}")))?
        .issue_partial_signature(data);
    channel.send(Outgoing {
        to: Recipient::Broadcast,
        round: PARTIAL_SIGNATURE_ROUND,
        payload: driver::to_cbor(&mine)?,
    })?;
    let others: Vec<PartyIndex> = (0..session.parties).filter(|p| *p != session.me).collect();
    let received =
        RoundCollector::new().collect(channel, PARTIAL_SIGNATURE_ROUND, true, &others)?;
    // Partial signatures are public (cggmp21: they carry no secret).
    let mut partials = Vec::with_capacity(others.len() + 1);
    partials.push(mine);
    for (party, payload) in received {
        let partial: PartialSignature<E> =
            ciborium::from_reader(payload.as_slice()).map_err(|e| ProtocolError::Malformed {
                party,
                round: PARTIAL_SIGNATURE_ROUND,
                reason: format!("partial signature does not decode: {e}"),
            })?;
        partials.push(partial);
    }
    let signature = PartialSignature::combine(&partials)
        .ok_or_else(|| ProtocolError::Aborted("partial signatures do not combine".into()))?;
    finish(signature, message, &child.public_key)
}

/// `derive_public_key` of the plugin.
pub(crate) fn derive_public_key(
    public_key: &[u8],
    chain_code: &[u8; 32],
    path: &[u32],
) -> Result<Vec<u8>, ProtocolError> {
    let pk = parse_point(public_key)?;
    let child = derive(pk.into_inner(), *chain_code, path)?;
    Ok(sec1(&child.public_key))
}

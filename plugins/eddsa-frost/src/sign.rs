//! Presigning (nonce commitments) and signing (see the crate docs).

use std::collections::BTreeMap;

use frost_core::round1::{self, SigningCommitments, SigningNonces};
use frost_core::round2::{self, SignatureShare};
use frost_core::{Identifier, SigningPackage};
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::{
    Channel, KeyShare, PartyIndex, Presignature, ProtocolError, Recipient, Session, SignatureOutput,
};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::dkg::{blame, identifier};
use crate::hd::tweak_packages;
use crate::share::{decode_share, Packages, PresigV1, PRESIG_FORMAT};
use crate::suite::{internal, FrostSuite};
use crate::wire::{collect, decode, encode, others, round, send, Bytes};

/// Checks a signer set against a share and session; returns it.
fn check_signers(
    session: &Session,
    share: &KeyShare,
    signers: &[PartyIndex],
) -> Result<(), ProtocolError> {
    let mut sorted = signers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if signers.len() != usize::from(share.threshold) || sorted.len() != signers.len() {
        return Err(ProtocolError::InvalidRequest(format!(
            "signing needs exactly {} distinct signers, got {signers:?}",
            share.threshold
        )));
    }
    if signers.iter().any(|s| *s >= share.parties) || usize::from(session.parties) != signers.len()
    {
        return Err(ProtocolError::InvalidRequest(format!(
            "signers {signers:?} do not fit a {}-party key and session",
            share.parties
        )));
    }
    if signers.get(usize::from(session.me)) != Some(&share.index) {
        return Err(ProtocolError::InvalidRequest(
            "this party's key index is not at its session position".into(),
        ));
    }
    Ok(())
}

pub(crate) fn presign<S: FrostSuite>(
    session: &Session,
    channel: &mut dyn Channel,
    share: &KeyShare,
    signers: &[PartyIndex],
) -> Result<Presignature, ProtocolError> {
    check_signers(session, share, signers)?;
    let packages = decode_share::<S>(share)?;
    let (nonces, commitments) = round1::commit(packages.key.signing_share(), &mut OsRng);
    let own = commitments.serialize().map_err(internal)?;
    send(
        channel,
        Recipient::Broadcast,
        round::PRESIGN_COMMIT,
        &Bytes { bytes: own.clone() },
    )?;
    let mut rounds = RoundCollector::new();
    let received: BTreeMap<_, Bytes> = collect(
        &mut rounds,
        channel,
        round::PRESIGN_COMMIT,
        true,
        &others(session.parties, session.me),
    )?;
    let mut all = vec![(share.index, own)];
    for (p, msg) in received {
        SigningCommitments::<S::C>::deserialize(&msg.bytes).map_err(|e| {
            ProtocolError::Malformed {
                party: p,
                round: round::PRESIGN_COMMIT,
                reason: e.to_string(),
            }
        })?;
        all.push((signers[usize::from(p)], msg.bytes));
    }
    all.sort();
    let secret = PresigV1 {
        format: PRESIG_FORMAT,
        nonces: nonces.serialize().map_err(internal)?,
        commitments: all,
    };
    let encoded = Zeroizing::new(encode(&secret)?);
    let PresigV1 { mut nonces, .. } = secret;
    zeroize::Zeroize::zeroize(&mut nonces);
    Ok(Presignature {
        scheme: S::ID.to_owned(),
        public_key: share.public_key.clone(),
        signers: signers.to_vec(),
        secret: encoded,
    })
}

pub(crate) fn sign_presigned<S: FrostSuite>(
    session: &Session,
    channel: &mut dyn Channel,
    share: &KeyShare,
    presignature: Presignature,
    message: &[u8],
    derivation_path: &[u32],
) -> Result<SignatureOutput, ProtocolError> {
    if presignature.scheme != S::ID || presignature.public_key != share.public_key {
        return Err(ProtocolError::InvalidMaterial(
            "presignature belongs to another key".into(),
        ));
    }
    let signers = presignature.signers.clone();
    check_signers(session, share, &signers)?;
    let mut presig: PresigV1 = decode(session.me, round::SIGN_SHARE, &presignature.secret)
        .map_err(|_| ProtocolError::InvalidMaterial("presignature does not decode".into()))?;
    if presig.format != PRESIG_FORMAT {
        return Err(ProtocolError::InvalidMaterial(format!(
            "presignature format {} is not supported",
            presig.format
        )));
    }
    let nonces = SigningNonces::<S::C>::deserialize(&presig.nonces).map_err(internal);
    zeroize::Zeroize::zeroize(&mut presig.nonces);
    let nonces = nonces?;
    drop(presignature);

    let mut commitments = BTreeMap::new();
    for (key_index, bytes) in &presig.commitments {
        commitments.insert(
            identifier::<S::C>(*key_index)?,
            SigningCommitments::deserialize(bytes).map_err(internal)?,
        );
    }
    let package = SigningPackage::new(commitments, message);
    let packages = decode_share::<S>(share)?;
    let Packages { key, public } = tweak_packages::<S>(
        &packages.key,
        &packages.public,
        &share.chain_code,
        derivation_path,
    )?;

    let own = round2::sign(&package, &nonces, &key).map_err(internal)?;
    drop(nonces);
    send(
        channel,
        Recipient::Broadcast,
        round::SIGN_SHARE,
        &Bytes {
            bytes: own.serialize(),
        },
    )?;
    let mut rounds = RoundCollector::new();
    let received: BTreeMap<_, Bytes> = collect(
        &mut rounds,
        channel,
        round::SIGN_SHARE,
        true,
        &others(session.parties, session.me),
    )?;
    let mut shares = BTreeMap::from([(*key.identifier(), own)]);
    for (p, msg) in received {
        let s = SignatureShare::<S::C>::deserialize(&msg.bytes).map_err(|e| {
            ProtocolError::Malformed {
                party: p,
                round: round::SIGN_SHARE,
                reason: e.to_string(),
            }
        })?;
        shares.insert(identifier::<S::C>(signers[usize::from(p)])?, s);
    }
    let to_party = |id: &Identifier<S::C>| {
        signers
            .iter()
            .position(|k| identifier::<S::C>(*k).ok().as_ref() == Some(id))
            .map(|p| p as PartyIndex)
    };
    let signature =
        frost_core::aggregate(&package, &shares, &public).map_err(|e| blame(e, to_party))?;
    public
        .verifying_key()
        .verify(message, &signature)
        .map_err(|e| {
            ProtocolError::Aborted(format!("aggregated signature does not verify: {e}"))
        })?;
    Ok(SignatureOutput {
        signature: S::encode_signature(&signature)?,
        public_key: S::encode_public_key(public.verifying_key())?,
    })
}

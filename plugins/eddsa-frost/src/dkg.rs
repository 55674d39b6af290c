//! Distributed key generation (see the crate docs).

use std::collections::BTreeMap;

use frost_core::keys::dkg;
use frost_core::{Ciphersuite, Identifier};
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::scheme::check_threshold;
use keyrack_plugin::{
    Channel, KeyShare, KeygenParams, PartyIndex, ProtocolError, Recipient, Session,
};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::share::encode_share;
use crate::suite::{internal, FrostSuite};
use crate::wire::{collect, others, round, send, Bytes, DkgCommit, Echo};

pub(crate) fn identifier<C: Ciphersuite>(
    index: PartyIndex,
) -> Result<Identifier<C>, ProtocolError> {
    Identifier::try_from(
        index
            .checked_add(1)
            .ok_or_else(|| internal("index overflow"))?,
    )
    .map_err(internal)
}

/// The key index of a FROST identifier among `n` parties.
pub(crate) fn index_of<C: Ciphersuite>(id: &Identifier<C>, n: u16) -> Option<PartyIndex> {
    (0..n).find(|i| identifier::<C>(*i).ok().as_ref() == Some(id))
}

/// Maps a frost-core error to one that names the culprit's session index, if it names one.
pub(crate) fn blame<C: Ciphersuite>(
    e: frost_core::Error<C>,
    to_party: impl Fn(&Identifier<C>) -> Option<PartyIndex>,
) -> ProtocolError {
    match e.culprits().first().and_then(&to_party) {
        Some(party) => ProtocolError::Misbehaved {
            party,
            reason: e.to_string(),
        },
        None => ProtocolError::Aborted(e.to_string()),
    }
}

/// SHA-256 over every party's message of a broadcast round, in index order.
pub(crate) fn transcript(messages: &BTreeMap<PartyIndex, Vec<u8>>) -> [u8; 32] {
    let mut h = Sha256::new();
    for (p, m) in messages {
        h.update(p.to_be_bytes());
        h.update((m.len() as u64).to_be_bytes());
        h.update(m);
    }
    h.finalize().into()
}

/// The echo round: sends our digest of a broadcast round (if `send_own`), collects the
/// digests of `from`, and fails if any differs from ours: some sender equivocated.
pub(crate) fn echo_round(
    rounds: &mut RoundCollector,
    channel: &mut dyn Channel,
    round: u16,
    digest: [u8; 32],
    from: &[PartyIndex],
    send_own: bool,
) -> Result<(), ProtocolError> {
    if send_own {
        send(channel, Recipient::Broadcast, round, &Echo { digest })?;
    }
    let echoes: BTreeMap<_, Echo> = collect(rounds, channel, round, true, from)?;
    for (p, echo) in echoes {
        if echo.digest != digest {
            return Err(ProtocolError::Aborted(format!(
                "party {p} received different broadcasts than this party (echo round {round}): a sender equivocated"
            )));
        }
    }
    Ok(())
}

pub(crate) fn keygen<S: FrostSuite>(
    session: &Session,
    channel: &mut dyn Channel,
    params: &KeygenParams,
) -> Result<KeyShare, ProtocolError> {
    let (n, t, me) = (session.parties, params.threshold, session.me);
    check_threshold(t, n)?;
    let peers = others(n, me);
    let mut rounds = RoundCollector::new();
    let to_party = |id: &Identifier<S::C>| index_of::<S::C>(id, n);

    // Round 1: commitments, proof of knowledge, chain code contribution.
    let (secret1, package1) =
        dkg::part1::<S::C, _>(identifier::<S::C>(me)?, n, t, OsRng).map_err(internal)?;
    let mut chain_code_part = [0u8; 32];
    OsRng.fill_bytes(&mut chain_code_part);
    let own = crate::wire::encode(&DkgCommit {
        package: package1.serialize().map_err(internal)?,
        chain_code_part,
    })?;
    channel.send(keyrack_plugin::Outgoing {
        to: Recipient::Broadcast,
        round: round::DKG_COMMIT,
        payload: own.clone(),
    })?;
    let mut raw = rounds.collect(channel, round::DKG_COMMIT, true, &peers)?;

    // A message that does not decode is its sender's fault, whatever the echo says.
    raw.insert(me, own);
    let mut packages = BTreeMap::new();
    let mut chain_code = Sha256::new().chain_update(b"keyrack-frost-chaincode-v1");
    for (p, bytes) in &raw {
        let commit: DkgCommit = crate::wire::decode(*p, round::DKG_COMMIT, bytes)?;
        chain_code.update(commit.chain_code_part);
        if *p != me {
            let package =
                dkg::round1::Package::<S::C>::deserialize(&commit.package).map_err(|e| {
                    ProtocolError::Malformed {
                        party: *p,
                        round: round::DKG_COMMIT,
                        reason: e.to_string(),
                    }
                })?;
            packages.insert(identifier::<S::C>(*p)?, package);
        }
    }
    let chain_code: [u8; 32] = chain_code.finalize().into();

    // Round 2: echo what we received, so equivocation is caught before secrets move.
    echo_round(
        &mut rounds,
        channel,
        round::DKG_ECHO,
        transcript(&raw),
        &peers,
        true,
    )?;

    // Round 3: secret shares, point to point.
    let (secret2, outgoing) = dkg::part2(secret1, &packages).map_err(|e| blame(e, to_party))?;
    for (id, package) in outgoing {
        let to = to_party(&id).ok_or_else(|| internal("unknown identifier"))?;
        send(
            channel,
            Recipient::Party(to),
            round::DKG_SHARES,
            &Bytes {
                bytes: package.serialize().map_err(internal)?,
            },
        )?;
    }
    let received: BTreeMap<_, Bytes> =
        collect(&mut rounds, channel, round::DKG_SHARES, false, &peers)?;
    let mut shares = BTreeMap::new();
    for (p, msg) in received {
        let package = dkg::round2::Package::<S::C>::deserialize(&msg.bytes).map_err(|e| {
            ProtocolError::Malformed {
                party: p,
                round: round::DKG_SHARES,
                reason: e.to_string(),
            }
        })?;
        shares.insert(identifier::<S::C>(p)?, package);
    }
    let (key, public) = dkg::part3(&secret2, &packages, &shares).map_err(|e| blame(e, to_party))?;
    Ok(KeyShare {
        scheme: S::ID.to_owned(),
        public_key: S::encode_public_key(public.verifying_key())?,
        chain_code,
        threshold: t,
        parties: n,
        index: me,
        secret: encode_share(&key, &public)?,
    })
}

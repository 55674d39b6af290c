//! Protocol messages (CBOR) and the helpers that send and collect them.

use std::collections::BTreeMap;

use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::{Channel, Outgoing, PartyIndex, ProtocolError, Recipient};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Round numbers, unique across this crate's protocols.
pub(crate) mod round {
    pub const DKG_COMMIT: u16 = 1;
    pub const DKG_ECHO: u16 = 2;
    pub const DKG_SHARES: u16 = 3;
    pub const PRESIGN_COMMIT: u16 = 10;
    pub const SIGN_SHARE: u16 = 11;
    pub const RESHARE_COMMIT: u16 = 20;
    pub const RESHARE_SHARES: u16 = 21;
    pub const RESHARE_ECHO: u16 = 22;
}

#[derive(Serialize, Deserialize)]
pub(crate) struct DkgCommit {
    pub package: Vec<u8>,
    pub chain_code_part: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Echo {
    pub digest: [u8; 32],
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Bytes {
    pub bytes: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Commitments {
    pub points: Vec<Vec<u8>>,
}

pub(crate) fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    ciborium::into_writer(msg, &mut out)
        .map_err(|e| ProtocolError::InvalidMaterial(e.to_string()))?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(
    party: PartyIndex,
    round: u16,
    bytes: &[u8],
) -> Result<T, ProtocolError> {
    ciborium::from_reader(bytes).map_err(|e| ProtocolError::Malformed {
        party,
        round,
        reason: e.to_string(),
    })
}

pub(crate) fn send<T: Serialize>(
    channel: &mut dyn Channel,
    to: Recipient,
    round: u16,
    msg: &T,
) -> Result<(), ProtocolError> {
    channel.send(Outgoing {
        to,
        round,
        payload: encode(msg)?,
    })?;
    Ok(())
}

/// Collects and decodes one round's messages from `from`.
pub(crate) fn collect<T: DeserializeOwned>(
    rounds: &mut RoundCollector,
    channel: &mut dyn Channel,
    round: u16,
    broadcast: bool,
    from: &[PartyIndex],
) -> Result<BTreeMap<PartyIndex, T>, ProtocolError> {
    rounds
        .collect(channel, round, broadcast, from)?
        .into_iter()
        .map(|(p, bytes)| Ok((p, decode(p, round, &bytes)?)))
        .collect()
}

/// Everyone in `0..n` but `me`.
pub(crate) fn others(n: u16, me: PartyIndex) -> Vec<PartyIndex> {
    (0..n).filter(|p| *p != me).collect()
}

//! Runs a cggmp21 protocol, through round_based's sync state machine, over a keyrack
//! [`Channel`].
//!
//! Outgoing messages become CBOR payloads tagged with the message's round
//! ([`ProtocolMessage::round`]); incoming payloads are checked (exact duplicates dropped, two
//! different messages from one party for one round blamed on it, undecodable bytes blamed on
//! the sender) before the state machine sees them, because a duplicate would abort cggmp21.
//! This module owns no cryptography and never looks inside a message.

use std::collections::{BTreeMap, BTreeSet};

use cggmp21::round_based::state_machine::{ProceedResult, StateMachine};
use cggmp21::round_based::{self, MessageDestination, MessageType, ProtocolMessage};
use keyrack_plugin::{
    Channel, ChannelError, Incoming, Outgoing, PartyIndex, ProtocolError, Recipient, Session,
};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

/// CBOR-encodes a value (messages, shares, fixtures).
pub(crate) fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)
        .map_err(|e| ProtocolError::Aborted(format!("cannot encode a message: {e}")))?;
    Ok(out)
}

/// Filters what the channel delivers: drops exact duplicates, blames equivocation, and
/// remembers who was heard from in which round (to name the missing on a timeout).
pub(crate) struct Inbox {
    me: PartyIndex,
    parties: u16,
    /// (sender, round, broadcast) → digest of the payload already accepted.
    seen: BTreeMap<(PartyIndex, u16, bool), [u8; 32]>,
    /// Rounds this party has sent in, in the order it sent them.
    sent_rounds: Vec<u16>,
}

impl Inbox {
    pub(crate) fn new(session: &Session) -> Self {
        Inbox {
            me: session.me,
            parties: session.parties,
            seen: BTreeMap::new(),
            sent_rounds: Vec::new(),
        }
    }

    pub(crate) fn note_sent(&mut self, round: u16) {
        if !self.sent_rounds.contains(&round) {
            self.sent_rounds.push(round);
        }
    }

    /// Returns true if the message is new, false for an exact duplicate.
    pub(crate) fn accept(&mut self, m: &Incoming) -> Result<bool, ProtocolError> {
        if m.from >= self.parties || m.from == self.me {
            return Err(ProtocolError::Malformed {
                party: m.from,
                round: m.round,
                reason: format!("sender {} is not another party of this session", m.from),
            });
        }
        let digest: [u8; 32] = Sha256::digest(&m.payload).into();
        match self.seen.get(&(m.from, m.round, m.broadcast)) {
            Some(d) if *d == digest => Ok(false),
            Some(_) => Err(ProtocolError::Misbehaved {
                party: m.from,
                reason: format!("sent two different messages for round {}", m.round),
            }),
            None => {
                self.seen.insert((m.from, m.round, m.broadcast), digest);
                Ok(true)
            }
        }
    }

    fn heard(&self, round: u16) -> BTreeSet<PartyIndex> {
        self.seen
            .keys()
            .filter(|(_, r, _)| *r == round)
            .map(|(p, _, _)| *p)
            .collect()
    }

    /// The timeout error: the earliest round this party sent in and has not heard every other
    /// party in, with the parties not heard from in it.
    pub(crate) fn timeout(&self) -> ProtocolError {
        let others: Vec<PartyIndex> = (0..self.parties).filter(|p| *p != self.me).collect();
        for round in &self.sent_rounds {
            let heard = self.heard(*round);
            let missing: Vec<PartyIndex> = others
                .iter()
                .copied()
                .filter(|p| !heard.contains(p))
                .collect();
            if !missing.is_empty() {
                return ProtocolError::Timeout {
                    round: *round,
                    missing,
                };
            }
        }
        let round = self.sent_rounds.first().copied().unwrap_or(0);
        ProtocolError::Timeout {
            round,
            missing: others,
        }
    }
}

/// Drives a cggmp21 state machine to completion over `channel`. The protocol's own error (the
/// state machine's output `Err`) is returned as `Ok(Err(..))` for the caller to map with
/// [`map_protocol_error`].
pub(crate) fn run<SM, T, E>(
    session: &Session,
    channel: &mut dyn Channel,
    mut sm: SM,
) -> Result<Result<T, E>, ProtocolError>
where
    SM: StateMachine<Output = Result<T, E>>,
    SM::Msg: Serialize + DeserializeOwned + ProtocolMessage,
{
    let mut inbox = Inbox::new(session);
    let mut next_id: u64 = 0;
    loop {
        match sm.proceed() {
            ProceedResult::SendMsg(out) => {
                let round = out.msg.round();
                let to = match out.recipient {
                    MessageDestination::AllParties => Recipient::Broadcast,
                    MessageDestination::OneParty(p) => Recipient::Party(p),
                };
                let payload = to_cbor(&out.msg)?;
                inbox.note_sent(round);
                channel.send(Outgoing { to, round, payload })?;
            }
            ProceedResult::NeedsOneMoreMessage => {
                let incoming = loop {
                    let m = match channel.recv() {
                        Ok(m) => m,
                        Err(ChannelError::Timeout(_)) => return Err(inbox.timeout()),
                        Err(e) => return Err(e.into()),
                    };
                    if !inbox.accept(&m)? {
                        continue;
                    }
                    let msg: SM::Msg =
                        ciborium::from_reader(m.payload.as_slice()).map_err(|e| {
                            ProtocolError::Malformed {
                                party: m.from,
                                round: m.round,
                                reason: format!("does not decode: {e}"),
                            }
                        })?;
                    if msg.round() != m.round {
                        return Err(ProtocolError::Malformed {
                            party: m.from,
                            round: m.round,
                            reason: format!(
                                "declared round {} but the message belongs to round {}",
                                m.round,
                                msg.round()
                            ),
                        });
                    }
                    let id = next_id;
                    next_id += 1;
                    break round_based::Incoming {
                        id,
                        sender: m.from,
                        msg_type: if m.broadcast {
                            MessageType::Broadcast
                        } else {
                            MessageType::P2P
                        },
                        msg,
                    };
                };
                if sm.received_msg(incoming).is_err() {
                    return Err(ProtocolError::Aborted(
                        "the protocol state machine refused a message".into(),
                    ));
                }
            }
            ProceedResult::Yielded => {}
            ProceedResult::Output(Ok(out)) => return Ok(Ok(out)),
            ProceedResult::Output(Err(e)) => return Ok(Err(e)),
            ProceedResult::Error(e) => {
                return Err(ProtocolError::Aborted(format!(
                    "protocol state machine failed: {e}"
                )))
            }
        }
    }
}

/// Maps a cggmp21 protocol error to a [`ProtocolError`], naming the culprit when cggmp21's
/// error names one (cggmp21 exposes culprits only through its `Debug` output: `faulty_party`
/// fields, `parties: [..]` lists, and `(party, msg id, ..)` tuples in abort variants).
pub(crate) fn map_protocol_error<E: std::error::Error>(
    what: &str,
    err: &E,
    parties: u16,
) -> ProtocolError {
    let debug = format!("{err:?}");
    let chain = error_chain(err);
    if debug.contains("Aborted") {
        if let Some(party) = culprit(&debug).filter(|p| *p < parties) {
            return ProtocolError::Misbehaved {
                party,
                reason: format!("{what}: {chain}"),
            };
        }
    }
    ProtocolError::Aborted(format!("{what}: {chain}"))
}

/// The error and its sources, joined.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn leading_number(s: &str) -> Option<u16> {
    let digits: String = s
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The first party named in a cggmp21 abort's `Debug` text.
fn culprit(debug: &str) -> Option<u16> {
    if let Some(pos) = debug.find("faulty_party:") {
        return leading_number(&debug[pos + "faulty_party:".len()..]);
    }
    if let Some(pos) = debug.find("parties: [") {
        return leading_number(&debug[pos + "parties: [".len()..]);
    }
    if let Some(pos) = debug.find("([(") {
        return leading_number(&debug[pos + 3..]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn culprits_are_read_from_cggmp21_abort_texts() {
        assert_eq!(
            culprit("KeygenError(Aborted(InvalidSchnorrProof([AbortBlame { faulty_party: 2, data_message: 3, proof_message: 4 }])))"),
            Some(2)
        );
        assert_eq!(
            culprit("Aborted(FeldmanVerificationFailed { parties: [1, 2] })"),
            Some(1)
        );
        assert_eq!(
            culprit("SigningError(Aborted(EncProofOfK([(1, 5, 7)])))"),
            Some(1)
        );
        assert_eq!(culprit("SigningError(Aborted(SignatureInvalid))"), None);
    }

    #[test]
    fn duplicates_are_dropped_and_equivocation_blamed() {
        let session = Session {
            id: [0; 32],
            me: 0,
            parties: 3,
        };
        let mut inbox = Inbox::new(&session);
        let m = Incoming {
            from: 1,
            broadcast: true,
            round: 0,
            payload: vec![1, 2, 3],
        };
        assert_eq!(inbox.accept(&m), Ok(true));
        assert_eq!(inbox.accept(&m), Ok(false));
        let other = Incoming {
            payload: vec![9],
            ..m.clone()
        };
        assert!(matches!(
            inbox.accept(&other),
            Err(ProtocolError::Misbehaved { party: 1, .. })
        ));
        inbox.note_sent(0);
        assert_eq!(
            inbox.timeout(),
            ProtocolError::Timeout {
                round: 0,
                missing: vec![2]
            }
        );
    }
}

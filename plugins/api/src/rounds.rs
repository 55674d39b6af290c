//! Collecting one round's messages from a set of parties.
//!
//! Messages can arrive early (a fast peer is already in a later round, or in the next step of
//! the session), twice (transport retries) or, from a faulty party, twice with different
//! contents. [`RoundCollector::collect`] takes the round it asks for, stashes messages of
//! other rounds back in the channel for later steps, drops exact duplicates (also late copies
//! of rounds it already collected), blames a party that sends two different messages for one
//! round, and on timeout names the parties still missing.

use std::collections::{BTreeMap, BTreeSet};

use crate::channel::{Channel, ChannelError, PartyIndex};
use crate::ProtocolError;

/// Receives messages round by round for one protocol step.
#[derive(Default)]
pub struct RoundCollector {
    /// Rounds already collected: late copies of their messages are dropped.
    done: BTreeSet<(u16, bool)>,
    /// How many duplicate messages were dropped.
    pub duplicates: u64,
}

impl RoundCollector {
    /// A collector that has collected nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until every party in `from` has sent its message of `round` (broadcast or p2p as
    /// given); returns them by sender.
    pub fn collect(
        &mut self,
        channel: &mut dyn Channel,
        round: u16,
        broadcast: bool,
        from: &[PartyIndex],
    ) -> Result<BTreeMap<PartyIndex, Vec<u8>>, ProtocolError> {
        let wanted: BTreeSet<PartyIndex> = from.iter().copied().collect();
        let mut got: BTreeMap<PartyIndex, Vec<u8>> = BTreeMap::new();
        let mut aside = Vec::new();
        let result = loop {
            if got.len() == wanted.len() {
                break Ok(());
            }
            match channel.recv() {
                Ok(m) if m.round == round && m.broadcast == broadcast => {
                    if !wanted.contains(&m.from) {
                        continue; // not a party this round waits for
                    }
                    match got.get(&m.from) {
                        Some(existing) if *existing == m.payload => self.duplicates += 1,
                        Some(_) => {
                            break Err(ProtocolError::Misbehaved {
                                party: m.from,
                                reason: format!("sent two different messages for round {round}"),
                            })
                        }
                        None => {
                            got.insert(m.from, m.payload);
                        }
                    }
                }
                Ok(m) if self.done.contains(&(m.round, m.broadcast)) => self.duplicates += 1,
                Ok(m) => aside.push(m),
                Err(ChannelError::Timeout(_)) => {
                    let missing = wanted
                        .iter()
                        .copied()
                        .filter(|p| !got.contains_key(p))
                        .collect();
                    break Err(ProtocolError::Timeout { round, missing });
                }
                Err(e) => break Err(e.into()),
            }
        };
        for m in aside {
            channel.stash(m);
        }
        result?;
        self.done.insert((round, broadcast));
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{Incoming, Outgoing};

    /// A scripted channel: yields its messages, then times out.
    struct Script(std::collections::VecDeque<Incoming>);
    impl Channel for Script {
        fn send(&mut self, _: Outgoing) -> Result<(), ChannelError> {
            Ok(())
        }
        fn recv(&mut self) -> Result<Incoming, ChannelError> {
            self.0
                .pop_front()
                .ok_or(ChannelError::Timeout(std::time::Duration::ZERO))
        }
        fn stash(&mut self, m: Incoming) {
            self.0.push_back(m);
        }
    }

    fn msg(from: PartyIndex, round: u16, payload: &[u8]) -> Incoming {
        Incoming {
            from,
            broadcast: true,
            round,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn early_messages_wait_for_their_round_and_duplicates_are_dropped() {
        let mut ch = Script(
            [
                msg(1, 2, b"b1"),
                msg(1, 1, b"a1"),
                msg(1, 1, b"a1"),
                msg(2, 1, b"a2"),
            ]
            .into(),
        );
        let mut c = RoundCollector::new();
        let r1 = c.collect(&mut ch, 1, true, &[1, 2]).unwrap();
        assert_eq!(r1.len(), 2);
        assert_eq!(c.duplicates, 1);
        // A later step (new collector) still finds the early round-2 message.
        let r2 = RoundCollector::new()
            .collect(&mut ch, 2, true, &[1])
            .unwrap();
        assert_eq!(r2[&1], b"b1");
    }

    #[test]
    fn equivocation_is_blamed_and_silence_is_named() {
        let mut ch = Script([msg(1, 1, b"x"), msg(1, 1, b"y"), msg(2, 1, b"z")].into());
        assert!(matches!(
            RoundCollector::new().collect(&mut ch, 1, true, &[1, 2]),
            Err(ProtocolError::Misbehaved { party: 1, .. })
        ));
        let mut ch = Script([msg(1, 1, b"x")].into());
        assert_eq!(
            RoundCollector::new().collect(&mut ch, 1, true, &[1, 2, 3]),
            Err(ProtocolError::Timeout {
                round: 1,
                missing: vec![2, 3]
            })
        );
    }
}

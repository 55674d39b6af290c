//! Collecting one round's messages from a set of parties.
//!
//! Messages can arrive early (a fast peer is already in the next round), twice (transport
//! retries) or, from a faulty party, twice with different contents. [`RoundCollector`]
//! buffers early messages, drops exact duplicates, blames a party that sends two different
//! messages for one round, and on timeout names the parties still missing.

use std::collections::{BTreeMap, BTreeSet};

use crate::channel::{Channel, ChannelError, Incoming, PartyIndex};
use crate::ProtocolError;

/// Receives messages round by round for one protocol run.
#[derive(Default)]
pub struct RoundCollector {
    /// (round, broadcast, sender) → payload, for rounds not yet collected.
    pending: BTreeMap<(u16, bool, PartyIndex), Vec<u8>>,
    /// Rounds already collected: late copies of their messages are dropped.
    done: BTreeSet<(u16, bool)>,
    /// How many duplicate messages were dropped.
    pub duplicates: u64,
}

impl RoundCollector {
    /// A collector with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    fn file(&mut self, m: Incoming) -> Result<(), ProtocolError> {
        if self.done.contains(&(m.round, m.broadcast)) {
            self.duplicates += 1;
            return Ok(());
        }
        match self.pending.get(&(m.round, m.broadcast, m.from)) {
            Some(existing) if *existing == m.payload => {
                self.duplicates += 1;
                Ok(())
            }
            Some(_) => Err(ProtocolError::Misbehaved {
                party: m.from,
                reason: format!("sent two different messages for round {}", m.round),
            }),
            None => {
                self.pending
                    .insert((m.round, m.broadcast, m.from), m.payload);
                Ok(())
            }
        }
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
        loop {
            let have = wanted
                .iter()
                .filter(|p| self.pending.contains_key(&(round, broadcast, **p)))
                .count();
            if have == wanted.len() {
                break;
            }
            match channel.recv() {
                Ok(m) if m.from as usize >= u16::MAX as usize => {
                    return Err(ProtocolError::Malformed {
                        party: m.from,
                        round: m.round,
                        reason: "bad sender".into(),
                    })
                }
                Ok(m) => self.file(m)?,
                Err(ChannelError::Timeout(_)) => {
                    let missing = wanted
                        .iter()
                        .copied()
                        .filter(|p| !self.pending.contains_key(&(round, broadcast, *p)))
                        .collect();
                    return Err(ProtocolError::Timeout { round, missing });
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.done.insert((round, broadcast));
        let mut out = BTreeMap::new();
        for p in wanted {
            if let Some(payload) = self.pending.remove(&(round, broadcast, p)) {
                out.insert(p, payload);
            }
        }
        // Messages of this round from parties not asked for are not ours to use.
        self.pending
            .retain(|(r, b, _), _| !(*r == round && *b == broadcast));
        Ok(out)
    }
}

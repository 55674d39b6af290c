//! An in-process network for running a protocol among `n` parties on threads, with faults
//! injected: absent parties, duplicated messages, and tampered messages. Scheme tests run
//! every protocol over it (feature `sim`).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::{Incoming, Outgoing, PartyIndex, Recipient};
use crate::runtime::QueueChannel;
use crate::{Channel, ProtocolError};

/// A change made to one party's messages of one round, before delivery.
pub type TamperFn = Arc<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// Faults to inject.
#[derive(Clone, Default)]
pub struct Faults {
    /// Parties that never run (their messages never come).
    pub absent: Vec<PartyIndex>,
    /// Deliver every message twice.
    pub duplicate_every_message: bool,
    /// Rewrite the messages `party` sends in `round` (to everyone).
    pub tamper: Option<(PartyIndex, u16, TamperFn)>,
}

/// Runs `protocol` for every party `0..parties` on its own thread; returns each party's
/// result (`None` for absent parties). Each receive waits at most `timeout`.
pub fn run<T, F>(
    parties: u16,
    timeout: Duration,
    faults: &Faults,
    protocol: F,
) -> Vec<Option<Result<T, ProtocolError>>>
where
    T: Send,
    F: Fn(PartyIndex, &mut dyn Channel) -> Result<T, ProtocolError> + Sync,
{
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..parties).map(|_| mpsc::channel::<Incoming>()).unzip();
    std::thread::scope(|scope| {
        let handles: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(me, rx)| {
                let me = me as PartyIndex;
                if faults.absent.contains(&me) {
                    drop(rx);
                    return None;
                }
                let senders = senders.clone();
                let faults = faults.clone();
                let send = move |mut m: Outgoing| -> bool {
                    if let Some((party, round, f)) = &faults.tamper {
                        if *party == me && *round == m.round {
                            f(&mut m.payload);
                        }
                    }
                    let targets: Vec<PartyIndex> = match m.to {
                        Recipient::Broadcast => (0..parties).filter(|p| *p != me).collect(),
                        Recipient::Party(p) => vec![p],
                    };
                    let copies = if faults.duplicate_every_message { 2 } else { 1 };
                    for to in targets {
                        for _ in 0..copies {
                            let msg = Incoming {
                                from: me,
                                broadcast: m.to == Recipient::Broadcast,
                                round: m.round,
                                payload: m.payload.clone(),
                            };
                            // An absent or finished party's queue is gone: like a network, say nothing.
                            let _ = senders.get(to as usize).map(|s| s.send(msg));
                        }
                    }
                    true
                };
                let protocol = &protocol;
                Some(scope.spawn(move || {
                    crate::runtime::mark_protocol_thread();
                    let mut channel = QueueChannel::new(rx, Box::new(send), timeout);
                    protocol(me, &mut channel)
                }))
            })
            .collect();
        drop(senders);
        handles
            .into_iter()
            .map(|h| {
                h.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(ProtocolError::Panicked("party thread".into())))
                })
            })
            .collect()
    })
}

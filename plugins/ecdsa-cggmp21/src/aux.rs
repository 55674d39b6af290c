//! Committee setup: safe primes, the background [`PrimePool`], and the Paillier/ring-Pedersen
//! aux info (`aux_info_gen`) that a committee of `n` parties runs once and reuses for every key
//! it holds.
//!
//! This module never stores anything: the node seals [`SafePrimes`] and [`CommitteeAux`]
//! (both have versioned byte encodings) and hands aux info back through an
//! [`AuxInfoSource`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cggmp21::key_refresh::PregeneratedPrimes;
use cggmp21::ExecutionId;
use keyrack_plugin::{Channel, PartyIndex, ProtocolError, Session};
use zeroize::Zeroizing;

use crate::driver;
use crate::envelope;

/// The security level keyrack runs cggmp21 at (128-bit).
pub type Level = cggmp21::security_level::SecurityLevel128;

/// Format version of [`SafePrimes::to_bytes`].
const PRIMES_FORMAT: u16 = 1;
/// Format version of [`CommitteeAux::to_bytes`].
const AUX_FORMAT: u16 = 1;

/// One party's pair of safe primes, the input to committee setup. Secret (they become the
/// party's Paillier key): seal before storing.
#[derive(Clone)]
pub struct SafePrimes(pub(crate) PregeneratedPrimes<Level>);

impl std::fmt::Debug for SafePrimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SafePrimes(<redacted>)")
    }
}

impl SafePrimes {
    /// Generates a pair: CPU-bound for 8–90 s. Prefer a [`PrimePool`].
    pub fn generate() -> Self {
        SafePrimes(PregeneratedPrimes::generate(&mut rand_core::OsRng))
    }

    /// Versioned encoding (u16 big-endian format version, then CBOR).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
        envelope::encode(PRIMES_FORMAT, &self.0)
    }

    /// Decodes [`SafePrimes::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let primes: PregeneratedPrimes<Level> = envelope::decode(PRIMES_FORMAT, bytes, "primes")?;
        let (p, q) = primes.split();
        PregeneratedPrimes::new(p, q)
            .map(SafePrimes)
            .ok_or_else(|| ProtocolError::InvalidMaterial("safe primes are too small".into()))
    }
}

struct PoolState {
    primes: VecDeque<SafePrimes>,
    stopped: bool,
}

struct PoolShared {
    state: Mutex<PoolState>,
    /// Signalled when primes are added (wakes takers) or taken / stop is asked (wakes the
    /// generator).
    changed: Condvar,
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A poisoned lock only means a thread panicked while holding it; the queue is intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded pool of [`SafePrimes`], filled by a dedicated background thread so that committee
/// setup never waits for prime generation. The node seeds it from sealed storage
/// ([`PrimePool::start`]'s `initial`) and seals [`PrimePool::snapshot`] to keep what it holds.
/// Dropping the pool stops the generator after its current pair.
pub struct PrimePool {
    shared: Arc<PoolShared>,
}

impl std::fmt::Debug for PrimePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimePool")
            .field("available", &self.len())
            .finish_non_exhaustive()
    }
}

impl PrimePool {
    /// Starts a pool holding at most `capacity` pairs, seeded with `initial`, refilled by a
    /// thread named `keyrack-primes`.
    pub fn start(capacity: usize, initial: Vec<SafePrimes>) -> std::io::Result<Self> {
        Self::start_with(capacity, initial, SafePrimes::generate)
    }

    pub(crate) fn start_with(
        capacity: usize,
        initial: Vec<SafePrimes>,
        generate: impl Fn() -> SafePrimes + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState {
                primes: initial.into_iter().collect(),
                stopped: false,
            }),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("keyrack-primes".into())
            .spawn(move || loop {
                {
                    let mut state = worker.lock();
                    while !state.stopped && state.primes.len() >= capacity {
                        state = worker
                            .changed
                            .wait(state)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                    if state.stopped {
                        return;
                    }
                }
                let primes = generate();
                let mut state = worker.lock();
                if state.stopped {
                    return;
                }
                state.primes.push_back(primes);
                worker.changed.notify_all();
            })?;
        Ok(PrimePool { shared })
    }

    /// Takes a pair if one is ready.
    pub fn take(&self) -> Option<SafePrimes> {
        let mut state = self.shared.lock();
        let primes = state.primes.pop_front();
        self.shared.changed.notify_all();
        primes
    }

    /// Takes a pair, waiting at most `timeout` for one.
    pub fn take_timeout(&self, timeout: Duration) -> Option<SafePrimes> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(primes) = state.primes.pop_front() {
                self.shared.changed.notify_all();
                return Some(primes);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// How many pairs are ready.
    pub fn len(&self) -> usize {
        self.shared.lock().primes.len()
    }

    /// Whether no pair is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies of the pairs ready now, for the node to seal (and seed the next start with).
    pub fn snapshot(&self) -> Vec<SafePrimes> {
        self.shared.lock().primes.iter().cloned().collect()
    }
}

impl Drop for PrimePool {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.changed.notify_all();
    }
}

/// One party's aux info for a committee of `parties` (its Paillier key and every member's
/// public Paillier / ring-Pedersen parameters). Tied to the committee, not to a key: one
/// [`committee_setup`] run serves every key the committee generates. Secret: seal it.
#[derive(Clone)]
pub struct CommitteeAux {
    /// Committee size.
    pub parties: u16,
    /// This party's key index in the committee.
    pub index: PartyIndex,
    pub(crate) aux: cggmp21::key_share::AuxInfo<Level>,
}

impl std::fmt::Debug for CommitteeAux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitteeAux")
            .field("parties", &self.parties)
            .field("index", &self.index)
            .field("aux", &"<redacted>")
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AuxRecord {
    parties: u16,
    index: PartyIndex,
    aux: cggmp21::key_share::AuxInfo<Level>,
}

impl CommitteeAux {
    /// Versioned encoding (u16 big-endian format version, then CBOR with cggmp21's field
    /// names).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
        envelope::encode(
            AUX_FORMAT,
            &AuxRecord {
                parties: self.parties,
                index: self.index,
                aux: self.aux.clone(),
            },
        )
    }

    /// A fingerprint of the public part (every member's Paillier modulus and ring-Pedersen
    /// parameters): equal at every member of one committee setup, different for any other
    /// setup. Members compare it to agree that they hold the same aux info.
    pub fn fingerprint(&self) -> Result<[u8; 32], ProtocolError> {
        use sha2::{Digest, Sha256};
        let public: Vec<(&_, &_, &_)> = self
            .aux
            .parties
            .iter()
            .map(|p| (&p.N, &p.s, &p.t))
            .collect();
        let mut encoded = Vec::new();
        ciborium::into_writer(&(self.parties, &public), &mut encoded)
            .map_err(|e| ProtocolError::InvalidMaterial(format!("cannot encode aux info: {e}")))?;
        Ok(Sha256::new()
            .chain_update(b"keyrack/ecdsa-secp256k1/aux-fingerprint/v1")
            .chain_update(&encoded)
            .finalize()
            .into())
    }

    /// Decodes (and re-validates) [`CommitteeAux::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let r: AuxRecord = envelope::decode(AUX_FORMAT, bytes, "aux info")?;
        if r.aux.parties.len() != usize::from(r.parties) || r.index >= r.parties {
            return Err(ProtocolError::InvalidMaterial(format!(
                "aux info for party {} of {} holds {} parties",
                r.index,
                r.parties,
                r.aux.parties.len()
            )));
        }
        Ok(CommitteeAux {
            parties: r.parties,
            index: r.index,
            aux: r.aux,
        })
    }
}

/// Runs committee setup (cggmp21 `aux_info_gen`) among all the session's parties; each brings
/// its own pair of safe primes. The session's parties are the committee, in key-index order.
/// Takes ≈ 9 s of CPU per party: run it on a dedicated thread.
pub fn committee_setup(
    session: &Session,
    channel: &mut dyn Channel,
    primes: SafePrimes,
) -> Result<CommitteeAux, ProtocolError> {
    if session.parties < 2 || session.me >= session.parties {
        return Err(ProtocolError::InvalidRequest(format!(
            "committee setup needs n >= 2 and me < n (me {}, n {})",
            session.me, session.parties
        )));
    }
    let eid = ExecutionId::new(&session.id);
    let mut rng = rand_core::OsRng;
    let sm = cggmp21::aux_info_gen(eid, session.me, session.parties, primes.0)
        .into_state_machine(&mut rng);
    let aux = driver::run(session, channel, sm)?.map_err(|e| {
        driver::map_protocol_error("committee setup (aux info)", &e, session.parties)
    })?;
    Ok(CommitteeAux {
        parties: session.parties,
        index: session.me,
        aux,
    })
}

/// Where the plugin gets a party's committee aux info when it needs a complete key share
/// (keygen, reshare). The node implements it over its sealed store: `session` identifies the
/// run (and so the committee), `parties`/`index` are the committee size and this party's key
/// index in it.
pub trait AuxInfoSource: Send + Sync {
    /// This party's aux info for the committee the session runs in.
    fn aux_info(
        &self,
        session: &Session,
        parties: u16,
        index: PartyIndex,
    ) -> Result<CommitteeAux, ProtocolError>;
}

/// An [`AuxInfoSource`] holding aux info in memory, by (committee size, key index): for a node
/// that serves a single committee per size, and for tests.
#[derive(Default, Debug)]
pub struct StaticAuxInfo {
    by_committee: Mutex<BTreeMap<(u16, PartyIndex), CommitteeAux>>,
}

impl StaticAuxInfo {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one party's aux info.
    pub fn insert(&self, aux: CommitteeAux) {
        self.by_committee
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((aux.parties, aux.index), aux);
    }
}

impl AuxInfoSource for StaticAuxInfo {
    fn aux_info(
        &self,
        _session: &Session,
        parties: u16,
        index: PartyIndex,
    ) -> Result<CommitteeAux, ProtocolError> {
        self.by_committee
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(parties, index))
            .cloned()
            .ok_or_else(|| {
                ProtocolError::InvalidRequest(format!(
                    "no committee aux info for party {index} of {parties}: run committee_setup first"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_primes() -> SafePrimes {
        let bytes = include_bytes!("../testdata/primes.cbor");
        let all: Vec<Vec<u8>> = ciborium::from_reader(&bytes[..]).expect("fixture");
        SafePrimes::from_bytes(&all[0]).expect("primes")
    }

    #[test]
    fn pool_fills_in_the_background_up_to_its_capacity() {
        let primes = fixture_primes();
        let pool = PrimePool::start_with(2, vec![], move || primes.clone()).expect("pool");
        assert!(pool.take_timeout(Duration::from_secs(5)).is_some());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pool.len(), 2, "bounded");
        assert_eq!(pool.snapshot().len(), 2);
        assert!(pool.take().is_some());
    }

    #[test]
    fn an_empty_pool_returns_none_after_the_timeout() {
        let pool = PrimePool::start_with(1, vec![], || {
            std::thread::sleep(Duration::from_secs(3600));
            fixture_primes()
        })
        .expect("pool");
        assert!(pool.take().is_none());
        assert!(pool.take_timeout(Duration::from_millis(20)).is_none());
        assert!(pool.is_empty());
    }

    #[test]
    fn primes_round_trip_through_bytes() {
        let p = fixture_primes();
        let bytes = p.to_bytes().expect("encode");
        let back = SafePrimes::from_bytes(&bytes).expect("decode");
        assert_eq!(back.0.clone().split(), p.0.split());
        assert_eq!(format!("{back:?}"), "SafePrimes(<redacted>)");
    }
}

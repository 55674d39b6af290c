//! ECDSA committee setup at the node: the sealed safe-prime pool and each committee's aux
//! info.
//!
//! cggmp21 needs, besides the key itself, *aux info* per committee (every member's Paillier
//! key and ring-Pedersen parameters), made by a protocol that takes each party a pair of safe
//! primes (8–90 s to find) and ≈ 9 s of CPU. A node therefore
//!
//! - keeps a pool of safe primes sealed in its store, filled by a background thread up to
//!   `[cluster] prime_pool` pairs ([`PrimeKeeper`]); a pair is used once and deleted when taken;
//! - runs committee setup once per committee (its members in key-index order, named by
//!   [`committee_id`]) and keeps the result sealed in its store;
//! - before each ECDSA keygen, agrees with the other members that they all hold the same aux
//!   info for the committee ([`ensure_committee`]): each broadcasts the public fingerprint of
//!   what it holds; if any differs or is missing (a new committee, a member that lost its
//!   store), all of them run committee setup again, each with a pair from its pool.
//!
//! Keys already made keep working whatever happens to the committee's aux info later: every
//! complete share carries its own copy.
//!
//! [`seed_fixture_primes`] fills a pool with the plugin's *public* test-fixture primes; only
//! `keyrack dev` and tests call it, saying so loudly. `keyrack node` never does.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use keyrack_ecdsa_cggmp21::{committee_setup, AuxInfoSource, CommitteeAux, SafePrimes};
use keyrack_hsm::Sealer;
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::{Outgoing, PartyIndex, ProtocolError, Recipient, Session};
use sha2::{Digest, Sha256};

use crate::session::{sub_session, SessionRoute};
use crate::store::{Store, StoreError};

/// What a member with no aux info for the committee broadcasts as its fingerprint.
const NONE: [u8; 32] = [0; 32];

/// The id of a committee: its members in key-index order, within a cluster.
pub fn committee_id(cluster: &str, members: &[String]) -> String {
    let mut h = Sha256::new().chain_update(b"keyrack/committee/v1\0");
    h.update(cluster.as_bytes());
    for m in members {
        h.update(b"\0");
        h.update(m.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Seals pair `index` (modulo their number) of the plugin's PUBLIC test-fixture safe primes
/// into `store`'s pool, for `keyrack dev` and tests; returns how many pairs the pool holds.
/// The caller must warn visibly: a Paillier key made from these primes is no secret.
pub fn seed_fixture_primes(
    store: &Store,
    sealer: &dyn Sealer,
    index: usize,
) -> Result<usize, StoreError> {
    let primes = keyrack_ecdsa_cggmp21::fixtures::primes()
        .map_err(|e| StoreError::InvalidRequest(format!("fixture primes: {e}")))?;
    let pair = &primes[index % primes.len()];
    let bytes = pair
        .to_bytes()
        .map_err(|e| StoreError::InvalidRequest(format!("fixture primes: {e}")))?;
    store.add_primes(&bytes, sealer)?;
    store.prime_count()
}

/// Keeps the node's sealed pool of safe primes filled, on a background thread, and hands out
/// pairs for committee setup.
pub struct PrimeKeeper {
    store: Arc<Store>,
    sealer: Arc<dyn Sealer>,
    wake: Arc<(Mutex<bool>, Condvar)>,
    /// Says when the thread has let go of the store and the HSM.
    stopped: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
    /// Set when the keeper stopped waiting for the thread (it was generating primes).
    abandoned: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for PrimeKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimeKeeper").finish_non_exhaustive()
    }
}

impl PrimeKeeper {
    /// Starts keeping `capacity` pairs ready (0: none kept; a setup then generates its pair
    /// when it needs it). The thread (`keyrack-primes`) stops when the keeper is dropped.
    pub fn start(
        store: Arc<Store>,
        sealer: Arc<dyn Sealer>,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let wake = Arc::new((Mutex::new(false), Condvar::new()));
        let abandoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut stopped = None;
        if capacity > 0 {
            let (store, sealer, wake, gone) = (
                store.clone(),
                sealer.clone(),
                wake.clone(),
                abandoned.clone(),
            );
            let (done, done_rx) = std::sync::mpsc::channel();
            stopped = Some(Mutex::new(done_rx));
            std::thread::Builder::new()
                .name("keyrack-primes".into())
                .spawn(move || {
                    fill(&store, sealer.as_ref(), capacity, &wake);
                    if gone.load(std::sync::atomic::Ordering::SeqCst) {
                        // The process may be exiting: closing an HSM session now could race
                        // the HSM library's own teardown. Leave it to the exit.
                        std::mem::forget(sealer);
                    } else {
                        drop(sealer);
                    }
                    drop(store);
                    let _ = done.send(());
                })?;
        }
        Ok(PrimeKeeper {
            store,
            sealer,
            wake,
            stopped,
            abandoned,
        })
    }

    /// Takes a pair from the pool, or generates one now if the pool is empty (8–90 s).
    /// Blocking.
    pub fn take(&self) -> Result<SafePrimes, String> {
        let taken = self
            .store
            .take_primes(self.sealer.as_ref())
            .map_err(|e| format!("cannot take safe primes from the store: {e}"))?;
        self.wake.1.notify_all();
        match taken {
            Some(bytes) => SafePrimes::from_bytes(&bytes)
                .map_err(|e| format!("stored safe primes do not decode: {e}")),
            None => {
                tracing::warn!("the safe-prime pool is empty: generating a pair now (8–90 s)");
                let started = Instant::now();
                let primes = SafePrimes::generate();
                tracing::info!(secs = started.elapsed().as_secs(), "safe primes generated");
                Ok(primes)
            }
        }
    }
}

impl Drop for PrimeKeeper {
    /// Stops the thread and waits a moment until it has let go of the HSM: a PKCS#11 session
    /// closed by a thread while the process exits (SoftHSM's own teardown running) crashes
    /// the process. A thread in the middle of generating primes (seconds to minutes) is not
    /// waited for: it touches the HSM no more once it is done, and leaves its session to the
    /// exit.
    fn drop(&mut self) {
        *self.wake.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.1.notify_all();
        if let Some(stopped) = &self.stopped {
            let stopped = stopped.lock().unwrap_or_else(|e| e.into_inner());
            if stopped.recv_timeout(Duration::from_millis(500)).is_err() {
                self.abandoned
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
}

/// The keeper's thread: generate, seal and store pairs while the pool holds fewer than
/// `capacity`; otherwise sleep until a pair is taken (or a minute passes).
fn fill(store: &Store, sealer: &dyn Sealer, capacity: usize, wake: &(Mutex<bool>, Condvar)) {
    loop {
        if *wake.0.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        match store.prime_count() {
            Ok(n) if n < capacity => {
                tracing::info!(
                    have = n,
                    want = capacity,
                    "generating safe primes for the pool (8–90 s)"
                );
                let started = Instant::now();
                let primes = SafePrimes::generate();
                if *wake.0.lock().unwrap_or_else(|e| e.into_inner()) {
                    return; // stopping: leave the HSM alone
                }
                let stored = primes
                    .to_bytes()
                    .map_err(|e| e.to_string())
                    .and_then(|b| store.add_primes(&b, sealer).map_err(|e| e.to_string()));
                match stored {
                    Ok(_) => tracing::info!(
                        secs = started.elapsed().as_secs(),
                        "safe primes sealed into the pool"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot keep safe primes");
                        wait(wake, Duration::from_secs(60));
                    }
                }
            }
            Ok(_) => wait(wake, Duration::from_secs(60)),
            Err(e) => {
                tracing::error!(error = %e, "cannot count the safe-prime pool");
                wait(wake, Duration::from_secs(60));
            }
        }
    }
}

fn wait(wake: &(Mutex<bool>, Condvar), at_most: Duration) {
    let stopped = wake.0.lock().unwrap_or_else(|e| e.into_inner());
    if !*stopped {
        let _ = wake.1.wait_timeout(stopped, at_most);
    }
}

/// An [`AuxInfoSource`] that gives the plugin one committee's aux info (the one
/// [`ensure_committee`] agreed on for this run).
#[derive(Debug)]
pub struct FixedAux(pub CommitteeAux);

impl AuxInfoSource for FixedAux {
    fn aux_info(
        &self,
        _session: &Session,
        _parties: u16,
        _index: PartyIndex,
    ) -> Result<CommitteeAux, ProtocolError> {
        // The plugin checks that committee size and index match its run.
        Ok(self.0.clone())
    }
}

/// The [`AuxInfoSource`] of the registry's ECDSA plugin, which only signs (complete shares
/// carry their aux info): keygen and reshare build their own plugin with a [`FixedAux`].
#[derive(Debug)]
pub struct NoAux;

impl AuxInfoSource for NoAux {
    fn aux_info(
        &self,
        _session: &Session,
        _parties: u16,
        _index: PartyIndex,
    ) -> Result<CommitteeAux, ProtocolError> {
        Err(ProtocolError::InvalidRequest(
            "ECDSA aux info comes from the node's committee setup, per keygen".into(),
        ))
    }
}

/// What [`ensure_committee`] needs from the node.
pub struct CommitteeContext<'a> {
    /// The node.
    pub node: &'a crate::daemon::Node,
    /// The request's session (sub-sessions are derived from it).
    pub session: [u8; 32],
    /// The committee, in key-index order (this node among them).
    pub members: &'a [String],
}

/// Makes sure every member holds the same aux info for the committee, running committee
/// setup among all of them if not, and returns this node's. All members must call it in the
/// same started request.
pub async fn ensure_committee(cx: CommitteeContext<'_>) -> Result<CommitteeAux, String> {
    let node = cx.node;
    let committee = committee_id(node.cluster_id(), cx.members);
    let store = node.store.clone();
    let id = committee.clone();
    let mine = tokio::task::spawn_blocking(move || store.committee_fingerprint(&id))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read the committee's aux info: {e}"))?
        .unwrap_or(NONE);

    // 1. Does every member hold the same aux info?
    let route = SessionRoute {
        session: sub_session(&cx.session, "aux-check"),
        participants: cx.members.to_vec(),
    };
    let parties = route.participants.len() as u16;
    let (fingerprints, _) = node
        .run_session(&route, move |me, ch| {
            ch.send(Outgoing {
                to: Recipient::Broadcast,
                round: 0,
                payload: mine.to_vec(),
            })?;
            let others: Vec<PartyIndex> = (0..parties).filter(|p| *p != me).collect();
            let got = RoundCollector::new().collect(ch, 0, true, &others)?;
            let mut all = BTreeSet::from([mine]);
            for (from, f) in got {
                let f: [u8; 32] =
                    f.as_slice()
                        .try_into()
                        .map_err(|_| ProtocolError::Malformed {
                            party: from,
                            round: 0,
                            reason: "an aux fingerprint is 32 bytes".into(),
                        })?;
                all.insert(f);
            }
            Ok(all)
        })
        .await
        .map_err(|e| format!("committee aux check: {e}"))?;

    if fingerprints.len() == 1 && mine != NONE {
        let (store, sealer, id) = (node.store.clone(), node.sealer.clone(), committee.clone());
        let stored = tokio::task::spawn_blocking(move || store.committee_aux(&id, sealer.as_ref()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot unseal the committee's aux info: {e}"))?
            .ok_or("the committee's aux info disappeared from the store")?;
        return CommitteeAux::from_bytes(&stored.aux)
            .map_err(|e| format!("the committee's stored aux info does not decode: {e}"));
    }

    // 2. Committee setup among all members.
    tracing::info!(
        committee = %committee,
        parties,
        "ECDSA committee setup: taking safe primes, then aux info generation (≈ 9 s of CPU per party)"
    );
    let started = Instant::now();
    let keeper = node.primes.clone();
    let primes = tokio::task::spawn_blocking(move || keeper.take())
        .await
        .map_err(|e| e.to_string())??;
    let route = SessionRoute {
        session: sub_session(&cx.session, "aux-setup"),
        participants: cx.members.to_vec(),
    };
    let id = route.session;
    let (aux, _) = node
        .run_session_for(&route, node.settings.setup_timeout, move |me, ch| {
            committee_setup(&Session { id, me, parties }, ch, primes)
        })
        .await
        .map_err(|e| format!("ECDSA committee setup: {e}"))?;
    let fingerprint = aux.fingerprint().map_err(|e| e.to_string())?;
    let bytes = aux.to_bytes().map_err(|e| e.to_string())?;
    let (store, sealer, members) = (node.store.clone(), node.sealer.clone(), cx.members.to_vec());
    let id = committee.clone();
    tokio::task::spawn_blocking(move || {
        store.put_committee_aux(&id, &members, &fingerprint, &bytes, sealer.as_ref())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot keep the committee's aux info: {e}"))?;
    tracing::info!(
        committee = %committee,
        secs = started.elapsed().as_secs(),
        "ECDSA committee setup done"
    );
    Ok(aux)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committee_ids_depend_on_cluster_members_and_their_order() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = committee_id("c1", &m(&["node0", "node1", "node2"]));
        assert_eq!(a.len(), 32);
        assert_eq!(a, committee_id("c1", &m(&["node0", "node1", "node2"])));
        assert_ne!(a, committee_id("c2", &m(&["node0", "node1", "node2"])));
        assert_ne!(a, committee_id("c1", &m(&["node1", "node0", "node2"])));
        assert_ne!(a, committee_id("c1", &m(&["node0", "node1"])));
        // No ambiguity from joining: ["ab", "c"] is not ["a", "bc"].
        assert_ne!(
            committee_id("c1", &m(&["ab", "c"])),
            committee_id("c1", &m(&["a", "bc"]))
        );
    }
}

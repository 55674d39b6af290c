//! Presignature and nonce pools, for every scheme alike: which (key, signer set) pairs are
//! hot, the background refill that keeps their pools full, the `Presign` order its leader
//! sends, and the two pre-sign rounds with which a signing picks a pooled presignature.
//!
//! A (key, signer set) is hot for [`Settings::hot_window`] after a signing by that set. The
//! set's first member leads its refill: while its own pool holds fewer than
//! [`Settings::presign_pool`] entries it sends a [`PresignOrder`] (new pool id) to the other
//! signers and runs `presign` with them in the session
//! `SHA-256("keyrack/presign/v1" ‖ pool id)`; every member seals its part under that id.
//! A failed presign stores nothing. At most [`PRESIGN_SESSIONS`] presign sessions run at a
//! node at once, and only for READY keys, so refill never crowds out client requests.
//!
//! Signing ([`sign`]) first exchanges each signer's available pool ids (round
//! [`ROUND_OFFER`]); if they share any, all take the same one (chosen by the session id)
//! and say whether they could (round [`ROUND_TOOK`]); only if everyone took it do they sign
//! with it, otherwise they run the full signing protocol. A taken presignature is spent
//! either way: it is marked USED on disk before anything derived from it leaves the node.
//!
//! This module never sees a presignature's secret outside the protocol thread, and never
//! logs one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keyrack_hsm::Sealer;
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::{
    Channel, KeyShare, Outgoing, PartyIndex, ProtocolError, Recipient, SchemePlugin, Session,
    SignRequest, SignatureOutput,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::control::{self, Control};
use super::heartbeat::MAX_SKEW;
use super::Node;
use crate::session::SessionRoute;
use crate::store::{KeyRecord, KeyStatus, Store};

/// Presign sessions a node runs at once (as leader or follower).
pub const PRESIGN_SESSIONS: usize = 2;
/// How often the refill task looks at the hot pools.
pub const REFILL_EVERY: Duration = Duration::from_secs(1);
/// How long a leader waits after a failed presign before it tries that pool again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Pre-sign round 1 (broadcast): the sender's available pool ids, CBOR list of strings.
/// Above every plugin's round numbers (cggmp21 0–5, FROST 1–22).
pub const ROUND_OFFER: u16 = 200;
/// Pre-sign round 2 (broadcast): one byte, 1 if the sender took the chosen presignature.
pub const ROUND_TOOK: u16 = 201;
/// The most pool ids a signer offers.
pub const MAX_OFFER: usize = 32;

/// One pool: a key at one version and a signer set (node ids in member order, which is
/// session order).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The key id.
    pub key_id: String,
    /// The scheme id.
    pub scheme: String,
    /// The key version.
    pub key_version: u32,
    /// The signers' node ids, in session order.
    pub signers: Vec<String>,
}

/// A leader's order to make one presignature for a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignOrder {
    /// The key id.
    pub key_id: String,
    /// The scheme id.
    pub scheme: String,
    /// The key version the presignature is made for.
    pub key_version: u32,
    /// The signers' node ids, in session order; the first is the leader.
    pub signers: Vec<String>,
    /// The pool id every signer stores its part under (also the control "request id").
    pub pool_id: String,
}

impl PresignOrder {
    fn pool(&self) -> PoolKey {
        PoolKey {
            key_id: self.key_id.clone(),
            scheme: self.scheme.clone(),
            key_version: self.key_version,
            signers: self.signers.clone(),
        }
    }
}

/// A node's pool bookkeeping: hot pools, refills under way, the presign session bound.
pub struct PoolState {
    hot: Mutex<HashMap<PoolKey, Instant>>,
    refilling: Mutex<HashSet<PoolKey>>,
    sessions: Arc<Semaphore>,
}

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            hot: Mutex::default(),
            refilling: Mutex::default(),
            sessions: Arc::new(Semaphore::new(PRESIGN_SESSIONS)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PoolState {
    /// This node took part in a signing by `pool`'s signer set.
    pub fn record_signing(&self, pool: PoolKey) {
        lock(&self.hot).insert(pool, Instant::now());
    }

    /// The pools signed with within `window`; older ones are forgotten.
    pub fn hot(&self, window: Duration) -> Vec<PoolKey> {
        let now = Instant::now();
        let mut hot = lock(&self.hot);
        hot.retain(|_, at| now.duration_since(*at) <= window);
        hot.keys().cloned().collect()
    }

    /// Marks a refill of `pool` as under way, unless one is already.
    fn start_refill(self: &Arc<Self>, pool: &PoolKey) -> Option<RefillGuard> {
        lock(&self.refilling)
            .insert(pool.clone())
            .then(|| RefillGuard {
                state: self.clone(),
                pool: pool.clone(),
            })
    }

    fn session_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.sessions.clone().try_acquire_owned().ok()
    }
}

/// A refill under way; it ends when this is dropped.
struct RefillGuard {
    state: Arc<PoolState>,
    pool: PoolKey,
}

impl Drop for RefillGuard {
    fn drop(&mut self) {
        lock(&self.state.refilling).remove(&self.pool);
    }
}

/// The session id of the presign run for `pool_id`.
pub fn presign_session_id(pool_id: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"keyrack/presign/v1")
        .chain_update(pool_id.as_bytes())
        .finalize()
        .into()
}

/// Key indices of `signers` if they are `record.threshold` distinct participants of it.
fn signer_indices(record: &KeyRecord, signers: &[String]) -> Option<Vec<PartyIndex>> {
    if signers.len() != usize::from(record.threshold) {
        return None;
    }
    let mut indices = Vec::with_capacity(signers.len());
    for s in signers {
        let i = record.participants.iter().position(|p| p == s)?;
        let i = PartyIndex::try_from(i).ok()?;
        if indices.contains(&i) {
            return None;
        }
        indices.push(i);
    }
    Some(indices)
}

/// The signer indices of `pool` if its key is READY at its version here and this node's pool
/// holds fewer than `below` entries.
fn needs_presignatures(store: &Store, pool: &PoolKey, below: usize) -> Option<Vec<PartyIndex>> {
    let record = match store.key(&pool.key_id, &pool.scheme) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, key = pool.key_id, "cannot read a key for its pool");
            return None;
        }
    };
    if record.status != KeyStatus::Ready || record.version != pool.key_version {
        return None;
    }
    let indices = signer_indices(&record, &pool.signers)?;
    let have = store
        .available_presignatures(
            &pool.key_id,
            &pool.scheme,
            pool.key_version,
            &indices,
            below,
        )
        .map_err(|e| tracing::warn!(error = %e, key = pool.key_id, "cannot read a pool"))
        .ok()?;
    (have.len() < below).then_some(indices)
}

/// Keeps the pools of hot (key, signer set) pairs this node leads filled, until the node
/// stops. Does nothing if `presign_pool` is 0.
pub async fn refill(node: Arc<Node>) {
    let target = node.settings.presign_pool;
    if target == 0 {
        return;
    }
    let me = node.identity.node_id().to_owned();
    let mut tick = tokio::time::interval(REFILL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for pool in node.pools.hot(node.settings.hot_window) {
            if pool.signers.first() != Some(&me) {
                continue;
            }
            let Some(guard) = node.pools.start_refill(&pool) else {
                continue; // one presign per pool at a time
            };
            let (store, p) = (node.store.clone(), pool.clone());
            let Ok(Some(indices)) =
                tokio::task::spawn_blocking(move || needs_presignatures(&store, &p, target)).await
            else {
                continue;
            };
            let Some(permit) = node.pools.session_permit() else {
                break; // busy: the next tick tries again
            };
            let order = PresignOrder {
                key_id: pool.key_id.clone(),
                scheme: pool.scheme.clone(),
                key_version: pool.key_version,
                signers: pool.signers.clone(),
                pool_id: Store::new_pool_id(),
            };
            let node = node.clone();
            tokio::spawn(async move {
                let session = presign_session_id(&order.pool_id);
                let sent = control::send(
                    &node,
                    &order.pool_id,
                    session,
                    None,
                    &Control::Presign(order.clone()),
                )
                .await;
                let made = match sent {
                    Ok(()) => presign(&node, &order, indices).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot send a presign order");
                        false
                    }
                };
                drop(permit);
                if !made {
                    // Hold the pool back for a while (a follower may be full or down).
                    tokio::time::sleep(RETRY_AFTER_FAILURE).await;
                }
                drop(guard);
            });
        }
    }
}

/// A `Presign` order from `from` (authenticated): joins it if it comes from the order's
/// leader, names this node, is recent, and the key is READY here with a pool not over
/// twice `presign_pool`; otherwise ignores it.
pub async fn follow(node: Arc<Node>, from: String, order: PresignOrder) {
    let me = node.identity.node_id();
    let target = node.settings.presign_pool;
    let now_ms = keyrack_client::now_ms();
    let why_not = if target == 0 {
        Some("pools are disabled here")
    } else if order.signers.first() != Some(&from) {
        Some("not from the order's leader")
    } else if !order.signers[1..].iter().any(|s| s == me) {
        Some("this node is not a signer")
    } else if Store::pool_id_time_ms(&order.pool_id)
        .is_none_or(|t| t.abs_diff(now_ms) > MAX_SKEW.as_millis() as u64)
    {
        Some("pool id is not a recent one")
    } else {
        None
    };
    let ignore =
        |why: &str| tracing::debug!(%from, pool = order.pool_id, why, "presign order ignored");
    if let Some(why) = why_not {
        return ignore(why);
    }
    let (store, pool) = (node.store.clone(), order.pool());
    let indices =
        tokio::task::spawn_blocking(move || needs_presignatures(&store, &pool, 2 * target)).await;
    let Ok(Some(indices)) = indices else {
        return ignore(
            "the key is not READY here at that version with those signers, or the pool is full",
        );
    };
    let Some(guard) = node.pools.start_refill(&order.pool()) else {
        return ignore("a presign for this pool is under way");
    };
    let Some(permit) = node.pools.session_permit() else {
        return ignore("busy");
    };
    presign(&node, &order, indices).await;
    drop((permit, guard));
}

/// Runs this node's part of the presign session of `order` and stores the result. Returns
/// whether it did (and logs why not).
async fn presign(node: &Arc<Node>, order: &PresignOrder, indices: Vec<PartyIndex>) -> bool {
    let started = Instant::now();
    match make_presignature(node, order, indices).await {
        Ok(()) => {
            tracing::debug!(
                pool = order.pool_id,
                key = order.key_id,
                scheme = order.scheme,
                ms = started.elapsed().as_millis() as u64,
                "presignature added to the pool"
            );
            true
        }
        Err(why) => {
            tracing::info!(
                pool = order.pool_id,
                key = order.key_id,
                %why,
                "presign failed; nothing stored"
            );
            false
        }
    }
}

async fn make_presignature(
    node: &Arc<Node>,
    order: &PresignOrder,
    indices: Vec<PartyIndex>,
) -> Result<(), String> {
    let plugin = node
        .registry
        .scheme(&order.scheme)
        .ok_or_else(|| format!("{} is not served here", order.scheme))?;
    let (store, sealer, o) = (node.store.clone(), node.sealer.clone(), order.clone());
    let share = tokio::task::spawn_blocking(move || {
        store.load_share(&o.key_id, &o.scheme, sealer.as_ref())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot load the share: {e}"))?;
    let route = SessionRoute {
        session: presign_session_id(&order.pool_id),
        participants: order.signers.clone(),
    };
    let (id, parties) = (route.session, route.participants.len() as u16);
    let (presignature, _) = node
        .run_session(&route, move |me, ch| {
            plugin.presign(&Session { id, me, parties }, ch, &share, &indices)
        })
        .await
        .map_err(|e| e.to_string())?;
    let (store, sealer, o) = (node.store.clone(), node.sealer.clone(), order.clone());
    tokio::task::spawn_blocking(move || {
        store.add_presignature_with_id(
            &o.key_id,
            &o.scheme,
            o.key_version,
            &presignature,
            sealer.as_ref(),
            &o.pool_id,
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot store the presignature: {e}"))
}

/// The pool entry every signer takes: one of the ids all of them offered, picked by the
/// session id (so no party chooses it), or `None` if they offered none in common.
pub fn choose_presignature(session: &[u8; 32], offers: &[Vec<String>]) -> Option<String> {
    let (first, rest) = offers.split_first()?;
    let mut common: Vec<&String> = first
        .iter()
        .filter(|id| rest.iter().all(|o| o.contains(id)))
        .collect();
    common.sort();
    common.dedup();
    if common.is_empty() {
        return None;
    }
    let digest = Sha256::digest(session);
    let mut pick = [0u8; 8];
    pick.copy_from_slice(&digest[..8]);
    let index = u64::from_be_bytes(pick) % common.len() as u64;
    Some(common[usize::try_from(index).ok()?].clone())
}

/// What a signing needs to use its pool.
pub(super) struct PoolUse {
    pub store: Arc<Store>,
    pub sealer: Arc<dyn Sealer>,
    pub key_id: String,
    pub scheme: String,
    pub key_version: u32,
    /// Whether this node uses pools (`presign_pool` > 0); if not it offers nothing.
    pub enabled: bool,
}

fn is_pool_id(id: &str) -> bool {
    Store::pool_id_time_ms(id).is_some()
}

fn offer_of(party: PartyIndex, bytes: &[u8]) -> Result<Vec<String>, ProtocolError> {
    let malformed = |reason: String| ProtocolError::Malformed {
        party,
        round: ROUND_OFFER,
        reason,
    };
    let ids: Vec<String> =
        ciborium::from_reader(bytes).map_err(|e| malformed(format!("does not decode: {e}")))?;
    if ids.len() > MAX_OFFER || !ids.iter().all(|id| is_pool_id(id)) {
        return Err(malformed("not a list of at most 32 pool ids".into()));
    }
    Ok(ids)
}

/// Signs, on the protocol thread: the two pre-sign rounds, then `sign_presigned` with the
/// chosen presignature if every signer took it, else the full `sign`. Returns the signature
/// and the pool id used, if any.
pub(super) fn sign(
    plugin: &dyn SchemePlugin,
    session: &Session,
    channel: &mut dyn Channel,
    share: &KeyShare,
    request: &SignRequest,
    pool: &PoolUse,
) -> Result<(SignatureOutput, Option<String>), ProtocolError> {
    let others: Vec<PartyIndex> = (0..session.parties).filter(|p| *p != session.me).collect();
    let mut rounds = RoundCollector::new();
    let mine = if pool.enabled {
        pool.store
            .available_presignatures(
                &pool.key_id,
                &pool.scheme,
                pool.key_version,
                &request.signers,
                MAX_OFFER,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, key = pool.key_id, "cannot read a pool; offering none");
                vec![]
            })
    } else {
        vec![]
    };
    let mut payload = Vec::new();
    ciborium::into_writer(&mine, &mut payload)
        .map_err(|e| ProtocolError::InvalidMaterial(e.to_string()))?;
    channel.send(Outgoing {
        to: Recipient::Broadcast,
        round: ROUND_OFFER,
        payload,
    })?;
    let mut offers = vec![mine];
    for (party, bytes) in rounds.collect(channel, ROUND_OFFER, true, &others)? {
        offers.push(offer_of(party, &bytes)?);
    }
    let taken = match choose_presignature(&session.id, &offers) {
        None => None,
        Some(id) => {
            let taken = pool
                .store
                .take_presignature_by_id(
                    &pool.key_id,
                    &pool.scheme,
                    pool.key_version,
                    &request.signers,
                    &id,
                    pool.sealer.as_ref(),
                )
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, pool = id, "cannot take a presignature");
                    None
                });
            channel.send(Outgoing {
                to: Recipient::Broadcast,
                round: ROUND_TOOK,
                payload: vec![u8::from(taken.is_some())],
            })?;
            let took: BTreeMap<PartyIndex, Vec<u8>> =
                rounds.collect(channel, ROUND_TOOK, true, &others)?;
            let mut everyone = taken.is_some();
            for (party, bytes) in took {
                match bytes.as_slice() {
                    [1] => {}
                    [0] => everyone = false,
                    _ => {
                        return Err(ProtocolError::Malformed {
                            party,
                            round: ROUND_TOOK,
                            reason: "not one byte 0 or 1".into(),
                        })
                    }
                }
            }
            // Not everyone took it: it is spent here all the same (the safe way round).
            taken.filter(|_| everyone)
        }
    };
    match taken {
        Some(t) => {
            let output = plugin.sign_presigned(
                session,
                channel,
                share,
                t.presignature,
                &request.message,
                &request.derivation_path,
            )?;
            Ok((output, Some(t.id)))
        }
        None => Ok((plugin.sign(session, channel, share, request)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| format!("{s:0>32}")).collect()
    }

    #[test]
    fn every_party_picks_the_same_common_id_or_none() {
        let session = [9u8; 32];
        let a = ids(&["1", "2", "3", "4"]);
        let b = ids(&["4", "3", "2", "7"]);
        let c = ids(&["2", "3", "4", "9"]);
        let picked = choose_presignature(&session, &[a.clone(), b.clone(), c.clone()]).unwrap();
        assert!(ids(&["2", "3", "4"]).contains(&picked));
        // Whatever the order the offers are listed in.
        assert_eq!(
            choose_presignature(&session, &[c.clone(), a.clone(), b.clone()]),
            Some(picked)
        );
        // The session decides among the common ids; over many sessions each gets picked.
        let picks: HashSet<String> = (0..64u8)
            .filter_map(|s| choose_presignature(&[s; 32], &[a.clone(), b.clone(), c.clone()]))
            .collect();
        assert_eq!(picks.len(), 3);
        // Nothing in common, or nobody offering: none.
        assert_eq!(
            choose_presignature(&session, &[a.clone(), ids(&["8"])]),
            None
        );
        assert_eq!(choose_presignature(&session, &[a.clone(), vec![]]), None);
        assert_eq!(choose_presignature(&session, &[]), None);
        // One party alone (t = 1): its own ids.
        assert!(a.contains(&choose_presignature(&session, std::slice::from_ref(&a)).unwrap()));
    }

    #[test]
    fn presign_session_ids_differ_per_pool_id() {
        assert_ne!(
            presign_session_id("0123456789abcdef0123456789abcdef"),
            presign_session_id("0123456789abcdef0123456789abcdee")
        );
    }

    #[test]
    fn offers_must_be_short_lists_of_pool_ids() {
        let encode = |v: &Vec<String>| {
            let mut b = Vec::new();
            ciborium::into_writer(v, &mut b).unwrap();
            b
        };
        let good = vec![Store::new_pool_id(), Store::new_pool_id()];
        assert_eq!(offer_of(1, &encode(&good)).unwrap(), good);
        assert!(offer_of(1, b"\xff").is_err());
        assert!(offer_of(1, &encode(&vec!["../x".into()])).is_err());
        let long: Vec<String> = (0..33).map(|_| Store::new_pool_id()).collect();
        assert!(matches!(
            offer_of(2, &encode(&long)),
            Err(ProtocolError::Malformed {
                party: 2,
                round: ROUND_OFFER,
                ..
            })
        ));
    }
}

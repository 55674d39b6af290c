//! The key lifecycle across the cluster: reshare (a new committee and/or threshold), refresh
//! (new shares, same committee) and delete.
//!
//! # Reshare and refresh
//!
//! Every member of the current manifest takes part in the handshake (all must be live: a
//! dead node is first removed from the manifest, then the key is reshared away from it).
//! For each scheme of the request, in order:
//!
//! 1. **State round.** Every member broadcasts its view of the key from its own store:
//!    status, version, committee, threshold, public key, chain code, and any staged share.
//!    From the same views every member computes the same [`Plan`]: the key's current version
//!    `v` (the highest READY one, held by at least its threshold of its committee), its
//!    committee and threshold, the *dealers* (committee members holding `v`), the new
//!    committee and threshold (the request's, or unchanged) and the session's members
//!    (dealers ∪ new committee, in manifest order). A round of plan digests checks that every
//!    member computed the same plan before anything is settled.
//! 2. **Reconcile.** What an earlier interrupted run left is settled first, the same way at
//!    every node: a staged share of version `v` (some member committed that run, so every new
//!    member had staged) is committed; a staged share of a later version (nobody committed)
//!    is discarded; a share of a version before `v` is useless and erased.
//! 3. **ECDSA committee setup** for the new committee, if it has no agreed aux info yet
//!    ([`crate::ecdsa::ensure_committee`], from the primes pool; progress in the logs and in
//!    status results).
//! 4. **Reshare** among the session's members (the scheme plugin's protocol).
//! 5. **Stage.** Each new member seals its new share as *staged*; the key is unchanged, so
//!    it still signs under version `v` with the old shares.
//! 6. **Commit round.** Every session member broadcasts whether it staged (a dealer that
//!    leaves says yes). Only a member that hears yes from **every** member commits: new
//!    members make the staged share current (version `v + 1`, old share erased, pools
//!    destroyed), leaving members erase their share and their record. A member that hears a
//!    no, or not every vote, commits nothing and keeps both shares (a member voting yes to
//!    some and no to others could have made some commit): the next reshare or refresh of the
//!    key settles it (step 2), and status results show the staged share meanwhile.
//!
//! So no old share is erased before every new member holds its new one sealed, and a run
//! interrupted anywhere before the commit round leaves the key as it was.
//!
//! # Delete
//!
//! No session: every node that takes the request erases its share, staged share and pools of
//! the key (overwritten, then removed) and keeps a DELETED tombstone, also when it had no
//! record, so the id cannot be re-created by accident anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use keyrack_client::codes::ErrorCode;
use keyrack_client::request::{RequestKind, VerifiedRequest};
use keyrack_client::result::{KeyInfo, Status};
use keyrack_client::scheme::Scheme;
use keyrack_ecdsa_cggmp21::EcdsaPlugin;
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::scheme::ReshareMember;
use keyrack_plugin::{
    Outgoing, PartyIndex, ProtocolError, Recipient, ReshareParams, SchemePlugin, Session,
};
use serde::{Deserialize, Serialize};

use super::request::{blocking, fail, handshake, plugin_for, refuse, Done, Outcome};
use super::Node;
use crate::coordinator::Need;
use crate::ecdsa::{ensure_committee, CommitteeContext, FixedAux};
use crate::session::{sub_session, SessionError, SessionRoute};
use crate::store::{KeyStatus, NextCommittee, StoreError};

/// The keys (key id, scheme) this node is resharing, refreshing or deleting right now, each
/// with what it is doing (shown in status results): one such operation per key at a time.
#[derive(Debug, Default)]
pub struct KeyOps {
    busy: Mutex<BTreeMap<(String, String), String>>,
}

/// A key taken by [`KeyOps::begin`]; released when dropped.
#[derive(Debug)]
pub struct KeyOp<'a> {
    ops: &'a KeyOps,
    keys: Vec<(String, String)>,
}

impl KeyOps {
    /// Takes the keys (`key_id` in each scheme) for one operation, or names one that is busy.
    pub fn begin<'a>(&'a self, key_id: &str, schemes: &[Scheme]) -> Result<KeyOp<'a>, String> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<(String, String)> = schemes
            .iter()
            .map(|s| (key_id.to_owned(), s.as_str().to_owned()))
            .collect();
        if let Some((k, what)) = keys.iter().find_map(|k| busy.get(k).map(|w| (k, w))) {
            return Err(format!("{} key '{}' is busy: {what}", k.1, k.0));
        }
        for k in &keys {
            busy.insert(k.clone(), "starting".into());
        }
        Ok(KeyOp { ops: self, keys })
    }

    /// What is under way on a key, if anything.
    pub fn phase(&self, key_id: &str, scheme: &str) -> Option<String> {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(key_id.to_owned(), scheme.to_owned()))
            .cloned()
    }
}

impl KeyOp<'_> {
    /// Records what is under way on `scheme`'s key (for status results), and logs it.
    fn phase(&self, scheme: Scheme, what: impl Into<String>) {
        let what = what.into();
        if let Some((key_id, _)) = self.keys.first() {
            tracing::info!(key = %key_id, scheme = scheme.as_str(), "{what}");
            self.ops
                .busy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((key_id.clone(), scheme.as_str().to_owned()), what);
        }
    }
}

impl Drop for KeyOp<'_> {
    fn drop(&mut self) {
        let mut busy = self.ops.busy.lock().unwrap_or_else(PoisonError::into_inner);
        for k in &self.keys {
            busy.remove(k);
        }
    }
}

/// A staged share, as a view reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StagedView {
    /// The version it is for.
    pub version: u32,
    /// The committee it belongs to, in key-index order.
    pub participants: Vec<String>,
    /// That committee's threshold.
    pub threshold: u16,
    /// The group public key it shares.
    pub public_key: Vec<u8>,
    /// The chain code.
    pub chain_code: [u8; 32],
}

/// One member's view of a key, from its own store (the state round's message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct View {
    /// The record's status; `None`: no record.
    pub status: Option<KeyStatus>,
    /// The record's version.
    pub version: u32,
    /// Signers needed.
    pub threshold: u16,
    /// The committee, in key-index order.
    pub participants: Vec<String>,
    /// The group public key (empty until READY).
    pub public_key: Vec<u8>,
    /// The chain code.
    pub chain_code: [u8; 32],
    /// A staged share, if any.
    pub staged: Option<StagedView>,
}

impl View {
    fn ready_at(&self, version: u32) -> bool {
        self.status == Some(KeyStatus::Ready) && self.version == version
    }
}

/// What a member does about an earlier run before this one (the same rule at every node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Settle {
    /// Nothing left over.
    Nothing,
    /// Commit the staged share: its run committed somewhere.
    Commit,
    /// Discard the staged share: its run committed nowhere.
    Discard,
    /// Erase the share of this (older) version: a later version is current.
    Erase(u32),
}

/// What the request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ask {
    /// The new committee (`None`: unchanged).
    pub participants: Option<Vec<String>>,
    /// The new threshold (`None`: unchanged).
    pub threshold: Option<u16>,
}

/// One run, as every member computes it from the same views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Plan {
    /// The key's current version (after settling).
    pub version: u32,
    /// Its committee at that version.
    pub committee: Vec<String>,
    /// Its threshold.
    pub threshold: u16,
    /// Public key and chain code (kept).
    pub public_key: Vec<u8>,
    /// The chain code.
    pub chain_code: [u8; 32],
    /// Committee members that hold the key at `version` (after settling), key-index order.
    pub dealers: Vec<String>,
    /// The new committee, in key-index order.
    pub new_committee: Vec<String>,
    /// The new threshold.
    pub new_threshold: u16,
    /// The session's members, in manifest order.
    pub members: Vec<String>,
    /// What each member settles first.
    pub settle: BTreeMap<String, Settle>,
}

type Refusal = (Status, ErrorCode, String);

/// Computes the plan from every member's view (`views` holds one per manifest member,
/// `order` is the manifest's node order).
pub(crate) fn plan(
    key_id: &str,
    scheme: Scheme,
    views: &BTreeMap<String, View>,
    order: &[String],
    ask: &Ask,
) -> Result<Plan, Refusal> {
    let name = format!("{} key '{key_id}'", scheme.as_str());
    if let Some((node, _)) = views
        .iter()
        .find(|(_, v)| v.status == Some(KeyStatus::Deleted))
    {
        return Err(refuse(
            ErrorCode::KeyDeleted,
            format!("{name} was deleted (tombstone at {node})"),
        ));
    }
    // The current version: the highest READY one. It counts only if at least its threshold
    // of its committee attest it (READY there, or holding its staged share, which they
    // commit: some member committed that run, so every new member had staged): one member
    // cannot make the others settle on a version it made up.
    let Some(version) = views
        .values()
        .filter(|v| v.status == Some(KeyStatus::Ready))
        .map(|v| v.version)
        .max()
    else {
        return Err(refuse(
            ErrorCode::UnknownKey,
            format!("no member holds a READY {name}"),
        ));
    };
    type Claim = (Vec<String>, u16, Vec<u8>, [u8; 32]);
    let mut holders: BTreeMap<&String, Claim> = BTreeMap::new();
    let mut committing = BTreeSet::new();
    for (node, v) in views {
        if v.ready_at(version) {
            holders.insert(
                node,
                (
                    v.participants.clone(),
                    v.threshold,
                    v.public_key.clone(),
                    v.chain_code,
                ),
            );
        } else if let Some(st) = v.staged.as_ref().filter(|st| st.version == version) {
            holders.insert(
                node,
                (
                    st.participants.clone(),
                    st.threshold,
                    st.public_key.clone(),
                    st.chain_code,
                ),
            );
            committing.insert(node);
        }
    }
    let claims: BTreeSet<&Claim> = holders.values().collect();
    let named = |nodes: Vec<&String>| {
        nodes
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let [(committee, threshold, public_key, chain_code)] =
        claims.into_iter().collect::<Vec<_>>()[..]
    else {
        return Err(fail(
            ErrorCode::ProtocolFailed,
            format!(
                "the members holding {name} at version {version} ({}) disagree on its committee, \
                 threshold or public key: see `keyrack client status`",
                named(holders.keys().copied().collect())
            ),
        ));
    };
    let (committee, threshold) = (committee.clone(), *threshold);
    let (public_key, chain_code) = (public_key.clone(), *chain_code);
    let distinct: BTreeSet<&String> = committee.iter().collect();
    let outside: Vec<&String> = holders
        .keys()
        .copied()
        .filter(|h| !committee.contains(h))
        .collect();
    if distinct.len() != committee.len()
        || keyrack_client::request::check_threshold(threshold, committee.len()).is_err()
        || !outside.is_empty()
    {
        return Err(fail(
            ErrorCode::ProtocolFailed,
            format!(
                "{} report(s) {name} at version {version} with an impossible committee \
                 ({threshold} of {})",
                named(holders.keys().copied().collect()),
                committee.join(",")
            ),
        ));
    }
    let dealers: Vec<String> = committee
        .iter()
        .filter(|m| holders.contains_key(m))
        .cloned()
        .collect();
    if dealers.len() < usize::from(threshold) {
        return Err(fail(
            ErrorCode::ProtocolFailed,
            format!(
                "only {} of {name}'s committee hold it at version {version} ({}); {threshold} needed",
                dealers.len(),
                dealers.join(", ")
            ),
        ));
    }
    // What each member settles first: commit a staged share of `version`; discard any other
    // staged share (its run committed nowhere); erase a share of this key at an older
    // version (useless since `version` was committed).
    let mut settle = BTreeMap::new();
    for (node, v) in views {
        let s = if committing.contains(node) {
            Settle::Commit
        } else if v.staged.is_some() {
            Settle::Discard
        } else if v.status == Some(KeyStatus::Ready)
            && v.version < version
            && v.public_key == public_key
            && v.chain_code == chain_code
        {
            Settle::Erase(v.version)
        } else {
            Settle::Nothing
        };
        settle.insert(node.clone(), s);
    }
    let new_committee = ask
        .participants
        .clone()
        .unwrap_or_else(|| committee.clone());
    let new_threshold = ask.threshold.unwrap_or(threshold);
    if let Err(e) = keyrack_client::request::check_threshold(new_threshold, new_committee.len()) {
        return Err(refuse(e.code(), e.to_string()));
    }
    if let Some(outsider) = new_committee.iter().find(|n| !order.contains(n)) {
        return Err(refuse(
            ErrorCode::InvalidRequest,
            format!("'{outsider}' is not a member of the cluster manifest"),
        ));
    }
    let members = order
        .iter()
        .filter(|n| dealers.contains(n) || new_committee.contains(n))
        .cloned()
        .collect();
    Ok(Plan {
        version,
        committee,
        threshold,
        public_key,
        chain_code,
        dealers,
        new_committee,
        new_threshold,
        members,
        settle,
    })
}

impl Plan {
    /// The plugin's reshare parameters.
    fn params(&self) -> ReshareParams {
        let index = |list: &[String], node: &String| {
            list.iter().position(|m| m == node).map(|i| i as PartyIndex)
        };
        ReshareParams {
            members: self
                .members
                .iter()
                .map(|m| ReshareMember {
                    old: if self.dealers.contains(m) {
                        index(&self.committee, m)
                    } else {
                        None
                    },
                    new: index(&self.new_committee, m),
                })
                .collect(),
            old_threshold: self.threshold,
            new_parties: self.new_committee.len() as u16,
            new_threshold: self.new_threshold,
            public_key: self.public_key.clone(),
            chain_code: self.chain_code,
        }
    }

    fn key_info(&self, key_id: &str, scheme: Scheme) -> KeyInfo {
        KeyInfo {
            key_id: key_id.to_owned(),
            scheme,
            public_key: self.public_key.clone(),
            chain_code: self.chain_code,
            threshold: self.new_threshold,
            participants: self.new_committee.clone(),
            version: self.version + 1,
            status: None,
        }
    }
}

/// Handles a reshare or refresh request at this node.
pub(super) async fn reshare(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let body = &request.body;
    let ask = Ask {
        participants: body.participants.clone(),
        threshold: body.threshold,
    };
    if body.kind == RequestKind::Refresh && (ask.participants.is_some() || ask.threshold.is_some())
    {
        return Some(Err(refuse(
            ErrorCode::InvalidRequest,
            "a refresh keeps the committee and threshold",
        )));
    }
    for scheme in &body.schemes {
        if let Err(e) = plugin_for(node, *scheme) {
            return Some(Err(e));
        }
    }
    let op = match node.key_ops.begin(&body.key_id, &body.schemes) {
        Ok(op) => op,
        Err(busy) => return Some(Err(refuse(ErrorCode::KeyInProgress, busy))),
    };
    let manifest = node.manifest();
    let members: Vec<String> = manifest
        .nodes()
        .iter()
        .map(|n| n.node_id().to_owned())
        .collect();
    let start = match handshake(node, request, &members, Need::All).await {
        Ok(Some(start)) => start,
        Ok(None) => {
            return Some(Err(fail(
                ErrorCode::ProtocolFailed,
                "this node was left out of the run",
            )))
        }
        Err(reason) => return Some(Err(fail(ErrorCode::Timeout, reason))),
    };
    let mut keys: Vec<KeyInfo> = vec![];
    for scheme in body.schemes.clone() {
        let session = sub_session(&start.session, scheme.as_str());
        match reshare_one(
            node,
            &op,
            body.kind,
            &body.key_id,
            scheme,
            session,
            &start.participants,
            &ask,
        )
        .await
        {
            Ok(Some(info)) => keys.push(info),
            Ok(None) => {}
            Err((status, code, message)) if !keys.is_empty() => {
                // Say what did change: the schemes before this one moved for good.
                let done: Vec<String> = keys
                    .iter()
                    .map(|k| format!("{} is at version {}", k.scheme.as_str(), k.version))
                    .collect();
                return Some(Err((
                    status,
                    code,
                    format!("{message} (already done: {})", done.join(", ")),
                )));
            }
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(Done::keys(keys)))
}

/// One scheme's run (module docs); `Ok(None)` when this node is in neither committee.
#[allow(clippy::too_many_arguments)]
async fn reshare_one(
    node: &Arc<Node>,
    op: &KeyOp<'_>,
    kind: RequestKind,
    key_id: &str,
    scheme: Scheme,
    session: [u8; 32],
    everyone: &[String],
    ask: &Ask,
) -> Result<Option<KeyInfo>, Refusal> {
    let me = node.identity.node_id().to_owned();
    let name = format!("{} key '{key_id}'", scheme.as_str());

    // 1. State round.
    op.phase(
        scheme,
        format!("{}: comparing the members' views of the key", kind.as_str()),
    );
    let mine = view_of(node, key_id, scheme).await?;
    let views = exchange(node, sub_session(&session, "state"), everyone, &mine).await?;
    let plan = plan(key_id, scheme, &views, everyone, ask)?;
    // Every member must have computed the same plan (a member that sent different views to
    // different members would split them): nothing is settled or run otherwise.
    let digest: [u8; 32] = {
        use sha2::{Digest, Sha256};
        let bytes =
            serde_json::to_vec(&plan).map_err(|e| fail(ErrorCode::Internal, e.to_string()))?;
        Sha256::digest(bytes).into()
    };
    let digests = exchange(node, sub_session(&session, "plan"), everyone, &digest).await?;
    let differ: Vec<&str> = digests
        .iter()
        .filter(|(_, d)| **d != digest)
        .map(|(n, _)| n.as_str())
        .collect();
    if !differ.is_empty() {
        return Err(fail(
            ErrorCode::ProtocolFailed,
            format!(
                "{name}: {} computed another plan from the members' views (a member sent \
                 different views?); nothing changed",
                differ.join(", ")
            ),
        ));
    }

    // 2. Settle what an earlier run left here.
    let settle = plan.settle.get(&me).copied().unwrap_or(Settle::Nothing);
    if settle != Settle::Nothing {
        tracing::info!(
            key = key_id,
            scheme = scheme.as_str(),
            ?settle,
            "settling an earlier reshare or refresh"
        );
        let (store, k, s) = (node.store.clone(), key_id.to_owned(), scheme.as_str());
        let settled = blocking(move || match settle {
            Settle::Commit => store.commit_staged(&k, s).map(|_| ()),
            Settle::Discard => store.discard_staged(&k, s).map(|_| ()),
            Settle::Erase(v) => store.leave_committee(&k, s, v),
            Settle::Nothing => Ok(()),
        })
        .await?;
        settled.map_err(|e| fail(ErrorCode::Internal, format!("settling {name}: {e}")))?;
    }
    if !plan.members.contains(&me) {
        return Ok(None);
    }
    let dealer = plan.dealers.contains(&me);
    let receiver = plan.new_committee.contains(&me);

    // 3. The plugin, with the new committee's aux info for an ECDSA receiver.
    let plugin: Arc<dyn SchemePlugin> = if scheme == Scheme::EcdsaSecp256k1 && receiver {
        op.phase(
            scheme,
            format!(
                "{}: ECDSA committee setup for {} (aux info; from the primes pool)",
                kind.as_str(),
                plan.new_committee.join(",")
            ),
        );
        let context = CommitteeContext {
            node,
            session: sub_session(&session, "aux"),
            members: &plan.new_committee,
        };
        let aux = ensure_committee(context)
            .await
            .map_err(|e| fail(ErrorCode::ProtocolFailed, e))?;
        Arc::new(EcdsaPlugin::new(Arc::new(FixedAux(aux))))
    } else {
        plugin_for(node, scheme)?
    };

    // 4. Reshare.
    op.phase(
        scheme,
        format!(
            "{}: resharing version {} ({} of {}) to {} of {}",
            kind.as_str(),
            plan.version,
            plan.threshold,
            plan.committee.len(),
            plan.new_threshold,
            plan.new_committee.len()
        ),
    );
    let share = if dealer {
        let (store, sealer, k, s) = (
            node.store.clone(),
            node.sealer.clone(),
            key_id.to_owned(),
            scheme.as_str(),
        );
        let version = plan.version;
        let share = blocking(move || store.load_share_at(&k, s, version, sealer.as_ref())).await?;
        Some(share.map_err(|e| fail(ErrorCode::HsmFailure, e.to_string()))?)
    } else {
        None
    };
    let route = SessionRoute {
        session: sub_session(&session, "reshare"),
        participants: plan.members.clone(),
    };
    let params = plan.params();
    let (id, parties) = (route.session, plan.members.len() as u16);
    // Dealers that leave may wait for the new committee's setup: as long as it may take.
    let timeout = if scheme == Scheme::EcdsaSecp256k1 {
        node.settings.setup_timeout
    } else {
        node.settings.session_timeout
    };
    let ran = node
        .run_session_for(&route, timeout, move |me, ch| {
            plugin.reshare(&Session { id, me, parties }, ch, share.as_ref(), &params)
        })
        .await;
    let new_share = match ran {
        Ok((share, _)) => share,
        Err(e) => return Err(run_failed(&name, plan.version, &e)),
    };

    // 5. Stage.
    let staged_ok = match (receiver, new_share) {
        (false, _) => true,
        (true, None) => {
            tracing::error!(key = key_id, "the reshare gave a new member no share");
            false
        }
        (true, Some(share)) => {
            let (store, sealer, k, s) = (
                node.store.clone(),
                node.sealer.clone(),
                key_id.to_owned(),
                scheme.as_str(),
            );
            let (from, committee, version) = (
                if dealer { plan.version } else { 0 },
                plan.new_committee.clone(),
                plan.version + 1,
            );
            let staged = blocking(move || {
                let next = NextCommittee {
                    version,
                    participants: &committee,
                };
                store.stage_share(&k, s, from, &next, &share, sealer.as_ref())
            })
            .await?;
            match staged {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(key = key_id, error = %e, "cannot stage the new share");
                    false
                }
            }
        }
    };

    // 6. Commit round.
    op.phase(
        scheme,
        format!("{}: committing version {}", kind.as_str(), plan.version + 1),
    );
    let votes = exchange(
        node,
        sub_session(&session, "commit"),
        &plan.members,
        &staged_ok,
    )
    .await;
    match votes {
        Ok(votes) if staged_ok && votes.values().all(|v| *v) => {
            let (store, k, s) = (node.store.clone(), key_id.to_owned(), scheme.as_str());
            let from = plan.version;
            let done = blocking(move || {
                if receiver {
                    store.commit_staged(&k, s).map(|_| ())
                } else {
                    store.leave_committee(&k, s, from)
                }
            })
            .await?;
            // Every member staged: the key is at the new version wherever this fails.
            done.map_err(|e| fail(ErrorCode::Internal, format!("committing {name}: {e}")))?;
            tracing::info!(
                key = key_id,
                scheme = scheme.as_str(),
                version = plan.version + 1,
                committee = %plan.new_committee.join(","),
                threshold = plan.new_threshold,
                "{} committed",
                kind.as_str()
            );
            Ok(Some(plan.key_info(key_id, scheme)))
        }
        Ok(votes) => {
            // Someone did not stage: this node does not commit. It keeps its staged share
            // (if any) all the same — a member that voted yes to some and no to others could
            // have made some commit — and the next run's state round settles it.
            let no: Vec<&str> = votes
                .iter()
                .filter(|(_, v)| !**v)
                .map(|(n, _)| n.as_str())
                .collect();
            Err(fail(
                ErrorCode::ProtocolFailed,
                format!(
                    "{name} not committed: {} could not keep the new share; it stays at version {} \
                     (the next reshare or refresh of the key clears what this run left)",
                    no.join(", "),
                    plan.version
                ),
            ))
        }
        Err((status, code, why)) => Err((
            status,
            code,
            format!(
                "{name}: the commit round did not complete ({why}); this node keeps version {} \
                 and, if it staged one, the new share: the next reshare or refresh of the key \
                 settles which is current",
                plan.version
            ),
        )),
    }
}

fn run_failed(name: &str, version: u32, e: &SessionError) -> Refusal {
    fail(
        ErrorCode::ProtocolFailed,
        format!("{name}: {e}; nothing changed, the key stays at version {version}"),
    )
}

/// This node's view of a key.
async fn view_of(node: &Arc<Node>, key_id: &str, scheme: Scheme) -> Result<View, Refusal> {
    let (store, k, s) = (node.store.clone(), key_id.to_owned(), scheme.as_str());
    let read = blocking(move || -> Result<View, StoreError> {
        let record = store.key(&k, s)?;
        let staged = store.staged(&k, s)?;
        Ok(View {
            status: record.as_ref().map(|r| r.status),
            version: record.as_ref().map_or(0, |r| r.version),
            threshold: record.as_ref().map_or(0, |r| r.threshold),
            participants: record
                .as_ref()
                .map(|r| r.participants.clone())
                .unwrap_or_default(),
            public_key: record
                .as_ref()
                .and_then(|r| r.public_key.clone())
                .unwrap_or_default(),
            chain_code: record
                .as_ref()
                .and_then(|r| r.chain_code)
                .unwrap_or([0; 32]),
            staged: staged.map(|st| StagedView {
                version: st.version,
                participants: st.participants,
                threshold: st.threshold,
                public_key: st.public_key,
                chain_code: st.chain_code,
            }),
        })
    })
    .await?;
    read.map_err(|e| fail(ErrorCode::Internal, format!("store: {e}")))
}

/// One broadcast round among `members`: sends `mine`, returns every member's (this node's
/// included) by node id.
async fn exchange<T>(
    node: &Arc<Node>,
    session: [u8; 32],
    members: &[String],
    mine: &T,
) -> Result<BTreeMap<String, T>, Refusal>
where
    T: Serialize + for<'de> Deserialize<'de> + Clone + Send + 'static,
{
    let route = SessionRoute {
        session,
        participants: members.to_vec(),
    };
    let bytes = serde_json::to_vec(mine).map_err(|e| fail(ErrorCode::Internal, e.to_string()))?;
    let parties = members.len() as u16;
    let ran = node
        .run_session(&route, move |me, ch| {
            ch.send(Outgoing {
                to: Recipient::Broadcast,
                round: 0,
                payload: bytes.clone(),
            })?;
            let others: Vec<PartyIndex> = (0..parties).filter(|p| *p != me).collect();
            let mut got = RoundCollector::new().collect(ch, 0, true, &others)?;
            got.insert(me, bytes);
            got.into_iter()
                .map(|(from, b)| {
                    serde_json::from_slice::<T>(&b)
                        .map(|v| (from, v))
                        .map_err(|e| ProtocolError::Malformed {
                            party: from,
                            round: 0,
                            reason: e.to_string(),
                        })
                })
                .collect::<Result<BTreeMap<PartyIndex, T>, ProtocolError>>()
        })
        .await;
    match ran {
        Ok((by_index, _)) => Ok(by_index
            .into_iter()
            .filter_map(|(i, v)| members.get(usize::from(i)).map(|m| (m.clone(), v)))
            .collect()),
        Err(e) => Err(fail(ErrorCode::ProtocolFailed, e.to_string())),
    }
}

/// Handles a delete request at this node.
pub(super) async fn delete(node: &Arc<Node>, request: &VerifiedRequest) -> Option<Outcome> {
    let body = &request.body;
    let _op = match node.key_ops.begin(&body.key_id, &body.schemes) {
        Ok(op) => op,
        Err(busy) => return Some(Err(refuse(ErrorCode::KeyInProgress, busy))),
    };
    let (store, key_id, schemes) = (
        node.store.clone(),
        body.key_id.clone(),
        body.schemes.clone(),
    );
    let deleted = blocking(move || {
        for scheme in schemes {
            store.delete_key(&key_id, scheme.as_str())?;
        }
        Ok::<_, StoreError>(())
    })
    .await;
    match deleted {
        Ok(Ok(())) => {
            tracing::info!(key = %body.key_id, schemes = ?body.schemes, "key deleted (share erased, tombstone kept)");
            Some(Ok(Done::default()))
        }
        Ok(Err(e)) => Some(Err(fail(ErrorCode::Internal, e.to_string()))),
        Err(e) => Some(Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ready(version: u32, committee: &[&str], t: u16) -> View {
        View {
            status: Some(KeyStatus::Ready),
            version,
            threshold: t,
            participants: ids(committee),
            public_key: vec![2; 33],
            chain_code: [9; 32],
            staged: None,
        }
    }

    fn none() -> View {
        View {
            status: None,
            version: 0,
            threshold: 0,
            participants: vec![],
            public_key: vec![],
            chain_code: [0; 32],
            staged: None,
        }
    }

    fn staged(mut v: View, version: u32, committee: &[&str], t: u16) -> View {
        v.staged = Some(StagedView {
            version,
            participants: ids(committee),
            threshold: t,
            public_key: vec![2; 33],
            chain_code: [9; 32],
        });
        v
    }

    fn views(list: Vec<(&str, View)>) -> BTreeMap<String, View> {
        list.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
    }

    const ORDER: [&str; 4] = ["node0", "node1", "node2", "node3"];

    fn grow() -> Ask {
        Ask {
            participants: Some(ids(&ORDER)),
            threshold: Some(3),
        }
    }

    #[test]
    fn a_reshare_to_a_joining_node_deals_from_the_committee_to_the_new_one() {
        let c = ["node0", "node1", "node2"];
        let v = views(vec![
            ("node0", ready(1, &c, 2)),
            ("node1", ready(1, &c, 2)),
            ("node2", ready(1, &c, 2)),
            ("node3", none()),
        ]);
        let p = plan("w", Scheme::Ed25519, &v, &ids(&ORDER), &grow()).unwrap();
        assert_eq!((p.version, p.threshold, p.new_threshold), (1, 2, 3));
        assert_eq!(p.dealers, ids(&c));
        assert_eq!(p.members, ids(&ORDER));
        assert!(p.settle.values().all(|s| *s == Settle::Nothing));
        let params = p.params();
        assert_eq!(params.check_members(4), Ok(()));
        assert_eq!(
            params.members[3],
            ReshareMember {
                old: None,
                new: Some(3)
            }
        );
        assert_eq!(p.key_info("w", Scheme::Ed25519).version, 2);
    }

    #[test]
    fn a_dropped_node_deals_but_receives_nothing() {
        let c = ORDER;
        let v = views(ORDER.iter().map(|n| (*n, ready(2, &c, 3))).collect());
        let ask = Ask {
            participants: Some(ids(&["node0", "node2", "node3"])),
            threshold: Some(2),
        };
        let p = plan("w", Scheme::Ed25519, &v, &ids(&ORDER), &ask).unwrap();
        let params = p.params();
        assert_eq!(params.check_members(4), Ok(()));
        assert_eq!(
            params.members[1],
            ReshareMember {
                old: Some(1),
                new: None
            }
        );
        assert_eq!(
            params.members[2],
            ReshareMember {
                old: Some(2),
                new: Some(1)
            }
        );
    }

    #[test]
    fn an_interrupted_run_is_settled_the_same_way_everywhere() {
        let c = ["node0", "node1", "node2"];
        // node0 committed version 2 (so every new member had staged); node1 and node2 did
        // not hear every vote and still hold version 1 and the staged share.
        let v = views(vec![
            ("node0", ready(2, &c, 2)),
            ("node1", staged(ready(1, &c, 2), 2, &c, 2)),
            ("node2", staged(ready(1, &c, 2), 2, &c, 2)),
            ("node3", none()),
        ]);
        let p = plan(
            "w",
            Scheme::Ed25519,
            &v,
            &ids(&ORDER),
            &Ask {
                participants: None,
                threshold: None,
            },
        )
        .unwrap();
        assert_eq!(p.version, 2);
        assert_eq!(p.settle["node1"], Settle::Commit);
        assert_eq!(p.dealers, ids(&c));
        assert_eq!(p.members, ids(&c), "node3 is in neither committee");
        // Nobody committed version 2: the staged shares go, version 1 stays.
        let v = views(vec![
            ("node0", staged(ready(1, &c, 2), 2, &c, 2)),
            ("node1", ready(1, &c, 2)),
            ("node2", staged(ready(1, &c, 2), 2, &c, 2)),
            ("node3", none()),
        ]);
        let p = plan(
            "w",
            Scheme::Ed25519,
            &v,
            &ids(&ORDER),
            &Ask {
                participants: None,
                threshold: None,
            },
        )
        .unwrap();
        assert_eq!(p.version, 1);
        assert_eq!(p.settle["node0"], Settle::Discard);
        assert_eq!(p.settle["node1"], Settle::Nothing);
        // A leaving member that missed the commit erases its old share.
        let n = ["node0", "node2", "node3"];
        let v = views(vec![
            ("node0", ready(3, &n, 2)),
            ("node1", ready(2, &ORDER, 3)),
            ("node2", ready(3, &n, 2)),
            ("node3", ready(3, &n, 2)),
        ]);
        let p = plan(
            "w",
            Scheme::Ed25519,
            &v,
            &ids(&ORDER),
            &Ask {
                participants: None,
                threshold: None,
            },
        )
        .unwrap();
        assert_eq!(p.settle["node1"], Settle::Erase(2));
        assert_eq!(p.committee, ids(&n));
        assert!(!p.members.contains(&"node1".to_owned()));
    }

    #[test]
    fn bad_plans_are_refused_with_their_reason() {
        let c = ["node0", "node1", "node2"];
        let base = || {
            views(vec![
                ("node0", ready(1, &c, 2)),
                ("node1", ready(1, &c, 2)),
                ("node2", ready(1, &c, 2)),
                ("node3", none()),
            ])
        };
        let order = ids(&ORDER);
        let code = |v: &BTreeMap<String, View>, ask: &Ask| {
            plan("w", Scheme::Ed25519, v, &order, ask).unwrap_err().1
        };
        // An outsider, a threshold that cannot work.
        let outsider = Ask {
            participants: Some(ids(&["node0", "node9"])),
            threshold: Some(2),
        };
        assert_eq!(code(&base(), &outsider), ErrorCode::InvalidRequest);
        let weak = Ask {
            participants: Some(ids(&ORDER)),
            threshold: Some(2),
        };
        assert_eq!(code(&base(), &weak), ErrorCode::InvalidThreshold);
        // A tombstone anywhere; nobody holding the key.
        let mut v = base();
        v.get_mut("node3").unwrap().status = Some(KeyStatus::Deleted);
        assert_eq!(code(&v, &grow()), ErrorCode::KeyDeleted);
        let v = views(ORDER.iter().map(|n| (*n, none())).collect());
        assert_eq!(code(&v, &grow()), ErrorCode::UnknownKey);
        // Too few holders; holders that disagree.
        let mut v = base();
        v.insert("node1".into(), none());
        v.insert("node2".into(), none());
        assert_eq!(code(&v, &grow()), ErrorCode::ProtocolFailed);
        let mut v = base();
        v.get_mut("node2").unwrap().public_key = vec![3; 33];
        let e = plan("w", Scheme::Ed25519, &v, &order, &grow()).unwrap_err();
        assert!(e.2.contains("disagree"), "{e:?}");
    }

    #[test]
    fn one_member_cannot_make_the_others_settle_on_a_version_it_made_up() {
        let c = ["node0", "node1", "node2"];
        let order = ids(&ORDER);
        let keep = Ask {
            participants: None,
            threshold: None,
        };
        // node3 claims version 99 of the same key, with itself as the whole committee, or
        // with an honest member that does not hold that version: no plan, nothing erased.
        for (committee, t) in [(&["node3"][..], 1), (&["node3", "node0"][..], 2)] {
            let v = views(vec![
                ("node0", ready(1, &c, 2)),
                ("node1", ready(1, &c, 2)),
                ("node2", ready(1, &c, 2)),
                ("node3", ready(99, committee, t)),
            ]);
            let e = plan("w", Scheme::Ed25519, &v, &order, &keep).unwrap_err();
            assert_eq!(e.1, ErrorCode::ProtocolFailed, "{e:?}");
        }
        // A holder outside the committee it claims, a staged share of another key.
        let v = views(vec![
            ("node0", ready(2, &["node0", "node1"], 2)),
            ("node1", ready(2, &["node0", "node1"], 2)),
            ("node2", ready(2, &["node0", "node1"], 2)),
            ("node3", none()),
        ]);
        assert!(plan("w", Scheme::Ed25519, &v, &order, &keep).is_err());
        let mut other = staged(ready(1, &c, 2), 2, &c, 2);
        other.staged.as_mut().unwrap().public_key = vec![3; 33];
        let v = views(vec![
            ("node0", ready(2, &c, 2)),
            ("node1", ready(2, &c, 2)),
            ("node2", other),
            ("node3", none()),
        ]);
        assert!(plan("w", Scheme::Ed25519, &v, &order, &keep).is_err());
        // An older share of another key is not erased.
        let mut stranger = ready(1, &["node3", "node0"], 2);
        stranger.public_key = vec![4; 33];
        let v = views(vec![
            ("node0", ready(2, &c, 2)),
            ("node1", ready(2, &c, 2)),
            ("node2", ready(2, &c, 2)),
            ("node3", stranger),
        ]);
        let p = plan("w", Scheme::Ed25519, &v, &order, &keep).unwrap();
        assert_eq!(p.settle["node3"], Settle::Nothing);
    }
}

//! Reshare and refresh of threshold keys: keyrack's own protocol, because cggmp21's
//! `key_refresh` only works for n-of-n keys.
//!
//! # Protocol
//!
//! Parties: the session's members, each an old key party (a *dealer*, holding share `x_i` with
//! share preimage `I_i`), a new key party (a *receiver*, new index `k`, preimage `k + 1`), or
//! both. Let `S` be the dealers' old indices (at least the old threshold), `t'` the new
//! threshold, `X` the public key and `X_i` dealer `i`'s public share.
//!
//! 1. **Deal** (round 1 broadcast, round 2 private). Dealer `i` computes its Lagrange coefficient over `S`,
//!    `λ_i = Π_{j∈S, j≠i} I_j / (I_j − I_i)`, and picks a fresh random polynomial `f_i` of
//!    degree `t' − 1` with `f_i(0) = λ_i·x_i`. It broadcasts the Feldman commitments
//!    `C_{i,m} = f_i's m-th coefficient · G` with its view of the old key's public info
//!    (public shares, preimages), and sends each receiver `k` privately `f_i(k + 1)`.
//! 2. **Check.** Every receiver, for every dealer `i`: the dealer's old index is the one the
//!    session says; `C_{i,0} = λ_i·X_i` (against its own old key info if it was an old
//!    party, else against the old key info every dealer sent, which must be identical, valid,
//!    and have public key `X`); `f_i(k + 1)·G = Σ_m C_{i,m}·(k + 1)^m`. A failed check is
//!    [`ProtocolError::Misbehaved`] naming the dealer. Then `Σ_i C_{i,0} = X`.
//! 3. **Echo** (round 3). Receivers broadcast a hash of every dealer's round-1 broadcast;
//!    different hashes mean a dealer sent different broadcasts to different receivers, and
//!    the run aborts.
//! 4. **Result.** Receiver `k`'s share is `x'_k = Σ_i f_i(k + 1)`; every new public share
//!    is `X'_j = Σ_i Σ_m C_{i,m}·(j + 1)^m`. The receiver builds a cggmp21
//!    `DirtyIncompleteKeyShare` (same public key and chain code, threshold `t'`, preimages
//!    `1..=n'`) and `validate()`s it; the plugin then joins it with the new committee's aux
//!    info, which must exist before the run ([`crate::committee_setup`] for the new `n'`).
//!
//! With the same committee and threshold this is a refresh: the new shares are a fresh
//! sharing of the same key, and old shares do not combine with new ones.

use std::collections::BTreeMap;

use cggmp21::generic_ec::{NonZero, Point, Scalar, SecretScalar};
use cggmp21::key_share::{
    AnyKeyShare, DirtyIncompleteKeyShare, DirtyKeyInfo, IncompleteKeyShare, Validate, VssSetup,
};
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::scheme::{check_threshold, ReshareMember};
use keyrack_plugin::{
    Channel, Outgoing, PartyIndex, ProtocolError, Recipient, ReshareParams, Session,
};
use sha2::{Digest, Sha256};

use crate::driver::to_cbor;
use crate::share::{parse_point, Share, E};

const DEAL_ROUND: u16 = 1;
const PIECE_ROUND: u16 = 2;
const ECHO_ROUND: u16 = 3;

/// A dealer's broadcast.
#[derive(serde::Serialize, serde::Deserialize)]
struct Deal {
    /// The dealer's old key index.
    old_index: PartyIndex,
    /// The dealer's view of the old key's public info.
    old_key: DirtyKeyInfo<E>,
    /// Feldman commitments to the dealt polynomial's coefficients.
    commitments: Vec<Point<E>>,
}

/// A dealer's private piece for one receiver: `f_i(k + 1)`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Piece {
    value: SecretScalar<E>,
}

/// A receiver's echo of the dealers' broadcasts.
#[derive(serde::Serialize, serde::Deserialize)]
struct Echo {
    digest: [u8; 32],
}

fn scalar(i: u16) -> Scalar<E> {
    Scalar::from(u64::from(i))
}

/// `Σ_m c_m·x^m` for points.
fn eval_commitments(commitments: &[Point<E>], x: Scalar<E>) -> Point<E> {
    commitments
        .iter()
        .rev()
        .fold(Point::zero(), |acc, c| acc * x + c)
}

/// `λ_i` for interpolation at 0 over `preimages`.
fn lagrange(i: usize, preimages: &[Scalar<E>]) -> Result<Scalar<E>, ProtocolError> {
    let xi = preimages[i];
    let mut num = Scalar::<E>::one();
    let mut den = Scalar::<E>::one();
    for (j, xj) in preimages.iter().enumerate() {
        if j != i {
            num *= xj;
            den *= *xj - xi;
        }
    }
    den.invert()
        .map(|inv| num * inv)
        .ok_or_else(|| ProtocolError::InvalidMaterial("duplicate share preimages".into()))
}

/// The checked layout of one reshare run.
struct Plan {
    /// (session index, old key index) of every dealer, in session order.
    dealers: Vec<(PartyIndex, PartyIndex)>,
    /// (session index, new key index) of every receiver, in session order.
    receivers: Vec<(PartyIndex, PartyIndex)>,
    me: ReshareMember,
}

fn plan(session: &Session, params: &ReshareParams) -> Result<Plan, ProtocolError> {
    let bad = |why: String| Err(ProtocolError::InvalidRequest(format!("reshare: {why}")));
    if params.members.len() != usize::from(session.parties) {
        return bad(format!(
            "{} members for a session of {}",
            params.members.len(),
            session.parties
        ));
    }
    check_threshold(params.new_threshold, params.new_parties)?;
    let mut dealers = Vec::new();
    let mut receivers = Vec::new();
    for (s, m) in params.members.iter().enumerate() {
        let s = s as PartyIndex;
        if let Some(old) = m.old {
            dealers.push((s, old));
        }
        if let Some(new) = m.new {
            receivers.push((s, new));
        }
    }
    let mut olds: Vec<_> = dealers.iter().map(|d| d.1).collect();
    olds.sort_unstable();
    olds.dedup();
    if olds.len() != dealers.len() || dealers.len() < usize::from(params.old_threshold) {
        return bad(format!(
            "need at least {} distinct old parties, got {:?}",
            params.old_threshold,
            dealers.iter().map(|d| d.1).collect::<Vec<_>>()
        ));
    }
    let mut news: Vec<_> = receivers.iter().map(|r| r.1).collect();
    news.sort_unstable();
    if news != (0..params.new_parties).collect::<Vec<_>>() {
        return bad(format!(
            "new indices {news:?} must be exactly 0..{}",
            params.new_parties
        ));
    }
    let me = params
        .members
        .get(usize::from(session.me))
        .copied()
        .ok_or_else(|| ProtocolError::InvalidRequest("reshare: me out of range".into()))?;
    Ok(Plan {
        dealers,
        receivers,
        me,
    })
}

/// Preimages `I_i` of the dealers' old indices, from an old key's public info.
fn dealer_preimages(
    key: &DirtyKeyInfo<E>,
    dealers: &[(PartyIndex, PartyIndex)],
) -> Result<Vec<Scalar<E>>, ProtocolError> {
    dealers
        .iter()
        .map(|(_, old)| {
            key.share_preimage(*old)
                .map(|p| p.into_inner())
                .ok_or_else(|| {
                    ProtocolError::InvalidRequest(format!("old index {old} is not in the key"))
                })
        })
        .collect()
}

/// Runs the protocol; returns the new core share for receivers, `None` for parties leaving.
pub(crate) fn run(
    session: &Session,
    channel: &mut dyn Channel,
    share: Option<&Share>,
    params: &ReshareParams,
) -> Result<Option<IncompleteKeyShare<E>>, ProtocolError> {
    let plan = plan(session, params)?;
    let public_key = parse_point(&params.public_key)?;
    let mut collector = RoundCollector::new();

    // 1. Deal.
    let mut own_piece: Option<SecretScalar<E>> = None;
    let mut own_deal: Option<Deal> = None;
    if let Some(old) = plan.me.old {
        let share = share.ok_or_else(|| {
            ProtocolError::InvalidRequest("reshare: an old party must bring its share".into())
        })?;
        if share.core.i != old
            || share.min_signers() != params.old_threshold
            || share.shared_public_key() != public_key
            || share.core.key_info.chain_code != Some(params.chain_code)
        {
            return Err(ProtocolError::InvalidRequest(
                "reshare: the share is not old party's share of this key".into(),
            ));
        }
        let key = &share.core.key_info;
        let preimages = dealer_preimages(key, &plan.dealers)?;
        let pos = plan
            .dealers
            .iter()
            .position(|d| d.0 == session.me)
            .ok_or_else(|| ProtocolError::InvalidRequest("reshare: not a dealer".into()))?;
        let lambda = lagrange(pos, &preimages)?;
        let mut rng = rand_core::OsRng;
        let x: &Scalar<E> = share.core.x.as_ref();
        let mut constant = lambda * x;
        let mut coefs = vec![SecretScalar::new(&mut constant)];
        for _ in 1..params.new_threshold {
            coefs.push(SecretScalar::random(&mut rng));
        }
        let commitments: Vec<Point<E>> = coefs.iter().map(|c| Point::generator() * c).collect();
        let deal = Deal {
            old_index: old,
            old_key: key.clone(),
            commitments,
        };
        channel.send(Outgoing {
            to: Recipient::Broadcast,
            round: DEAL_ROUND,
            payload: to_cbor(&deal)?,
        })?;
        for (s, new) in &plan.receivers {
            let x = scalar(*new + 1);
            let mut value = coefs
                .iter()
                .rev()
                .fold(Scalar::<E>::zero(), |acc, c| acc * x + c.as_ref());
            let piece = Piece {
                value: SecretScalar::new(&mut value),
            };
            if *s == session.me {
                own_piece = Some(piece.value);
            } else {
                // The encoded piece goes to the channel, which owns (and drops) it.
                channel.send(Outgoing {
                    to: Recipient::Party(*s),
                    round: PIECE_ROUND,
                    payload: to_cbor(&piece)?,
                })?;
            }
        }
        own_deal = Some(deal);
    }
    let Some(my_new) = plan.me.new else {
        return Ok(None);
    };

    // 2. Check.
    let other_dealers: Vec<PartyIndex> = plan
        .dealers
        .iter()
        .map(|d| d.0)
        .filter(|s| *s != session.me)
        .collect();
    let deal_bytes = collector.collect(channel, DEAL_ROUND, true, &other_dealers)?;
    let piece_bytes = collector.collect(channel, PIECE_ROUND, false, &other_dealers)?;
    let mut deals: BTreeMap<PartyIndex, Deal> = BTreeMap::new();
    let mut pieces: BTreeMap<PartyIndex, SecretScalar<E>> = BTreeMap::new();
    for (s, bytes) in &deal_bytes {
        let deal: Deal =
            ciborium::from_reader(bytes.as_slice()).map_err(|e| ProtocolError::Malformed {
                party: *s,
                round: DEAL_ROUND,
                reason: format!("deal does not decode: {e}"),
            })?;
        deals.insert(*s, deal);
    }
    for (s, bytes) in piece_bytes {
        // Wipe the received bytes themselves once decoded, not a copy of them.
        let bytes = zeroize::Zeroizing::new(bytes);
        let piece: Piece =
            ciborium::from_reader(bytes.as_slice()).map_err(|e| ProtocolError::Malformed {
                party: s,
                round: PIECE_ROUND,
                reason: format!("piece does not decode: {e}"),
            })?;
        pieces.insert(s, piece.value);
    }
    if let (Some(deal), Some(piece)) = (own_deal, own_piece) {
        deals.insert(session.me, deal);
        pieces.insert(session.me, piece);
    }

    let old_key = reference_old_key(session, share, &plan, &deals, params, &public_key)?;
    let old_public = |old: PartyIndex| old_key.public_shares.get(usize::from(old)).copied();
    let preimages = dealer_preimages(&old_key, &plan.dealers)?;
    let me_x = scalar(my_new + 1);
    let mut x_new = Scalar::<E>::zero();
    let mut constant_sum = Point::<E>::zero();
    for (pos, (s, old)) in plan.dealers.iter().enumerate() {
        let blame = |reason: String| ProtocolError::Misbehaved { party: *s, reason };
        let (Some(deal), Some(piece)) = (deals.get(s), pieces.get(s)) else {
            return Err(ProtocolError::Aborted(format!("no deal from party {s}")));
        };
        if deal.old_index != *old {
            return Err(blame(format!(
                "dealt as old party {} but is old party {old}",
                deal.old_index
            )));
        }
        if deal.commitments.len() != usize::from(params.new_threshold) {
            return Err(blame(format!(
                "committed to {} coefficients, the new threshold needs {}",
                deal.commitments.len(),
                params.new_threshold
            )));
        }
        let public_share =
            old_public(*old).ok_or_else(|| blame(format!("old index {old} is not in the key")))?;
        if deal.commitments[0] != public_share * lagrange(pos, &preimages)? {
            return Err(blame(
                "dealt constant does not match its public share (λ·X_i)".into(),
            ));
        }
        if Point::generator() * piece != eval_commitments(&deal.commitments, me_x) {
            return Err(blame("private piece does not match its commitments".into()));
        }
        x_new += piece.as_ref();
        constant_sum += deal.commitments[0];
    }
    if constant_sum != *public_key {
        return Err(ProtocolError::Aborted(
            "dealt constants do not sum to the public key".into(),
        ));
    }

    // 3. Echo.
    let mut hasher = Sha256::new();
    for (s, _) in &plan.dealers {
        if let Some(deal) = deals.get(s) {
            hasher.update(to_cbor(&deal.commitments)?);
            hasher.update(to_cbor(&deal.old_key)?);
        }
    }
    let digest: [u8; 32] = hasher.finalize().into();
    let other_receivers: Vec<PartyIndex> = plan
        .receivers
        .iter()
        .map(|r| r.0)
        .filter(|s| *s != session.me)
        .collect();
    channel.send(Outgoing {
        to: Recipient::Broadcast,
        round: ECHO_ROUND,
        payload: to_cbor(&Echo { digest })?,
    })?;
    for (s, bytes) in collector.collect(channel, ECHO_ROUND, true, &other_receivers)? {
        let echo: Echo =
            ciborium::from_reader(bytes.as_slice()).map_err(|e| ProtocolError::Malformed {
                party: s,
                round: ECHO_ROUND,
                reason: format!("echo does not decode: {e}"),
            })?;
        if echo.digest != digest {
            return Err(ProtocolError::Aborted(format!(
                "party {s} saw different dealer broadcasts: a dealer equivocated"
            )));
        }
    }

    // 4. Result.
    let public_shares = (0..params.new_parties)
        .map(|j| {
            let x = scalar(j + 1);
            let p = plan
                .dealers
                .iter()
                .filter_map(|(s, _)| deals.get(s))
                .map(|d| eval_commitments(&d.commitments, x))
                .fold(Point::<E>::zero(), |acc, p| acc + p);
            NonZero::from_point(p)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ProtocolError::Aborted("a new public share is zero".into()))?;
    let preimages_new = (1..=params.new_parties)
        .map(|i| NonZero::from_scalar(scalar(i)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ProtocolError::Aborted("zero preimage".into()))?;
    let x = NonZero::from_secret_scalar(SecretScalar::new(&mut x_new))
        .ok_or_else(|| ProtocolError::Aborted("the new share is zero".into()))?;
    let dirty = DirtyIncompleteKeyShare {
        i: my_new,
        key_info: DirtyKeyInfo {
            curve: Default::default(),
            shared_public_key: public_key,
            public_shares,
            vss_setup: Some(VssSetup {
                min_signers: params.new_threshold,
                I: preimages_new,
            }),
            chain_code: Some(params.chain_code),
        },
        x,
    };
    dirty.validate().map(Some).map_err(|e| {
        ProtocolError::Aborted(format!(
            "new share does not validate: {}",
            crate::driver::error_chain(e.error())
        ))
    })
}

/// The old key's public info that dealers are checked against.
fn reference_old_key(
    session: &Session,
    share: Option<&Share>,
    plan: &Plan,
    deals: &BTreeMap<PartyIndex, Deal>,
    params: &ReshareParams,
    public_key: &NonZero<Point<E>>,
) -> Result<DirtyKeyInfo<E>, ProtocolError> {
    let own = share.map(|s| s.core.key_info.clone());
    let trusted_own = own.is_some();
    let reference = match own {
        Some(k) => k,
        None => {
            let first = plan
                .dealers
                .first()
                .and_then(|(s, _)| deals.get(s))
                .ok_or_else(|| ProtocolError::Aborted("no dealer".into()))?;
            first.old_key.clone()
        }
    };
    let reference_bytes = to_cbor(&reference)?;
    for (s, deal) in deals {
        if *s != session.me && to_cbor(&deal.old_key)? != reference_bytes {
            return Err(if trusted_own {
                ProtocolError::Misbehaved {
                    party: *s,
                    reason: "sent public info of another key".into(),
                }
            } else {
                ProtocolError::Aborted("dealers disagree on the old key's public info".into())
            });
        }
    }
    let valid = reference.validate().map_err(|e| {
        ProtocolError::Aborted(format!(
            "old key's public info is invalid: {}",
            crate::driver::error_chain(e.error())
        ))
    })?;
    if valid.shared_public_key != *public_key
        || valid.vss_setup.as_ref().map(|v| v.min_signers) != Some(params.old_threshold)
        || valid.chain_code != Some(params.chain_code)
    {
        return Err(ProtocolError::Aborted(
            "old key's public info is not this key's".into(),
        ));
    }
    Ok(valid.into_inner())
}

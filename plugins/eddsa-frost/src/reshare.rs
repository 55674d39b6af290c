//! Resharing to a new committee and/or threshold, and refreshing (see the crate docs).

use std::collections::BTreeMap;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Element, Field, Group, Scalar};
use keyrack_plugin::rounds::RoundCollector;
use keyrack_plugin::scheme::ReshareParams;
use keyrack_plugin::{Channel, KeyShare, PartyIndex, ProtocolError, Recipient, Session};
use rand_core::OsRng;

use crate::dkg::{echo_round, identifier, transcript};
use crate::share::{decode_share, encode_share};
use crate::suite::{
    element_bytes, element_from_bytes, element_of_share, generator, identity, internal, key_of,
    lagrange_at_zero, scalar_bytes, scalar_from_bytes, scalar_from_u16, scalar_of, share_of,
    verifying_share_of, FrostSuite,
};
use crate::wire::{collect, encode, round, send, Bytes, Commitments};

type F<C> = <<C as frost_core::Ciphersuite>::Group as Group>::Field;

fn eval_poly<C: frost_core::Ciphersuite>(coefficients: &[Scalar<C>], x: u16) -> Scalar<C> {
    let x = scalar_from_u16::<C>(x);
    coefficients
        .iter()
        .rev()
        .fold(F::<C>::zero(), |acc, a| acc * x + *a)
}

fn eval_commitment<C: frost_core::Ciphersuite>(points: &[Element<C>], x: u16) -> Element<C> {
    let x = scalar_from_u16::<C>(x);
    points
        .iter()
        .rev()
        .fold(identity::<C>(), |acc, p| acc * x + *p)
}

pub(crate) fn reshare<S: FrostSuite>(
    session: &Session,
    channel: &mut dyn Channel,
    share: Option<&KeyShare>,
    params: &ReshareParams,
) -> Result<Option<KeyShare>, ProtocolError> {
    type C<S> = <S as FrostSuite>::C;
    let members = &params.members;
    params.check_members(session.parties)?;
    let dealers: Vec<PartyIndex> = (0..session.parties)
        .filter(|p| members[usize::from(*p)].old.is_some())
        .collect();
    let receivers: Vec<PartyIndex> = (0..session.parties)
        .filter(|p| members[usize::from(*p)].new.is_some())
        .collect();
    let me = session.me;
    let mine = members[usize::from(me)];
    let dealer_ids: Vec<u16> = dealers
        .iter()
        .filter_map(|d| members[usize::from(*d)].old.map(|o| o + 1))
        .collect();
    let old = match (mine.old, share) {
        (Some(index), Some(share))
            if share.index == index && share.public_key == params.public_key =>
        {
            Some(decode_share::<S>(share)?)
        }
        (Some(_), _) => {
            return Err(ProtocolError::InvalidRequest(
                "a dealer needs its share of this key".into(),
            ))
        }
        (None, _) => None,
    };
    let mut rounds = RoundCollector::new();
    let t = usize::from(params.new_threshold);

    // Dealers: commit to a fresh polynomial with constant term λ_i·x_i, and send evaluations.
    let mut own_commitment = None;
    let mut own_value = None;
    if let (Some(old_index), Some(old)) = (mine.old, &old) {
        let lambda = lagrange_at_zero::<C<S>>(old_index + 1, &dealer_ids)?;
        let mut coefficients = vec![lambda * scalar_of(old.key.signing_share())?];
        coefficients.extend((1..t).map(|_| F::<C<S>>::random(&mut OsRng)));
        let points: Vec<Element<C<S>>> = coefficients
            .iter()
            .map(|a| generator::<C<S>>() * *a)
            .collect();
        let encoded = Commitments {
            points: points
                .iter()
                .map(element_bytes::<C<S>>)
                .collect::<Result<_, _>>()?,
        };
        send(
            channel,
            Recipient::Broadcast,
            round::RESHARE_COMMIT,
            &encoded,
        )?;
        own_commitment = Some(encode(&encoded)?);
        for r in &receivers {
            let j = members[usize::from(*r)]
                .new
                .ok_or_else(|| internal("receiver without index"))?;
            let value = eval_poly::<C<S>>(&coefficients, j + 1);
            if *r == me {
                own_value = Some(value);
            } else {
                send(
                    channel,
                    Recipient::Party(*r),
                    round::RESHARE_SHARES,
                    &Bytes {
                        bytes: scalar_bytes::<C<S>>(&value),
                    },
                )?;
            }
        }
    }

    // Everyone: every dealer's commitments, echoed by the receivers.
    let other_dealers: Vec<PartyIndex> = dealers.iter().copied().filter(|d| *d != me).collect();
    let mut raw = rounds.collect(channel, round::RESHARE_COMMIT, true, &other_dealers)?;
    if let Some(own) = own_commitment {
        raw.insert(me, own);
    }
    let digest = transcript(&raw);
    let mut commitments: BTreeMap<PartyIndex, Vec<Element<C<S>>>> = BTreeMap::new();
    for (d, bytes) in &raw {
        let c: Commitments = crate::wire::decode(*d, round::RESHARE_COMMIT, bytes)?;
        if c.points.len() != t {
            return Err(ProtocolError::Misbehaved {
                party: *d,
                reason: format!("{} commitments for threshold {t}", c.points.len()),
            });
        }
        let points = c
            .points
            .iter()
            .map(|p| element_from_bytes::<C<S>>(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProtocolError::Malformed {
                party: *d,
                round: round::RESHARE_COMMIT,
                reason: e.to_string(),
            })?;
        commitments.insert(*d, points);
    }
    // Each dealer's constant term against its old public share, where we know it.
    if let Some(old) = &old {
        for (d, points) in &commitments {
            let old_index = members[usize::from(*d)]
                .old
                .ok_or_else(|| internal("dealer without index"))?;
            let expected_share = old
                .public
                .verifying_shares()
                .get(&identifier::<C<S>>(old_index)?)
                .ok_or_else(|| {
                    ProtocolError::InvalidRequest(format!(
                        "old committee has no member {old_index}"
                    ))
                })?;
            let lambda = lagrange_at_zero::<C<S>>(old_index + 1, &dealer_ids)?;
            if points[0] != element_of_share(expected_share)? * lambda {
                return Err(ProtocolError::Misbehaved {
                    party: *d,
                    reason: "dealt a secret other than its share".into(),
                });
            }
        }
    }
    let group = commitments
        .values()
        .fold(identity::<C<S>>(), |acc, c| acc + c[0]);
    let group_key = key_of::<C<S>>(&group)?;
    let exact = old
        .as_ref()
        .map(|o| *o.public.verifying_key() == group_key)
        .unwrap_or(true);
    if !exact || S::encode_public_key(&group_key)? != params.public_key {
        return Err(ProtocolError::Aborted(
            "the dealt secrets do not add up to the key".into(),
        ));
    }
    let other_receivers: Vec<PartyIndex> = receivers.iter().copied().filter(|r| *r != me).collect();

    let Some(new_index) = mine.new else {
        echo_round(
            &mut rounds,
            channel,
            round::RESHARE_ECHO,
            digest,
            &other_receivers,
            false,
        )?;
        return Ok(None);
    };

    // Receivers: check each dealt value against its dealer's commitments, and sum.
    let mut values: BTreeMap<PartyIndex, Scalar<C<S>>> = BTreeMap::new();
    let received: BTreeMap<_, Bytes> = collect(
        &mut rounds,
        channel,
        round::RESHARE_SHARES,
        false,
        &other_dealers,
    )?;
    for (d, msg) in received {
        let v = scalar_from_bytes::<C<S>>(&msg.bytes).map_err(|e| ProtocolError::Malformed {
            party: d,
            round: round::RESHARE_SHARES,
            reason: e.to_string(),
        })?;
        values.insert(d, v);
    }
    if let Some(v) = own_value {
        values.insert(me, v);
    }
    for (d, v) in &values {
        if generator::<C<S>>() * *v != eval_commitment::<C<S>>(&commitments[d], new_index + 1) {
            return Err(ProtocolError::Misbehaved {
                party: *d,
                reason: "dealt share does not match its commitments".into(),
            });
        }
    }
    echo_round(
        &mut rounds,
        channel,
        round::RESHARE_ECHO,
        digest,
        &other_receivers,
        true,
    )?;

    let secret = values.values().fold(F::<C<S>>::zero(), |acc, v| acc + *v);
    let mut verifying_shares = BTreeMap::new();
    for j in 0..params.new_parties {
        let point = commitments.values().fold(identity::<C<S>>(), |acc, c| {
            acc + eval_commitment::<C<S>>(c, j + 1)
        });
        verifying_shares.insert(identifier::<C<S>>(j)?, verifying_share_of::<C<S>>(&point)?);
    }
    let own_identifier = identifier::<C<S>>(new_index)?;
    let own_verifying = verifying_shares[&own_identifier];
    if element_of_share(&own_verifying)? != generator::<C<S>>() * secret {
        return Err(ProtocolError::Aborted(
            "new share does not match the new public shares".into(),
        ));
    }
    let key = KeyPackage::new(
        own_identifier,
        share_of::<C<S>>(&secret)?,
        own_verifying,
        group_key,
        params.new_threshold,
    );
    let public = PublicKeyPackage::new(verifying_shares, group_key, Some(params.new_threshold));
    Ok(Some(KeyShare {
        scheme: S::ID.to_owned(),
        public_key: params.public_key.clone(),
        chain_code: params.chain_code,
        threshold: params.new_threshold,
        parties: params.new_parties,
        index: new_index,
        secret: encode_share(&key, &public)?,
    }))
}

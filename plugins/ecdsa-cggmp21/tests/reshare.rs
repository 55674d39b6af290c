//! Reshare (new committee and threshold) and refresh (same committee) of threshold keys,
//! with keyrack's own dealing protocol. Signatures are verified with k256.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keyrack_plugin::scheme::ReshareMember;
use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{KeyShare, PartyIndex, ProtocolError, ReshareParams, SchemePlugin};

fn member(old: Option<PartyIndex>, new: Option<PartyIndex>) -> ReshareMember {
    ReshareMember { old, new }
}

fn reshare(
    old_shares: &[KeyShare],
    members: Vec<ReshareMember>,
    new_threshold: u16,
    new_parties: u16,
    faults: &Faults,
    timeout: Duration,
) -> Results<Option<KeyShare>> {
    let plugin = plugin();
    let params = ReshareParams {
        old_threshold: old_shares[0].threshold,
        new_parties,
        new_threshold,
        public_key: old_shares[0].public_key.clone(),
        chain_code: old_shares[0].chain_code,
        members: members.clone(),
    };
    let id = session_id();
    let m = members.len() as u16;
    sim::run(m, timeout, faults, |me, ch| {
        let share = members[usize::from(me)]
            .old
            .map(|old| &old_shares[usize::from(old)]);
        plugin.reshare(&session(id, me, m), ch, share, &params)
    })
}

#[test]
fn reshare_2_of_3_to_3_of_5_keeps_the_key() {
    let plugin = plugin();
    let old = keygen(&plugin, 2, 3);
    // Old parties 0 and 2 deal (old party 1 is not needed); three newcomers join.
    let members = vec![
        member(Some(0), Some(0)),
        member(Some(2), Some(1)),
        member(None, Some(2)),
        member(None, Some(3)),
        member(None, Some(4)),
    ];
    let new: Vec<KeyShare> = all_ok(reshare(&old, members, 3, 5, &Faults::default(), TIMEOUT))
        .into_iter()
        .map(|s| s.expect("every member receives"))
        .collect();
    for (i, s) in new.iter().enumerate() {
        assert_eq!((s.threshold, s.parties, s.index), (3, 5, i as u16));
        assert_eq!(s.public_key, old[0].public_key);
        assert_eq!(s.chain_code, old[0].chain_code);
    }
    let msg = message("resharing");
    let out = sign(&plugin, &new, &[3, 0, 4], msg, &[9]);
    let child = plugin
        .derive_public_key(&old[0].public_key, &old[0].chain_code, &[9])
        .unwrap();
    agreed(&out, &msg, &child);
}

#[test]
fn refresh_makes_old_shares_useless_with_new_ones() {
    let plugin = plugin();
    let old = keygen(&plugin, 2, 3);
    let members = (0..3).map(|i| member(Some(i), Some(i))).collect();
    let new: Vec<KeyShare> = all_ok(reshare(&old, members, 2, 3, &Faults::default(), TIMEOUT))
        .into_iter()
        .map(|s| s.expect("every member receives"))
        .collect();
    assert_eq!(new[0].public_key, old[0].public_key);
    assert_ne!(new[0].secret, old[0].secret);
    let msg = message("refreshed");
    agreed(
        &sign(&plugin, &new, &[1, 2], msg, &[]),
        &msg,
        &old[0].public_key,
    );

    // Old share of party 0 with the new share of party 1.
    let mixed = vec![old[0].clone(), new[1].clone(), new[2].clone()];
    let results = sign_with(
        &plugin,
        &mixed,
        &[0, 1],
        msg,
        &[],
        &Faults::default(),
        Duration::from_secs(10),
    );
    assert!(
        results.iter().any(|r| r.as_ref().unwrap().is_err()),
        "an old share must not combine with new ones"
    );
}

#[test]
fn a_dealer_whose_piece_does_not_match_its_commitments_is_blamed() {
    let plugin = plugin();
    let old = keygen(&plugin, 2, 3);
    let members = (0..3).map(|i| member(Some(i), Some(i))).collect();
    // Party 1 flips the last byte of its private pieces (round 2): still a scalar, wrong value.
    let faults = Faults {
        tamper: Some((
            1,
            2,
            Arc::new(|p: &mut Vec<u8>| {
                if let Some(b) = p.last_mut() {
                    *b ^= 1;
                }
            }),
        )),
        ..Faults::default()
    };
    let results = reshare(&old, members, 2, 3, &faults, Duration::from_secs(3));
    for me in [0usize, 2] {
        match results[me].as_ref().unwrap() {
            Err(ProtocolError::Misbehaved { party: 1, .. }) => {}
            other => panic!("party {me}: expected party 1 blamed, got {other:?}"),
        }
    }
}

#[test]
fn reshare_refuses_too_few_dealers() {
    let plugin = plugin();
    let old = keygen(&plugin, 2, 3);
    let members = vec![
        member(Some(0), Some(0)),
        member(None, Some(1)),
        member(None, Some(2)),
    ];
    let results = reshare(
        &old,
        members,
        2,
        3,
        &Faults::default(),
        Duration::from_secs(2),
    );
    for r in results {
        assert!(matches!(r.unwrap(), Err(ProtocolError::InvalidRequest(_))));
    }
}

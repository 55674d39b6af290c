//! Both FROST schemes over the simulated network: keygen, signing by every signer subset,
//! HD derivation, presigning, resharing, refresh, and faults. Every signature is verified with
//! an independent library (ed25519-dalek for Ed25519, k256's BIP-340 verifier for Schnorr).

use std::sync::Arc;
use std::time::Duration;

use keyrack_plugin::scheme::{ReshareMember, ReshareParams};
use keyrack_plugin::sim::{self, Faults};
use keyrack_plugin::{
    KeyShare, KeygenParams, PartyIndex, ProtocolError, SchemePlugin, Session, SignRequest,
    SignatureOutput,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn session(id: &str, me: PartyIndex, parties: u16) -> Session {
    let mut sid = [0u8; 32];
    sid[..id.len().min(32)].copy_from_slice(&id.as_bytes()[..id.len().min(32)]);
    Session {
        id: sid,
        me,
        parties,
    }
}

fn ok<T>(results: Vec<Option<Result<T, ProtocolError>>>) -> Vec<T> {
    results
        .into_iter()
        .map(|r| r.expect("party ran").expect("protocol succeeded"))
        .collect()
}

fn keygen(plugin: &dyn SchemePlugin, t: u16, n: u16) -> Vec<KeyShare> {
    let shares = ok(sim::run(n, TIMEOUT, &Faults::default(), |me, ch| {
        plugin.keygen(
            &session("keygen", me, n),
            ch,
            &KeygenParams { threshold: t },
        )
    }));
    for s in &shares {
        assert_eq!(
            (&s.public_key, s.chain_code, s.threshold, s.parties),
            (&shares[0].public_key, shares[0].chain_code, t, n)
        );
    }
    assert_eq!(
        shares.iter().map(|s| s.index).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    shares
}

fn sign(
    plugin: &dyn SchemePlugin,
    shares: &[KeyShare],
    signers: &[PartyIndex],
    message: &[u8],
    path: &[u32],
) -> Vec<Result<SignatureOutput, ProtocolError>> {
    let m = signers.len() as u16;
    sim::run(m, TIMEOUT, &Faults::default(), |me, ch| {
        let share = &shares[signers[me as usize] as usize];
        let request = SignRequest {
            signers: signers.to_vec(),
            message: message.to_vec(),
            derivation_path: path.to_vec(),
        };
        plugin.sign(&session("sign", me, m), ch, share, &request)
    })
    .into_iter()
    .map(|r| r.expect("party ran"))
    .collect()
}

/// Independent verification, per scheme.
type Verify = fn(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool;

fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(pk) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .map(|k| {
            k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok()
        })
        .unwrap_or(false)
}

fn verify_bip340(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = k256::schnorr::VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = k256::schnorr::Signature::try_from(signature) else {
        return false;
    };
    key.verify_raw(message, &sig).is_ok()
}

fn assert_signed(
    out: &[Result<SignatureOutput, ProtocolError>],
    public_key: &[u8],
    message: &[u8],
    verify: Verify,
) {
    for r in out {
        let s = r.as_ref().expect("signing succeeded");
        assert_eq!(s.public_key, public_key);
        assert_eq!(s.signature.len(), 64);
        assert!(
            verify(public_key, message, &s.signature),
            "signature does not verify independently"
        );
        assert!(!verify(
            public_key,
            b"another message, 32 bytes long!!",
            &s.signature
        ));
    }
}

fn message() -> Vec<u8> {
    // 32 bytes: a BIP-340 message is a 32-byte digest.
    b"keyrack test message: 32 bytes!!".to_vec()
}

mod cases {
    use super::*;

    pub fn sign_with_every_pair_of_2_of_3(p: &dyn SchemePlugin, verify: Verify) {
        let shares = keygen(p, 2, 3);
        for signers in [[0, 1], [0, 2], [1, 2], [2, 0]] {
            assert_signed(
                &sign(p, &shares, &signers, &message(), &[]),
                &shares[0].public_key,
                &message(),
                verify,
            );
        }
    }

    pub fn sign_3_of_5(p: &dyn SchemePlugin, verify: Verify) {
        let shares = keygen(p, 3, 5);
        for signers in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            assert_signed(
                &sign(p, &shares, &signers, &message(), &[]),
                &shares[0].public_key,
                &message(),
                verify,
            );
        }
    }

    pub fn hd_derived_signing(p: &dyn SchemePlugin, verify: Verify) {
        let shares = keygen(p, 2, 3);
        let path = [0, 7, 42];
        let child = p
            .derive_public_key(&shares[0].public_key, &shares[0].chain_code, &path)
            .unwrap();
        assert_ne!(child, shares[0].public_key);
        // Step-wise derivation equals the whole path.
        let step = p
            .derive_public_key(&shares[0].public_key, &shares[0].chain_code, &[0])
            .unwrap();
        assert_ne!(step, child);
        let out = sign(p, &shares, &[2, 1], &message(), &path);
        assert_signed(&out, &child, &message(), verify);
        assert!(!verify(
            &shares[0].public_key,
            &message(),
            &out[0].as_ref().unwrap().signature
        ));
        let hardened =
            p.derive_public_key(&shares[0].public_key, &shares[0].chain_code, &[1 << 31]);
        assert!(matches!(hardened, Err(ProtocolError::InvalidRequest(_))));
    }

    pub fn presign_then_sign_in_one_exchange(p: &dyn SchemePlugin, verify: Verify) {
        let shares = keygen(p, 2, 3);
        let signers = [0u16, 2];
        let presigs = ok(sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
            p.presign(
                &session("presign", me, 2),
                ch,
                &shares[signers[me as usize] as usize],
                &signers,
            )
        }));
        // Online signing: each signer sends exactly one message.
        let sent = std::sync::Mutex::new(vec![0usize; 2]);
        let presigs = std::sync::Mutex::new(presigs.into_iter().map(Some).collect::<Vec<_>>());
        let out: Vec<_> = sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
            let presig = presigs.lock().unwrap()[me as usize].take().unwrap();
            let mut counting = Counting { inner: ch, sent: 0 };
            let r = p.sign_presigned(
                &session("online", me, 2),
                &mut counting,
                &shares[signers[me as usize] as usize],
                presig,
                &message(),
                &[],
            );
            sent.lock().unwrap()[me as usize] = counting.sent;
            r
        })
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        assert_signed(&out, &shares[0].public_key, &message(), verify);
        assert_eq!(*sent.lock().unwrap(), vec![1, 1]);
    }

    pub fn presignature_of_another_key_is_refused(p: &dyn SchemePlugin, _verify: Verify) {
        let a = keygen(p, 2, 3);
        let b = keygen(p, 2, 3);
        let presigs = ok(sim::run(2, TIMEOUT, &Faults::default(), |me, ch| {
            p.presign(&session("pa", me, 2), ch, &a[me as usize], &[0, 1])
        }));
        let presig = presigs.into_iter().next().unwrap();
        let mut ch = Silent;
        let err = p
            .sign_presigned(&session("x", 0, 2), &mut ch, &b[0], presig, &message(), &[])
            .unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidMaterial(_)), "{err:?}");
    }

    pub fn reshare_2_of_3_to_3_of_5_keeps_the_key(p: &dyn SchemePlugin, verify: Verify) {
        let old = keygen(p, 2, 3);
        // Old members 0,1,2 stay as new 0,1,2; two newcomers become 3 and 4.
        let members: Vec<ReshareMember> = (0..5u16)
            .map(|i| ReshareMember {
                old: (i < 3).then_some(i),
                new: Some(i),
            })
            .collect();
        let new = reshare(p, &old, &members, 2, 5, 3);
        assert_eq!(new.len(), 5);
        for s in &new {
            assert_eq!(
                (&s.public_key, s.chain_code, s.threshold, s.parties),
                (&old[0].public_key, old[0].chain_code, 3, 5)
            );
        }
        assert_signed(
            &sign(p, &new, &[4, 0, 3], &message(), &[]),
            &old[0].public_key,
            &message(),
            verify,
        );
        let path = [3, 1];
        let child = p
            .derive_public_key(&old[0].public_key, &old[0].chain_code, &path)
            .unwrap();
        assert_signed(
            &sign(p, &new, &[1, 2, 3], &message(), &path),
            &child,
            &message(),
            verify,
        );

        // Back down to 2-of-3, dropping old members 0 and 3 (two dealers would not do: t=3).
        let members = [
            ReshareMember {
                old: Some(1),
                new: Some(0),
            },
            ReshareMember {
                old: Some(2),
                new: Some(1),
            },
            ReshareMember {
                old: Some(4),
                new: Some(2),
            },
        ];
        let shrunk = reshare(p, &new, &members, 3, 3, 2);
        assert_signed(
            &sign(p, &shrunk, &[2, 0], &message(), &[]),
            &old[0].public_key,
            &message(),
            verify,
        );
    }

    pub fn refresh_makes_old_shares_useless(p: &dyn SchemePlugin, verify: Verify) {
        let old = keygen(p, 2, 3);
        let members: Vec<ReshareMember> = (0..3u16)
            .map(|i| ReshareMember {
                old: Some(i),
                new: Some(i),
            })
            .collect();
        let new = reshare(p, &old, &members, 2, 3, 2);
        for (o, n) in old.iter().zip(&new) {
            assert_ne!(*o.secret, *n.secret, "refresh kept a share");
        }
        assert_signed(
            &sign(p, &new, &[0, 1], &message(), &[]),
            &old[0].public_key,
            &message(),
            verify,
        );
        // An old share (kept aside) with a new one: no valid signature comes out.
        let mixed = vec![old[0].clone(), new[1].clone(), new[2].clone()];
        let out = sign(p, &mixed, &[0, 1], &message(), &[]);
        let valid = out
            .iter()
            .flatten()
            .filter(|s| verify(&old[0].public_key, &message(), &s.signature))
            .count();
        assert_eq!(valid, 0, "an old share combined with a new one");
        assert!(
            out.iter().all(Result::is_err),
            "signing with a stale share returned a signature: {out:?}"
        );
    }

    pub fn malformed_message_names_its_sender(p: &dyn SchemePlugin, _verify: Verify) {
        let faults = Faults {
            tamper: Some((1, 1, Arc::new(|m: &mut Vec<u8>| m.truncate(5)))),
            ..Faults::default()
        };
        // The tampered sender itself waits in vain for the others, who stop: keep that short.
        let results = sim::run(3, Duration::from_millis(500), &faults, |me, ch| {
            p.keygen(&session("bad", me, 3), ch, &KeygenParams { threshold: 2 })
        });
        for (i, r) in results.into_iter().enumerate() {
            if i == 1 {
                continue;
            }
            match r.unwrap() {
                Err(ProtocolError::Malformed { party: 1, .. }) => {}
                other => panic!("party {i}: expected Malformed from party 1, got {other:?}"),
            }
        }
    }

    pub fn inconsistent_share_names_its_dealer(p: &dyn SchemePlugin, _verify: Verify) {
        // Party 2's secret shares (round 3) are altered in flight: each still decodes, but does
        // not match party 2's commitments.
        let faults = Faults {
            tamper: Some((
                2,
                3,
                Arc::new(|m: &mut Vec<u8>| {
                    let last = m.len() - 3;
                    m[last] ^= 0x01;
                }),
            )),
            ..Faults::default()
        };
        let results = sim::run(3, TIMEOUT, &faults, |me, ch| {
            p.keygen(&session("vss", me, 3), ch, &KeygenParams { threshold: 2 })
        });
        for (i, r) in results.into_iter().enumerate().filter(|(i, _)| *i != 2) {
            match r.unwrap() {
                Err(
                    ProtocolError::Misbehaved { party: 2, .. }
                    | ProtocolError::Malformed { party: 2, .. },
                ) => {}
                other => panic!("party {i}: expected party 2 blamed, got {other:?}"),
            }
        }
    }

    pub fn missing_party_times_out_naming_it(p: &dyn SchemePlugin, _verify: Verify) {
        let faults = Faults {
            absent: vec![2],
            ..Faults::default()
        };
        let results = sim::run(3, Duration::from_millis(300), &faults, |me, ch| {
            p.keygen(
                &session("absent", me, 3),
                ch,
                &KeygenParams { threshold: 2 },
            )
        });
        for r in results.into_iter().take(2) {
            match r.unwrap() {
                Err(ProtocolError::Timeout { missing, .. }) => assert_eq!(missing, vec![2]),
                other => panic!("expected Timeout naming party 2, got {other:?}"),
            }
        }
    }

    pub fn duplicated_messages_do_not_corrupt_a_session(p: &dyn SchemePlugin, verify: Verify) {
        let faults = Faults {
            duplicate_every_message: true,
            ..Faults::default()
        };
        let shares = ok(sim::run(3, TIMEOUT, &faults, |me, ch| {
            p.keygen(&session("dup", me, 3), ch, &KeygenParams { threshold: 2 })
        }));
        let out: Vec<_> = sim::run(2, TIMEOUT, &faults, |me, ch| {
            let request = SignRequest {
                signers: vec![1, 2],
                message: message(),
                derivation_path: vec![],
            };
            p.sign(
                &session("dup-sign", me, 2),
                ch,
                &shares[me as usize + 1],
                &request,
            )
        })
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        assert_signed(&out, &shares[0].public_key, &message(), verify);
    }

    pub fn bad_thresholds_are_refused(p: &dyn SchemePlugin, _verify: Verify) {
        for (t, n) in [(1, 3), (2, 4), (4, 3), (1, 1)] {
            let mut ch = Silent;
            let err = p
                .keygen(&session("t", 0, n), &mut ch, &KeygenParams { threshold: t })
                .unwrap_err();
            assert!(
                matches!(err, ProtocolError::InvalidRequest(_)),
                "{t}-of-{n}: {err:?}"
            );
        }
    }
}

fn reshare(
    p: &dyn SchemePlugin,
    old: &[KeyShare],
    members: &[ReshareMember],
    old_t: u16,
    new_n: u16,
    new_t: u16,
) -> Vec<KeyShare> {
    let params = ReshareParams {
        members: members.to_vec(),
        old_threshold: old_t,
        new_parties: new_n,
        new_threshold: new_t,
        public_key: old[0].public_key.clone(),
        chain_code: old[0].chain_code,
    };
    let m = members.len() as u16;
    let mut out: Vec<KeyShare> = ok(sim::run(m, TIMEOUT, &Faults::default(), |me, ch| {
        let share = members[me as usize].old.map(|i| &old[i as usize]);
        p.reshare(&session("reshare", me, m), ch, share, &params)
    }))
    .into_iter()
    .flatten()
    .collect();
    out.sort_by_key(|s| s.index);
    out
}

/// Counts what a protocol sends.
struct Counting<'a> {
    inner: &'a mut dyn keyrack_plugin::Channel,
    sent: usize,
}

impl keyrack_plugin::Channel for Counting<'_> {
    fn send(&mut self, msg: keyrack_plugin::Outgoing) -> Result<(), keyrack_plugin::ChannelError> {
        self.sent += 1;
        self.inner.send(msg)
    }
    fn recv(&mut self) -> Result<keyrack_plugin::Incoming, keyrack_plugin::ChannelError> {
        self.inner.recv()
    }
    fn stash(&mut self, msg: keyrack_plugin::Incoming) {
        self.inner.stash(msg)
    }
}

/// A channel for calls that must fail before any message.
struct Silent;

impl keyrack_plugin::Channel for Silent {
    fn send(&mut self, _: keyrack_plugin::Outgoing) -> Result<(), keyrack_plugin::ChannelError> {
        panic!("sent a message")
    }
    fn recv(&mut self) -> Result<keyrack_plugin::Incoming, keyrack_plugin::ChannelError> {
        panic!("waited for a message")
    }
    fn stash(&mut self, _: keyrack_plugin::Incoming) {
        panic!("stashed a message")
    }
}

macro_rules! scheme_tests {
    ($scheme:ident, $plugin:expr, $verify:expr; $($case:ident),* $(,)?) => {
        mod $scheme {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(&$plugin, $verify);
                }
            )*
        }
    };
}

scheme_tests!(ed25519, keyrack_eddsa_frost::ed25519(), super::verify_ed25519;
    sign_with_every_pair_of_2_of_3, sign_3_of_5, hd_derived_signing, presign_then_sign_in_one_exchange,
    presignature_of_another_key_is_refused, reshare_2_of_3_to_3_of_5_keeps_the_key, refresh_makes_old_shares_useless,
    malformed_message_names_its_sender, inconsistent_share_names_its_dealer, missing_party_times_out_naming_it,
    duplicated_messages_do_not_corrupt_a_session, bad_thresholds_are_refused);
scheme_tests!(schnorr_secp256k1, keyrack_eddsa_frost::schnorr_secp256k1(), super::verify_bip340;
    sign_with_every_pair_of_2_of_3, sign_3_of_5, hd_derived_signing, presign_then_sign_in_one_exchange,
    presignature_of_another_key_is_refused, reshare_2_of_3_to_3_of_5_keeps_the_key, refresh_makes_old_shares_useless,
    malformed_message_names_its_sender, inconsistent_share_names_its_dealer, missing_party_times_out_naming_it,
    duplicated_messages_do_not_corrupt_a_session, bad_thresholds_are_refused);

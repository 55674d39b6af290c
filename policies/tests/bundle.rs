//! Signed bundles: M-of-N policy admins, chained by hash; refused unsigned, under-signed,
//! unknown-signer, bad-signature, older, not-successor, already-active or tampered.

use ed25519_dalek::SigningKey;
use keyrack_policy::{Bundle, BundleError, PolicyAdmin, SignedBundle, VerifiedBundle};

const POLICY: &str = "[[rules]]\nid = \"all\"\neffect = \"allow\"\n";

fn keys() -> Vec<(String, SigningKey)> {
    ["alice", "bob", "carol"]
        .iter()
        .enumerate()
        .map(|(i, id)| (id.to_string(), SigningKey::from_bytes(&[i as u8 + 1; 32])))
        .collect()
}

fn admins() -> Vec<PolicyAdmin> {
    keys()
        .into_iter()
        .map(|(id, k)| PolicyAdmin {
            id,
            public_key: k.verifying_key(),
        })
        .collect()
}

fn bundle(version: u64, previous: Option<[u8; 32]>, signers: &[usize]) -> SignedBundle {
    let mut b = SignedBundle::new(Bundle {
        format: 1,
        cluster_id: "c1".into(),
        version,
        previous,
        admin_threshold: 2,
        policy: POLICY.into(),
    });
    let keys = keys();
    for &i in signers {
        b.sign_as(&keys[i].0, &keys[i].1);
    }
    b
}

fn first() -> VerifiedBundle {
    bundle(1, None, &[0, 1])
        .verify("c1", &admins(), None)
        .unwrap()
}

#[test]
fn a_majority_of_admins_activates_the_first_bundle_and_the_file_round_trips() {
    let b = bundle(1, None, &[0, 2]);
    let text = b.to_toml();
    assert!(
        text.contains("policy = ") && text.contains("[[signatures]]"),
        "{text}"
    );
    let back = SignedBundle::from_toml(&text).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.hash(), b.hash());
    let v = back.verify("c1", &admins(), None).unwrap();
    assert_eq!(v.signers(), ["alice", "carol"]);
    assert_eq!(v.version(), 1);
    assert_eq!(v.policy().rules().len(), 1);
    assert!(SignedBundle::looks_like_bundle(&text));
    assert!(!SignedBundle::looks_like_bundle(POLICY));
}

#[test]
fn unsigned_under_signed_and_duplicate_signatures_are_refused() {
    let err = |b: SignedBundle| b.verify("c1", &admins(), None).unwrap_err();
    assert_eq!(
        err(bundle(1, None, &[])),
        BundleError::UnderSigned {
            valid: 0,
            required: 2
        }
    );
    assert_eq!(
        err(bundle(1, None, &[1])),
        BundleError::UnderSigned {
            valid: 1,
            required: 2
        }
    );
    let mut dup = bundle(1, None, &[1]);
    let again = dup.signatures[0].clone();
    dup.signatures.push(again);
    assert_eq!(
        err(dup),
        BundleError::UnderSigned {
            valid: 1,
            required: 2
        }
    );
}

#[test]
fn an_unknown_signer_or_a_bad_signature_refuses_the_whole_bundle() {
    let mut b = bundle(1, None, &[0, 1, 2]);
    b.sign_as("mallory", &SigningKey::from_bytes(&[9; 32]));
    assert_eq!(
        b.verify("c1", &admins(), None).unwrap_err(),
        BundleError::UnknownSigner("mallory".into())
    );
    // carol's id with another key's signature.
    let mut b = bundle(1, None, &[0, 1]);
    b.sign_as("carol", &SigningKey::from_bytes(&[9; 32]));
    assert_eq!(
        b.verify("c1", &admins(), None).unwrap_err(),
        BundleError::BadSignature("carol".into())
    );
}

#[test]
fn tampered_policy_text_changes_the_hash_and_voids_the_signatures() {
    let b = bundle(1, None, &[0, 1]);
    let text = b
        .to_toml()
        .replace("effect = \\\"allow\\\"", "effect = \\\"deny\\\"")
        .replace("effect = \"allow\"", "effect = \"deny\"");
    let tampered = SignedBundle::from_toml(&text).unwrap();
    assert_ne!(
        tampered.bundle.policy, b.bundle.policy,
        "the replacement changed nothing:\n{text}"
    );
    assert_ne!(tampered.hash(), b.hash());
    assert_eq!(
        tampered.verify("c1", &admins(), None).unwrap_err(),
        BundleError::BadSignature("alice".into())
    );
    assert!(tampered.verify_installed("c1", &admins()).is_err());
    assert!(b.verify_installed("c1", &admins()).is_ok());
}

#[test]
fn successors_must_chain_be_newer_and_meet_the_active_threshold() {
    let active = first();
    let next = bundle(2, Some(active.hash()), &[1, 2])
        .verify("c1", &admins(), Some(&active))
        .unwrap();
    assert_eq!(next.version(), 2);
    assert_eq!(
        bundle(1, None, &[0, 1])
            .verify("c1", &admins(), Some(&active))
            .unwrap_err(),
        BundleError::AlreadyActive
    );
    let older = bundle(1, Some([0; 32]), &[0, 1]);
    assert_eq!(
        older.verify("c1", &admins(), Some(&next)).unwrap_err(),
        BundleError::Older {
            version: 1,
            active: 2
        }
    );
    assert!(matches!(
        bundle(3, Some([0; 32]), &[0, 1])
            .verify("c1", &admins(), Some(&next))
            .unwrap_err(),
        BundleError::NotSuccessor(_)
    ));
    // A first bundle must be version 1 without previous.
    assert!(matches!(
        bundle(2, Some(active.hash()), &[0, 1])
            .verify("c1", &admins(), None)
            .unwrap_err(),
        BundleError::NotSuccessor(_)
    ));
    // The successor lowers its threshold to 2 but the active one asked 3: 3 are required.
    let mut strict = SignedBundle::new(Bundle {
        admin_threshold: 3,
        ..bundle(1, None, &[]).bundle
    });
    for (id, k) in keys() {
        strict.sign_as(&id, &k);
    }
    let strict = strict.verify("c1", &admins(), None).unwrap();
    assert_eq!(
        bundle(2, Some(strict.hash()), &[0, 1])
            .verify("c1", &admins(), Some(&strict))
            .unwrap_err(),
        BundleError::UnderSigned {
            valid: 2,
            required: 3
        }
    );
}

#[test]
fn threshold_must_be_a_majority_and_the_cluster_must_match() {
    for t in [0u16, 1, 4] {
        let mut b = SignedBundle::new(Bundle {
            admin_threshold: t,
            ..bundle(1, None, &[]).bundle
        });
        for (id, k) in keys() {
            b.sign_as(&id, &k);
        }
        assert!(
            matches!(
                b.verify("c1", &admins(), None).unwrap_err(),
                BundleError::InvalidThreshold(_)
            ),
            "t = {t}"
        );
    }
    assert!(matches!(
        bundle(1, None, &[0, 1])
            .verify("c2", &admins(), None)
            .unwrap_err(),
        BundleError::WrongCluster { .. }
    ));
    let bad_policy = {
        let mut b = SignedBundle::new(Bundle {
            policy: "bogus = 1\n".into(),
            ..bundle(1, None, &[]).bundle
        });
        let keys = keys();
        b.sign_as(&keys[0].0, &keys[0].1);
        b.sign_as(&keys[1].0, &keys[1].1);
        b
    };
    let e = bad_policy.verify("c1", &admins(), None).unwrap_err();
    assert!(
        matches!(e, BundleError::Policy(_)) && e.to_string().contains("bogus"),
        "{e}"
    );
    assert!(matches!(
        SignedBundle::from_toml("format = 1\n"),
        Err(BundleError::Parse(_))
    ));
}

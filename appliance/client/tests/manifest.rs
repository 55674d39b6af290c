mod common;

use common::*;
use ed25519_dalek::SigningKey;
use keyrack_client::manifest::*;

fn successor(current: &SignedManifest) -> SignedManifest {
    let mut m = current.manifest.clone();
    m.version += 1;
    m.previous = Some(current.hash());
    m.nodes.push(node(3).public);
    SignedManifest::new(m).unwrap()
}

#[test]
fn bootstrap_two_of_three() {
    let m = signed_v1();
    let v = m.verify_bootstrap().unwrap();
    assert_eq!(v.cluster_id(), CLUSTER);
    assert_eq!(v.node("node1"), Some(&node(1).public));
    assert!(v.node("node9").is_none());
    assert!(v.initiator("backend").is_some());
    // The file round-trips exactly.
    let text = m.to_toml();
    let back = SignedManifest::from_toml(&text).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_toml(), text);
    back.verify_bootstrap().unwrap();
}

#[test]
fn under_signed_unknown_and_duplicate_signatures() {
    let mut m = SignedManifest::new(manifest_v1()).unwrap();
    m.sign(&admin_key(0)).unwrap();
    assert!(matches!(
        m.verify_bootstrap(),
        Err(ManifestError::UnderSigned {
            valid: 1,
            required: 2,
            ..
        })
    ));
    // A signature by someone not in the admin list is not counted.
    let mallory = SigningKey::from_bytes(&[0x66; 32]);
    assert!(matches!(
        m.sign(&mallory),
        Err(ManifestError::NotAnAdmin(_))
    ));
    m.sign_as("mallory", &mallory);
    assert!(matches!(
        m.verify_bootstrap(),
        Err(ManifestError::UnderSigned { valid: 1, .. })
    ));
    // Nor is a known admin's id with another key.
    m.sign_as("bob", &mallory);
    assert!(matches!(
        m.verify_bootstrap(),
        Err(ManifestError::UnderSigned { valid: 1, .. })
    ));
    // The same admin twice counts once (entries added by hand, as a file could hold them).
    let alice_again = m.signatures[0].clone();
    m.signatures.push(alice_again);
    let text = m.to_toml();
    let m = SignedManifest::from_toml(&text).unwrap();
    assert_eq!(
        m.signatures.iter().filter(|s| s.admin == "alice").count(),
        2
    );
    assert!(matches!(
        m.verify_bootstrap(),
        Err(ManifestError::UnderSigned { valid: 1, .. })
    ));
    let mut m = m;
    m.sign(&admin_key(2)).unwrap(); // carol
    m.verify_bootstrap().unwrap();
}

#[test]
fn successor_rules() {
    let v1 = signed_v1();
    let current = v1.verify_bootstrap().unwrap();
    let mut v2 = successor(&v1);
    v2.sign(&admin_key(1)).unwrap();
    assert!(matches!(
        v2.verify_successor(&current),
        Err(ManifestError::UnderSigned { .. })
    ));
    v2.sign(&admin_key(2)).unwrap();
    let next = v2.verify_successor(&current).unwrap();
    assert_eq!(next.version(), 2);
    assert!(next.node("node3").is_some());

    // Wrong previous.
    let mut bad = v2.clone();
    bad.manifest.previous = Some([0; 32]);
    bad.signatures.clear();
    bad.sign(&admin_key(0)).unwrap();
    bad.sign(&admin_key(1)).unwrap();
    assert!(matches!(
        bad.verify_successor(&current),
        Err(ManifestError::NotSuccessor { .. })
    ));
    // Not higher.
    let mut same = v1.clone();
    same.signatures.clear();
    same.sign(&admin_key(0)).unwrap();
    same.sign(&admin_key(1)).unwrap();
    assert!(same.verify_successor(&current).is_err());
    // Signed only by new admins (rotated in by the successor itself): refused.
    let mut rotated = successor(&v1);
    let dave = SigningKey::from_bytes(&[0x77; 32]);
    let erin = SigningKey::from_bytes(&[0x78; 32]);
    rotated.manifest.admins = vec![
        Admin {
            id: "dave".into(),
            public_key: dave.verifying_key(),
        },
        Admin {
            id: "erin".into(),
            public_key: erin.verifying_key(),
        },
    ];
    rotated.sign(&dave).unwrap();
    rotated.sign(&erin).unwrap();
    rotated.verify_bootstrap().unwrap(); // self-consistent…
    assert!(matches!(
        rotated.verify_successor(&current),
        Err(ManifestError::UnderSigned {
            valid: 0,
            required: 2,
            ..
        })
    )); // …but not by the current admins.
    rotated.sign_as("alice", &admin_key(0));
    rotated.sign_as("carol", &admin_key(2));
    rotated.verify_successor(&current).unwrap();
    // Another cluster.
    let mut other = successor(&v1);
    other.manifest.cluster_id = "other".into();
    other.sign(&admin_key(0)).unwrap();
    other.sign(&admin_key(1)).unwrap();
    assert!(matches!(
        other.verify_successor(&current),
        Err(ManifestError::NotSuccessor { .. })
    ));
}

#[test]
fn tampered_fields_are_refused() {
    let text = signed_v1().to_toml();
    let n3 = hex::encode(node(3).public.signing_key().as_bytes());
    let n0 = hex::encode(node(0).public.signing_key().as_bytes());
    for (from, to) in [
        ("admin_threshold = 2", "admin_threshold = 1"),
        (
            "version = 1",
            "version = 1\nprevious = \"".to_owned().leak(),
        ),
        (
            "roles = [\"keygen\", \"sign\"]",
            "roles = [\"keygen\", \"sign\", \"admin\"]",
        ),
        (
            "cluster_id = \"test-cluster\"",
            "cluster_id = \"test-cluster2\"",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let t = text.replacen(from, to, 1);
        let refused = SignedManifest::from_toml(&t).and_then(|m| m.verify_bootstrap());
        assert!(refused.is_err(), "{from} → {to} accepted");
    }
    // Swapping a node's key invalidates its binding; removing an initiator the signatures.
    let swapped = text.replacen(&n0, &n3, 1);
    assert!(matches!(
        SignedManifest::from_toml(&swapped),
        Err(ManifestError::Node(_))
    ));
    let mut m = signed_v1();
    m.manifest.initiators.clear();
    assert!(matches!(
        m.verify_bootstrap(),
        Err(ManifestError::UnderSigned { valid: 0, .. })
    ));
    // Unknown keys and other formats.
    assert!(matches!(
        SignedManifest::from_toml(&format!("{text}\nextra = 1\n")),
        Err(ManifestError::Parse(_))
    ));
    let section = text.replacen("[[admins]]\n", "[[admins]]\nnote = \"x\"\n", 1);
    assert!(matches!(
        SignedManifest::from_toml(&section),
        Err(ManifestError::Parse(_))
    ));
    assert!(matches!(
        SignedManifest::from_toml(&text.replacen("format = 1", "format = 2", 1)),
        Err(ManifestError::Format(2))
    ));
}

#[test]
fn content_rules() {
    let check = |f: &dyn Fn(&mut Manifest)| {
        let mut m = manifest_v1();
        f(&mut m);
        assert!(matches!(
            SignedManifest::new(m),
            Err(ManifestError::Invalid(_))
        ));
    };
    check(&|m| m.nodes.push(node(0).public));
    check(&|m| m.admins[1].id = "alice".into());
    check(&|m| m.admin_threshold = 4);
    check(&|m| m.admin_threshold = 0);
    check(&|m| m.previous = Some([1; 32]));
    check(&|m| m.version = 2);
    check(&|m| m.initiators[0].id = "Back.end".into());
    check(&|m| m.initiators[0].roles.push("sign".into()));
    check(&|m| m.cluster_id = "a.b".into());
    check(&|m| m.nodes.clear());
}

#[test]
fn canonical_bytes_are_pinned() {
    let m = manifest_v1();
    let canonical = String::from_utf8(m.canonical_bytes()).unwrap();
    assert!(canonical.starts_with(
        "{\"format\":1,\"cluster_id\":\"test-cluster\",\"version\":1,\"previous\":null,\"admin_threshold\":2,\"nodes\":[{\"id\":\"node0\",\"signing_key\":\""
    ));
    golden("manifest-v1.canonical.json", &(canonical + "\n"));
    assert_eq!(
        hex::encode(m.hash()),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(m.canonical_bytes()))
    );
}

#[test]
fn golden_manifest() {
    let v1 = signed_v1();
    golden("manifest-v1.toml", &v1.to_toml());
    let text = std::fs::read_to_string(testdata("manifest-v1.toml")).unwrap();
    let loaded = SignedManifest::from_toml(&text).unwrap();
    let current = loaded.verify_bootstrap().unwrap();
    assert_eq!(loaded, v1);
    let mut v2 = successor(&loaded);
    v2.sign(&admin_key(0)).unwrap();
    v2.sign(&admin_key(2)).unwrap();
    golden("manifest-v2.toml", &v2.to_toml());
    let loaded2 =
        SignedManifest::from_toml(&std::fs::read_to_string(testdata("manifest-v2.toml")).unwrap())
            .unwrap();
    loaded2.verify_successor(&current).unwrap();
}

#[test]
fn single_signatures_and_admin_key_files() {
    // An admin key loaded as a key file (the initiator key format) signs as that admin.
    let alice_file =
        keyrack_client::request::InitiatorKey::from_seed("alice", &seed(0x30, 0)).unwrap();
    assert_eq!(alice_file.signing_key(), &admin_key(0));
    let mut m = SignedManifest::new(manifest_v1()).unwrap();
    m.sign_as("alice", alice_file.signing_key());
    let (alice, bob) = (&m.manifest.admins[0], &m.manifest.admins[1]);
    let sig = m.signatures[0].signature;
    assert!(m.manifest.admin_signature_valid(alice, &sig));
    assert!(!m.manifest.admin_signature_valid(bob, &sig));
    // Over other content, the same signature is not valid.
    let mut other = m.manifest.clone();
    other.admin_threshold = 1;
    assert!(!other.admin_signature_valid(alice, &sig));
}

/// Node `id` with node `signing_of`'s signing key and node `agreement_of`'s agreement key.
fn node_with_keys(
    id: &str,
    signing_of: u8,
    agreement_of: u8,
) -> keyrack_client::identity::PublicIdentity {
    let agreement = x25519_dalek::PublicKey::from(&node(agreement_of).agreement).to_bytes();
    keyrack_client::identity::PublicIdentity::sign(id, &node(signing_of).signing, agreement)
        .unwrap()
}

/// Version 1 changed by `change` is refused by every way in (`new`, `from_toml`,
/// `verify_bootstrap`, and as version 2 `verify_successor`) with `SharedKey` naming
/// `first`, `second` and `key`; returns the error's text.
fn refused_as_shared(
    change: impl Fn(&mut Manifest),
    first: Member,
    second: Member,
    kind: KeyKind,
    key: [u8; 32],
) -> String {
    let check = |way: &str, refused: Option<ManifestError>| match refused {
        Some(ManifestError::SharedKey {
            first: f,
            second: s,
            kind: k,
            key: shared,
        }) => {
            assert_eq!((&f, &s, k, shared), (&first, &second, kind, key), "{way}");
        }
        other => panic!("{way}: {other:?}, not SharedKey"),
    };
    let mut m = manifest_v1();
    change(&mut m);
    check("new", SignedManifest::new(m.clone()).err());
    // As a file or an offer could carry it: signed by a quorum of admins all the same.
    let signed_by_quorum = |manifest: Manifest| {
        let mut signed = SignedManifest {
            manifest,
            signatures: vec![],
        };
        signed.sign_as("alice", &admin_key(0));
        signed.sign_as("carol", &admin_key(2));
        signed
    };
    let v1 = signed_by_quorum(m.clone());
    check("from_toml", SignedManifest::from_toml(&v1.to_toml()).err());
    check("bootstrap", v1.verify_bootstrap().err());
    let mut v2 = m;
    v2.version = 2;
    v2.previous = Some(signed_v1().hash());
    let v2 = signed_by_quorum(v2);
    check("successor", v2.verify_successor(&verified_v1()).err());
    ManifestError::SharedKey {
        first,
        second,
        kind,
        key,
    }
    .to_string()
}

/// One key, one member: a key listed twice (two initiators, an initiator and an admin, two
/// admins, two nodes, a node and an admin; two nodes' agreement keys) would let its holder
/// count twice in a quorum or a threshold, so it is refused, naming both members.
#[test]
fn one_key_one_member() {
    use Member::{Admin as A, Initiator as I, Node as N};
    let backend = initiator().public_key();
    let alice = admin_key(0).verifying_key();
    let node0 = node(0).signing.verifying_key();
    let node1 = node(1).signing.verifying_key();
    let agreement2 = x25519_dalek::PublicKey::from(&node(2).agreement).to_bytes();
    let short = |key: &[u8]| hex::encode(key)[..8].to_owned();
    type Change = Box<dyn Fn(&mut Manifest)>;
    let cases: [(Change, Member, Member, KeyKind, [u8; 32], String); 6] = [
        (
            Box::new(move |m| {
                m.initiators.push(Initiator {
                    id: "backend2".into(),
                    public_key: backend,
                    roles: vec!["approve".into()],
                })
            }),
            I("backend".into()),
            I("backend2".into()),
            KeyKind::Ed25519,
            backend.to_bytes(),
            // The whole text, as a person reads it.
            format!(
                "initiators 'backend' and 'backend2' share one public key (ed25519:{}…): \
                 every initiator and admin needs its own key",
                short(backend.as_bytes())
            ),
        ),
        (
            Box::new(move |m| m.admins[1].public_key = backend),
            I("backend".into()),
            A("bob".into()),
            KeyKind::Ed25519,
            backend.to_bytes(),
            "initiator 'backend' and admin 'bob' share one public key".into(),
        ),
        (
            Box::new(move |m| m.admins[2].public_key = alice),
            A("alice".into()),
            A("carol".into()),
            KeyKind::Ed25519,
            alice.to_bytes(),
            "admins 'alice' and 'carol' share one public key".into(),
        ),
        (
            Box::new(|m| m.nodes.push(node_with_keys("node3", 0, 3))),
            N("node0".into()),
            N("node3".into()),
            KeyKind::Ed25519,
            node0.to_bytes(),
            format!(
                "nodes 'node0' and 'node3' share one public key (ed25519:{}…): every node needs \
                 its own identity",
                short(node0.as_bytes())
            ),
        ),
        (
            Box::new(move |m| m.admins[1].public_key = node1),
            N("node1".into()),
            A("bob".into()),
            KeyKind::Ed25519,
            node1.to_bytes(),
            "node 'node1' and admin 'bob' share one public key".into(),
        ),
        (
            Box::new(|m| m.nodes.push(node_with_keys("node3", 3, 2))),
            N("node2".into()),
            N("node3".into()),
            KeyKind::X25519,
            agreement2,
            format!(
                "nodes 'node2' and 'node3' share one agreement key (x25519:{}…)",
                short(&agreement2)
            ),
        ),
    ];
    for (change, first, second, kind, key, text) in cases {
        let refused = refused_as_shared(change, first, second, kind, key);
        assert!(refused.starts_with(&text), "{refused}\nnot {text}");
    }

    // Distinct keys throughout: accepted, however many initiators and admins.
    let mut m = manifest_v1();
    m.nodes.push(node(3).public);
    m.initiators.push(Initiator {
        id: "backend2".into(),
        public_key: SigningKey::from_bytes(&seed(0x40, 1)).verifying_key(),
        roles: vec!["approve".into()],
    });
    m.admins.push(Admin {
        id: "dave".into(),
        public_key: admin_key(3).verifying_key(),
    });
    let mut signed = SignedManifest::new(m).unwrap();
    signed.sign(&admin_key(0)).unwrap();
    signed.sign(&admin_key(3)).unwrap();
    SignedManifest::from_toml(&signed.to_toml())
        .unwrap()
        .verify_bootstrap()
        .unwrap();
}

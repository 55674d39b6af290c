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
    check(&|m| {
        let k = m.admins[0].public_key;
        m.admins[1].public_key = k;
    });
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

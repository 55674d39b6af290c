mod common;

use common::*;
use keyrack_client::envelope::*;
use keyrack_client::identity::PublicIdentity;

fn header(from: &str, to: Option<&str>, seq: u64) -> Header {
    Header {
        version: VERSION,
        cluster: CLUSTER.into(),
        session: [7; 32],
        kind: MessageKind::Protocol,
        round: 3,
        from: from.into(),
        to: to.map(Into::into),
        seq,
    }
}

struct Cluster {
    nodes: Vec<Node>,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            nodes: (0..3).map(node).collect(),
        }
    }
    fn lookup<'a>(&'a self) -> impl Fn(&str) -> Option<&'a PublicIdentity> + 'a {
        |id| self.nodes.iter().find(|n| n.id == id).map(|n| &n.public)
    }
    fn seal(&self, from: usize, to: Option<usize>, seq: u64, payload: &[u8]) -> Vec<u8> {
        let h = header(
            &self.nodes[from].id,
            to.map(|t| self.nodes[t].id.as_str()),
            seq,
        );
        seal(
            &self.nodes[from].signing,
            &self.nodes[from].agreement,
            to.map(|t| &self.nodes[t].public),
            &h,
            payload,
        )
        .unwrap()
    }
    fn open(&self, at: usize, bytes: &[u8]) -> Result<(Header, Vec<u8>), EnvelopeError> {
        let me = &self.nodes[at];
        open(bytes, self.lookup(), (&me.id, &me.agreement), CLUSTER).map(|(h, p)| (h, p.to_vec()))
    }
}

const SECRET: &[u8] = b"round 3 share for node1 only";

/// The envelope's CBOR fields, for tampering.
fn parts(bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let v: ciborium::Value = ciborium::from_reader(bytes).unwrap();
    let map = v.as_map().unwrap();
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .unwrap()
            .1
            .as_bytes()
            .unwrap()
            .clone()
    };
    (get("header"), get("payload"), get("signature"))
}

fn assemble(header: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let v = ciborium::Value::Map(vec![
        ("header".into(), ciborium::Value::Bytes(header.to_vec())),
        ("payload".into(), ciborium::Value::Bytes(payload.to_vec())),
        (
            "signature".into(),
            ciborium::Value::Bytes(signature.to_vec()),
        ),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&v, &mut out).unwrap();
    out
}

fn resign(n: &Node, header: &[u8], payload: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(header);
    m.extend_from_slice(payload);
    assemble(header, payload, &n.signing.sign(&m).to_bytes())
}

#[test]
fn p2p_round_trip_and_confidentiality() {
    let c = Cluster::new();
    let bytes = c.seal(0, Some(1), 1, SECRET);
    let (h, p) = c.open(1, &bytes).unwrap();
    assert_eq!(h, header("node0", Some("node1"), 1));
    assert_eq!(p, SECRET);
    // The ciphertext is not the plaintext and the plaintext appears nowhere in the bytes.
    let (_, payload, _) = parts(&bytes);
    assert_eq!(payload.len(), SECRET.len() + 16);
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET));
    // A third member cannot open it…
    assert_eq!(
        c.open(2, &bytes).unwrap_err(),
        EnvelopeError::NotForMe("node1".into())
    );
    // …even by pretending to be the recipient.
    let n2 = &c.nodes[2];
    assert_eq!(
        open(&bytes, c.lookup(), ("node1", &n2.agreement), CLUSTER).unwrap_err(),
        EnvelopeError::Decrypt("node0".into())
    );
}

#[test]
fn broadcast_is_plain_and_signed() {
    let c = Cluster::new();
    let bytes = c.seal(0, None, 9, b"commitments");
    for at in 1..3 {
        let (h, p) = c.open(at, &bytes).unwrap();
        assert_eq!(h.to, None);
        assert_eq!(p, b"commitments");
    }
    assert_eq!(parts(&bytes).1, b"commitments");
}

#[test]
fn tampering_is_a_bad_signature() {
    let c = Cluster::new();
    for to in [None, Some(1)] {
        let bytes = c.seal(0, to, 1, SECRET);
        let (h, mut p, s) = parts(&bytes);
        p[0] ^= 1;
        assert_eq!(
            c.open(1, &assemble(&h, &p, &s)).unwrap_err(),
            EnvelopeError::BadSignature("node0".into())
        );
        let (_, p, _) = parts(&bytes);
        let mut other = header("node0", to.map(|_| "node1"), 1);
        other.round = 4;
        let mut h2 = Vec::new();
        ciborium::into_writer(&other, &mut h2).unwrap();
        assert_eq!(
            c.open(1, &assemble(&h2, &p, &s)).unwrap_err(),
            EnvelopeError::BadSignature("node0".into())
        );
        // Moving a byte between header and payload breaks the header's CBOR.
        let (h, p, s) = parts(&bytes);
        let (head, last) = h.split_at(h.len() - 1);
        let shifted: Vec<u8> = last.iter().chain(p.iter()).copied().collect();
        assert!(matches!(
            c.open(1, &assemble(head, &shifted, &s)).unwrap_err(),
            EnvelopeError::Malformed(_)
        ));
    }
}

#[test]
fn header_is_bound_as_aad() {
    // A member re-signing a changed header (here: another round, another seq) over the
    // same ciphertext still cannot get it decrypted: the header is the AEAD's AAD.
    let c = Cluster::new();
    let bytes = c.seal(0, Some(1), 1, SECRET);
    let (_, p, _) = parts(&bytes);
    let mut other = header("node0", Some("node1"), 1);
    other.round = 9;
    let mut h2 = Vec::new();
    ciborium::into_writer(&other, &mut h2).unwrap();
    let forged = resign(&c.nodes[0], &h2, &p);
    assert_eq!(
        c.open(1, &forged).unwrap_err(),
        EnvelopeError::Decrypt("node0".into())
    );
    // And node2 replaying node0's ciphertext under its own name: the key binds from/to.
    let mut as2 = header("node2", Some("node1"), 1);
    as2.round = 3;
    let mut h3 = Vec::new();
    ciborium::into_writer(&as2, &mut h3).unwrap();
    let forged = resign(&c.nodes[2], &h3, &p);
    assert_eq!(
        c.open(1, &forged).unwrap_err(),
        EnvelopeError::Decrypt("node2".into())
    );
}

#[test]
fn unknown_sender_and_wrong_cluster() {
    let c = Cluster::new();
    let stranger = node(7);
    let h = header("node7", None, 1);
    let bytes = seal(&stranger.signing, &stranger.agreement, None, &h, b"x").unwrap();
    assert_eq!(
        c.open(0, &bytes).unwrap_err(),
        EnvelopeError::UnknownSender("node7".into())
    );
    // A stranger using a member's name: bad signature.
    let h = header("node2", None, 1);
    let bytes = seal(&stranger.signing, &stranger.agreement, None, &h, b"x").unwrap();
    assert_eq!(
        c.open(0, &bytes).unwrap_err(),
        EnvelopeError::BadSignature("node2".into())
    );
    let mut h = header("node1", None, 1);
    h.cluster = "other".into();
    let n1 = &c.nodes[1];
    let bytes = seal(&n1.signing, &n1.agreement, None, &h, b"x").unwrap();
    assert_eq!(
        c.open(0, &bytes).unwrap_err(),
        EnvelopeError::WrongCluster {
            found: "other".into()
        }
    );
}

#[test]
fn malformed_and_misuse() {
    let c = Cluster::new();
    for junk in [&b""[..], b"\xa0", b"not cbor", &[0xff; 10]] {
        assert!(matches!(
            c.open(0, junk).unwrap_err(),
            EnvelopeError::Malformed(_)
        ));
    }
    let mut bytes = c.seal(0, None, 1, b"x");
    bytes.push(0);
    assert!(matches!(
        c.open(1, &bytes).unwrap_err(),
        EnvelopeError::Malformed(_)
    ));
    // seal refuses a header whose `to` does not match the peer given.
    let n0 = &c.nodes[0];
    let h = header("node0", Some("node2"), 1);
    assert!(seal(
        &n0.signing,
        &n0.agreement,
        Some(&c.nodes[1].public),
        &h,
        b"x"
    )
    .is_err());
    assert!(seal(&n0.signing, &n0.agreement, None, &h, b"x").is_err());
}

#[test]
fn seq_is_the_nonce_so_it_must_never_repeat() {
    // Documented hazard: the same (session, from, to, seq) means the same key and nonce.
    // Equal plaintexts give equal ciphertexts, and different ones leak their XOR, which is
    // why senders keep a strictly increasing seq per (session, to) and receivers drop
    // duplicates.
    let c = Cluster::new();
    let a = parts(&c.seal(0, Some(1), 5, b"aaaaaaaa")).1;
    let b = parts(&c.seal(0, Some(1), 5, b"bbbbbbbb")).1;
    let xor: Vec<u8> = a.iter().zip(&b).take(8).map(|(x, y)| x ^ y).collect();
    assert_eq!(xor, vec![b'a' ^ b'b'; 8]);
    let a6 = parts(&c.seal(0, Some(1), 6, b"aaaaaaaa")).1;
    assert_ne!(a, a6);
    // The key is directional: node1 → node0 with the same seq is another key.
    let back = parts(&c.seal(1, Some(0), 5, b"aaaaaaaa")).1;
    assert_ne!(a, back);
}

#[test]
fn header_cbor_layout() {
    // Byte strings, text keys in declaration order, null for broadcast.
    let h = header("node0", None, 1);
    let mut bytes = Vec::new();
    ciborium::into_writer(&h, &mut bytes).unwrap();
    let v: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    let keys: Vec<_> = v
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_text().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        ["version", "cluster", "session", "kind", "round", "from", "to", "seq"]
    );
    assert!(v.as_map().unwrap()[2].1.is_bytes());
    assert!(v.as_map().unwrap()[6].1.is_null());
    golden(
        "envelope-header-broadcast.cbor.hex",
        &(hex::encode(&bytes) + "\n"),
    );
}

#[test]
fn large_payloads_open_both_ways() {
    // Protocol messages (ECDSA committee setup, say) are far larger than a CBOR decoder's
    // scratch buffer; they must open like small ones, broadcast and point to point.
    let c = Cluster::new();
    for len in [4095, 4096, 4097, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (_, opened) = c.open(1, &c.seal(0, None, 1, &payload)).unwrap();
        assert_eq!(opened, payload, "broadcast of {len} bytes");
        let (_, opened) = c.open(1, &c.seal(0, Some(1), 2, &payload)).unwrap();
        assert_eq!(opened, payload, "p2p of {len} bytes");
    }
}

//! What `keyrack client` reads from its command line beyond clap's own types: scheme names
//! with their short aliases, BIP-32-style derivation paths (non-hardened only), hex. Each
//! parser's error says what was wrong and what to write instead; clap shows it and exits 2
//! before anything is sent.

use keyrack_client::request::MAX_DERIVATION_DEPTH;
use keyrack_client::scheme::Scheme;

/// The short names accepted besides the scheme ids.
const ALIASES: [(&str, Scheme); 2] = [
    ("ecdsa", Scheme::EcdsaSecp256k1),
    ("eddsa", Scheme::Ed25519),
];

/// A scheme id (`ecdsa-secp256k1`, `ed25519`, `schnorr-secp256k1`) or an alias (`ecdsa`,
/// `eddsa` = ed25519).
pub(super) fn scheme(s: &str) -> Result<Scheme, String> {
    if let Some((_, scheme)) = ALIASES.iter().find(|(alias, _)| *alias == s) {
        return Ok(*scheme);
    }
    s.parse().map_err(|_| {
        format!(
            "unknown scheme '{s}': use ecdsa-secp256k1 (or ecdsa), ed25519 (or eddsa), \
             or schnorr-secp256k1"
        )
    })
}

/// A derivation path: `m` (the root key) or `m/i/j/…`, each index a non-hardened index
/// (decimal, below 2^31).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct DerivationPath(pub Vec<u32>);

impl std::fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("m")?;
        for index in &self.0 {
            write!(f, "/{index}")?;
        }
        Ok(())
    }
}

/// Parses a derivation path (see [`DerivationPath`]); refuses hardened indexes (`'`, `h`,
/// `H`, or 2^31 and above), which threshold keys cannot derive.
pub(super) fn path(s: &str) -> Result<DerivationPath, String> {
    let rest = s
        .strip_prefix('m')
        .ok_or_else(|| format!("path '{s}' does not start with m: write e.g. m/44/0/1"))?;
    if rest.is_empty() {
        return Ok(DerivationPath::default());
    }
    let rest = rest
        .strip_prefix('/')
        .ok_or_else(|| format!("path '{s}': write m, then /index for each step (e.g. m/44/0/1)"))?;
    let mut indexes = Vec::new();
    for part in rest.split('/') {
        if part.ends_with(['\'', 'h', 'H']) {
            return Err(format!(
                "path '{s}': '{part}' is a hardened index; threshold keys derive only \
                 non-hardened children (write indexes without ' or h)"
            ));
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "path '{s}': '{part}' is not an index (a decimal number below 2^31)"
            ));
        }
        match part.parse::<u32>() {
            Ok(index) if index < 1 << 31 => indexes.push(index),
            _ => {
                return Err(format!(
                    "path '{s}': {part} is not below 2^31 (2147483648): indexes from 2^31 \
                     up are hardened, which threshold keys cannot derive"
                ))
            }
        }
    }
    if indexes.len() > MAX_DERIVATION_DEPTH {
        return Err(format!(
            "path '{s}' is {} steps deep; at most {MAX_DERIVATION_DEPTH}",
            indexes.len()
        ));
    }
    Ok(DerivationPath(indexes))
}

/// The longest a request may live, in seconds: nodes refuse longer-lived requests
/// (`lifetime_too_long`). A request's timeout is its lifetime.
pub(super) const MAX_LIFETIME_SECS: u64 = 600;

/// A timeout that is also a request's lifetime: 1 to [`MAX_LIFETIME_SECS`] seconds.
pub(super) fn lifetime_secs(s: &str) -> Result<u64, String> {
    let secs: u64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs == 0 || secs > MAX_LIFETIME_SECS {
        return Err(format!(
            "{secs} s: the timeout is also the request's lifetime, which the nodes accept from \
             1 to {MAX_LIFETIME_SECS} s"
        ));
    }
    Ok(secs)
}

/// A node id (a-z 0-9 - _, 1-64), as the manifest lists it.
pub(super) fn node_id(s: &str) -> Result<String, String> {
    keyrack_client::identity::validate_node_id(s)
        .map(|()| s.to_owned())
        .map_err(|_| {
            format!(
                "'{s}' is not a node id: node ids are 1-64 of a-z 0-9 - _ (list them \
                 comma-separated, e.g. node0,node2)"
            )
        })
}

/// A request id: 32 lowercase hex digits, as `keygen` and `sign` print it.
pub(super) fn request_id(s: &str) -> Result<String, String> {
    if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(s.to_owned())
    } else {
        Err("a request id is 32 lowercase hex digits, as keygen and sign print it".into())
    }
}

/// Bytes given as hex (an optional `0x` prefix is allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HexBytes(pub Vec<u8>);

/// Parses non-empty hex.
pub(super) fn hex_bytes(s: &str) -> Result<HexBytes, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.is_empty() {
        return Err("no hex digits".into());
    }
    hex::decode(digits)
        .map(HexBytes)
        .map_err(|e| format!("not hex: {e}"))
}

/// Parses a 32-byte digest given as 64 hex digits.
pub(super) fn digest(s: &str) -> Result<[u8; 32], String> {
    let HexBytes(bytes) = hex_bytes(s)?;
    let n = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("a digest is 32 bytes (64 hex digits); this is {n} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_ids_and_aliases() {
        for s in Scheme::ALL {
            assert_eq!(scheme(s.as_str()), Ok(s));
        }
        assert_eq!(scheme("ecdsa"), Ok(Scheme::EcdsaSecp256k1));
        assert_eq!(scheme("eddsa"), Ok(Scheme::Ed25519));
        for bad in ["schnorr", "ECDSA", "ed448", ""] {
            let e = scheme(bad).unwrap_err();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("eddsa"),
                "{e}"
            );
        }
    }

    #[test]
    fn paths() {
        assert_eq!(path("m"), Ok(DerivationPath(vec![])));
        assert_eq!(path("m/0"), Ok(DerivationPath(vec![0])));
        assert_eq!(path("m/44/0/1"), Ok(DerivationPath(vec![44, 0, 1])));
        assert_eq!(
            path("m/2147483647"),
            Ok(DerivationPath(vec![2_147_483_647]))
        );
        assert_eq!(path("m/44/0/1").unwrap().to_string(), "m/44/0/1");
        assert_eq!(path("m").unwrap().to_string(), "m");
        let deepest = format!("m{}", "/1".repeat(MAX_DERIVATION_DEPTH));
        assert_eq!(path(&deepest).unwrap().0.len(), MAX_DERIVATION_DEPTH);
    }

    #[test]
    fn hardened_and_malformed_paths_are_refused_saying_why() {
        for (bad, why) in [
            ("m/44'/0", "hardened"),
            ("m/44h", "hardened"),
            ("m/0/1H", "hardened"),
            ("m/2147483648", "not below 2^31"),
            ("m/99999999999", "not below 2^31"),
            ("44/0", "does not start with m"),
            ("", "does not start with m"),
            ("m44", "write m, then /index"),
            ("m/", "not an index"),
            ("m/1//2", "not an index"),
            ("m/-1", "not an index"),
            ("m/+1", "not an index"),
            ("m/x", "not an index"),
        ] {
            let e = path(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let too_deep = format!("m{}", "/1".repeat(MAX_DERIVATION_DEPTH + 1));
        assert!(path(&too_deep).unwrap_err().contains("at most"));
    }

    #[test]
    fn request_ids() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(request_id(id), Ok(id.to_owned()));
        for bad in [
            "abc",
            "0123456789ABCDEF0123456789ABCDEF",
            &format!("{id}0"),
            "",
        ] {
            assert!(
                request_id(bad).unwrap_err().contains("32 lowercase hex"),
                "{bad}"
            );
        }
    }

    #[test]
    fn lifetimes_and_node_ids() {
        assert_eq!(lifetime_secs("1"), Ok(1));
        assert_eq!(lifetime_secs("600"), Ok(600));
        for bad in ["0", "601", "-1", "x", ""] {
            assert!(lifetime_secs(bad).is_err(), "{bad}");
        }
        assert!(lifetime_secs("601").unwrap_err().contains("1 to 600 s"));
        assert_eq!(node_id("node-0_a"), Ok("node-0_a".to_owned()));
        for bad in ["", "Node0", "node 0", "node.0", &"n".repeat(65)] {
            assert!(node_id(bad).unwrap_err().contains("not a node id"), "{bad}");
        }
    }

    #[test]
    fn hex_and_digests() {
        assert_eq!(hex_bytes("00ff"), Ok(HexBytes(vec![0, 255])));
        assert_eq!(hex_bytes("0x00ff"), Ok(HexBytes(vec![0, 255])));
        assert!(hex_bytes("").is_err());
        assert!(hex_bytes("0x").is_err());
        assert!(hex_bytes("abc").unwrap_err().contains("not hex"));
        assert_eq!(digest(&"ab".repeat(32)), Ok([0xab; 32]));
        assert!(digest(&"ab".repeat(31))
            .unwrap_err()
            .contains("32 bytes (64 hex digits); this is 31 bytes"));
        assert!(digest(&"ab".repeat(33)).unwrap_err().contains("33 bytes"));
    }
}

//! The threshold signature scheme plugin trait and the values it takes and returns.
//!
//! Indices: a key's parties are numbered `0..n` at keygen ("key indices"). A session numbers
//! its own parties `0..m` ("session indices"); for signing, session party `i` is key party
//! `signers[i]`, and every party must use the same order.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::channel::{Channel, PartyIndex};
use crate::ProtocolError;

/// A scheme's registry id: `ecdsa-secp256k1`, `ed25519` or `schnorr-secp256k1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchemeId(pub &'static str);

impl std::fmt::Display for SchemeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One protocol run, as every party agrees on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Execution id: unique per run, never reused (binds every message to this run).
    pub id: [u8; 32],
    /// This party's session index.
    pub me: PartyIndex,
    /// Number of parties in the session.
    pub parties: u16,
}

/// Distributed key generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeygenParams {
    /// How many parties sign: any `threshold` of the session's parties. keyrack requires
    /// `threshold > parties / 2`.
    pub threshold: u16,
}

/// A party's share of a threshold key.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyShare {
    /// Scheme id.
    pub scheme: String,
    /// Group public key in the scheme's usual encoding (SEC1 compressed for secp256k1 ECDSA,
    /// 32 bytes for Ed25519, 32-byte x-only for BIP-340).
    pub public_key: Vec<u8>,
    /// HD chain code, agreed at keygen.
    pub chain_code: [u8; 32],
    /// Signers needed.
    pub threshold: u16,
    /// Parties holding shares.
    pub parties: u16,
    /// This party's key index.
    pub index: PartyIndex,
    /// The scheme's versioned share encoding. Secret: seal before it leaves memory.
    pub secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("scheme", &self.scheme)
            .field("public_key", &hex(&self.public_key))
            .field("threshold", &self.threshold)
            .field("parties", &self.parties)
            .field("index", &self.index)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Material prepared ahead of a signature (ECDSA presignature, FROST nonces with every
/// signer's commitments) so that online signing is one message exchange. Use once: it is
/// consumed by [`SchemePlugin::sign_presigned`], and the node records its use durably before
/// any partial signature leaves.
///
/// Reusing one would leak the key (two signatures with one nonce), so it is neither `Clone`
/// nor `Copy`: the only way to sign twice with it is to serialise it, which only the node's
/// store does, under its own used-once rule. This must not compile:
///
/// ```compile_fail
/// fn copy(p: &keyrack_plugin::Presignature) -> keyrack_plugin::Presignature {
///     p.clone()
/// }
/// ```
#[derive(Serialize, Deserialize)]
pub struct Presignature {
    /// Scheme id.
    pub scheme: String,
    /// Public key of the share it was made with.
    pub public_key: Vec<u8>,
    /// Key indices of the signers, in session order.
    pub signers: Vec<PartyIndex>,
    /// The scheme's encoding. Secret.
    pub secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Presignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presignature")
            .field("scheme", &self.scheme)
            .field("signers", &self.signers)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignRequest {
    /// Key indices of the signers, in session order; exactly `threshold` of them.
    pub signers: Vec<PartyIndex>,
    /// The message: a 32-byte digest for ECDSA and BIP-340, the message itself for Ed25519.
    pub message: Vec<u8>,
    /// Non-hardened derivation path (empty: the key itself).
    pub derivation_path: Vec<u32>,
}

/// A threshold signature and the key it verifies under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureOutput {
    /// ECDSA: `r ‖ s ‖ v` (65 bytes, low-s, v = recovery id 0/1); Ed25519 and BIP-340: 64 bytes.
    pub signature: Vec<u8>,
    /// The (derived) public key the signature verifies under, encoded as in [`KeyShare`].
    pub public_key: Vec<u8>,
}

/// One party of a reshare: its index in the old committee, the new one, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReshareMember {
    /// Key index in the old committee (a dealer), if any.
    pub old: Option<PartyIndex>,
    /// Key index in the new committee (a receiver), if any.
    pub new: Option<PartyIndex>,
}

/// Move a key to a new committee and/or threshold; with the same committee and threshold, a
/// refresh (new shares, old ones useless).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshareParams {
    /// Session parties, in session order.
    pub members: Vec<ReshareMember>,
    /// Threshold of the old committee.
    pub old_threshold: u16,
    /// Number of parties in the new committee.
    pub new_parties: u16,
    /// Threshold of the new committee.
    pub new_threshold: u16,
    /// The key's public key (receivers check the result against it).
    pub public_key: Vec<u8>,
    /// The key's chain code (kept).
    pub chain_code: [u8; 32],
}

impl ReshareParams {
    /// Checks the member list of a `parties`-party session: every session party listed once,
    /// the new committee's indices exactly `0..new_parties`, no old index named twice, at
    /// least `old_threshold` dealers, and a valid new threshold.
    pub fn check_members(&self, parties: u16) -> Result<(), ProtocolError> {
        let invalid = |m: String| Err(ProtocolError::InvalidRequest(m));
        if self.members.len() != usize::from(parties) {
            return invalid("members must list every session party".into());
        }
        check_threshold(self.new_threshold, self.new_parties)?;
        let mut new: Vec<PartyIndex> = self.members.iter().filter_map(|m| m.new).collect();
        new.sort_unstable();
        if new != (0..self.new_parties).collect::<Vec<_>>() {
            return invalid(format!(
                "new committee indices must be 0..{}, each once",
                self.new_parties
            ));
        }
        let mut old: Vec<PartyIndex> = self.members.iter().filter_map(|m| m.old).collect();
        old.sort_unstable();
        if old.windows(2).any(|w| w[0] == w[1]) {
            return invalid("an old committee index is named twice".into());
        }
        if old.len() < usize::from(self.old_threshold) {
            return invalid(format!(
                "{} dealers, the old threshold is {}",
                old.len(),
                self.old_threshold
            ));
        }
        Ok(())
    }
}

/// A threshold signature scheme. Every method blocks for the whole protocol run: call them
/// through [`crate::runtime::spawn_protocol`], never on an async runtime's thread.
///
/// Each call is one session: give it its own [`Session::id`] and channel. (The default
/// [`SchemePlugin::sign`] runs presign and sign_presigned on one channel; a plugin whose two
/// steps could mistake each other's messages overrides it.)
pub trait SchemePlugin: Send + Sync + 'static {
    /// Registry id.
    fn id(&self) -> SchemeId;

    /// Distributed key generation among all the session's parties.
    fn keygen(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        params: &KeygenParams,
    ) -> Result<KeyShare, ProtocolError>;

    /// Prepares one signature by the given signers (the session's parties).
    fn presign(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        signers: &[PartyIndex],
    ) -> Result<Presignature, ProtocolError>;

    /// Signs with a presignature: one message exchange.
    fn sign_presigned(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        presignature: Presignature,
        message: &[u8],
        derivation_path: &[u32],
    ) -> Result<SignatureOutput, ProtocolError>;

    /// Signs without a presignature.
    fn sign(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        request: &SignRequest,
    ) -> Result<SignatureOutput, ProtocolError> {
        let presignature = self.presign(session, channel, share, &request.signers)?;
        self.sign_presigned(
            session,
            channel,
            share,
            presignature,
            &request.message,
            &request.derivation_path,
        )
    }

    /// Reshares (or, with the same committee, refreshes) a key. Dealers pass their share;
    /// receivers get their new share, parties leaving get `None`.
    fn reshare(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: Option<&KeyShare>,
        params: &ReshareParams,
    ) -> Result<Option<KeyShare>, ProtocolError>;

    /// The public key at a non-hardened derivation path.
    fn derive_public_key(
        &self,
        public_key: &[u8],
        chain_code: &[u8; 32],
        path: &[u32],
    ) -> Result<Vec<u8>, ProtocolError>;
}

/// Checks a threshold against keyrack's rule `n/2 < t <= n`.
pub fn check_threshold(threshold: u16, parties: u16) -> Result<(), ProtocolError> {
    if parties < 2 || threshold > parties || u32::from(threshold) * 2 <= u32::from(parties) {
        return Err(ProtocolError::InvalidRequest(format!(
            "threshold {threshold} of {parties}: keyrack needs n >= 2 and n/2 < t <= n"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(
        members: &[(Option<u16>, Option<u16>)],
        old_t: u16,
        new_n: u16,
        new_t: u16,
    ) -> ReshareParams {
        ReshareParams {
            members: members
                .iter()
                .map(|&(old, new)| ReshareMember { old, new })
                .collect(),
            old_threshold: old_t,
            new_parties: new_n,
            new_threshold: new_t,
            public_key: vec![],
            chain_code: [0; 32],
        }
    }

    #[test]
    fn reshare_members_are_checked() {
        let good = params(
            &[(Some(0), Some(0)), (Some(1), Some(1)), (None, Some(2))],
            2,
            3,
            2,
        );
        assert_eq!(good.check_members(3), Ok(()));
        let cases = [
            (good.clone(), 4, "members must list"),
            (
                params(
                    &[(Some(0), Some(0)), (Some(0), Some(1)), (None, Some(2))],
                    2,
                    3,
                    2,
                ),
                3,
                "named twice",
            ),
            (
                params(
                    &[(Some(0), Some(0)), (Some(1), Some(1)), (None, Some(1))],
                    2,
                    3,
                    2,
                ),
                3,
                "each once",
            ),
            (
                params(
                    &[(Some(0), Some(0)), (None, Some(1)), (None, Some(2))],
                    2,
                    3,
                    2,
                ),
                3,
                "dealers",
            ),
            (
                params(
                    &[(Some(0), Some(0)), (Some(1), Some(1)), (None, Some(2))],
                    2,
                    3,
                    1,
                ),
                3,
                "threshold",
            ),
        ];
        for (p, parties, needle) in cases {
            match p.check_members(parties) {
                Err(ProtocolError::InvalidRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
    }
}

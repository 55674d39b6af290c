//! The node's identity: an Ed25519 signing key (it signs everything the node says) and an
//! X25519 key-agreement key (peers encrypt point-to-point messages to it).
//!
//! Both secrets exist on disk only as one sealed blob, whose AAD names the node
//! (`keyrack/v1/node-identity/<node id>`), so the blob of one node cannot be passed off as
//! another's. The sealed plaintext is `0x01 ‖ ed25519 seed (32) ‖ x25519 secret (32)`.

use ed25519_dalek::SigningKey;
use keyrack_client::identity::PublicIdentity;
use keyrack_hsm::{SealError, Sealer};
use rand_core::OsRng;
use x25519_dalek::{PublicKey as AgreementPublic, StaticSecret};
use zeroize::Zeroizing;

const PLAINTEXT_VERSION: u8 = 1;
const PLAINTEXT_LEN: usize = 65;

/// The AAD that names a node's identity blob.
pub fn identity_aad(node_id: &str) -> Vec<u8> {
    format!("keyrack/v1/node-identity/{node_id}").into_bytes()
}

/// Why an identity could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The HSM backend refused or failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The unsealed bytes are not an identity of a known version.
    #[error("sealed identity has an unknown layout (version byte {0})")]
    Layout(u8),
    /// The public identity could not be made.
    #[error(transparent)]
    Public(#[from] keyrack_client::identity::IdentityError),
}

/// A node's secret identity keys. Zeroized on drop; `Debug` shows only public parts.
pub struct NodeIdentity {
    node_id: String,
    signing: SigningKey,
    agreement: StaticSecret,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .field(
                "signing_key",
                &hex::encode(self.signing.verifying_key().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Generates fresh keys from the operating system's RNG.
    pub fn generate(node_id: &str) -> Result<Self, IdentityError> {
        keyrack_client::identity::validate_node_id(node_id)?;
        Ok(NodeIdentity {
            node_id: node_id.to_owned(),
            signing: SigningKey::generate(&mut OsRng),
            agreement: StaticSecret::random_from_rng(OsRng),
        })
    }

    /// Seals both secrets into one blob.
    pub fn seal(&self, sealer: &dyn Sealer) -> Result<Vec<u8>, IdentityError> {
        let mut plaintext = Zeroizing::new(Vec::with_capacity(PLAINTEXT_LEN));
        plaintext.push(PLAINTEXT_VERSION);
        plaintext.extend_from_slice(self.signing.as_bytes());
        plaintext.extend_from_slice(self.agreement.as_bytes());
        Ok(sealer.seal(&identity_aad(&self.node_id), &plaintext)?)
    }

    /// Unseals the identity of `node_id`.
    pub fn unseal(node_id: &str, sealer: &dyn Sealer, blob: &[u8]) -> Result<Self, IdentityError> {
        let plaintext = sealer.unseal(&identity_aad(node_id), blob)?;
        if plaintext.len() != PLAINTEXT_LEN || plaintext[0] != PLAINTEXT_VERSION {
            return Err(IdentityError::Layout(
                plaintext.first().copied().unwrap_or(0),
            ));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&plaintext[1..33]);
        let mut agreement = Zeroizing::new([0u8; 32]);
        agreement.copy_from_slice(&plaintext[33..65]);
        Ok(NodeIdentity {
            node_id: node_id.to_owned(),
            signing: SigningKey::from_bytes(&seed),
            agreement: StaticSecret::from(*agreement),
        })
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The signed public identity to hand to peers.
    pub fn public(&self) -> Result<PublicIdentity, IdentityError> {
        let agreement = AgreementPublic::from(&self.agreement).to_bytes();
        Ok(PublicIdentity::sign(
            &self.node_id,
            &self.signing,
            agreement,
        )?)
    }

    /// Whether `public` is this identity's public half.
    pub fn matches(&self, public: &PublicIdentity) -> bool {
        public.node_id() == self.node_id
            && public.signing_key() == &self.signing.verifying_key()
            && public.agreement_key() == AgreementPublic::from(&self.agreement).as_bytes()
    }

    /// The Ed25519 key that signs everything the node says. Secret: never log or store it.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The X25519 key that point-to-point messages to this node are encrypted to. Secret.
    pub fn agreement_secret(&self) -> &StaticSecret {
        &self.agreement
    }

    /// The secret key bytes, for tests that scan storage for leaks. Handle with care.
    #[doc(hidden)]
    pub fn secret_bytes_for_leak_tests(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(self.signing.as_bytes().to_vec());
        v.extend_from_slice(self.agreement.as_bytes());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> keyrack_hsm::soft::SoftSealer {
        keyrack_hsm::soft::SoftSealer::from_passphrase(b"test", &[7; 16]).unwrap()
    }

    #[test]
    fn seal_unseal_round_trip_keeps_keys() {
        let s = sealer();
        let id = NodeIdentity::generate("node0").unwrap();
        let blob = id.seal(&s).unwrap();
        let back = NodeIdentity::unseal("node0", &s, &blob).unwrap();
        assert!(back.matches(&id.public().unwrap()));
    }

    #[test]
    fn a_blob_cannot_be_passed_off_as_another_nodes() {
        let s = sealer();
        let blob = NodeIdentity::generate("node0").unwrap().seal(&s).unwrap();
        assert!(matches!(
            NodeIdentity::unseal("node1", &s, &blob),
            Err(IdentityError::Seal(SealError::Authentication))
        ));
    }

    #[test]
    fn debug_shows_no_secret() {
        let id = NodeIdentity::generate("node0").unwrap();
        let dbg = format!("{id:?}");
        let secrets = id.secret_bytes_for_leak_tests();
        assert!(!dbg.contains(&hex::encode(&secrets[..32])));
        assert!(!dbg.contains(&hex::encode(&secrets[32..])));
        assert!(dbg.contains("node0"));
    }
}

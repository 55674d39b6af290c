//! [`FrostPlugin`]: the [`SchemePlugin`] for one ciphersuite.

use std::marker::PhantomData;

use keyrack_plugin::{
    Channel, KeyShare, KeygenParams, PartyIndex, Presignature, ProtocolError, ReshareParams,
    SchemeId, SchemePlugin, Session, SignatureOutput,
};

use crate::suite::{element_of_key, key_of, FrostSuite};

/// FROST threshold Schnorr signatures over the ciphersuite `S`.
pub struct FrostPlugin<S: FrostSuite>(PhantomData<S>);

impl<S: FrostSuite> FrostPlugin<S> {
    /// The plugin.
    pub fn new() -> Self {
        FrostPlugin(PhantomData)
    }
}

impl<S: FrostSuite> Default for FrostPlugin<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: FrostSuite> SchemePlugin for FrostPlugin<S> {
    fn id(&self) -> SchemeId {
        SchemeId(S::ID)
    }

    fn keygen(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        params: &KeygenParams,
    ) -> Result<KeyShare, ProtocolError> {
        crate::dkg::keygen::<S>(session, channel, params)
    }

    fn presign(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        signers: &[PartyIndex],
    ) -> Result<Presignature, ProtocolError> {
        crate::sign::presign::<S>(session, channel, share, signers)
    }

    fn sign_presigned(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        presignature: Presignature,
        message: &[u8],
        derivation_path: &[u32],
    ) -> Result<SignatureOutput, ProtocolError> {
        crate::sign::sign_presigned::<S>(
            session,
            channel,
            share,
            presignature,
            message,
            derivation_path,
        )
    }

    fn reshare(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: Option<&KeyShare>,
        params: &ReshareParams,
    ) -> Result<Option<KeyShare>, ProtocolError> {
        crate::reshare::reshare::<S>(session, channel, share, params)
    }

    fn derive_public_key(
        &self,
        public_key: &[u8],
        chain_code: &[u8; 32],
        path: &[u32],
    ) -> Result<Vec<u8>, ProtocolError> {
        let key = S::decode_public_key(public_key)?;
        let child = crate::hd::derive::<S::C>(element_of_key(&key)?, chain_code, path)?.key;
        S::encode_public_key(&key_of::<S::C>(&child)?)
    }
}

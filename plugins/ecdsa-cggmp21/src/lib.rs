//! Threshold ECDSA on secp256k1 for keyrack (scheme id `ecdsa-secp256k1`), built on
//! [cggmp21](https://docs.rs/cggmp21) 0.6.3.
//!
//! The plugin runs cggmp21's protocols through round_based's sync state machine over a
//! [`keyrack_plugin::Channel`]; it knows nothing of NATS, SQLite or HSMs, and stores nothing:
//! the node seals what it returns.
//!
//! # Committee setup (aux info) and keygen
//!
//! cggmp21 splits a usable key share into the key itself (DKG, milliseconds) and *aux info*
//! (each party's Paillier key and ring-Pedersen parameters, ≈ 9 s per party plus a pair of
//! safe primes that take 8–90 s to find). Aux info is tied to the committee (its size `n` and
//! the parties' order), not to a key, so keyrack runs it once per committee:
//!
//! 1. [`PrimePool::start`] keeps a bounded pool of [`SafePrimes`] filled on a background
//!    thread; the node seals [`PrimePool::snapshot`] and seeds the next start with it.
//! 2. [`committee_setup`] runs `aux_info_gen` among the committee with one pair of primes per
//!    party and returns this party's [`CommitteeAux`] (seal [`CommitteeAux::to_bytes`]).
//! 3. The node builds the plugin with an [`AuxInfoSource`] that returns that aux info
//!    ([`EcdsaPlugin::new`]; [`StaticAuxInfo`] is an in-memory one). [`SchemePlugin::keygen`]
//!    and [`SchemePlugin::reshare`] ask it for the committee's aux info and return a
//!    *complete* share (key + aux info), so signing needs nothing else.
//!
//! # Share format
//!
//! `KeyShare.secret` is `u16` big-endian [`SHARE_FORMAT`] followed by CBOR of cggmp21's
//! `KeyShare` (core share and aux info, cggmp21's serde field names). `Presignature.secret`
//! is the same envelope ([`PRESIGNATURE_FORMAT`]) around the holder's key index and cggmp21's
//! presignature. Shares are HD-enabled: the chain code agreed at keygen is in the share.
//!
//! # Signing
//!
//! `signers` are key indices in session order (session party `i` is key party
//! `signers[i]`), exactly `threshold` of them. The message is a 32-byte digest. Output is
//! `r ‖ s ‖ v` (low-s, `v` the recovery id for the normalised signature), verified with k256
//! under the (derived) public key before it is returned. Derivation is non-hardened
//! SLIP-10, which for secp256k1 is BIP-32 public derivation. `sign` runs cggmp21's full
//! signing protocol; `presign` + `sign_presigned` split it so that the online part is one
//! broadcast of partial signatures.
//!
//! # Reshare and refresh
//!
//! cggmp21's `key_refresh` only works for n-of-n keys, so [`SchemePlugin::reshare`] runs
//! keyrack's own protocol, written down in [`reshare`]: old signers deal their
//! Lagrange-weighted shares to the new committee under fresh Feldman commitments; every
//! receiver checks each piece, each dealer's constant term against the dealer's public share,
//! and the sum against the public key, then builds and validates a cggmp21 share.
//!
//! # Errors
//!
//! Undecodable payloads name their sender ([`ProtocolError::Malformed`]); two different
//! messages from one party for one round, and cggmp21 aborts that name a culprit, are
//! [`ProtocolError::Misbehaved`]; a receive deadline names the parties not heard from in the
//! round this party is waiting on ([`ProtocolError::Timeout`]). Exact duplicates are dropped.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod aux;
mod driver;
mod envelope;
#[cfg(feature = "fixtures")]
pub mod fixtures;
#[cfg(feature = "import")]
pub mod import;
pub mod reshare;
mod share;
mod sign;

use std::sync::Arc;

use cggmp21::supported_curves::Secp256k1;
use cggmp21::ExecutionId;
use keyrack_plugin::scheme::check_threshold;
use keyrack_plugin::{
    Channel, KeyShare, KeygenParams, PartyIndex, Presignature, ProtocolError, ReshareParams,
    SchemeId, SchemePlugin, Session, SignRequest, SignatureOutput,
};

pub use aux::{
    committee_setup, AuxInfoSource, CommitteeAux, Level, PrimePool, SafePrimes, StaticAuxInfo,
};
pub use share::SHARE_FORMAT;
pub use sign::PRESIGNATURE_FORMAT;

/// The scheme's registry id.
pub const SCHEME_ID: SchemeId = SchemeId("ecdsa-secp256k1");

/// The threshold ECDSA secp256k1 plugin.
pub struct EcdsaPlugin {
    aux: Arc<dyn AuxInfoSource>,
}

impl std::fmt::Debug for EcdsaPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaPlugin").finish_non_exhaustive()
    }
}

impl EcdsaPlugin {
    /// A plugin that takes committee aux info from `aux` when it makes a share.
    pub fn new(aux: Arc<dyn AuxInfoSource>) -> Self {
        EcdsaPlugin { aux }
    }

    fn committee_aux(
        &self,
        session: &Session,
        parties: u16,
        index: PartyIndex,
    ) -> Result<CommitteeAux, ProtocolError> {
        let aux = self.aux.aux_info(session, parties, index)?;
        if aux.parties != parties || aux.index != index {
            return Err(ProtocolError::InvalidMaterial(format!(
                "aux info source returned party {} of {} for party {index} of {parties}",
                aux.index, aux.parties
            )));
        }
        Ok(aux)
    }

    /// Joins a core share with its committee's aux info into a complete share.
    fn complete(
        &self,
        session: &Session,
        core: cggmp21::IncompleteKeyShare<Secp256k1>,
    ) -> Result<KeyShare, ProtocolError> {
        let aux = self.committee_aux(session, core.n(), core.i)?;
        let full = cggmp21::KeyShare::from_parts((core, aux.aux)).map_err(|e| {
            ProtocolError::InvalidMaterial(format!(
                "aux info does not fit the key share: {}",
                driver::error_chain(&e)
            ))
        })?;
        share::to_keyrack(&full)
    }
}

impl SchemePlugin for EcdsaPlugin {
    fn id(&self) -> SchemeId {
        SCHEME_ID
    }

    fn keygen(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        params: &KeygenParams,
    ) -> Result<KeyShare, ProtocolError> {
        check_threshold(params.threshold, session.parties)?;
        // Fail before the run, not after it, if the committee has no aux info.
        self.committee_aux(session, session.parties, session.me)?;
        let eid = ExecutionId::new(&session.id);
        let mut rng = rand_core::OsRng;
        let sm = cggmp21::keygen::<Secp256k1>(eid, session.me, session.parties)
            .set_threshold(params.threshold)
            .hd_wallet(true)
            .into_state_machine(&mut rng);
        let core = driver::run(session, channel, sm)?
            .map_err(|e| driver::map_protocol_error("keygen", &e, session.parties))?;
        self.complete(session, core)
    }

    fn presign(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        signers: &[PartyIndex],
    ) -> Result<Presignature, ProtocolError> {
        let inner = share::from_keyrack(share)?;
        sign::presign(session, channel, &inner, signers)
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
        let inner = share::from_keyrack(share)?;
        sign::sign_presigned(
            session,
            channel,
            &inner,
            presignature,
            message,
            derivation_path,
        )
    }

    fn sign(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: &KeyShare,
        request: &SignRequest,
    ) -> Result<SignatureOutput, ProtocolError> {
        let inner = share::from_keyrack(share)?;
        sign::sign(
            session,
            channel,
            &inner,
            &request.signers,
            &request.message,
            &request.derivation_path,
        )
    }

    fn reshare(
        &self,
        session: &Session,
        channel: &mut dyn Channel,
        share: Option<&KeyShare>,
        params: &ReshareParams,
    ) -> Result<Option<KeyShare>, ProtocolError> {
        let old = share.map(share::from_keyrack).transpose()?;
        let core = reshare::run(session, channel, old.as_ref(), params)?;
        core.map(|core| self.complete(session, core)).transpose()
    }

    fn derive_public_key(
        &self,
        public_key: &[u8],
        chain_code: &[u8; 32],
        path: &[u32],
    ) -> Result<Vec<u8>, ProtocolError> {
        sign::derive_public_key(public_key, chain_code, path)
    }
}

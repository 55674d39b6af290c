//! Non-hardened HD derivation by additive tweak (see the crate docs for the scheme).

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, Element, Field, Group, Scalar};
use keyrack_plugin::ProtocolError;
use sha2::{Digest, Sha256};

use crate::share::Packages;
use crate::suite::{
    element_bytes, element_of_key, element_of_share, generator, internal, key_of, scalar_of,
    share_of, verifying_share_of, FrostSuite,
};

const HARDENED: u32 = 1 << 31;

/// A derived child: the total tweak from the parent, and the child key.
pub(crate) struct Derived<C: Ciphersuite> {
    pub tweak: Scalar<C>,
    pub key: Element<C>,
}

/// The child at `path` below (`key`, `chain_code`); the chain code advances per step.
pub(crate) fn derive<C: Ciphersuite>(
    key: Element<C>,
    chain_code: &[u8; 32],
    path: &[u32],
) -> Result<Derived<C>, ProtocolError> {
    let mut tweak = <<C::Group as Group>::Field as Field>::zero();
    let (mut point, mut cc) = (key, *chain_code);
    for &index in path {
        if index >= HARDENED {
            return Err(ProtocolError::InvalidRequest(format!(
                "derivation index {index} is hardened; threshold keys derive non-hardened paths only"
            )));
        }
        let parent = element_bytes::<C>(&point)?;
        let mut data = Vec::with_capacity(64 + parent.len() + 24);
        data.extend_from_slice(b"keyrack-frost-hd-v1");
        data.extend_from_slice(&cc);
        data.extend_from_slice(&parent);
        data.extend_from_slice(&index.to_be_bytes());
        let t = C::HID(&data).ok_or_else(|| internal("ciphersuite has no hash to scalar"))?;
        tweak = tweak + t;
        point = point + generator::<C>() * t;
        cc = Sha256::new()
            .chain_update(b"keyrack-frost-hd-cc-v1")
            .chain_update(cc)
            .chain_update(&parent)
            .chain_update(index.to_be_bytes())
            .finalize()
            .into();
    }
    Ok(Derived { tweak, key: point })
}

/// The packages for signing under the key derived at `path`.
pub(crate) fn tweak_packages<S: FrostSuite>(
    key: &KeyPackage<S::C>,
    public: &PublicKeyPackage<S::C>,
    chain_code: &[u8; 32],
    path: &[u32],
) -> Result<Packages<S::C>, ProtocolError> {
    type C<S> = <S as FrostSuite>::C;
    if path.is_empty() {
        return Ok(Packages {
            key: key.clone(),
            public: public.clone(),
        });
    }
    // Derive from the key the encoding names: negate the whole sharing if needed.
    let one = <<<C<S> as Ciphersuite>::Group as Group>::Field as Field>::one();
    let zero = <<<C<S> as Ciphersuite>::Group as Group>::Field as Field>::zero();
    let sign = if S::needs_negation(public.verifying_key())? {
        zero - one
    } else {
        one
    };
    let Derived {
        tweak: t,
        key: child,
    } = derive::<C<S>>(
        element_of_key(public.verifying_key())? * sign,
        chain_code,
        path,
    )?;
    let tg = generator::<C<S>>() * t;
    let child_key = key_of::<C<S>>(&child)?;
    let shares = public
        .verifying_shares()
        .iter()
        .map(|(id, share)| {
            Ok((
                *id,
                verifying_share_of::<C<S>>(&(element_of_share(share)? * sign + tg))?,
            ))
        })
        .collect::<Result<_, ProtocolError>>()?;
    let min_signers = *key.min_signers();
    let tweaked_key = KeyPackage::new(
        *key.identifier(),
        share_of::<C<S>>(&(scalar_of(key.signing_share())? * sign + t))?,
        verifying_share_of::<C<S>>(&(element_of_share(key.verifying_share())? * sign + tg))?,
        child_key,
        min_signers,
    );
    Ok(Packages {
        key: tweaked_key,
        public: PublicKeyPackage::new(shares, child_key, Some(min_signers)),
    })
}

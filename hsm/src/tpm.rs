//! The `tpm` backend: a fresh data key per blob, sealed by a TPM 2.0.
//!
//! A persistent storage key (ECC P-256, restricted decryption, under the owner hierarchy) sits
//! at a configured handle; it is created once, idempotently. For each blob a random 256-bit
//! data key is sealed into a TPM keyed-hash object under the storage key (`fixedTPM`,
//! `fixedParent`: it only ever loads on this TPM, under this key); the object's public and
//! private parts form the blob's backend header, and the data key encrypts the blob with
//! AES-256-GCM in software. A TPM sealed object holds at most 128 bytes, which is why the data
//! key, not the secret, is sealed.
//!
//! Backend header layout: `u16be(len(public)) ‖ public (TPMT_PUBLIC, marshalled) ‖
//! u16be(len(private)) ‖ private (TPM2B_PRIVATE buffer)`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use rand_core::{OsRng, RngCore};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::CapabilityData;
use tss_esapi::structures::{
    Auth, EccPoint, KeyedHashScheme, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyedHashParameters, SensitiveData, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

use crate::blob::BackendId;
use crate::cipher::{BlobCipher, DataKey};
use crate::config::TpmConfig;
use crate::{Backend, Health, KeyPolicy, SealError};

/// A sealer that seals a data key per blob in a TPM 2.0.
pub struct TpmSealer {
    context: Mutex<Context>,
    storage_key: KeyHandle,
    handle: u32,
    key_id: String,
    tcti: String,
}

impl std::fmt::Debug for TpmSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmSealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn tpm_err(operation: &'static str) -> impl Fn(tss_esapi::Error) -> SealError {
    move |e| SealError::backend(BackendId::Tpm, operation, e)
}

fn storage_key_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_decrypt(true)
        .with_restricted(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn sealed_object_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Default::default())
        .build()
}

impl TpmSealer {
    /// Connects to the TPM and finds (or, with [`KeyPolicy::CreateIfMissing`], creates and
    /// persists) the storage key.
    pub fn open(config: &TpmConfig, base_dir: &Path, policy: KeyPolicy) -> Result<Self, SealError> {
        let unreachable = |detail: String| SealError::Unreachable {
            backend: BackendId::Tpm,
            setting: "hsm.tpm.tcti",
            value: config.tcti.clone(),
            detail,
        };
        let tcti = TctiNameConf::from_str(&config.tcti).map_err(|e| {
            SealError::config(
                "hsm.tpm.tcti",
                format!("'{}' is not a TCTI string: {e}", config.tcti),
            )
        })?;
        let mut context =
            Context::new(tcti).map_err(|e| unreachable(format!("cannot connect: {e}")))?;
        // A cheap round trip: a TCTI can "open" without a TPM behind it.
        context
            .get_random(8)
            .map_err(|e| unreachable(format!("TPM does not answer: {e}")))?;

        let persistent = PersistentTpmHandle::new(config.storage_key_handle).map_err(|_| {
            SealError::config(
                "hsm.tpm.storage_key_handle",
                format!(
                    "{:#x} is not a persistent handle (0x81000000..=0x81FFFFFF)",
                    config.storage_key_handle
                ),
            )
        })?;
        let key_id = format!("tpm:{:#010x}", config.storage_key_handle);
        let exists = persistent_handle_exists(&mut context, persistent)?;
        let storage_key = match exists {
            true => KeyHandle::from(
                context
                    .tr_from_tpm_public(TpmHandle::Persistent(persistent))
                    .map_err(tpm_err("open storage key"))?,
            ),
            false if policy == KeyPolicy::CreateIfMissing => {
                let owner_auth = match &config.owner_auth {
                    Some(source) => {
                        let secret = source.read(base_dir, "hsm.tpm.owner_auth")?;
                        Some(Auth::try_from(secret.as_bytes().to_vec()).map_err(|e| {
                            SealError::config(
                                "hsm.tpm.owner_auth",
                                format!("not a valid TPM auth value: {e}"),
                            )
                        })?)
                    }
                    None => None,
                };
                create_storage_key(&mut context, persistent, owner_auth)?
            }
            false => return Err(SealError::NotFound {
                backend: BackendId::Tpm,
                what: format!(
                    "storage key at {:#x} (hsm.tpm.storage_key_handle)",
                    config.storage_key_handle
                ),
                hint:
                    "it is created by `keyrack init`; a missing key means another or a cleared TPM"
                        .into(),
            }),
        };
        // The handle must hold a key we can seal under.
        let (public, _, _) = context
            .read_public(storage_key)
            .map_err(tpm_err("read storage key"))?;
        let restricted_decrypt =
            public.object_attributes().restricted() && public.object_attributes().decrypt();
        if !restricted_decrypt {
            return Err(SealError::UnsafeKey {
                backend: BackendId::Tpm,
                key_id,
                reason: "the persistent object is not a restricted decryption (storage) key".into(),
            });
        }
        Ok(TpmSealer {
            context: Mutex::new(context),
            storage_key,
            handle: config.storage_key_handle,
            key_id,
            tcti: config.tcti.clone(),
        })
    }

    fn context(&self) -> Result<std::sync::MutexGuard<'_, Context>, SealError> {
        self.context
            .lock()
            .map_err(|_| SealError::backend(BackendId::Tpm, "context", "context lock poisoned"))
    }
}

/// Whether a persistent object sits at `handle` (asked without provoking an error).
fn persistent_handle_exists(
    context: &mut Context,
    handle: PersistentTpmHandle,
) -> Result<bool, SealError> {
    let wanted = u32::from(handle);
    let (data, _) = context
        .get_capability(CapabilityType::Handles, wanted, 1)
        .map_err(tpm_err("list persistent handles"))?;
    Ok(match data {
        CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == wanted),
        _ => false,
    })
}

fn create_storage_key(
    context: &mut Context,
    persistent: PersistentTpmHandle,
    owner_auth: Option<Auth>,
) -> Result<KeyHandle, SealError> {
    if let Some(auth) = owner_auth {
        context
            .tr_set_auth(ObjectHandle::Owner, auth)
            .map_err(tpm_err("set owner auth"))?;
    }
    let created = context
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(
                Hierarchy::Owner,
                storage_key_template()?,
                None,
                None,
                None,
                None,
            )
        })
        .map_err(|e| SealError::Login {
            backend: BackendId::Tpm,
            setting: "hsm.tpm.owner_auth",
            detail: format!("creating the storage key under the owner hierarchy failed: {e}"),
        })?;
    let result = context.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.evict_control(
            Provision::Owner,
            created.key_handle.into(),
            Persistent::Persistent(persistent),
        )
    });
    context
        .flush_context(created.key_handle.into())
        .map_err(tpm_err("flush transient storage key"))?;
    let handle = match result {
        Ok(handle) => handle,
        // Another process persisted it first: use theirs.
        Err(_) => context
            .tr_from_tpm_public(TpmHandle::Persistent(persistent))
            .map_err(tpm_err("persist storage key"))?,
    };
    tracing::info!(
        handle = format!("{:#x}", u32::from(persistent)),
        "created TPM storage key"
    );
    Ok(KeyHandle::from(handle))
}

fn split_header(header: &[u8]) -> Result<(&[u8], &[u8]), SealError> {
    let bad = || SealError::Malformed("tpm backend header is truncated".into());
    let take = |at: usize| -> Result<(&[u8], usize), SealError> {
        let len = header.get(at..at + 2).ok_or_else(bad)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let part = header.get(at + 2..at + 2 + len).ok_or_else(bad)?;
        Ok((part, at + 2 + len))
    };
    let (public, at) = take(0)?;
    let (private, end) = take(at)?;
    if end != header.len() {
        return Err(SealError::Malformed(
            "tpm backend header has trailing bytes".into(),
        ));
    }
    Ok((public, private))
}

impl Backend for TpmSealer {
    fn backend_id(&self) -> BackendId {
        BackendId::Tpm
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn new_blob(&self) -> Result<(Vec<u8>, BlobCipher<'_>), SealError> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let sensitive =
            SensitiveData::try_from(bytes.to_vec()).map_err(tpm_err("seal data key"))?;
        let mut context = self.context()?;
        let created = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create(
                    self.storage_key,
                    sealed_object_template()?,
                    None,
                    Some(sensitive),
                    None,
                    None,
                )
            })
            .map_err(tpm_err("seal data key"))?;
        let public = created
            .out_public
            .marshall()
            .map_err(tpm_err("marshal sealed object"))?;
        let private = created.out_private.value();
        let mut header = Vec::with_capacity(4 + public.len() + private.len());
        for part in [public.as_slice(), private] {
            let len = u16::try_from(part.len()).map_err(|_| {
                SealError::backend(BackendId::Tpm, "seal data key", "object too large")
            })?;
            header.extend_from_slice(&len.to_be_bytes());
            header.extend_from_slice(part);
        }
        Ok((header, BlobCipher::Software(DataKey::from_bytes(*bytes))))
    }

    fn open_blob(&self, backend_header: &[u8]) -> Result<BlobCipher<'_>, SealError> {
        let (public, private) = split_header(backend_header)?;
        let public = Public::unmarshall(public)
            .map_err(|e| SealError::Malformed(format!("tpm sealed object public part: {e}")))?;
        let private = Private::try_from(private.to_vec())
            .map_err(|e| SealError::Malformed(format!("tpm sealed object private part: {e}")))?;
        let mut context = self.context()?;
        // A load failure means the object was not made under this TPM's storage key or was
        // altered (the TPM checks its integrity): either way the blob does not open.
        let object = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.load(self.storage_key, private, public)
            })
            .map_err(|_| SealError::Authentication)?;
        let unsealed = context
            .execute_with_session(Some(AuthSession::Password), |ctx| ctx.unseal(object.into()));
        context
            .flush_context(object.into())
            .map_err(tpm_err("flush sealed object"))?;
        let unsealed = unsealed.map_err(tpm_err("unseal data key"))?;
        let bytes: [u8; 32] = unsealed
            .value()
            .try_into()
            .map_err(|_| SealError::Malformed("tpm sealed data key is not 32 bytes".into()))?;
        Ok(BlobCipher::Software(DataKey::from_bytes(bytes)))
    }

    fn health(&self) -> Health {
        let mut context = match self.context() {
            Ok(c) => c,
            Err(e) => return Health::failed(BackendId::Tpm, &self.key_id, false, false, e),
        };
        if let Err(e) = context.get_random(8) {
            return Health::failed(
                BackendId::Tpm,
                &self.key_id,
                false,
                true,
                format!("TPM at '{}' does not answer: {e}", self.tcti),
            );
        }
        match context.read_public(self.storage_key) {
            Ok(_) => Health::healthy(
                BackendId::Tpm,
                &self.key_id,
                format!(
                    "TPM at '{}' answers; storage key {:#x} present",
                    self.tcti, self.handle
                ),
            ),
            Err(e) => Health::failed(
                BackendId::Tpm,
                &self.key_id,
                true,
                true,
                format!("storage key {:#x} unreadable: {e}", self.handle),
            ),
        }
    }
}

//! The `yubihsm` backend: data keys derived by a non-exportable HMAC key on a YubiHSM 2.
//!
//! Each blob gets a random 32-byte salt, stored as its backend header; its data key is
//! `HMAC-SHA256(device key, "keyrack-seal-v1" ‖ salt)`, computed on the device, and encrypts
//! the blob with AES-256-GCM in software. The HMAC key is created with the `sign-hmac`
//! capability only (never `exportable-under-wrap`); a key found with export capabilities is
//! refused.
//!
//! `connector = "http://HOST:PORT"` reaches a device through yubihsm-connector (or the mock
//! behind an HTTP server, in tests). `connector = "mock"` is the yubihsm crate's in-process
//! mock, available only in builds with the `yubihsm-mock` feature; its state lives and dies
//! with the process.

use std::path::Path;

use rand_core::{OsRng, RngCore};
use yubihsm::{object, Capability, Client, Connector, Credentials, Domain, HttpConfig};

use crate::blob::BackendId;
use crate::cipher::{BlobCipher, DataKey};
use crate::config::YubihsmConfig;
use crate::{Backend, Health, KeyPolicy, SealError};

const SALT_LEN: usize = 32;
const DERIVE_LABEL: &[u8] = b"keyrack-seal-v1";

/// A sealer whose data keys are derived on a YubiHSM 2.
pub struct YubihsmSealer {
    client: Client,
    hmac_key: object::Id,
    key_id: String,
    connector: String,
}

impl std::fmt::Debug for YubihsmSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YubihsmSealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn connector(spec: &str) -> Result<Connector, SealError> {
    if spec == "mock" {
        #[cfg(feature = "yubihsm-mock")]
        return Ok(Connector::mockhsm());
        #[cfg(not(feature = "yubihsm-mock"))]
        return Err(SealError::config(
            "hsm.yubihsm.connector",
            "'mock' needs a test build with the yubihsm-mock feature",
        ));
    }
    let bad = || {
        SealError::config(
            "hsm.yubihsm.connector",
            format!("'{spec}' is neither 'mock' nor http://HOST:PORT"),
        )
    };
    let rest = spec
        .strip_prefix("http://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    let (addr, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok(Connector::http(&HttpConfig {
        addr: addr.to_owned(),
        port,
        timeout_ms: 5000,
    }))
}

impl YubihsmSealer {
    /// Connects, authenticates and finds (or, with [`KeyPolicy::CreateIfMissing`], generates)
    /// the HMAC key.
    pub fn open(
        config: &YubihsmConfig,
        base_dir: &Path,
        policy: KeyPolicy,
    ) -> Result<Self, SealError> {
        let domain = Domain::from_bits(
            1u16.checked_shl(u32::from(config.domain).wrapping_sub(1))
                .unwrap_or(0),
        )
        .filter(|d| (1..=16).contains(&config.domain) && !d.is_empty())
        .ok_or_else(|| {
            SealError::config(
                "hsm.yubihsm.domain",
                format!("{} is not a domain (1..=16)", config.domain),
            )
        })?;
        let password = config.password.read(base_dir, "hsm.yubihsm.password")?;
        let credentials = Credentials::from_password(config.auth_key_id, password.as_bytes());
        let client =
            Client::open(connector(&config.connector)?, credentials, true).map_err(|e| match e
                .kind()
            {
                yubihsm::client::ErrorKind::AuthenticationError => SealError::Login {
                    backend: BackendId::Yubihsm,
                    setting: "hsm.yubihsm.password",
                    detail: format!(
                        "authentication key {} refused the password",
                        config.auth_key_id
                    ),
                },
                _ => SealError::Unreachable {
                    backend: BackendId::Yubihsm,
                    setting: "hsm.yubihsm.connector",
                    value: config.connector.clone(),
                    detail: e.to_string(),
                },
            })?;
        let key_id = format!("yubihsm:{:#06x}", config.hmac_key_id);
        let info = match client.get_object_info(config.hmac_key_id, object::Type::HmacKey) {
            Ok(info) => info,
            Err(_) if policy == KeyPolicy::CreateIfMissing => {
                client
                    .generate_hmac_key(
                        config.hmac_key_id,
                        object::Label::from("keyrack-seal"),
                        domain,
                        Capability::SIGN_HMAC,
                        yubihsm::hmac::Algorithm::Sha256,
                    )
                    .map_err(|e| SealError::backend(BackendId::Yubihsm, "generate HMAC key", e))?;
                tracing::info!(key = %key_id, "created YubiHSM sealing HMAC key (sign-hmac only)");
                client
                    .get_object_info(config.hmac_key_id, object::Type::HmacKey)
                    .map_err(|e| SealError::backend(BackendId::Yubihsm, "read HMAC key", e))?
            }
            Err(_) => return Err(SealError::NotFound {
                backend: BackendId::Yubihsm,
                what: format!(
                    "HMAC key {:#06x} (hsm.yubihsm.hmac_key_id)",
                    config.hmac_key_id
                ),
                hint:
                    "it is created by `keyrack init`; a missing key means another or a reset device"
                        .into(),
            }),
        };
        if info
            .capabilities
            .contains(Capability::EXPORTABLE_UNDER_WRAP)
        {
            return Err(SealError::UnsafeKey {
                backend: BackendId::Yubihsm,
                key_id,
                reason: "the HMAC key is exportable under wrap".into(),
            });
        }
        if info.algorithm != yubihsm::Algorithm::Hmac(yubihsm::hmac::Algorithm::Sha256) {
            return Err(SealError::UnsafeKey {
                backend: BackendId::Yubihsm,
                key_id,
                reason: format!("expected an HMAC-SHA256 key, found {:?}", info.algorithm),
            });
        }
        Ok(YubihsmSealer {
            client,
            hmac_key: config.hmac_key_id,
            key_id,
            connector: config.connector.clone(),
        })
    }

    fn data_key(&self, salt: &[u8]) -> Result<DataKey, SealError> {
        let mut msg = Vec::with_capacity(DERIVE_LABEL.len() + salt.len());
        msg.extend_from_slice(DERIVE_LABEL);
        msg.extend_from_slice(salt);
        let tag = self
            .client
            .sign_hmac(self.hmac_key, msg)
            .map_err(|e| SealError::backend(BackendId::Yubihsm, "derive data key", e))?;
        let mut tag = zeroize::Zeroizing::new(tag.into_vec());
        let bytes: [u8; 32] = tag.as_slice().try_into().map_err(|_| {
            SealError::backend(
                BackendId::Yubihsm,
                "derive data key",
                "HMAC is not 32 bytes",
            )
        })?;
        zeroize::Zeroize::zeroize(&mut *tag);
        Ok(DataKey::from_bytes(bytes))
    }
}

impl Backend for YubihsmSealer {
    fn backend_id(&self) -> BackendId {
        BackendId::Yubihsm
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn new_blob(&self) -> Result<(Vec<u8>, BlobCipher<'_>), SealError> {
        let mut salt = vec![0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let key = self.data_key(&salt)?;
        Ok((salt, BlobCipher::Software(key)))
    }

    fn open_blob(&self, backend_header: &[u8]) -> Result<BlobCipher<'_>, SealError> {
        if backend_header.len() != SALT_LEN {
            return Err(SealError::Malformed(format!(
                "yubihsm backend header must be a {SALT_LEN}-byte salt"
            )));
        }
        Ok(BlobCipher::Software(self.data_key(backend_header)?))
    }

    fn health(&self) -> Health {
        if let Err(e) = self.client.ping() {
            return Health::failed(
                BackendId::Yubihsm,
                &self.key_id,
                false,
                false,
                format!("connector '{}': {e}", self.connector),
            );
        }
        match self
            .client
            .get_object_info(self.hmac_key, object::Type::HmacKey)
        {
            Ok(_) => Health::healthy(
                BackendId::Yubihsm,
                &self.key_id,
                format!(
                    "connector '{}' answers; HMAC key {:#06x} present",
                    self.connector, self.hmac_key
                ),
            ),
            Err(e) => Health::failed(
                BackendId::Yubihsm,
                &self.key_id,
                true,
                true,
                format!("HMAC key {:#06x}: {e}", self.hmac_key),
            ),
        }
    }
}

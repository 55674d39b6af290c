//! The `[hsm]` section of a node's configuration.
//!
//! ```toml
//! [hsm]
//! backend = "pkcs11"            # pkcs11 | tpm | yubihsm | soft
//!
//! [hsm.pkcs11]
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "keyrack-node0"
//! key_label = "keyrack-seal"    # default
//! pin = { file = "hsm.pin" }    # or { env = "KEYRACK_PIN" }; never on the command line
//!
//! [hsm.tpm]
//! tcti = "swtpm:host=127.0.0.1,port=2321"   # or "device:/dev/tpmrm0"
//! storage_key_handle = 0x81000100           # default
//!
//! [hsm.yubihsm]
//! connector = "http://127.0.0.1:12345"      # or "mock" in test builds
//! auth_key_id = 1                           # default
//! password = { file = "yubihsm.password" }
//! hmac_key_id = 0x0100                      # default
//! domain = 1                                # default
//!
//! [hsm.soft]                                # development only
//! passphrase = { file = "soft.passphrase" }
//! salt = "9f1c…"                            # 16+ random bytes, hex; written by keyrack init
//! ```
//! Unknown keys are errors. Relative file paths are relative to the config file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::secret::SecretSource;
use crate::SealError;

/// Which backend seals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// PKCS#11 token.
    Pkcs11,
    /// TPM 2.0.
    Tpm,
    /// YubiHSM 2.
    Yubihsm,
    /// Passphrase-derived key; development only.
    Soft,
}

/// The `[hsm]` section: the chosen backend and its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// The backend that seals.
    pub backend: BackendKind,
    /// Settings of the `pkcs11` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<Pkcs11Config>,
    /// Settings of the `tpm` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmConfig>,
    /// Settings of the `yubihsm` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yubihsm: Option<YubihsmConfig>,
    /// Settings of the `soft` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<SoftConfig>,
}

impl HsmConfig {
    /// A config for `backend` with no backend section yet (set the one `backend` names).
    pub fn new(backend: BackendKind) -> Self {
        HsmConfig {
            backend,
            pkcs11: None,
            tpm: None,
            yubihsm: None,
            soft: None,
        }
    }

    #[allow(dead_code)] // unused when every backend feature is off
    pub(crate) fn section<'a, T>(
        &self,
        section: Option<&'a T>,
        name: &str,
    ) -> Result<&'a T, SealError> {
        section.ok_or_else(|| {
            SealError::config(
                format!("hsm.{name}"),
                format!("backend = \"{name}\" needs an [hsm.{name}] section"),
            )
        })
    }
}

/// `[hsm.pkcs11]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library).
    pub module: PathBuf,
    /// Label of the token that holds the sealing key.
    pub token_label: String,
    /// Label of the AES-256 sealing key in the token.
    #[serde(default = "default_key_label")]
    pub key_label: String,
    /// The user PIN.
    pub pin: SecretSource,
}

/// `[hsm.tpm]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// Persistent handle of the storage key (0x81000000..=0x81FFFFFF).
    #[serde(default = "default_storage_key_handle")]
    pub storage_key_handle: u32,
    /// Owner hierarchy authorisation, if the TPM has one set (needed to create the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_auth: Option<SecretSource>,
}

/// `[hsm.yubihsm]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YubihsmConfig {
    /// `http://HOST:PORT` of a yubihsm-connector, or `mock` (builds with the `yubihsm-mock`
    /// feature only).
    pub connector: String,
    /// Authentication key object id.
    #[serde(default = "default_auth_key_id")]
    pub auth_key_id: u16,
    /// Password of the authentication key.
    pub password: SecretSource,
    /// Object id of the HMAC key that derives data keys.
    #[serde(default = "default_hmac_key_id")]
    pub hmac_key_id: u16,
    /// Domain (1..=16) the HMAC key is created in.
    #[serde(default = "default_domain")]
    pub domain: u8,
}

/// `[hsm.soft]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftConfig {
    /// The passphrase the key is derived from.
    pub passphrase: SecretSource,
    /// Argon2id salt, hex, at least 16 bytes.
    pub salt: String,
}

fn default_key_label() -> String {
    "keyrack-seal".to_owned()
}
fn default_storage_key_handle() -> u32 {
    0x8100_0100
}
fn default_auth_key_id() -> u16 {
    1
}
fn default_hmac_key_id() -> u16 {
    0x0100
}
fn default_domain() -> u8 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses_with_defaults() {
        let text = r#"
            backend = "pkcs11"
            [pkcs11]
            module = "/usr/lib/softhsm/libsofthsm2.so"
            token_label = "keyrack-node0"
            pin = { file = "hsm.pin" }
            [tpm]
            tcti = "swtpm:host=127.0.0.1,port=2321"
            [yubihsm]
            connector = "mock"
            password = { env = "YUBIHSM_PASSWORD" }
        "#;
        let c: HsmConfig = toml::from_str(text).unwrap();
        assert_eq!(c.backend, BackendKind::Pkcs11);
        let p = c.pkcs11.unwrap();
        assert_eq!(p.key_label, "keyrack-seal");
        assert_eq!(p.pin, SecretSource::File("hsm.pin".into()));
        assert_eq!(c.tpm.unwrap().storage_key_handle, 0x8100_0100);
        let y = c.yubihsm.unwrap();
        assert_eq!((y.auth_key_id, y.hmac_key_id, y.domain), (1, 0x0100, 1));
        assert_eq!(y.password, SecretSource::Env("YUBIHSM_PASSWORD".into()));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = "backend = \"soft\"\n[soft]\npassphrase = { env = \"P\" }\nsalt = \"00\"\npin = \"1234\"\n";
        let err = toml::from_str::<HsmConfig>(text).unwrap_err().to_string();
        assert!(err.contains("unknown field `pin`"), "{err}");
    }

    #[test]
    fn a_pin_cannot_be_written_inline() {
        let text =
            "backend = \"pkcs11\"\n[pkcs11]\nmodule = \"m\"\ntoken_label = \"t\"\npin = \"1234\"\n";
        assert!(toml::from_str::<HsmConfig>(text).is_err());
    }
}

//! Where a PIN, password or passphrase comes from: a file or an environment variable, never
//! the command line or the config file itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SealError;

/// A reference to a secret: `{ file = "path" }` or `{ env = "VARIABLE" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretSource {
    /// Read from this file (relative to the config file); one trailing newline is dropped.
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
}

impl SecretSource {
    /// Reads the secret. `setting` names the config key in errors (e.g. `hsm.pkcs11.pin`).
    pub fn read(&self, base_dir: &Path, setting: &str) -> Result<Zeroizing<String>, SealError> {
        let mut value = match self {
            SecretSource::File(path) => {
                let path = base_dir.join(path);
                let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| {
                    SealError::config(setting, format!("cannot read {}: {e}", path.display()))
                })?);
                Zeroizing::new(
                    std::str::from_utf8(&bytes)
                        .map_err(|_| {
                            SealError::config(setting, format!("{} is not UTF-8", path.display()))
                        })?
                        .to_owned(),
                )
            }
            SecretSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
                SealError::config(setting, format!("environment variable {var} is not set"))
            })?),
        };
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        if value.is_empty() {
            return Err(SealError::config(setting, "the secret is empty"));
        }
        Ok(value)
    }
}

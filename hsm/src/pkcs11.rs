//! The `pkcs11` backend: AES-256-GCM inside a PKCS#11 token.
//!
//! The sealing key is an AES-256 secret key object on the token, found by label, created with
//! `CKA_SENSITIVE = true` and `CKA_EXTRACTABLE = false`; it never leaves the token, and a key
//! found with other attributes is refused. Blobs carry no backend header: the token encrypts
//! with the blob's nonce and associated data.
//!
//! A PKCS#11 module is initialised once per process (modules refuse a second `C_Initialize`),
//! so contexts are cached per module path. One session per sealer, behind a mutex: a PKCS#11
//! session may be used by one thread at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::blob::{BackendId, NONCE_LEN};
use crate::cipher::{BlobCipher, TokenAead};
use crate::config::Pkcs11Config;
use crate::{Backend, Health, KeyPolicy, SealError};

/// A sealer whose key lives in a PKCS#11 token.
pub struct Pkcs11Sealer {
    session: Mutex<Session>,
    key: ObjectHandle,
    key_id: String,
    token_label: String,
    key_label: String,
}

impl std::fmt::Debug for Pkcs11Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn module_context(module: &Path) -> Result<Pkcs11, SealError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS.get_or_init(Default::default).lock().map_err(|_| {
        SealError::backend(BackendId::Pkcs11, "initialise", "context cache poisoned")
    })?;
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let unreachable = |detail: String| SealError::Unreachable {
        backend: BackendId::Pkcs11,
        setting: "hsm.pkcs11.module",
        value: module.display().to_string(),
        detail,
    };
    if !module.exists() {
        return Err(unreachable(
            "no such file; install the module (softhsm2 for tests: softhsm-setup/install-deps.sh)"
                .into(),
        ));
    }
    let ctx = Pkcs11::new(module).map_err(|e| unreachable(format!("cannot load module: {e}")))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(unreachable(format!(
                "C_Initialize failed: {e}{}",
                softhsm_hint()
            )))
        }
    }
    contexts.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn softhsm_hint() -> String {
    match std::env::var("SOFTHSM2_CONF") {
        Ok(conf) => format!(" (SOFTHSM2_CONF={conf})"),
        Err(_) => String::new(),
    }
}

/// Runs a token query, retrying CKR_GENERAL_ERROR a few times: SoftHSM's file store fails a
/// read while another process rewrites a token file (several nodes starting on one host);
/// a real device does not, and a persistent error still comes through.
fn with_retry<T>(mut query: impl FnMut() -> Result<T, CkError>) -> Result<T, CkError> {
    let mut delay = std::time::Duration::from_millis(20);
    for _ in 0..5 {
        match query() {
            Err(CkError::Pkcs11(RvError::GeneralError, f)) => {
                tracing::warn!(function = ?f, "PKCS#11 general error reading the token list; retrying");
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    query()
}

fn find_token(ctx: &Pkcs11, label: &str, module: &Path) -> Result<Slot, SealError> {
    let slots = with_retry(|| ctx.get_slots_with_token())
        .map_err(|e| SealError::backend(BackendId::Pkcs11, "list slots", e))?;
    let mut found = Vec::new();
    for slot in slots {
        let info = with_retry(|| ctx.get_token_info(slot))
            .map_err(|e| SealError::backend(BackendId::Pkcs11, "read token info", e))?;
        if info.label().trim_end() == label {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(SealError::NotFound {
            backend: BackendId::Pkcs11,
            what: format!("token '{label}' (hsm.pkcs11.token_label)"),
            hint: format!(
                "module {} has no token with that label{}; create it (tests: softhsm-setup/softhsm-init.sh)",
                module.display(),
                softhsm_hint()
            ),
        }),
        _ => Err(SealError::config(
            "hsm.pkcs11.token_label",
            format!("{} tokens are labelled '{label}'; labels must be unique", found.len()),
        )),
    }
}

impl Pkcs11Sealer {
    /// Opens the token, logs in and finds (or, with [`KeyPolicy::CreateIfMissing`], creates)
    /// the sealing key.
    pub fn open(
        config: &Pkcs11Config,
        base_dir: &Path,
        policy: KeyPolicy,
    ) -> Result<Self, SealError> {
        let module = base_dir.join(&config.module);
        let ctx = module_context(&module)?;
        let slot = find_token(&ctx, &config.token_label, &module)?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| SealError::backend(BackendId::Pkcs11, "open session", e))?;
        let pin = config.pin.read(base_dir, "hsm.pkcs11.pin")?;
        let pin = AuthPin::from(String::from(pin.as_str()));
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinLocked),
                _,
            )) => {
                return Err(SealError::Login {
                    backend: BackendId::Pkcs11,
                    setting: "hsm.pkcs11.pin",
                    detail: format!("token '{}' refused the user PIN: {rv}", config.token_label),
                })
            }
            Err(e) => return Err(SealError::backend(BackendId::Pkcs11, "login", e)),
        }
        let key_id = format!("pkcs11:{}/{}", config.token_label, config.key_label);
        let key = match find_key(&session, &config.key_label)? {
            Some(key) => key,
            None if policy == KeyPolicy::CreateIfMissing => {
                create_key(&session, &config.key_label)?
            }
            None => return Err(SealError::NotFound {
                backend: BackendId::Pkcs11,
                what: format!(
                    "sealing key '{}' (hsm.pkcs11.key_label) in token '{}'",
                    config.key_label, config.token_label
                ),
                hint:
                    "it is created by `keyrack init`; a missing key means another or a wiped token"
                        .into(),
            }),
        };
        check_key_attributes(&session, key, &key_id)?;
        Ok(Pkcs11Sealer {
            session: Mutex::new(session),
            key,
            key_id,
            token_label: config.token_label.clone(),
            key_label: config.key_label.clone(),
        })
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, SealError> {
        self.session
            .lock()
            .map_err(|_| SealError::backend(BackendId::Pkcs11, "session", "session lock poisoned"))
    }
}

fn key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, SealError> {
    let found = session
        .find_objects(&key_template(label))
        .map_err(|e| SealError::backend(BackendId::Pkcs11, "find key", e))?;
    match found.as_slice() {
        [] => Ok(None),
        [key] => Ok(Some(*key)),
        _ => Err(SealError::config(
            "hsm.pkcs11.key_label",
            format!(
                "{} AES keys are labelled '{label}'; labels must be unique",
                found.len()
            ),
        )),
    }
}

fn create_key(session: &Session, label: &str) -> Result<ObjectHandle, SealError> {
    let mut template = key_template(label);
    template.extend([
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::ValueLen(32.into()),
    ]);
    // Class and key type are implied by the mechanism.
    template.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
    let key = session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| SealError::backend(BackendId::Pkcs11, "generate sealing key", e))?;
    tracing::info!(
        label,
        "created PKCS#11 sealing key (AES-256, sensitive, non-extractable)"
    );
    Ok(key)
}

fn check_key_attributes(
    session: &Session,
    key: ObjectHandle,
    key_id: &str,
) -> Result<(), SealError> {
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::ValueLen,
            ],
        )
        .map_err(|e| SealError::backend(BackendId::Pkcs11, "read key attributes", e))?;
    let (mut sensitive, mut extractable, mut len) = (false, true, 0u64);
    for a in attrs {
        match a {
            Attribute::Sensitive(v) => sensitive = v,
            Attribute::Extractable(v) => extractable = v,
            Attribute::ValueLen(v) => len = u64::from(v),
            _ => {}
        }
    }
    let unsafe_key = |reason: &str| SealError::UnsafeKey {
        backend: BackendId::Pkcs11,
        key_id: key_id.to_owned(),
        reason: reason.to_owned(),
    };
    if !sensitive {
        return Err(unsafe_key("CKA_SENSITIVE is false"));
    }
    if extractable {
        return Err(unsafe_key("CKA_EXTRACTABLE is true"));
    }
    if len != 32 {
        return Err(unsafe_key("not an AES-256 key"));
    }
    Ok(())
}

impl TokenAead for Pkcs11Sealer {
    fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut iv = *nonce;
        let params = GcmParams::new(&mut iv, aad, 128.into())
            .map_err(|e| SealError::backend(BackendId::Pkcs11, "encrypt", e))?;
        self.session()?
            .encrypt(&Mechanism::AesGcm(params), self.key, plaintext)
            .map_err(|e| SealError::backend(BackendId::Pkcs11, "encrypt", e))
    }

    fn decrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let mut iv = *nonce;
        let params = GcmParams::new(&mut iv, aad, 128.into())
            .map_err(|e| SealError::backend(BackendId::Pkcs11, "decrypt", e))?;
        match self
            .session()?
            .decrypt(&Mechanism::AesGcm(params), self.key, ciphertext)
        {
            Ok(plain) => Ok(Zeroizing::new(plain)),
            // Tokens report a GCM tag mismatch in different ways; SoftHSM says
            // CKR_GENERAL_ERROR. All of them mean the blob does not open.
            Err(CkError::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError,
                _,
            )) => Err(SealError::Authentication),
            Err(e) => Err(SealError::backend(BackendId::Pkcs11, "decrypt", e)),
        }
    }
}

impl Backend for Pkcs11Sealer {
    fn backend_id(&self) -> BackendId {
        BackendId::Pkcs11
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn new_blob(&self) -> Result<(Vec<u8>, BlobCipher<'_>), SealError> {
        Ok((Vec::new(), BlobCipher::Token(self)))
    }

    fn open_blob(&self, backend_header: &[u8]) -> Result<BlobCipher<'_>, SealError> {
        if !backend_header.is_empty() {
            return Err(SealError::Malformed(
                "pkcs11 blobs carry no backend header".into(),
            ));
        }
        Ok(BlobCipher::Token(self))
    }

    fn health(&self) -> Health {
        let session = match self.session() {
            Ok(s) => s,
            Err(e) => return Health::failed(BackendId::Pkcs11, &self.key_id, false, false, e),
        };
        let logged_in = match session.get_session_info() {
            Ok(info) => matches!(
                info.session_state(),
                cryptoki::session::SessionState::RwUser | cryptoki::session::SessionState::RoUser
            ),
            Err(e) => {
                return Health::failed(
                    BackendId::Pkcs11,
                    &self.key_id,
                    false,
                    false,
                    format!("token '{}' unreachable: {e}", self.token_label),
                )
            }
        };
        if !logged_in {
            return Health::failed(
                BackendId::Pkcs11,
                &self.key_id,
                true,
                false,
                "session is not logged in",
            );
        }
        match find_key(&session, &self.key_label) {
            Ok(Some(key)) if key == self.key => Health::healthy(
                BackendId::Pkcs11,
                &self.key_id,
                format!(
                    "token '{}' logged in; key '{}' present, sensitive, non-extractable",
                    self.token_label, self.key_label
                ),
            ),
            Ok(_) => Health::failed(
                BackendId::Pkcs11,
                &self.key_id,
                true,
                true,
                format!("key '{}' is gone or was replaced", self.key_label),
            ),
            Err(e) => Health::failed(BackendId::Pkcs11, &self.key_id, true, true, e),
        }
    }
}

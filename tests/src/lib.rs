//! Support for keyrack's tests against real services: SoftHSM tokens, swtpm, the YubiHSM
//! mock behind its HTTP connector, nats-server. The services are installed and started by
//! the scripts in `softhsm-setup/`; a test that finds one missing fails with a message naming
//! the script to run, never skips.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use keyrack_hsm::config::{Pkcs11Config, TpmConfig, YubihsmConfig};
use keyrack_hsm::SecretSource;

/// How to get the services: printed by every failure to find one.
pub const SETUP_HINT: &str = "run the suite with softhsm-setup/test.sh, or start the services with \
     `softhsm-setup/softhsm-init.sh keyrack-test keyrack-badpin && softhsm-setup/services.sh start` \
     and `source .state/services.env`";

/// An environment variable the setup scripts export; panics naming the script if unset.
pub fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: {SETUP_HINT}"))
}

/// The project-local state directory of the setup scripts.
pub fn state_dir() -> PathBuf {
    PathBuf::from(required_env("KEYRACK_STATE_DIR"))
}

/// The PIN file `softhsm-init.sh` wrote for a token.
pub fn pin_file(token: &str) -> PathBuf {
    let path = state_dir().join("pins").join(format!("{token}.pin"));
    assert!(
        path.exists(),
        "no SoftHSM token '{token}' ({} missing): {SETUP_HINT}",
        path.display()
    );
    path
}

/// Settings for a key on a SoftHSM token made by `softhsm-init.sh`.
pub fn softhsm(token: &str, key_label: &str) -> Pkcs11Config {
    required_env("SOFTHSM2_CONF");
    Pkcs11Config {
        module: PathBuf::from(required_env("KEYRACK_PKCS11_MODULE")),
        token_label: token.to_owned(),
        key_label: key_label.to_owned(),
        pin: SecretSource::File(pin_file(token)),
    }
}

/// Settings for a storage key on the swtpm started by `services.sh`.
pub fn swtpm(handle: u32) -> TpmConfig {
    TpmConfig {
        tcti: required_env("KEYRACK_TPM_TCTI"),
        storage_key_handle: handle,
        owner_auth: None,
    }
}

/// Settings for the YubiHSM mock (`mock`, or an HTTP URL) with its factory password.
pub fn yubihsm(connector: &str, password_file: &Path, hmac_key_id: u16) -> YubihsmConfig {
    YubihsmConfig {
        connector: connector.to_owned(),
        auth_key_id: 1,
        password: SecretSource::File(password_file.to_owned()),
        hmac_key_id,
        domain: 1,
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A unique name for objects a test creates (keys, labels), so parallel tests never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `keyrack-yubihsm-mock` (path from `env!("CARGO_BIN_EXE_keyrack-yubihsm-mock")`) on a
/// free port; returns the guard and the connector URL once it listens.
pub fn spawn_yubihsm_mock(binary: &str) -> (ChildGuard, String) {
    let port = free_port();
    let mut child = Command::new(binary)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read mock's first line");
    assert!(
        line.starts_with("listening"),
        "yubihsm mock did not start: {line:?}"
    );
    (guard, format!("http://127.0.0.1:{port}"))
}

/// The `keyrack` binary of this build (built by `cargo nextest run --workspace` or
/// `cargo build -p keyrack-node`), found next to the test binary's directory.
pub fn keyrack_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("keyrack");
    assert!(
        bin.exists(),
        "{} not built: run the suite with softhsm-setup/test.sh (or cargo build -p keyrack-node first)",
        bin.display()
    );
    bin
}

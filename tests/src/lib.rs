//! Support for keyrack's tests against real services: SoftHSM tokens, swtpm, the YubiHSM
//! mock behind its HTTP connector, nats-server. The services are installed and started by
//! the scripts in `softhsm-setup/`; a test that finds one missing fails with a message naming
//! the script to run, never skips.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use keyrack_hsm::config::{Pkcs11Config, TpmConfig, YubihsmConfig};
use keyrack_hsm::SecretSource;

/// How to get the services: printed by every failure to find one.
pub const SETUP_HINT: &str = "run the suite with softhsm-setup/test.sh, or start the services with \
     `softhsm-setup/softhsm-init.sh keyrack-test keyrack-badpin keyrack-node0 keyrack-node1 keyrack-node2 keyrack-node3 && softhsm-setup/services.sh start` \
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

/// The yubihsm crate's mock HSM behind its HTTP connector protocol, served from a thread of
/// this process, so that other processes (`keyrack`, the seal probe) share one device. Returns
/// the connector URL; the device lives until this process exits.
pub fn start_yubihsm_mock() -> String {
    use yubihsm::connector::http::Server;
    use yubihsm::{Connector, HttpConfig};
    let port = free_port();
    let config = HttpConfig {
        addr: "127.0.0.1".into(),
        port,
        timeout_ms: 5000,
    };
    // Binding happens here, before the URL is handed out: no waiting for the server.
    let server = Server::new(&config, Connector::mockhsm()).expect("start the YubiHSM mock server");
    std::thread::spawn(move || server.run());
    format!("http://127.0.0.1:{port}")
}

/// A nats-server (with JetStream) on a free loopback port, stopped when dropped. Its storage
/// lives in a temporary directory, so every test gets a clean server.
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port`.
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = NatsServer {
            child: None,
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("nats-server is not installed: run softhsm-setup/install-deps.sh")
            });
        let child = std::process::Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops the server (its JetStream data stays) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

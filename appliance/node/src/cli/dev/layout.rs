//! The dev state directory: what is in it, and the claim of one `keyrack dev` on it.
//!
//! ```text
//! dev.toml            what keyrack dev made here (node count, setup finished, fixture seeding)
//! dev.pid             the keyrack dev running on this directory, if any
//! softhsm2.conf       SoftHSM's config, pointing at softhsm/tokens (SOFTHSM2_CONF)
//! softhsm/tokens/     one token per node, labelled keyrack-dev-nodeI
//! pins/               nodeI.pin and nodeI.so-pin (0600 in a 0700 directory)
//! nodes/nodeI/        the node: keyrack.toml, sealed identity, keyrack.db
//! admin.key, .pub     the admin that signed the manifest
//! alice.key, .pub     the initiator that signs requests
//! manifest.toml       the signed cluster manifest
//! client.toml         the configuration of `keyrack client`
//! nats/, logs/        nats-server's JetStream data; nats.log and nodeI.log
//! ```
//!
//! It never changes a directory it did not make (one that holds files but no `dev.toml`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::setup::INITIATOR;
use crate::config::CONFIG_FILE;
use crate::fsutil::{create_private_dir, replace_file, write_new_file};

/// `dev.toml`: what keyrack dev made in a directory.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DevState {
    /// Nodes in the cluster.
    pub(super) nodes: u16,
    /// Whether the setup finished (a directory where it did not is made again).
    pub(super) setup_complete: bool,
    /// Nodes whose prime pool was seeded with the public test-fixture primes.
    #[serde(default)]
    pub(super) fixture_primes: Vec<String>,
}

/// The paths of a dev state directory.
#[derive(Debug)]
pub(super) struct Layout {
    dir: PathBuf,
}

/// The id of node `i`.
pub(super) fn node_id(i: u16) -> String {
    format!("node{i}")
}

pub(super) fn token_label(i: u16) -> String {
    format!("keyrack-dev-node{i}")
}

impl Layout {
    pub(super) fn new(dir: &Path) -> Self {
        Layout {
            dir: dir.to_owned(),
        }
    }
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
    fn state_file(&self) -> PathBuf {
        self.dir.join("dev.toml")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("dev.pid")
    }
    pub(super) fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }
    pub(super) fn token_dir(&self) -> PathBuf {
        self.dir.join("softhsm").join("tokens")
    }
    pub(super) fn pins(&self) -> PathBuf {
        self.dir.join("pins")
    }
    pub(super) fn node_dir(&self, i: u16) -> PathBuf {
        self.dir.join("nodes").join(node_id(i))
    }
    pub(super) fn node_config(&self, i: u16) -> PathBuf {
        self.node_dir(i).join(CONFIG_FILE)
    }
    pub(super) fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.toml")
    }
    pub(super) fn initiator_key(&self) -> PathBuf {
        self.dir.join(format!("{INITIATOR}.key"))
    }
    pub(super) fn client_config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }
    pub(super) fn nats_dir(&self) -> PathBuf {
        self.dir.join("nats")
    }
    pub(super) fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    pub(super) fn read_state(&self) -> anyhow::Result<Option<DevState>> {
        let path = self.state_file();
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .with_context(|| format!("invalid {} (use --fresh to start over)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(super) fn write_state(&self, state: &DevState) -> anyhow::Result<()> {
        let text = format!(
            "# Written by `keyrack dev`: what it made in this directory.\n{}",
            toml::to_string(state)?
        );
        write_file(&self.state_file(), text.as_bytes())
    }

    /// Claims the directory for this process (`dev.pid`, removed when the claim is
    /// dropped). Refuses a directory keyrack dev did not make (it changes nothing in it) and
    /// one another keyrack dev runs on.
    pub(super) fn claim(&self) -> anyhow::Result<PidFile> {
        let dir = self.dir.display();
        if self.dir.exists() {
            if !self.state_file().exists() && self.has_other_files()? {
                bail!(
                    "{dir} is not empty and was not made by keyrack dev (it has no dev.toml): give another --dir"
                );
            }
        } else {
            create_private_dir(&self.dir).with_context(|| format!("cannot create --dir {dir}"))?;
        }
        let path = self.pid_file();
        if let Some(pid) = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if pid != std::process::id() && cmdline.split(|b| *b == 0).any(|arg| arg == b"dev") {
                bail!(
                    "another keyrack dev (pid {pid}) is running on {dir}: stop it first (Ctrl-C in its terminal, or kill {pid})"
                );
            }
        }
        write_file(&path, format!("{}\n", std::process::id()).as_bytes())?;
        Ok(PidFile(path))
    }

    /// Deletes everything in the directory but `dev.pid`.
    pub(super) fn wipe(&self) -> anyhow::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path == self.pid_file() {
                continue;
            }
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("cannot delete {}", path.display()))?;
        }
        Ok(())
    }

    /// Whether the directory holds anything but `dev.pid`.
    fn has_other_files(&self) -> anyhow::Result<bool> {
        for entry in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            if entry?.path() != self.pid_file() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Removes `dev.pid` when dropped.
#[derive(Debug)]
pub(super) struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Creates `path` (mode 0600) or replaces it atomically.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        replace_file(path, bytes)
    } else {
        write_new_file(path, bytes)
    }
    .with_context(|| format!("cannot write {}", path.display()))
}
